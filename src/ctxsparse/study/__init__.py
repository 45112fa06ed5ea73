"""The sparsity study: the grid (plan), a resumable runner, the SQLite results store, the report, and replay.

plan = StudyPlan.build(["smollm2-135m"], ["oracle_topk"], [10, 50], ["niah_single"], [2048], samples=5)
runner = StudyRunner(plan, TransformersBackend("cuda"), batch_size=64)   # batch_size 1 on CPU
runner.check_names(); runner.open_models()
with StudyStore.open("results.db") as store:
    runner.run(store)            # or runner.run(store, executor=RayExecutor(plan, backend, get_task, ...))
write_report("results.db", "report/")
"""

from ctxsparse.study.backend import DecodeOutcome, Prefilled, TransformersBackend
from ctxsparse.study.executors import LocalExecutor, UnitWorker, WorkUnit
from ctxsparse.study.plan import Config, MethodSpec, StudyPlan, split_methods
from ctxsparse.study.replay import ReplayResult, ReplayTurn, load_transcript, replay
from ctxsparse.study.report_tables import Cell, aggregate
from ctxsparse.study.runner import StudyOutcome, StudyRunner
from ctxsparse.study.stats import Interval, PairedDifference, mean_interval, paired_difference, wilson
from ctxsparse.study.store import ResultRow, StoreError, StudyStore

__all__ = [
    "Cell",
    "Config",
    "DecodeOutcome",
    "Interval",
    "LocalExecutor",
    "MethodSpec",
    "PairedDifference",
    "Prefilled",
    "ReplayResult",
    "ReplayTurn",
    "Report",
    "ResultRow",
    "StoreError",
    "StudyOutcome",
    "StudyPlan",
    "StudyRunner",
    "StudyStore",
    "TransformersBackend",
    "UnitWorker",
    "WorkUnit",
    "aggregate",
    "load_transcript",
    "mean_interval",
    "paired_difference",
    "replay",
    "split_methods",
    "wilson",
    "write_report",
]


def __getattr__(name: str):
    """Report and write_report load matplotlib, so they are imported on first use."""
    if name in ("Report", "write_report"):
        from ctxsparse.study import report

        return getattr(report, name)
    raise AttributeError(f"module 'ctxsparse.study' has no attribute {name!r}")
