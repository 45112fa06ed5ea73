"""The recorded GPU study of the embedded model (SmolLM2-135M) on one GPU, through ctxsparse.Engine.

Grid: tasks the model solves densely at least sometimes (niah_single, niah_single_words_uuid,
niah_multivalue, niah_multiquery, fwe, agentic) at 4K, 2K and 8K tokens (4K first: the throughput target
is stated there); dense, oracle top-k, Double Sparsity, Quest, vAttention and sink+window at 10x, 20x,
50x, 100x; --samples per cell. Oracle top-k, Double Sparsity and Quest select per GQA group
(granularity=kv_head: the engine's GPU pipelines); vAttention selects per query head, on its own pipeline
(earlier runs took the engine's batched select: gpu-study.json's decode_modes say which).

Resumable: every row is committed as it finishes, and a run stops starting work at --budget-s, so the grid
can be finished over several invocations on one database. Each invocation appends its stages (rows
written, wall time, per length) to stages.jsonl; gpu-study.json sums them, and the report is written once
the grid is complete (or with --report).

    python benchmarks/gpu_study.py [--budget-s 540] [--name smollm2-gpu-study] [--out-dir DIR]
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
METHODS = ";".join(
    [
        "dense",
        "oracle_topk:granularity=kv_head,aggregate=logit_max",
        "double_sparsity:granularity=kv_head,aggregate=logit_max",
        "quest:granularity=kv_head",
        "vattention",
        "sink_window",
    ]
)
SPARSITY = "10,20,50,100"
LENGTHS = "4096,2048,8192"


class LoadedOnce:
    """Backend that loads the model once and hands the same session to every stage."""

    def __init__(self, inner: TransformersBackend) -> None:
        self.inner = inner
        self.sessions: dict[str, Any] = {}

    def open(self, model: str) -> Any:
        if model not in self.sessions:
            self.sessions[model] = self.inner.open(model)
        return self.sessions[model]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="smollm2-gpu-study", help="folder under benchmarks/results/")
    p.add_argument("--out-dir", help="where the database and JSON live (default benchmarks/results/<name>)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--methods", default=METHODS, help="method specs separated by ';'")
    p.add_argument("--sparsity", default=SPARSITY)
    p.add_argument("--lengths", default=LENGTHS)
    p.add_argument("--samples", type=int, default=100, help="samples per (task, length)")
    p.add_argument("--budget-s", type=float, default=540.0, help="start no new work after this many seconds")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--decode-path", default="engine", choices=("auto", "engine", "transformers"))
    p.add_argument("--no-fidelity", action="store_true", help="skip the dense teacher-forced pass (KL, top-1)")
    p.add_argument(
        "--dense-tensor-cores",
        default="auto",
        choices=("auto", "on", "off"),
        help="FlashInfer's switch for dense decode: auto times both and keeps the faster; on/off pins it",
    )
    p.add_argument("--report", action="store_true", help="write the report even if the grid is not complete")
    return p.parse_args(argv)


def plan_for(args: argparse.Namespace, lengths: list[int]) -> StudyPlan:
    return StudyPlan.build(
        [args.model],
        args.methods.split(";"),
        [float(s) for s in args.sparsity.split(",")],
        args.tasks.split(","),
        lengths,
        samples=args.samples,
        dtype=args.dtype,
    )


def run_stage(args, plan: StudyPlan, backend: LoadedOnce, families: dict, db: Path, deadline: float) -> dict:
    runner = StudyRunner(
        plan, backend, get_task=families.__getitem__, progress=False, batch_size=args.batch_size, calibrate=True
    )
    runner.check_names()
    runner.open_models()
    with StudyStore.open(db) as store:
        out = runner.run(store, argv=["gpu_study", str(plan.lengths[0])], deadline=deadline)
    return {
        "length": plan.lengths[0],
        "rows_written": out.written,
        "rows_skipped": out.skipped,
        "rows_pending": out.pending,
        "prefills": out.prefills,
        "wall_s": round(out.wall_s, 2),
        "rows_per_s": round(out.rows_per_s, 2),
    }


def summarize(args, folder: Path, db: Path, device: str, command: str) -> dict:
    """gpu-study.json: every invocation's stages summed per length, and what the database holds."""
    stages = [json.loads(line) for line in (folder / "stages.jsonl").read_text().splitlines() if line.strip()]
    lengths = [int(n) for n in args.lengths.split(",")]
    per_length = {}
    for n in lengths:
        mine = [s for s in stages if s["length"] == n and s["rows_written"]]
        rows, secs = sum(s["rows_written"] for s in mine), sum(s["wall_s"] for s in mine)
        per_length[str(n)] = {"rows_written": rows, "wall_s": round(secs, 1),
                              "rows_per_s": round(rows / secs, 2) if secs else None}  # fmt: skip
    with StudyStore.open(db, create=False) as store:
        rows = store.count()
    grid = plan_for(args, lengths).size()
    return {
        "benchmark": "gpu-study",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "model": args.model,
        "dtype": args.dtype,
        "decode_path": args.decode_path,
        "fidelity": not args.no_fidelity,
        "batch_size": args.batch_size,
        "tasks": args.tasks.split(","),
        "methods": args.methods.split(";"),
        "sparsities": [float(s) for s in args.sparsity.split(",")],
        "lengths": lengths,
        "samples_per_cell": args.samples,
        "rows": rows,
        "grid_rows": grid,
        "complete": rows >= grid,
        "by_length": per_length,
        "target_rows_per_s_at_4k": 50,
        "stages": stages,
        "command": command,
        "versions": versions(),
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    start = time.perf_counter()
    deadline = time.monotonic() + args.budget_s
    folder = Path(args.out_dir) if args.out_dir else RESULTS / args.name
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "results.db"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    pinned = {"auto": None, "on": True, "off": False}[args.dense_tensor_cores]
    backend = LoadedOnce(TransformersBackend(args.device, args.dtype, args.decode_path,
                                             fidelity=not args.no_fidelity, dense_tensor_cores=pinned))  # fmt: skip
    families = {t: default_get_task(t) for t in args.tasks.split(",")}
    given = list(argv if argv is not None else sys.argv[1:])
    if "--out-dir" in given:  # where this host kept the files says nothing about the study
        at = given.index("--out-dir")
        del given[at : at + 2]
    command = "benchmarks/gpu_study.sh " + " ".join(given)
    load_start = time.perf_counter()
    session = backend.open(args.model)
    print(f"{device}: model loaded in {time.perf_counter() - load_start:.1f}s ({type(session).__name__})", flush=True)
    for length in [int(n) for n in args.lengths.split(",")]:
        if time.monotonic() >= deadline:
            break
        stage = run_stage(args, plan_for(args, [length]), backend, families, db, deadline)
        stage.update(device=device, at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     decode_modes=dict(getattr(session, "modes", {})))  # fmt: skip
        with open(folder / "stages.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(stage) + "\n")
        print(f"  stage {stage}", flush=True)
    payload = summarize(args, folder, db, device, command)
    payload["decode_modes"] = dict(getattr(session, "modes", {}))
    (folder / "gpu-study.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if payload["complete"] or args.report:
        from ctxsparse.study.report import write_report

        write_report(db, folder / "report")
    print("\nlength  rows written  rows/s")
    for length, rec in payload["by_length"].items():
        print(f"{length:>6}  {rec['rows_written']:>12}  {rec['rows_per_s'] or 0:>6.1f}")
    print(
        f"{payload['rows']} of {payload['grid_rows']} rows in the database; this run {time.perf_counter() - start:.0f}s"
    )
    if os.environ.get("OUT"):
        dest = Path(os.environ["OUT"]) / args.name
        shutil.copytree(folder, dest, dirs_exist_ok=True)
        print(f"copied to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
