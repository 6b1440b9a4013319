"""BarComposer: :func:`~himari_env.risk.composer.compose_position` for one market, with every
quantity that depends only on the decision bar and the config computed once.

Per bar: the H3 vol-target factor, the H6 safe-margin cap and the H5 VaR caps of a long and a
short (vectorized over the market at construction, with the same IEEE operations as the scalar
functions, so every value is bit-identical to theirs; tested). Per config: the regime
multipliers, the brake's levels, the EVT caps of a long and a short and the leverage
controller's cap and knee. A step is then a few multiplications, ``min``\\ s and one ``expm1``:
the single-env :class:`~wrappers.risk_action.RSSRiskAction` uses it in place of
``compose_position`` (same sizes, same position).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from himari_env.constants import N_REGIMES, REGIME_NAMES
from himari_env.risk.engine import RiskEngine
from himari_env.risk.evt import evt_position_cap


class BarComposer:
    """The composer's nine sizes at a decision bar of ``engine``'s market (see the module docstring).

    Parameters
    ----------
    engine : the RiskEngine whose per-bar arrays, config and ``max_leverage`` are used.
    """

    def __init__(self, engine: RiskEngine) -> None:
        config = engine.config
        vol_cfg = config.vol_target
        if vol_cfg.target_vol is None:
            raise ValueError("RiskConfig is not calibrated (vol_target.target_vol is None); run calibrate_risk")
        with np.errstate(divide="ignore", invalid="ignore"):
            vol = engine.vol_annualized
            scale = np.where(np.isnan(vol), 1.0,
                             np.where(vol <= 0.0, vol_cfg.max_scale, np.minimum(vol_cfg.target_vol / vol,
                                                                                 vol_cfg.max_scale)))
            margin = config.safe_margin
            sigma = np.where(np.isnan(engine.bar_volatility), 0.0, engine.bar_volatility)
            margin_cap = margin.margin_buffer / (1.0 * (margin.k_sigma * sigma * math.sqrt(margin.horizon_bars)
                                                        + margin.execution_cost))
            budget = config.portfolio_var.var_budget
            var_long = np.where(engine.var_long > 0.0, budget / engine.var_long, math.inf)
            var_short = np.where(engine.var_short > 0.0, budget / engine.var_short, math.inf)
        self.scale: list[float] = scale.tolist()
        self.margin_cap: list[float] = margin_cap.tolist()
        self.var_cap_long: list[float] = var_long.tolist()
        self.var_cap_short: list[float] = var_short.tolist()
        self.multipliers = config.regime_multipliers.as_tuple()
        self.brake = tuple(zip(config.drawdown_brake.thresholds, config.drawdown_brake.reductions, strict=True))
        self.evt_cap_long = evt_position_cap(config.evt.unit_es(1), config.evt.es_budget)
        self.evt_cap_short = evt_position_cap(config.evt.unit_es(-1), config.evt.es_budget)
        cap = min(config.leverage.max_leverage, engine.max_leverage)
        self.leverage_cap = cap
        self.leverage_knee = min(config.leverage.decay_start, cap)

    def sizes(self, direction: int, bar: int, regime_id: int, drawdown: float, risk_budget: float,
              kelly_cap: float, resolve_kelly: Callable[[], float] | None = None) -> tuple[float, ...]:
        """``compose_position(direction, state, config, max_leverage).sizes`` for ``direction``
        in {-1, 1} at decision bar ``bar`` (the state's other inputs given).

        ``resolve_kelly``: when given, ``kelly_cap`` is the cap Kelly's edge gives *if* it is
        credible, undecided; ``resolve_kelly()`` returns the decided cap and is called only
        when that value is below the size reaching the Kelly stage (otherwise the minimum is
        that size whichever way it is decided).
        """
        if not 0 <= regime_id < N_REGIMES:
            raise ValueError(f"regime id {regime_id!r} is not one of 0..{N_REGIMES - 1} {REGIME_NAMES}")
        s1 = 1.0 * self.scale[bar]
        s2 = s1 * self.multipliers[regime_id]
        s3 = s2 * risk_budget
        cut = 0.0
        for threshold, reduction in self.brake:
            if drawdown >= threshold:
                cut = reduction
            else:
                break
        s4 = s3 * (1.0 - cut)
        s5 = min(s4, self.margin_cap[bar])
        if resolve_kelly is not None and kelly_cap < s5:
            kelly_cap = resolve_kelly()
        s6 = min(s5, kelly_cap)
        if direction > 0:
            s7 = min(s6, self.evt_cap_long)
            s8 = min(s7, self.var_cap_long[bar])
        else:
            s7 = min(s6, self.evt_cap_short)
            s8 = min(s7, self.var_cap_short[bar])
        knee = self.leverage_knee
        if s8 <= knee:
            s9 = s8
        else:
            cap = self.leverage_cap
            span = cap - knee
            s9 = cap if span <= 0.0 else min(cap, knee + span * -math.expm1(-(s8 - knee) / span))
        return (1.0, s1, s2, s3, s4, s5, s6, s7, s8, s9)
