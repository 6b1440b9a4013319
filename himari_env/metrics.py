"""After-fee performance metrics of one pass over a split (pure numpy).

Inputs everywhere
-----------------
``equity``: float (n + 1,), the equity curve of the pass, ``equity[0]`` the starting equity
(the env starts at 1.0) and ``equity[i + 1]`` the equity after the i-th step (after fees).
``positions``: float (n,), ``positions[i]`` the target weight held over the period from
``equity[i]`` to ``equity[i + 1]`` (positive long, negative short, 0 flat).

The per-bar return of the strategy is ``r[i] = equity[i + 1] / equity[i] - 1`` (simple,
after fees), and a year has :data:`~himari_env.constants.BARS_PER_YEAR` = 8,760 hourly bars.

Undefined values
----------------
A ratio whose denominator is zero (no return variance, no downside, no drawdown, no bar in
the market) is reported as ``0.0``: never ``inf``, never ``nan``, never an exception, so that
a flat (never trading) policy gets a finite, JSON-safe summary. "Zero" for a standard
deviation means below :data:`ZERO_STD` (1e-12 per bar), which absorbs the floating-point
noise of recomputing a constant return from an equity product.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from himari_env.constants import BARS_PER_YEAR

__all__ = [
    "ZERO_STD",
    "annualized_return",
    "annualized_volatility",
    "bar_returns",
    "calmar_ratio",
    "downside_deviation",
    "exposure",
    "hit_rate",
    "max_drawdown",
    "performance_summary",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "trade_count",
    "turnover",
]

#: Per-bar standard deviations at or below this are treated as zero (see module docstring).
ZERO_STD = 1e-12


def _as_equity(equity: ArrayLike) -> NDArray[np.float64]:
    values = np.asarray(equity, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(
            f"equity must be a 1-D array with at least one value, got shape {values.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"equity has a non-finite value at index {int(bad[0])}: {values[bad[0]]}")
    # Each return divides by the previous equity, so every value but the last must be > 0;
    # the last may be exactly 0 (a ruined pass).
    non_positive = np.flatnonzero(values[:-1] <= 0.0)
    if non_positive.size:
        index = int(non_positive[0])
        raise ValueError(
            f"equity must be > 0 before the last step; equity[{index}] = {values[index]}"
        )
    if values[-1] < 0.0:
        raise ValueError(f"equity[{values.size - 1}] = {values[-1]} is negative")
    return values


def _as_positions(positions: ArrayLike, n_bars: int | None = None) -> NDArray[np.float64]:
    values = np.asarray(positions, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"positions must be a 1-D array, got shape {values.shape}")
    if n_bars is not None and values.size != n_bars:
        raise ValueError(
            f"positions has {values.size} values but equity describes {n_bars} bars "
            f"(equity must have len(positions) + 1 values)"
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(
            f"positions has a non-finite value at index {int(bad[0])}: {values[bad[0]]}"
        )
    return values


def bar_returns(equity: ArrayLike) -> NDArray[np.float64]:
    """Simple per-bar strategy returns ``r[i] = equity[i + 1] / equity[i] - 1``.

    Parameters
    ----------
    equity : array (n + 1,)
        Equity curve (any positive unit; only ratios are used).

    Returns
    -------
    ndarray float64 (n,)
        Fractions (0.01 = +1 %).
    """
    values = _as_equity(equity)
    return values[1:] / values[:-1] - 1.0


def total_return(equity: ArrayLike) -> float:
    """``equity[-1] / equity[0] - 1`` (fraction; 0.0 for a single-value curve)."""
    values = _as_equity(equity)
    return float(values[-1] / values[0] - 1.0)


def annualized_return(equity: ArrayLike, *, bars_per_year: int = BARS_PER_YEAR) -> float:
    """Geometric (compound) annual growth rate.

    ``(equity[-1] / equity[0]) ** (bars_per_year / n) - 1`` with n the number of bars;
    0.0 when n = 0 and -1.0 when the final equity is 0. Fraction per year. Extrapolating a
    few bars to a year can overflow: the growth exponent is capped at 700 (a result near
    1e304), so the value stays finite; such passes are too short to annualize anyway.
    """
    values = _as_equity(equity)
    n_bars = values.size - 1
    if n_bars == 0:
        return 0.0
    growth = values[-1] / values[0]
    if growth == 0.0:
        return -1.0
    # exp/log form: the direct power overflows for short, strongly trending passes.
    exponent = (bars_per_year / n_bars) * np.log(growth)
    return float(np.expm1(min(exponent, 700.0)))


def annualized_volatility(equity: ArrayLike, *, bars_per_year: int = BARS_PER_YEAR) -> float:
    """``std(r) * sqrt(bars_per_year)``, population std (ddof = 0); fraction per year."""
    returns = bar_returns(equity)
    if returns.size == 0:
        return 0.0
    return float(np.std(returns) * np.sqrt(bars_per_year))


def sharpe_ratio(equity: ArrayLike, *, bars_per_year: int = BARS_PER_YEAR) -> float:
    """Annualized Sharpe ratio, risk-free rate 0.

    ``mean(r) / std(r) * sqrt(bars_per_year)`` with the population std (ddof = 0) of the
    per-bar returns. Dimensionless. 0.0 when std(r) <= :data:`ZERO_STD` (flat equity) or
    there are no bars.
    """
    returns = bar_returns(equity)
    if returns.size == 0:
        return 0.0
    std = float(np.std(returns))
    if std <= ZERO_STD:
        return 0.0
    return float(np.mean(returns) / std * np.sqrt(bars_per_year))


def downside_deviation(equity: ArrayLike) -> float:
    """Per-bar downside deviation with target 0 over ALL periods.

    ``sqrt(mean(min(r, 0) ** 2))``: the mean runs over every bar, with gains counted as
    zeros (not only over the losing bars). Fraction per bar; 0.0 when there are no bars.
    """
    returns = bar_returns(equity)
    if returns.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))


def sortino_ratio(equity: ArrayLike, *, bars_per_year: int = BARS_PER_YEAR) -> float:
    """Annualized Sortino ratio, target 0.

    ``mean(r) / downside_deviation * sqrt(bars_per_year)`` with the downside deviation of
    :func:`downside_deviation` (over all periods). Dimensionless. 0.0 when the downside
    deviation is <= :data:`ZERO_STD` (no losing bar) or there are no bars.
    """
    returns = bar_returns(equity)
    if returns.size == 0:
        return 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside <= ZERO_STD:
        return 0.0
    return float(np.mean(returns) / downside * np.sqrt(bars_per_year))


def max_drawdown(equity: ArrayLike) -> float:
    """Largest peak-to-trough loss ``max_t (1 - equity[t] / max_{s <= t} equity[s])``.

    A fraction in [0, 1] (0.25 = the equity fell 25 % below its running peak); 0.0 for a
    curve that never falls.
    """
    values = _as_equity(equity)
    running_peak = np.maximum.accumulate(values)
    return float(np.max(1.0 - values / running_peak))


def calmar_ratio(equity: ArrayLike, *, bars_per_year: int = BARS_PER_YEAR) -> float:
    """``annualized_return / max_drawdown`` (dimensionless); 0.0 when the max drawdown is 0.

    Like :func:`annualized_return` for passes too short to annualize, the ratio stays finite:
    a near-1e304 growth rate over a tiny drawdown would overflow, and is then reported as the
    largest finite float (a few bars, say +19 % and a 1e-7 dip, extrapolated to a year).
    """
    drawdown = max_drawdown(equity)
    if drawdown == 0.0:
        return 0.0
    largest = float(np.finfo(np.float64).max)
    with np.errstate(over="ignore"):
        ratio = np.float64(annualized_return(equity, bars_per_year=bars_per_year)) / np.float64(drawdown)
    return float(min(max(ratio, -largest), largest))


def turnover(positions: ArrayLike, *, initial_position: float = 0.0) -> float:
    """Total traded weight ``sum_i |positions[i] - positions[i - 1]|``.

    ``positions[-1]`` is ``initial_position`` (the env starts flat, 0.0), so entering the
    first position counts. Units: multiples of equity (1.0 = one full equity traded).
    """
    values = _as_positions(positions)
    if values.size == 0:
        return 0.0
    changes = np.diff(values, prepend=float(initial_position))
    return float(np.sum(np.abs(changes)))


def trade_count(positions: ArrayLike, *, initial_position: float = 0.0) -> int:
    """Number of bars at which the position changes (from ``initial_position`` at the start).

    A reversal from +1 to -1 is one trade; holding a position is none.
    """
    values = _as_positions(positions)
    if values.size == 0:
        return 0
    changes = np.diff(values, prepend=float(initial_position))
    return int(np.count_nonzero(changes))


def exposure(positions: ArrayLike) -> float:
    """Share of bars with a nonzero position, in [0, 1]; 0.0 when there are no bars."""
    values = _as_positions(positions)
    if values.size == 0:
        return 0.0
    return float(np.count_nonzero(values) / values.size)


def hit_rate(equity: ArrayLike, positions: ArrayLike) -> float:
    """Share of in-market bars (position != 0) whose strategy return ``r[i]`` is > 0.

    In [0, 1]; 0.0 when no bar is in the market (read it together with :func:`exposure`).
    """
    returns = bar_returns(equity)
    values = _as_positions(positions, n_bars=returns.size)
    in_market = values != 0.0
    n_in_market = int(np.count_nonzero(in_market))
    if n_in_market == 0:
        return 0.0
    return float(np.count_nonzero(returns[in_market] > 0.0) / n_in_market)


def performance_summary(
    equity: ArrayLike,
    positions: ArrayLike,
    *,
    bars_per_year: int = BARS_PER_YEAR,
    initial_position: float = 0.0,
) -> dict[str, Any]:
    """All metrics of one pass, as plain Python numbers (JSON-ready, never inf or nan).

    Parameters
    ----------
    equity : array (n + 1,)
        Equity curve after fees, ``equity[0]`` before the first step.
    positions : array (n,)
        Weight held over each step.
    bars_per_year : int
        Annualization factor (8,760 hourly bars).
    initial_position : float
        Position before the first step (the env starts flat).

    Returns
    -------
    dict
        ``n_bars``, ``final_equity``, ``total_return``, ``annualized_return``,
        ``annualized_volatility``, ``sharpe``, ``sortino``, ``max_drawdown``, ``calmar``,
        ``turnover``, ``trade_count``, ``exposure``, ``hit_rate``.
    """
    values = _as_equity(equity)
    held = _as_positions(positions, n_bars=values.size - 1)
    return {
        "n_bars": int(held.size),
        "final_equity": float(values[-1]),
        "total_return": total_return(values),
        "annualized_return": annualized_return(values, bars_per_year=bars_per_year),
        "annualized_volatility": annualized_volatility(values, bars_per_year=bars_per_year),
        "sharpe": sharpe_ratio(values, bars_per_year=bars_per_year),
        "sortino": sortino_ratio(values, bars_per_year=bars_per_year),
        "max_drawdown": max_drawdown(values),
        "calmar": calmar_ratio(values, bars_per_year=bars_per_year),
        "turnover": turnover(held, initial_position=initial_position),
        "trade_count": trade_count(held, initial_position=initial_position),
        "exposure": exposure(held),
        "hit_rate": hit_rate(values, held),
    }
