"""The direction rules shared by the baselines, the risk calibration and the L3 sizer.

Each returns a causal direction array over the whole series, int8 (n,) with values -1 (short),
0 (flat) and +1 (long); the value at bar t uses bars <= t only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from himari_env.constants import CRISIS, HIGH_VOL


def momentum_directions(close: ArrayLike, lookback: int = 24, *, long_short: bool = True) -> np.ndarray:
    """``sign(close[t] - close[t - lookback])`` (0 before ``lookback`` bars exist and on a tie);
    with ``long_short=False`` a negative sign is flat instead of short."""
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1 bar, got {lookback}")
    prices = np.asarray(close, dtype=np.float64)
    directions = np.zeros(prices.size, dtype=np.int8)
    if prices.size > lookback:
        directions[lookback:] = np.sign(prices[lookback:] - prices[:-lookback]).astype(np.int8)
    if not long_short:
        directions[directions < 0] = 0
    return directions


def regime_gated_directions(regime_ids: ArrayLike) -> np.ndarray:
    """Long except in HIGH_VOL and CRISIS (flat there)."""
    regimes = np.asarray(regime_ids)
    return np.where((regimes == HIGH_VOL) | (regimes == CRISIS), 0, 1).astype(np.int8)


def decision_grid(start: int, stop: int, interval: int, phase: int = 0) -> np.ndarray:
    """Decision bars, int64: ``start``, then every ``interval`` bars from ``start + phase``
    (``phase`` 0: from ``start + interval``), below ``stop``: one grid of a policy that decides
    every ``interval`` bars, offset by ``phase`` for a staggered sleeve (``agents.sleeves``)."""
    if interval < 1:
        raise ValueError(f"interval must be >= 1 bar, got {interval}")
    if not 0 <= phase < interval:
        raise ValueError(f"phase must be in [0, {interval}), got {phase}")
    return np.concatenate(([start], np.arange(start + (phase or interval), stop, interval))).astype(np.int64)


def held_decisions(decision_bars: ArrayLike, directions: ArrayLike, *, n_bars: int, stop: int) -> np.ndarray:
    """Hourly directions, int8 (n_bars,): ``directions[k]`` from ``decision_bars[k]`` until the
    next decision bar (the last until ``stop``), 0 elsewhere. ``decision_bars`` strictly
    increasing, below ``stop <= n_bars``."""
    bars = np.asarray(decision_bars, dtype=np.int64)
    hourly = np.zeros(n_bars, dtype=np.int8)
    ends = np.append(bars[1:], stop)
    hourly[bars[0]:stop] = np.repeat(np.asarray(directions, dtype=np.int8), ends - bars)
    return hourly
