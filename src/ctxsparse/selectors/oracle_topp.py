"""Smallest set of tokens holding a share p of the softmax mass (nucleus over attention), capped by k."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection
from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection


@dataclass
class OracleTopP(Selector):
    """Per row, the fewest highest-probability tokens whose dense attention mass reaches p; at most k."""

    p: float = 0.9
    granularity: str = "q_head"
    aggregate: str = "prob_sum"
    name = "oracle_topp"

    def __post_init__(self) -> None:
        if not 0 < self.p <= 1:
            raise ValueError(f"OracleTopP p must lie in (0, 1]; got {self.p}.")

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        if self.granularity == "q_head":
            mass = ctx.probs()
        else:
            g = ctx.group_size
            b, hq, t, n = ctx.probs().shape
            mass = ctx.probs().view(b, hq // g, g, t, n).mean(2)
        mass = mass.masked_fill(~allowed, 0.0)
        sel = topk_selection(mass.masked_fill(~allowed, -1.0), k, allowed)
        picked = torch.gather(mass, -1, sel.indices.to(torch.int64))
        slots = torch.arange(sel.k, device=picked.device)
        picked = picked.masked_fill(slots >= sel.lengths.unsqueeze(-1), 0.0)
        # Mass before each slot; a slot is needed while the mass before it is still below p.
        before = picked.cumsum(-1) - picked
        needed = (before < self.p - 1e-7).sum(-1).clamp_min(1)
        lengths = torch.minimum(sel.lengths.to(needed.dtype), needed)
        return Selection(sel.indices, lengths.to(torch.int32))
