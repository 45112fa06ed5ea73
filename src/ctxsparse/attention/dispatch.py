"""Pick the attention backend for a sparse call inside a model: the torch reference or the decode kernel."""

from __future__ import annotations

import importlib.util

import torch

from ctxsparse.attention.reference import check_selection_inputs, sparse_attention_reference
from ctxsparse.attention.sparse_decode import KERNEL_DTYPES, KERNEL_HEAD_DIMS, sparse_decode
from ctxsparse.selection import Selection

BACKENDS = ("auto", "reference", "triton")


def kernel_applies(query: torch.Tensor) -> bool:
    """The Triton decode kernel serves one query token per row, on CUDA, in bf16/fp16, at its head dims."""
    return (
        query.is_cuda
        and query.shape[2] == 1
        and query.dtype in KERNEL_DTYPES
        and query.shape[-1] in KERNEL_HEAD_DIMS
        and importlib.util.find_spec("triton") is not None
    )


def sparse_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    selection: Selection,
    scale: float,
    backend: str = "auto",
    logits: torch.Tensor | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Attention over the selection, [B, Hq, Tq, D]; check=False skips the input checks (host syncs).

    'auto' runs decode steps (Tq = 1) on CUDA through the Triton kernel and everything else through the
    reference. logits: dense scaled q·K [B, Hq, Tq, N] when a selector already computed them (the reference
    reuses them instead of re-reading keys).
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; choose one of {BACKENDS}.")
    if check:
        check_selection_inputs(query, selection.to_query_heads(query.shape[1]), keys.shape[2])
    use_kernel = backend == "triton" or (backend == "auto" and kernel_applies(query))
    if use_kernel:
        if query.shape[2] != 1:
            raise ValueError(f"backend='triton' serves decode steps (one query token); got {query.shape[2]} tokens.")
        return sparse_decode(query[:, :, 0], keys, values, selection, scale=scale, backend="triton")[:, :, None]
    return sparse_attention_reference(query, keys, values, selection, scale, logits=logits, check_indices=False)
