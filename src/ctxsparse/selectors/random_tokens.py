"""Uniformly random visible tokens: the floor any useful selector must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection
from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection


@dataclass
class RandomTokens(Selector):
    """k visible tokens drawn without replacement, reproducible from the seed, layer and step."""

    seed: int = 0
    granularity: str = "q_head"
    name = "random"

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        state = ctx.state(self)
        step = state.get("step", 0)
        state["step"] = step + 1
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + ctx.layer_idx * 7919 + step)
        noise = torch.rand(allowed.shape, generator=gen).to(allowed.device)
        return topk_selection(noise, k, allowed)
