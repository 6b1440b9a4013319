"""Loaders that turn market files into the canonical OHLCV frame.

The canonical frame (the contract every HIMARI module uses): a pandas DataFrame with a UTC
``DatetimeIndex`` named ``timestamp`` (bar open time, microsecond resolution as pandas 3 creates by default) and float64
columns ``open, high, low, close, volume``. Loaders only *parse*: they never sort, drop,
fill or clip. Sorting, duplicates, gaps and price sanity are the job of
:func:`himari_env.data.validation.validate_ohlcv`.

Sources
-------
* Binance kline CSV (the public dump format of data.binance.vision): 12 columns
  ``open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore``, with or without a header row. Open
  times are epoch milliseconds, or microseconds (spot dumps from 2025 on); the unit is
  detected per value by magnitude, so a file that spans the switch loads correctly.
* Binance monthly ZIPs, each holding one such CSV; several ZIPs (or a directory of them)
  load as one frame, concatenated in the order given (a directory: sorted by file name).
* Generic OHLCV CSV and Parquet, with a column/unit mapping given as keyword arguments:

  ``timestamp_column="timestamp"``
      column holding the bar open time (for Parquet, the index is used when it carries
      that name).
  ``timestamp_unit=None``
      ``None``: strings are parsed as ISO-8601 (``Z`` or an offset is converted to UTC; a
      string without an offset is taken as UTC), integers as epoch values whose unit
      (s, ms, us, ns) is detected by magnitude. ``"s"``, ``"ms"``, ``"us"`` or ``"ns"``:
      the column must be an integer epoch in that unit.
  ``open_column="open"``, ``high_column="high"``, ``low_column="low"``,
  ``close_column="close"``, ``volume_column="volume"``
      source column names of the five canonical columns. Other columns are ignored.

Every parse error is a :class:`~himari_env.data.errors.DataFormatError` naming the file, the
place and the column. Places follow one convention everywhere (loaders and
:func:`~himari_env.data.validation.validate_ohlcv`): in a CSV, the file's line number (the
header is line 1, so the first data row of a headed CSV is line 2; blank lines count);
Parquet has no lines, so a Parquet place is ``row N`` (0-based, as ``DataFrame.iloc``).

Row origin: the loaders remember, for every frame they return, where its rows came from
(:func:`row_origin`), so that validation names ``line 5001`` of the file rather than an
internal position. The record lives beside the frame (keyed by the object, dropped with it),
not in ``frame.attrs``: pandas deep-copies ``attrs`` into every derived object, which would
slow the feature pipeline, and writes them into Parquet metadata.

Missing and text cells: an empty numeric cell (or the IEEE spellings ``nan``/``NaN``) is read
as NaN and reported by validation; any other text (``n/a``, ``null``, ``-``) is an error
naming the line and the text.
"""

from __future__ import annotations

import csv
import io
import weakref
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from himari_env.constants import INDEX_NAME, OHLCV_COLUMNS
from himari_env.data.errors import DataFormatError

__all__ = [
    "BINANCE_KLINE_COLUMNS",
    "MAPPING_KEYWORDS",
    "describe_position",
    "load_binance_klines_csv",
    "load_binance_klines_zip",
    "load_ohlcv",
    "load_ohlcv_csv",
    "load_ohlcv_parquet",
    "origin_source",
    "row_origin",
]

PathArg = str | PathLike[str]
TimestampUnit = Literal["s", "ms", "us", "ns"]
SourceFormat = Literal["binance_csv", "binance_zip", "csv", "parquet"]

#: Column names of the Binance public kline dump, in file order.
BINANCE_KLINE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)

#: Keyword arguments of the generic column/unit mapping (a value of None means the default).
MAPPING_KEYWORDS: tuple[str, ...] = (
    "timestamp_column",
    "timestamp_unit",
    "open_column",
    "high_column",
    "low_column",
    "close_column",
    "volume_column",
)

