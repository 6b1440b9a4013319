"""Pure composition of the RSS methods: a direction and the causal state -> a sized position.

For ``direction`` in {-1, 0, +1} (SHORT, HOLD, LONG) the size starts at 1.0 (one unit of
equity) and passes through the methods in this order (factors first, then caps, then the
leverage controller):

====================  ===========================================================
``h3_vol_target``     ``size *= min(target_vol / vol_t, max_scale)``
``regime_multiplier`` ``size *= multiplier[regime]``
``h8_risk_budget``    ``size *= budget`` (episode state)
``h4_drawdown_brake`` ``size *= 1 - cut(drawdown)``
``h6_safe_margin``    ``size = min(size, buffer / (k sigma_bar sqrt(h) + cost))``
``h2_kelly``          ``size = min(size, fraction f* / mean_loss)`` when informative
``h1_evt``            ``size = min(size, es_budget / ES99 of the direction's tail)``
``h5_var``            ``size = min(size, var_budget / rolling VaR99 of the direction)``
``h7_leverage``       ``size = allowed(size)`` (decay above 10 %, never above min(3, L))
====================  ===========================================================

The position is ``direction * size``; HOLD gives exactly 0.0. The *binding* method is the one
that cut the size the most (smallest after/before ratio below 1); ``"none"`` when no method
reduced it, ``"hold"`` for HOLD. Every input is causal (known at the close of bar t); the
function has no state and no side effects.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import drawdown_brake_factor
from himari_env.risk.evt import evt_position_cap
from himari_env.risk.leverage import leverage_limit
from himari_env.risk.portfolio_var import var_position_cap
from himari_env.risk.regime_multipliers import regime_multiplier
from himari_env.risk.safe_margin import safe_margin_cap
from himari_env.risk.vol_target import vol_target_scale

METHOD_ORDER: tuple[str, ...] = (
    "h3_vol_target",
    "regime_multiplier",
    "h8_risk_budget",
    "h4_drawdown_brake",
    "h6_safe_margin",
    "h2_kelly",
    "h1_evt",
    "h5_var",
    "h7_leverage",
)
BINDING_NONE = "none"
BINDING_HOLD = "hold"


class RiskState(NamedTuple):
    """Causal inputs at decision bar t.

    Attributes
    ----------
    vol_annualized : float
        H3 trailing annualized volatility (NaN: not enough history).
    bar_volatility : float
        H6 trailing per-bar volatility (NaN: not enough history).
    var_long, var_short : float
        H5 rolling historical VaR of a unit long / short (loss fraction; NaN: not enough history).
    regime_id : int
        0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS.
    drawdown : float
        Episode drawdown in [0, 1].
    risk_budget : float
        H8 budget factor.
    kelly_cap : float
        H2 cap on |position| (``inf`` when Kelly is not informative).
    """

    vol_annualized: float
    bar_volatility: float
    var_long: float
    var_short: float
    regime_id: int
    drawdown: float
    risk_budget: float
    kelly_cap: float = math.inf


class Sizing(NamedTuple):
    """Result of :func:`compose_position`.

    ``sizes[0]`` is the unit size before the first method and ``sizes[i + 1]`` the size after
    ``METHOD_ORDER[i]`` (all >= 0, multiples of equity).
    """

    position: float
    sizes: tuple[float, ...]
    binding: str

    def trace(self) -> dict[str, tuple[float, float]]:
        """``{method: (size before, size after)}`` in pipeline order."""
        sizes = self.sizes
        return dict(zip(METHOD_ORDER, itertools.pairwise(sizes), strict=True))


_HOLD_SIZES = (0.0,) * (len(METHOD_ORDER) + 1)
HOLD_SIZING = Sizing(0.0, _HOLD_SIZES, BINDING_HOLD)


def compose_position(
    direction: int, state: RiskState, config: RiskConfig, max_leverage: float = math.inf
) -> Sizing:
    """Sized target position for ``direction`` (see the module docstring).

    Parameters
    ----------
    direction : -1, 0 or 1
    state : RiskState at the decision bar.
    config : a calibrated RiskConfig (EVT tails and volatility target fitted).
    max_leverage : the env's bound on |position|; the result never exceeds
        ``min(config.leverage.max_leverage, max_leverage)``.
    """
    if direction == 0:
        return HOLD_SIZING
    if direction not in (1, -1):
        raise ValueError(f"direction must be -1, 0 or 1, got {direction!r}")
    vol_cfg = config.vol_target
    if vol_cfg.target_vol is None:
        raise ValueError("RiskConfig is not calibrated (vol_target.target_vol is None); run calibrate_risk")
    risk_budget = state.risk_budget
    if not (math.isfinite(risk_budget) and risk_budget >= 0.0):
        raise ValueError(f"risk_budget must be finite and >= 0, got {risk_budget!r}")
    kelly_cap = state.kelly_cap
    if not kelly_cap >= 0.0:
        raise ValueError(f"kelly_cap must be >= 0 (inf when not informative), got {kelly_cap!r}")

    s0 = 1.0
    s1 = s0 * vol_target_scale(state.vol_annualized, vol_cfg.target_vol, vol_cfg.max_scale)
    s2 = s1 * regime_multiplier(state.regime_id, config.regime_multipliers)
    s3 = s2 * risk_budget
    s4 = s3 * drawdown_brake_factor(state.drawdown, config.drawdown_brake)
    s5 = min(s4, safe_margin_cap(state.bar_volatility, config.safe_margin))
    s6 = min(s5, kelly_cap)
    s7 = min(s6, evt_position_cap(config.evt.unit_es(direction), config.evt.es_budget))
    unit_var = state.var_long if direction > 0 else state.var_short
    s8 = min(s7, var_position_cap(unit_var, config.portfolio_var.var_budget))
    s9 = leverage_limit(s8, config.leverage, max_leverage)
    sizes = (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9)
    return Sizing(direction * s9, sizes, binding_method(sizes))


def binding_method(sizes: tuple[float, ...]) -> str:
    """Name of the method with the smallest after/before ratio below 1 (first on ties)."""
    if len(sizes) != len(METHOD_ORDER) + 1:
        raise ValueError(f"sizes must hold {len(METHOD_ORDER) + 1} values, got {len(sizes)}")
    best_ratio = 1.0
    best = BINDING_NONE
    before = sizes[0]
    for name, after in zip(METHOD_ORDER, sizes[1:]):
        # after >= before gives a ratio >= 1 (division is monotone), which never binds: skip it
        if after < before and before > 0.0:
            ratio = after / before
            if ratio < best_ratio:
                best_ratio = ratio
                best = name
        before = after
    return best


def apply_rebalance_band(size: float, held: float, band: float) -> tuple[float, bool]:
    """The position to send given the newly computed ``size`` and the ``held`` position.

    Keeps ``held`` (returns ``(held, False)``) while the direction is unchanged and
    ``|size - held| <= band * |held|``: re-sizing by a few percent every bar as the trailing
    volatility drifts would pay a fee on each change. Otherwise ``(size, True)``. HOLD
    (``size == 0``) and direction changes always go through.
    """
    if size != 0.0 and held != 0.0 and (size > 0.0) == (held > 0.0) and abs(size - held) <= band * abs(held):
        return held, False
    return size, True
