"""The prepared market: every causal array the environment reads, computed once.

:class:`MarketData` is the contract between the data/feature pipeline and
:class:`~himari_env.env.HimariBTCEnv`. All arrays are read-only numpy arrays over the same
``n`` bars, so the environment can hand out window *views* without copying and without any
risk that a caller mutates the market.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from himari_env.constants import N_REGIMES


@dataclass(frozen=True)
class MarketData:
    """Arrays over ``n`` hourly bars.

    Attributes
    ----------
    timestamps : datetime64[ns] (n,)
        Bar open times (UTC).
    close : float64 (n,)
        Close prices.
    returns : float64 (n,)
        Simple 1-bar returns ``close[t] / close[t-1] - 1``; ``returns[0] = 0``.
    gap_before : bool (n,)
        True where the step ending at bar t spans missing hours (see the data layer's gap
        policy); the return is real (the position was held through the outage) but flagged.
    features : float32 (n, F)
        Causal per-bar features (NaN allowed only before ``first_bar``).
    feature_names : tuple of str (F,)
    regime_ids : int8 (n,)
        Regime of each bar (0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS); -1 in warm-up.
    first_bar : int
        First bar that may be observed as a decision bar: every array is finite and valid
        from here on.
    splits : mapping of str to slice
        Decision-bar ranges (e.g. ``train``, ``val``, ``test``) over the same index.
    """

    timestamps: np.ndarray
    close: np.ndarray
    returns: np.ndarray
    gap_before: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    regime_ids: np.ndarray
    first_bar: int
    splits: Mapping[str, slice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.close)
        named = {
            "timestamps": self.timestamps,
            "returns": self.returns,
            "gap_before": self.gap_before,
            "features": self.features,
            "regime_ids": self.regime_ids,
        }
        for name, array in named.items():
            if len(array) != n:
                raise ValueError(f"MarketData.{name} has {len(array)} rows, close has {n}")
        if self.features.ndim != 2 or self.features.shape[1] != len(self.feature_names):
            raise ValueError(
                f"MarketData.features has shape {self.features.shape} but "
                f"{len(self.feature_names)} feature_names"
            )
        if not 0 <= self.first_bar < n:
            raise ValueError(f"MarketData.first_bar={self.first_bar} outside [0, {n})")
        tail = slice(self.first_bar, None)
        if not np.all(np.isfinite(self.close)) or np.any(self.close <= 0):
            bad = int(np.flatnonzero(~(np.isfinite(self.close) & (self.close > 0)))[0])
            raise ValueError(f"MarketData.close is not finite and positive at row {bad}")
        if not np.all(np.isfinite(self.returns)):
            bad = int(np.flatnonzero(~np.isfinite(self.returns))[0])
            raise ValueError(f"MarketData.returns is not finite at row {bad}")
        finite_features = np.isfinite(self.features[tail]).all(axis=1)
        if not finite_features.all():
            bad = self.first_bar + int(np.flatnonzero(~finite_features)[0])
            raise ValueError(
                f"MarketData.features has NaN/inf at row {bad} (timestamp "
                f"{self.timestamps[bad]}), after first_bar={self.first_bar}"
            )
        regimes_after = self.regime_ids[tail]
        if np.any((regimes_after < 0) | (regimes_after >= N_REGIMES)):
            bad = self.first_bar + int(
                np.flatnonzero((regimes_after < 0) | (regimes_after >= N_REGIMES))[0]
            )
            raise ValueError(
                f"MarketData.regime_ids[{bad}]={self.regime_ids[bad]} is not a regime id "
                f"in [0, {N_REGIMES}) although it is after first_bar={self.first_bar}"
            )
        for name, split in self.splits.items():
            start, stop, _ = split.indices(n)
            if stop - start < 2:
                raise ValueError(f"split {name!r} = {split} has fewer than 2 bars")
        for array in (*named.values(), self.close):
            array.flags.writeable = False

    @property
    def n_bars(self) -> int:
        return len(self.close)

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    def decision_range(self, split: str | None, context: int) -> tuple[int, int]:
        """First and last-plus-one *decision* bar for ``split`` (``None`` or ``"all"``: every
        bar, unless ``splits`` names an ``"all"`` range: a market prepared from later data with
        a run's training tail prepended scores only the later data's bars). A decision at bar t
        needs ``context`` bars of valid history (``t - context + 1 >= first_bar``) and the next
        bar's return, so the last decision bar of a split ``[a, b)`` is ``b - 2``."""
        if (split is None or split == "all") and "all" not in self.splits:
            start, stop = 0, self.n_bars
        else:
            split = split or "all"
            if split not in self.splits:
                raise ValueError(
                    f"unknown split {split!r}; this market has {sorted(set(self.splits) | {'all'})}"
                )
            start, stop, _ = self.splits[split].indices(self.n_bars)
        first = max(start, self.first_bar + context - 1)
        last_exclusive = stop - 1
        if last_exclusive - first < 1:
            raise ValueError(
                f"split {split!r} leaves no decision bars with context={context} "
                f"(bars [{start}, {stop}), first usable bar {first})"
            )
        return first, last_exclusive


def returns_from_close(close: np.ndarray) -> np.ndarray:
    """Simple 1-bar returns with ``returns[0] = 0`` (shape (n,), dimensionless)."""
    returns = np.zeros_like(close, dtype=np.float64)
    returns[1:] = close[1:] / close[:-1] - 1.0
    return returns


def market_from_prices(
    close: np.ndarray,
    *,
    features: np.ndarray | None = None,
    feature_names: tuple[str, ...] | None = None,
    regime_ids: np.ndarray | None = None,
    first_bar: int = 0,
    start: str = "2020-01-01T00:00:00",
    splits: Mapping[str, slice] | None = None,
) -> MarketData:
    """Build a :class:`MarketData` from a price path (hourly, no gaps).

    Convenient for tests and for users with their own arrays. Without ``features`` the single
    feature is the 1-bar return; without ``regime_ids`` every bar is LOW_VOL (0).
    """
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    returns = returns_from_close(close)
    if features is None:
        features = returns.reshape(-1, 1).astype(np.float32)
        feature_names = ("return_1",)
    features = np.asarray(features, dtype=np.float32)
    if feature_names is None:
        feature_names = tuple(f"feature_{i}" for i in range(features.shape[1]))
    if regime_ids is None:
        regime_ids = np.zeros(n, dtype=np.int8)
    timestamps = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "h")
    return MarketData(
        timestamps=timestamps.astype("datetime64[ns]"),
        close=close,
        returns=returns,
        gap_before=np.zeros(n, dtype=bool),
        features=features,
        feature_names=tuple(feature_names),
        regime_ids=np.asarray(regime_ids, dtype=np.int8),
        first_bar=first_bar,
        splits=dict(splits or {}),
    )
