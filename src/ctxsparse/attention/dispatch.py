"""Pick the attention backend for a sparse call: the torch reference, or a GPU kernel where it applies."""

from __future__ import annotations

import torch

from ctxsparse.attention.reference import sparse_attention_reference
from ctxsparse.selection import Selection

BACKENDS = ("auto", "reference")


def sparse_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selection: Selection,
    scale: float,
    backend: str = "auto",
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over the selection, [B, Hq, Tq, D]; 'auto' uses the reference on CPU.

    logits: dense scaled q·K [B, Hq, Tq, N] when a selector already computed them (the reference reuses them).
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; choose one of {BACKENDS}.")
    return sparse_attention_reference(query, keys, values, selection, scale, logits=logits)
