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


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (sparse - dense) over the samples both have, its 95% interval and two-sided p-value.

    method: 'mcnemar' (0/1 scores: exact McNemar test, interval from the exact binomial interval of the
    discordant pairs), 'bootstrap' (fractions: paired percentile bootstrap), or 'none' (no pairs).
    discordant: (dense right / sparse wrong, dense wrong / sparse right) counts for 0/1 scores.
    """

    mean: float | None
    low: float | None
    high: float | None
    p_value: float | None
    method: str
    n: int
    discordant: tuple[int, int] | None = None


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact up to float rounding)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return min(1.0, sum(math.exp(_log_binom_pmf(i, n, p)) for i in range(k + 1)))


def mcnemar_exact(dense_only: int, sparse_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts: 2 P(X <= min) for X ~ Bin(b + c, 1/2)."""
    if dense_only < 0 or sparse_only < 0:
        raise ValueError("mcnemar_exact() needs non-negative discordant counts.")
    total = dense_only + sparse_only
    if total == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(dense_only, sparse_only), total, 0.5))


def clopper_pearson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion, found by bisection on the binomial CDF."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"clopper_pearson() needs 0 <= successes <= n and n >= 1; got {successes}, {n}.")

    def solve(f) -> float:  # f is increasing in p on [0, 1]; find its root
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if successes == 0 else solve(lambda p: (1 - binom_cdf(successes - 1, n, p)) - alpha / 2)
    high = 1.0 if successes == n else solve(lambda p: alpha / 2 - binom_cdf(successes, n, p))
    return low, high


def paired_difference(
    sparse: Sequence[float], dense: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> PairedDifference:
    """Paired comparison of sparse vs dense scores on the same samples (position i is one sample)."""
    if len(sparse) != len(dense):
        raise ValueError(
            f"paired_difference() needs one dense score per sparse score; got {len(sparse)}, {len(dense)}."
        )
    n = len(sparse)
    if n == 0:
        return PairedDifference(None, None, None, None, "none", 0)
    s = np.asarray(sparse, dtype=np.float64)
    d = np.asarray(dense, dtype=np.float64)
    mean = float((s - d).mean())
    if is_binary(list(s)) and is_binary(list(d)):
        dense_only = int(((d == 1) & (s == 0)).sum())
        sparse_only = int(((d == 0) & (s == 1)).sum())
        discordant = dense_only + sparse_only
        if discordant == 0:
            low = high = 0.0
        else:
            # Conditional on the discordant count m, sparse_only ~ Bin(m, theta) and the difference is
            # (m / n) (2 theta - 1); the exact interval of theta maps onto the difference.
            t_low, t_high = clopper_pearson(sparse_only, discordant)
            low, high = discordant / n * (2 * t_low - 1), discordant / n * (2 * t_high - 1)
        p = mcnemar_exact(dense_only, sparse_only)
        return PairedDifference(mean, low, high, p, "mcnemar", n, (dense_only, sparse_only))
    diffs = s - d
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = (float(x) for x in np.percentile(means, [2.5, 97.5]))
    # Null distribution: the bootstrap means re-centred on 0; p counts those at least as far out as observed.
    extreme = int((np.abs(means - mean) >= abs(mean) - 1e-12).sum())
    p = min(1.0, (1 + extreme) / (1 + resamples))
    return PairedDifference(mean, low, high, p, "bootstrap", n)
