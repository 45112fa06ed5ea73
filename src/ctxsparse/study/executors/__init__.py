"""Where a study's work units run: here (local, the default) or on Ray actors (ray, an optional extra).

Either way the driver process is the only writer of the results database.
"""

from ctxsparse.study.executors.local import LocalExecutor
from ctxsparse.study.executors.units import UnitWorker, WorkUnit, make_units, task_label

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "LocalExecutor", "UnitWorker", "WorkUnit", "make_units", "task_label"]
