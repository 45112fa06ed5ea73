"""The selector contract: given queries, the key cache and a per-row budget, say which positions to read."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import torch

from ctxsparse.selection import Selection, check_granularity

NEG_INF = float("-inf")


@dataclass
class SelectionContext:
    """Everything a selector may look at for one attention call of one layer.

    query: [B, Hq, Tq, D]; keys: [B, Hkv, N, D] (the whole cache, after this step's append);
    visible: bool [B, 1, Tq, N], True where query row t may attend to position n (causality, padding,
    sliding windows and unwritten static-cache slots are all folded in here).
    model_key names the model (for per-model files such as calibrations); states holds each selector's
    per-layer state across decoding steps (see `state`).
    static_k: when set, a host-known bound on every row's budget. Selectors that honour it (static_shapes)
    size their output to it instead of reading budgets back to the host, and draw random numbers from the
    device's default generator: no host sync and fixed shapes, so a CUDA graph can capture the call.
    """

    query: torch.Tensor
    keys: torch.Tensor
    visible: torch.Tensor
    scale: float
    layer_idx: int = 0
    num_layers: int = 0
    model_key: str = ""
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    static_k: int | None = None
    _scores: torch.Tensor | None = field(default=None, repr=False)
    _probs: torch.Tensor | None = field(default=None, repr=False)

    @property
    def num_query_heads(self) -> int:
        return self.query.shape[1]

    @property
    def num_kv_heads(self) -> int:
        return self.keys.shape[1]

    @property
    def group_size(self) -> int:
        return self.num_query_heads // self.num_kv_heads

    @property
    def num_keys(self) -> int:
        return self.keys.shape[2]

    @property
    def cache_len(self) -> int:
        """Number of cache slots written so far (a static cache may be longer than this)."""
        written = self.visible.any(dim=(0, 1, 2)).nonzero()
        return int(written.max()) + 1 if written.numel() else 0

    def state(self, owner: object) -> dict[str, Any]:
        """Per-layer state of one selector, kept by the decoding session across steps."""
        return self.states.setdefault(id(owner), {})

    def visible_counts(self) -> torch.Tensor:
        """Int64 [B, 1, Tq]: visible tokens per query row."""
        return self.visible.sum(-1)

    def heads_for(self, granularity: str) -> int:
        check_granularity(granularity)
        return self.num_query_heads if granularity == "q_head" else self.num_kv_heads

    def visible_for(self, granularity: str) -> torch.Tensor:
        """visible broadcast to [B, H, Tq, N] for the granularity."""
        b, _, t, n = self.visible.shape
        return self.visible.expand(b, self.heads_for(granularity), t, n)

    def scores(self) -> torch.Tensor:
        """Scaled q·K logits, fp32 [B, Hq, Tq, N], -inf where invisible. Computed once per call."""
        if self._scores is None:
            # Fold the GQA group into the query rows so K is read once per kv head, never copied per query head.
            b, hq, t, d = self.query.shape
            q = (self.query.float() * self.scale).reshape(b, self.num_kv_heads, self.group_size * t, d)
            s = torch.matmul(q, self.keys.float().transpose(-1, -2)).view(b, hq, t, -1)
            self._scores = s.masked_fill(~self.visible, NEG_INF)
        return self._scores

    @property
    def cached_scores(self) -> torch.Tensor | None:
        """The dense logits if a selector already computed them this call, else None (nothing is computed)."""
        return self._scores

    def probs(self) -> torch.Tensor:
        """Dense softmax attention probabilities, fp32 [B, Hq, Tq, N]."""
        if self._probs is None:
            self._probs = torch.softmax(self.scores(), dim=-1).nan_to_num(0.0)
        return self._probs

    def oracle_scores(self, granularity: str, aggregate: str = "prob_sum") -> torch.Tensor:
        """Exact importance per head: logits for q_head; for kv_head the group's aggregate.

        aggregate: 'prob_sum' (sum of the group's softmax probabilities, the default), 'logit_max' or
        'logit_mean' over the group's logits.
        """
        if granularity == "q_head":
            return self.scores()
        check_granularity(granularity)
        b, hq, t, n = self.query.shape[0], self.num_query_heads, self.query.shape[2], self.num_keys
        g = self.group_size
        if aggregate == "prob_sum":
            agg = self.probs().view(b, hq // g, g, t, n).sum(2)
        elif aggregate == "logit_max":
            agg = self.scores().view(b, hq // g, g, t, n).amax(2)
        elif aggregate == "logit_mean":
            agg = self.scores().view(b, hq // g, g, t, n).mean(2)
        else:
            raise ValueError(f"aggregate must be 'prob_sum', 'logit_max' or 'logit_mean'; got {aggregate!r}.")
        return agg.masked_fill(~self.visible, NEG_INF)


def topk_selection(
    scores: torch.Tensor,
    k: torch.Tensor,
    allowed: torch.Tensor | None,
    available: torch.Tensor | None = None,
    static_k: int | None = None,
) -> Selection:
    """Pick the k highest-scoring allowed positions per row.

    scores: [B, H, Tq, N]; k: int [B, 1 or H, Tq] tokens wanted per row; allowed: bool broadcastable to
    scores. Rows get min(k, allowed count) tokens; disallowed positions are never selected. Fast path:
    allowed=None when scores are already -inf wherever disallowed, with `available` the allowed count per row.
    """
    if allowed is not None:
        allowed = allowed.expand_as(scores)
        scores = scores.float().masked_fill(~allowed, NEG_INF)
        available = allowed.sum(-1, dtype=torch.int64)
    elif available is None:
        raise ValueError("topk_selection needs `available` counts when `allowed` is None.")
    lengths = torch.minimum(k, available).expand(scores.shape[:3])
    if static_k is not None:  # a host-known bound: no read-back of the budgets
        kmax = min(max(static_k, 1), scores.shape[-1])
    else:
        kmax = min(max(int(lengths.max()) if lengths.numel() else 0, 1), scores.shape[-1])
    idx = torch.topk(scores, kmax, dim=-1, sorted=True).indices  # sorted: a ragged row keeps its best
    return Selection(idx.to(torch.int32), lengths.to(torch.int32))


class Selector(abc.ABC):
    """Base of every selector: a small dataclass with a `granularity` field and a `select` method."""

    granularity: str = "q_head"
    name: str = ""
    # True when per-layer state indexes the cache as tokens are appended, assuming every row of a batch
    # appends at the same column (batches of ragged rows then run row by row).
    incremental_state: bool = False
    # True when select() honours SelectionContext.static_k (fixed shapes, no host sync: CUDA-graph safe).
    static_shapes: bool = False

    @abc.abstractmethod
    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        """Return a Selection at self.granularity.

        k: int64 [B, 1, Tq], the token budget of each query row (already clipped to its visible count).
        exclude: optional bool [B, H, Tq, N] of positions already taken (by an earlier Compose member);
        they must not be selected again, and the budget k counts only new tokens.
        """

    def allowed(self, ctx: SelectionContext, exclude: torch.Tensor | None) -> torch.Tensor:
        """Visible and not excluded, [B, H, Tq, N] at self.granularity."""
        vis = ctx.visible_for(self.granularity)
        return vis if exclude is None else vis & ~exclude
