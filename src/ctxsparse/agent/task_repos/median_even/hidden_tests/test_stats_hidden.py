import pytest
from stats import median


def test_median_even():
    assert median([4, 1, 3, 2]) == 2.5
    assert median([10, 20]) == 15


def test_median_odd_unsorted():
    assert median([9, 1, 5, 7, 3]) == 5


def test_median_empty():
    with pytest.raises(ValueError):
        median([])
