"""Regime multipliers of the position size (design log, "Implication for Layer 2"):
LOW_VOL 1.0, TRENDING 1.2, HIGH_VOL 0.6, CRISIS 0.2, indexed by the fixed regime ids."""

from __future__ import annotations

import math
from dataclasses import dataclass

from himari_env.constants import N_REGIMES, REGIME_NAMES


@dataclass(frozen=True)
class RegimeMultipliers:
    """Size factor per regime (dimensionless, >= 0)."""

    low_vol: float = 1.0
    trending: float = 1.2
    high_vol: float = 0.6
    crisis: float = 0.2

    def __post_init__(self) -> None:
        for name, value in zip(REGIME_NAMES, self.as_tuple(), strict=True):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"regime_multipliers.{name.lower()} must be >= 0, got {value!r}")

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Multipliers ordered by regime id (0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS)."""
        return (self.low_vol, self.trending, self.high_vol, self.crisis)


def regime_multiplier(regime_id: int, multipliers: RegimeMultipliers) -> float:
    """The multiplier of ``regime_id``; a ValueError names an id outside 0..3."""
    if not 0 <= regime_id < N_REGIMES:
        raise ValueError(f"regime id {regime_id!r} is not one of 0..{N_REGIMES - 1} {REGIME_NAMES}")
    return multipliers.as_tuple()[regime_id]