_NS_PER_UNIT: dict[str, int] = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
# Plausible epoch range for market data (1980-01-01 .. 2200-01-01 UTC), in seconds. The four
# unit ranges it induces do not overlap, so a value's unit follows from its magnitude, and
# every value in range fits in datetime64[ns].
_EPOCH_MIN_S = 315_532_800
_EPOCH_MAX_S = 7_258_118_400
#: Resolution of the canonical index (pandas 3's default), so every source agrees.
_INDEX_UNIT = "us"
_PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
_MAX_LISTED = 5
#: Cell texts read as a missing number (NaN, reported by validation). Any other text in a
#: numeric column is an error: ``n/a`` or ``null`` is a word someone typed, not a number.
_MISSING_NUMBER_TEXTS = ["", "nan", "NaN", "NAN", "-nan", "-NaN"]
#: id(frame) -> (weak reference to the frame, its index object, origin segments).
_ORIGINS: dict[int, tuple[weakref.ref[pd.DataFrame], pd.Index, list[dict[str, Any]]]] = {}


# ----------------------------------------------------------------------------- row origin


def _origin_segment(source: str, n_rows: int, line_numbers: np.ndarray | None) -> dict[str, Any]:
    """One file's rows: ``first_line`` when its lines are consecutive, else every line."""
    segment: dict[str, Any] = {"source": source, "n_rows": int(n_rows)}
    if line_numbers is None:
        segment["first_line"] = None  # Parquet: no lines
    elif n_rows and np.array_equal(line_numbers, line_numbers[0] + np.arange(n_rows)):
        segment["first_line"] = int(line_numbers[0])
    else:
        segment["first_line"] = int(line_numbers[0]) if n_rows else None
        segment["lines"] = np.asarray(line_numbers, dtype=np.int64)
    return segment


def _remember_origin(frame: pd.DataFrame, segments: list[dict[str, Any]]) -> pd.DataFrame:
    key = id(frame)
    _ORIGINS[key] = (weakref.ref(frame), frame.index, segments)
    weakref.finalize(frame, _ORIGINS.pop, key, None)
    return frame


def row_origin(frame: pd.DataFrame) -> list[dict[str, Any]] | None:
    """Where the rows of a loaded frame came from, or None for a frame not read from a file.

    A list of segments, in row order, each ``{"source": file name, "n_rows": int,
    "first_line": int | None}`` (plus ``"lines"``, an int64 array, when the file had blank
    lines): ``first_line`` is the file line of the segment's first bar. None when the frame
    is not the object a loader returned (a copy, a slice, a frame built in memory) or when
    its rows were reordered or dropped in place (its index is no longer the loaded one).
    """
    entry = _ORIGINS.get(id(frame))
    if entry is None:
        return None
    reference, index, origin = entry
    loaded = reference()
    if loaded is None or loaded is not frame or loaded.index is not index:
        return None
    if sum(int(segment["n_rows"]) for segment in origin) != len(loaded):
        return None
    return origin


def describe_position(origin: list[dict[str, Any]] | None, position: int) -> str:
    """The place of the bar at ``position`` (0-based) in the project's one convention.

    ``"line 5001"`` (single CSV), ``"line 13 of BTCUSDT-1h-2020-03.csv"`` (several files),
    ``"row 4999"`` (Parquet, or a frame not read from a file: 0-based position).
    """
    if origin is None:
        return f"row {position}"
    offset = position
    for segment in origin:
        n_rows = int(segment["n_rows"])
        if offset < n_rows:
            lines = segment.get("lines")
            first_line = segment.get("first_line")
            of = f" of {Path(str(segment['source'])).name}" if len(origin) > 1 else ""
            if isinstance(lines, np.ndarray):
                return f"line {int(lines[offset])}{of}"
            if first_line is None:
                return f"row {offset}{of}"
            return f"line {int(first_line) + offset}{of}"
        offset -= n_rows
    return f"row {position}"


def origin_source(origin: list[dict[str, Any]] | None) -> str | None:
    """The file (or ``"first .. last"`` files) a frame was read from, or None."""
    if not origin:
        return None
    if len(origin) == 1:
        return str(origin[0]["source"])
    return f"{origin[0]['source']} .. {origin[-1]['source']} ({len(origin)} files)"


# ----------------------------------------------------------------------------- dispatcher


