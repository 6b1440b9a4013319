"""Loaders: every source becomes the canonical frame; every parse error names file, line and
column."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.constants import OHLCV_COLUMNS
from himari_env.data import (
    DataFormatError,
    load_binance_klines_csv,
    load_binance_klines_zip,
    load_ohlcv,
    load_ohlcv_csv,
    load_ohlcv_parquet,
)

ISO = "%Y-%m-%dT%H:%M:%SZ"


def make_frame(
    n_bars: int = 48, start: str = "2024-12-31T20:00:00Z", seed: int = 0
) -> pd.DataFrame:
    """A small valid canonical frame with a random walk close."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=n_bars, freq="h", name="timestamp")
    close = 40_000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
    open_ = np.concatenate(([40_000.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n_bars))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n_bars))
    volume = rng.lognormal(6, 1, n_bars)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def binance_lines(frame: pd.DataFrame, unit: str = "ms") -> list[str]:
    """Rows of the Binance public kline dump (12 fields) for a canonical frame."""
    scale = {"ms": 1_000, "us": 1_000_000}[unit]
    open_times = frame.index.as_unit("s").asi8 * scale
    lines = []
    for open_time, (o, h, lo, c, v) in zip(
        open_times.tolist(), frame.to_numpy().tolist(), strict=True
    ):
        close_time = open_time + 3600 * scale - 1
        lines.append(
            f"{open_time},{o!r},{h!r},{lo!r},{c!r},{v!r},{close_time},{v * c!r},1234,"
            f"{v / 2!r},{v * c / 2!r},0"
        )
    return lines


BINANCE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)


def write_binance_zip(path: Path, lines: list[str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(path.name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
    return path


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(OHLCV_COLUMNS)
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "timestamp"


# ----------------------------------------------------------------------------- real file


def test_real_file_loads_as_canonical_frame(real_data_path: Path) -> None:
    frame = load_ohlcv(real_data_path)
    assert_canonical(frame)
    assert len(frame) == 43_816
    assert frame.index[0] == pd.Timestamp("2020-01-01T00:00:00Z")
    assert frame.index[-1] == pd.Timestamp("2024-12-31T23:00:00Z")
    assert frame.iloc[0].tolist() == [7195.24, 7196.25, 7175.46, 7177.02, 511.814901]
    rows_per_year = frame.index.year.value_counts().sort_index().tolist()
    assert rows_per_year == [8_766, 8_747, 8_760, 8_759, 8_784]


# ----------------------------------------------------------------------------- Binance CSV


@pytest.mark.parametrize("unit", ["ms", "us"])
@pytest.mark.parametrize("with_header", [False, True])
def test_binance_csv_with_or_without_header_in_ms_or_us(
    tmp_path: Path, unit: str, with_header: bool
) -> None:
    expected = make_frame()
    lines = binance_lines(expected, unit)
    if with_header:
        lines = [BINANCE_HEADER, *lines]
    path = tmp_path / "BTCUSDT-1h.csv"
    path.write_text("\n".join(lines) + "\n")
    for loaded in (load_binance_klines_csv(path), load_ohlcv(path)):
        assert_canonical(loaded)
        pd.testing.assert_frame_equal(loaded, expected, check_freq=False)


def test_binance_csv_spanning_the_2025_switch_to_microseconds(tmp_path: Path) -> None:
    expected = make_frame(start="2024-12-31T20:00:00Z")
    in_2024 = expected.index < pd.Timestamp("2025-01-01T00:00:00Z")
    lines = binance_lines(expected[in_2024], "ms") + binance_lines(expected[~in_2024], "us")
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    pd.testing.assert_frame_equal(load_ohlcv(path), expected, check_freq=False)


def test_binance_open_time_that_is_no_ms_or_us_epoch_is_named(tmp_path: Path) -> None:
    lines = binance_lines(make_frame(4))
    fields = lines[2].split(",")
    fields[0] = "1735689600"  # seconds: not a Binance unit
    lines[2] = ",".join(fields)
    path = tmp_path / "seconds.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataFormatError, match=r"seconds\.csv: line 3, column 'open_time'"
    ):
        load_binance_klines_csv(path)


# ----------------------------------------------------------------------------- ZIPs


def test_binance_zip_loads_the_csv_inside(tmp_path: Path) -> None:
    expected = make_frame()
    path = write_binance_zip(tmp_path / "BTCUSDT-1h-2025-01.zip", binance_lines(expected))
    pd.testing.assert_frame_equal(load_binance_klines_zip(path), expected, check_freq=False)
    pd.testing.assert_frame_equal(load_ohlcv(path), expected, check_freq=False)


def test_several_zips_concatenate_in_the_order_given(tmp_path: Path) -> None:
    expected = make_frame(72)
    parts = [expected.iloc[:20], expected.iloc[20:50], expected.iloc[50:]]
    paths = [
        write_binance_zip(tmp_path / f"BTCUSDT-1h-2025-0{i + 1}.zip", binance_lines(part, "us"))
        for i, part in enumerate(parts)
    ]
    pd.testing.assert_frame_equal(load_binance_klines_zip(paths), expected, check_freq=False)
    # A directory loads its ZIPs sorted by name (month order for Binance names).
    pd.testing.assert_frame_equal(load_ohlcv(tmp_path), expected, check_freq=False)
    # The order given is kept, not sorted: validation is what reports disorder.
    reversed_frame = load_binance_klines_zip(paths[::-1])
    assert reversed_frame.index[0] == parts[2].index[0]


def test_zip_without_exactly_one_csv_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "\n".join(binance_lines(make_frame(2))))
        archive.writestr("b.csv", "\n".join(binance_lines(make_frame(2))))
    with pytest.raises(DataFormatError, match=r"two\.zip: expected exactly one CSV"):
        load_ohlcv(path)


def test_corrupt_zip_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataFormatError, match=r"broken\.zip: not a valid ZIP"):
        load_ohlcv(path)


