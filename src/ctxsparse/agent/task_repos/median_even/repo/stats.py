"""Small descriptive statistics."""


def mean(values):
    """Arithmetic mean."""
    if not values:
        raise ValueError("mean() of an empty list")
    return sum(values) / len(values)


def median(values):
    """The middle value of the sorted values."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
