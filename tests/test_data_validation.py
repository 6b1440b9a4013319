"""Validation: structural faults raise naming row and timestamp; gaps and zero volume are
reported, never raised, never filled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.data import (
    DataFormatError,
    OHLCVValidationError,
    ValidationReport,
    gap_mask,
    load_ohlcv,
    validate_ohlcv,
)

# The README of the real file lists these runs of missing hours (first..last missing hour).
README_GAP_RUNS = [
    ("2020-02-09T02", "2020-02-09T02"),
    ("2020-02-19T12", "2020-02-19T16"),
    ("2020-03-04T10", "2020-03-04T10"),
    ("2020-04-25T02", "2020-04-25T03"),
    ("2020-06-28T02", "2020-06-28T04"),
    ("2020-11-30T06", "2020-11-30T06"),
    ("2020-12-21T14", "2020-12-21T17"),
    ("2020-12-25T02", "2020-12-25T02"),
    ("2021-02-11T04", "2021-02-11T04"),
    ("2021-03-06T02", "2021-03-06T02"),
    ("2021-04-20T02", "2021-04-20T03"),
    ("2021-04-25T05", "2021-04-25T07"),
    ("2021-08-13T02", "2021-08-13T05"),
    ("2021-09-29T07", "2021-09-29T08"),
    ("2023-03-24T13", "2023-03-24T13"),
]


def make_frame(n_bars: int = 24, seed: int = 0, freq: str = "h") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-03-01T00:00:00Z", periods=n_bars, freq=freq, name="timestamp")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) + rng.uniform(0, 0.5, n_bars)
    low = np.minimum(open_, close) - rng.uniform(0, 0.5, n_bars)
    volume = rng.uniform(1, 100, n_bars)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def stamp(frame: pd.DataFrame, position: int) -> str:
    return frame.index[position].strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- real file


def test_real_file_reports_exactly_the_readme_gaps_and_zero_volume_bars(
    real_data_path: Path,
) -> None:
    frame = load_ohlcv(real_data_path)
    report = validate_ohlcv(frame)
    assert report.is_valid
    assert report.n_rows == 43_816
    assert report.missing_bars == 32
    assert report.n_gap_runs == 15
    assert [
        (run.first_missing[:13], run.last_missing[:13]) for run in report.gaps
    ] == README_GAP_RUNS
    assert report.zero_volume.timestamps == ("2021-02-11T03:00:00Z", "2023-03-24T12:00:00Z")
    # The 20% crash hour of 2020-03-12T10 is a real move, not a fault.
    crash = frame.loc["2020-03-12 10:00:00+00:00"]
    assert crash["close"] / frame["close"].shift(1).loc["2020-03-12 10:00:00+00:00"] < 0.9
    assert report.structural_faults() == []


def test_real_file_gap_mask_marks_the_first_bar_after_each_run(real_data_path: Path) -> None:
    frame = load_ohlcv(real_data_path)
    report = validate_ohlcv(frame)
    mask = gap_mask(frame.index)
    assert mask.dtype == bool and mask.shape == (43_816,)
    assert np.flatnonzero(mask).tolist() == [run.position for run in report.gaps]


# ----------------------------------------------------------------------------- structural faults


def expect_fault(frame: pd.DataFrame, fragment: str, positions: list[int]) -> ValidationReport:
    """Validation raises naming the fault, each listed row by position and timestamp."""
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame)
    message = str(caught.value)
    assert fragment in message
    for position in positions:
        assert f"row {position} at {stamp(frame, position)}" in message
    report = caught.value.report
    assert isinstance(report, ValidationReport) and not report.is_valid
    return report


def test_duplicate_timestamp_is_raised_with_row_and_time() -> None:
    frame = make_frame()
    frame.index = frame.index.where(np.arange(len(frame)) != 7, frame.index[6])
    report = expect_fault(frame, "duplicate timestamp: 1 row(s)", [7])
    assert report.duplicates.positions == (7,)


def test_unsorted_timestamps_are_raised_with_rows() -> None:
    frame = make_frame().iloc[[0, 1, 2, 4, 3, 5, 6, 7]]
    report = expect_fault(frame, "unsorted timestamp: 1 row(s)", [4])
    assert report.unsorted.positions == (4,)


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
def test_nan_in_any_column_is_raised_per_column(column: str) -> None:
    frame = make_frame()
    frame.loc[frame.index[5], column] = np.nan
    report = expect_fault(frame, f"NaN/inf in {column}: 1 row(s)", [5])
    assert {name: rows.count for name, rows in report.nan_or_inf.items()} == {
        name: int(name == column) for name in ("open", "high", "low", "close", "volume")
    }


def test_infinite_price_is_raised_like_nan() -> None:
    frame = make_frame()
    frame.loc[frame.index[2], "high"] = np.inf
    expect_fault(frame, "NaN/inf in high", [2])


def test_non_positive_prices_are_raised() -> None:
    frame = make_frame()
    frame.loc[frame.index[3], "low"] = -1.0
    frame.loc[frame.index[9], ["open", "low"]] = 0.0
    report = expect_fault(frame, "non-positive price: 2 row(s)", [3, 9])
    assert report.non_positive_price.positions == (3, 9)


def test_negative_volume_is_raised() -> None:
    frame = make_frame()
    frame.loc[frame.index[11], "volume"] = -0.5
    expect_fault(frame, "negative volume: 1 row(s)", [11])


def test_high_below_body_and_low_above_body_are_raised() -> None:
    frame = make_frame()
    body_top = frame[["open", "close"]].max(axis=1)
    body_bottom = frame[["open", "close"]].min(axis=1)
    frame.loc[frame.index[4], "high"] = body_top.iloc[4] - 0.01
    frame.loc[frame.index[8], "low"] = body_bottom.iloc[8] + 0.01
    report = expect_fault(frame, "high < max(open, close): 1 row(s)", [4])
    assert report.low_above_open_close.positions == (8,)
    assert "low > min(open, close): 1 row(s): row 8" in str(report.structural_faults())


def test_non_hourly_spacing_is_raised() -> None:
    frame = make_frame(12)
    offsets = pd.to_timedelta(np.where(np.arange(12) >= 6, 30, 0), unit="min")
    frame.index = (frame.index + offsets).rename("timestamp")
    expect_fault(frame, "spacing not a multiple of 1h: 1 row(s)", [6])


def test_half_hourly_bars_fail_an_hourly_check_but_pass_a_30min_one() -> None:
    frame = make_frame(10, freq="30min")
    with pytest.raises(OHLCVValidationError, match="spacing not a multiple of 1h: 9 row"):
        validate_ohlcv(frame)
    assert validate_ohlcv(frame, expected_interval="30min").is_valid


@pytest.mark.parametrize(
    ("make_index", "fragment"),
    [
        (lambda i: i.tz_localize(None), "timezone-naive DatetimeIndex"),
        (lambda i: i.tz_convert("Europe/Berlin"), "timezone Europe/Berlin"),
        (lambda i: pd.RangeIndex(len(i)), "index is a RangeIndex"),
    ],
)
def test_index_that_is_not_a_utc_datetime_index_is_raised(make_index, fragment: str) -> None:
    frame = make_frame()
    frame.index = make_index(frame.index)
    with pytest.raises(OHLCVValidationError, match=fragment):
        validate_ohlcv(frame)


def test_non_float64_column_is_raised() -> None:
    frame = make_frame()
    frame["volume"] = frame["volume"].round().astype(np.int64)
    with pytest.raises(OHLCVValidationError, match="column not float64: volume: int64"):
        validate_ohlcv(frame)


def test_missing_column_is_a_format_error() -> None:
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['volume'\]"):
        validate_ohlcv(make_frame().drop(columns="volume"))


def test_message_lists_the_first_rows_and_counts_the_rest() -> None:
    frame = make_frame()
    frame.loc[frame.index[2:10], "volume"] = -1.0
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame)
    assert "negative volume: 8 row(s): row 2 at" in str(caught.value)
    assert "(+5 more)" in str(caught.value)
    assert caught.value.report.negative_volume.positions == tuple(range(2, 10))


def test_raise_on_error_false_returns_the_report() -> None:
    frame = make_frame()
    frame.loc[frame.index[1], "close"] = np.nan
    report = validate_ohlcv(frame, raise_on_error=False)
    assert not report.is_valid
    assert report.nan_or_inf["close"].positions == (1,)


# ----------------------------------------------------------------------------- reported only


def test_gaps_and_zero_volume_are_reported_not_raised_and_not_filled() -> None:
    full = make_frame(30)
    keep = np.ones(30, dtype=bool)
    keep[[5, 6, 7, 20]] = False
    frame = full[keep].copy()
    frame.loc[frame.index[10], "volume"] = 0.0
    before = frame.copy()
    report = validate_ohlcv(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert report.is_valid
    assert report.n_rows == 26
    assert report.missing_bars == 4 and report.n_gap_runs == 2
    first, second = report.gaps
    assert (first.position, first.missing_bars) == (5, 3)
    assert first.last_before == stamp(full, 4) and first.first_after == stamp(full, 8)
    assert (first.first_missing, first.last_missing) == (stamp(full, 5), stamp(full, 7))
    assert (second.position, second.missing_bars) == (17, 1)
    assert report.zero_volume.positions == (10,)
    assert np.flatnonzero(gap_mask(frame.index)).tolist() == [5, 17]


def test_report_serializes_to_json_and_summary_rows() -> None:
    frame = make_frame().drop(make_frame().index[3])
    report = validate_ohlcv(frame)
    document = json.loads(json.dumps(report.to_dict()))
    assert document["missing_bars"] == 1 and document["n_gap_runs"] == 1
    assert document["gaps"][0]["first_missing"] == stamp(make_frame(), 3)
    assert document["is_valid"] is True
    rows = {row[0]: row for row in report.summary_rows()}
    assert rows["gap runs"][1:3] == (1, "reported")
    assert rows["duplicate timestamp"][1:3] == (0, "ok")


def test_empty_frame_is_valid_and_empty() -> None:
    report = validate_ohlcv(make_frame().iloc[:0])
    assert report.n_rows == 0 and report.first_timestamp is None and report.is_valid


# ----------------------------------------------------------------------------- gap policy


def test_gap_mask_is_false_on_a_regular_series_and_at_the_first_bar() -> None:
    mask = gap_mask(make_frame(10).index)
    assert mask.tolist() == [False] * 10


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.integers(1, 4), min_size=3, max_size=40),
    data=st.data(),
)
def test_gap_mask_at_t_ignores_bars_after_t(steps: list[int], data: st.DataObject) -> None:
    hours = np.cumsum(steps)
    index = pd.DatetimeIndex(pd.Timestamp("2024-01-01T00:00:00Z") + pd.to_timedelta(hours, "h"))
    t = data.draw(st.integers(0, len(steps) - 2))
    later_steps = data.draw(
        st.lists(st.integers(1, 4), min_size=len(steps) - t - 1, max_size=len(steps) - t - 1)
    )
    perturbed_hours = np.concatenate((hours[: t + 1], hours[t] + np.cumsum(later_steps)))
    perturbed = pd.DatetimeIndex(
        pd.Timestamp("2024-01-01T00:00:00Z") + pd.to_timedelta(perturbed_hours, "h")
    )
    original_mask = gap_mask(index)
    assert np.array_equal(gap_mask(perturbed)[: t + 1], original_mask[: t + 1])
    assert np.array_equal(original_mask[1:], np.diff(hours) > 1)
