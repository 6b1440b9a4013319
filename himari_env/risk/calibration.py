"""Fit the RSS layer on train: EVT tails (H1), volatility target (H3), drawdown brake (H4).

Only train data enters a fit (project rule 2). Returns that span a data gap are multi-hour
moves, not one-bar samples: :func:`calibrate_risk` leaves them out of the fits and counts
them in ``RiskConfig.fitted_on["n_gap_returns_excluded"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from himari_env.metrics import calmar_ratio
from himari_env.risk.backtest import run_backtest
from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.engine import RiskEngine
from himari_env.risk.evt import finite_es_tail, fit_tail, tail_es
from himari_env.risk.vol_target import _checked_returns, fit_vol_target

#: The drawdown-brake grid searched on train: the design log's setting first (kept on ties),
#: then earlier/later thresholds and softer/harder cuts.
BRAKE_CANDIDATES: tuple[DrawdownBrakeParams, ...] = (
    DrawdownBrakeParams((0.03, 0.06, 0.10), (0.30, 0.60, 0.95)),
    DrawdownBrakeParams((0.02, 0.04, 0.08), (0.30, 0.60, 0.95)),
    DrawdownBrakeParams((0.04, 0.08, 0.12), (0.30, 0.60, 0.95)),
    DrawdownBrakeParams((0.05, 0.10, 0.15), (0.30, 0.60, 0.95)),
    DrawdownBrakeParams((0.03, 0.06, 0.10), (0.20, 0.50, 0.90)),
    DrawdownBrakeParams((0.03, 0.06, 0.10), (0.40, 0.75, 0.95)),
)


def calibrate_risk(
    train_returns: ArrayLike,
    *,
    config: RiskConfig | None = None,
    gap_before: ArrayLike | None = None,
) -> RiskConfig:
    """Fit the EVT tails (long and short) and the volatility target on train returns.

    Parameters
    ----------
    train_returns : float (n,)
        Simple one-bar returns of the train bars (every entry a real return).
    config : RiskConfig, optional
        Settings to keep (defaults: the design log's).
    gap_before : bool (n,), optional
        True where a return spans missing hours; those are excluded from the fits.

    Returns
    -------
    RiskConfig with ``evt.long_tail``, ``evt.short_tail``, ``vol_target.target_vol`` (and its
    report fields) and ``fitted_on`` filled.
    """
    config = config or RiskConfig()
    values = _checked_returns(train_returns)
    n_gaps = 0
    if gap_before is not None:
        gaps = np.asarray(gap_before, dtype=bool)
        if gaps.shape != values.shape:
            raise ValueError(f"gap_before has shape {gaps.shape}, train_returns has {values.shape}")
        n_gaps = int(gaps.sum())
        values = values[~gaps]
    evt = config.evt
    # A tail too heavy for a finite GPD expected shortfall (xi >= 1) falls back to the
    # empirical ES at the budget's level, with a warning (finite_es_tail).
    long_tail = finite_es_tail(
        fit_tail(values, side="long", threshold_quantile=evt.threshold_quantile,
                 min_exceedances=evt.min_exceedances),
        values, side="long", level=evt.level)
    short_tail = finite_es_tail(
        fit_tail(values, side="short", threshold_quantile=evt.threshold_quantile,
                 min_exceedances=evt.min_exceedances),
        values, side="short", level=evt.level)
    # Fail here, not at the first step, if a tail has no finite expected shortfall.
    tail_es(long_tail, evt.level)
    tail_es(short_tail, evt.level)
    vol_target = fit_vol_target(values, config.vol_target)
    return config.replace(
        evt=dataclasses.replace(evt, long_tail=long_tail, short_tail=short_tail),
        vol_target=vol_target,
        fitted_on={"n_returns": int(values.size), "n_gap_returns_excluded": n_gaps},
    )


def select_drawdown_brake(
    returns: ArrayLike,
    directions: ArrayLike,
    regime_ids: ArrayLike,
    *,
    train: slice,
    config: RiskConfig,
    fee_rate: float,
    max_leverage: float,
    candidates: Sequence[DrawdownBrakeParams] = BRAKE_CANDIDATES,
) -> tuple[RiskConfig, list[dict[str, Any]]]:
    """Pick the drawdown brake that maximizes the Calmar ratio (annualized return / max
    drawdown) of the reference policy ``directions`` over the train decision bars.

    Ties keep the earlier candidate (the design log's setting comes first). Returns the config
    with the chosen brake and one row per candidate (thresholds, reductions, calmar,
    max_drawdown, total_return).
    """
    values = np.asarray(returns, dtype=np.float64)
    start, stop, _ = train.indices(values.size)
    engine = RiskEngine(config, values, max_leverage=max_leverage)
    rows: list[dict[str, Any]] = []
    best_index = 0
    best_score = -np.inf
    for index, brake in enumerate(candidates):
        candidate_engine = engine.reconfigured(config.replace(drawdown_brake=brake))
        result = run_backtest(values, directions, regime_ids, start=start, stop=stop - 1,
                              config=None, fee_rate=fee_rate, max_leverage=max_leverage,
                              engine=candidate_engine)
        score = calmar_ratio(result.equity)
        rows.append({
            "thresholds": list(brake.thresholds),
            "reductions": list(brake.reductions),
            "calmar": score,
            "max_drawdown": float(np.max(1.0 - result.equity / np.maximum.accumulate(result.equity))),
            "total_return": float(result.equity[-1] - 1.0),
        })
        if score > best_score:
            best_index, best_score = index, score
    return config.replace(drawdown_brake=candidates[best_index]), rows
