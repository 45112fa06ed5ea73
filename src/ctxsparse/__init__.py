"""ctxsparse: inference-time context sparsity for LLM decoding.

Every public name is imported on first use, so `import ctxsparse` stays light (no torch, no transformers)
until a name is touched:

    import ctxsparse
    model, tokenizer = ctxsparse.load_model("smollm2-135m")
    out = ctxsparse.generate(model, tokenizer, context=..., question=..., selector="oracle_topk",
                             budget=ctxsparse.Budget(sparsity=20))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Budget": "ctxsparse.budget",
    "Selection": "ctxsparse.selection",
    "Compose": "ctxsparse.selectors",
    "Dense": "ctxsparse.selectors",
    "DoubleSparsity": "ctxsparse.selectors",
    "LSHSampling": "ctxsparse.selectors",
    "OracleTopK": "ctxsparse.selectors",
    "OracleTopP": "ctxsparse.selectors",
    "Quest": "ctxsparse.selectors",
    "RandomTokens": "ctxsparse.selectors",
    "SinkWindow": "ctxsparse.selectors",
    "VAttention": "ctxsparse.selectors",
    "make_selector": "ctxsparse.selectors",
    "load_model": "ctxsparse.models",
    "generate": "ctxsparse.generation",
    "prefill": "ctxsparse.generation",
    "decode": "ctxsparse.generation",
    "sparse_decoding": "ctxsparse.hf",
    "Engine": "ctxsparse.engine",
}

__all__ = [
    "Budget",
    "Compose",
    "Dense",
    "DoubleSparsity",
    "Engine",
    "LSHSampling",
    "OracleTopK",
    "OracleTopP",
    "Quest",
    "RandomTokens",
    "Selection",
    "SinkWindow",
    "VAttention",
    "__version__",
    "decode",
    "generate",
    "load_model",
    "make_selector",
    "prefill",
    "sparse_decoding",
]

if TYPE_CHECKING:
    from ctxsparse.budget import Budget
    from ctxsparse.generation import decode, generate, prefill
    from ctxsparse.hf import sparse_decoding
    from ctxsparse.models import load_model
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


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ctxsparse' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise ImportError(
            f"ctxsparse.{name} lives in {module_name}, which this installation of ctxsparse does not include; "
            "upgrade ctxsparse to a version that ships it."
        ) from err
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
