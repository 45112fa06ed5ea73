import pytest
from pagination import page_count


@pytest.mark.parametrize("total,per_page,pages", [(10, 3, 4), (1, 5, 1), (0, 4, 0), (9, 3, 3), (11, 1, 11)])
def test_page_count(total, per_page, pages):
    assert page_count(total, per_page) == pages


def test_bad_per_page():
    with pytest.raises(ValueError):
        page_count(3, 0)
