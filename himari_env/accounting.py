"""The one accounting rule of HIMARI: fee, equity and drawdown of a step.

Used by the core env (:class:`~himari_env.env.HimariBTCEnv`), the risk layer's calibration
simulator (:func:`~himari_env.risk.backtest.run_backtest`) and the Sortino calibration, so the
three can never disagree. A decision at the close of bar t sets the target position ``p_t``
(a constant weight of equity, held over bar t+1):

* ``turnover = |p_t - p_{t-1}|`` (fraction of equity traded at ``close[t]``),
* ``fee = fee_rate * turnover * equity_t`` (charged at ``close[t]``),
* ``equity_{t+1} = (equity_t - fee) * (1 + p_t * r[t+1])``, ``r[t+1] = close[t+1]/close[t] - 1``,
* ``drawdown = 1 - equity / running peak of equity``.

Equity at or below :data:`EQUITY_FLOOR` is a bankruptcy: the equity is then exactly 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Equity at or below this is a bankruptcy (and keeps log rewards finite).
EQUITY_FLOOR = 1e-12


def accounting_step(equity: float, previous_position: float, position: float, next_return: float,
                    fee_rate: float) -> tuple[float, float, float, bool]:
    """One step of the accounting rule (pure, scalar).

    Parameters
    ----------
    equity : equity at the decision (> 0).
    previous_position, position : target weight held before and after the decision.
    next_return : ``r[t+1]``, the simple return of the bar the position is held over.
    fee_rate : fee per unit of traded notional (0.001 = 0.10 %).

    Returns
    -------
    (turnover, fee, new_equity, bankrupt) : ``new_equity`` is 0.0 when ``bankrupt``.
    """
    turnover = abs(position - previous_position)
    fee = fee_rate * turnover * equity
    new_equity = (equity - fee) * (1.0 + position * next_return)
    if new_equity <= EQUITY_FLOOR:
        return turnover, fee, 0.0, True
    return turnover, fee, new_equity, False


def drawdown(equity: float, peak: float) -> float:
    """``1 - equity / peak`` (a fraction in [0, 1] for ``0 <= equity <= peak``, ``peak > 0``)."""
    return 1.0 - equity / peak


def accounting_path(positions: ArrayLike, next_returns: ArrayLike, fee_rate: float,
                    *, previous_position: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """:func:`accounting_step` over a whole pass from equity 1.0, vectorized.

    Parameters
    ----------
    positions : float (n,), the target held over each step.
    next_returns : float (n,), the return of the bar each position is held over.
    fee_rate : fee per unit of traded notional.
    previous_position : the position before the first step.

    Returns
    -------
    (equity, turnover, fees, bankrupt) : equity float64 (k + 1,) starting at 1.0; turnover and
    fees float64 (k,); ``k = n`` or, on bankruptcy, the steps up to and including it (the last
    equity is then 0.0). Equal to iterating :func:`accounting_step` up to float rounding:
    ``(equity - fee) (1 + p r) = equity (1 - fee_rate turnover) (1 + p r)``.
    """
    held = np.asarray(positions, dtype=np.float64)
    returns = np.asarray(next_returns, dtype=np.float64)
    if held.shape != returns.shape or held.ndim != 1:
        raise ValueError(f"positions {held.shape} and next_returns {returns.shape} must be equal 1-D shapes")
    turnover = np.abs(np.diff(held, prepend=previous_position))
    growth = (1.0 - fee_rate * turnover) * (1.0 + held * returns)
    equity = np.concatenate(([1.0], np.cumprod(growth)))
    bankrupt_at = np.flatnonzero(equity <= EQUITY_FLOOR)
    bankrupt = bankrupt_at.size > 0
    if bankrupt:
        last = int(bankrupt_at[0])
        equity = equity[: last + 1]
        equity[-1] = 0.0
        turnover = turnover[:last]
    fees = fee_rate * turnover * equity[:-1]
    return equity, turnover, fees, bankrupt


def drawdown_path(equity: ArrayLike) -> np.ndarray:
    """Drawdown after each point of an equity curve (n,): ``1 - equity / running peak``."""
    values = np.asarray(equity, dtype=np.float64)
    return 1.0 - values / np.maximum.accumulate(values)
