"""Most frequent words of a text."""

from collections import Counter


def top_words(text: str, n: int):
    """The n most common words with their counts."""
    return Counter(text.split()).most_common(n)
