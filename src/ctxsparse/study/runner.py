"""Runs a StudyPlan: each sample's context is prefilled once and every pending configuration decodes
from that prefill; each finished (configuration, sample) is committed at once, so a rerun resumes.

The pending work is cut into units (model, task, length, sample range); an executor runs them (here, or
on Ray actors) and hands finished rows back to this process, the database's only writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ctxsparse.study.backend import Backend, ModelSession
from ctxsparse.study.calibration_check import ensure_calibrated
from ctxsparse.study.executors.local import LocalExecutor
from ctxsparse.study.executors.units import (
    UnitWorker,
    WorkUnit,
    check_lengths,
    make_units,
    sample_hash,
    task_label,
)
from ctxsparse.study.plan import StudyPlan
from ctxsparse.study.store import ResultRow, StudyStore
from ctxsparse.versions import versions

__all__ = ["Executor", "StudyOutcome", "StudyRunner", "check_lengths", "default_get_task", "sample_hash", "task_label"]


@dataclass
class StudyOutcome:
    """What one invocation did."""

    written: int
    skipped: int
    prefills: int
    wall_s: float
    run_id: int
    units: int = 0
    executor: str = "local"
    pending: int = 0  # rows left undone (a deadline passed)

    @property
    def rows_per_s(self) -> float:
        return self.written / self.wall_s if self.wall_s > 0 else 0.0


class Executor(Protocol):
    """Runs work units and calls write(row) in this process for every finished row."""

    name: str
    prefills: int

    def execute(self, units: list[WorkUnit], write: Callable[[ResultRow], None]) -> None: ...


def default_get_task(name: str) -> Any:
    from ctxsparse.tasks import get_task

    return get_task(name)


class StudyRunner:
    """Validate with check_names() and open_models() (both before any work), then run() against a store.

    backend opens models (TransformersBackend for real runs, a fake in tests); get_task resolves task
    names (ctxsparse.tasks.get_task by default). batch_size > 1 decodes that many samples of a unit at
    once per configuration; samples_per_unit sets the unit size (default: batch_size).
    """

    def __init__(
        self,
        plan: StudyPlan,
        backend: Backend,
        get_task: Callable[[str], Any] | None = None,
        progress: bool = True,
        batch_size: int = 1,
        samples_per_unit: int | None = None,
        stop_at_verdict: bool = True,
        calibrate: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        self.plan = plan
        self.backend = backend
        self.get_task = get_task or default_get_task
        self.progress = progress
        self.batch_size = batch_size
        self.samples_per_unit = samples_per_unit or batch_size
        self.stop_at_verdict = stop_at_verdict
        self.calibrate = calibrate
        self.tasks: dict[str, Any] = {}
        self._sessions: dict[str, ModelSession] = {}

    def check_names(self) -> None:
        """Resolve every task and method name; unknown ones raise ValueError listing the known ones."""
        from ctxsparse import make_selector

        self.tasks = {name: self.get_task(name) for name in self.plan.tasks}
        labels = [task_label(name) for name in self.plan.tasks]
        clash = sorted({label for label in labels if labels.count(label) > 1})
        if clash:
            raise ValueError(f"Tasks {clash} would be stored under the same name; rename one of the .jsonl files.")
        for method in self.plan.methods:
            make_selector(method.spec)

    def open_models(self) -> None:
        """Load each model; refuse context lengths beyond its max_position_embeddings and a missing Double
        Sparsity calibration (made now when calibrate=True).

        Only the last model stays loaded; run() starts with it, so a one-model study loads it once.
        """
        for model in self.plan.models:
            self._sessions.clear()
            session = self.backend.open(model)
            check_lengths(self.plan, model, session.max_positions)
            ensure_calibrated(self.plan, model, session, self.calibrate)
            self._sessions[model] = session

    def session(self, model: str) -> ModelSession:
        """The loaded model and tokenizer of `model` (loading it in place of the one held, if another)."""
        if model not in self._sessions:
            self._sessions.clear()
            self._sessions[model] = self.backend.open(model)
        return self._sessions[model]

    def release_models(self) -> None:
        """Drop the loaded model (e.g. once validated here, when Ray actors do the work)."""
        self._sessions.clear()

    def model_order(self) -> list[str]:
        """Models in plan order, the one already loaded first."""
        loaded = [m for m in self.plan.models if m in self._sessions]
        return loaded + [m for m in self.plan.models if m not in self._sessions]

    def units(self, done: set[tuple]) -> list[WorkUnit]:
        """The pending work units given the keys already stored."""
        return make_units(self.plan, self.model_order(), done, self.samples_per_unit)

    def worker(self, **kwargs: Any) -> UnitWorker:
        """A UnitWorker for this plan sharing the loaded model (the local executor's)."""
        worker = UnitWorker(
            self.plan,
            self.backend,
            self.get_task,
            batch_size=self.batch_size,
            stop_at_verdict=self.stop_at_verdict,
            sessions=self._sessions,
            **kwargs,
        )
        worker.tasks.update(self.tasks)
        return worker

    def run(
        self,
        store: StudyStore,
        argv: list[str] | None = None,
        executor: Executor | None = None,
        deadline: float | None = None,
    ) -> StudyOutcome:
        """Run every pending (configuration, sample); check_names() and open_models() must come first.

        deadline (time.monotonic(), local executor): start no new work after it; the rest stays pending.
        """
        if not self.tasks:
            self.check_names()
        executor = executor or LocalExecutor(self.worker(deadline=deadline), progress=self.progress)
        start = time.perf_counter()
        run_id = store.start_run(argv or [], self.plan.describe(), versions())
        units = self.units(store.done_keys())
        skipped = self.plan.size() - sum(u.rows for u in units)
        written = 0

        def write(row: ResultRow) -> None:
            nonlocal written
            row.run_id = run_id
            written += store.add(row)

        executor.execute(units, write)
        store.finish_run(run_id)
        wall = time.perf_counter() - start
        pending = sum(u.rows for u in units) - written
        return StudyOutcome(written, skipped, executor.prefills, wall, run_id, len(units), executor.name, pending)
