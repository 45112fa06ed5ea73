"""The batched decode step as a function of fixed buffers, captured once in a CUDA graph and replayed.

Inputs live in fixed tensors (the token ids; each row's length in the cache's device tensor), so one
capture serves every later step: replay() launches the whole forward (the model's own modules and the
engine's attention) with no host work and no device sync. Warm-up runs before capture restore the
lengths; everything else a step writes is idempotent for a given length (see indexers.py). Every method
runs in engine_mode(), so a step may be launched from inside or outside torch.inference_mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ctxsparse.engine.cache import PagedKVCache
from ctxsparse.engine.grad_mode import engine_mode

WARMUP_RUNS = 2


class DecodeStep:
    """One decode step of `batch` rows: logits [B, V] of the next token after `ids`.

    prepare(batch), when given, runs first in every step: it derives, once per step rather than once per
    layer, what the layers' attention needs from the rows' lengths (write slots, visibility masks).
    """

    @engine_mode()
    def __init__(self, model: torch.nn.Module, cache: PagedKVCache, batch: int,
                 prepare: Callable[[int], None] | None = None) -> None:  # fmt: skip
        self.model, self.cache, self.batch, self.prepare = model, cache, batch, prepare
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=cache.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None

    @engine_mode()
    def forward(self) -> torch.Tensor:
        """The step itself: positions are the rows' lengths; lengths grow by one at the end."""
        b = self.batch
        if self.prepare is not None:
            self.prepare(b)
        positions = self.cache.lengths[:b].view(b, 1).long()
        out = self.model(input_ids=self.ids, position_ids=positions, use_cache=False, logits_to_keep=1)
        self.cache.lengths[:b] += 1
        return out.logits[:, -1]

    @engine_mode()
    def capture(self) -> None:
        """Warm up on a side stream (lengths restored after each run), then capture one step."""
        saved = self.cache.lengths.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.forward()
                self.cache.lengths.copy_(saved)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.forward()
        self.cache.lengths.copy_(saved)

    @engine_mode()
    def run(self, token: torch.Tensor) -> torch.Tensor:
        """Feed token [B] and return the step's logits (the graph's fixed output buffer when captured)."""
        self.ids.copy_(token.view(-1, 1))
        if self.graph is None:
            return self.forward()
        self.graph.replay()
        return self.logits

    def release(self) -> None:
        self.graph = None
        self.logits = None
