"""Multi-step arithmetic word problems (3-6 steps) answered with chain of thought after filler paragraphs.

The context is a few unrelated paragraphs (their number sets the length) followed by the problem; the
question asks to think step by step and end with "The answer is N."; scoring takes the final number.
Every intermediate quantity is a positive integer below a few thousand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks import words
from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.haystacks import sentence_stream
from ctxsparse.tasks.length import Draft, fit_length, sample_rng, to_sample

ITEMS = ("apples", "marbles", "stamps", "coins", "cards", "shells", "pencils", "stickers", "books", "beads")
SENTENCES_PER_PARAGRAPH = 6
QUESTION = (
    "Solve the problem above. Think step by step, then end your reply with "
    '"The answer is N." where N is the final number.'
)


def _step(rng: random.Random, value: int, who: str, items: str) -> tuple[str, int]:
    """One operation on the running quantity: (sentence, new value)."""
    options = ["add", "groups"]
    if value >= 2:
        options.append("sub")
    if value <= 300:
        options.append("mul")
    divisors = [d for d in range(2, 7) if value % d == 0 and value // d >= 2]
    if divisors:
        options.append("div")
    op = rng.choice(options)
    if op == "add":
        k = rng.randint(2, 30)
        return f"{who} then buys {k} more {items}.", value + k
    if op == "groups":
        g, m = rng.randint(2, 5), rng.randint(2, 12)
        return f"{who} receives {g} boxes with {m} {items} in each box.", value + g * m
    if op == "sub":
        k = rng.randint(1, min(value - 1, 40))
        return f"{who} gives {k} {items} to a neighbour.", value - k
    if op == "mul":
        factor = rng.choice((2, 3))
        word = "doubles" if factor == 2 else "triples"
        return f"After a good week, the number of {items} that {who} has {word}.", value * factor
    d = rng.choice(divisors)
    return f"{who} splits the {items} into {d} equal groups and keeps only one group.", value // d


def make_problem(rng: random.Random, steps: int) -> tuple[str, int]:
    """A word problem with `steps` operations after the starting amount, and its integer answer."""
    who = rng.choice(words.FIRST_NAMES)
    items = rng.choice(ITEMS)
    value = rng.randint(5, 40)
    sentences = [f"{who} has {value} {items}."]
    for _ in range(steps):
        sentence, value = _step(rng, value, who, items)
        sentences.append(sentence)
    sentences.append(f"How many {items} does {who} have now?")
    return " ".join(sentences), value


@dataclass
class MathCoT(SyntheticTask):
    """Arithmetic word problems solved with a long chain-of-thought generation."""

    name: str = "math"
    description: str = "Math: 3-6 step arithmetic word problems after filler paragraphs, chain of thought."
    min_steps: int = 3
    max_steps: int = 6

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        rng = sample_rng(self.name, seed, length, index)
        steps = self.min_steps + index % (self.max_steps - self.min_steps + 1)
        problem, answer = make_problem(rng, steps)
        stream = sentence_stream("words", sample_rng(self.name, seed, length, index, "filler"))
        intro = "The notes below are unrelated to the problem that follows them."

        def render(n: int) -> Draft:
            filler = stream.take(n)
            paragraphs = [
                " ".join(filler[i : i + SENTENCES_PER_PARAGRAPH])
                for i in range(0, len(filler), SENTENCES_PER_PARAGRAPH)
            ]
            context = "\n\n".join([intro, *paragraphs, "Problem: " + problem])
            return Draft(context, QUESTION, (str(answer),), {"steps": steps, "problem": problem})

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        return to_sample(draft, tokens, task=self.name, index=index, metric="number", max_new_tokens=256, seed=seed)


MATH_TASKS: list[MathCoT] = [MathCoT()]
