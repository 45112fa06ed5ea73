"""Merge configuration dictionaries."""


def merge(base: dict, override: dict) -> dict:
    """A new dict: base updated with override (override wins)."""
    result = dict(base)
    result.update(override)
    return result
