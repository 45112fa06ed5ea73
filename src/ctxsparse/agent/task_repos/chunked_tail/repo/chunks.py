"""Split sequences into fixed-size chunks."""


def chunked(items, size):
    """Consecutive chunks of `size` items (the last one may be shorter)."""
    if size < 1:
        raise ValueError("size must be >= 1")
    return [list(items[i : i + size]) for i in range(0, len(items) - size + 1, size)]
