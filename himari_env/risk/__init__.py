"""The RSS risk layer: eight sizing methods, their pure composition, calibration on train,
and the Sortino reward shaper.

One module per method: H1 :mod:`~himari_env.risk.evt` (EVT/GPD tail), H2
:mod:`~himari_env.risk.kelly` (Bayesian Kelly), H3 :mod:`~himari_env.risk.vol_target`,
H4 :mod:`~himari_env.risk.drawdown_brake`, H5 :mod:`~himari_env.risk.portfolio_var`,
H6 :mod:`~himari_env.risk.safe_margin`, H7 :mod:`~himari_env.risk.leverage`, H8
:mod:`~himari_env.risk.risk_budget`, plus :mod:`~himari_env.risk.regime_multipliers`.
:func:`~himari_env.risk.composer.compose_position` combines them (pure);
:class:`~himari_env.risk.engine.RiskEngine` holds the per-market causal arrays and the
per-episode state; :mod:`~himari_env.risk.calibration` fits them on train. The gym wrapper
is :class:`wrappers.risk_action.RSSRiskAction`.
"""

from __future__ import annotations

from himari_env.risk.backtest import BacktestResult, run_backtest
from himari_env.risk.calibration import BRAKE_CANDIDATES, calibrate_risk, select_drawdown_brake
from himari_env.risk.composer import (
    BINDING_HOLD,
    BINDING_NONE,
    METHOD_ORDER,
    RiskState,
    Sizing,
    binding_method,
    compose_position,
)
from himari_env.risk.config import RiskConfig, RiskConfigError
from himari_env.risk.drawdown_brake import DrawdownBrakeParams, drawdown_brake_factor
from himari_env.risk.engine import RiskEngine
from himari_env.risk.evt import (
    EVTFitError,
    EVTParams,
    EVTTailWarning,
    TailFit,
    empirical_es,
    evt_position_cap,
    finite_es_tail,
    fit_gpd,
    fit_tail,
    tail_es,
    tail_var,
)
from himari_env.risk.kelly import (
    KellyEstimate,
    KellyParams,
    estimate_kelly,
    kelly_cap_candidate,
    kelly_fraction,
    kelly_position_cap,
    outcome_totals,
)
from himari_env.risk.leverage import LeverageParams, leverage_limit
from himari_env.risk.portfolio_var import (
    PortfolioVaRParams,
    rolling_historical_var,
    var_position_cap,
)
from himari_env.risk.regime_multipliers import RegimeMultipliers, regime_multiplier
from himari_env.risk.risk_budget import RiskBudgetParams, update_risk_budget
from himari_env.risk.safe_margin import SafeMarginParams, required_margin, safe_margin_cap
from himari_env.risk.vol_target import (
    VolTargetParams,
    fit_vol_target,
    trailing_std,
    trailing_volatility,
    vol_target_scale,
)
from himari_env.rules import momentum_directions  # re-exported: the calibration's reference rule

__all__ = [
    "BINDING_HOLD",
    "BINDING_NONE",
    "BRAKE_CANDIDATES",
    "METHOD_ORDER",
    "BacktestResult",
    "DrawdownBrakeParams",
    "EVTFitError",
    "EVTParams",
    "EVTTailWarning",
    "KellyEstimate",
    "KellyParams",
    "LeverageParams",
    "PortfolioVaRParams",
    "RegimeMultipliers",
    "RiskBudgetParams",
    "RiskConfig",
    "RiskConfigError",
    "RiskEngine",
    "RiskState",
    "SafeMarginParams",
    "Sizing",
    "TailFit",
    "VolTargetParams",
    "binding_method",
    "calibrate_risk",
    "compose_position",
    "drawdown_brake_factor",
    "empirical_es",
    "estimate_kelly",
    "evt_position_cap",
    "finite_es_tail",
    "fit_gpd",
    "fit_tail",
    "fit_vol_target",
    "kelly_cap_candidate",
    "kelly_fraction",
    "kelly_position_cap",
    "leverage_limit",
    "momentum_directions",
    "outcome_totals",
    "regime_multiplier",
    "required_margin",
    "rolling_historical_var",
    "run_backtest",
    "safe_margin_cap",
    "select_drawdown_brake",
    "tail_es",
    "tail_var",
    "trailing_std",
    "trailing_volatility",
    "update_risk_budget",
    "var_position_cap",
    "vol_target_scale",
]
