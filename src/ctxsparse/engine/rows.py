"""Attention row by row over each row's own cache prefix: dense SDPA, or any selector's own select().

The engine's reference path: it runs on any device, serves every selector (including those without a
GPU pipeline) and dense prefill chunks, and gives each row exactly what `ctxsparse.generation.decode`
gives a batch of one (the same SelectionContext, the same per-layer selector state).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ctxsparse.attention.dispatch import sparse_attention
from ctxsparse.budget import Budget
from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.selectors.base import SelectionContext, Selector


def causal_visible(start: int, q_len: int, device: torch.device) -> torch.Tensor:
    """Bool [1, 1, T, start + T]: query t (at position start + t) sees positions <= start + t."""
    n = start + q_len
    rows = torch.arange(q_len, device=device).view(q_len, 1) + start
    return (torch.arange(n, device=device).view(1, n) <= rows).view(1, 1, q_len, n)


def dense_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int, scale: float):
    """Causal SDPA of queries at positions start .. start + T - 1 over keys [1, Hkv, start + T, D].

    On CUDA the keys and values are expanded to the query heads and the first chunk needs no mask, so SDPA
    can pick its flash or memory-efficient kernel (its grouped-query path with a mask is the math kernel,
    whose T x N score matrix a long context cannot afford).
    """
    q_len = q.shape[2]
    if not q.is_cuda:
        mask = None if q_len == 1 else causal_visible(start, q_len, q.device)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)
    group = q.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
    if start == 0 or q_len == 1:
        return F.scaled_dot_product_attention(q, keys, values, is_causal=q_len > 1, scale=scale)
    mask = causal_visible(start, q_len, q.device)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale)


class RowAttention:
    """Writes each row's new keys/values at its host-known start and attends over slots [0, start + T).

    Call `set_call(rows, starts, sparse)` before each forward; `sparse` routes attention through the
    selector (else dense). Selector state is kept per (row, layer) and dropped by `reset()`.
    """

    def __init__(
        self,
        cache: PagedKVCache,
        selector: Selector | None,
        budget: Budget,
        model_key: str,
        backend: str = "auto",
    ) -> None:
        self.cache = cache
        self.selector = selector
        self.budget = budget
        self.model_key = model_key
        self.backend = backend
        self.states: dict[int, dict[int, dict[str, Any]]] = {}
        self.rows: list[int] = []
        self.starts: list[int] = []
        self.sparse = False

    def reset(self) -> None:
        self.states.clear()

    def set_call(self, rows: list[int], starts: list[int], sparse: bool) -> None:
        self.rows, self.starts, self.sparse = rows, starts, sparse and self.selector is not None

    def __call__(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float):
        outs = []
        for i, (row, start) in enumerate(zip(self.rows, self.starts, strict=True)):
            q_len = query.shape[2]
            self.cache.write_row(layer, row, start, key[i : i + 1], value[i : i + 1])
            keys, values = self.cache.head_major(layer, row, start + q_len)
            q = query[i : i + 1]
            if self.sparse:
                outs.append(self._sparse(layer, row, start, q, keys, values, scale))
            else:
                outs.append(dense_attention(q, keys, values, start, scale))
        return torch.cat(outs)

    def _sparse(self, layer, row, start, q, keys, values, scale) -> torch.Tensor:
        ctx = SelectionContext(
            query=q,
            keys=keys,
            visible=causal_visible(start, q.shape[2], q.device),
            scale=scale,
            layer_idx=layer,
            num_layers=self.cache.shape.num_layers,
            model_key=self.model_key,
            states=self.states.setdefault(row, {}).setdefault(layer, {}),
        )
        selection = self.selector.select(ctx, self.budget.tokens_for_tensor(ctx.visible_counts()))
        return sparse_attention(
            q, keys, values, selection, scale, backend=self.backend, logits=ctx.cached_scores, check=False
        )
