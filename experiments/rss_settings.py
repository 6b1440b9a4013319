"""Choose the RSS layer's preset settings on walk-forward windows, with rule baselines only.

The RSS layer's non-fitted settings (the H4 drawdown brake, the regime multipliers and the
rebalance band; a preset's ``risk`` section, :class:`agents.config.RiskSettings`) decide how
much of a direction policy's edge survives the sizing. They are chosen here without any
agent, so the choice cannot be fitted to one agent's luck, and without the final test year:

* the folds are :func:`experiments.walkforward.walkforward_folds` over the bars before
  ``end`` (2024-01-01 by default); each fold prepares its own market on the bars up to its
  test end and calibrates the RSS layer (EVT tails, volatility target) on its own train split,
  exactly as a walk-forward training run does;
* every candidate sizes the same reference rules (buy-and-hold and the long/flat momentum
  rules at 720 and 168 bars, :func:`himari_env.rules.momentum_directions`), after fees, over
  every distinct validation and test window of the folds (fold k's test window is fold k+1's
  validation window and is counted once, as fold k's test);
* the score of a candidate is the mean over the rules of the median Sharpe over the windows;
  the highest score wins, ties keep the earlier candidate (the design log's settings first).

:func:`score_rss_settings` returns one row per candidate (each window's Sharpe and maximum
drawdown per rule, the raw rules beside them); ``himari calibrate rss-settings`` prints them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agents.config import RiskSettings
from himari_env.config_codec import encode_dataclass
from himari_env.constants import DEFAULT_FEE_RATE
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.regime_multipliers import RegimeMultipliers

#: Reference rules: name -> momentum lookback in bars (0: always long).
REFERENCE_RULES: dict[str, int] = {"buy_and_hold": 0, "momentum_720_lf": 720, "momentum_168_lf": 168}

BRAKE_GRID: dict[str, DrawdownBrakeParams] = {
    "log 3/6/10%": DrawdownBrakeParams(),
    "8/12/16%": DrawdownBrakeParams((0.08, 0.12, 0.16), (0.25, 0.50, 0.75)),
    "10/15/20%": DrawdownBrakeParams((0.10, 0.15, 0.20), (0.25, 0.50, 0.75)),
    "none": DrawdownBrakeParams((0.98,), (0.0,)),
}
MULTIPLIER_GRID: dict[str, RegimeMultipliers] = {
    "log 1/1.2/0.6/0.2": RegimeMultipliers(),
    "1/1/0.8/0.5": RegimeMultipliers(1.0, 1.0, 0.8, 0.5),
    "1/1/1/1": RegimeMultipliers(1.0, 1.0, 1.0, 1.0),
}
BAND_GRID: tuple[float, ...] = (0.25, 0.5)


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: a label and the settings it stands for."""

    label: str
    settings: RiskSettings


def default_candidates() -> list[Candidate]:
    """Brake x multipliers x band (24 candidates); the design log's settings come first."""
    return [Candidate(f"brake {b}; regime {m}; band {band}",
                      RiskSettings(drawdown_brake=brake, regime_multipliers=mult, rebalance_band=band))
            for (b, brake), (m, mult), band in itertools.product(BRAKE_GRID.items(), MULTIPLIER_GRID.items(),
                                                                 BAND_GRID)]


def _rule_directions(close: np.ndarray, lookback: int) -> np.ndarray:
    from himari_env.rules import momentum_directions

    if lookback == 0:
        return np.ones(close.size, dtype=np.int64)
    return np.asarray(momentum_directions(close, lookback, long_short=False), dtype=np.int64)


def _summary(result: Any) -> dict[str, float]:
    from himari_env.metrics import performance_summary

    summary = performance_summary(result.equity, result.positions)
    return {"sharpe": float(summary["sharpe"]), "max_drawdown": float(summary["max_drawdown"]),
            "total_return": float(summary["total_return"])}


