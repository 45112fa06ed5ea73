"""What a selector hands an attention backend: which cached positions each (batch, head, query) reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Granularity = Literal["q_head", "kv_head"]
GRANULARITIES: tuple[str, ...] = ("q_head", "kv_head")


def check_granularity(granularity: str) -> None:
    """Raise a clear error for an unknown GQA granularity."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}.")


@dataclass
class Selection:
    """Selected KV positions.

    indices: int32 [B, H, Tq, k], positions into the KV cache. H is the kv-head count when one selection
        is shared by a GQA group, or the query-head count when each query head selects its own.
    lengths: optional int32 [B, H, Tq]; only indices[..., :lengths] are valid (ragged budgets).
    weights: optional float [B, H, Tq, k]; each selected token's exp-score is multiplied by its weight in
        numerator and denominator (importance weights of sampling methods).
    """

    indices: torch.Tensor
    lengths: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("indices", "lengths", "weights"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"Selection.{name} must be a torch.Tensor; got {type(value).__name__}. Wrap it, e.g. "
                    f"torch.tensor(..., dtype=torch.int32) for indices [B, H, Tq, k]."
                )
        if self.indices.dim() != 4:
            raise ValueError(f"Selection.indices must be [B, H, Tq, k]; got shape {tuple(self.indices.shape)}.")
        if self.indices.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"Selection.indices must be int32 or int64; got {self.indices.dtype}.")
        if self.lengths is not None and tuple(self.lengths.shape) != tuple(self.indices.shape[:3]):
            raise ValueError(
                f"Selection.lengths must be [B, H, Tq] = {tuple(self.indices.shape[:3])}; "
                f"got {tuple(self.lengths.shape)}."
            )
        if self.lengths is not None and not self.lengths.is_cuda and self.lengths.numel():
            # On the GPU this check would cost a host sync per call; sparse_attention checks there instead.
            low, high = int(self.lengths.min()), int(self.lengths.max())
            if low < 0 or high > self.k:
                raise ValueError(
                    f"Selection.lengths must lie in [0, k={self.k}] (valid slots per row); got range [{low}, {high}]."
                )
        if self.weights is not None and tuple(self.weights.shape) != tuple(self.indices.shape):
            raise ValueError(
                f"Selection.weights must match indices {tuple(self.indices.shape)}; got {tuple(self.weights.shape)}."
            )

    @property
    def heads(self) -> int:
        return self.indices.shape[1]

    @property
    def k(self) -> int:
        return self.indices.shape[3]

    def valid_mask(self) -> torch.Tensor:
        """Bool [B, H, Tq, k]: True where an index slot is within its row's length."""
        if self.lengths is None:
            return torch.ones(self.indices.shape, dtype=torch.bool, device=self.indices.device)
        slots = torch.arange(self.k, device=self.indices.device)
        return slots < self.lengths.unsqueeze(-1).to(slots.dtype)

    def counts(self) -> torch.Tensor:
        """Int [B, H, Tq]: how many tokens each row reads."""
        if self.lengths is None:
            return torch.full(self.indices.shape[:3], self.k, dtype=torch.int64, device=self.indices.device)
        return self.lengths.to(torch.int64)

    def to_query_heads(self, num_query_heads: int) -> Selection:
        """The same selection expressed per query head (a kv-head selection repeated over its group)."""
        h = self.heads
        if h == num_query_heads:
            return self
        if num_query_heads % h:
            raise ValueError(f"{num_query_heads} query heads cannot share {h} selections evenly.")
        g = num_query_heads // h
        rep = lambda t: None if t is None else t.repeat_interleave(g, dim=1)
        return Selection(rep(self.indices), rep(self.lengths), rep(self.weights))

    def as_mask(self, num_keys: int) -> torch.Tensor:
        """Bool [B, H, Tq, N]: True for every selected position (weights ignored)."""
        b, h, t, _ = self.indices.shape
        idx = self.indices.to(torch.int64).clamp(0, max(num_keys - 1, 0))
        # Invalid slots scatter into a spare column 0 that is dropped, so duplicates never erase a hit.
        target = torch.where(self.valid_mask(), idx + 1, torch.zeros_like(idx))
        hit = torch.zeros(b, h, t, num_keys + 1, dtype=torch.bool, device=self.indices.device)
        hit.scatter_(-1, target, True)
        return hit[..., 1:]
