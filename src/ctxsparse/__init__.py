"""ctxsparse: inference-time context sparsity for LLM decoding."""

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

__version__ = "0.1.0"

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
