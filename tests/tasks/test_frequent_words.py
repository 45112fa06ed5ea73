"""Frequent words: the top three are unambiguous, and tie breaking keeps them so."""

from collections import Counter

from ctxsparse.tasks import TASKS
from ctxsparse.tasks.frequent_words import untie_top


def test_answers_are_the_strict_top_three(tokenizer):
    for sample in TASKS["fwe"].generate(tokenizer, 1024, 4, seed=5):
        counts = Counter(sample.context.split("\n", 1)[1].split()).most_common()
        assert set(sample.answers) == {w for w, _ in counts[:3]}
        assert counts[2][1] > counts[3][1]


def test_untie_top():
    text = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2
    fixed = untie_top(text)
    counts = Counter(fixed).most_common()
    assert len(fixed) == len(text)
    assert counts[2][1] > counts[3][1]
    assert untie_top(["a", "a", "b"]) == ["a", "a", "b"]