def test_error_inside_a_zip_names_archive_and_member(tmp_path: Path) -> None:
    lines = binance_lines(make_frame(5))
    lines[-1] = lines[-1].rsplit(",", 8)[0]  # truncated last row
    path = write_binance_zip(tmp_path / "BTCUSDT-1h-2025-02.zip", lines)
    with pytest.raises(
        DataFormatError, match=r"BTCUSDT-1h-2025-02\.zip!BTCUSDT-1h-2025-02\.csv: line 5"
    ):
        load_ohlcv(path)


# ----------------------------------------------------------------------------- generic CSV


def test_generic_csv_with_column_mapping_and_second_epochs(tmp_path: Path) -> None:
    expected = make_frame(10)
    table = pd.DataFrame(
        {
            "Date": expected.index.as_unit("s").asi8,
            "Open": expected["open"].to_numpy(),
            "High": expected["high"].to_numpy(),
            "Low": expected["low"].to_numpy(),
            "Close": expected["close"].to_numpy(),
            "Volume BTC": expected["volume"].to_numpy(),
            "Volume USDT": 1.0,
        }
    )
    path = tmp_path / "custom.csv"
    table.to_csv(path, index=False)
    mapping = dict(
        timestamp_column="Date",
        open_column="Open",
        high_column="High",
        low_column="Low",
        close_column="Close",
        volume_column="Volume BTC",
    )
    for unit in ("s", None):  # explicit, and detected by magnitude
        loaded = load_ohlcv(path, timestamp_unit=unit, **mapping)
        pd.testing.assert_frame_equal(loaded, expected, check_freq=False)


def test_generic_csv_iso_offsets_are_converted_and_naive_times_read_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "offsets.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01T02:00:00+02:00,1,2,0.5,1.5,10\n"
        "2024-01-01T01:00:00Z,1.5,2,1,1.8,11\n"
        "2024-01-01 02:00:00,1.8,2,1.7,1.9,12\n"
    )
    frame = load_ohlcv(path)
    assert_canonical(frame)
    assert list(frame.index.strftime(ISO)) == [
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00Z",
        "2024-01-01T02:00:00Z",
    ]


