"""Several selectors sharing one budget: each fills what the earlier ones left, never counting a token twice."""

from __future__ import annotations

import dataclasses

import torch

from ctxsparse.selection import Selection, check_granularity
from ctxsparse.selectors.base import SelectionContext, Selector


class Compose(Selector):
    """Compose(SinkWindow(4, 64), OracleTopK()): members run in order on the remaining budget.

    All members run at the Compose's granularity (q_head by default); members are copied with it.
    """

    name = "compose"

    def __init__(self, *members: Selector, granularity: str = "q_head") -> None:
        if not members:
            raise ValueError("Compose needs at least one selector, e.g. Compose(SinkWindow(4, 64), OracleTopK()).")
        check_granularity(granularity)
        for m in members:
            if not isinstance(m, Selector):
                raise TypeError(f"Compose members must be selectors; got {type(m).__name__}.")
        self.granularity = granularity
        self.members = tuple(
            dataclasses.replace(m, granularity=granularity) if dataclasses.is_dataclass(m) else m for m in members
        )

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.members))}, granularity={self.granularity!r})"

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        n = ctx.num_keys
        b, _, t, _ = ctx.visible.shape
        h = ctx.heads_for(self.granularity)
        taken = torch.zeros(b, h, t, n, dtype=torch.bool, device=ctx.visible.device)
        if exclude is not None:
            taken |= exclude
        remaining = k.expand(b, h, t).clone()
        parts: list[Selection] = []
        for member in self.members:
            if int(remaining.max()) <= 0:
                break
            part = member.select(ctx, remaining, taken)
            parts.append(part)
            taken |= part.as_mask(n)
            remaining = remaining - part.counts()
        return concat_selections(parts, (b, h, t))


def concat_selections(parts: list[Selection], shape: tuple[int, int, int], static_k: int | None = None) -> Selection:
    """Join selections slot-wise, packing each row's valid slots to the front (static_k: keep that many slots,
    a host-known bound on every row's total, instead of reading the largest total back)."""
    if len(parts) == 1:
        return parts[0]
    idx = torch.cat([p.indices.to(torch.int64) for p in parts], dim=-1)
    valid = torch.cat([p.valid_mask() for p in parts], dim=-1)
    has_weights = any(p.weights is not None for p in parts)
    weights = None
    if has_weights:
        weights = torch.cat(
            [p.weights if p.weights is not None else torch.ones(p.indices.shape, device=idx.device) for p in parts],
            dim=-1,
        )
    order = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)
    idx = torch.gather(idx, -1, order)
    if weights is not None:
        weights = torch.gather(weights, -1, order)
    lengths = valid.sum(-1)
    kmax = min(max(static_k, 1), idx.shape[-1]) if static_k is not None else max(int(lengths.max()), 1)
    return Selection(
        idx[..., :kmax].to(torch.int32).contiguous(),
        lengths.to(torch.int32),
        None if weights is None else weights[..., :kmax].contiguous(),
    )
