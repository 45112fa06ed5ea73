"""The recorded GPU study of the embedded model (SmolLM2-135M), sized to a wall-time budget on one GPU.

Grid: tasks the model solves densely at least sometimes (niah_single, niah_single_words_uuid,
niah_multivalue, niah_multiquery, fwe, agentic) at 2K, 4K and 8K tokens; dense, oracle top-k, Double
Sparsity, Quest, vAttention and sink+window at 10x, 20x, 50x, 100x; samples drawn from a fixed set of
--samples per (task, length). The batched study path decodes --batch-size samples at once per configuration.

Stages, all into one resumable database: (1) a probe at 4K with --probe samples per task gives the 4K
throughput (rows/s, the issue's target is >= 50); (2) from it the number of samples per cell that fits the
rest of the budget is chosen (at most --samples), and every length is run to that many (4K first, then 2K,
then 8K); should fewer than the probe's samples fit, the probe length keeps its own. The report prints n
per cell. Writes results.db, report/ and
gpu-study.json under benchmarks/results/<name>/ and copies them into $OUT when set.

    python benchmarks/gpu_study.py [--budget-s 330] [--name smollm2-gpu-study] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctxsparse.study.backend import TransformersBackend
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import StudyRunner, default_get_task
from ctxsparse.study.store import StudyStore
from ctxsparse.versions import versions

RESULTS = Path(__file__).parent / "results"
TASKS = "niah_single,niah_single_words_uuid,niah_multivalue,niah_multiquery,fwe,agentic"
METHODS = "dense;oracle_topk;double_sparsity;quest;vattention;sink_window"
SPARSITY = "10,20,50,100"
LENGTHS = "4096,2048,8192"  # 4K first: the throughput target is stated at 4K
# Relative cost of a sample at a length vs 4K (decode steps read the whole cache); a planning guess only.
LENGTH_COST = {2048: 0.75, 4096: 1.0, 8192: 1.6}


def length_cost(n: int) -> float:
    return LENGTH_COST.get(n, 0.5 + 0.5 * n / 4096)


class LoadedOnce:
    """Backend that loads the model once and hands the same session to every stage."""

    def __init__(self, inner: TransformersBackend) -> None:
        self.inner = inner
        self.sessions: dict[str, Any] = {}

    def open(self, model: str) -> Any:
        if model not in self.sessions:
            self.sessions[model] = self.inner.open(model)
        return self.sessions[model]


class SamplesOnce:
    """A task family whose generated sample sets are kept, so later stages do not make them again."""

    def __init__(self, family: Any) -> None:
        self.family = family
        self.name = family.name
        self.made: dict[tuple, list] = {}

    def generate(self, tokenizer: Any, length: int, count: int, seed: int = 0) -> list:
        key = (id(tokenizer), length, count, seed)
        if key not in self.made:
            self.made[key] = list(self.family.generate(tokenizer, length, count, seed=seed))
        return self.made[key]

    def score(self, prediction: str, sample: Any) -> float:
        return self.family.score(prediction, sample)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="smollm2-gpu-study", help="folder under benchmarks/results/")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--sparsity", default=SPARSITY)
    p.add_argument("--lengths", default=LENGTHS)
    p.add_argument("--samples", type=int, default=100, help="samples per (task, length) to draw from")
    p.add_argument("--probe", type=int, default=16, help="samples per task in the 4K probe")
    p.add_argument("--budget-s", type=float, default=330.0, help="wall-time budget of the whole study")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--fresh", action="store_true", help="start a new database (default: resume)")
    return p.parse_args(argv)


def run_stage(plan: StudyPlan, backend: LoadedOnce, families: dict, args, db: Path, argv: list[str]) -> dict:
    runner = StudyRunner(
        plan, backend, get_task=families.__getitem__, progress=False, batch_size=args.batch_size, calibrate=True
    )
    runner.check_names()
    runner.open_models()
    with StudyStore.open(db) as store:
        out = runner.run(store, argv=argv)
    stage = {
        "lengths": list(plan.lengths),
        "samples_per_cell": plan.samples_to_run,
        "rows_written": out.written,
        "rows_skipped": out.skipped,
        "wall_s": round(out.wall_s, 2),
        "rows_per_s": round(out.rows_per_s, 2),
    }
    print(f"  stage {stage}", flush=True)
    return stage


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    start = time.perf_counter()
    folder = RESULTS / args.name
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "results.db"
    if args.fresh and db.exists():
        db.unlink()
    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    lengths = [int(n) for n in args.lengths.split(",")]
    tasks = args.tasks.split(",")
    backend = LoadedOnce(TransformersBackend(args.device, args.dtype))
    families = {t: SamplesOnce(default_get_task(t)) for t in tasks}

    def plan_for(stage_lengths: list[int], limit: int) -> StudyPlan:
        return StudyPlan.build(
            [args.model],
            args.methods.split(";"),
            [float(s) for s in args.sparsity.split(",")],
            tasks,
            stage_lengths,
            samples=args.samples,
            limit=limit,
            dtype=args.dtype,
        )

    command = "benchmarks/gpu_study.sh " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = time.perf_counter()
    backend.open(args.model)
    load_s = time.perf_counter() - load_start
    print(f"{device_name}: model loaded in {load_s:.1f}s", flush=True)
    stages = []
    probe_len = 4096 if 4096 in lengths else lengths[0]
    lengths = [probe_len] + [n for n in lengths if n != probe_len]
    probe = run_stage(plan_for([probe_len], args.probe), backend, families, args, db, ["gpu_study", "probe"])
    stages.append(probe)
    per_sample = probe["wall_s"] / max(1, args.probe)  # seconds per sample index at the probe length
    left = args.budget_s - (time.perf_counter() - start)
    others = sum(length_cost(n) for n in lengths[1:]) / length_cost(probe_len)
    # left ~= per_sample * (others * n + (n - probe)): every length to n, the probe length topped up.
    n = int((left / max(per_sample, 1e-6) + args.probe) / (others + 1))
    if n < args.probe:  # the probe length keeps its samples; the others get what fits
        n = int(left / max(per_sample, 1e-6) / max(others, 1e-6))
    n = max(1, min(args.samples, n))
    print(f"probe: {probe['rows_per_s']} rows/s at {probe_len}; {left:.0f}s left -> {n} samples per cell", flush=True)
    for length in lengths:
        if length == probe_len and n <= args.probe:
            continue
        stages.append(run_stage(plan_for([length], n), backend, families, args, db, ["gpu_study", str(length)]))
    study_s = time.perf_counter() - start
    with StudyStore.open(db, create=False) as store:
        rows = store.count()
    # Per length: every row written at it (probe included) over the time spent on it.
    at = {}
    for n_tokens in lengths:
        mine = [s for s in stages if s["lengths"] == [n_tokens]]
        rows_at, secs = sum(s["rows_written"] for s in mine), sum(s["wall_s"] for s in mine)
        if rows_at and secs:
            at[str(n_tokens)] = round(rows_at / secs, 2)
    payload = {
        "benchmark": "gpu-study",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name,
        "model": args.model,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "tasks": tasks,
        "methods": args.methods.split(";"),
        "sparsities": [float(s) for s in args.sparsity.split(",")],
        "lengths": lengths,
        "samples_drawn_from": args.samples,
        "samples_per_cell": {str(probe_len): max(n, args.probe), **{str(x): n for x in lengths[1:]}},
        "budget_s": args.budget_s,
        "model_load_s": round(load_s, 2),
        "study_wall_s": round(study_s, 2),
        "rows": rows,
        "rows_per_s_overall": round(rows / study_s, 2) if study_s else None,
        "rows_per_s_probe_4k": probe["rows_per_s"],
        "rows_per_s_by_length": at,
        "target_rows_per_s_at_4k": 50,
        "stages": stages,
        "command": command,
        "versions": versions(),
    }
    out_json = folder / "gpu-study.json"
    out_json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    try:
        from ctxsparse.study.report import write_report

        report_path = write_report(db, folder / "report").html
    except Exception as err:  # the database and JSON stand on their own; `ctxsparse report` can retry
        report_path = f"not written ({type(err).__name__}: {err})"
    print("\nlength  rows/s")
    for length, rate in at.items():
        print(f"{length:>6}  {rate:>6.1f}")
    print(
        f"probe at {probe_len}: {probe['rows_per_s']:.1f} rows/s (target 50 at 4096); {rows} rows, n = {n} per cell, "
        f"{study_s:.0f}s; report {report_path}"
    )
    if os.environ.get("OUT"):
        dest = Path(os.environ["OUT"]) / args.name
        shutil.copytree(folder, dest, dirs_exist_ok=True)
        print(f"copied to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
