"""Variable tracking after RULER: follow chains of assignments (VAR A = 12345, VAR B = A, ...) hidden in noise.

The answer is every variable of the queried chain; further chains with other values act as distractors.
Statements of one chain appear in order, at random depths.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.haystacks import insert_at_depths, sentence_stream
from ctxsparse.tasks.length import Draft, fit_length, sample_rng, to_sample


def _variable_names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
        if name not in names:
            names.append(name)
    return names


@dataclass
class VariableTracking(SyntheticTask):
    """Name all variables that end up holding the queried value."""

    name: str = "vt"
    description: str = "Variable tracking: one chain of 4 re-assignments (5 variables) hidden in filler text."
    num_chains: int = 1
    num_hops: int = 4

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        rng = sample_rng(self.name, seed, length, index)
        names = _variable_names(rng, self.num_chains * (self.num_hops + 1))
        values = rng.sample(range(10_000, 100_000), self.num_chains)
        needles: list[tuple[float, str]] = []
        chains: list[list[str]] = []
        for c in range(self.num_chains):
            chain = names[c * (self.num_hops + 1) : (c + 1) * (self.num_hops + 1)]
            chains.append(chain)
            depths = sorted(rng.random() for _ in chain)
            statements = [f"VAR {chain[0]} = {values[c]}."]
            statements += [f"VAR {chain[j]} = {chain[j - 1]}." for j in range(1, len(chain))]
            needles += list(zip(depths, statements, strict=True))
        target = values[0]
        stream = sentence_stream("noise", sample_rng(self.name, seed, length, index, "haystack"))
        intro = (
            "Memorize and track the chain(s) of variable assignment hidden in the following text. "
            "A variable assigned another variable takes its value."
        )
        question = (
            f"Question: Find all variables that are assigned the value {target} in the text above, "
            "directly or through other variables."
        )
        prefix = f"Answer: The variables assigned the value {target} are:"
        meta = {"hops": self.num_hops, "chains": self.num_chains, "value": str(target)}

        def render(n: int) -> Draft:
            body = " ".join(insert_at_depths(stream.take(n), needles))
            return Draft(intro + "\n" + body, question, tuple(chains[0]), meta)

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        return to_sample(
            draft,
            tokens,
            task=self.name,
            index=index,
            metric="string_match_all",
            answer_prefix=prefix,
            max_new_tokens=8 * (self.num_hops + 1) + 16,
            seed=seed,
        )


VT_TASKS: list[VariableTracking] = [
    VariableTracking(),
    VariableTracking(
        name="vt_2chains",
        description="Variable tracking: the queried chain of 4 hops plus a distractor chain with another value.",
        num_chains=2,
    ),
]
