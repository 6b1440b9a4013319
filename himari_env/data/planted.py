"""A synthetic market with a planted, tradable edge and its oracle policies.

The instrument that tells whether the learning machinery works: if an agent cannot find an
edge that we put there ourselves, it will not find one in real data.

Construction. The embedded synthetic market (:func:`~himari_env.data.synthesize_market`,
same seed, same regimes, volatility clustering, fat tails and volumes) with its regime
drifts switched off, plus a *planted drift*: a hidden two-state sign chain
``s[t] in {+1, -1}`` whose runs last ``Geometric(1 / mean_run_bars)`` bars (three months by
default), adding ``s[t] * drift_per_bar`` to the log return of bar t. So the planted drift is
the only edge in the market, and the oracles below are the optimal policies. The sign chain
has its own random stream (``default_rng([seed, 1])``).

The edge is visible in the observation only through prices: trailing returns at horizons of
days to weeks (``logret_168``, ``dist_ema_168``, the MACD family...) reveal the sign with a
lag, at a horizon long enough to pay the 0.10 % fee (a switch every ~2,000 bars).

Oracles (position held over bar t+1, decided at the close of bar t):

* :func:`filter_oracle_positions`, **the oracle**: the Bayes-optimal causal filter that
  knows the generating model (drift size, switch rate) but not the hidden state: a
  two-state forward filter on the log returns of bars <= t (Gaussian likelihood with a
  causal EWMA volatility), long when ``P(s = +1 | r[<= t]) > 0.5 + band`` and short when
  ``< 0.5 - band``, else keep the previous position (the band limits fee churn). This is
  the best an agent that only sees prices can hope for, and the bar the agent is held to.
* :func:`state_oracle_positions`: the clairvoyant bound that knows the hidden state
  ``s[t]`` (not the future). No causal policy can reach it; reported for context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_env.data.synthetic import (
    SyntheticMarket,
    SyntheticMarketParams,
    _check_int,
    synthesize_market,
)

__all__ = [
    "PlantedMarket",
    "PlantedSignalParams",
    "filter_oracle_positions",
    "state_oracle_positions",
    "synthesize_planted_market",
]


@dataclass(frozen=True)
class PlantedSignalParams:
    """The planted edge.

    Attributes
    ----------
    drift_per_bar : float
        Magnitude of the planted log-return drift per bar (5e-4: about 12 % a month).
    mean_run_bars : float
        Mean length of a run of one sign, in bars (> 1).
    filter_vol_halflife_bars : float
        Half-life of the causal EWMA volatility the filter oracle uses.
    filter_band : float
        Hysteresis of the filter oracle around P = 0.5.
    """

    drift_per_bar: float = 5.0e-4
    mean_run_bars: float = 2_160.0
    filter_vol_halflife_bars: float = 48.0
    filter_band: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.drift_per_bar) and self.drift_per_bar > 0):
            raise ValueError(f"drift_per_bar must be > 0, got {self.drift_per_bar!r}")
        if not (math.isfinite(self.mean_run_bars) and self.mean_run_bars > 1):
            raise ValueError(f"mean_run_bars must be > 1, got {self.mean_run_bars!r}")
        if not (math.isfinite(self.filter_vol_halflife_bars) and self.filter_vol_halflife_bars > 0):
            raise ValueError(f"filter_vol_halflife_bars must be > 0, got {self.filter_vol_halflife_bars!r}")
        if not 0.0 <= self.filter_band < 0.5:
            raise ValueError(f"filter_band must be in [0, 0.5), got {self.filter_band!r}")


@dataclass(frozen=True)
class PlantedMarket:
    """The planted market: the synthetic market with the drift, and the hidden sign.

    Attributes
    ----------
    market : SyntheticMarket
        ``market.frame`` is the OHLCV frame (the drift is in its prices).
    planted_sign : np.ndarray
        int8 (n_bars,), the hidden sign ``s[t]`` of the drift of bar t.
    params : PlantedSignalParams
    """

    market: SyntheticMarket
    planted_sign: np.ndarray
    params: PlantedSignalParams

    @property
    def frame(self) -> pd.DataFrame:
        """The OHLCV frame (with the planted drift in its prices)."""
        return self.market.frame


def _draw_sign_chain(rng: np.random.Generator, n_bars: int, mean_run_bars: float) -> np.ndarray:
    signs = np.empty(n_bars, dtype=np.int8)
    position, sign = 0, int(rng.choice((-1, 1)))
    while position < n_bars:
        run = int(rng.geometric(1.0 / mean_run_bars))
        signs[position:position + run] = sign
        position += run
        sign = -sign
    return signs


def synthesize_planted_market(n_bars: int = 45_000, seed: int = 0,
                              params: PlantedSignalParams | None = None) -> PlantedMarket:
    """The seeded synthetic market with the planted drift (see the module docstring)."""
    n_bars = _check_int("n_bars", n_bars, 2)
    seed = _check_int("seed", seed, 0)
    params = params or PlantedSignalParams()
    signs = _draw_sign_chain(np.random.default_rng([seed, 1]), n_bars, params.mean_run_bars)
    base = SyntheticMarketParams(regime_drift=(0.0, 0.0, 0.0, 0.0))
    market = synthesize_market(n_bars, seed, params=base, extra_log_drift=signs * params.drift_per_bar)
    return PlantedMarket(market=market, planted_sign=signs, params=params)


def state_oracle_positions(planted_sign: np.ndarray) -> np.ndarray:
    """Clairvoyant-of-state positions: ``+1/-1 = s[t]`` decided at bar t (float64 (n,))."""
    return np.asarray(planted_sign, dtype=np.float64)


def filter_oracle_positions(close: np.ndarray, params: PlantedSignalParams) -> np.ndarray:
    """The causal Bayes-filter oracle's position at every bar (float64 (n,), values +1/-1,
    0 before the first decision); position[t] uses closes <= t only.

    Parameters
    ----------
    close : float (n,)
        Close prices.
    params : PlantedSignalParams
        The generating model the oracle knows (drift, mean run) and its filter settings.
    """
    close = np.asarray(close, dtype=np.float64)
    n = close.size
    log_returns = np.zeros(n)
    log_returns[1:] = np.diff(np.log(close))
    alpha = 1.0 - 0.5 ** (1.0 / params.filter_vol_halflife_bars)
    switch = 1.0 / params.mean_run_bars
    mu = params.drift_per_bar
    positions = np.zeros(n)
    variance = float(np.var(log_returns[1:min(n, 49)])) if n > 2 else 1e-4
    variance = max(variance, 1e-10)
    probability_up = 0.5
    held = 0.0
    for t in range(1, n):
        r = log_returns[t]
        # Predict through a possible switch, then update with bar t's return.
        prior = probability_up * (1.0 - switch) + (1.0 - probability_up) * switch
        log_ratio = 2.0 * mu * r / variance  # ln N(r; +mu, v) - ln N(r; -mu, v)
        log_ratio = max(min(log_ratio, 50.0), -50.0)
        odds = prior / (1.0 - prior) * math.exp(log_ratio)
        probability_up = min(max(odds / (1.0 + odds), 1e-12), 1.0 - 1e-12)
        variance = (1.0 - alpha) * variance + alpha * r * r
        variance = max(variance, 1e-10)
        if probability_up > 0.5 + params.filter_band:
            held = 1.0
        elif probability_up < 0.5 - params.filter_band:
            held = -1.0
        positions[t] = held
    return positions
