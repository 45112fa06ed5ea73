"""A tiny weather report."""
