"""Bridges to other evaluation and serving tools (each an optional extra, imported only when asked for)."""
