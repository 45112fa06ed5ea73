"""Two study databases over the same grid, row by row: how often each method's predictions repeat exactly.

For a re-run of the same command (a check of reproducibility) or the same grid under another setting (a kernel
switch, another decode path): per method, the rows both hold, how many have the same prediction and the same
score, and each side's mean score. Rows are matched by configuration, task, length, sample and seed, and
must hold the same sample (its hash).

    python benchmarks/compare_runs.py A/results.db B/results.db [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

KEY = "config_hash, task, length, sample, seed"


def rows(db: Path) -> dict[tuple, tuple]:
    with sqlite3.connect(db) as con:
        query = f"select {KEY}, method, sample_hash, prediction, score from results"
        return {tuple(r[:5]): r[5:] for r in con.execute(query)}


def compare(a: dict[tuple, tuple], b: dict[tuple, tuple]) -> dict[str, dict]:
    """Per method: rows in both, same prediction, same score, and the two mean scores."""
    out: dict[str, dict] = defaultdict(lambda: {"rows": 0, "same_prediction": 0, "same_score": 0, "a": 0.0, "b": 0.0})
    for key in sorted(a.keys() & b.keys()):
        (method, hash_a, pred_a, score_a), (_, hash_b, pred_b, score_b) = a[key], b[key]
        if hash_a != hash_b:
            raise ValueError(f"row {key} holds different samples in the two databases; compare runs of one grid.")
        rec = out[method]
        rec["rows"] += 1
        rec["same_prediction"] += pred_a == pred_b
        rec["same_score"] += score_a == score_b
        rec["a"] += score_a
        rec["b"] += score_b
    for rec in out.values():
        rec["mean_score_a"], rec["mean_score_b"] = rec.pop("a") / rec["rows"], rec.pop("b") / rec["rows"]
    return dict(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--json", type=Path, help="write the comparison here")
    args = p.parse_args()
    result = compare(rows(args.a), rows(args.b))
    print(f"{'method':18s} {'rows':>6s} {'same prediction':>16s} {'same score':>11s} {'mean A':>7s} {'mean B':>7s}")
    for method, r in sorted(result.items()):
        print(f"{method:18s} {r['rows']:6d} {r['same_prediction']:16d} {r['same_score']:11d} "
              f"{100 * r['mean_score_a']:7.1f} {100 * r['mean_score_b']:7.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "methods": result}, indent=2))


if __name__ == "__main__":
    main()
