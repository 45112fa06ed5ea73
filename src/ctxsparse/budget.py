"""How many of the N visible tokens each head may read: sparsity, density or a fixed token count."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Budget:
    """A per-head token budget. Give exactly one of sparsity (N/k), density (k/N) or tokens (k).

    Sparsity S means each head reads k = ceil(N / S) of N visible tokens, at least 1 and at most N.
    """

    sparsity: float | None = None
    density: float | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("sparsity", "density", "tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise TypeError(
                    f"Budget {name} must be a number; got {value!r} ({type(value).__name__}). "
                    f"Example: Budget({name}={ {'sparsity': 50, 'density': 0.02, 'tokens': 64}[name] })."
                )
        given = [name for name in ("sparsity", "density", "tokens") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"Budget takes exactly one of sparsity=, density= or tokens=; got {given or 'none'}. "
                "Example: Budget(sparsity=50) reads 1 of every 50 tokens."
            )
        if self.sparsity is not None and not (math.isfinite(self.sparsity) and self.sparsity >= 1):
            raise ValueError(f"Budget sparsity must be a finite number >= 1 (1 = dense); got {self.sparsity}.")
        if self.density is not None and not (0 < self.density <= 1):
            raise ValueError(f"Budget density must lie in (0, 1] (1 = dense); got {self.density}.")
        if self.tokens is not None and (int(self.tokens) != self.tokens or self.tokens < 1):
            raise ValueError(f"Budget tokens must be a whole number >= 1; got {self.tokens}.")

    @property
    def is_dense(self) -> bool:
        """True when the budget always covers every visible token."""
        return self.sparsity == 1 or self.density == 1

    def tokens_for(self, n: int) -> int:
        """k for a context of n visible tokens: ceil(n / S) (or ceil(n * d), or the fixed count), within [1, n]."""
        if n < 1:
            return 0
        if self.sparsity is not None:
            k = math.ceil(n / self.sparsity - 1e-9)
        elif self.density is not None:
            k = math.ceil(n * self.density - 1e-9)
        else:
            k = int(self.tokens)
        return max(1, min(n, k))

    def tokens_for_tensor(self, n: torch.Tensor) -> torch.Tensor:
        """Elementwise tokens_for over an integer tensor of visible counts (0 stays 0)."""
        n = n.to(torch.int64)
        if self.sparsity is not None:
            k = torch.ceil(n.double() / self.sparsity - 1e-9).to(torch.int64)
        elif self.density is not None:
            k = torch.ceil(n.double() * self.density - 1e-9).to(torch.int64)
        else:
            k = torch.full_like(n, int(self.tokens))
        return torch.minimum(torch.clamp(k, min=1), n)

    def label(self) -> str:
        """Short text for tables: '50x', 'd=0.02', 'k=64'."""
        if self.sparsity is not None:
            return f"{self.sparsity:g}x"
        if self.density is not None:
            return f"d={self.density:g}"
        return f"k={self.tokens}"
