"""H4: progressive drawdown brake.

A step function of the episode's current drawdown ``d = 1 - equity / peak_equity``: with
thresholds ``th_1 < th_2 < th_3`` (3 / 6 / 10 %) and cuts ``c_1 <= c_2 <= c_3``
(30 / 60 / 95 %), the size factor is ``1 - c_k`` for the highest ``k`` with ``d >= th_k``,
and 1.0 below the first threshold. Thresholds and cuts may be re-selected on train (see
:func:`himari_env.risk.calibration.select_drawdown_brake`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DrawdownBrakeParams:
    """H4 settings: ``thresholds`` (drawdown fractions) and ``reductions`` (cut fractions)."""

    thresholds: tuple[float, ...] = (0.03, 0.06, 0.10)
    reductions: tuple[float, ...] = (0.30, 0.60, 0.95)

    def __post_init__(self) -> None:
        thresholds = tuple(float(v) for v in self.thresholds)
        reductions = tuple(float(v) for v in self.reductions)
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "reductions", reductions)
        if len(thresholds) != len(reductions) or not thresholds:
            raise ValueError(
                f"drawdown_brake needs as many thresholds as reductions (>= 1), got "
                f"{thresholds} and {reductions}"
            )
        if any(not (math.isfinite(v) and 0.0 < v < 1.0) for v in thresholds) or any(
            b <= a for a, b in itertools.pairwise(thresholds)
        ):
            raise ValueError(f"drawdown_brake.thresholds must increase strictly within (0, 1), got {thresholds}")
        if any(not (math.isfinite(v) and 0.0 <= v <= 1.0) for v in reductions) or any(
            b < a for a, b in itertools.pairwise(reductions)
        ):
            raise ValueError(f"drawdown_brake.reductions must be non-decreasing within [0, 1], got {reductions}")


def drawdown_brake_factor(drawdown: float, params: DrawdownBrakeParams) -> float:
    """Size factor in [0, 1] for the current drawdown (a fraction in [0, 1])."""
    if not 0.0 <= drawdown <= 1.0:
        raise ValueError(f"drawdown must be a fraction in [0, 1], got {drawdown!r}")
    cut = 0.0
    for threshold, reduction in zip(params.thresholds, params.reductions, strict=True):
        if drawdown >= threshold:
            cut = reduction
        else:
            break
    return 1.0 - cut
