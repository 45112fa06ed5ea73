"""Attention on the engine's reference path with one select() per layer over all rows (steps or fed blocks).

For selectors without a GPU pipeline (vAttention, top-p, ...) the reference path would call select() once
per row and layer; here every row's keys are one [B, Hkv, N, D] view of the cache (rows own consecutive
pages), with each row's unwritten slots marked invisible, so the selector sees the batch the way the
transformers path shows it a padded one. Each row's k comes from its own visible count, as on the reference
path. Selectors that index the cache incrementally (incremental_state) assume every row appends at the same
column, which ragged rows do not; they stay row by row.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ctxsparse.attention.dispatch import sparse_attention
from ctxsparse.budget import Budget
from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.selectors.base import SelectionContext, Selector


def batchable(selector: Selector) -> bool:
    """Whether one select() may serve rows of different lengths at once (its parts too, e.g. vAttention's top)."""
    if getattr(selector, "incremental_state", False):
        return False
    parts = []
    for value in vars(selector).values():
        parts += value if isinstance(value, (list, tuple)) else [value]
    return all(batchable(p) for p in parts if isinstance(p, Selector))


def graph_ready(selector: Selector | None) -> bool:
    """Whether the selector (and its parts) honour SelectionContext.static_k, so a step can be captured."""
    if selector is None:
        return True
    if not getattr(selector, "static_shapes", False):
        return False
    return all(graph_ready(p) for p in vars(selector).values() if isinstance(p, Selector))


class BatchSelection:
    """Attention of one forward of rows 0..B-1: write the rows' new tokens, select over all rows, attend.

    selector=None attends densely. Call set_call(batch, host_lengths, width) before each forward of `width`
    tokens per row (1: a decode step; more: a block of fed tokens).
    """

    def __init__(self, cache: PagedKVCache, selector: Selector | None, budget: Budget, model_key: str) -> None:
        self.cache, self.selector, self.budget, self.model_key = cache, selector, budget, model_key
        self.states: dict[int, dict[int, dict[str, Any]]] = {}
        self.batch, self.width = 0, 0
        self.visible: torch.Tensor | None = None
        self.slots: torch.Tensor | None = None
        self.static_k: int | None = None

    def fix(self, batch: int, width: int, static_k: int) -> None:
        """Fixed shapes for decode steps (a CUDA graph can capture them): keys are slots [0, width) of every row,
        selections are sized to static_k, and prepare() takes visibility and write slots from the device lengths."""
        self.batch, self.width, self.static_k = batch, width, static_k
        self._slots_range = torch.arange(width, device=self.cache.device)

    def prepare(self, batch: int) -> None:
        """Per step, on the device: row b sees its slots 0 .. lengths[b] (the new token included)."""
        lengths = self.cache.lengths[:batch].long()
        self.visible = (self._slots_range.view(1, -1) <= lengths.view(-1, 1)).view(batch, 1, 1, self.width)
        self.slots = self.cache.flat_slots(batch)

    def set_call(self, batch: int, host_lengths: list[int], width: int = 1) -> None:
        """The call's write slots and visibility: query t of row b (at position host_lengths[b] + t) sees slots
        0 .. host_lengths[b] + t. Queries past a row's own feed are padding: written where nothing real looks."""
        cap, dev = self.cache.shape.capacity, self.cache.device
        self.batch, self.t, self.width = batch, width, min(max(host_lengths) + width, cap)
        start = torch.tensor(host_lengths, device=dev).view(batch, 1)
        last = start + torch.arange(width, device=dev)  # [B, T]: each query's own position
        self.visible = (torch.arange(self.width, device=dev).view(1, 1, -1) <= last.unsqueeze(-1)).unsqueeze(1)
        rows = torch.arange(batch, device=dev).view(batch, 1) * cap
        self.slots = (rows + last.clamp_max(cap - 1)).view(-1)

    def __call__(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float):
        s = self.cache.shape
        flat = (s.num_pages * s.page_size, s.num_kv_heads, s.head_dim)
        # [B, Hkv, T, D] -> one row per (b, t), in slot order
        self.cache.k[layer].view(flat).index_copy_(0, self.slots, key.transpose(1, 2).reshape(-1, *flat[1:]))
        self.cache.v[layer].view(flat).index_copy_(0, self.slots, value.transpose(1, 2).reshape(-1, *flat[1:]))
        k, v = self.cache.rows(layer)
        keys = k[: self.batch, : self.width].transpose(1, 2)
        values = v[: self.batch, : self.width].transpose(1, 2)
        if self.selector is None:
            return F.scaled_dot_product_attention(
                query, keys, values, attn_mask=self.visible, scale=scale, enable_gqa=True
            )
        ctx = SelectionContext(
            query=query,
            keys=keys,
            visible=self.visible,
            scale=scale,
            layer_idx=layer,
            num_layers=self.cache.shape.num_layers,
            model_key=self.model_key,
            states=self.states.setdefault(layer, {}),
            static_k=self.static_k,
        )
        selection = self.selector.select(ctx, self.budget.tokens_for_tensor(ctx.visible_counts()))
        return sparse_attention(query, keys, values, selection, scale, logits=ctx.cached_scores, check=False)
