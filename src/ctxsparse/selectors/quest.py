"""Quest-style page selection: per-page key bounds give an upper bound of every logit in the page.

For a page with elementwise key minimum m and maximum M (per kv head), any key k in it satisfies
    q·k = sum_c q_c k_c <= sum_c max(q_c m_c, q_c M_c) = q⁺·M + q⁻·m,
with q⁺ = max(q, 0) and q⁻ = min(q, 0). Pages are ranked by this bound and read whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctxsparse.selection import Selection, check_granularity
from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection
from ctxsparse.selectors.key_index import mark_indexed, pending_start

AGGREGATES = ("max", "sum")


@dataclass
class Quest(Selector):
    """Read whole pages of `page_size` consecutive cache slots, best page bound first.

    Budget: exactly k tokens per row. Pages are taken in bound order, each contributing its allowed
    positions (visible and not excluded; other positions in a page never count against the budget), until
    k tokens are reached; the last page taken is cut to fit, keeping its earliest positions. The last,
    partially written page is a page like the others. A page_size larger than the cache acts as one page
    holding the whole cache (the same as clamping it to the cache length).
    Granularity: bounds are kept per kv head; at q_head each query head ranks pages with its own bound;
    at kv_head the group's bounds are aggregated with `aggregate`: 'max' (the page may hold a token any
    head of the group needs; the default) or 'sum'.
    State: page minima/maxima, updated for new positions only (the partially filled page is recomputed).
    """

    page_size: int = 16
    granularity: str = "q_head"
    aggregate: str = "max"
    name = "quest"
    incremental_state = True  # indexes the cache as tokens are appended

    def __post_init__(self) -> None:
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or self.page_size < 1:
            raise ValueError(f"Quest page_size must be a positive integer (e.g. 16); got {self.page_size!r}.")
        check_granularity(self.granularity)
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"Quest aggregate must be one of {AGGREGATES}; got {self.aggregate!r}.")

    def page_bounds(self, ctx: SelectionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-page key minima and maxima, fp32 [B, Hkv, P, D] with P = ceil(cache_len / page_size)."""
        st = ctx.state(self)
        n, ps = ctx.cache_len, self.page_size
        start = pending_start(st, ctx.keys, n)
        if start < n or "min" not in st:
            first_page = start // ps
            chunk = ctx.keys[:, :, first_page * ps : n].float()
            b, h, length, d = chunk.shape
            pages = math.ceil(length / ps)
            pad = pages * ps - length
            lo = F.pad(chunk, (0, 0, 0, pad), value=math.inf).view(b, h, pages, ps, d).amin(3)
            hi = F.pad(chunk, (0, 0, 0, pad), value=-math.inf).view(b, h, pages, ps, d).amax(3)
            if "min" in st:
                lo = torch.cat([st["min"][:, :, :first_page], lo], dim=2)
                hi = torch.cat([st["max"][:, :, :first_page], hi], dim=2)
            st["min"], st["max"] = lo, hi
            mark_indexed(st, ctx.keys, n)
        return st["min"], st["max"]

    def page_scores(self, ctx: SelectionContext) -> torch.Tensor:
        """Scaled upper bound of the logits in each page, fp32 [B, H, Tq, P] at self.granularity."""
        lo, hi = self.page_bounds(ctx)
        b, hq, t, d = ctx.query.shape
        hkv, g = ctx.num_kv_heads, ctx.group_size
        q = ctx.query.float().reshape(b, hkv, g * t, d)
        # [B, Hkv, g*Tq, D] @ [B, Hkv, D, P] -> [B, Hkv, g, Tq, P]
        bound = q.clamp_min(0) @ hi.transpose(-1, -2) + q.clamp_max(0) @ lo.transpose(-1, -2)
        bound = (bound * ctx.scale).view(b, hkv, g, t, -1)
        if self.granularity == "q_head":
            return bound.reshape(b, hq, t, -1)
        return bound.amax(2) if self.aggregate == "max" else bound.sum(2)

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        scores = self.page_scores(ctx)
        pages = scores.shape[-1]
        ps, n = self.page_size, ctx.num_keys
        # Rank of each page in bound order (0 = best); slots past the indexed pages get rank `pages`.
        order = torch.argsort(scores, dim=-1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(pages, device=order.device).expand_as(order))
        rank = F.pad(rank, (0, 1), value=pages)
        pos = torch.arange(n, device=rank.device)
        page_of = (pos // ps).clamp_max(pages).expand(*rank.shape[:-1], n)
        # Whole pages in rank order, earliest position first inside a page: higher priority is read first.
        priority = -(torch.gather(rank, -1, page_of) * ps + pos % ps).float()
        return topk_selection(priority, k, allowed)
