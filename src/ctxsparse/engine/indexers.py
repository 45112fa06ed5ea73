"""What the sparse decode step scores, per method, with its state kept in place in fixed buffers.

Each indexer scores `items` per (row, kv head) into a [B, Hkv, items] buffer: tokens (oracle q.K, Double
Sparsity labels) or pages (Quest bounds). prepare(slots) runs once per step (where the step's token lands in
the state); update(layer, key) folds that token into a layer's state in one or two copy kernels and is
idempotent (running a step twice with the same lengths leaves the same state), so a CUDA graph can be
warmed up and captured on live state. adopt() builds the state from the cache after a prefill. score()
runs one kernel that also sets items past a row's length to -inf and counts the top-k's coarse bins (so the
step needs no masking pass and the top-k no counting pass).
"""

from __future__ import annotations

import math

import torch

from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.gpu_index import label_cache_from_keys
from ctxsparse.gpu_index.key_score import launch_key_scores
from ctxsparse.gpu_index.label_score import launch_label_scores
from ctxsparse.gpu_index.page_score import launch_page_scores
from ctxsparse.selectors import DoubleSparsity, OracleTopK, Quest
from ctxsparse.selectors.base import SelectionContext

# selector aggregate -> the GPU kernels' aggregate over a GQA group's query heads (mean ranks like sum)
GROUP_AGGREGATES = {"logit_max": "max", "logit_mean": "sum"}


class OracleIndexer:
    """Exact q.K of every cached token, the group's logits combined by max or sum (which ranks like the mean), in
    one kernel that reads each key once straight from the cache (see gpu_index.key_score)."""

    def __init__(self, selector: OracleTopK, cache: PagedKVCache, batch: int, num_q_heads: int) -> None:
        s = cache.shape
        self.cache, self.batch, self.items, self.page = cache, batch, s.capacity, 1
        self.aggregate = GROUP_AGGREGATES[selector.aggregate]

    def adopt(self, host_lengths: list[int]) -> None:
        """Nothing to build: the oracle reads the keys themselves."""

    def prepare(self, slots: torch.Tensor) -> None:
        """Nothing per step."""

    def update(self, layer: int, key: torch.Tensor) -> None:
        """Nothing to update."""

    def score(self, layer: int, q: torch.Tensor, scale: float, out: torch.Tensor, hist=None) -> None:
        """q.K scores, -inf past each row's length (the step's token included), counted into hist."""
        keys = self.cache.rows(layer)[0]  # [max_batch, capacity, Hkv, D] views of the pages
        launch_key_scores(q, keys, out.view(-1, out.shape[-1]), hist, scale, self.aggregate,
                          lengths=self.cache.lengths, length_add=1)  # fmt: skip


class LabelIndexer:
    """Double Sparsity: a label cache of r calibrated key channels per kv head, appended in place."""

    def __init__(self, selector: DoubleSparsity, cache: PagedKVCache, batch: int, num_q_heads: int,
                 model_key: str) -> None:  # fmt: skip
        s = cache.shape
        self.cache, self.batch, self.items, self.page = cache, batch, s.capacity, 1
        self.aggregate = GROUP_AGGREGATES[selector.aggregate]
        probe = SelectionContext(
            query=torch.zeros(1, num_q_heads, 1, s.head_dim),
            keys=torch.zeros(1, s.num_kv_heads, 1, s.head_dim),
            visible=torch.ones(1, 1, 1, 1, dtype=torch.bool),
            scale=1.0,
            num_layers=s.num_layers,
            model_key=model_key,
        )
        cal = selector.resolve_calibration(probe)
        self.channels = torch.stack(
            [cal.channels_for(layer, selector.channels, cache.device) for layer in range(s.num_layers)]
        ).to(torch.int32)  # [L, Hkv, r]
        r = selector.channels
        self.labels = torch.zeros(s.num_layers, batch, s.num_kv_heads, s.capacity, r, dtype=s.dtype,
                                  device=cache.device)  # fmt: skip
        # per layer, the channel index of every (row, kv head) for one gather of the new keys' labels
        self.gather_index = self.channels.long().unsqueeze(1).expand(-1, batch, -1, -1).contiguous()
        # flat label row of (b, h, slot 0) in a layer's [B * Hkv * capacity, r] view
        heads = torch.arange(batch * s.num_kv_heads, device=cache.device).view(batch, s.num_kv_heads)
        self.label_base = heads * s.capacity
        self.dest = self.label_base.clone()

    def adopt(self, host_lengths: list[int]) -> None:
        for layer in range(self.cache.shape.num_layers):
            keys = self.cache.rows(layer)[0][: self.batch].transpose(1, 2)  # [B, Hkv, cap, D]
            self.labels[layer].copy_(label_cache_from_keys(keys, self.channels[layer]))

    def prepare(self, slots: torch.Tensor) -> None:
        """The flat label rows [B * Hkv] the step's token goes to."""
        self.dest = (self.label_base + slots.view(-1, 1)).view(-1)

    def update(self, layer: int, key: torch.Tensor) -> None:
        """Append the labels of the new keys [B, Hkv, D]: one gather, one copy."""
        labels = key.gather(-1, self.gather_index[layer])  # [B, Hkv, r]
        self.labels[layer].view(-1, labels.shape[-1]).index_copy_(0, self.dest, labels.view(-1, labels.shape[-1]))

    def score(self, layer: int, q: torch.Tensor, scale: float, out: torch.Tensor, hist=None) -> None:
        """Label scores, -inf past each row's length (the step's token included), counted into hist."""
        rows = out.view(-1, out.shape[-1])
        launch_label_scores(q, self.labels[layer], self.channels[layer], rows, hist, scale, self.aggregate,
                            lengths=self.cache.lengths, length_add=1)  # fmt: skip


