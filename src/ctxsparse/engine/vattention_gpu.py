"""vAttention inside the engine's decode step, per query head, on device kernels with fixed shapes (graph-safe).

The reference selector (selectors/vattention.py) runs hundreds of small tensor ops per layer over the whole
[B, H, N] cache view; here one step does, per layer:
  1. the exact logits of every key for every query head (one Triton kernel reading each key once from the
     paged cache, -inf past each row's length);
  2. the sink and window logits gathered from them, then those slots set to -inf;
  3. the top k - sink - window by logit (the radix top-k of the other pipelines), sorted, and the Hoeffding
     split of selectors.vattention.split_budget on those few logits in one kernel (gpu_index.hoeffding): how
     many top tokens to keep, how many residual tokens to draw;
  4. the residual drawn uniformly without replacement: a uniform variate per slot, -inf outside the residual,
     and the same top-k on it (the draws with the largest variates);
  5. one kernel writing the read list [sink + window | kept top | samples], the samples weighted by M / n, and
     the Triton sparse decode over it.
The slots after the kept top tokens hold the samples (kept + drawn never exceeds the top's slots), so the
step reads exactly k slots per query head. As in the engine's other pipelines k is fixed for the call
(from the longest row), where the reference path takes each row's own k every step; the random draws come
from the device's default generator, so they differ from the reference path's seeded ones.
"""

from __future__ import annotations

import torch

from ctxsparse.attention.sparse_decode import sparse_decode
from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.gpu_index import RowTopK
from ctxsparse.gpu_index.hoeffding import launch_assemble, launch_split
from ctxsparse.gpu_index.key_score import launch_key_scores
from ctxsparse.selectors import OracleTopK
from ctxsparse.selectors.vattention import VAttention

NEG_INF = float("-inf")


def vattention_problem(selector: VAttention) -> str | None:
    """Why this vAttention has no GPU pipeline, or None: the pipeline selects per query head with an exact top."""
    if selector.granularity != "q_head":
        return "VAttention's GPU pipeline selects per query head: use granularity='q_head' (its default)"
    if type(selector.top) is not OracleTopK:
        return "VAttention's GPU pipeline reads its heavy hitters by exact top-k: use top=None (OracleTopK)"
    return None


def sink_window_only(selector: VAttention, k: int) -> bool:
    """True when k leaves nothing past sink and window: vAttention then reads exactly SinkWindow's tokens."""
    return k <= selector.sink + selector.window


