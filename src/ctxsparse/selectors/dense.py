"""Every visible token: the baseline that sparse selectors are measured against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection
from ctxsparse.selectors.base import SelectionContext, Selector


@dataclass
class Dense(Selector):
    """Select all visible (and not excluded) positions, ignoring the budget."""

    granularity: str = "q_head"
    name = "dense"

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        n = allowed.shape[-1]
        pos = torch.arange(n, device=allowed.device).expand_as(allowed)
        # Allowed positions first, in order: sort keys put disallowed ones at the end.
        order = torch.where(allowed, pos, pos + n).argsort(dim=-1)
        return Selection(order.to(torch.int32), allowed.sum(-1).to(torch.int32))
