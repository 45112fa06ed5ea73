"""Scorers: RULER's string-match metrics (case-insensitive) and a final-number match for chain-of-thought math."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctxsparse.tasks.base import Sample

_CONTROL = re.compile(r"[\x00-\x1f]")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"answer\s+is", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def clean_prediction(prediction: str) -> str:
    """Control characters become newlines and the ends are stripped (as RULER post-processes)."""
    return _CONTROL.sub("\n", prediction).strip()


def string_match_all(prediction: str, answers: Sequence[str]) -> float:
    """Fraction of the references found in the prediction (RULER's metric for tasks with several answers)."""
    if not answers:
        raise ValueError("string_match_all needs at least one reference answer.")
    text = clean_prediction(prediction).lower()
    return sum(str(ref).lower() in text for ref in answers) / len(answers)


def string_match_part(prediction: str, answers: Sequence[str]) -> float:
    """1 if any reference is found in the prediction (RULER's metric for QA with alternative answers)."""
    if not answers:
        raise ValueError("string_match_part needs at least one reference answer.")
    text = clean_prediction(prediction).lower()
    return float(any(str(ref).lower() in text for ref in answers))


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def extract_number(text: str) -> float | None:
    """The final answer of a worked solution.

    The first number after the last "answer is", else the last \\boxed{...} number, else the last number.
    Thousands separators are accepted ("1,234"); None when the text holds no number.
    """
    hits = list(_ANSWER_IS.finditer(text))
    if hits:
        found = _NUMBER.search(text, hits[-1].end())
        if found:
            return _to_float(found.group())
    boxed = [m for m in _BOXED.finditer(text) if _NUMBER.search(m.group(1))]
    if boxed:
        return _to_float(_NUMBER.findall(boxed[-1].group(1))[-1])
    numbers = _NUMBER.findall(text)
    return _to_float(numbers[-1]) if numbers else None


def number_match(prediction: str, answers: Sequence[str]) -> float:
    """1 if the prediction's final number equals any reference number (relative tolerance 1e-6)."""
    got = extract_number(prediction)
    if got is None:
        return 0.0
    for ref in answers:
        want = extract_number(str(ref))
        if want is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want)):
            return 1.0
    return 0.0


METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "string_match_all": string_match_all,
    "string_match_part": string_match_part,
    "number": number_match,
}


def score(prediction: str, sample: Sample) -> float:
    """Score a prediction with the metric the sample names."""
    try:
        metric = METRICS[sample.metric]
    except KeyError:
        raise ValueError(
            f"Sample of task {sample.task!r} names unknown metric {sample.metric!r}; use one of: {', '.join(METRICS)}."
        ) from None
    return metric(prediction, sample.answers)
