"""Scaling of the study on Ray: the same grid with --executor ray on one GPU, then on two.

The grid is a part of the embedded-model GPU study (all six tasks and six methods at 4K tokens, 10x and 50x,
--samples per task), sized to take 2-4 minutes on one H200. Each run writes its own database; the script
records rows per second of each (the whole executor wall time, model loading on the actors included, and
without it), the speedup, whether the two databases hold identical rows (every column but run id, times and
creation stamps), and where the time went (actor model loading, the driver's database writes, idle actor
time). Writes ray-scaling.json and both reports under benchmarks/results/<name>/, copies into $OUT.

    python benchmarks/ray_scaling.py [--samples 64] [--batch-size 32] [--gpus 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from ctxsparse.study.backend import TransformersBackend
from ctxsparse.study.executors.ray import RayExecutor
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.runner import StudyRunner
from ctxsparse.study.store import StudyStore
from ctxsparse.versions import versions

RESULTS = Path(__file__).parent / "results"
TASKS = "niah_single,niah_single_words_uuid,niah_multivalue,niah_multiquery,fwe,agentic"
METHODS = "dense;oracle_topk;double_sparsity;quest;vattention;sink_window"
VOLATILE = {"run_id", "created", "prefill_s", "decode_s"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="smollm2-ray-scaling")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--sparsity", default="10,50")
    p.add_argument("--lengths", default="4096")
    p.add_argument("--samples", type=int, default=64, help="samples per (task, length)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per unit, decoded together")
    p.add_argument("--gpus", default="1,2", help="worker counts to run, one GPU each")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cuda")
    return p.parse_args(argv)


def comparable(rows: list[dict]) -> dict[tuple, dict]:
    return {
        (r["config_hash"], r["task"], r["length"], r["sample"], r["seed"]): {
            k: v for k, v in r.items() if k not in VOLATILE
        }
        for r in rows
    }


def run_once(plan: StudyPlan, args: argparse.Namespace, workers: int, folder: Path) -> tuple[dict, dict]:
    db = folder / f"results-{workers}gpu.db"
    if db.exists():
        db.unlink()
    backend = TransformersBackend(args.device, args.dtype)
    runner = StudyRunner(plan, backend, progress=False, batch_size=args.batch_size, calibrate=True)
    runner.check_names()
    gpus_per_worker = 1 if args.device.startswith("cuda") else 0
    executor = RayExecutor(
        plan,
        backend,
        runner.get_task,
        gpus_per_worker=gpus_per_worker,
        workers=workers,
        batch_size=args.batch_size,
        progress=False,
        load_first_alone=False,  # prepare() has converted and cached the model already
    )
    actors = executor.connect()
    if actors < workers:
        raise RuntimeError(f"asked for {workers} workers, the Ray cluster has room for {actors}")
    with StudyStore.open(db) as store:
        out = runner.run(store, argv=["ray_scaling", f"--workers={workers}"], executor=executor)
        rows = store.rows()
    try:
        from ctxsparse.study.report import write_report

        report = str(write_report(db, folder / f"report-{workers}gpu").out_dir.relative_to(folder))
    except Exception as err:  # the databases and the JSON stand on their own
        report = f"not written ({type(err).__name__}: {err})"
    t = executor.timings
    idle = max(0.0, (t["wall_s"] - t["load_s"]) * workers - t["busy_s"])
    result = {
        "workers": workers,
        "rows": out.written,
        "units": out.units,
        "wall_s": round(out.wall_s, 2),
        "rows_per_s": round(out.rows_per_s, 2),
        "rows_per_s_after_load": round(out.written / max(1e-9, out.wall_s - t["load_s"]), 2),
        "actor_load_s": round(t["load_s"], 2),
        "driver_write_s": round(t["write_s"], 2),
        "actor_busy_s": round(t["busy_s"], 2),
        "actor_idle_s": round(idle, 2),
        "retried_units": executor.retried,
        "database": db.name,
        "report": report,
    }
    print(f"  {workers} GPU(s): {result}", flush=True)
    return result, comparable(rows)


def prepare(plan: StudyPlan, args: argparse.Namespace) -> None:
    """Load the model once here (converting and caching it) and make the Double Sparsity calibration."""
    import torch

    runner = StudyRunner(plan, TransformersBackend(args.device, args.dtype), progress=False, calibrate=True)
    runner.check_names()
    runner.open_models()
    runner.release_models()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    import ray
    import torch

    args = parse_args(argv)
    folder = RESULTS / args.name
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CTXSPARSE_CALIBRATION_DIR", str(folder / "calibration"))
    counts = [int(n) for n in args.gpus.split(",")]
    available = torch.cuda.device_count() if args.device.startswith("cuda") else os.cpu_count()
    if max(counts) > available:
        print(f"note: {available} device(s) here; runs needing more are skipped", flush=True)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {k: os.environ[k] for k in ("PYTHONPATH", "CTXSPARSE_GGUF", "CTXSPARSE_CALIBRATION_DIR") if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    ray.init(runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False)
    plan = StudyPlan.build(
        [args.model],
        args.methods.split(";"),
        [float(s) for s in args.sparsity.split(",")],
        args.tasks.split(","),
        [int(n) for n in args.lengths.split(",")],
        samples=args.samples,
        dtype=args.dtype,
    )
    prepare(plan, args)
    runs, tables = [], {}
    for workers in counts:
        if workers > available:
            continue
        try:
            result, table = run_once(plan, args, workers, folder)
        except Exception as err:  # one failing run must not stop the other
            print(f"  {workers} GPU(s) failed: {type(err).__name__}: {err}", flush=True)
            runs.append({"workers": workers, "error": f"{type(err).__name__}: {err}"})
            continue
        runs.append(result)
        tables[workers] = table
    ok = [r for r in runs if "error" not in r]
    speedup = identical = None
    if len(ok) >= 2:
        base, top = ok[0], ok[-1]
        speedup = round(top["rows_per_s"] / base["rows_per_s"], 3) if base["rows_per_s"] else None
        identical = tables[base["workers"]] == tables[top["workers"]]
    payload = {
        "benchmark": "ray-scaling",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "grid": plan.describe(),
        "grid_rows": plan.size(),
        "batch_size": args.batch_size,
        "runs": runs,
        "speedup": speedup,
        "target_speedup": 1.8,
        "identical_rows": identical,
        "command": "bash benchmarks/ray_scaling.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "versions": versions(),
    }
    (folder / "ray-scaling.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print("\nGPUs  rows   wall s  rows/s  rows/s after load  load s  write s  idle s")
    for r in ok:
        print(
            f"{r['workers']:>4}  {r['rows']:>5}  {r['wall_s']:>6.1f}  {r['rows_per_s']:>6.1f}  "
            f"{r['rows_per_s_after_load']:>17.1f}  {r['actor_load_s']:>6.1f}  {r['driver_write_s']:>7.1f}  "
            f"{r['actor_idle_s']:>6.1f}"
        )
    print(f"speedup {speedup} (target 1.8), identical rows: {identical}")
    if os.environ.get("OUT"):
        dest = Path(os.environ["OUT"]) / args.name
        shutil.copytree(folder, dest, dirs_exist_ok=True)
        print(f"copied to {dest}")
    # Shut Ray down only once everything is written: its shutdown was seen to hang past a run's time limit.
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
