from wordfreq import top_words


def test_case_and_punctuation():
    assert top_words("The cat. the CAT, the dog!", 2) == [("the", 3), ("cat", 2)]


def test_only_punctuation_ignored():
    assert top_words("-- hello -- (hello)", 5) == [("hello", 2)]
