"""A model-free backend and task family for runner, store and report tests."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ctxsparse.study.backend import DecodeOutcome, Prefilled


@dataclass(frozen=True)
class FakeSample:
    task: str
    index: int
    context: str
    question: str
    answers: tuple[str, ...]
    metric: str = "string_match_all"
    answer_prefix: str = ""
    max_new_tokens: int = 8
    chat: bool = True
    meta: dict = field(default_factory=dict)


class FakeTask:
    """Samples whose answer is 'key<index>'; the fake model finds it unless sparsity is high on odd samples."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"fake task {name}"
        self.generated = 0

    def generate(self, tokenizer, length: int, count: int, seed: int = 0) -> list[FakeSample]:
        self.generated += 1
        return [
            FakeSample(self.name, i, f"ctx {self.name} {length} {seed} {i}", "q?", (f"key{i}",)) for i in range(count)
        ]

    def score(self, prediction: str, sample: FakeSample) -> float:
        return float(all(a in prediction for a in sample.answers))


FAKE_TASKS = ("alpha", "beta")


def fake_get_task(name: str) -> FakeTask:
    if name not in FAKE_TASKS:
        raise ValueError(f"Unknown task {name!r}. Known tasks: {', '.join(FAKE_TASKS)}.")
    return FakeTask(name)


class SimulatedCrash(RuntimeError):
    pass


class FakeSession:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.tokenizer = object()
        self.max_positions = backend.max_positions

    def prefill(self, sample: FakeSample) -> Prefilled:
        self.backend.prefills.append((sample.task, sample.context))
        return Prefilled(state=sample.context, context_tokens=len(sample.context.split()), prefill_s=0.01)

    def decode(self, prefilled, sample, config) -> DecodeOutcome:
        method, sparsity = config.method, config.sparsity
        b = self.backend
        if b.fail_after is not None and b.decodes >= b.fail_after:
            raise SimulatedCrash(f"simulated crash after {b.decodes} decodes")
        b.decodes += 1
        if b.delay:
            time.sleep(b.delay)
        correct = method.is_dense or sparsity <= 10 or sample.index % 2 == 0
        text = f"the answer is {sample.answers[0] if correct else 'unknown'}"
        fidelity = {
            "density": 1.0 / sparsity,
            "mass_recall": 1.0 - 0.1 * math.log10(sparsity),
            "output_error": 0.01 * sparsity,
            "kl": 0.001 * sparsity,
            "top1_agreement": 1.0 if correct else 0.5,
        }
        return DecodeOutcome(text, 4, 0.02, fidelity, steps=4)


class FakeBackend:
    """Counts prefills and decodes; fail_after raises on the decode after that many; delay slows decodes."""

    def __init__(self, max_positions: int = 4096, fail_after: int | None = None, delay: float = 0.0) -> None:
        self.max_positions = max_positions
        self.fail_after = fail_after
        self.delay = delay
        self.prefills: list[tuple[str, str]] = []
        self.decodes = 0
        self.opened: list[str] = []

    def open(self, model: str) -> FakeSession:
        if not model.startswith("fake"):
            raise ValueError(f"Unknown model {model!r}. Known models: fake-a, fake-b.")
        self.opened.append(model)
        return FakeSession(self)
