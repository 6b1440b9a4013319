"""H6: RSS safe margin.

Responsibility-sensitive safety for a position: over the holding horizon the equity must
survive an adverse ``k_sigma``-sigma move plus the cost of getting out. For a position of
size ``x`` (multiples of equity) the *required margin* is

    required_margin(x) = x * (k_sigma * sigma_bar * sqrt(horizon_bars) + execution_cost)

with ``sigma_bar`` the causal trailing per-bar volatility (short window, 24 bars) and
``execution_cost`` 0.2 % of notional. The size factor is a cap: the required margin must fit
the equity buffer ``margin_buffer`` (fraction of equity):

    |position| <= margin_buffer / (k_sigma * sigma_bar * sqrt(horizon_bars) + execution_cost).

So the expected adverse move (2 sigma) plus the execution cost is what the buffer must clear;
the size shrinks as volatility rises. Before any volatility is known (``sigma_bar`` NaN) only
the cost term is used. Why not a gate on a forecast edge ("trade only when the trailing
drift clears 2 sigma + cost"): on hourly bars such a gate is closed on ~95 % of bars for any
random-walk-like price, which would zero almost every position, the failure the Kelly design
avoids too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SafeMarginParams:
    """H6 settings."""

    k_sigma: float = 2.0
    execution_cost: float = 0.002
    horizon_bars: int = 1
    window: int = 24
    margin_buffer: float = 0.03

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k_sigma) and self.k_sigma > 0):
            raise ValueError(f"safe_margin.k_sigma must be > 0, got {self.k_sigma!r}")
        if not (math.isfinite(self.execution_cost) and self.execution_cost > 0):
            raise ValueError(f"safe_margin.execution_cost must be > 0, got {self.execution_cost!r}")
        if self.horizon_bars < 1:
            raise ValueError(f"safe_margin.horizon_bars must be >= 1, got {self.horizon_bars!r}")
        if self.window < 2:
            raise ValueError(f"safe_margin.window must be >= 2, got {self.window!r}")
        if not (math.isfinite(self.margin_buffer) and self.margin_buffer > 0):
            raise ValueError(f"safe_margin.margin_buffer must be > 0, got {self.margin_buffer!r}")


def required_margin(size: float, bar_volatility: float, params: SafeMarginParams) -> float:
    """Equity fraction needed by ``|size|`` (see the module docstring)."""
    sigma = bar_volatility if bar_volatility == bar_volatility else 0.0
    return abs(size) * (params.k_sigma * sigma * math.sqrt(params.horizon_bars) + params.execution_cost)


def safe_margin_cap(bar_volatility: float, params: SafeMarginParams) -> float:
    """Largest ``|position|`` whose required margin fits ``margin_buffer``."""
    return params.margin_buffer / required_margin(1.0, bar_volatility, params)
