"""What Engine.generate returns: each row's text and tokens, each decode step's time, and how the steps ran."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EngineResult:
    """What Engine.generate produced: per row its text and tokens; per decode step its time."""

    texts: list[str]
    token_ids: list[list[int]]
    step_ms: list[float]
    prefill_s: float
    mode: str
    attention: str
    notes: list[str] = field(default_factory=list)

    @property
    def median_step_ms(self) -> float:
        times = sorted(self.step_ms)
        return times[len(times) // 2] if times else float("nan")

    @property
    def tokens_per_s(self) -> float:
        """Decode throughput of the batch: rows / median step time."""
        return len(self.token_ids) * 1e3 / self.median_step_ms
