"""RiskEngine: the RSS layer's per-market arrays and per-episode state.

Built once per market (one return series). Construction precomputes, over the whole series,
the causal arrays the composer reads (value at bar t from returns of bars <= t only):
the H3 trailing annualized volatility, the H6 trailing per-bar volatility and the H5 rolling
VaR of a unit long and short. Each step is then O(1): a few list reads, the composer's scalar
arithmetic, and (after each step) an O(1) update of the episode state:

* Kelly outcome totals (H2): the unit-position outcome ``sign(p_t) * r[t+1]`` of every step
  held in the market; the position cap is refreshed after each such step
  (:func:`~himari_env.risk.kelly.kelly_position_cap`: ``betainc`` only where the cap depends
  on the edge probability) and the full :class:`~himari_env.risk.kelly.KellyEstimate`
  (:attr:`RiskEngine.kelly`) is computed when read, once per change of the totals.
* Risk budget (H8): every ``period_bars`` steps, the sign of ``ln(equity / equity at the
  period start)``.
* Drawdown brake (H4): the rolling peak of the episode's equity over the brake's
  ``peak_window_bars`` (:meth:`brake_drawdown`).

Used identically by :class:`wrappers.risk_action.RSSRiskAction` (the gym wrapper) and by
:func:`himari_env.risk.backtest.run_backtest` (the calibration simulator), so both size
positions the same way.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from himari_env.constants import BARS_PER_YEAR
from himari_env.risk.composer import RiskState, Sizing, compose_position
from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import RollingPeak
from himari_env.risk.kelly import (
    KellyEstimate,
    estimate_kelly,
    kelly_cap_candidate,
    regularized_beta,
)
from himari_env.risk.portfolio_var import rolling_historical_var
from himari_env.risk.risk_budget import update_risk_budget
from himari_env.risk.vol_target import trailing_std

_ANNUALIZE = math.sqrt(BARS_PER_YEAR)


class RiskEngine:
    """Precomputed causal risk arrays for one market plus one episode's risk state.

    Parameters
    ----------
    config : RiskConfig
        Calibrated configuration.
    returns : float (n,)
        ``MarketData.returns`` (``returns[0]`` is the placeholder 0).
    max_leverage : float
        The env's bound on |position|.
    """

    def __init__(self, config: RiskConfig, returns: ArrayLike, *, max_leverage: float) -> None:
        if not config.is_calibrated:
            raise ValueError("RiskEngine needs a calibrated RiskConfig (run calibrate_risk on train returns)")
        if not (math.isfinite(max_leverage) and max_leverage > 0):
            raise ValueError(f"max_leverage must be a positive number, got {max_leverage!r}")
        values = np.asarray(returns, dtype=np.float64)
        self.config = config
        self.max_leverage = float(max_leverage)
        #: Compute the full Kelly estimate at each change of the outcome totals (set when every
        #: step reads it, as the full-info wrapper does); otherwise only the cap, and the
        #: estimate when :attr:`kelly` is read. Same values either way.
        self.eager_kelly = False
        vol_cfg, var_cfg, margin_cfg = config.vol_target, config.portfolio_var, config.safe_margin
        self.vol_annualized = trailing_std(values, vol_cfg.window) * _ANNUALIZE
        self.bar_volatility = trailing_std(values, margin_cfg.window)
        self.var_long = rolling_historical_var(
            values, window=var_cfg.window, level=var_cfg.level, side="long", min_periods=var_cfg.min_periods
        )
        self.var_short = rolling_historical_var(
            values, window=var_cfg.window, level=var_cfg.level, side="short", min_periods=var_cfg.min_periods
        )
        # Python lists: scalar reads are several times cheaper than numpy scalar indexing.
        self._returns = values.tolist()
        self._vol = self.vol_annualized.tolist()
        self._sigma = self.bar_volatility.tolist()
        self._var_long = self.var_long.tolist()
        self._var_short = self.var_short.tolist()
        self.reset()

    def reconfigured(self, config: RiskConfig) -> RiskEngine:
        """An engine on the same returns with ``config``, reusing the precomputed arrays when
        their windows and levels are unchanged (e.g. when only the drawdown brake differs)."""
        same_arrays = (
            config.vol_target.window == self.config.vol_target.window
            and config.safe_margin.window == self.config.safe_margin.window
            and config.portfolio_var == self.config.portfolio_var
        )
        if not same_arrays:
            return RiskEngine(config, np.asarray(self._returns), max_leverage=self.max_leverage)
        if not config.is_calibrated:
            raise ValueError("RiskEngine needs a calibrated RiskConfig (run calibrate_risk on train returns)")
        clone = object.__new__(RiskEngine)
        clone.__dict__.update(self.__dict__)
        clone.config = config
        clone.reset()
        return clone

    # ------------------------------------------------------------------ episode state
    def reset(self, equity: float = 1.0) -> None:
        """Start an episode: budget back to its initial value, no Kelly outcomes."""
        self.risk_budget = self.config.risk_budget.initial
        self._n_wins = 0
        self._n_losses = 0
        self._total_win = 0.0
        self._total_loss = 0.0
        self._steps = 0
        self._period_start_equity = float(equity)
        self._equity = float(equity)
        self._peak = RollingPeak(self.config.drawdown_brake.peak_window_bars)
        self._peak.reset(float(equity))
        self._kelly_cap = math.inf  # estimate_kelly(0, 0, 0.0, 0.0, ...).position_cap in every mode
        # (alpha, beta, x) while the cap's credibility is undecided (_kelly_cap: the credible cap)
        self._kelly_pending: tuple[float, float, float] | None = None
        self._kelly_estimate: KellyEstimate | None = None
        self._kelly_params = self.config.kelly
        self._period_bars = self.config.risk_budget.period_bars

    @property
    def kelly(self) -> KellyEstimate:
        """The Kelly estimate of the outcomes recorded so far (computed on first read after a
        change of the totals; its ``position_cap`` is the cap :meth:`state` uses)."""
        estimate = self._kelly_estimate
        if estimate is None:
            estimate = self._kelly_estimate = estimate_kelly(
                self._n_wins, self._n_losses, self._total_win, self._total_loss, self.config.kelly
            )
        return estimate

    @property
    def kelly_cap(self) -> float:
        """H2's cap on |position| for the outcomes recorded so far (``inf``: not informative);
        equal to ``self.kelly.position_cap`` without computing the full estimate."""
        if self._kelly_pending is not None:
            return self.resolve_kelly_cap()
        return self._kelly_cap

    def resolve_kelly_cap(self) -> float:
        """Decide whether the edge is credible (one ``betainc``) and return :attr:`kelly_cap`.
        Until then ``_kelly_cap`` holds the cap the edge would give if credible: a caller that
        only needs ``min(size, cap)`` may skip the decision when that value is ``>= size``
        (``min`` is ``size`` either way), as :class:`~himari_env.risk.bar_composer.BarComposer`
        does."""
        pending = self._kelly_pending
        if pending is not None:
            if 1.0 - regularized_beta(*pending) < self._kelly_params.min_edge_probability:
                self._kelly_cap = math.inf
            self._kelly_pending = None
        return self._kelly_cap

    def brake_drawdown(self) -> float:
        """Drawdown of the latest recorded equity from the rolling peak (H4's input)."""
        return self._peak.drawdown(self._equity)

    def state(self, bar_index: int, regime_id: int, drawdown: float) -> RiskState:
        """The causal :class:`RiskState` at decision bar ``bar_index``."""
        return RiskState(
            self._vol[bar_index],
            self._sigma[bar_index],
            self._var_long[bar_index],
            self._var_short[bar_index],
            regime_id,
            drawdown,
            self.risk_budget,
            self.kelly_cap,
        )

    def size(self, direction: int, bar_index: int, regime_id: int, drawdown: float) -> Sizing:
        """Sized position for ``direction`` at decision bar ``bar_index`` (see composer)."""
        return compose_position(
            direction, self.state(bar_index, regime_id, drawdown), self.config, self.max_leverage
        )

    def record_step(self, new_bar_index: int, position_held: float, equity: float) -> None:
        """Update the episode state after a step that held ``position_held`` over bar
        ``new_bar_index`` and ended with ``equity``."""
        if position_held != 0.0:
            outcome = self._returns[new_bar_index] if position_held > 0 else -self._returns[new_bar_index]
            if outcome > 0.0:
                self._n_wins += 1
                self._total_win += outcome
            elif outcome < 0.0:
                self._n_losses += 1
                self._total_loss -= outcome
            if self.eager_kelly:
                estimate = self._kelly_estimate = estimate_kelly(
                    self._n_wins, self._n_losses, self._total_win, self._total_loss, self._kelly_params
                )
                self._kelly_cap = estimate.position_cap
                self._kelly_pending = None
            else:
                self._kelly_cap, self._kelly_pending = kelly_cap_candidate(
                    self._n_wins, self._n_losses, self._total_win, self._total_loss, self._kelly_params
                )
                self._kelly_estimate = None
        self._steps += 1
        self._equity = equity = float(equity)
        self._peak.push(equity)
        if self._steps % self._period_bars == 0:
            budget_cfg = self.config.risk_budget
            start = self._period_start_equity
            # Only the sign matters; a wiped-out account (equity <= 0) is a loss.
            period_pnl = math.log(equity / start) if equity > 0.0 and start > 0.0 else -1.0
            self.risk_budget = update_risk_budget(self.risk_budget, period_pnl, budget_cfg)
            self._period_start_equity = equity
