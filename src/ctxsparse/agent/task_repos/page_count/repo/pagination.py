"""Split item lists into pages."""


def page_count(total: int, per_page: int) -> int:
    """Number of pages needed to show `total` items, `per_page` on each page."""
    if per_page < 1:
        raise ValueError("per_page must be >= 1")
    return total // per_page


def page_items(items: list, page: int, per_page: int) -> list:
    """The items on page `page` (pages are numbered from 1)."""
    start = (page - 1) * per_page
    return items[start : start + per_page]
