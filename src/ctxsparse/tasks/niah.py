"""Needle-in-a-haystack retrieval after RULER: single, multi-key, multi-value and multi-query variants.

Registered names: niah_single (noise haystack, number values) and niah_single_<haystack>_<value> for
haystack in {noise, words} and value in {number, uuid}; niah_multikey (word haystack, 3 distractor
keys); niah_multikey_dense (the haystack is made only of distractor needles); niah_multivalue (one key,
4 values); niah_multiquery (4 keys asked at once). The first needle of sample i sits at depth
spread_depth(i) (0.5, 0, 1, 1/4, 3/4, ...): depths spread over any number of samples, and a sample never
depends on how many were asked for. The other needles are random.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks import words
from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.haystacks import Stream, insert_at_depths, sentence_stream
from ctxsparse.tasks.length import Draft, fit_length, sample_rng, spread_depth, to_sample

VALUE_KINDS = ("number", "uuid")


def make_value(rng: random.Random, kind: str) -> str:
    """A 7-digit number or a version-4 UUID."""
    if kind == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"Unknown needle value kind {kind!r}; use one of: {', '.join(VALUE_KINDS)}.")


def make_key(rng: random.Random) -> str:
    """A key such as 'quiet-lantern'."""
    return f"{rng.choice(words.ADJECTIVES)}-{rng.choice(words.NOUNS)}"


def _unique(draw: Any, taken: set[str]) -> str:
    while True:
        item = draw()
        if item not in taken:
            taken.add(item)
            return item


def _join_keys(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


@dataclass
class Niah(SyntheticTask):
    """Find the value(s) stored under the queried key(s) among filler text and distractor needles."""

    name: str = "niah_single"
    description: str = "One needle (a key and a 7-digit number) hidden in repeated filler sentences."
    haystack: str = "noise"
    value_kind: str = "number"
    num_queries: int = 1
    num_values: int = 1
    num_distractors: int = 0

    def _needle(self, key: str, value: str) -> str:
        article = "A" if self.num_values > 1 else "The"
        return f"{article} special magic {self.value_kind} for {key} is: {value}."

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        rng = sample_rng(self.name, seed, length, index)
        kind = self.value_kind
        used_keys: set[str] = set()
        used_values: set[str] = set()
        keys = [_unique(lambda: make_key(rng), used_keys) for _ in range(self.num_queries)]
        depth = spread_depth(index)
        needles: list[tuple[float, str]] = []
        answers: list[str] = []
        for q, key in enumerate(keys):
            for v in range(self.num_values):
                value = _unique(lambda: make_value(rng, kind), used_values)
                answers.append(value)
                needles.append((depth if q == v == 0 else rng.random(), self._needle(key, value)))
        for _ in range(self.num_distractors):
            other = _unique(lambda: make_key(rng), used_keys)
            value = _unique(lambda: make_value(rng, kind), used_values)
            needles.append((rng.random(), self._needle(other, value)))

        fill_rng = sample_rng(self.name, seed, length, index, "haystack")
        if self.haystack == "needles":
            stream = Stream(
                lambda g, _i: self._needle(
                    _unique(lambda: make_key(g), used_keys), _unique(lambda: make_value(g, kind), used_values)
                ),
                fill_rng,
            )
        else:
            stream = sentence_stream(self.haystack, fill_rng)

        single = len(needles) == 1 and self.haystack != "needles"
        if single:
            intro = (
                f"A special magic {kind} is hidden within the following text. Make sure to memorize it. "
                f"I will quiz you about the {kind} afterwards."
            )
        else:
            intro = (
                f"Some special magic {kind}s are hidden within the following text. Make sure to memorize "
                f"them. I will quiz you about the {kind}s afterwards."
            )
        about = _join_keys(keys)
        if len(answers) == 1:
            question = f"What is the special magic {kind} for {about} mentioned in the provided text?"
            prefix = f"The special magic {kind} for {about} mentioned in the provided text is"
        else:
            question = f"What are all the special magic {kind}s for {about} mentioned in the provided text?"
            prefix = f"The special magic {kind}s for {about} mentioned in the provided text are"
        meta = {"depth": depth, "haystack": self.haystack, "value_kind": kind, "keys": tuple(keys)}

        def render(n: int) -> Draft:
            body = " ".join(insert_at_depths(stream.take(n), needles))
            return Draft(intro + "\n" + body, question, tuple(answers), meta)

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        per_value = 12 if kind == "number" else 40
        return to_sample(
            draft,
            tokens,
            task=self.name,
            index=index,
            metric="string_match_all",
            answer_prefix=prefix,
            max_new_tokens=max(32, per_value * len(answers) + 16),
            seed=seed,
        )


def _singles() -> list[Niah]:
    out = []
    for haystack in ("noise", "words"):
        for value in VALUE_KINDS:
            text = "repeated filler sentences" if haystack == "noise" else "random English sentences"
            out.append(
                Niah(
                    name=f"niah_single_{haystack}_{value}",
                    description=f"One needle (a key and a {value}) hidden in {text}.",
                    haystack=haystack,
                    value_kind=value,
                )
            )
    return out


NIAH_TASKS: list[Niah] = [
    Niah(),
    *_singles(),
    Niah(
        name="niah_multikey",
        description="One queried needle among 3 distractor needles with other keys, in English sentences.",
        haystack="words",
        num_distractors=3,
    ),
    Niah(
        name="niah_multikey_dense",
        description="One queried needle in a haystack made only of distractor needles with other keys.",
        haystack="needles",
    ),
    Niah(
        name="niah_multivalue",
        description="One key stored with 4 values in English sentences; all 4 must be returned.",
        haystack="words",
        num_values=4,
    ),
    Niah(
        name="niah_multiquery",
        description="4 keys with one value each in English sentences, all asked at once.",
        haystack="words",
        num_queries=4,
    ),
]
