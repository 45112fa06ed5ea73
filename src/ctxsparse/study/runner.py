"""Runs a StudyPlan: each sample's context is prefilled once and every pending configuration decodes
from that prefill; each finished (configuration, sample) is committed at once, so a rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from ctxsparse.study.backend import Backend, ModelSession
from ctxsparse.study.plan import Config, StudyPlan
from ctxsparse.study.store import ResultRow, StudyStore
from ctxsparse.versions import versions


@dataclass
class StudyOutcome:
    """What one invocation did."""

    written: int
    skipped: int
    prefills: int
    wall_s: float
    run_id: int


def sample_hash(sample: Any) -> str:
    """Fingerprint of a sample's text and answers (to tell whether a task generator changed)."""
    payload = json.dumps([sample.context, sample.question, list(sample.answers)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _default_get_task(name: str) -> Any:
    from ctxsparse.tasks import get_task

    return get_task(name)


class StudyRunner:
    """Validate with check_names() and open_models() (both before any work), then run() against a store.

    backend opens models (TransformersBackend for real runs, a fake in tests); get_task resolves task
    names (ctxsparse.tasks.get_task by default).
    """

    def __init__(
        self,
        plan: StudyPlan,
        backend: Backend,
        get_task: Callable[[str], Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.plan = plan
        self.backend = backend
        self.get_task = get_task or _default_get_task
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self._sessions: dict[str, ModelSession] = {}

    def check_names(self) -> None:
        """Resolve every task and method name; unknown ones raise ValueError listing the known ones."""
        from ctxsparse import make_selector

        self.tasks = {name: self.get_task(name) for name in self.plan.tasks}
        for method in self.plan.methods:
            make_selector(method.spec)

    def open_models(self) -> None:
        """Load each model and refuse context lengths beyond its max_position_embeddings.

        Only the last model stays loaded; run() starts with it, so a one-model study loads it once.
        """
        for model in self.plan.models:
            self._sessions.clear()
            session = self.backend.open(model)
            limit = session.max_positions
            too_long = [n for n in self.plan.lengths if limit is not None and n > limit]
            if too_long:
                raise ValueError(
                    f"Context length(s) {too_long} exceed {model}'s limit of {limit} tokens "
                    f"(max_position_embeddings); choose --lengths at most {limit}."
                )
            self._sessions[model] = session

    def _session(self, model: str) -> ModelSession:
        if model not in self._sessions:
            self._sessions.clear()
            self._sessions[model] = self.backend.open(model)
        return self._sessions[model]

    def pending(self, done: set[tuple]) -> dict[tuple[str, str, int, int], list[Config]]:
        """(model, task, length, sample) -> configurations not yet stored, in grid order."""
        plan = self.plan
        out: dict[tuple[str, str, int, int], list[Config]] = {}
        for model in self._model_order():
            configs = plan.configs(model)
            for length in plan.lengths:
                for task in plan.tasks:
                    for i in range(plan.samples_to_run):
                        todo = [c for c in configs if (c.hash, task, length, i, plan.seed) not in done]
                        if todo:
                            out[(model, task, length, i)] = todo
        return out

    def _model_order(self) -> list[str]:
        loaded = [m for m in self.plan.models if m in self._sessions]
        return loaded + [m for m in self.plan.models if m not in self._sessions]

    def run(self, store: StudyStore, argv: list[str] | None = None) -> StudyOutcome:
        """Run every pending (configuration, sample); check_names() and open_models() must come first."""
        if not self.tasks:
            self.check_names()
        start = time.perf_counter()
        run_id = store.start_run(argv or [], self.plan.describe(), versions())
        done = store.done_keys()
        todo = self.pending(done)
        total = sum(len(v) for v in todo.values())
        skipped = self.plan.size() - total
        written = prefills = 0
        samples: dict[tuple[str, str, int], list[Any]] = {}
        bar = tqdm(total=total, unit="row", disable=not self.progress, dynamic_ncols=True, desc="study")
        try:
            for (model, task, length, i), configs in todo.items():
                session = self._session(model)
                key = (model, task, length)
                if key not in samples:
                    samples.clear()
                    family = self.tasks[task]
                    generated = family.generate(session.tokenizer, length, self.plan.samples, seed=self.plan.seed)
                    samples[key] = list(generated)[: self.plan.samples_to_run]
                sample = samples[key][i]
                bar.set_postfix_str(f"{model} {task}@{length} #{i}", refresh=False)
                prefilled = session.prefill(sample)
                prefills += 1
                for config in configs:
                    outcome = session.decode(prefilled, sample, config)
                    row = self._row(config, task, length, i, sample, prefilled, outcome, run_id)
                    written += store.add(row)
                    bar.update(1)
        finally:
            bar.close()
        store.finish_run(run_id)
        return StudyOutcome(written, skipped, prefills, time.perf_counter() - start, run_id)

    def _row(
        self, config: Config, task: str, length: int, i: int, sample: Any, prefilled, outcome, run_id
    ) -> ResultRow:
        family = self.tasks[task]
        fid = outcome.fidelity
        return ResultRow(
            config_hash=config.hash,
            run_id=run_id,
            model=config.model,
            method=config.method.name,
            spec=config.method.spec,
            params=json.dumps(config.method.params, sort_keys=True),
            sparsity=float(config.sparsity),
            phase=config.phase,
            dtype=config.dtype,
            task=task,
            length=length,
            sample=i,
            seed=self.plan.seed,
            sample_hash=sample_hash(sample),
            metric=getattr(sample, "metric", None),
            score=float(family.score(outcome.text, sample)),
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
