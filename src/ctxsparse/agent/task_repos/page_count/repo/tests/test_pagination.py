from pagination import page_count, page_items


def test_exact_pages():
    assert page_count(9, 3) == 3


def test_page_items():
    assert page_items(list(range(7)), 3, 3) == [6]
