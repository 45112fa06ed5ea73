"""Versions of everything that shapes a result: stored with every study run and benchmark JSON."""

from __future__ import annotations

import importlib.metadata
import platform
import sys


def package_version(package: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """ctxsparse, torch (and its CUDA), transformers, triton, flashinfer, numpy, python and the platform."""
    import ctxsparse

    try:
        import torch

        cuda = torch.version.cuda
    except ImportError:
        cuda = None
    return {
        "ctxsparse": ctxsparse.__version__,
        "torch": package_version("torch"),
        "cuda": cuda,
        "transformers": package_version("transformers"),
        "triton": package_version("triton"),
        "flashinfer": package_version("flashinfer-python"),
        "numpy": package_version("numpy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
