"""Sparse attention inside the engine's decode step: index -> exact top-k -> Triton sparse decode, all on device.

Per step (prepare): the visible length of each row. Per layer: the indexer folds the new token into its state
and scores every item (token or page) of each (row, kv head) in one kernel that also sets items past a row's
length to -inf and counts the top-k's coarse bins; RowTopK picks k items per row (fixed k, so nothing is
planned per step); pages expand to their tokens; sparse_decode reads the selected tokens from the paged cache, one
selection per GQA group. When a row may see fewer tokens than the step reads (a row shorter than k, or a
partial page), each selected slot carries a weight, 0 past the row's length. Sink + window needs no scores:
its tokens follow from the lengths, once per step.
"""

from __future__ import annotations

import math

import torch

from ctxsparse.attention.sparse_decode import sparse_decode
from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.gpu_index import RowTopK
from ctxsparse.selectors import SinkWindow

SCORE_DTYPE = torch.float16


class SparseStep:
    """Top-k attention of one method for a fixed batch and budget k (tokens per row and kv head).

    weighted: whether a selected slot may lie past its row's length (some row sees fewer than k tokens, or
    the indexer selects whole pages); without it the step passes no weights (fewer kernels per layer).
    """

    def __init__(self, indexer, cache: PagedKVCache, batch: int, num_q_heads: int, k: int, name: str,
                 weighted: bool = True) -> None:  # fmt: skip
        s = cache.shape
        self.indexer, self.cache, self.batch, self.name = indexer, cache, batch, name
        self.rows = batch * s.num_kv_heads
        self.k_items = min(math.ceil(k / indexer.page), indexer.items)
        self.k = self.k_items * indexer.page
        self.weighted = weighted or indexer.page > 1
        self.clamp = indexer.items * indexer.page > s.capacity  # a last item's page reaching past the capacity
        self.scores = torch.empty(batch, s.num_kv_heads, indexer.items, dtype=SCORE_DTYPE, device=cache.device)
        self.topk = RowTopK()
        self.topk.plan(self.rows, indexer.items, self.k_items, SCORE_DTYPE, cache.device)
        self.in_page = torch.arange(indexer.page, device=cache.device)
        self.out = torch.empty(batch, num_q_heads, s.head_dim, dtype=s.dtype, device=cache.device)
        self.visible = torch.ones(batch, 1, 1, dtype=torch.long, device=cache.device)
        self.timings_us: dict[str, float] = {}

    def before_step(self, host_lengths: list[int]) -> None:
        """Nothing to plan on the host."""

    def adopt(self, host_lengths: list[int]) -> None:
        self.indexer.adopt(host_lengths)

    def prepare(self, slots: torch.Tensor) -> None:
        """Once per step, from the slots [B] (int64) this step writes."""
        self.visible = (slots + 1).view(-1, 1, 1)
        self.indexer.prepare(slots)

    def attend(self, layer: int, q: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        """q [B, Hq, D] and the step's new keys [B, Hkv, D] (already in the cache) -> [B, Hq, D]."""
        self.indexer.update(layer, key)
        self.topk.reset()
        self.indexer.score(layer, q, scale, self.scores, self.topk.hist)  # -inf past each row's length; counted
        items = self.topk.select(self.scores.view(self.rows, -1))
        tokens = items.view(self.batch, -1, self.k_items)
        page = self.indexer.page
        if page > 1:
            tokens = (tokens.unsqueeze(-1) * page + self.in_page).flatten(2)
        weights = (tokens < self.visible).float() if self.weighted else None
        if self.clamp:
            tokens = tokens.clamp_max(self.cache.shape.capacity - 1)
        table = self.cache.page_table[: self.batch]
        k, v = self.cache.k[layer], self.cache.v[layer]
        return sparse_decode(q, k, v, tokens, weights=weights, scale=scale, page_table=table, backend="triton",
                             out=self.out)  # fmt: skip


class SinkWindowStep:
    """The first `sink` tokens and the newest k - sink (or `window`) of each row, shared by all heads."""

    def __init__(self, selector: SinkWindow, cache: PagedKVCache, batch: int, num_q_heads: int, k: int) -> None:
        s = cache.shape
        self.cache, self.batch, self.k = cache, batch, k
        self.sink = min(selector.sink, k)
        rest = k - self.sink
        self.window = rest if selector.window is None else min(selector.window, rest)
        self.name = f"sink_window (sink {self.sink}, window {self.window})"
        self.offsets = torch.arange(self.sink + self.window, device=cache.device)
        self.out = torch.empty(batch, num_q_heads, s.head_dim, dtype=s.dtype, device=cache.device)
        self.tokens: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.timings_us: dict[str, float] = {}

    def before_step(self, host_lengths: list[int]) -> None:
        """Nothing to plan on the host."""

    def adopt(self, host_lengths: list[int]) -> None:
        """No state: the pattern follows from the lengths."""

    def prepare(self, slots: torch.Tensor) -> None:
        """The step's tokens and weights [B, Hkv, sink + window], the same for every layer."""
        visible = (slots + 1).view(-1, 1)
        # slot j < sink: token j; slot j >= sink: token visible - window + (j - sink)
        pos = torch.where(self.offsets < self.sink, self.offsets, visible - self.window + self.offsets - self.sink)
        valid = (pos < visible) & ((self.offsets < self.sink) | (pos >= self.sink))
        hkv = self.cache.shape.num_kv_heads
        self.tokens = pos.clamp(0, self.cache.shape.capacity - 1).to(torch.int32).unsqueeze(1).expand(-1, hkv, -1)
        self.tokens = self.tokens.contiguous()
        self.weights = valid.float().unsqueeze(1).expand(-1, hkv, -1).contiguous()

    def attend(self, layer: int, q: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        return sparse_decode(q, self.cache.k[layer], self.cache.v[layer], self.tokens, weights=self.weights,
                             scale=scale, page_table=self.cache.page_table[: self.batch], backend="triton",
                             out=self.out)  # fmt: skip