def load_ohlcv(
    path: PathArg | Sequence[PathArg],
    *,
    source_format: SourceFormat | None = None,
    **mapping: str | None,
) -> pd.DataFrame:
    """Load any supported market file into the canonical frame.

    Parameters
    ----------
    path
        A file (``.zip`` -> Binance monthly ZIP, ``.parquet``/``.pq`` -> Parquet, anything
        else -> CSV), a directory of Binance ZIPs (loaded in file-name order), or a sequence
        of Binance ZIPs (loaded in the order given).
    source_format
        Force a format instead of detecting it: ``"binance_csv"``, ``"binance_zip"``,
        ``"csv"`` or ``"parquet"``.
    **mapping
        Generic column/unit mapping (``timestamp_column``, ``timestamp_unit``,
        ``open_column`` ... ``volume_column``; see the module docstring). Given any, a CSV is
        read as a generic OHLCV CSV.

    Returns
    -------
    pandas.DataFrame
        Canonical frame, shape (n_bars, 5), not yet validated.

    Notes
    -----
    CSV detection looks at the first non-blank line: 12 fields with a numeric first field,
    or a first field ``open_time``, mean a Binance kline CSV; anything else is generic.
    """
    unknown = sorted(set(mapping) - set(MAPPING_KEYWORDS))
    if unknown:
        raise DataFormatError(
            f"unknown mapping argument(s) {unknown}; expected some of {list(MAPPING_KEYWORDS)}"
        )
    mapping = {key: value for key, value in mapping.items() if value is not None}
    if not isinstance(path, str | PathLike):
        paths = [Path(p) for p in path]
        _reject_mapping(mapping, "a sequence of Binance ZIPs")
        return load_binance_klines_zip(paths)
    file_path = Path(path)
    if source_format is None:
        source_format = _detect_format(file_path, has_mapping=bool(mapping))
    if source_format == "binance_zip":
        _reject_mapping(mapping, "Binance ZIPs")
        if file_path.is_dir():
            zips = sorted(file_path.glob("*.zip"))
            if not zips:
                raise DataFormatError(f"{file_path}: directory holds no .zip files")
            return load_binance_klines_zip(zips)
        return load_binance_klines_zip([file_path])
    if source_format == "binance_csv":
        _reject_mapping(mapping, "a Binance kline CSV")
        return load_binance_klines_csv(file_path)
    if source_format == "csv":
        return load_ohlcv_csv(file_path, **mapping)  # type: ignore[arg-type]
    if source_format == "parquet":
        return load_ohlcv_parquet(file_path, **mapping)  # type: ignore[arg-type]
    raise DataFormatError(
        f"unknown source_format {source_format!r}; expected one of "
        "'binance_csv', 'binance_zip', 'csv', 'parquet'"
    )


def _reject_mapping(mapping: dict[str, str | None], what: str) -> None:
    if mapping:
        raise DataFormatError(
            f"column mapping {sorted(mapping)} does not apply to {what} (fixed column layout)"
        )


