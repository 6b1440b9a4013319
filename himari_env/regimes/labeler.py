"""Balanced, causal, rule-based 4-regime labeler (ids 0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS).

Every input is a trailing rolling percentile (default window 500 bars), so the thresholds
mean the same thing in every year:

- ``vol_pct``: percentile of the 24-bar realized volatility (see
  :mod:`himari_env.features.percentiles`);
- ``trend_pct``: percentile of the 24-bar trend strength |sum r| / sqrt(sum r^2);
- ``drawdown_pct``: percentile of the trailing drawdown ``close / max(close over the last
  drawdown_bars bars) - 1`` (low = deeper than usual).

Raw label at bar t, first matching rule wins:

1. CRISIS   if vol_pct >= crisis_vol_pct and drawdown_pct <= crisis_drawdown_pct
2. HIGH_VOL if vol_pct >= high_vol_pct
3. TRENDING if trend_pct >= trend_pct (vol is moderate here, since rule 2 did not fire)
4. LOW_VOL  otherwise.

Persistence filter (causal): the label switches to a new regime only once the raw label has
named that regime for ``confirm_bars`` consecutive bars; until then it keeps the previous
label. Every run therefore lasts at least ``confirm_bars`` bars, except the last run of the
series, which may be cut short by the end of the data.

Warm-up: rows before :func:`labeler_warmup_bars` (666 with the defaults: the 168-bar drawdown
needs 167 rows, then its percentile window 499 more) are labeled ``-1`` (:data:`WARMUP_LABEL`).
The filter starts at the first labeled row with that row's raw label.

The default thresholds were tuned once, with :func:`tune_labeler_thresholds`, on the train
part (first 60 % of decision bars after the 720-bar warm-up) of the Binance BTCUSDT 1h
2020-2024 file, to the design log's distribution 45.3 / 26.2 / 16.9 / 11.5 %; they were not
tuned on validation or test rows. ``crisis_drawdown_pct`` (a drawdown deeper than 75 % of the
window's) and ``confirm_bars`` (4 hours) were set by meaning, not tuned. Resulting shares
(LOW_VOL / TRENDING / HIGH_VOL / CRISIS): train 45.3 / 26.3 / 16.9 / 11.5, val 47.6 / 22.4 /
22.3 / 7.7, test 45.1 / 25.2 / 16.6 / 13.1, whole file after warm-up 45.7 / 25.3 / 18.0 / 11.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from himari_env.constants import CRISIS, HIGH_VOL, LOW_VOL, N_REGIMES, REGIME_NAMES, TRENDING
from himari_env.features.percentiles import (
    DEFAULT_PERCENTILE_WINDOW,
    SHORT_WINDOW,
    regime_base_series,
    rolling_percentile,
)

WARMUP_LABEL = -1
#: Design-log regime distribution on 2020-2024 (LOW_VOL, TRENDING, HIGH_VOL, CRISIS).
TARGET_SHARES: tuple[float, float, float, float] = (0.453, 0.262, 0.169, 0.115)


@dataclass(frozen=True)
class LabelerConfig:
    """Thresholds (percentiles in [0, 1]) and windows (bars) of :func:`label_regimes`."""

    window: int = DEFAULT_PERCENTILE_WINDOW
    drawdown_bars: int = 168
    crisis_vol_pct: float = 0.776
    crisis_drawdown_pct: float = 0.25
    high_vol_pct: float = 0.709
    trend_pct: float = 0.575
    confirm_bars: int = 4

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be >= 2 bars, got {self.window}")
        if self.drawdown_bars < 1:
            raise ValueError(f"drawdown_bars must be >= 1, got {self.drawdown_bars}")
        if self.confirm_bars < 1:
            raise ValueError(f"confirm_bars must be >= 1, got {self.confirm_bars}")
        for name in ("crisis_vol_pct", "crisis_drawdown_pct", "high_vol_pct", "trend_pct"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a percentile in [0, 1], got {value}")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def labeler_warmup_bars(config: LabelerConfig = LabelerConfig()) -> int:
    """Number of leading rows labeled ``-1`` (first row with all inputs finite)."""
    vol_ready = 1 + (SHORT_WINDOW - 1) + config.window - 1
    drawdown_ready = config.drawdown_bars - 1 + config.window - 1
    return max(vol_ready, drawdown_ready)


@dataclass(frozen=True)
class LabelerInputs:
    """The three percentile series the rules read, each float64 (n,), NaN in warm-up."""

    vol_pct: np.ndarray
    trend_pct: np.ndarray
    drawdown_pct: np.ndarray


def trailing_drawdown(close: np.ndarray, drawdown_bars: int) -> np.ndarray:
    """``close[t] / max(close[t-drawdown_bars+1 .. t]) - 1``, shape (n,), <= 0; NaN before
    the window is full."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(close), np.nan)
    if len(close) >= drawdown_bars:
        peak = sliding_window_view(close, drawdown_bars).max(axis=1)
        out[drawdown_bars - 1 :] = close[drawdown_bars - 1 :] / peak - 1.0
    return out


