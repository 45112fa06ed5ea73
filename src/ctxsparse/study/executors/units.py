"""Work units of a study and the worker that turns one unit into result rows.

A unit is (model, task, length, sample range) with the configurations each of its samples still lacks.
The same UnitWorker runs units in the driver's process (local executor) and inside Ray actors, so both
executors produce the same rows; only the driver writes them to the database.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxsparse.study.backend import Backend, ModelSession
from ctxsparse.study.plan import Config, StudyPlan
from ctxsparse.study.store import ResultRow

# Metrics whose score can only grow as the answer grows: once at 1.0 the verdict is final.
MONOTONE_METRICS = frozenset({"string_match_all", "string_match_part"})


@dataclass(frozen=True)
class WorkUnit:
    """Samples [start, stop) of one (model, task, length); todo holds (sample, pending configs) pairs."""

    model: str
    task: str
    length: int
    todo: tuple[tuple[int, tuple[Config, ...]], ...]

    @property
    def start(self) -> int:
        return self.todo[0][0]

    @property
    def stop(self) -> int:
        return self.todo[-1][0] + 1

    @property
    def rows(self) -> int:
        return sum(len(configs) for _, configs in self.todo)

    def label(self) -> str:
        return f"{self.model} {self.task}@{self.length} #{self.start}-{self.stop - 1}"


def task_label(spec: str) -> str:
    """The name a task is stored under: a .jsonl file by its stem, anything else as given."""
    return Path(spec).stem if str(spec).endswith(".jsonl") else str(spec)


def sample_hash(sample: Any) -> str:
    """Fingerprint of a sample's text and answers (to tell whether a task generator changed)."""
    payload = json.dumps([sample.context, sample.question, list(sample.answers)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_units(plan: StudyPlan, models: list[str], done: set[tuple], samples_per_unit: int = 1) -> list[WorkUnit]:
    """The pending work in grid order (model, length, task, samples), cut into units of up to samples_per_unit."""
    if samples_per_unit < 1:
        raise ValueError(f"samples_per_unit must be >= 1; got {samples_per_unit}.")
    units: list[WorkUnit] = []
    for model in models:
        configs = plan.configs(model)
        for length in plan.lengths:
            for task in plan.tasks:
                stored = task_label(task)
                todo = []
                for i in range(plan.samples_to_run):
                    pending = tuple(c for c in configs if (c.hash, stored, length, i, plan.seed) not in done)
                    if pending:
                        todo.append((i, pending))
                for at in range(0, len(todo), samples_per_unit):
                    units.append(WorkUnit(model, task, length, tuple(todo[at : at + samples_per_unit])))
    return units


def check_lengths(plan: StudyPlan, model: str, limit: int | None) -> None:
    """Refuse context lengths beyond a model's limit (max_position_embeddings)."""
    too_long = [n for n in plan.lengths if limit is not None and n > limit]
    if too_long:
        raise ValueError(
            f"Context length(s) {too_long} exceed {model}'s limit of {limit} tokens "
            f"(max_position_embeddings); choose --lengths at most {limit}."
        )


def verdict_check(family: Any, sample: Any) -> Callable[[str], bool] | None:
    """A test telling when more answer text can no longer change the sample's score (None: never)."""
    if getattr(sample, "metric", None) not in MONOTONE_METRICS:
        return None
    return lambda text: float(family.score(text, sample)) >= 1.0


class UnitWorker:
    """Runs units against a backend: opens one model at a time, generates each (task, length) once,
    prefills each sample once and decodes every pending configuration from that prefill.

    batch_size > 1 decodes that many samples of a unit together per configuration (sessions with
    decode_many); 1 decodes one sample at a time. stop_at_verdict ends an answer once the task's scorer
    can no longer change its verdict. fault_hook(unit, sample) runs before each sample (fault-injection tests).
    deadline (a time.monotonic() value) stops starting new work once passed; what is left stays pending.
    """

    def __init__(
        self,
        plan: StudyPlan,
        backend: Backend,
        get_task: Callable[[str], Any],
        batch_size: int = 1,
        stop_at_verdict: bool = True,
        sessions: dict[str, ModelSession] | None = None,
        fault_hook: Callable[[WorkUnit, int], None] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.plan = plan
        self.backend = backend
        self.get_task = get_task
        self.batch_size = batch_size
        self.stop_at_verdict = stop_at_verdict
        self.sessions: dict[str, ModelSession] = sessions if sessions is not None else {}
        self.fault_hook = fault_hook
        self.deadline = deadline
        self.tasks: dict[str, Any] = {}
        self._samples: dict[tuple[str, str, int], list[Any]] = {}
        self.prefills = 0

    def session(self, model: str) -> ModelSession:
        if model not in self.sessions:
            self.sessions.clear()
            self.sessions[model] = self.backend.open(model)
        return self.sessions[model]

    def family(self, task: str) -> Any:
        if task not in self.tasks:
            self.tasks[task] = self.get_task(task)
        return self.tasks[task]

    def samples(self, model: str, task: str, length: int) -> list[Any]:
        """The samples this invocation runs, made once per (model, task, length).

        Families that build each sample on its own (make_sample) make only those; others generate the
        whole --samples set and keep its prefix, so a sample is the same whatever --limit says.
        """
        key = (model, task, length)
        if key not in self._samples:
            self._samples.clear()
            tokenizer = self.session(model).tokenizer
            family, seed, count = self.family(task), self.plan.seed, self.plan.samples_to_run
            if hasattr(family, "make_sample"):
                made = [family.make_sample(tokenizer, length, i, seed) for i in range(count)]
            else:
                made = list(family.generate(tokenizer, length, self.plan.samples, seed=seed))[:count]
            self._samples[key] = made
        return self._samples[key]

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def run(self, unit: WorkUnit) -> Iterator[ResultRow]:
        """Rows of the unit, each yielded as soon as it is finished (run_id left for the driver to set)."""
        if self.out_of_time():
            return
        session = self.session(unit.model)
        samples = self.samples(unit.model, unit.task, unit.length)
        if self.batch_size > 1 and hasattr(session, "decode_many"):
            for at in range(0, len(unit.todo), self.batch_size):
                yield from self._run_batch(session, unit, unit.todo[at : at + self.batch_size], samples)
            return
        for i, configs in unit.todo:
            if self.out_of_time():
                return
            if self.fault_hook is not None:
                self.fault_hook(unit, i)
            sample = samples[i]
            prefilled = session.prefill(sample)
            self.prefills += 1
            for config in configs:
                if self.out_of_time():
                    return
                stops = self._stop_kwargs(session, unit.task, [sample], many=False)
                outcome = session.decode(prefilled, sample, config, **stops)
                yield self.row(config, unit.task, unit.length, i, sample, prefilled, outcome)

    def _run_batch(self, session: Any, unit: WorkUnit, todo, samples: list[Any]) -> Iterator[ResultRow]:
        prefilled = {}
        for i, _ in todo:
            if self.fault_hook is not None:
                self.fault_hook(unit, i)
            prefilled[i] = session.prefill(samples[i])
            self.prefills += 1
        configs = list(dict.fromkeys(c for _, cs in todo for c in cs))
        for config in configs:
            if self.out_of_time():
                return
            members = [i for i, cs in todo if config in cs]
            batch = [samples[i] for i in members]
            stops = self._stop_kwargs(session, unit.task, batch, many=True)
            for j, outcome in session.decode_many([prefilled[i] for i in members], batch, config, **stops):
                i = members[j]
                yield self.row(config, unit.task, unit.length, i, samples[i], prefilled[i], outcome)

    def _stop_kwargs(self, session: Any, task: str, samples: list[Any], many: bool) -> dict[str, Any]:
        """stop_when= (one test, or one per sample when many) for sessions that accept it."""
        if not self.stop_at_verdict or not getattr(session, "accepts_stop_when", False):
            return {}
        family = self.family(task)
        checks = [verdict_check(family, s) for s in samples]
        return {"stop_when": checks if many else checks[0]}

    def row(self, config: Config, task: str, length: int, i: int, sample: Any, prefilled, outcome) -> ResultRow:
        fid = outcome.fidelity
        return ResultRow(
            config_hash=config.hash,
            run_id=None,
            model=config.model,
            method=config.method.name,
            spec=config.method.spec,
            params=json.dumps(config.method.params, sort_keys=True),
            sparsity=float(config.sparsity),
            phase=config.phase,
            dtype=config.dtype,
            task=task_label(task),
            length=length,
            sample=i,
            seed=self.plan.seed,
            sample_hash=sample_hash(sample),
            metric=getattr(sample, "metric", None),
            score=float(self.family(task).score(outcome.text, sample)),
            prediction=outcome.text,
            answers=json.dumps(list(sample.answers), ensure_ascii=False),
            density=fid.get("density"),
            mass_recall=fid.get("mass_recall"),
            output_error=fid.get("output_error"),
            kl=fid.get("kl"),
            top1_agreement=fid.get("top1_agreement"),
            steps=outcome.steps,
            prefill_s=prefilled.prefill_s,
            decode_s=outcome.decode_s,
            new_tokens=outcome.new_tokens,
            context_tokens=prefilled.context_tokens,
        )
