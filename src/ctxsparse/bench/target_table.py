"""The target points of `bench decode` and `bench pipeline` results in one short table.

Reads the two result files and prints, per target point, the speedup over FlashInfer's best dense decode,
the target, met or missed, the byte ceiling (dense bytes / bytes the sparse path must move) and which
dense setting won. Run: python -m ctxsparse.bench.target_table DECODE.json PIPELINE.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ctxsparse.bench.decode import TARGETS as DECODE_TARGETS
from ctxsparse.bench.pipeline import SPEEDUP_TARGETS as PIPELINE_TARGETS

HEADER = ("point", "ours us", "dense us", "TC", "x dense", "target", "verdict", "bytes x", "%copy")


def _decode_lines(result: dict) -> list[tuple]:
    rows = {(r["batch"], r["context"], r["sparsity"]): r for r in result.get("rows", [])}
    lines = []
    for b, n, s, want in DECODE_TARGETS:
        r = rows.get((b, n, s))
        if r is not None:
            share = r.get("ours_share_of_copy")
            lines.append((f"decode S={s} B={b} N={n // 1024}K", r.get("ours_us"), r.get("dense_us"),
                          r.get("anchors", {}).get("dense"), r.get("ours_speedup_vs_dense"), want,
                          r["dense_bytes"] / r["sparse_bytes"], None if share is None else 100 * share))  # fmt: skip
    return lines


def _pipeline_lines(result: dict) -> list[tuple]:
    rows = {(r["indexer"], r["batch"], r["context"], r["sparsity"]): r for r in result.get("rows", [])}
    copy = result.get("copy_tbps")
    lines = []
    for ix, b, n, s, want in PIPELINE_TARGETS:
        r = rows.get((ix, b, n, s))
        if r is not None:
            floor = r.get("floor_us_copy")
            share = None if not (floor and r.get("pipeline_us") and copy) else 100 * floor / r["pipeline_us"]
            lines.append((f"{ix} pipeline S={s} B={b} N={n // 1024}K", r.get("pipeline_us"), r.get("dense_us"),
                          r.get("anchors", {}).get("dense"), r.get("speedup_vs_dense"), want, r["bytes_ratio"],
                          share))  # fmt: skip
    return lines


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_targets(decode: dict | None, pipeline: dict | None) -> str:
    """A fixed-width table of every target point found in the results (either may be None)."""
    lines = (_decode_lines(decode) if decode else []) + (_pipeline_lines(pipeline) if pipeline else [])
    widths = (28, 8, 8, 3, 7, 6, 16, 7, 5)
    out = [" ".join(h.rjust(w) for h, w in zip(HEADER, widths, strict=True))]
    for point, ours, dense, anchor, x, want, ceiling, share in lines:
        verdict = "not measured" if x is None else "met" if x >= want else f"missed by {want / x:.2f}x"
        tc = "-" if not anchor or "use_tensor_cores" not in anchor else "yn"[not anchor["use_tensor_cores"]]
        cells = (point, _fmt(ours, ".1f"), _fmt(dense, ".1f"), tc, _fmt(x, ".1f"), f"{want:g}x", verdict,
                 f"{ceiling:.1f}", _fmt(share, ".0f"))  # fmt: skip
        out.append(" ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    if len(out) == 1:
        out.append("(no target point in the results)")
    gpu = (decode or pipeline or {}).get("gpu")
    note = (decode or pipeline or {}).get("bandwidth_note")
    return "\n".join(([f"{gpu}: {note}"] if gpu else []) + out)


def _load(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("decode", type=Path, nargs="?", help="a bench decode result file")
    parser.add_argument("pipeline", type=Path, nargs="?", help="a bench pipeline result file")
    args = parser.parse_args(argv)
    print(format_targets(_load(args.decode), _load(args.pipeline)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
