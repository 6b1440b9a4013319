"""Rolling-percentile regime features: exact ranks, causality, streaming == batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.data.errors import OHLCVValidationError
from himari_env.features.percentiles import (
    FEATURE_WARMUP_BARS,
    REGIME_FEATURE_NAMES,
    RegimeFeatureStream,
    RollingPercentile,
    feature_warmup_bars,
    regime_base_series,
    regime_percentile_features,
    rolling_percentile,
)


def make_frame(n_bars: int, seed: int = 0, gap_after: int | None = None) -> pd.DataFrame:
    """A random-walk OHLCV frame with consistent OHLC; optionally 3 hours missing after a row."""
    rng = np.random.default_rng(seed)
    log_ret = rng.standard_t(4, n_bars) * 0.01 * np.exp(np.sin(np.arange(n_bars) / 90.0))
    close = 30_000.0 * np.exp(np.cumsum(log_ret))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 0.004, (2, n_bars)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    volume = rng.lognormal(6.0, 0.5, n_bars)
    index = pd.date_range("2021-01-01", periods=n_bars, freq="1h", tz="UTC", name="timestamp")
    if gap_after is not None:
        index = index.where(index <= index[gap_after], index + pd.Timedelta(hours=3))
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def brute_force_percentile(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for t in range(window - 1, len(x)):
        win = x[t - window + 1 : t + 1]
        if np.isnan(win).any():
            continue
        less = np.sum(win < x[t])
        equal = np.sum(win == x[t])
        out[t] = (less + 0.5 * (equal - 1)) / (window - 1)
    return out


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(min_value=-5, max_value=5), min_size=1, max_size=60),
    window=st.integers(min_value=2, max_value=12),
)
def test_rolling_percentile_equals_brute_force_mid_rank_with_ties(values, window):
    x = np.asarray(values, dtype=np.float64)  # small integers: many ties
    expected = brute_force_percentile(x, window)
    np.testing.assert_array_equal(rolling_percentile(x, window), expected)


def test_tie_rule_maps_min_to_zero_max_to_one_constant_to_half():
    assert rolling_percentile(np.array([3.0, 1.0, 2.0, 0.5]), 4)[-1] == 0.0
    assert rolling_percentile(np.array([3.0, 1.0, 2.0, 9.0]), 4)[-1] == 1.0
    assert rolling_percentile(np.full(5, 7.0), 3)[-1] == 0.5
    # value 2 among [1, 2, 2, 3]: 1 below, 2 equal (itself included) -> (1 + 0.5) / 3
    assert rolling_percentile(np.array([1.0, 2.0, 3.0, 2.0]), 4)[-1] == pytest.approx(0.5)


def test_percentile_is_nan_until_window_holds_finite_values():
    x = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 4.0])
    out = rolling_percentile(x, 3)
    assert np.isnan(out[:4]).all()
    assert out[4] == 1.0 and out[5] == 1.0


def test_nan_after_warmup_is_an_error_naming_the_index():
    with pytest.raises(ValueError, match="index 3"):
        rolling_percentile(np.array([1.0, 2.0, 3.0, np.nan, 5.0]), 2)


def test_infinite_input_is_an_error():
    with pytest.raises(ValueError, match="infinite at index 1"):
        rolling_percentile(np.array([1.0, np.inf, 3.0]), 2)


@pytest.mark.parametrize("window", [1, 0, -3])
def test_window_below_two_is_rejected(window):
    with pytest.raises(ValueError, match="window must be >= 2"):
        rolling_percentile(np.arange(10.0), window)
    with pytest.raises(ValueError, match="window must be >= 2"):
        RollingPercentile(window)
    with pytest.raises(ValueError, match="window must be >= 2"):
        regime_percentile_features(make_frame(50), window=window)


def test_streaming_percentile_equals_batch():
    rng = np.random.default_rng(3)
    x = np.concatenate([[np.nan] * 4, rng.integers(0, 20, 400).astype(np.float64)])
    stream = RollingPercentile(37)
    streamed = np.array([stream.update(v) for v in x])
    np.testing.assert_array_equal(streamed, rolling_percentile(x, 37))


def test_streaming_percentile_rejects_late_nan():
    stream = RollingPercentile(3)
    stream.update(1.0)
    with pytest.raises(ValueError, match="update 1"):
        stream.update(np.nan)


def test_features_have_the_design_names_range_and_warmup():
    frame = make_frame(900)
    values, names = regime_percentile_features(frame)
    assert names == (
        "vol_pct",
        "trend_pct",
        "volume_pct",
        "tr_pct",
        "vov_pct",
        "ret_dir_signed",
    )
    assert names == REGIME_FEATURE_NAMES
    assert values.shape == (900, 6) and values.dtype == np.float64
    finite_rows = np.isfinite(values).all(axis=1)
    assert FEATURE_WARMUP_BARS == feature_warmup_bars(500) == 546
    assert not finite_rows[:FEATURE_WARMUP_BARS].any()
    assert finite_rows[FEATURE_WARMUP_BARS:].all()
    assert values[finite_rows].min() >= 0.0 and values[finite_rows].max() <= 1.0


def test_features_are_causal_changing_later_bars_changes_nothing_before():
    frame = make_frame(700, seed=1)
    t = 610
    before, _ = regime_percentile_features(frame, window=120)
    perturbed = frame.copy()
    rng = np.random.default_rng(9)
    factor = rng.uniform(0.5, 2.0, len(frame) - t - 1)
    for column in ("open", "high", "low", "close"):
        perturbed.iloc[t + 1 :, perturbed.columns.get_loc(column)] *= factor
    perturbed.iloc[t + 1 :, perturbed.columns.get_loc("volume")] *= factor[::-1]
    after, _ = regime_percentile_features(perturbed, window=120)
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])
    assert not np.array_equal(after[t + 1 :], before[t + 1 :])


def test_streaming_features_equal_batch_bit_for_bit_across_a_gap():
    frame = make_frame(420, seed=2, gap_after=150)
    batch, _ = regime_percentile_features(frame, window=60)
    stream = RegimeFeatureStream(window=60)
    bars = frame.to_numpy()
    streamed = np.array(
        [stream.update(ts, *bar) for ts, bar in zip(frame.index, bars, strict=True)]
    )
    np.testing.assert_array_equal(streamed, batch)


def test_gap_return_is_scaled_to_hourly_variance_not_dropped():
    frame = make_frame(80, seed=4, gap_after=40)  # bar 41 follows 3 missing hours (4 h step)
    close = frame["close"].to_numpy()
    log_ret = np.log(close[1:] / close[:-1])
    squared = log_ret**2
    squared[40] /= 4.0  # return ending at row 41 spans 4 hours
    base = regime_base_series(frame)
    expected_vol_at_50 = np.sqrt(squared[50 - 23 - 1 : 50].sum() / 24)
    assert base["vol"][50] == pytest.approx(expected_vol_at_50, rel=1e-12)
    assert base["ret_24"][50] == pytest.approx(log_ret[26:50].sum(), rel=1e-12)
    no_correction = regime_base_series(frame, gap_mask=np.zeros(len(frame), dtype=bool))
    assert no_correction["vol"][50] > base["vol"][50]


def test_nan_price_is_reported_with_row_and_timestamp():
    frame = make_frame(60)
    frame.iloc[17, frame.columns.get_loc("close")] = np.nan
    with pytest.raises(OHLCVValidationError, match=r"row 17 \(2021-01-01 17:00:00\+00:00\)"):
        regime_percentile_features(frame)


def test_unsorted_timestamps_are_rejected():
    frame = make_frame(60)
    frame = frame.iloc[[*range(30), 31, 30, *range(32, 60)]]
    with pytest.raises(OHLCVValidationError, match="row 31"):
        regime_percentile_features(frame)


def test_gap_mask_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="gap_mask"):
        regime_percentile_features(make_frame(60), gap_mask=np.zeros(59, dtype=bool))
