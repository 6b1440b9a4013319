"""Simulate a direction policy with and without the RSS layer, with the env's exact accounting.

Used by the calibration commands and the tests; a test checks it step by step against
:class:`~himari_env.env.HimariBTCEnv` wrapped in :class:`~wrappers.risk_action.RSSRiskAction`.

Accounting: the env's own rule, :mod:`himari_env.accounting` (a decision at bar t sets the
target position ``p_t``, ``turnover_t = |p_t - p_{t-1}|``, ``fee_t = fee_rate * turnover_t *
equity_t`` at ``close[t]``, ``equity_{t+1} = (equity_t - fee_t) * (1 + p_t * r[t+1])``). Positions go through float32 (and the
env's clamp to [-max_leverage, max_leverage]) as they do through the env's Box action space. Equity at or below 1e-12 is a bankruptcy: the
pass stops there with equity 0.

Without the risk layer (``config=None``) the position is ``direction * min(1, max_leverage)``
and the pass is vectorized (a cumulative product). With it, the pass is a Python loop over
decision bars: the drawdown brake and the risk budget depend on the equity path, so each
step needs the previous one (about 15 us a step).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from himari_env.accounting import accounting_path, accounting_step
from himari_env.metrics import performance_summary
from himari_env.risk.composer import BINDING_HOLD, METHOD_ORDER, apply_rebalance_band
from himari_env.risk.config import RiskConfig
from himari_env.risk.engine import RiskEngine


@dataclass(frozen=True)
class BacktestResult:
    """One pass over decision bars ``start .. stop - 1``.

    Attributes
    ----------
    equity : float64 (steps + 1,)
        Equity after each step, starting at 1.0.
    positions : float64 (steps,)
        Target position held over each step.
    fees, turnover : float64 (steps,)
    bindings : tuple of str (steps,)
        Binding method per step (empty without the risk layer).
    bankrupt : bool
    """

    equity: np.ndarray
    positions: np.ndarray
    fees: np.ndarray
    turnover: np.ndarray
    bindings: tuple[str, ...] = field(default_factory=tuple)
    bankrupt: bool = False

    @property
    def step_returns(self) -> np.ndarray:
        """Per-step simple strategy returns after fees, float64 (steps,)."""
        return self.equity[1:] / self.equity[:-1] - 1.0

    def var99(self) -> float:
        """Historical 99 % VaR of the per-step strategy returns (loss fraction, >= 0)."""
        if self.step_returns.size == 0:
            return 0.0
        return max(0.0, -float(np.quantile(self.step_returns, 0.01)))

    def binding_shares(self) -> dict[str, float]:
        """Share of in-market decisions on which each method (or ``none``) bound the size."""
        counts = Counter(b for b in self.bindings if b != BINDING_HOLD)
        total = sum(counts.values())
        names = (*METHOD_ORDER, "none")
        return {name: (counts.get(name, 0) / total if total else 0.0) for name in names}

    def summary(self) -> dict[str, Any]:
        """:func:`himari_env.metrics.performance_summary` plus ``var99`` and ``bankrupt``."""
        summary = performance_summary(self.equity, self.positions)
        summary["var99"] = self.var99()
        summary["bankrupt"] = self.bankrupt
        return summary


def run_backtest(
    returns: ArrayLike,
    directions: ArrayLike,
    regime_ids: ArrayLike,
    *,
    start: int,
    stop: int,
    config: RiskConfig | None,
    fee_rate: float,
    max_leverage: float,
    engine: RiskEngine | None = None,
) -> BacktestResult:
    """Trade ``directions[t]`` (-1/0/1) at decision bars ``start <= t < stop``.

    Parameters
    ----------
    returns : float (n,)
        ``MarketData.returns`` convention (``returns[t] = close[t]/close[t-1] - 1``).
    directions : int (n,)
        Direction decided at the close of each bar.
    regime_ids : int (n,)
        Regime at each bar (read at decision bars only, with the risk layer).
    start, stop : int
        Decision bars; ``stop <= n - 1`` (each decision needs the next bar's return).
    config : RiskConfig or None
        Calibrated config (risk layer on) or None (unit positions).
    fee_rate : float
        Fee per unit of traded notional.
    max_leverage : float
        The env's bound on |position|.
    engine : RiskEngine, optional
        A prebuilt engine for these returns (saves the precomputation); its config is used.
    """
    r = np.asarray(returns, dtype=np.float64)
    dirs = np.asarray(directions)
    n = r.size
    if dirs.shape != (n,):
        raise ValueError(f"directions has shape {dirs.shape}, returns has ({n},)")
    if not 0 <= start < stop <= n - 1:
        raise ValueError(f"need 0 <= start ({start}) < stop ({stop}) <= n - 1 ({n - 1})")
    if not set(np.unique(dirs[start:stop]).tolist()) <= {-1, 0, 1}:
        raise ValueError("directions must be -1, 0 or 1 at every decision bar")
    if config is None and engine is None:
        return _unit_backtest(r, dirs, start, stop, fee_rate, max_leverage)
    if engine is None:
        assert config is not None
        engine = RiskEngine(config, r, max_leverage=max_leverage)
    regimes = np.asarray(regime_ids)
    if regimes.shape != (n,):
        raise ValueError(f"regime_ids has shape {regimes.shape}, returns has ({n},)")
    return _risk_backtest(engine, r.tolist(), dirs.tolist(), regimes.tolist(), start, stop, fee_rate)


def _unit_backtest(r: np.ndarray, dirs: np.ndarray, start: int, stop: int, fee_rate: float,
                   max_leverage: float) -> BacktestResult:
    size = float(np.float32(min(1.0, max_leverage)))
    positions = dirs[start:stop].astype(np.float64) * size
    equity, turnover, fees, bankrupt = accounting_path(positions, r[start + 1 : stop + 1], fee_rate)
    return BacktestResult(equity, positions[: turnover.size], fees, turnover, (), bankrupt)


def _risk_backtest(engine: RiskEngine, r: list[float], dirs: list[int], regimes: list[int],
                   start: int, stop: int, fee_rate: float) -> BacktestResult:
    steps = stop - start
    equity_path = np.empty(steps + 1)
    positions = np.empty(steps)
    fees = np.empty(steps)
    turnovers = np.empty(steps)
    bindings: list[str] = []
    to_float32 = np.float32
    bound = engine.max_leverage
    engine.reset(1.0)
    equity = 1.0
    previous = 0.0
    equity_path[0] = 1.0
    bankrupt = False
    k = 0
    for k, t in enumerate(range(start, stop)):
        sizing = engine.size(dirs[t], t, regimes[t], engine.brake_drawdown())
        # As through the env: float32 action, then the env's clamp to [-L, L].
        size, _ = apply_rebalance_band(sizing.position, previous, engine.config.rebalance_band)
        position = max(-bound, min(bound, float(to_float32(size))))
        turnover, fee, new_equity, bankrupt = accounting_step(equity, previous, position, r[t + 1], fee_rate)
        positions[k], fees[k], turnovers[k] = position, fee, turnover
        bindings.append(sizing.binding)
        if bankrupt:
            equity_path[k + 1] = 0.0
            break
        engine.record_step(t + 1, position, new_equity)
        equity = new_equity
        previous = position
        equity_path[k + 1] = equity
    used = k + 1 if steps else 0
    return BacktestResult(
        equity_path[: used + 1].copy(), positions[:used].copy(), fees[:used].copy(),
        turnovers[:used].copy(), tuple(bindings), bankrupt,
    )
