"""Versions of the software a study ran with, stored with each run and in the report's JSON."""

from __future__ import annotations

import importlib.metadata
import platform
import sys


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """ctxsparse, torch, transformers, numpy, python and the platform string."""
    import ctxsparse

    return {
        "ctxsparse": ctxsparse.__version__,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
