"""Fitting a given text (a JSONL row, a --context) into a token limit, by an explicit rule.

Rules (--truncate):
  none    refuse: the error names the input, its measured tokens and the limit (the default)
  left    drop tokens from the start of the context (keeps the end of the document and the question)
  middle  drop tokens from the middle of the context (keeps its start and end, as LongBench does)
The question is never cut; a question alone longer than the limit is refused. The measured token count
(after any cut) is recorded in sample.meta['length_tokens'] and the number dropped in
sample.meta['truncated_tokens'].
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ctxsparse.tasks.base import QUESTION_SEPARATOR, Sample
from ctxsparse.tasks.length import count_tokens

TRUNCATE_RULES = ("none", "left", "middle")
TRUNCATE_HELP = (
    "what to do with a given text (JSONL row, --context) longer than the length or the model's positions: "
    "none = refuse (default), left = drop the start of the context, middle = drop the middle of the context"
)


def check_rule(rule: str) -> None:
    if rule not in TRUNCATE_RULES:
        raise ValueError(f"--truncate must be one of {', '.join(TRUNCATE_RULES)}; got {rule!r}.")


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _cut(tokenizer: Any, context: str, drop: int, rule: str) -> str:
    ids = _encode(tokenizer, context)
    keep = max(len(ids) - drop, 0)
    if rule == "left":
        return tokenizer.decode(ids[len(ids) - keep :]) if keep else ""
    head = keep // 2
    tail = keep - head
    return tokenizer.decode(ids[:head]) + tokenizer.decode(ids[len(ids) - tail :] if tail else [])


def fit_text(
    context: str, question: str, tokenizer: Any, limit: int, rule: str, where: str, separator: str = ""
) -> tuple[str, int, int]:
    """(context, measured tokens of context + separator + question, tokens dropped) within limit, by rule."""
    check_rule(rule)
    measure = lambda c: count_tokens(tokenizer, c + separator + question)  # noqa: E731
    tokens = measure(context)
    if tokens <= limit:
        return context, tokens, 0
    if rule == "none":
        raise ValueError(
            f"{where} has {tokens} tokens, more than the limit of {limit} (the requested length or the model's "
            "positions); pass --truncate middle (drop the middle of the context) or --truncate left (drop its "
            "start), or ask for a larger length."
        )
    if count_tokens(tokenizer, question) >= limit:
        raise ValueError(f"The question of {where} alone is longer than the limit of {limit} tokens; it is not cut.")
    original, cut = tokens, context
    for _ in range(8):  # re-tokenizing a cut text can merge or split a token at the seam: cut again if needed
        cut = _cut(tokenizer, cut, tokens - limit + (0 if cut is context else 1), rule)
        tokens = measure(cut)
        if tokens <= limit:
            return cut, tokens, original - tokens
    raise ValueError(f"Could not cut {where} to {limit} tokens; give a shorter text.")


def fit_sample(sample: Sample, tokenizer: Any, limit: int, rule: str, where: str) -> Sample:
    """The sample with its context fitted by fit_text; its measured length recorded in meta."""
    separator = QUESTION_SEPARATOR if sample.chat else ""
    context, tokens, dropped = fit_text(sample.context, sample.question, tokenizer, limit, rule, where, separator)
    meta = {**sample.meta, "length_tokens": tokens}
    if dropped:
        meta["truncated_tokens"] = dropped
    return dataclasses.replace(sample, context=context, meta=meta)
