"""Bytes per unit (binary: 1 KB = 1024 bytes)."""

UNITS = {
    "b": 1,
    "kb": 1024,
    "mb": 1000 * 1000,
    "gb": 1024 * 1024 * 1024,
}
