"""Chronological train/val/test splits of decision bars, and the optional unseen frame.

Convention: a split is a range of *decision bars* over the full series. The decision at bar
t is taken at its close and its return ``close[t+1] / close[t] - 1`` is realised on the next
bar, so the last decision bar of a split realises its return on the first bar of the next
split, and the series' final bar (the last bar of ``test``) has no next bar: consumers that
need ``r[t+1]`` stop one bar earlier there. The first ``warmup_bars`` bars feed rolling
features only and belong to no split. Anything fitted is fitted on ``train`` only.

``unseen`` is any later data (the design's unseen set of record is data after 2024). It is
validated exactly like the in-sample frame and must start after the last in-sample bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pandas as pd

from himari_env.data.errors import DataError, OHLCVValidationError
from himari_env.data.validation import ValidationReport, validate_ohlcv

__all__ = [
    "SPLIT_NAMES",
    "SplitInfo",
    "SplitReport",
    "chronological_splits",
    "describe_splits",
    "validate_unseen",
]

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_DENOMINATOR = 1_000_000


def chronological_splits(
    n_bars: int,
    *,
    warmup_bars: int = 720,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> dict[str, slice]:
    """Split the decision bars ``warmup_bars .. n_bars - 1`` chronologically.

    Parameters
    ----------
    n_bars
        Number of bars in the full series.
    warmup_bars
        Bars at the start reserved for rolling-window warm-up (in no split); 720 = 30 days.
    fractions
        Shares of (train, val, test); must be positive and sum to 1.

    Returns
    -------
    dict[str, slice]
        ``{"train": slice(a, b), "val": slice(b, c), "test": slice(c, n_bars)}`` with
        ``a = warmup_bars``. Train and val sizes are ``floor(fraction * usable)``, computed
        exactly with each fraction read as the nearest rational of denominator <= 10**6
        (0.6 -> 3/5, 1/6 -> 1/6); test takes the remainder.

    Raises
    ------
    DataError
        Naming the argument: non-integer or negative counts, ``warmup_bars >= n_bars``,
        fractions not three positive numbers summing to 1, or a split that would be empty.
    """
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or n_bars < 1:
        raise DataError(f"n_bars must be a positive integer, got {n_bars!r}")
    if isinstance(warmup_bars, bool) or not isinstance(warmup_bars, int) or warmup_bars < 0:
        raise DataError(f"warmup_bars must be a non-negative integer, got {warmup_bars!r}")
    if warmup_bars >= n_bars:
        raise DataError(
            f"warmup_bars={warmup_bars} leaves no decision bars in a series of n_bars={n_bars}"
        )
    shares: tuple[float, ...] = tuple(fractions)
    if len(shares) != len(SPLIT_NAMES):
        raise DataError(f"fractions must have 3 entries (train, val, test), got {shares!r}")
    exact = []
    for name, share in zip(SPLIT_NAMES, shares, strict=True):
        if not isinstance(share, int | float) or not math.isfinite(share) or share <= 0:
            raise DataError(f"fractions: {name} share must be a positive number, got {share!r}")
        # The simple rational the float stands for (0.6 -> 3/5, 1/6 -> 1/6), so that a
        # floor is not off by one when the float is one ulp below the intended value.
        exact.append(Fraction(float(share)).limit_denominator(_MAX_DENOMINATOR))
    total = sum(exact, Fraction(0))
    if abs(total - 1) > Fraction(1, 10**9):
        raise DataError(f"fractions must sum to 1, got {shares!r} (sum {float(total)!r})")
    usable = n_bars - warmup_bars
    n_train = math.floor(usable * exact[0])
    n_val = math.floor(usable * exact[1])
    n_test = usable - n_train - n_val
    for name, size in zip(SPLIT_NAMES, (n_train, n_val, n_test), strict=True):
        if size <= 0:
            raise DataError(
                f"split '{name}' would be empty: {usable} decision bars "
                f"(n_bars={n_bars} - warmup_bars={warmup_bars}) with fractions={shares!r}"
            )
    train_stop = warmup_bars + n_train
    val_stop = train_stop + n_val
    return {
        "train": slice(warmup_bars, train_stop),
        "val": slice(train_stop, val_stop),
        "test": slice(val_stop, n_bars),
    }


@dataclass(frozen=True)
class SplitInfo:
    """One split: positions ``start .. stop - 1`` of its own frame, and their timestamps."""

    name: str
    start: int
    stop: int
    first_timestamp: str
    last_timestamp: str

    @property
    def n_bars(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": self.start,
            "stop": self.stop,
            "n_bars": self.n_bars,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


@dataclass(frozen=True)
class SplitReport:
    """Sizes and date ranges of each split (``unseen`` last, when given)."""

    warmup_bars: int
    splits: tuple[SplitInfo, ...]

    def __getitem__(self, name: str) -> SplitInfo:
        for info in self.splits:
            if info.name == name:
                return info
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"warmup_bars": self.warmup_bars, "splits": [s.to_dict() for s in self.splits]}

    def summary_rows(self) -> list[tuple[str, int, int, int, str, str]]:
        """Rows ``(split, start, stop, bars, first, last)`` for a table."""
        return [
            (s.name, s.start, s.stop, s.n_bars, s.first_timestamp, s.last_timestamp)
            for s in self.splits
        ]


def describe_splits(
    index: pd.DatetimeIndex,
    splits: Mapping[str, slice],
    *,
    unseen_index: pd.DatetimeIndex | None = None,
) -> SplitReport:
    """First/last timestamp and size of each split.

    Parameters
    ----------
    index
        Bar open times of the full in-sample series, shape (n_bars,).
    splits
        As returned by :func:`chronological_splits` for ``len(index)`` bars.
    unseen_index
        Bar open times of the unseen frame; it must start after ``index[-1]``.

    Returns
    -------
    SplitReport
        One :class:`SplitInfo` per split, in the mapping's order, then ``unseen``.
    """
    n_bars = len(index)
    infos = []
    for name, part in splits.items():
        start, stop, step = part.indices(n_bars)
        if step != 1 or part.start is None or part.stop is None or part.stop > n_bars:
            raise DataError(
                f"split '{name}' = {part!r} is not a contiguous range inside {n_bars} bars"
            )
        if stop <= start:
            raise DataError(f"split '{name}' = {part!r} is empty")
        infos.append(_info(name, index, start, stop))
    warmup = min((info.start for info in infos), default=0)
    if unseen_index is not None:
        _check_unseen_follows(index, unseen_index)
        if len(unseen_index) == 0:
            raise DataError("the unseen frame holds no bars")
        infos.append(_info("unseen", unseen_index, 0, len(unseen_index)))
    return SplitReport(warmup_bars=warmup, splits=tuple(infos))


def validate_unseen(
    in_sample_index: pd.DatetimeIndex,
    unseen: pd.DataFrame,
    *,
    expected_interval: str = "1h",
    raise_on_error: bool = True,
) -> ValidationReport:
    """Validate a later (unseen) frame like the in-sample one, and check it comes after it.

    Parameters
    ----------
    in_sample_index
        Bar open times of the in-sample series (train/val/test), shape (n_bars,).
    unseen
        Canonical frame of later data.
    expected_interval, raise_on_error
        As in :func:`~himari_env.data.validation.validate_ohlcv`.

    Returns
    -------
    ValidationReport
        The unseen frame's report.

    Raises
    ------
    OHLCVValidationError
        The unseen frame does not start after the last in-sample bar (always raised: using
        overlapping data as "unseen" would leak), or it has a structural fault.
    """
    _check_unseen_follows(in_sample_index, unseen.index)
    return validate_ohlcv(
        unseen, expected_interval=expected_interval, raise_on_error=raise_on_error
    )


def _check_unseen_follows(in_sample_index: pd.Index, unseen_index: pd.Index) -> None:
    if len(in_sample_index) == 0 or len(unseen_index) == 0:
        return
    last_in_sample = in_sample_index.max()
    first_unseen = unseen_index.min()
    if not first_unseen > last_in_sample:
        position = int(unseen_index.get_indexer([first_unseen])[0]) if unseen_index.is_unique else 0
        raise OHLCVValidationError(
            f"unseen data must start after the last in-sample bar {_fmt(last_in_sample)}, but "
            f"its earliest bar is {_fmt(first_unseen)} (unseen row {position})"
        )


def _info(name: str, index: pd.Index, start: int, stop: int) -> SplitInfo:
    return SplitInfo(
        name=name,
        start=start,
        stop=stop,
        first_timestamp=_fmt(index[start]),
        last_timestamp=_fmt(index[stop - 1]),
    )


def _fmt(value: Any) -> str:
    if isinstance(value, pd.Timestamp) and value.tz is not None and str(value.tz) == "UTC":
        return value.strftime(_TIME_FORMAT)
    return str(value)