def test_loader_keeps_file_order_and_does_not_repair(tmp_path: Path) -> None:
    expected = make_frame(6)
    shuffled = expected.iloc[[0, 2, 1, 3, 3, 5]]
    path = tmp_path / "unsorted.csv"
    shuffled.to_csv(path, date_format=ISO)
    loaded = load_ohlcv(path)
    pd.testing.assert_frame_equal(loaded, shuffled, check_freq=False)


# ----------------------------------------------------------------------------- Parquet


def test_parquet_with_timestamp_index_or_column(tmp_path: Path) -> None:
    expected = make_frame(30)
    as_index = tmp_path / "index.parquet"
    expected.to_parquet(as_index)
    pd.testing.assert_frame_equal(load_ohlcv(as_index), expected, check_freq=False)

    as_column = tmp_path / "column.pq"
    table = expected.reset_index().rename(columns={"timestamp": "time", "volume": "vol"})
    table["time"] = table["time"].dt.tz_localize(None)  # naive datetimes are read as UTC
    table.to_parquet(as_column, index=False)
    loaded = load_ohlcv_parquet(as_column, timestamp_column="time", volume_column="vol")
    pd.testing.assert_frame_equal(loaded, expected, check_freq=False)


def test_parquet_text_cell_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    table = make_frame(5).reset_index()
    table["close"] = table["close"].astype(str)
    table.loc[3, "close"] = "n.a."
    path = tmp_path / "text.parquet"
    table.to_parquet(path, index=False)
    with pytest.raises(DataFormatError, match=r"text\.parquet: row 3, column 'close': 'n\.a\.'"):
        load_ohlcv(path)


# ----------------------------------------------------------------------------- bad input


def write_generic(tmp_path: Path, text: str, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_HEADER = "timestamp,open,high,low,close,volume\n"
GOOD_ROW_1 = "2024-01-01T00:00:00Z,1.0,2.0,0.5,1.5,10\n"
GOOD_ROW_2 = "2024-01-01T01:00:00Z,1.5,2.0,1.0,1.8,11\n"


def test_truncated_last_row_names_file_line_and_missing_column(tmp_path: Path) -> None:
    path = write_generic(
        tmp_path, GOOD_HEADER + GOOD_ROW_1 + GOOD_ROW_2 + "2024-01-01T02:00:00Z,1.8,2.0"
    )
    with pytest.raises(DataFormatError) as caught:
        load_ohlcv(path)
    message = str(caught.value)
    assert "bad.csv: line 4 has 3 of 6 fields" in message
    assert "missing column 'low'" in message
    assert "truncated" in message


def test_binance_truncated_last_row_is_reported(tmp_path: Path) -> None:
    lines = binance_lines(make_frame(3))
    lines[-1] = ",".join(lines[-1].split(",")[:4])
    path = write_generic(tmp_path, "\n".join(lines), "BTCUSDT-1h-2025-01.csv")
    with pytest.raises(
        DataFormatError, match=r"line 3 has 4 of 12 fields; missing column 'close'"
    ):
        load_ohlcv(path)


def test_missing_column_is_named_with_the_columns_found(tmp_path: Path) -> None:
    path = write_generic(
        tmp_path, "timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n"
    )
    with pytest.raises(DataFormatError, match=r"bad\.csv: missing column\(s\) \['volume'\]"):
        load_ohlcv(path)


def test_non_numeric_cell_names_line_column_and_value(tmp_path: Path) -> None:
    path = write_generic(
        tmp_path,
        GOOD_HEADER + GOOD_ROW_1 + GOOD_ROW_2 + "2024-01-01T02:00:00Z,1.8,2.0,1.7,abc,12\n",
    )
    with pytest.raises(
        DataFormatError,
        match=r"bad\.csv: line 4, column 'close': 'abc' is text, not a number",
    ):
        load_ohlcv(path)


def test_unparseable_timestamp_names_line_and_value(tmp_path: Path) -> None:
    path = write_generic(tmp_path, GOOD_HEADER + GOOD_ROW_1 + "yesterday,1.5,2.0,1.0,1.8,11\n")
    with pytest.raises(
        DataFormatError, match=r"line 3, column 'timestamp': 'yesterday'"
    ):
        load_ohlcv(path)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = write_generic(tmp_path, text, "empty.csv")
    with pytest.raises(DataFormatError, match=r"empty\.csv: empty file"):
        load_ohlcv(path)


def test_header_without_rows_is_an_error(tmp_path: Path) -> None:
    path = write_generic(tmp_path, GOOD_HEADER)
    with pytest.raises(DataFormatError, match="header but no data rows"):
        load_ohlcv_csv(path)


def test_row_with_extra_fields_is_named(tmp_path: Path) -> None:
    path = write_generic(
        tmp_path, GOOD_HEADER + GOOD_ROW_1 + "2024-01-01T01:00:00Z,1,2,1,1.8,11,99\n"
    )
    with pytest.raises(DataFormatError, match=r"line 3 has 7 fields, expected 6"):
        load_ohlcv(path)


def test_empty_price_cell_is_kept_as_nan_for_validation_to_report(tmp_path: Path) -> None:
    path = write_generic(
        tmp_path, GOOD_HEADER + GOOD_ROW_1 + "2024-01-01T01:00:00Z,1.5,2.0,,1.8,11\n"
    )
    frame = load_ohlcv(path)
    assert np.isnan(frame["low"].iloc[1])
    assert frame["low"].iloc[0] == 0.5


def test_mapping_does_not_apply_to_binance_zips(tmp_path: Path) -> None:
    path = write_binance_zip(tmp_path / "x.zip", binance_lines(make_frame(2)))
    with pytest.raises(DataFormatError, match="does not apply to Binance ZIPs"):
        load_ohlcv(path, timestamp_column="Date")


def test_unknown_mapping_argument_is_named(tmp_path: Path) -> None:
    path = write_generic(tmp_path, GOOD_HEADER + GOOD_ROW_1)
    with pytest.raises(DataFormatError, match=r"unknown mapping argument\(s\) \['time_column'\]"):
        load_ohlcv(path, time_column="timestamp")


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_ohlcv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- round trips

finite_prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)


