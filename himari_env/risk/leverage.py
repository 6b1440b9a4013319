"""H7: leverage controller (max 3x, decay from a 10 % position).

The controller maps a requested size ``x >= 0`` (multiples of equity) to an allowed size with
``L = min(max_leverage, env max_leverage)`` and ``x0 = min(decay_start, L)``:

    allowed(x) = x                                              for x <= x0
    allowed(x) = x0 + (L - x0) * (1 - exp(-(x - x0) / (L - x0)))   for x > x0

Up to a 10 % position nothing changes; above it each extra unit of requested leverage buys
less (the slope decays as ``exp(-(x - x0) / (L - x0))``, 1 at ``x0``), so the allowed size is
continuous, increasing, and never above ``L``: the design's "position-dependent leverage
decay", for one instrument. Examples with L = 3: 0.5 -> 0.474, 1.0 -> 0.874, 2.0 -> 1.494.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LeverageParams:
    """H7 settings: absolute cap and where the decay starts (both multiples of equity)."""

    max_leverage: float = 3.0
    decay_start: float = 0.10

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_leverage) and self.max_leverage > 0):
            raise ValueError(f"leverage.max_leverage must be > 0, got {self.max_leverage!r}")
        if not (math.isfinite(self.decay_start) and self.decay_start >= 0):
            raise ValueError(f"leverage.decay_start must be >= 0, got {self.decay_start!r}")


def leverage_limit(size: float, params: LeverageParams, env_max_leverage: float = math.inf) -> float:
    """Allowed size for a requested ``size >= 0`` (see the module docstring)."""
    if not size >= 0.0:
        raise ValueError(f"size must be >= 0, got {size!r}")
    cap = min(params.max_leverage, env_max_leverage)
    knee = min(params.decay_start, cap)
    if size <= knee:
        return size
    span = cap - knee
    if span <= 0.0:
        return cap
    return min(cap, knee + span * -math.expm1(-(size - knee) / span))
