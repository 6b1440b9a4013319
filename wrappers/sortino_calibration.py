"""Grid calibration of the Sortino shaper on train, reported on test.

What is searched and why (the design log gives the grid's winner, not its criterion):

* ``trade_cost`` and ``drawdown_weight`` change *which policies the reward prefers*. They are
  chosen to maximize the Spearman rank correlation, over a family of simple reference
  policies on train, between a policy's total shaped reward and its after-fee Sortino ratio:
  the reward should order policies as the target metric does. The family: momentum and
  contrarian rules at several lookbacks, always-long, always-short and flat, each traded with
  the env's accounting (unit positions, the env's fee). Ties (within 1e-12) go to the higher
  per-step correlation between reward and net return of the reference momentum rule, then to
  the smaller costs.
* ``reward_scale`` changes no ranking (every term is multiplied by it); it sets the reward's
  magnitude for PPO. The grid value whose per-step reward standard deviation of the reference
  rule on train is closest to 1 is chosen.

Everything is vectorized: per policy the pass's ``pnl``, ``turnover`` and drawdown increases
do not depend on the shaper, and the total reward is linear in ``trade_cost`` and
``drawdown_weight``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from himari_env.accounting import drawdown_path
from himari_env.metrics import max_drawdown, sortino_ratio, trade_count
from himari_env.risk.backtest import run_backtest
from himari_env.rules import momentum_directions
from wrappers.sortino import SortinoConfig, sortino_rewards

TRADE_COST_GRID = (0.0, 0.00025, 0.0005, 0.001, 0.002)
DRAWDOWN_WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0)
REWARD_SCALE_GRID = (50.0, 100.0, 200.0, 400.0)
FAMILY_LOOKBACKS = (1, 3, 6, 12, 24, 48, 96, 168)


@dataclass(frozen=True)
class PassArrays:
    """One policy's pass: per-step net return, turnover, drawdown increase, and its equity."""

    pnl: np.ndarray
    turnover: np.ndarray
    drawdown_increase: np.ndarray
    equity: np.ndarray
    positions: np.ndarray


def policy_family(close: ArrayLike, lookbacks: Sequence[int] = FAMILY_LOOKBACKS) -> dict[str, np.ndarray]:
    """Direction arrays (int8 (n,)) of the reference policies."""
    prices = np.asarray(close, dtype=np.float64)
    family: dict[str, np.ndarray] = {}
    for lookback in lookbacks:
        momentum = momentum_directions(prices, lookback)
        family[f"momentum_{lookback}"] = momentum
        family[f"contrarian_{lookback}"] = (-momentum).astype(np.int8)
    family["always_long"] = np.ones(prices.size, dtype=np.int8)
    family["always_short"] = -np.ones(prices.size, dtype=np.int8)
    family["flat"] = np.zeros(prices.size, dtype=np.int8)
    return family


def unit_pass(returns: ArrayLike, directions: ArrayLike, *, start: int, stop: int,
              fee_rate: float) -> PassArrays:
    """Unit-position pass (no risk layer) over decision bars ``start .. stop - 1``."""
    result = run_backtest(returns, directions, np.zeros(np.asarray(returns).size, dtype=np.int8),
                          start=start, stop=stop, config=None, fee_rate=fee_rate, max_leverage=1.0)
    equity = result.equity
    drawdown = drawdown_path(equity)
    return PassArrays(
        pnl=equity[1:] / equity[:-1] - 1.0,
        turnover=result.turnover,
        drawdown_increase=np.maximum(np.diff(drawdown), 0.0),
        equity=equity,
        positions=result.positions,
    )


def pass_report(arrays: PassArrays, config: SortinoConfig) -> dict[str, Any]:
    """Sortino, max drawdown, reward-return correlation, trade count and reward statistics."""
    rewards, _ = sortino_rewards(arrays.pnl, arrays.turnover, arrays.drawdown_increase, config)
    return {
        "sortino": sortino_ratio(arrays.equity),
        "max_drawdown": max_drawdown(arrays.equity),
        "reward_return_corr": _correlation(rewards, arrays.pnl),
        "trades": trade_count(arrays.positions),
        "total_return": float(arrays.equity[-1] - 1.0),
        "reward_mean": float(np.mean(rewards)) if rewards.size else 0.0,
        "reward_std": float(np.std(rewards)) if rewards.size else 0.0,
    }


