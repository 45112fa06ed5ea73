"""Haystacks: prefix-stable streams of filler sentences and the insertion of needles at relative depths."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ctxsparse.tasks import words

HAYSTACKS = ("noise", "words")


class Stream:
    """A lazily grown list of units, unit i drawn by `make(rng, i)`; `take(n)` is stable in n."""

    def __init__(self, make: Callable[[random.Random, int], str], rng: random.Random) -> None:
        self._make = make
        self._rng = rng
        self._items: list[str] = []

    def take(self, n: int) -> list[str]:
        while len(self._items) < n:
            self._items.append(self._make(self._rng, len(self._items)))
        return self._items[:n]


def sentence_stream(kind: str, rng: random.Random) -> Stream:
    """'noise': the five filler sentences over and over; 'words': random sentences from the word lists."""
    if kind == "noise":
        cycle = words.FILLER_SENTENCES
        return Stream(lambda _rng, i: cycle[i % len(cycle)], rng)
    if kind == "words":
        return Stream(lambda gen, _i: words.sentence(gen), rng)
    raise ValueError(f"Unknown haystack {kind!r}; use one of: {', '.join(HAYSTACKS)}.")


def insert_at_depths(units: Sequence[str], needles: Sequence[tuple[float, str]]) -> list[str]:
    """Units with each (depth, text) needle placed before unit round(depth * len(units)).

    Needles at equal positions keep their given order; depth 0 is the start, 1 the end.
    """
    slots: list[list[str]] = [[] for _ in range(len(units) + 1)]
    for depth, text in needles:
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"Needle depth must lie in [0, 1], got {depth}.")
        slots[round(depth * len(units))].append(text)
    out: list[str] = []
    for position, unit in enumerate(units):
        out.extend(slots[position])
        out.append(unit)
    out.extend(slots[len(units)])
    return out
