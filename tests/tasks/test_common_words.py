"""Common words: the answers are exactly the most frequent words, with a clear margin."""

import re
from collections import Counter

import pytest

from ctxsparse.tasks import TASKS
from ctxsparse.tasks.common_words import frequencies


@pytest.mark.parametrize("length", [512, 4096])
def test_answers_are_the_ten_most_common(tokenizer, length):
    sample = TASKS["cwe"].generate(tokenizer, length, 1, seed=2)[0]
    items = re.findall(r"\d+\. (\w+)", sample.context)
    counts = Counter(items)
    assert len(sample.answers) == 10
    assert {counts[w] for w in sample.answers} == {sample.meta["freq_common"]}
    rare = {n for w, n in counts.items() if w not in sample.answers}
    assert rare == {sample.meta["freq_rare"]}
    assert sample.meta["freq_common"] > sample.meta["freq_rare"]
    vocabulary = set(counts)
    for answer in sample.answers:
        assert not any(answer in other for other in vocabulary - {answer})


def test_frequencies_scale_with_length():
    assert frequencies(130, 10) == (4, 1)
    assert frequencies(1000, 10) == (30, 3)
    assert frequencies(500, 10)[0] > frequencies(200, 10)[0]
