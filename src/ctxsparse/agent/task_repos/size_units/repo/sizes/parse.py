"""Split a size into number and unit."""

import re

from sizes.units import UNITS

_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """'10KB' -> 10240; a bare number is bytes."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = match.groups()
    unit = unit or "b"
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    return int(float(number) * UNITS[unit])
