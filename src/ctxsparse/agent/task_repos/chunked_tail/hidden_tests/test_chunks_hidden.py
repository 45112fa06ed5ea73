import pytest
from chunks import chunked


def test_tail_kept():
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunked("abcdefg", 3) == [list("abc"), list("def"), ["g"]]


def test_short_and_empty():
    assert chunked([1], 4) == [[1]]
    assert chunked([], 3) == []


def test_bad_size():
    with pytest.raises(ValueError):
        chunked([1], 0)
