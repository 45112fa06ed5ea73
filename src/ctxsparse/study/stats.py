"""95% confidence intervals for mean task scores: Wilson for 0/1 scores, a seeded bootstrap for fractions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval; method is 'wilson', 'bootstrap' or 'none' (no samples)."""

    mean: float | None
    low: float | None
    high: float | None
    method: str
    n: int


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved at 0/n and n/n, unlike the normal one)."""
    if n <= 0:
        raise ValueError("wilson() needs at least one trial (n >= 1).")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson() needs 0 <= successes <= n; got successes={successes}, n={n}.")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(
    scores: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval (2.5th, 97.5th) of the mean; seeded, so reports are reproducible."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap() needs at least one score.")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def is_binary(scores: Sequence[float]) -> bool:
    """True when every score is exactly 0 or 1."""
    return all(s in (0.0, 1.0) for s in scores)


def mean_interval(scores: Sequence[float]) -> Interval:
    """Mean and 95% interval: Wilson when all scores are 0/1, otherwise the percentile bootstrap."""
    values = [float(s) for s in scores]
    n = len(values)
    if n == 0:
        return Interval(None, None, None, "none", 0)
    mean = sum(values) / n
    if is_binary(values):
        low, high = wilson(sum(values), n)
        return Interval(mean, low, high, "wilson", n)
    low, high = bootstrap(values)
    return Interval(mean, low, high, "bootstrap", n)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are present (not None, not NaN); None when there are none."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(present) / len(present) if present else None
