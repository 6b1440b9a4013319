"""H5: historical portfolio VaR over a trailing window.

The VaR of a unit position at bar t is the loss quantile of the returns of bars
``max(first, t - window + 1) .. t`` (bars <= t only): ``-quantile(r, 1 - level)`` for a long
and ``quantile(r, level)`` for a short (numpy's linear interpolation), floored at 0 (a window
whose ``level`` quantile is a gain shows no loss to budget). NaN while fewer than
``min_periods`` returns exist. The cap is ``|position| <= var_budget / VaR`` so the sized
position's one-bar VaR stays within the budget; no cap (``inf``) when VaR is 0 or undefined.
With one instrument the "portfolio" is the single sized position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from himari_env.risk.vol_target import _checked_returns

_BLOCK = 8192


def rolling_historical_var(
    returns: ArrayLike,
    *,
    window: int = 100,
    level: float = 0.99,
    side: str = "long",
    min_periods: int = 20,
    first: int = 1,
) -> np.ndarray:
    """Causal rolling historical VaR of a unit position, float64 (n,), loss fraction per bar."""
    values = _checked_returns(returns)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if side not in ("long", "short"):
        raise ValueError(f"side must be 'long' or 'short', got {side!r}")
    if window < 2 or not 1 <= min_periods <= window:
        raise ValueError(f"need window >= 2 and 1 <= min_periods ({min_periods}) <= window ({window})")
    q = 1.0 - level if side == "long" else level
    sign = -1.0 if side == "long" else 1.0
    n = values.size
    out = np.full(n, np.nan)
    body = values[first:]
    m = body.size
    # Partial windows: at most `window - 1` short quantiles.
    for k in range(min_periods, min(window - 1, m) + 1):
        out[first + k - 1] = sign * np.quantile(body[:k], q)
    if m >= window:
        view = np.lib.stride_tricks.sliding_window_view(body, window)
        for start in range(0, view.shape[0], _BLOCK):
            block = view[start : start + _BLOCK]
            lo = first + window - 1 + start
            out[lo : lo + block.shape[0]] = sign * np.quantile(block, q, axis=1)
    return np.where(np.isnan(out), out, np.maximum(out, 0.0))


def var_position_cap(unit_var: float, var_budget: float) -> float:
    """Largest ``|position|`` with ``|position| * unit_var <= var_budget``; ``inf`` when
    ``unit_var`` is 0 or NaN."""
    if not unit_var > 0.0:
        return math.inf
    return var_budget / unit_var


@dataclass(frozen=True)
class PortfolioVaRParams:
    """H5 settings: 99 % historical VaR over 100 bars, budget as a fraction of equity per bar."""

    level: float = 0.99
    window: int = 100
    min_periods: int = 20
    var_budget: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"portfolio_var.level must be in (0, 1), got {self.level!r}")
        if self.window < 2 or not 1 <= self.min_periods <= self.window:
            raise ValueError(
                f"portfolio_var needs window >= 2 and 1 <= min_periods <= window, got "
                f"window={self.window!r}, min_periods={self.min_periods!r}"
            )
        if not (math.isfinite(self.var_budget) and self.var_budget > 0):
            raise ValueError(f"portfolio_var.var_budget must be > 0, got {self.var_budget!r}")
