"""Exact top-k of q·K per head: the upper bound that practical indexers approximate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection
from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection


@dataclass
class OracleTopK(Selector):
    """The k positions of highest attention logit (q_head) or group importance (kv_head).

    aggregate (kv_head only): 'prob_sum' (default), 'logit_max' or 'logit_mean'.
    """

    granularity: str = "q_head"
    aggregate: str = "prob_sum"
    name = "oracle_topk"
    static_shapes = True

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        scores = ctx.oracle_scores(self.granularity, self.aggregate)
        if exclude is None:  # the scores are already -inf wherever invisible
            return topk_selection(scores, k, None, ctx.visible_counts(), static_k=ctx.static_k)
        return topk_selection(scores, k, self.allowed(ctx, exclude), static_k=ctx.static_k)
