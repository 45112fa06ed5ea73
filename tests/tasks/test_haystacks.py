"""Haystack streams are prefix-stable and needles land at their depths."""

import random

import pytest

from ctxsparse.tasks import words
from ctxsparse.tasks.haystacks import insert_at_depths, sentence_stream


def test_noise_stream_cycles_the_filler():
    units = sentence_stream("noise", random.Random(0)).take(7)
    assert units[:5] == list(words.FILLER_SENTENCES) and units[5] == words.FILLER_SENTENCES[0]


def test_word_stream_is_prefix_stable():
    stream = sentence_stream("words", random.Random(1))
    short = stream.take(3)
    assert stream.take(10)[:3] == short
    assert sentence_stream("words", random.Random(1)).take(10) == stream.take(10)
    assert len(set(stream.take(10))) > 5


def test_unknown_haystack():
    with pytest.raises(ValueError, match="noise"):
        sentence_stream("essay", random.Random(0))


def test_insert_at_depths():
    units = [f"u{i}" for i in range(10)]
    out = insert_at_depths(units, [(0.0, "A"), (0.5, "B"), (1.0, "C"), (0.5, "D")])
    assert out[0] == "A" and out[-1] == "C"
    assert out.index("B") == 6 and out.index("D") == 7
    assert [u for u in out if u.startswith("u")] == units
    with pytest.raises(ValueError):
        insert_at_depths(units, [(1.5, "X")])
