"""Incremental bookkeeping shared by the indexer selectors: which cache positions still need indexing.

An indexer (page bounds, label cache, hash signatures) keeps per-layer state for positions [0, indexed)
and only processes [indexed, cache_len) on each step. The state is dropped and rebuilt when the cache no
longer extends what was indexed: it shrank, the batch or head layout changed, or the last indexed key
differs (a new sequence reusing the same layer state).
"""

from __future__ import annotations

from typing import Any

import torch


def _layout(keys: torch.Tensor) -> tuple[object, ...]:
    b, h, _, d = keys.shape
    return (b, h, d, keys.device, keys.dtype)


def pending_start(state: dict[str, Any], keys: torch.Tensor, cache_len: int) -> int:
    """First position that is not indexed yet; clears `state` when it must be rebuilt from position 0.

    keys: the whole cache [B, Hkv, N, D]; cache_len: number of written slots.
    """
    indexed = int(state.get("indexed", 0))
    stale = (
        state.get("layout") != _layout(keys)
        or cache_len < indexed
        or (indexed > 0 and not torch.equal(state["last_key"], keys[:, :, indexed - 1]))
    )
    if stale:
        state.clear()
        state["layout"] = _layout(keys)
        return 0
    return indexed


def mark_indexed(state: dict[str, Any], keys: torch.Tensor, cache_len: int) -> None:
    """Record that positions [0, cache_len) are indexed (with a copy of the last key, to detect reuse)."""
    state["indexed"] = cache_len
    if cache_len > 0:
        state["last_key"] = keys[:, :, cache_len - 1].clone()


def pad_positions(values: torch.Tensor, num_keys: int, fill: float) -> torch.Tensor:
    """Pad the last dim of per-position values [..., n] with `fill` up to the cache size num_keys."""
    n = values.shape[-1]
    if n >= num_keys:
        return values[..., :num_keys]
    pad = values.new_full((*values.shape[:-1], num_keys - n), fill)
    return torch.cat([values, pad], dim=-1)
