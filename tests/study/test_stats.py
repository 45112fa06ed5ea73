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