def calibrate_sortino(
    returns: ArrayLike,
    close: ArrayLike,
    *,
    train: slice,
    test: slice,
    fee_rate: float,
    reference_lookback: int = 24,
    base: SortinoConfig | None = None,
    trade_costs: Sequence[float] = TRADE_COST_GRID,
    drawdown_weights: Sequence[float] = DRAWDOWN_WEIGHT_GRID,
    reward_scales: Sequence[float] = REWARD_SCALE_GRID,
) -> dict[str, Any]:
    """Run the grid (see the module docstring).

    Returns a JSON-ready dict: ``config`` (the chosen :class:`SortinoConfig` as a dict),
    ``grid`` (one row per (trade_cost, drawdown_weight) with its Spearman and correlation),
    ``scales`` (reward std per reward_scale), ``train`` and ``test`` reports of the reference
    momentum rule, and ``family`` (per-policy train Sortino).
    """
    base = base or SortinoConfig()
    values = np.asarray(returns, dtype=np.float64)
    family = policy_family(close)
    reference = f"momentum_{reference_lookback}"
    if reference not in family:
        family[reference] = momentum_directions(close, reference_lookback)
    train_start, train_stop, _ = train.indices(values.size)
    test_start, test_stop, _ = test.indices(values.size)
    passes = {name: unit_pass(values, dirs, start=train_start, stop=train_stop - 1, fee_rate=fee_rate)
              for name, dirs in family.items()}
    names = list(passes)
    sortinos = np.array([sortino_ratio(passes[name].equity) for name in names])
    unit = SortinoConfig(trade_cost=0.0, drawdown_weight=0.0, reward_scale=1.0,
                         downside_weight=base.downside_weight)
    base_totals = np.array([
        float(np.sum(sortino_rewards(p.pnl, p.turnover, p.drawdown_increase, unit)[0])) for p in passes.values()
    ])
    turnover_totals = np.array([float(np.sum(p.turnover)) for p in passes.values()])
    increase_totals = np.array([float(np.sum(p.drawdown_increase)) for p in passes.values()])

    rows = []
    for trade_cost, drawdown_weight in itertools.product(trade_costs, drawdown_weights):
        totals = base_totals - trade_cost * turnover_totals - drawdown_weight * increase_totals
        spearman = float(stats.spearmanr(totals, sortinos).statistic)
        config = SortinoConfig(trade_cost=trade_cost, drawdown_weight=drawdown_weight,
                               reward_scale=1.0, downside_weight=base.downside_weight)
        corr = pass_report(passes[reference], config)["reward_return_corr"]
        rows.append({"trade_cost": trade_cost, "drawdown_weight": drawdown_weight,
                     "spearman": spearman, "reward_return_corr": corr})
    best = max(rows, key=lambda row: (round(row["spearman"], 12), round(row["reward_return_corr"], 12),
                                      -row["trade_cost"], -row["drawdown_weight"]))

    scale_rows = []
    for scale in reward_scales:
        config = SortinoConfig(trade_cost=best["trade_cost"], drawdown_weight=best["drawdown_weight"],
                               reward_scale=scale, downside_weight=base.downside_weight)
        scale_rows.append({"reward_scale": scale, "reward_std": pass_report(passes[reference], config)["reward_std"]})
    chosen_scale = min(scale_rows, key=lambda row: abs(row["reward_std"] - 1.0))["reward_scale"]
    chosen = SortinoConfig(trade_cost=best["trade_cost"], drawdown_weight=best["drawdown_weight"],
                           reward_scale=chosen_scale, downside_weight=base.downside_weight)
    test_pass = unit_pass(values, family[reference], start=test_start, stop=test_stop - 1, fee_rate=fee_rate)
    design = SortinoConfig()  # the design log's calibrated values, for comparison
    design_totals = (base_totals - design.trade_cost * turnover_totals
                     - design.drawdown_weight * increase_totals)
    return {
        "config": chosen.to_dict(),
        "criterion": "max Spearman(total reward, Sortino) over the policy family on train; "
                     "reward_scale: per-step reward std of the reference rule closest to 1",
        "reference_policy": reference,
        "grid": rows,
        "scales": scale_rows,
        "train": pass_report(passes[reference], chosen),
        "test": pass_report(test_pass, chosen),
        "design_log": {
            "config": design.to_dict(),
            "spearman": float(stats.spearmanr(design_totals, sortinos).statistic),
            "train": pass_report(passes[reference], design),
            "test": pass_report(test_pass, design),
        },
        "family_train_sortino": dict(zip(names, sortinos.tolist(), strict=True)),
        "fee_rate": fee_rate,
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or float(np.std(a)) == 0.0 or float(np.std(b)) == 0.0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
