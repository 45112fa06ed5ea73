"""Built-in word lists and generators."""

import random

from ctxsparse.tasks import words


def test_lists_are_distinct_lowercase_words():
    for group in (words.NOUNS, words.ADJECTIVES, words.VERBS_PAST, words.ADVERBS, words.COLORS):
        assert len(group) == len(set(group))
        assert all(w.isalpha() and w.islower() for w in group)
    assert len(words.content_words()) > 400
    assert set(words.content_words()) < set(words.plain_words())


def test_sentences_are_deterministic_and_grammatical_enough():
    first = [words.sentence(random.Random(4)) for _ in range(3)]
    assert first == [words.sentence(random.Random(4)) for _ in range(3)]
    rng = random.Random(0)
    for _ in range(200):
        text = words.sentence(rng)
        assert text[0].isupper() and text.endswith(".")
        assert " a a" not in text and " A a" not in text and not text.startswith("A a")


def test_pseudo_words():
    rng = random.Random(1)
    made = words.unique_pseudo_words(rng, 500, exclude={"bababa"})
    assert len(set(made)) == 500 and "bababa" not in made
    assert all(4 <= len(w) <= 8 for w in made)
