"""Math: problems have 3-6 steps whose stated operations give the answer; filler first, problem last."""

import random
import re

from ctxsparse.tasks import TASKS
from ctxsparse.tasks.math_cot import make_problem


def _solve(problem: str) -> int:
    value = int(re.search(r"has (\d+) ", problem).group(1))
    for sentence in problem.split(". ")[1:]:
        if m := re.search(r"buys (\d+) more", sentence):
            value += int(m.group(1))
        elif m := re.search(r"receives (\d+) boxes with (\d+)", sentence):
            value += int(m.group(1)) * int(m.group(2))
        elif m := re.search(r"gives (\d+) ", sentence):
            value -= int(m.group(1))
        elif "doubles" in sentence:
            value *= 2
        elif "triples" in sentence:
            value *= 3
        elif m := re.search(r"into (\d+) equal groups", sentence):
            assert value % int(m.group(1)) == 0
            value //= int(m.group(1))
    return value


def test_problems_are_consistent():
    rng = random.Random(0)
    for steps in range(3, 7):
        for _ in range(50):
            problem, answer = make_problem(rng, steps)
            assert problem.count(". ") == steps + 1
            assert answer > 0 and _solve(problem) == answer


def test_samples(tokenizer):
    samples = TASKS["math"].generate(tokenizer, 1024, 4)
    assert [s.meta["steps"] for s in samples] == [3, 4, 5, 6]
    for sample in samples:
        assert sample.metric == "number" and sample.max_new_tokens == 256
        assert sample.context.endswith("Problem: " + sample.meta["problem"])
        assert sample.context.count("\n\n") >= 3
        assert "step by step" in sample.question and '"The answer is N."' in sample.question
        assert TASKS["math"].score(f"So... The answer is {sample.answers[0]}.", sample) == 1.0
        assert TASKS["math"].score(f"The answer is {int(sample.answers[0]) + 1}.", sample) == 0.0
