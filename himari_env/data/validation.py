"""Validation of the canonical OHLCV frame, and the gap policy.

:func:`validate_ohlcv` checks a frame and returns a :class:`ValidationReport` listing, with
place and timestamp, every offending bar. Two classes of finding:

* **Structural faults** (raise :class:`~himari_env.data.errors.OHLCVValidationError` by
  default): index not a UTC ``DatetimeIndex``, a column not float64, unsorted or duplicate
  timestamps, bar spacing that is not a multiple of the expected interval, NaN or inf,
  non-positive prices, negative volume, ``high < max(open, close)``,
  ``low > min(open, close)``.
* **Findings that are reported, never raised, never repaired**: gaps (runs of missing bars)
  and zero-volume bars.

Places
------
A bar is named the way the loaders name it (one convention for the whole data layer): for a
frame read from a CSV, the file's line number (header = line 1; ``line 13 of FILE`` when the
frame came from several files); for Parquet or an in-memory frame, ``row N``, the 0-based
position (``DataFrame.iloc``). See :func:`himari_env.data.loaders.row_origin`.

Listings are capped: a message names the first :data:`LISTED_IN_MESSAGE` bars of each fault
and the count of the rest; :meth:`ValidationReport.gap_listing` caps the gap table. When the
timestamps are unsorted, gap runs are not measured (steps between shuffled bars are not
gaps): sort the file first.

Gap policy
----------
Bars around a gap are kept as they are; nothing is filled or interpolated. The gap is marked:
:func:`gap_mask` is True at bar t when the step from bar t-1 to bar t spans missing bars, so
the 1-bar return ending at t covers more than one interval. Downstream code (features,
rewards, metrics) uses that mask so that no return silently spans a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from himari_env.constants import OHLCV_COLUMNS
from himari_env.data.errors import DataFormatError, OHLCVValidationError
from himari_env.data.loaders import describe_position, origin_source, row_origin

__all__ = [
    "GAPS_LISTED",
    "LISTED_IN_MESSAGE",
    "GapRun",
    "RowFault",
    "ValidationReport",
    "gap_mask",
    "validate_ohlcv",
]

_PRICE_COLUMNS = ("open", "high", "low", "close")
#: Offending bars named per fault in a message (the rest are counted).
LISTED_IN_MESSAGE = 3
#: Gap runs listed by :meth:`ValidationReport.gap_listing` (the rest are counted).
GAPS_LISTED = 10
_LISTED_IN_MESSAGE = LISTED_IN_MESSAGE
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class RowFault:
    """Every bar that shows one kind of fault.

    Attributes
    ----------
    positions
        0-based positions in the frame.
    timestamps
        Their timestamps.
    places
        Their places in the file (``"line 5001"``; ``"row 4999"`` for Parquet or an
        in-memory frame, see the module docstring); empty when not given, then
        ``row <position>`` is shown.
    """

    positions: tuple[int, ...] = ()
    timestamps: tuple[str, ...] = ()
    places: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.positions)

    def place(self, i: int) -> str:
        """The place of the i-th offending bar."""
        return self.places[i] if self.places else f"row {self.positions[i]}"

    def describe(self, limit: int = _LISTED_IN_MESSAGE) -> str:
        """``"line 7 at 2020-01-01T05:00:00Z, line 11 at ... (+3 more)"``."""
        shown = [
            f"{self.place(i)} at {self.timestamps[i]}" for i in range(min(limit, self.count))
        ]
        more = self.count - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "positions": list(self.positions),
            "places": [self.place(i) for i in range(self.count)],
            "timestamps": list(self.timestamps),
        }


@dataclass(frozen=True)
class GapRun:
    """One run of consecutive missing bars.

    Attributes
    ----------
    position
        Position (0-based) of the first bar after the gap; ``gap_mask`` is True there.
    place
        Its place in the file (``"line 5001"``; see the module docstring).
    last_before, first_after
        Timestamps of the bars that bound the gap.
    first_missing, last_missing
        Timestamps of the first and last missing bar.
    missing_bars
        Number of missing bars (hours, for hourly data).
    """

    position: int
    last_before: str
    first_after: str
    first_missing: str
    last_missing: str
    missing_bars: int
    place: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "place": self.place or f"row {self.position}",
            "last_before": self.last_before,
            "first_after": self.first_after,
            "first_missing": self.first_missing,
            "last_missing": self.last_missing,
            "missing_bars": self.missing_bars,
        }


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate_ohlcv` found; ``is_valid`` is True when no structural fault.

    Attributes
    ----------
    n_rows
        Number of bars checked.
    first_timestamp, last_timestamp
        ISO timestamps of the first and last row (``None`` for an empty frame).
    expected_interval
        The bar interval checked against, e.g. ``"1h"``.
    index_problems
        Descriptions of index faults (not a DatetimeIndex, not UTC); structural.
    dtype_problems
        Columns that are not float64, as ``"volume: int64"``; structural.
    unsorted
        Bars whose timestamp is earlier than the previous bar's.
    duplicates
        Bars whose timestamp already occurred earlier (the first occurrence is not listed).
    off_grid
        Bars whose step from the previous bar is positive but not a multiple of the interval.
    nan_or_inf
        Per canonical column (all five keys), bars holding NaN or +-inf.
    non_positive_price
        Bars with any of open, high, low, close <= 0.
    negative_volume, zero_volume
        Bars with volume < 0 (structural) and == 0 (reported only).
    high_below_open_close, low_above_open_close
        Bars with ``high < max(open, close)`` and ``low > min(open, close)``.
    gaps
        Every run of missing bars, in order (reported only).
    gaps_checked
        False when the timestamps are unsorted: gap runs are then not measured.
    source
        The file the frame was read from (None for an in-memory frame).
    """

    n_rows: int
    first_timestamp: str | None
    last_timestamp: str | None
    expected_interval: str
    index_problems: tuple[str, ...] = ()
    dtype_problems: tuple[str, ...] = ()
    unsorted: RowFault = field(default_factory=RowFault)
    duplicates: RowFault = field(default_factory=RowFault)
    off_grid: RowFault = field(default_factory=RowFault)
    nan_or_inf: dict[str, RowFault] = field(default_factory=dict)
    non_positive_price: RowFault = field(default_factory=RowFault)
    negative_volume: RowFault = field(default_factory=RowFault)
    zero_volume: RowFault = field(default_factory=RowFault)
    high_below_open_close: RowFault = field(default_factory=RowFault)
    low_above_open_close: RowFault = field(default_factory=RowFault)
    gaps: tuple[GapRun, ...] = ()
    gaps_checked: bool = True
    source: str | None = None

    @property
    def missing_bars(self) -> int:
        """Total number of missing bars over all gap runs."""
        return sum(run.missing_bars for run in self.gaps)

    @property
    def n_gap_runs(self) -> int:
        return len(self.gaps)

    def row_faults(self) -> list[tuple[str, RowFault, bool]]:
        """``(description, rows, is_structural)`` for every row-level check, in report order."""
        faults: list[tuple[str, RowFault, bool]] = [
            ("unsorted timestamp", self.unsorted, True),
            ("duplicate timestamp", self.duplicates, True),
            (f"spacing not a multiple of {self.expected_interval}", self.off_grid, True),
        ]
        faults += [(f"NaN/inf in {name}", rows, True) for name, rows in self.nan_or_inf.items()]
        faults += [
            ("non-positive price", self.non_positive_price, True),
            ("negative volume", self.negative_volume, True),
            ("high < max(open, close)", self.high_below_open_close, True),
            ("low > min(open, close)", self.low_above_open_close, True),
            ("zero volume", self.zero_volume, False),
        ]
        return faults

    def structural_faults(self) -> list[str]:
        """One message per structural fault found, naming the first few offending bars
        (:data:`LISTED_IN_MESSAGE`) and counting the rest."""
        messages = [f"index: {problem}" for problem in self.index_problems]
        messages += [f"column not float64: {problem}" for problem in self.dtype_problems]
        messages += [
            f"{name}: {rows.count} row(s): {rows.describe()}"
            for name, rows, structural in self.row_faults()
            if structural and rows.count
        ]
        return messages

    @property
    def is_valid(self) -> bool:
        """True when there is no structural fault (gaps and zero volume are allowed)."""
        return not self.structural_faults()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the whole report."""
        return {
            "n_rows": self.n_rows,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "expected_interval": self.expected_interval,
            "is_valid": self.is_valid,
            "structural_faults": self.structural_faults(),
            "index_problems": list(self.index_problems),
            "dtype_problems": list(self.dtype_problems),
            "unsorted": self.unsorted.to_dict(),
            "duplicates": self.duplicates.to_dict(),
            "off_grid": self.off_grid.to_dict(),
            "nan_or_inf": {name: rows.to_dict() for name, rows in self.nan_or_inf.items()},
            "non_positive_price": self.non_positive_price.to_dict(),
            "negative_volume": self.negative_volume.to_dict(),
            "zero_volume": self.zero_volume.to_dict(),
            "high_below_open_close": self.high_below_open_close.to_dict(),
            "low_above_open_close": self.low_above_open_close.to_dict(),
            "missing_bars": self.missing_bars,
            "n_gap_runs": self.n_gap_runs,
            "gaps_checked": self.gaps_checked,
            "gaps": [run.to_dict() for run in self.gaps],
            "source": self.source,
        }

    def gap_listing(
        self, limit: int = GAPS_LISTED
    ) -> tuple[list[tuple[int, str, str, str, int]], int]:
        """The first ``limit`` gap runs as table rows ``(n, place, last bar before, first bar
        after, missing bars)``, and how many runs were left out."""
        rows = [
            (i + 1, run.place or f"row {run.position}", run.last_before, run.first_after,
             run.missing_bars)
            for i, run in enumerate(self.gaps[:limit])
        ]
        return rows, max(self.n_gap_runs - limit, 0)

    def summary_rows(self) -> list[tuple[str, int, str, str]]:
        """Rows ``(check, count, status, first offending rows)`` for a table."""
        rows: list[tuple[str, int, str, str]] = [
            ("rows", self.n_rows, "info", f"{self.first_timestamp} .. {self.last_timestamp}"),
            (
                "index",
                len(self.index_problems),
                "FAULT" if self.index_problems else "ok",
                "; ".join(self.index_problems),
            ),
            (
                "column dtypes",
                len(self.dtype_problems),
                "FAULT" if self.dtype_problems else "ok",
                "; ".join(self.dtype_problems),
            ),
        ]
        for name, faults, structural in self.row_faults():
            status = ("FAULT" if structural else "reported") if faults.count else "ok"
            rows.append((name, faults.count, status, faults.describe()))
        gap_detail = ", ".join(
            f"{run.first_missing}..{run.last_missing} ({run.missing_bars})"
            for run in self.gaps[:_LISTED_IN_MESSAGE]
        )
        if self.n_gap_runs > _LISTED_IN_MESSAGE:
            gap_detail += f" (+{self.n_gap_runs - _LISTED_IN_MESSAGE} more runs)"
        if not self.gaps_checked:
            status, gap_detail = "not checked", "timestamps unsorted: sort the file first"
        else:
            status = "reported" if self.gaps else "ok"
        rows.append(("gap runs", self.n_gap_runs, status, gap_detail))
        rows.append(("missing bars", self.missing_bars, status, ""))
        return rows


def gap_mask(index: pd.DatetimeIndex, *, expected_interval: str = "1h") -> np.ndarray:
    """Mark bars whose step from the previous bar spans missing bars.

    Parameters
    ----------
    index
        Bar open times, shape (n,), assumed sorted (validate first).
    expected_interval
        The regular bar spacing, a pandas Timedelta string.

    Returns
    -------
    numpy.ndarray
        bool, shape (n,): True at t when ``index[t] - index[t-1] > expected_interval``, i.e.
        the 1-bar return ending at t spans a gap. Always False at t = 0.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"gap_mask needs a pandas DatetimeIndex, got {type(index).__name__}")
    step_ns = _interval_ns(expected_interval)
    stamps = index.as_unit("ns").asi8
    mask = np.zeros(stamps.shape, dtype=bool)
    mask[1:] = np.diff(stamps) > step_ns
    return mask


