"""ctxsparse: inference-time context sparsity for LLM decoding."""

from ctxsparse.budget import Budget
from ctxsparse.selection import Selection
from ctxsparse.selectors import (
    Compose,
    Dense,
    OracleTopK,
    OracleTopP,
    RandomTokens,
    SinkWindow,
    make_selector,
)

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "Compose",
    "Dense",
    "OracleTopK",
    "OracleTopP",
    "RandomTokens",
    "Selection",
    "SinkWindow",
    "__version__",
    "make_selector",
]