class PageIndexer:
    """Quest: per-page key minima and maxima; a step recomputes the bounds of the page it writes into."""

    def __init__(self, selector: Quest, cache: PagedKVCache, batch: int, num_q_heads: int) -> None:
        s = cache.shape
        self.cache, self.batch, self.page = cache, batch, selector.page_size
        self.items = math.ceil(s.capacity / self.page)
        self.aggregate = selector.aggregate
        bounds = (s.num_layers, batch, s.num_kv_heads, self.items, s.head_dim)
        self.lo = torch.zeros(bounds, dtype=s.dtype, device=cache.device)
        self.hi = torch.zeros(bounds, dtype=s.dtype, device=cache.device)
        self.offsets = torch.arange(self.page, device=cache.device)
        self.row_start = torch.arange(batch, device=cache.device).view(-1, 1) * s.capacity  # flat token of slot 0
        heads = torch.arange(batch * s.num_kv_heads, device=cache.device).view(batch, s.num_kv_heads)
        self.bound_base = heads * self.items  # flat bound row of (b, h, page 0) in a layer's [B * Hkv * items, D]
        self.pos = self.row_start + self.offsets
        self.dest = self.bound_base.view(-1).clone()

    def adopt(self, host_lengths: list[int]) -> None:
        p = self.page
        for layer in range(self.cache.shape.num_layers):
            keys = self.cache.rows(layer)[0][: self.batch]  # [B, cap, Hkv, D]
            for b, n in enumerate(host_lengths):
                pages = math.ceil(n / p)
                chunk = keys[b, : pages * p].unflatten(0, (pages, p)) if n % p == 0 else self._padded(keys[b], n)
                self.lo[layer, b, :, :pages] = chunk.amin(1).transpose(0, 1)
                self.hi[layer, b, :, :pages] = chunk.amax(1).transpose(0, 1)

    def _padded(self, keys: torch.Tensor, n: int) -> torch.Tensor:
        """[pages, page, Hkv, D] of a row's first n keys, the partial last page repeating its last key."""
        pages = math.ceil(n / self.page)
        idx = torch.arange(pages * self.page, device=keys.device).clamp_max(n - 1)
        return keys[idx].unflatten(0, (pages, self.page))

    def prepare(self, slots: torch.Tensor) -> None:
        """Per step: the flat cache slots of the written page's keys up to the new one (later slots repeat it,
        which leaves min and max unchanged), and the flat bound rows [B * Hkv] of that page."""
        page = slots.view(-1, 1) // self.page
        self.pos = (self.row_start + torch.minimum(page * self.page + self.offsets, slots.view(-1, 1))).view(-1)
        self.dest = (self.bound_base + page).view(-1)

    def update(self, layer: int, key: torch.Tensor) -> None:
        """Recompute the written page's bounds from the cache (which already holds the new key)."""
        s = self.cache.shape
        keys = self.cache.k[layer].view(-1, s.num_kv_heads, s.head_dim)  # flat [max_batch * capacity, Hkv, D]
        chunk = keys.index_select(0, self.pos).view(self.batch, self.page, s.num_kv_heads, s.head_dim)
        self.lo[layer].view(-1, s.head_dim).index_copy_(0, self.dest, chunk.amin(1).view(-1, s.head_dim))
        self.hi[layer].view(-1, s.head_dim).index_copy_(0, self.dest, chunk.amax(1).view(-1, s.head_dim))

    def score(self, layer: int, q: torch.Tensor, scale: float, out: torch.Tensor, hist=None) -> None:
        """Page bounds, -inf for pages past each row's length (the step's token included), counted into hist."""
        rows = out.view(-1, out.shape[-1])
        launch_page_scores(q, self.lo[layer], self.hi[layer], rows, hist, scale, self.aggregate,
                           lengths=self.cache.lengths, length_add=1, page_size=self.page)  # fmt: skip