def validate_ohlcv(
    frame: pd.DataFrame, *, expected_interval: str = "1h", raise_on_error: bool = True
) -> ValidationReport:
    """Check a canonical OHLCV frame and report every offending bar.

    Parameters
    ----------
    frame
        Frame with a UTC DatetimeIndex and float64 columns open, high, low, close, volume
        (other columns are ignored), shape (n_bars, >= 5).
    expected_interval
        Bar spacing, a pandas Timedelta string (``"1h"`` for hourly bars).
    raise_on_error
        Raise :class:`OHLCVValidationError` (carrying the report) on a structural fault.

    Returns
    -------
    ValidationReport
        The findings; gaps and zero volume never raise.

    Raises
    ------
    DataFormatError
        A canonical column is missing or ``frame`` is not a DataFrame (no report possible).
    OHLCVValidationError
        A structural fault, when ``raise_on_error``; the message names the first few
        offending rows by position and timestamp.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(
            f"validate_ohlcv needs a pandas DataFrame, got {type(frame).__name__}"
        )
    missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
    if missing:
        raise DataFormatError(
            f"OHLCV frame is missing column(s) {missing}; found {[str(c) for c in frame.columns]}"
        )
    step_ns = _interval_ns(expected_interval)
    index = frame.index
    n_rows = len(frame)
    origin = row_origin(frame)
    source = origin_source(origin)

    index_problems: list[str] = []
    stamps: np.ndarray | None = None
    if isinstance(index, pd.DatetimeIndex):
        if index.tz is None:
            index_problems.append("timezone-naive DatetimeIndex; expected UTC")
        elif str(index.tz) != "UTC":
            index_problems.append(f"DatetimeIndex in timezone {index.tz}; expected UTC")
        stamps = index.as_unit("ns").asi8
        labels = _format_timestamps(index)
    else:
        index_problems.append(f"index is a {type(index).__name__}, expected a UTC DatetimeIndex")
        labels = np.asarray([str(value) for value in index], dtype=object)

    def place(position: int) -> str:
        return describe_position(origin, position)

    def rows(mask: np.ndarray) -> RowFault:
        positions = np.flatnonzero(mask).tolist()
        if not positions:
            return RowFault()
        return RowFault(
            tuple(positions),
            tuple(labels[positions].tolist()),
            tuple(place(p) for p in positions),
        )

    dtype_problems = tuple(
        f"{name}: {frame[name].dtype}" for name in OHLCV_COLUMNS if frame[name].dtype != np.float64
    )
    values = {name: _as_float(frame[name]) for name in OHLCV_COLUMNS}

    unsorted = duplicates = off_grid = RowFault()
    gaps: tuple[GapRun, ...] = ()
    gaps_checked = True
    if stamps is not None and n_rows > 1:
        steps = np.diff(stamps)
        step_after = np.concatenate(([step_ns], steps))  # step ending at each bar
        unsorted = rows(step_after < 0)
        duplicates = rows(index.duplicated(keep="first"))
        off_grid = rows((step_after > 0) & (step_after % step_ns != 0))
        # In a shuffled file nearly every step looks like a gap: measure gaps only in order.
        gaps_checked = unsorted.count == 0
        if gaps_checked:
            gaps = _gap_runs(stamps, step_after, step_ns, labels, place)

    finite = {name: np.isfinite(column) for name, column in values.items()}
    nan_or_inf = {name: rows(~ok) for name, ok in finite.items()}
    with np.errstate(invalid="ignore"):
        prices = np.column_stack([values[name] for name in _PRICE_COLUMNS])
        non_positive_price = rows(np.asarray((prices <= 0).any(axis=1)))
        volume = values["volume"]
        negative_volume = rows(volume < 0)
        zero_volume = rows(volume == 0)
        body_high = np.maximum(values["open"], values["close"])
        body_low = np.minimum(values["open"], values["close"])
        high_below = rows(values["high"] < body_high)
        low_above = rows(values["low"] > body_low)

    report = ValidationReport(
        n_rows=n_rows,
        first_timestamp=str(labels[0]) if n_rows else None,
        last_timestamp=str(labels[-1]) if n_rows else None,
        expected_interval=expected_interval,
        index_problems=tuple(index_problems),
        dtype_problems=dtype_problems,
        unsorted=unsorted,
        duplicates=duplicates,
        off_grid=off_grid,
        nan_or_inf=nan_or_inf,
        non_positive_price=non_positive_price,
        negative_volume=negative_volume,
        zero_volume=zero_volume,
        high_below_open_close=high_below,
        low_above_open_close=low_above,
        gaps=gaps,
        gaps_checked=gaps_checked,
        source=source,
    )
    if raise_on_error and not report.is_valid:
        faults = report.structural_faults()
        where = f" for {source}" if source else ""
        advice = (
            f"; fix the file (nothing is repaired automatically): himari data validate {source} "
            "lists every fault"
            if source
            else "; fix the frame (nothing is repaired automatically)"
        )
        raise OHLCVValidationError(
            f"OHLCV validation failed{where} ({n_rows} rows, {len(faults)} structural fault(s)): "
            + "; ".join(faults)
            + advice,
            report=report,
        )
    return report


def _interval_ns(expected_interval: str) -> int:
    try:
        step = pd.Timedelta(expected_interval)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"expected_interval={expected_interval!r} is not a pandas Timedelta string such as '1h'"
        ) from error
    step_ns = int(step.value)
    if step_ns <= 0:
        raise ValueError(f"expected_interval={expected_interval!r} must be positive")
    return step_ns


def _as_float(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    raise DataFormatError(f"OHLCV column '{column.name}' holds {column.dtype}, expected numbers")


def _format_timestamps(index: pd.DatetimeIndex) -> np.ndarray:
    if index.tz is not None and str(index.tz) == "UTC":
        return np.asarray(index.strftime(_TIME_FORMAT), dtype=object)
    return np.asarray(index.astype(str), dtype=object)


def _gap_runs(
    stamps: np.ndarray,
    step_after: np.ndarray,
    step_ns: int,
    labels: np.ndarray,
    place,  # type: ignore[no-untyped-def]  # (position) -> str
) -> tuple[GapRun, ...]:
    positions = np.flatnonzero((step_after > step_ns) & (step_after % step_ns == 0))
    if not positions.size:
        return ()
    missing = (step_after[positions] // step_ns - 1).tolist()
    first_missing = _format_ns(stamps[positions - 1] + step_ns)
    last_missing = _format_ns(stamps[positions] - step_ns)
    return tuple(
        GapRun(
            position=int(position),
            last_before=str(labels[position - 1]),
            first_after=str(labels[position]),
            first_missing=first,
            last_missing=last,
            missing_bars=int(count),
            place=place(int(position)),
        )
        for position, first, last, count in zip(
            positions.tolist(), first_missing, last_missing, missing, strict=True
        )
    )


def _format_ns(ns: np.ndarray) -> list[str]:
    return list(pd.DatetimeIndex(ns.astype("datetime64[ns]")).strftime(_TIME_FORMAT))
