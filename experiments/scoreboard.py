"""Score one policy pass next to every baseline, with significance.

Used by ``himari evaluate`` (one run) and ``himari walkforward`` (folds x seeds), so both
print the same table: the agent's after-fee metrics, every baseline of
:mod:`experiments.baselines` raw and through the RSS layer (``name+rss``), and the
significance of the agent's Sharpe (PSR against 0 and the best baseline, the stationary-
bootstrap test of its excess return, the DSR given the trials ledger).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.baselines import BaselineSet, best_baseline, run_baselines
from himari_env.constants import BARS_PER_YEAR
from himari_env.metrics import performance_summary
from himari_env.significance import significance_report

RSS_SUFFIX = "+rss"


def flat_baseline_summaries(passes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{name: metrics}`` with the RSS variant of each baseline as ``name+rss``."""
    out = {}
    for name, variants in passes.items():
        for variant, record in variants.items():
            out[name if variant == "raw" else f"{name}{RSS_SUFFIX}"] = record.summary()
    return out


def score_pass(agent_equity: np.ndarray, agent_positions: np.ndarray, *, prepared: Any, baselines: BaselineSet,
               start: int, regime_ids: np.ndarray, risk_config: Any | None, fee_rate: float, max_leverage: float,
               trial_sharpes: list[float] | None = None, seed: int = 0,
               bootstrap_resamples: int = 2000, decision_interval: int = 1, sleeves: int = 1) -> dict[str, Any]:
    """The scoreboard of one pass that decided at bars ``start .. start + steps - 1``.

    ``agent_equity`` (steps + 1,) and ``agent_positions`` (steps,) are the agent's hourly
    equity and positions (the core env's); ``decision_interval``: the agent's, which adds every
    rule at that cadence (``name@<interval>``); ``sleeves``: the agent's staggered sleeves,
    which adds the rules as that many sleeves (``name@<interval>x<sleeves>``). Returns ``{"agent", "baselines",
    "significance", "best_baseline"}``, JSON-ready.
    """
    steps = int(np.asarray(agent_positions).size)
    passes = run_baselines(baselines, prepared, start=start, stop=start + steps, regime_ids=regime_ids,
                           risk_config=risk_config, fee_rate=fee_rate, max_leverage=max_leverage,
                           decision_interval=decision_interval, sleeves=sleeves)
    summaries = flat_baseline_summaries(passes)
    nested = {name: {variant: summaries[name if variant == "raw" else f"{name}{RSS_SUFFIX}"] for variant in variants}
              for name, variants in passes.items()}
    best_name, best_variant = best_baseline(nested)
    best_record = passes[best_name][best_variant]
    label = best_name if best_variant == "raw" else f"{best_name}{RSS_SUFFIX}"
    equity = np.asarray(agent_equity, dtype=np.float64)
    agent_returns = equity[1:] / equity[:-1] - 1.0
    baseline_returns = best_record.equity[1:] / best_record.equity[:-1] - 1.0
    significance = significance_report(agent_returns, bars_per_year=BARS_PER_YEAR, best_baseline=label,
                                       best_baseline_returns=baseline_returns, trial_sharpes_annualized=trial_sharpes,
                                       seed=seed, resamples=bootstrap_resamples)
    return {
        "agent": performance_summary(equity, agent_positions),
        "baselines": summaries,
        "best_baseline": label,
        "significance": significance.to_dict(),
    }


def passes_for_curves(baselines: BaselineSet, prepared: Any, *, start: int, steps: int, regime_ids: np.ndarray,
                      risk_config: Any | None, fee_rate: float, max_leverage: float,
                      names: tuple[str, ...] = ("buy_and_hold", "momentum_168_ls", "flat")) -> dict[str, Any]:
    """Equity and positions of a few baselines (raw) for plots and NPZ curves."""
    chosen = BaselineSet({n: d for n, d in baselines.directions.items() if n in names}, {}, {})
    passes = run_baselines(chosen, prepared, start=start, stop=start + steps, regime_ids=regime_ids,
                           risk_config=None, fee_rate=fee_rate, max_leverage=max_leverage)
    return {name: variants["raw"] for name, variants in passes.items()}
