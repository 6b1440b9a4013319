"""H8: adaptive risk budget.

A size factor that starts at ``initial`` (1.0) each episode and, at the end of every period of
``period_bars`` steps (24 = one day), moves by ``step`` (1 %) multiplicatively with the sign of
that period's realized PnL (``ln(equity_end / equity_start)``): ``budget * (1 + step)`` after a
gain, ``budget * (1 - step)`` after a loss, unchanged after exactly 0; always kept within
``[lower, upper]`` ([0.5, 1.5]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RiskBudgetParams:
    """H8 settings."""

    initial: float = 1.0
    step: float = 0.01
    lower: float = 0.5
    upper: float = 1.5
    period_bars: int = 24

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lower) and 0 < self.lower <= self.initial <= self.upper and math.isfinite(self.upper)):
            raise ValueError(
                f"risk_budget needs 0 < lower <= initial <= upper, got lower={self.lower!r}, "
                f"initial={self.initial!r}, upper={self.upper!r}"
            )
        if not 0.0 <= self.step < 1.0:
            raise ValueError(f"risk_budget.step must be in [0, 1), got {self.step!r}")
        if self.period_bars < 1:
            raise ValueError(f"risk_budget.period_bars must be >= 1, got {self.period_bars!r}")


def update_risk_budget(budget: float, period_pnl: float, params: RiskBudgetParams) -> float:
    """Budget after a period with realized PnL ``period_pnl`` (any finite number)."""
    if not math.isfinite(period_pnl):
        raise ValueError(f"period_pnl must be finite, got {period_pnl!r}")
    if period_pnl > 0.0:
        budget *= 1.0 + params.step
    elif period_pnl < 0.0:
        budget *= 1.0 - params.step
    return min(params.upper, max(params.lower, budget))