@st.composite
def valid_frames(draw: st.DrawFn) -> pd.DataFrame:
    n_bars = draw(st.integers(min_value=1, max_value=40))
    start_hour = draw(st.integers(min_value=0, max_value=24 * 365 * 30))
    steps = draw(st.lists(st.integers(1, 5), min_size=n_bars, max_size=n_bars))
    hours = start_hour + np.cumsum(steps)
    index = pd.DatetimeIndex(
        pd.Timestamp("1990-01-01T00:00:00Z") + pd.to_timedelta(hours, unit="h"), name="timestamp"
    ).as_unit("us")
    opens = np.array(draw(st.lists(finite_prices, min_size=n_bars, max_size=n_bars)))
    closes = np.array(draw(st.lists(finite_prices, min_size=n_bars, max_size=n_bars)))
    spread = np.array(draw(st.lists(st.floats(0, 10), min_size=n_bars, max_size=n_bars)))
    volume = np.array(
        draw(st.lists(st.floats(0, 1e9, allow_nan=False), min_size=n_bars, max_size=n_bars))
    )
    high = np.maximum(opens, closes) + spread
    low = np.minimum(opens, closes) / (1.0 + spread)
    return pd.DataFrame(
        {"open": opens, "high": high, "low": low, "close": closes, "volume": volume}, index=index
    )


@settings(max_examples=25, deadline=None)
@given(frame=valid_frames())
def test_valid_frame_round_trips_through_csv_unchanged(
    tmp_path_factory, frame: pd.DataFrame
) -> None:
    path = tmp_path_factory.mktemp("csv") / "frame.csv"
    frame.to_csv(path, date_format=ISO)
    pd.testing.assert_frame_equal(load_ohlcv(path), frame, check_exact=True)


@settings(max_examples=25, deadline=None)
@given(frame=valid_frames())
def test_valid_frame_round_trips_through_parquet_unchanged(
    tmp_path_factory, frame: pd.DataFrame
) -> None:
    path = tmp_path_factory.mktemp("parquet") / "frame.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(load_ohlcv(path), frame, check_exact=True)