def _detect_format(path: Path, *, has_mapping: bool) -> SourceFormat:
    if path.is_dir():
        return "binance_zip"
    if not path.is_file():
        raise FileNotFoundError(f"no such market data file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return "binance_zip"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head[:4] == b"PAR1":
        return "parquet"
    if has_mapping:
        return "csv"
    first_line = next((ln for ln in head.splitlines() if ln.strip()), b"")
    fields = [f.strip().strip(b'"').lower() for f in first_line.split(b",")]
    if fields and fields[0] == b"open_time":
        return "binance_csv"
    if len(fields) == len(BINANCE_KLINE_COLUMNS) and _is_number(fields[0]):
        return "binance_csv"
    return "csv"


def _is_number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- Binance


def load_binance_klines_csv(path: PathArg) -> pd.DataFrame:
    """Load one Binance kline CSV (public dump format, header or not, ms or us open times).

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        Canonical frame, shape (n_bars, 5); ``volume`` is base-asset volume.
    """
    file_path = Path(path)
    return _parse_binance_bytes(_read_bytes(file_path), str(file_path))


def load_binance_klines_zip(paths: PathArg | Sequence[PathArg]) -> pd.DataFrame:
    """Load Binance monthly kline ZIPs (one CSV inside each) as one canonical frame.

    Parameters
    ----------
    paths
        One ZIP or a sequence of ZIPs; frames are concatenated in the order given, without
        sorting (validation reports any overlap or disorder).

    Returns
    -------
    pandas.DataFrame
        Canonical frame, shape (total bars, 5).
    """
    path_list = [Path(paths)] if isinstance(paths, str | PathLike) else [Path(p) for p in paths]
    if not path_list:
        raise DataFormatError("no ZIP files given")
    frames = []
    for zip_path in path_list:
        if not zip_path.is_file():
            raise FileNotFoundError(f"no such ZIP file: {zip_path}")
        try:
            with zipfile.ZipFile(zip_path) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                csv_members = [m for m in members if m.lower().endswith(".csv")]
                if len(csv_members) != 1:
                    raise DataFormatError(
                        f"{zip_path}: expected exactly one CSV inside the ZIP, found "
                        f"{len(csv_members)} ({members[:_MAX_LISTED]})"
                    )
                data = archive.read(csv_members[0])
        except zipfile.BadZipFile as error:
            raise DataFormatError(f"{zip_path}: not a valid ZIP file ({error})") from error
        frames.append(_parse_binance_bytes(data, f"{zip_path}!{csv_members[0]}"))
    if len(frames) == 1:
        return frames[0]
    segments = [segment for frame in frames for segment in (row_origin(frame) or [])]
    return _remember_origin(pd.concat(frames), segments)


def _parse_binance_bytes(data: bytes, source: str) -> pd.DataFrame:
    records = _scan_records(data, source)
    first_fields = records.first_line.split(",")
    has_header = not _is_number(first_fields[0].strip().encode())
    n_expected = len(BINANCE_KLINE_COLUMNS)
    if has_header and records.n_data == 0:
        raise DataFormatError(f"{source}: file has a header but no data rows")
    records.check_field_counts(n_expected, list(BINANCE_KLINE_COLUMNS), has_header, source)
    dtypes = {name: "float64" for name in BINANCE_KLINE_COLUMNS[:6]}
    table = _read_csv_checked(
        data,
        source,
        records,
        has_header=has_header,
        names=list(BINANCE_KLINE_COLUMNS),
        usecols=list(BINANCE_KLINE_COLUMNS[:6]),
        numeric_columns=list(BINANCE_KLINE_COLUMNS[:6]),
        dtypes=dtypes,
    )
    open_time = table["open_time"].to_numpy()
    missing = np.flatnonzero(np.isnan(open_time))
    if missing.size:
        row = int(missing[0])
        raise DataFormatError(
            f"{source}: {records.where(row, has_header)}, column 'open_time': empty open time"
        )
    index = _epoch_to_index(
        open_time,
        unit=None,
        allowed_units=("ms", "us"),
        column="open_time",
        describe_row=lambda row: records.where(row, has_header),
        source=source,
    )
    frame = _canonical_frame(
        index,
        table,
        dict(zip(OHLCV_COLUMNS, OHLCV_COLUMNS, strict=True)),
        source,
        lambda row: records.where(row, has_header),
    )
    return _remember_origin(
        frame, [_origin_segment(source, len(frame), records.data_line_numbers(has_header))]
    )


# ----------------------------------------------------------------------------- generic CSV


def load_ohlcv_csv(
    path: PathArg,
    *,
    timestamp_column: str = "timestamp",
    timestamp_unit: TimestampUnit | None = None,
    open_column: str = "open",
    high_column: str = "high",
    low_column: str = "low",
    close_column: str = "close",
    volume_column: str = "volume",
) -> pd.DataFrame:
    """Load a generic OHLCV CSV with a header row (column/unit mapping in the module doc).

    Returns
    -------
    pandas.DataFrame
        Canonical frame, shape (n_bars, 5).
    """
    file_path = Path(path)
    source = str(file_path)
    data = _read_bytes(file_path)
    records = _scan_records(data, source)
    header = next(csv.reader([records.first_line]))
    header = [name.strip() for name in header]
    if records.n_data == 0:
        raise DataFormatError(f"{source}: file has a header but no data rows")
    rename = _column_mapping(open_column, high_column, low_column, close_column, volume_column)
    required = [timestamp_column, *rename]
    _check_columns_present(header, required, source, where="header (line 1)")
    records.check_field_counts(len(header), header, True, source)
    dtypes: dict[str, str] = {name: "float64" for name in rename}
    dtypes[timestamp_column] = "str"
    table = _read_csv_checked(
        data,
        source,
        records,
        has_header=True,
        names=None,
        usecols=required,
        numeric_columns=list(rename),
        dtypes=dtypes,
    )
    index = _timestamps_to_index(
        table[timestamp_column],
        unit=timestamp_unit,
        column=timestamp_column,
        describe_row=lambda row: records.where(row, True),
        source=source,
    )
    frame = _canonical_frame(index, table, rename, source, lambda row: records.where(row, True))
    return _remember_origin(frame, [_origin_segment(source, len(frame), records.data_line_numbers(True))])


# ----------------------------------------------------------------------------- Parquet


def load_ohlcv_parquet(
    path: PathArg,
    *,
    timestamp_column: str = "timestamp",
    timestamp_unit: TimestampUnit | None = None,
    open_column: str = "open",
    high_column: str = "high",
    low_column: str = "low",
    close_column: str = "close",
    volume_column: str = "volume",
) -> pd.DataFrame:
    """Load an OHLCV Parquet file (column/unit mapping in the module doc).

    The timestamp may be a column or the (named) index; it may be datetime (naive is taken
    as UTC), ISO strings, or integer epochs.

    Returns
    -------
    pandas.DataFrame
        Canonical frame, shape (n_bars, 5).
    """
    file_path = Path(path)
    source = str(file_path)
    if not file_path.is_file():
        raise FileNotFoundError(f"no such market data file: {file_path}")
    if file_path.stat().st_size == 0:
        raise DataFormatError(f"{source}: empty file")
    try:
        table = pd.read_parquet(file_path)
    except Exception as error:  # pyarrow raises several unrelated types for bad files
        raise DataFormatError(f"{source}: cannot read as Parquet ({error})") from error
    if timestamp_column not in table.columns and table.index.name == timestamp_column:
        table = table.reset_index()
    rename = _column_mapping(open_column, high_column, low_column, close_column, volume_column)
    required = [timestamp_column, *rename]
    _check_columns_present([str(c) for c in table.columns], required, source, where="columns")
    if len(table) == 0:
        raise DataFormatError(f"{source}: file holds no rows")

    def describe_row(row: int) -> str:
        return f"row {row}"

    numeric = {}
    for column in rename:
        numeric[column] = _to_float64(table[column], column, describe_row, source)
    index = _timestamps_to_index(
        table[timestamp_column],
        unit=timestamp_unit,
        column=timestamp_column,
        describe_row=describe_row,
        source=source,
    )
    frame = _canonical_frame(index, pd.DataFrame(numeric), rename, source)
    return _remember_origin(frame, [_origin_segment(source, len(frame), None)])


# ----------------------------------------------------------------------------- helpers


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"no such market data file: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise DataFormatError(f"{path}: empty file (no header and no rows)")
    return data


def _column_mapping(
    open_column: str, high_column: str, low_column: str, close_column: str, volume_column: str
) -> dict[str, str]:
    """Source column -> canonical column, in canonical order."""
    sources = (open_column, high_column, low_column, close_column, volume_column)
    if len(set(sources)) != len(sources):
        raise DataFormatError(f"column mapping uses a source column twice: {sources}")
    return dict(zip(sources, OHLCV_COLUMNS, strict=True))


def _check_columns_present(
    available: Sequence[str], required: Sequence[str], source: str, *, where: str
) -> None:
    missing = [name for name in required if name not in available]
    if missing:
        flags = " ".join(f"--{_flag_of(name, required)} NAME" for name in missing)
        raise DataFormatError(
            f"{source}: missing column(s) {missing} in {where}; found {list(available)}. "
            f"Name the file's columns with {flags} (himari data validate) or "
            "open_column='NAME', ... (load_ohlcv)"
        )


def _flag_of(name: str, required: Sequence[str]) -> str:
    """The CLI flag that maps the required column ``name`` (``--open-column``, ...)."""
    keyword = MAPPING_KEYWORDS[0] if name == required[0] else None
    if keyword is None:
        canonical = OHLCV_COLUMNS[list(required[1:]).index(name)]
        keyword = f"{canonical}_column"
    return keyword.replace("_", "-")


@dataclass(frozen=True)
class _Records:
    """Physical layout of a CSV: one entry per non-blank record (header included)."""

    line_numbers: np.ndarray  # int64 (n_records,), 1-based physical line of each record
    field_counts: np.ndarray  # int64 (n_records,)
    first_line: str

    @property
    def n_data(self) -> int:
        return max(len(self.line_numbers) - 1, 0)

    def where(self, data_row: int, has_header: bool) -> str:
        """``"line N"``: the file line of data row ``data_row`` (0-based), header = line 1."""
        record = data_row + (1 if has_header else 0)
        return f"line {int(self.line_numbers[record])}"

    def data_line_numbers(self, has_header: bool) -> np.ndarray:
        """File line of every data row, int64 (n_data_rows,)."""
        return self.line_numbers[1:] if has_header else self.line_numbers

    def check_field_counts(
        self, n_expected: int, names: Sequence[str], has_header: bool, source: str
    ) -> None:
        bad = np.flatnonzero(self.field_counts != n_expected)
        if not bad.size:
            return
        record = int(bad[0])
        n_fields = int(self.field_counts[record])
        line = int(self.line_numbers[record])
        if has_header and record == 0:
            raise DataFormatError(
                f"{source}: header (line {line}) has {n_fields} fields, expected {n_expected}"
            )
        location = f"line {line}"
        if n_fields < n_expected:
            truncated = (
                " (the file looks truncated)" if record == len(self.field_counts) - 1 else ""
            )
            raise DataFormatError(
                f"{source}: {location} has {n_fields} of {n_expected} fields; missing "
                f"column '{names[n_fields]}' onwards{truncated}"
            )
        raise DataFormatError(
            f"{source}: {location} has {n_fields} fields, expected {n_expected} "
            f"({', '.join(names)})"
        )


def _scan_records(data: bytes, source: str) -> _Records:
    """Count fields per non-blank line, vectorized over the raw bytes.

    Files containing a double quote fall back to the :mod:`csv` module (a Python loop, only
    for quoted files), since a quoted field may hold a comma or a newline.
    """
    if b'"' in data:
        return _scan_records_quoted(data, source)
    buffer = np.frombuffer(data, dtype=np.uint8)
    newline_positions = np.flatnonzero(buffer == ord("\n"))
    line_ends = newline_positions
    if buffer.size and buffer[-1] != ord("\n"):
        line_ends = np.append(newline_positions, buffer.size)
    line_starts = np.concatenate(([0], line_ends[:-1] + 1))
    comma_cumulative = np.concatenate(([0], np.cumsum(buffer == ord(","))))
    commas = comma_cumulative[line_ends] - comma_cumulative[line_starts]
    non_space = np.concatenate(([0], np.cumsum(buffer > ord(" "))))
    blank = (non_space[line_ends] - non_space[line_starts]) == 0
    keep = np.flatnonzero(~blank)
    if not keep.size:
        raise DataFormatError(f"{source}: empty file (no header and no rows)")
    first = int(keep[0])
    first_line = data[line_starts[first] : line_ends[first]].decode("utf-8", "replace").strip()
    return _Records(
        line_numbers=keep.astype(np.int64) + 1,
        field_counts=commas[keep].astype(np.int64) + 1,
        first_line=first_line.lstrip("\ufeff"),
    )


def _scan_records_quoted(data: bytes, source: str) -> _Records:
    text = data.decode("utf-8", "replace")
    reader = csv.reader(io.StringIO(text))
    line_numbers: list[int] = []
    field_counts: list[int] = []
    first_line = ""
    start_line = 1
    for row in reader:
        if row and any(field.strip() for field in row):
            if not line_numbers:
                first_line = ",".join(row)
            line_numbers.append(start_line)
            field_counts.append(len(row))
        start_line = reader.line_num + 1
    if not line_numbers:
        raise DataFormatError(f"{source}: empty file (no header and no rows)")
    return _Records(
        line_numbers=np.asarray(line_numbers, dtype=np.int64),
        field_counts=np.asarray(field_counts, dtype=np.int64),
        first_line=first_line.lstrip("\ufeff"),
    )


def _read_csv_checked(
    data: bytes,
    source: str,
    records: _Records,
    *,
    has_header: bool,
    names: list[str] | None,
    usecols: list[str],
    numeric_columns: list[str],
    dtypes: dict[str, str],
) -> pd.DataFrame:
    """Parse with pandas' C parser and explicit dtypes; on a bad cell, find and name it."""
    options = {
        "header": 0 if has_header else None,
        "names": names,
        "usecols": usecols,
        "skip_blank_lines": True,
        "engine": "c",
        "encoding": "utf-8-sig",
        "keep_default_na": False,
        "na_values": _MISSING_NUMBER_TEXTS,
    }
    try:
        return pd.read_csv(io.BytesIO(data), dtype=dtypes, **options)
    except (ValueError, pd.errors.ParserError) as error:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, **options)
        for column in numeric_columns:
            _to_float64(raw[column], column, lambda row: records.where(row, has_header), source)
        raise DataFormatError(f"{source}: cannot parse CSV ({error})") from error


