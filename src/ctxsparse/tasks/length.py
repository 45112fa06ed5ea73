"""Length targeting: grow a prompt unit by unit until it holds the requested number of tokens.

A family renders a draft for any number n of filler units (sentences, list items, log lines); the
draft text must grow with n and be deterministic in n. `fit_length` finds the n whose exact token
count is closest to the target with a handful of tokenizations (interpolation between a bracket).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ctxsparse.tasks.base import QUESTION_SEPARATOR, Sample

#: Aim this close (relative) to the target; the contract promises 5%.
AIM = 0.01


def count_tokens(tokenizer: Any, text: str) -> int:
    """Number of tokens of `text`, without special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return len(backend.encode(text, add_special_tokens=False).ids)
    return len(tokenizer.encode(text, add_special_tokens=False))


def sample_rng(*parts: object) -> random.Random:
    """A private generator seeded from the parts (task name, seed, length, index): never global state."""
    return random.Random("|".join(str(p) for p in parts))


def spread_depth(index: int) -> float:
    """Depth in [0, 1] of sample `index`, from the index alone: 0.5, 0, 1, then 1/4, 3/4, 1/8, 3/8, ...

    Each new level halves the gaps left by the earlier samples, so the first n samples spread over the
    haystack for any n, and asking for more samples never moves the earlier ones (their identity is
    (task, length, seed, index)).
    """
    if index < 0:
        raise ValueError(f"Sample index must be >= 0; got {index}.")
    if index < 3:
        return (0.5, 0.0, 1.0)[index]
    m = index - 1
    level = m.bit_length()  # samples 2^(level-1)+1 .. 2^level sit at the odd multiples of 1 / 2^level
    offset = m - (1 << (level - 1))
    return (2 * offset + 1) / (1 << level)


@dataclass
class Draft:
    """A sample before its length is settled."""

    context: str
    question: str
    answers: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    chat: bool = True

    def text(self) -> str:
        return self.context + (QUESTION_SEPARATOR if self.chat else "") + self.question


def fit_length(
    render: Callable[[int], Draft], tokenizer: Any, target: int, task: str, probe: int = 8
) -> tuple[Draft, int]:
    """The draft (and its token count) whose size is closest to `target` tokens.

    Raises ValueError when the fixed part of the prompt alone is longer than the target allows.
    """
    if target <= 0:
        raise ValueError(f"Target length must be a positive number of tokens, got {target}.")
    cache: dict[int, tuple[Draft, int]] = {}

    def measure(n: int) -> int:
        if n not in cache:
            draft = render(n)
            cache[n] = (draft, count_tokens(tokenizer, draft.text()))
        return cache[n][1]

    tol = max(1, int(AIM * target))
    base = measure(0)
    if base > target * 1.05:
        raise ValueError(f"Task {task!r} needs at least {base} tokens with this tokenizer; ask for a length >= {base}.")
    lo, hi = 0, None
    n = probe
    while hi is None:
        got = measure(n)
        if got >= target:
            hi = n
        else:
            lo = n
            slope = max((got - base) / n, 1e-3)
            n = max(n + 1, int(n + 1.1 * (target - got) / slope) + 1)
    steps = 0
    while hi - lo > 1 and abs(measure(lo) - target) > tol and abs(measure(hi) - target) > tol:
        t_lo, t_hi = measure(lo), measure(hi)
        guess = lo + round((target - t_lo) * (hi - lo) / max(t_hi - t_lo, 1))
        mid = min(max(guess if steps < 4 else (lo + hi) // 2, lo + 1), hi - 1)
        steps += 1
        if measure(mid) >= target:
            hi = mid
        else:
            lo = mid
    best = min(cache, key=lambda k: (abs(cache[k][1] - target), k))
    return cache[best]


def to_sample(
    draft: Draft,
    tokens: int,
    *,
    task: str,
    index: int,
    metric: str,
    answer_prefix: str = "",
    max_new_tokens: int = 32,
    seed: int = 0,
) -> Sample:
    """Freeze a fitted draft into a Sample, recording its measured length and seed in meta."""
    meta = {**draft.meta, "length_tokens": tokens, "seed": seed}
    return Sample(
        task=task,
        index=index,
        context=draft.context,
        question=draft.question,
        answers=draft.answers,
        metric=metric,
        answer_prefix=answer_prefix,
        max_new_tokens=max_new_tokens,
        chat=draft.chat,
        meta=meta,
    )
