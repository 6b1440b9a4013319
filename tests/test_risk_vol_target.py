"""H3 volatility targeting and the trailing volatility it shares with H6."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.risk.vol_target import (
    VolTargetParams,
    fit_vol_target,
    trailing_std,
    trailing_volatility,
    vol_target_scale,
)


def streaming_std(returns: np.ndarray, t: int, window: int, first: int = 1) -> float:
    history = returns[max(first, t - window + 1) : t + 1]
    return float(np.std(history, ddof=1)) if history.size >= 2 else math.nan


def test_precomputed_trailing_std_equals_the_streaming_computation():
    rng = np.random.default_rng(0)
    returns = np.concatenate(([0.0], rng.standard_t(3, 400) * 0.01))
    window = 24
    precomputed = trailing_std(returns, window)
    for t in range(returns.size):
        expected = streaming_std(returns, t, window)
        if math.isnan(expected):
            assert math.isnan(precomputed[t])
        else:
            assert precomputed[t] == pytest.approx(expected, rel=1e-9, abs=1e-15)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(min_value=0, max_value=199), seed=st.integers(0, 10_000))
def test_changing_bars_after_t_leaves_volatility_at_and_before_t_bit_identical(t, seed):
    rng = np.random.default_rng(seed)
    returns = np.concatenate(([0.0], rng.normal(0, 0.01, 199)))
    perturbed = returns.copy()
    perturbed[t + 1 :] = rng.normal(0, 0.05, 199 - t)
    before = trailing_std(returns, 30)
    after = trailing_std(perturbed, 30)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])


def test_annualization_uses_8760_bars():
    returns = np.concatenate(([0.0], np.tile([0.01, -0.01], 50)))
    assert trailing_volatility(returns, 10)[-1] == pytest.approx(trailing_std(returns, 10)[-1] * math.sqrt(8760))


def test_scale_is_target_over_vol_capped_at_max():
    assert vol_target_scale(0.60, 0.30, 3.0) == pytest.approx(0.5)
    assert vol_target_scale(0.05, 0.30, 3.0) == 3.0
    assert vol_target_scale(0.0, 0.30, 3.0) == 3.0  # constant price
    assert vol_target_scale(math.nan, 0.30, 3.0) == 1.0  # no history: no opinion


def test_constant_series_has_zero_volatility_not_nan():
    returns = np.zeros(50)
    vols = trailing_std(returns, 10)
    assert np.all(vols[2:] == 0.0)
    assert np.all(np.isnan(vols[:2]))  # returns[0] is a placeholder, one return is not enough


def test_target_is_sixty_percent_of_the_train_median_trailing_vol():
    rng = np.random.default_rng(1)
    train = rng.normal(0, 0.007, 2_000)
    fitted = fit_vol_target(train, VolTargetParams(window=168))
    vols = trailing_volatility(train, 168, min_periods=168, first=0)
    assert fitted.median_vol == pytest.approx(np.nanmedian(vols))
    assert fitted.target_vol == pytest.approx(0.6 * np.nanmedian(vols))
    assert fitted.annual_vol == pytest.approx(np.std(train, ddof=1) * math.sqrt(8760))


def test_non_finite_returns_are_rejected_with_their_index():
    with pytest.raises(ValueError, match=r"returns\[3\]"):
        trailing_std(np.array([0.0, 0.01, 0.02, np.inf]), 2)