def labeler_inputs(frame: pd.DataFrame, config: LabelerConfig = LabelerConfig()) -> LabelerInputs:
    """Compute the percentile inputs of the rules from a canonical OHLCV frame."""
    base = regime_base_series(frame)
    drawdown = trailing_drawdown(frame["close"].to_numpy(dtype=np.float64), config.drawdown_bars)
    return LabelerInputs(
        vol_pct=rolling_percentile(base["vol"], config.window),
        trend_pct=rolling_percentile(base["trend_strength"], config.window),
        drawdown_pct=rolling_percentile(drawdown, config.window),
    )


def raw_regime_labels(inputs: LabelerInputs, config: LabelerConfig) -> np.ndarray:
    """Priority rules without persistence, int8 (n,), -1 where an input is NaN."""
    vol, trend, drawdown = inputs.vol_pct, inputs.trend_pct, inputs.drawdown_pct
    ready = np.isfinite(vol) & np.isfinite(trend) & np.isfinite(drawdown)
    labels = np.full(len(vol), LOW_VOL, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        labels[trend >= config.trend_pct] = TRENDING
        labels[vol >= config.high_vol_pct] = HIGH_VOL
        labels[(vol >= config.crisis_vol_pct) & (drawdown <= config.crisis_drawdown_pct)] = CRISIS
    labels[~ready] = WARMUP_LABEL
    return labels


def persistence_filter(raw_labels: np.ndarray, confirm_bars: int) -> np.ndarray:
    """Causal switch rule: adopt a new label after ``confirm_bars`` consecutive raw bars.

    Parameters
    ----------
    raw_labels : np.ndarray, shape (n,), int
        Raw labels; ``-1`` marks leading warm-up rows (kept as ``-1``).
    confirm_bars : int
        Consecutive bars of a new raw label needed to switch (1 = no filtering).

    Returns
    -------
    np.ndarray, shape (n,), int8
    """
    raw = np.asarray(raw_labels).astype(np.int8)
    if confirm_bars < 1:
        raise ValueError(f"confirm_bars must be >= 1, got {confirm_bars}")
    out = np.full(len(raw), WARMUP_LABEL, dtype=np.int8)
    labeled = np.flatnonzero(raw != WARMUP_LABEL)
    if labeled.size == 0:
        return out
    first = int(labeled[0])
    if (raw[first:] == WARMUP_LABEL).any():
        bad = first + int(np.flatnonzero(raw[first:] == WARMUP_LABEL)[0])
        raise ValueError(f"raw label -1 at row {bad} after labeled rows began at row {first}")
    seq = raw[first:]
    positions = np.arange(len(seq))
    starts = np.zeros(len(seq), dtype=bool)
    starts[0] = True
    starts[1:] = seq[1:] != seq[:-1]
    run_start = np.maximum.accumulate(np.where(starts, positions, 0))
    run_length = positions - run_start + 1
    confirmed = run_length >= confirm_bars
    confirmed[0] = True  # the filter's initial state is the first raw label
    last_confirmed = np.maximum.accumulate(np.where(confirmed, positions, 0))
    out[first:] = seq[last_confirmed]
    return out


def label_regimes(frame: pd.DataFrame, *, config: LabelerConfig = LabelerConfig()) -> np.ndarray:
    """Label every bar of ``frame`` with a regime id, causally.

    Parameters
    ----------
    frame : pd.DataFrame
        Canonical OHLCV frame, n rows (validated: NaN, non-positive prices, unsorted
        timestamps raise errors naming the row).
    config : LabelerConfig
        Thresholds and windows.

    Returns
    -------
    np.ndarray, shape (n,), int8
        0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS; -1 for the first
        :func:`labeler_warmup_bars` rows.
    """
    return label_from_inputs(labeler_inputs(frame, config), config)


def label_from_inputs(inputs: LabelerInputs, config: LabelerConfig) -> np.ndarray:
    """Rules plus persistence filter on precomputed inputs (int8 (n,))."""
    return persistence_filter(raw_regime_labels(inputs, config), config.confirm_bars)


@dataclass(frozen=True)
class RegimeLabelStats:
    """Distribution of labeled rows (``-1`` rows excluded).

    Attributes
    ----------
    n_labeled : int
    shares : tuple[float, ...]
        Fraction of labeled rows per regime id 0..3.
    mean_run_length : tuple[float, ...]
        Mean length in bars of maximal runs of each regime (NaN when a regime never occurs).
    n_runs : tuple[int, ...]
    min_run_length : int
        Shortest run of any regime, excluding the final run (which the data end may cut).
    """

    n_labeled: int
    shares: tuple[float, ...]
    mean_run_length: tuple[float, ...]
    n_runs: tuple[int, ...]
    min_run_length: int

    def to_dict(self) -> dict[str, object]:
        return {
            "n_labeled": self.n_labeled,
            "shares": dict(zip(REGIME_NAMES, self.shares, strict=True)),
            "mean_run_length": dict(zip(REGIME_NAMES, self.mean_run_length, strict=True)),
            "n_runs": dict(zip(REGIME_NAMES, self.n_runs, strict=True)),
            "min_run_length": self.min_run_length,
        }


def regime_label_stats(regime_ids: np.ndarray) -> RegimeLabelStats:
    """Shares and run lengths per regime of a label array (``-1`` rows are ignored).

    Parameters
    ----------
    regime_ids : np.ndarray, shape (n,), int
        Values in {-1, 0, 1, 2, 3}; anything else raises ``ValueError`` naming the row.
    """
    ids = np.asarray(regime_ids)
    if ids.ndim != 1:
        raise ValueError(f"regime_ids must be one-dimensional, got shape {ids.shape}")
    unknown = ~np.isin(ids, np.arange(-1, N_REGIMES))
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise ValueError(f"unknown regime id {ids[row]} at row {row}; expected -1..{N_REGIMES - 1}")
    labeled = ids[ids != WARMUP_LABEL].astype(np.int64)
    n = len(labeled)
    counts = np.bincount(labeled, minlength=N_REGIMES)
    shares = tuple(float(c / n) if n else float("nan") for c in counts)
    if n == 0:
        return RegimeLabelStats(0, shares, (float("nan"),) * N_REGIMES, (0,) * N_REGIMES, 0)
    boundaries = np.flatnonzero(labeled[1:] != labeled[:-1]) + 1
    run_starts = np.concatenate([[0], boundaries])
    run_lengths = np.diff(np.concatenate([run_starts, [n]]))
    run_ids = labeled[run_starts]
    n_runs = np.bincount(run_ids, minlength=N_REGIMES)
    total = np.bincount(run_ids, weights=run_lengths, minlength=N_REGIMES)
    mean_runs = tuple(
        float(t / r) if r else float("nan") for t, r in zip(total, n_runs, strict=True)
    )
    min_run = int(run_lengths[:-1].min()) if len(run_lengths) > 1 else int(run_lengths[0])
    return RegimeLabelStats(n, shares, mean_runs, tuple(int(r) for r in n_runs), min_run)


def tune_labeler_thresholds(
    inputs: LabelerInputs,
    rows: slice,
    *,
    target_shares: Sequence[float] = TARGET_SHARES,
    base_config: LabelerConfig = LabelerConfig(),
    n_passes: int = 4,
    n_bisect: int = 20,
) -> LabelerConfig:
    """Fit ``crisis_vol_pct``, ``high_vol_pct`` and ``trend_pct`` so that the filtered
    labels on ``rows`` match ``target_shares`` (LOW_VOL, TRENDING, HIGH_VOL, CRISIS).

    Coordinate bisection: each share is monotone in its own threshold (CRISIS in
    ``crisis_vol_pct``, CRISIS + HIGH_VOL in ``high_vol_pct``, TRENDING in ``trend_pct``);
    a few passes absorb the persistence filter's coupling. ``crisis_drawdown_pct``,
    windows and ``confirm_bars`` stay as in ``base_config``. Call it on train rows only.
    """
    targets = np.asarray(target_shares, dtype=np.float64)
    if targets.shape != (N_REGIMES,) or not np.isclose(targets.sum(), 1.0, atol=0.01):
        raise ValueError(f"target_shares must be 4 shares summing to 1, got {target_shares}")
    targets = targets / targets.sum()  # the log's rounded shares sum to 0.999

    def shares(config: LabelerConfig) -> np.ndarray:
        return np.asarray(regime_label_stats(label_from_inputs(inputs, config)[rows]).shares)

    # (field, share that increases as the threshold decreases)
    objectives = (
        ("crisis_vol_pct", lambda s: s[CRISIS], targets[CRISIS]),
        ("high_vol_pct", lambda s: s[CRISIS] + s[HIGH_VOL], targets[CRISIS] + targets[HIGH_VOL]),
        ("trend_pct", lambda s: s[TRENDING], targets[TRENDING]),
    )
    config = base_config
    for _ in range(n_passes):
        for field, share_of, target in objectives:
            lo, hi = 0.0, 1.0
            for _ in range(n_bisect):
                mid = 0.5 * (lo + hi)
                if share_of(shares(_with(config, field, mid))) > target:
                    lo = mid
                else:
                    hi = mid
            config = _with(config, field, round(0.5 * (lo + hi), 3))
    return config


def _with(config: LabelerConfig, field: str, value: float) -> LabelerConfig:
    changes: dict[str, Any] = {field: value}
    return replace(config, **changes)