def score_rss_settings(frame: pd.DataFrame, *, n_folds: int = 4, end: str | None = "2024-01-01",
                       fee_rate: float = DEFAULT_FEE_RATE, max_leverage: float = 1.0,
                       candidates: Sequence[Candidate] | None = None) -> dict[str, Any]:
    """Score every candidate on the walk-forward windows of ``frame`` (see the module docstring).

    Returns a JSON-ready document: ``windows`` (``[start, end]`` per distinct window),
    ``raw`` (each rule's unsized Sharpe and max drawdown per window), ``candidates`` (one row
    each: ``label``, ``settings``, ``per_rule`` {rule: {sharpe: [...], max_drawdown: [...]}},
    ``score``) and ``best`` (the label of the highest score).
    """
    from experiments.walkforward import walkforward_folds
    from himari_env.pipeline import PipelineConfig, prepare_market
    from himari_env.risk.backtest import run_backtest
    from himari_env.risk.calibration import calibrate_risk
    from himari_env.risk.engine import RiskEngine

    grid = list(candidates) if candidates is not None else default_candidates()
    if not grid:
        raise ValueError("score_rss_settings needs at least one candidate")
    folds = walkforward_folds(pd.DatetimeIndex(frame.index), n_folds, end=end)
    windows: list[list[str]] = []
    raw: dict[str, dict[str, list[float]]] = {r: {"sharpe": [], "max_drawdown": []} for r in REFERENCE_RULES}
    per_candidate: list[dict[str, dict[str, list[float]]]] = [
        {r: {"sharpe": [], "max_drawdown": []} for r in REFERENCE_RULES} for _ in grid]
    for fold in folds:
        prepared = prepare_market(frame.iloc[:fold.test_end],
                                  config=PipelineConfig(split_fractions=fold.split_fractions(720)))
        market = prepared.market
        train = market.splits["train"]
        regimes = prepared.regime_ids["rules"]
        # One fit and one engine per fold: the candidates differ only in settings the
        # calibration does not read and the engine's precomputed arrays do not depend on.
        fitted = calibrate_risk(market.returns[train], gap_before=market.gap_before[train])
        engine = RiskEngine(fitted, np.asarray(market.returns, dtype=np.float64), max_leverage=max_leverage)
        engines = [engine.reconfigured(c.settings.applied_to(fitted)) for c in grid]
        directions = {r: _rule_directions(market.close, lb) for r, lb in REFERENCE_RULES.items()}
        for split in ("val", "test"):
            window = market.splits[split]
            stop = min(window.stop, market.close.size - 1)
            period = [str(pd.Timestamp(market.timestamps[window.start])), str(pd.Timestamp(market.timestamps[stop]))]
            if any(seen[0] == period[0] for seen in windows):
                continue  # fold k's test window is fold k+1's validation window (one bar longer there)
            windows.append(period)
            for rule, dirs in directions.items():
                unsized = _summary(run_backtest(market.returns, dirs, regimes, start=window.start, stop=stop,
                                                config=None, fee_rate=fee_rate, max_leverage=max_leverage))
                raw[rule]["sharpe"].append(unsized["sharpe"])
                raw[rule]["max_drawdown"].append(unsized["max_drawdown"])
                for index, candidate_engine in enumerate(engines):
                    sized = _summary(run_backtest(market.returns, dirs, regimes, start=window.start, stop=stop,
                                                  config=None, fee_rate=fee_rate, max_leverage=max_leverage,
                                                  engine=candidate_engine))
                    per_candidate[index][rule]["sharpe"].append(sized["sharpe"])
                    per_candidate[index][rule]["max_drawdown"].append(sized["max_drawdown"])
    rows = []
    for candidate, per_rule in zip(grid, per_candidate, strict=True):
        score = float(np.mean([np.median(values["sharpe"]) for values in per_rule.values()]))
        rows.append({"label": candidate.label, "settings": encode_dataclass(candidate.settings),
                     "per_rule": per_rule, "score": score})
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], -i))
    return {"n_folds": n_folds, "end": end, "fee_rate": fee_rate, "rules": dict(REFERENCE_RULES),
            "windows": windows, "raw": raw, "candidates": rows, "best": rows[best]["label"]}


__all__ = ["BAND_GRID", "BRAKE_GRID", "MULTIPLIER_GRID", "REFERENCE_RULES", "Candidate", "default_candidates",
           "score_rss_settings"]
