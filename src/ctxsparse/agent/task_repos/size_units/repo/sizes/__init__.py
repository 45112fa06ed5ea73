"""Parse human-readable sizes such as '10KB' into bytes (binary units)."""

from sizes.parse import parse_size

__all__ = ["parse_size"]
