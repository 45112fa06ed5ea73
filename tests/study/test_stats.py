"""Confidence intervals against hand-computed values."""

import pytest

from ctxsparse.study.stats import bootstrap, mean_interval, mean_or_none, wilson


def test_wilson_known_values():
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    low, high = wilson(1, 1)
    assert low == pytest.approx(0.2065, abs=1e-4) and high == pytest.approx(1.0)


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError):
        wilson(0, 0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_mean_interval_picks_wilson_or_bootstrap():
    binary = mean_interval([1, 0, 1, 1])
    assert binary.method == "wilson" and binary.mean == 0.75 and binary.n == 4
    frac = mean_interval([0.5, 0.25, 1.0, 0.75, 0.5])
    assert frac.method == "bootstrap" and frac.mean == pytest.approx(0.6)
    assert frac.low < 0.6 < frac.high and 0.25 <= frac.low and frac.high <= 1.0
    assert mean_interval([]).method == "none" and mean_interval([]).mean is None


def test_bootstrap_constant_and_reproducible():
    assert bootstrap([0.4] * 6) == (pytest.approx(0.4), pytest.approx(0.4))
    scores = [0.1, 0.9, 0.3, 0.7, 0.5, 0.2]
    assert bootstrap(scores) == bootstrap(scores)


def test_mean_or_none_skips_missing():
    assert mean_or_none([None, 1.0, 3.0, float("nan")]) == 2.0
    assert mean_or_none([None]) is None


def test_mcnemar_exact_known_values():
    from ctxsparse.study.stats import mcnemar_exact

    # 10 pairs only dense got right, 2 only sparse: 2 * P(Bin(12, 1/2) <= 2) = 2 * 79 / 4096.
    assert mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_exact(2, 10) == pytest.approx(2 * 79 / 4096)
    # 6 vs 0: 2 * (1/2)^6.
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_clopper_pearson_known_values():
    from ctxsparse.study.stats import clopper_pearson

    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025**0.1))
    assert clopper_pearson(10, 10) == pytest.approx((0.025**0.1, 1.0))
    low, high = clopper_pearson(3, 10)
    assert low == pytest.approx(0.066740, abs=1e-5) and high == pytest.approx(0.652453, abs=1e-5)


def test_paired_difference_binary_uses_mcnemar():
    from ctxsparse.study.stats import clopper_pearson, paired_difference

    # 20 samples: 4 only dense right, 2 only sparse right, 8 both right, 6 both wrong.
    dense = [1] * 4 + [0] * 2 + [1] * 8 + [0] * 6
    sparse = [0] * 4 + [1] * 2 + [1] * 8 + [0] * 6
    out = paired_difference(sparse, dense)
    assert out.method == "mcnemar" and out.n == 20 and out.discordant == (4, 2)
    assert out.mean == pytest.approx(-0.1)
    assert out.p_value == pytest.approx(2 * (1 + 6 + 15) / 64)
    t_low, t_high = clopper_pearson(2, 6)
    assert (out.low, out.high) == pytest.approx((6 / 20 * (2 * t_low - 1), 6 / 20 * (2 * t_high - 1)))
    assert out.low < out.mean < out.high
    same = paired_difference([1, 0, 1], [1, 0, 1])
    assert (same.mean, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_fractions_use_the_paired_bootstrap():
    from ctxsparse.study.stats import BOOTSTRAP_RESAMPLES, paired_difference

    # Every sample gains exactly 0.25: no resample differs, so the interval is a point and p is the floor.
    shifted = paired_difference([0.5, 0.75, 1.0, 0.25], [0.25, 0.5, 0.75, 0.0])
    assert shifted.method == "bootstrap" and shifted.mean == pytest.approx(0.25)
    assert (shifted.low, shifted.high) == pytest.approx((0.25, 0.25))
    assert shifted.p_value == pytest.approx(1 / (1 + BOOTSTRAP_RESAMPLES))
    # Gains and losses that cancel: mean 0 and p = 1.
    even = paired_difference([0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0])
    assert even.mean == pytest.approx(0.0) and even.p_value == 1.0 and even.low < 0 < even.high
    with pytest.raises(ValueError, match="one dense score per sparse score"):
        paired_difference([1.0], [1.0, 0.0])
    assert paired_difference([], []).method == "none"