def _to_float64(values: pd.Series, column: str, describe_row, source: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Convert one column to float64; a cell that is present but not a number is an error.

    Missing cells (empty, or ``nan``) stay NaN (validation counts them); text such as
    ``n/a`` or ``null`` is an error naming the line and the text; nothing is coerced silently.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataFormatError(f"{source}: column '{column}' is boolean, expected numbers")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    as_text = values.astype("str")
    stripped = as_text.str.strip()
    converted = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = values.notna().to_numpy() & (stripped != "").to_numpy()
    present &= ~stripped.isin(_MISSING_NUMBER_TEXTS).to_numpy()
    bad = np.flatnonzero(present & np.isnan(converted))
    if bad.size:
        row = int(bad[0])
        raise DataFormatError(
            f"{source}: {describe_row(row)}, column '{column}': {as_text.iloc[row]!r} is text, "
            f"not a number ({bad.size} such cell(s) in this column); put the number there, or "
            "leave the cell empty if it is missing"
        )
    return converted


def _timestamps_to_index(
    values: pd.Series,
    *,
    unit: TimestampUnit | None,
    column: str,
    describe_row,  # type: ignore[no-untyped-def]
    source: str,
) -> pd.DatetimeIndex:
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        row = int(missing[0])
        raise DataFormatError(f"{source}: {describe_row(row)}, column '{column}': empty timestamp")
    if unit is not None and unit not in _NS_PER_UNIT:
        raise DataFormatError(f"timestamp_unit must be None, 's', 'ms', 'us' or 'ns', got {unit!r}")
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        values.dtype
    ):
        if unit is not None:
            raise DataFormatError(
                f"{source}: column '{column}' already holds datetimes; timestamp_unit={unit!r} "
                "applies to integer epochs only"
            )
        index = pd.DatetimeIndex(values)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        return index.as_unit("ns")
    if pd.api.types.is_integer_dtype(values.dtype):
        epochs = values.to_numpy(dtype=np.int64)
    elif pd.api.types.is_numeric_dtype(values.dtype):
        epochs = values.to_numpy(dtype=np.float64)
    else:
        text = values.astype("str").str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        if unit is not None or bool(numeric.notna().all()):
            bad = np.flatnonzero(numeric.isna().to_numpy())
            if bad.size:
                row = int(bad[0])
                raise DataFormatError(
                    f"{source}: {describe_row(row)}, column '{column}': {text.iloc[row]!r} is "
                    f"not an integer epoch (timestamp_unit={unit!r})"
                )
            is_integer = pd.api.types.is_integer_dtype(numeric.dtype)
            epochs = numeric.to_numpy(dtype=np.int64 if is_integer else np.float64)
        else:
            return _iso_strings_to_index(text, column, describe_row, source)
    return _epoch_to_index(
        epochs,
        unit=unit,
        allowed_units=tuple(_NS_PER_UNIT),
        column=column,
        describe_row=describe_row,
        source=source,
    )


