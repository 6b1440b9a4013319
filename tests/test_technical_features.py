"""The 44 technical features: table, causality, finiteness, hand-computed values, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.data import gap_mask, load_ohlcv, synthesize_market
from himari_env.data.errors import DataFormatError, OHLCVValidationError
from himari_env.features.technical import (
    FEATURE_TABLE,
    FeatureMatrix,
    compute_technical_features,
    feature_table_markdown,
)

N_BARS = 2_000
BOUNDED_UNITS = {"[0,1]": (0.0, 1.0), "[-1,1]": (-1.0, 1.0), "[-1,0]": (-1.0, 0.0)}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthesize_market(N_BARS, seed=3).frame


@pytest.fixture(scope="module")
def features(frame: pd.DataFrame) -> FeatureMatrix:
    return compute_technical_features(frame)


@pytest.fixture(scope="module")
def gapped_frame(frame: pd.DataFrame) -> pd.DataFrame:
    # Remove 1, 3 and 2 hours at three places so bars follow each other by 2, 4 and 3 hours.
    return frame.drop(frame.index[[400, 900, 901, 902, 1500, 1501]])


def _frame(
    close: list[float],
    *,
    open_: list[float] | None = None,
    high: list[float] | None = None,
    low: list[float] | None = None,
    volume: list[float] | None = None,
    index: pd.DatetimeIndex | None = None,
) -> pd.DataFrame:
    close_array = np.asarray(close, dtype=np.float64)
    open_array = (
        np.asarray(open_, dtype=np.float64)
        if open_ is not None
        else np.concatenate(([close_array[0]], close_array[:-1]))
    )
    high_array = (
        np.asarray(high, dtype=np.float64)
        if high is not None
        else np.maximum(open_array, close_array)
    )
    low_array = (
        np.asarray(low, dtype=np.float64)
        if low is not None
        else np.minimum(open_array, close_array)
    )
    volume_array = (
        np.asarray(volume, dtype=np.float64) if volume is not None else np.ones_like(close_array)
    )
    if index is None:
        index = pd.date_range("2021-01-01", periods=close_array.size, freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_array,
            "high": high_array,
            "low": low_array,
            "close": close_array,
            "volume": volume_array,
        },
        index=index.rename("timestamp"),
    )


def _perturb_after(frame: pd.DataFrame, cut: int, seed: int) -> pd.DataFrame:
    """Copy of ``frame`` with every bar after row ``cut`` changed (prices and volume)."""
    rng = np.random.default_rng(seed)
    changed = frame.copy()
    later = changed.index[cut + 1 :]
    price_factor = np.exp(rng.normal(0.0, 0.05, later.size))
    for name in ("open", "high", "low", "close"):
        changed.loc[later, name] = changed.loc[later, name].to_numpy() * price_factor
    changed.loc[later, "volume"] = rng.lognormal(6.0, 1.0, later.size)
    return changed


def _column(matrix: FeatureMatrix, name: str) -> np.ndarray:
    return matrix.values[:, matrix.names.index(name)]


# --- the table -------------------------------------------------------------------------


def test_table_has_exactly_44_unique_names() -> None:
    names = [spec.name for spec in FEATURE_TABLE]
    assert len(names) == 44
    assert len(set(names)) == 44


def test_table_rows_are_complete() -> None:
    for spec in FEATURE_TABLE:
        assert spec.formula.strip()
        assert spec.unit.strip()
        assert isinstance(spec.window, int) and spec.window >= 1


def test_matrix_columns_follow_the_table(features: FeatureMatrix) -> None:
    assert features.names == tuple(spec.name for spec in FEATURE_TABLE)
    assert features.table == FEATURE_TABLE
    assert features.values.shape == (N_BARS, 44)
    assert features.values.dtype == np.float64


def test_markdown_table_lists_every_feature_once() -> None:
    lines = feature_table_markdown().strip().splitlines()
    assert lines[0].startswith("| # | name | formula | window (bars) | unit |")
    rows = lines[2:]
    assert len(rows) == 44
    for spec, row in zip(FEATURE_TABLE, rows, strict=True):
        assert f"`{spec.name}`" in row
        assert row.count(" | ") == 4  # pipes inside formulas are escaped


# --- causality -------------------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(cut=st.integers(min_value=0, max_value=N_BARS - 2), seed=st.integers(0, 2**16))
def test_changing_bars_after_t_changes_no_feature_at_or_before_t(
    frame: pd.DataFrame, features: FeatureMatrix, cut: int, seed: int
) -> None:
    perturbed = compute_technical_features(_perturb_after(frame, cut, seed))
    assert np.array_equal(perturbed.values[: cut + 1], features.values[: cut + 1], equal_nan=True)
    assert not np.array_equal(
        perturbed.values[cut + 1 :], features.values[cut + 1 :], equal_nan=True
    )


@pytest.mark.parametrize("cut", [0, 150, 189, 190, 700, 1333, N_BARS - 2])
def test_truncating_after_t_changes_no_feature_at_or_before_t(
    frame: pd.DataFrame, features: FeatureMatrix, cut: int
) -> None:
    truncated = compute_technical_features(frame.iloc[: cut + 1])
    assert np.array_equal(truncated.values, features.values[: cut + 1], equal_nan=True)
    assert truncated.warmup_bars == min(features.warmup_bars, cut + 1)


@pytest.mark.parametrize("cut", [398, 400, 903, 1200, 1493])
def test_gap_scaled_features_are_causal(gapped_frame: pd.DataFrame, cut: int) -> None:
    mask = gap_mask(gapped_frame.index)
    full = compute_technical_features(gapped_frame, gap_mask=mask)
    perturbed = compute_technical_features(
        _perturb_after(gapped_frame, cut, seed=cut), gap_mask=mask
    )
    truncated = compute_technical_features(gapped_frame.iloc[: cut + 1], gap_mask=mask[: cut + 1])
    assert np.array_equal(perturbed.values[: cut + 1], full.values[: cut + 1], equal_nan=True)
    assert np.array_equal(truncated.values, full.values[: cut + 1], equal_nan=True)


# --- warm-up and finiteness ------------------------------------------------------------


def test_warmup_rows_are_nan_not_filled(features: FeatureMatrix) -> None:
    warmup = features.warmup_bars
    assert 168 < warmup <= 720  # the splits' warm-up covers every feature's window
    assert np.all(np.isnan(features.values[0, :8]))  # no log return at the first bar
    assert not np.all(np.isfinite(features.values[warmup - 1]))
    assert np.all(np.isfinite(features.values[warmup:]))


def test_no_nan_or_inf_after_warmup_on_45000_synthetic_bars() -> None:
    market = synthesize_market(45_000, seed=11)
    matrix = compute_technical_features(market.frame, gap_mask=gap_mask(market.frame.index))
    assert np.all(np.isfinite(matrix.values[matrix.warmup_bars :]))


@pytest.mark.realdata
def test_no_nan_or_inf_after_warmup_on_the_real_file(real_data_path: Path) -> None:
    frame = load_ohlcv(real_data_path)
    mask = gap_mask(frame.index)
    matrix = compute_technical_features(frame, gap_mask=mask)
    assert matrix.values.shape == (43_816, 44)
    assert matrix.warmup_bars <= 720
    assert np.all(np.isfinite(matrix.values[matrix.warmup_bars :]))
    # The two zero-volume flat bars give finite volume features and zero candle shares.
    zero_volume_rows = np.flatnonzero(frame["volume"].to_numpy() == 0.0)
    assert zero_volume_rows.size == 2
    for name in ("log_volume_ratio_24", "amihud_z_168", "volume_z_24", "obv_slope_24"):
        assert np.all(np.isfinite(_column(matrix, name)[zero_volume_rows]))
    assert np.all(_column(matrix, "log_volume_ratio_24")[zero_volume_rows] < 0)
    _assert_bounded_units(matrix)


def _assert_bounded_units(matrix: FeatureMatrix) -> None:
    after = matrix.values[matrix.warmup_bars :]
    for position, spec in enumerate(matrix.table):
        if spec.unit in BOUNDED_UNITS:
            low, high = BOUNDED_UNITS[spec.unit]
            assert after[:, position].min() >= low, spec.name
            assert after[:, position].max() <= high, spec.name


def test_bounded_features_stay_in_their_stated_range(features: FeatureMatrix) -> None:
    _assert_bounded_units(features)


def test_frame_shorter_than_warmup_gives_all_nan_rows_and_warmup_n() -> None:
    frame = synthesize_market(50, seed=0).frame
    matrix = compute_technical_features(frame)
    assert matrix.warmup_bars == 50
    assert np.isfinite(_column(matrix, "logret_1")[1:]).all()


# --- hand-computed values ----------------------------------------------------------------


def test_one_bar_log_return_is_log_of_close_ratio() -> None:
    matrix = compute_technical_features(_frame([100.0, 110.0, 99.0, 99.0]))
    expected = [math.nan, math.log(110 / 100), math.log(99 / 110), 0.0]
    np.testing.assert_allclose(_column(matrix, "logret_1"), expected, rtol=1e-13)
    np.testing.assert_allclose(
        _column(matrix, "logret_2"), [math.nan, math.nan, math.log(99 / 100), math.log(99 / 110)]
    )


def test_rsi_follows_wilder_on_a_known_sequence() -> None:
    # 14 changes: ten +1.0 and four -0.5, then +2.0, then -1.0.
    changes = [1.0, 1.0, -0.5, 1.0, 1.0, 1.0, -0.5, 1.0, 1.0, -0.5, 1.0, 1.0, -0.5, 1.0, 2.0, -1.0]
    close = np.concatenate(([100.0], 100.0 + np.cumsum(changes)))
    rsi = _column(compute_technical_features(_frame(close.tolist())), "rsi_14")
    assert np.all(np.isnan(rsi[:14]))
    gain, loss = 10.0 / 14, 2.0 / 14  # seeded with simple means of the first 14 changes
    assert rsi[14] == pytest.approx((100 * gain / (gain + loss) - 50) / 50)  # 0.6667
    gain, loss = (gain * 13 + 2.0) / 14, (loss * 13) / 14
    assert rsi[15] == pytest.approx((100 * gain / (gain + loss) - 50) / 50)
    gain, loss = (gain * 13) / 14, (loss * 13 + 1.0) / 14
    assert rsi[16] == pytest.approx((100 * gain / (gain + loss) - 50) / 50)


def test_rsi_of_a_flat_market_is_neutral_zero() -> None:
    rsi = _column(compute_technical_features(_frame([50.0] * 20)), "rsi_14")
    assert np.all(rsi[14:] == 0.0)


def test_bollinger_percent_b_and_width_on_a_ramp() -> None:
    close = [float(value) for value in range(1, 21)]  # 1, 2, ..., 20
    matrix = compute_technical_features(_frame(close))
    mean, population_sd = 10.5, math.sqrt((20**2 - 1) / 12)
    lower, upper = mean - 2 * population_sd, mean + 2 * population_sd
    assert _column(matrix, "bb_pctb_20")[19] == pytest.approx((20 - lower) / (upper - lower))
    assert _column(matrix, "bb_width_20")[19] == pytest.approx((upper - lower) / mean)
    assert np.all(np.isnan(_column(matrix, "bb_pctb_20")[:19]))


def test_true_range_uses_the_previous_close_and_is_a_fraction_of_close() -> None:
    frame = _frame(
        [100.0, 103.0, 110.0],
        open_=[100.0, 100.0, 109.0],
        high=[100.0, 105.0, 112.0],
        low=[100.0, 98.0, 108.0],
    )
    true_range = _column(compute_technical_features(frame), "true_range")
    assert math.isnan(true_range[0])
    assert true_range[1] == pytest.approx(max(105 - 98, abs(105 - 100), abs(98 - 100)) / 103)
    assert true_range[2] == pytest.approx(max(112 - 108, abs(112 - 103), abs(108 - 103)) / 110)


def test_gap_scales_the_previous_close_part_of_true_range() -> None:
    index = pd.DatetimeIndex(
        ["2021-01-01 00:00", "2021-01-01 01:00", "2021-01-01 04:00"], tz="UTC"
    )  # 3 hours between the last two bars: 2 missing hours
    frame = _frame(
        [100.0, 103.0, 110.0],
        open_=[100.0, 100.0, 109.0],
        high=[100.0, 105.0, 112.0],
        low=[100.0, 98.0, 108.0],
        index=index,
    )
    true_range = _column(
        compute_technical_features(frame, gap_mask=gap_mask(frame.index)), "true_range"
    )
    assert true_range[2] == pytest.approx(max(112 - 108, abs(112 - 103) / math.sqrt(3)) / 110)


def test_gap_spanning_return_is_scaled_in_realized_vol_but_not_in_log_return() -> None:
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 40)))
    hours = np.arange(40)
    hours[20:] += 3  # bar 20 comes 4 hours after bar 19: 3 missing hours
    index = pd.Timestamp("2021-01-01", tz="UTC") + pd.to_timedelta(hours, unit="h")
    frame = _frame(close.tolist(), index=pd.DatetimeIndex(index))
    matrix = compute_technical_features(frame, gap_mask=gap_mask(frame.index))
    log_returns = np.diff(np.log(close))
    scaled = log_returns.copy()
    scaled[19] /= 2.0  # the return ending at bar 20 spans 4 hours: divided by sqrt(4)
    assert _column(matrix, "logret_1")[20] == pytest.approx(log_returns[19], rel=1e-12)
    assert _column(matrix, "rv_24")[30] == pytest.approx(np.std(scaled[6:30], ddof=1), rel=1e-9)
    unscaled = compute_technical_features(frame)
    assert _column(unscaled, "rv_24")[30] == pytest.approx(
        np.std(log_returns[6:30], ddof=1), rel=1e-9
    )


def test_candle_shares_and_the_zero_range_rule() -> None:
    frame = _frame(
        [104.0, 100.0],
        open_=[101.0, 100.0],
        high=[105.0, 100.0],
        low=[100.0, 100.0],
    )
    matrix = compute_technical_features(frame)
    assert _column(matrix, "body_share")[0] == pytest.approx(3 / 5)
    assert _column(matrix, "upper_wick_share")[0] == pytest.approx(1 / 5)
    assert _column(matrix, "lower_wick_share")[0] == pytest.approx(1 / 5)
    for name in ("body_share", "upper_wick_share", "lower_wick_share"):
        assert _column(matrix, name)[1] == 0.0  # high == low: documented rule, shares are 0


def test_stochastic_k_and_distance_to_rolling_high_low() -> None:
    close = [float(value) for value in range(10, 40)]  # 30 rising bars
    high = [value + 1.0 for value in close]
    low = [value - 2.0 for value in close]
    matrix = compute_technical_features(_frame(close, high=high, low=low))
    last = 29
    highest_14, lowest_14 = high[last], low[last - 13]
    assert _column(matrix, "stoch_k_14")[last] == pytest.approx(
        (close[last] - lowest_14) / (highest_14 - lowest_14)
    )
    assert _column(matrix, "dist_high_24")[last] == pytest.approx(
        math.log(close[last] / high[last])
    )
    assert _column(matrix, "dist_low_24")[last] == pytest.approx(
        math.log(close[last] / low[last - 23])
    )


def test_drawdown_from_the_rolling_168_bar_max() -> None:
    close = [100.0] * 100 + [120.0] + [90.0] * 100
    drawdown = _column(compute_technical_features(_frame(close)), "drawdown_168")
    assert math.isnan(drawdown[166])
    assert drawdown[167] == pytest.approx(-0.25)  # 90 / 120 - 1
    assert drawdown[200] == pytest.approx(-0.25)


def test_zero_volume_bar_gives_a_finite_log_volume_ratio() -> None:
    volume = [10.0] * 30
    volume[29] = 0.0
    matrix = compute_technical_features(_frame([100.0 + i for i in range(30)], volume=volume))
    mean_24 = (23 * 10.0 + 0.0) / 24
    expected = math.log((0.0 + 0.01 * mean_24) / (1.01 * mean_24))
    assert _column(matrix, "log_volume_ratio_24")[29] == pytest.approx(expected)
    assert _column(matrix, "log_volume_ratio_24")[28] == pytest.approx(0.0, abs=1e-12)
    assert _column(matrix, "obv_slope_24")[28] == 1.0  # every bar up, all volume counted up


def test_hour_of_day_is_encoded_on_the_unit_circle() -> None:
    index = pd.date_range("2021-01-01 06:00", periods=2, freq="h", tz="UTC")
    matrix = compute_technical_features(_frame([100.0, 101.0], index=index))
    assert _column(matrix, "hour_sin")[0] == pytest.approx(1.0)
    assert _column(matrix, "hour_cos")[0] == pytest.approx(0.0, abs=1e-12)
    assert _column(matrix, "hour_sin")[1] == pytest.approx(math.sin(2 * math.pi * 7 / 24))


def test_features_do_not_depend_on_the_price_level(frame: pd.DataFrame) -> None:
    scaled = frame.copy()
    scaled[["open", "high", "low", "close"]] *= 13.0
    original = compute_technical_features(frame).values
    rescaled = compute_technical_features(scaled).values
    # Rolling sums of price levels (Bollinger, SMA) round differently at another scale.
    np.testing.assert_allclose(rescaled, original, rtol=1e-6, atol=1e-9, equal_nan=True)


# --- errors ------------------------------------------------------------------------------


def test_missing_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(DataFormatError, match="volume"):
        compute_technical_features(frame.drop(columns=["volume"]))


def test_nan_price_is_reported_with_row_and_timestamp(frame: pd.DataFrame) -> None:
    broken = frame.copy()
    broken.iloc[5, broken.columns.get_loc("close")] = np.nan
    with pytest.raises(OHLCVValidationError, match=r"close.*row 5 \(2020-01-01 05:00:00\+00:00\)"):
        compute_technical_features(broken)


def test_inconsistent_high_is_reported(frame: pd.DataFrame) -> None:
    broken = frame.copy()
    broken.iloc[7, broken.columns.get_loc("high")] = broken["low"].iloc[7] * 0.5
    with pytest.raises(OHLCVValidationError, match="row 7"):
        compute_technical_features(broken)


def test_unsorted_index_is_reported(frame: pd.DataFrame) -> None:
    swapped = frame.iloc[[0, 2, 1, 3]]
    with pytest.raises(OHLCVValidationError, match="row 2"):
        compute_technical_features(swapped)


def test_gap_mask_of_wrong_shape_is_rejected(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="gap_mask"):
        compute_technical_features(frame, gap_mask=np.zeros(3, dtype=bool))


def test_gap_mask_disagreeing_with_the_index_names_the_row(gapped_frame: pd.DataFrame) -> None:
    mask = gap_mask(gapped_frame.index)
    mask[10] = True
    with pytest.raises(ValueError, match=r"gap_mask.*row 10"):
        compute_technical_features(gapped_frame, gap_mask=mask)
