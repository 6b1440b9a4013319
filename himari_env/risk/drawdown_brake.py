"""H4: progressive drawdown brake.

A step function of the current drawdown ``d = 1 - equity / peak_equity``: with
thresholds ``th_1 < th_2 < th_3`` (3 / 6 / 10 %) and cuts ``c_1 <= c_2 <= c_3``
(30 / 60 / 95 %), the size factor is ``1 - c_k`` for the highest ``k`` with ``d >= th_k``,
and 1.0 below the first threshold. Thresholds and cuts may be re-selected on train (see
:func:`himari_env.risk.calibration.select_drawdown_brake`).

The peak is *rolling*: the highest equity of the last ``peak_window_bars`` bars (the current
bar included; 720 bars, a month, by default), so that after a drawdown and a recovery, or
after a month without a new high, the size comes back instead of staying cut for the rest
of a long pass. ``peak_window_bars = None`` measures from the episode's running peak (the
design log's brake, which over a multi-year pass binds on almost every bar once the first
large drawdown happened). Within the first ``peak_window_bars`` bars of an episode the
window holds only that episode's bars; after that the brake state no longer depends on
where the episode started, so 2,048-bar training episodes and full-split evaluation
passes see the same brake.
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
    peak_window_bars: int | None = 720

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
        if self.peak_window_bars is not None and (isinstance(self.peak_window_bars, bool)
                                                  or int(self.peak_window_bars) != self.peak_window_bars
                                                  or self.peak_window_bars < 1):
            raise ValueError(f"drawdown_brake.peak_window_bars must be an int >= 1 or null, got {self.peak_window_bars!r}")


class RollingPeak:
    """The highest equity over the last ``window`` recorded values (``None``: all of them).

    O(1) amortized per :meth:`push` (a monotonic deque of (step, equity)).
    """

    def __init__(self, window: int | None) -> None:
        from collections import deque

        self.window = window
        self._values: deque[tuple[int, float]] = deque()
        self._step = -1

    def reset(self, equity: float) -> None:
        self._values.clear()
        self._step = -1
        self.push(equity)

    def push(self, equity: float) -> None:
        self._step += 1
        values = self._values
        while values and values[-1][1] <= equity:
            values.pop()
        values.append((self._step, equity))
        if self.window is not None:
            oldest = self._step - self.window + 1
            while values[0][0] < oldest:
                values.popleft()

    @property
    def peak(self) -> float:
        return self._values[0][1]

    def drawdown(self, equity: float) -> float:
        """``1 - equity / peak`` clipped to [0, 1] (0 when the peak is not positive)."""
        peak = self._values[0][1]
        if peak <= 0.0:
            return 0.0
        # min(max(x, 0.0), 1.0) without the calls (same results, NaN included)
        x = 1.0 - equity / peak
        if 0.0 > x:
            x = 0.0
        return 1.0 if 1.0 < x else x


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
