"""StreamingLLM's pattern: the first `sink` tokens plus the `window` most recent ones."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ctxsparse.selection import Selection
from ctxsparse.selectors.base import SelectionContext, Selector, topk_selection


@dataclass
class SinkWindow(Selector):
    """Attention sinks and a local window, capped by the budget (sinks first, then the newest tokens).

    When sink + window is 0 or both are None the whole budget goes to the window.
    """

    sink: int = 4
    window: int | None = None
    granularity: str = "q_head"
    name = "sink_window"
    static_shapes = True

    def __post_init__(self) -> None:
        if self.sink < 0 or (self.window is not None and self.window < 0):
            raise ValueError(f"SinkWindow sink and window must be >= 0; got sink={self.sink}, window={self.window}.")

    def select(self, ctx: SelectionContext, k: torch.Tensor, exclude: torch.Tensor | None = None) -> Selection:
        allowed = self.allowed(ctx, exclude)
        n = allowed.shape[-1]
        # Rank of each visible position from the start and from the end of its row.
        vis = ctx.visible_for(self.granularity)
        from_start = vis.cumsum(-1) - 1
        from_end = vis.flip(-1).cumsum(-1).flip(-1) - 1
        in_pattern = from_start < self.sink
        if self.window is None:
            in_pattern = in_pattern | vis
        else:
            in_pattern = in_pattern | (from_end < self.window)
        pos = torch.arange(n, device=allowed.device, dtype=torch.float32)
        # Sinks outrank window tokens; among window tokens the newest come first.
        priority = torch.where(from_start < self.sink, 2.0 * n - pos, pos)
        return topk_selection(priority, k, allowed & in_pattern, static_k=ctx.static_k)
