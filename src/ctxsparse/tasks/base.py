"""The task contract the study runner codes against: a Sample to decode and a TaskFamily that makes and scores them."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from ctxsparse.tasks import scoring

#: What joins `context` and `question` of a chat sample into the one user turn the model reads.
QUESTION_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Sample:
    """One prompt with its references.

    `context` is prefilled densely; `question` (and the generated tokens) run sparse. With chat=True
    the runner wraps `context + QUESTION_SEPARATOR + question` as one user turn with the model's chat
    template, starts the assistant turn and appends `answer_prefix`. With chat=False both parts are
    already templated text: the prompt is exactly `context + question` (tokenize without special tokens).
    """

    task: str
    index: int
    context: str
    question: str
    answers: tuple[str, ...]
    metric: str
    answer_prefix: str = ""
    max_new_tokens: int = 32
    chat: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def prompt_text(self) -> str:
        """Context and question as one text, without chat template: what length targeting measures."""
        if self.chat:
            return self.context + QUESTION_SEPARATOR + self.question
        return self.context + self.question


class TaskFamily(abc.ABC):
    """A named generator of samples plus its scorer (by default, the metric named by each sample)."""

    name: str
    description: str

    @abc.abstractmethod
    def generate(self, tokenizer: Any, length: int, count: int, seed: int = 0) -> list[Sample]:
        """`count` samples whose prompt text is about `length` tokens of `tokenizer`, the same for a seed."""

    def score(self, prediction: str, sample: Sample) -> float:
        """Score in [0, 1] of one prediction (the generated text after `answer_prefix`)."""
        return scoring.score(prediction, sample)


class SyntheticTask(TaskFamily):
    """A family that builds each sample on its own from (seed, length, index): generate() is the loop."""

    def generate(self, tokenizer: Any, length: int, count: int, seed: int = 0) -> list[Sample]:
        return [self.make_sample(tokenizer, length, i, seed) for i in range(count)]

    @abc.abstractmethod
    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        """Sample number `index`, deterministic in (seed, length, index)."""
