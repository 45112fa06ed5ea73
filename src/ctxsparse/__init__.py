"""ctxsparse: inference-time context sparsity for LLM decoding.

The public names load on first use (PEP 562), so `import ctxsparse` and the command line start without
importing torch: the CLI can set its signal handlers before the slow imports begin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SELECTORS = (
    "Compose",
    "Dense",
    "DoubleSparsity",
    "LSHSampling",
    "OracleTopK",
    "OracleTopP",
    "Quest",
    "RandomTokens",
    "SinkWindow",
    "VAttention",
    "make_selector",
)
_EXPORTS: dict[str, str] = {
    "Budget": "ctxsparse.budget",
    "Selection": "ctxsparse.selection",
    **{name: "ctxsparse.selectors" for name in _SELECTORS},
}

if TYPE_CHECKING:
    from ctxsparse.budget import Budget
    from ctxsparse.selection import Selection
    from ctxsparse.selectors import (
        Compose,
        Dense,
        DoubleSparsity,
        LSHSampling,
        OracleTopK,
        OracleTopP,
        Quest,
        RandomTokens,
        SinkWindow,
        VAttention,
        make_selector,
    )


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ctxsparse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Budget",
    "Compose",
    "Dense",
    "DoubleSparsity",
    "LSHSampling",
    "OracleTopK",
    "OracleTopP",
    "Quest",
    "RandomTokens",
    "Selection",
    "SinkWindow",
    "VAttention",
    "__version__",
    "make_selector",
]