def _iso_strings_to_index(
    text: pd.Series,
    column: str,
    describe_row,
    source: str,  # type: ignore[no-untyped-def]
) -> pd.DatetimeIndex:
    try:
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    except (ValueError, OverflowError) as error:
        raise DataFormatError(
            f"{source}: column '{column}': cannot parse timestamps ({error})"
        ) from error
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataFormatError(
            f"{source}: {describe_row(row)}, column '{column}': {text.iloc[row]!r} is not an "
            "ISO-8601 timestamp"
        )
    return pd.DatetimeIndex(parsed).as_unit("ns")


def _epoch_to_index(
    epochs: np.ndarray,
    *,
    unit: TimestampUnit | None,
    allowed_units: tuple[str, ...],
    column: str,
    describe_row,  # type: ignore[no-untyped-def]
    source: str,
) -> pd.DatetimeIndex:
    """Epoch numbers (float64 holding integers) -> UTC index; unit per value by magnitude.

    float64 holds every integer below 2**53 exactly, which covers ms and us epochs; ns
    epochs are exact when given as integers (the numeric dtype path keeps int64).
    """
    epochs = np.asarray(epochs)
    if epochs.dtype.kind == "f":
        non_finite = np.flatnonzero(~np.isfinite(epochs))
        if non_finite.size:
            row = int(non_finite[0])
            raise DataFormatError(
                f"{source}: {describe_row(row)}, column '{column}': empty or non-finite epoch"
            )
        fractional = np.flatnonzero(epochs != np.floor(epochs))
        if fractional.size:
            row = int(fractional[0])
            raise DataFormatError(
                f"{source}: {describe_row(row)}, column '{column}': epoch {epochs[row]!r} "
                "is not an integer"
            )
        # Above 2**53 a float64 may not hold the integer exactly; only ns epochs get there.
        if np.abs(epochs).max(initial=0.0) >= 2.0**53:
            raise DataFormatError(
                f"{source}: column '{column}': epochs stored as floats are too large to be "
                "exact; store nanosecond epochs as integers"
            )
        values = epochs.astype(np.int64)
    else:
        values = epochs.astype(np.int64)
    units = list(allowed_units) if unit is None else [unit]
    ns = np.full(values.shape, np.iinfo(np.int64).min, dtype=np.int64)
    assigned = np.zeros(values.shape, dtype=bool)
    for candidate in units:
        scale = _NS_PER_UNIT[candidate]
        in_range = (values >= _EPOCH_MIN_S * (10**9 // scale)) & (
            values < _EPOCH_MAX_S * (10**9 // scale)
        )
        in_range &= ~assigned
        ns[in_range] = values[in_range] * scale
        assigned |= in_range
    bad = np.flatnonzero(~assigned)
    if bad.size:
        row = int(bad[0])
        wanted = "/".join(units)
        raise DataFormatError(
            f"{source}: {describe_row(row)}, column '{column}': {int(values[row])} is not an "
            f"epoch in {wanted} between 1980 and 2200"
        )
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _canonical_frame(
    index: pd.DatetimeIndex,
    table: pd.DataFrame,
    rename: dict[str, str],
    source: str,
    describe_row=lambda row: f"row {row}",  # type: ignore[no-untyped-def]
) -> pd.DataFrame:
    columns = {
        canonical: np.asarray(table[source], dtype=np.float64)
        for source, canonical in rename.items()
    }
    sub_microsecond = np.flatnonzero(index.as_unit("ns").asi8 % 1000)
    if sub_microsecond.size:
        row = int(sub_microsecond[0])
        raise DataFormatError(
            f"{source}: {describe_row(row)}: timestamp {index[row]} has a sub-microsecond part; "
            "bar times must be whole microseconds"
        )
    index = index.as_unit(_INDEX_UNIT).rename(INDEX_NAME)
    return pd.DataFrame(columns, index=index, columns=list(OHLCV_COLUMNS))