class VAttentionStep:
    """vAttention for a fixed batch and budget k > sink + window; tokens per (row, query head)."""

    def __init__(self, selector: VAttention, cache: PagedKVCache, batch: int, num_q_heads: int, k: int) -> None:
        if sink_window_only(selector, k):
            raise ValueError(f"k={k} leaves no top-k or samples past sink + window; use the sink + window step.")
        s = cache.shape
        dev = cache.device
        self.selector, self.cache, self.batch, self.k = selector, cache, batch, k
        self.heads, self.rows = num_q_heads, batch * num_q_heads
        self.sink, self.window = selector.sink, selector.window
        self.top_slots = k - self.sink - self.window  # the top-k's slots, shared with the samples
        self.name = (
            f"vattention pipeline (k={k}: sink {self.sink}, window {self.window}, {self.top_slots} top-k or "
            "sampled; triton sparse decode)"
        )
        cap = s.capacity
        self.scores = torch.empty(self.rows, cap, dtype=torch.float32, device=dev)
        self.noise = torch.empty(self.rows, cap, dtype=torch.float32, device=dev)
        self.top, self.sample = RowTopK(), RowTopK()
        for topk in (self.top, self.sample):
            topk.plan(self.rows, cap, self.top_slots, torch.float32, dev)
        self.positions = torch.arange(cap, device=dev)
        self.sw_offsets = torch.arange(self.sink + self.window, device=dev)
        self.top_offsets = torch.arange(self.top_slots, device=dev)
        self.keep = torch.zeros(self.rows, dtype=torch.int64, device=dev)
        self.draw = torch.zeros(self.rows, dtype=torch.int64, device=dev)
        self.tokens = torch.zeros(self.rows, k, dtype=torch.int32, device=dev)
        self.weights = torch.zeros(self.rows, k, dtype=torch.float32, device=dev)
        self.out = torch.empty(batch, num_q_heads, s.head_dim, dtype=s.dtype, device=dev)
        self.timings_us: dict[str, float] = {}
        self.last: dict[str, torch.Tensor] = {}  # the last layer's tokens, weights, keep and draw (for tests)

    def before_step(self, host_lengths: list[int]) -> None:
        """Nothing to plan on the host."""

    def adopt(self, host_lengths: list[int]) -> None:
        """No index state: every step scores the keys themselves."""

    def prepare(self, slots: torch.Tensor) -> None:
        """Once per step, from the slots [B] (int64) this step writes: per (row, query head) the visible count,
        the sink and window tokens with their validity, and the budget left after them."""
        h = self.heads
        visible = (slots + 1).view(-1, 1)
        off, sink, window = self.sw_offsets, self.sink, self.window
        pos = torch.where(off < sink, off, visible - window + off - sink)  # [B, sink + window]
        valid = (pos < visible) & ((off < sink) | (pos >= sink))
        self.sw_tokens = pos.clamp(0, self.cache.shape.capacity - 1).repeat_interleave(h, 0)  # [R, s + w]
        self.sw_valid = valid.repeat_interleave(h, 0)
        self.sw_weights = self.sw_valid.float()
        visible = visible.repeat_interleave(h, 0)  # [R, 1]
        sw_count = self.sw_valid.sum(-1)
        self.rest = (self.k - sw_count).clamp(0, self.top_slots)  # budget past sink and window
        self.outside_sw = visible.view(-1) - sw_count  # tokens neither sink nor window
        self.past_end = self.positions.view(1, -1) >= visible  # [R, cap]

    def _select(self, layer: int, q: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and weights [B, Hq, k] of one layer."""
        keys = self.cache.rows(layer)[0]
        launch_key_scores(q, keys, self.scores, None, scale, "none", lengths=self.cache.lengths, length_add=1)
        sw_logits = self.scores.gather(1, self.sw_tokens).masked_fill_(~self.sw_valid, NEG_INF)
        self.scores.scatter_(1, self.sw_tokens, NEG_INF)
        top = self.top.run(self.scores).long()  # [R, t], unordered
        top_logits, order = self.scores.gather(1, top).sort(dim=1, descending=True, stable=True)
        top = top.gather(1, order)  # by logit, highest first
        count = torch.isfinite(top_logits).sum(-1)
        launch_split(top_logits, sw_logits, count, self.rest, self.outside_sw - count, self.keep, self.draw,
                     self.selector.epsilon, self.selector.delta, self.selector.min_samples)  # fmt: skip
        kept = self.top_offsets.view(1, -1) < self.keep.view(-1, 1)
        # The residual: visible, neither sink nor window nor kept. Its largest -log(1 - u) are a uniform draw.
        noise = torch.log1p(-self.noise.uniform_()).neg_().masked_fill_(self.past_end, NEG_INF)
        noise.scatter_(1, self.sw_tokens, NEG_INF)
        noise.scatter_(1, top, noise.gather(1, top).masked_fill_(kept, NEG_INF))
        drawn = self.sample.run(noise).long()
        drawn = drawn.gather(1, noise.gather(1, drawn).argsort(-1, descending=True))  # largest variates first
        launch_assemble(self.sw_tokens, self.sw_weights, top, drawn, self.keep, self.draw, self.outside_sw - self.keep,
                        self.tokens, self.weights)  # fmt: skip
        tokens = self.tokens.view(self.batch, self.heads, self.k)
        weights = self.weights.view(self.batch, self.heads, self.k)
        self.last = {"tokens": tokens, "weights": weights, "keep": self.keep, "draw": self.draw}
        return tokens, weights

    def attend(self, layer: int, q: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        """q [B, Hq, D] and the step's new keys (already in the cache) -> [B, Hq, D]."""
        tokens, weights = self._select(layer, q, scale)
        table = self.cache.page_table[: self.batch]
        return sparse_decode(q, self.cache.k[layer], self.cache.v[layer], tokens, weights=weights, scale=scale,
                             page_table=table, backend="triton", out=self.out)  # fmt: skip
