"""Evaluate an L3 sizer run: the trained sizer against the do-nothing sizer (delta = 0).

Called by :func:`experiments.evaluate.evaluate_run` when the run's ``algo`` is
``recurrent_ppo`` (``himari evaluate RUN_DIR [--split val|test|all|unseen]``). For every
evaluated split, two deterministic passes over the same env (same direction source, same
RSS layer, same fees):

* ``l3``: the trained LSTM sizer (best model by validation, its LSTM state carried through
  the pass);
* ``delta0``: ``a = 0`` every bar, i.e. L2 direction + RSS alone.

The report holds, per split: both after-fee metric rows, the scoreboard of the L3 pass
(every baseline raw and through the RSS layer, with significance:
:func:`experiments.scoreboard.score_pass`), the significance of L3 *against delta = 0* (PSR
of L3's Sharpe over delta0's, stationary-bootstrap p-value of the excess return), and the
per-regime share, mean position, mean |position| and mean delta of both passes. Passes over
test or unseen data are recorded in the trials ledger, as for L2 runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from himari_env.constants import BARS_PER_YEAR, REGIME_NAMES

#: The design log's per-regime positions ("Regime Behavior" table of the L3 section).
LOG_REGIME_POSITIONS = {"CRISIS": 0.07, "HIGH_VOL": 0.23, "LOW_VOL": 0.51, "TRENDING": 0.63}


def _returns(equity: np.ndarray) -> np.ndarray:
    values = np.asarray(equity, dtype=np.float64)
    return values[1:] / values[:-1] - 1.0


def evaluate_sizer_run(run_dir: str | Path, *, split: str = "test", data: str | None = None,
                       model_name: str = "best/best_model.zip", write: bool = True) -> dict[str, Any]:
    """Evaluate the sizer run in ``run_dir`` (module docstring); returns the report dict."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.config import ExperimentConfig
    from agents.recurrent import RecurrentRunner, load_recurrent_ppo
    from agents.sizer_callbacks import ZeroDelta, regime_position_table, run_sizer_pass
    from experiments.baselines import build_baselines
    from experiments.evaluate import _ledger_trials
    from experiments.scoreboard import score_pass
    from experiments.sizer_train import sizer_env_kwargs
    from himari_env.artifacts import RunArtifacts
    from himari_env.metrics import performance_summary
    from himari_env.pipeline import prepare_market
    from himari_env.significance import significance_report
    from wrappers.sizer import make_himari_sizer_env
    from wrappers.stack import load_frame

    run_dir = Path(run_dir)
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()),
                                        source=str(run_dir / "config.json"))
    if config.algo != "recurrent_ppo":
        raise ValueError(f"{run_dir} is not a sizer run (algo {config.algo!r})")
    if split not in ("val", "test", "unseen", "all"):
        raise ValueError(f"--split must be val, test, unseen or all, got {split!r}")
    if split == "unseen" and data is None:
        raise ValueError("--split unseen needs --data PATH: a file with bars after the training data")
    if data is not None and split != "unseen":
        raise ValueError("--data is only used with --split unseen (the in-sample data come from the run's config)")
    bundle = RunArtifacts.load(run_dir)
    model_path = run_dir / model_name
    if not model_path.is_file():
        model_path = run_dir / "final_model.zip"
        if not model_path.is_file():
            raise FileNotFoundError(f"no {model_name} and no final_model.zip in {run_dir}")
        print(f"note: {run_dir / model_name} not found; evaluating final_model.zip", file=sys.stderr)

    in_sample_frame = load_frame(config.env.data, seed=config.env.market_seed)
    in_sample = prepare_market(in_sample_frame, artifacts=bundle)
    if "train" not in in_sample.market.splits:
        raise ValueError(f"the training data {config.env.data} differ from those the run bundle of {run_dir} "
                         "was fitted on; evaluate with the original file")
    labels = {"val": ["train", "val"], "test": ["train", "test"], "all": ["train", "val", "test"],
              "unseen": ["train", "test"]}[split]
    passes: list[tuple[str, Any, str]] = [(label, in_sample, label) for label in labels]
    if split == "unseen":
        unseen_frame = load_frame(data)  # type: ignore[arg-type]
        if unseen_frame.index[0] <= in_sample_frame.index[-1]:
            raise ValueError(f"unseen data start at {unseen_frame.index[0]}, not after the training data's last "
                             f"bar {in_sample_frame.index[-1]}")
        passes.append(("unseen", prepare_market(unseen_frame, artifacts=bundle), "all"))

    env_kwargs = sizer_env_kwargs(config)
    env_kwargs.pop("seed")

    def make_env(prepared: Any, split_name: str) -> Any:
        return make_himari_sizer_env(prepared, **{**env_kwargs, "split": split_name, "episode_length": None},
                                     artifacts=bundle)

    probe = DummyVecEnv([lambda: make_env(in_sample, "train")])
    model = load_recurrent_ppo(model_path, probe, config, seed=config.train.seed)
    probe.close()
    risk_config = bundle.risk_config
    trial_sharpes, ledger_file = _ledger_trials(run_dir, config)
    report: dict[str, Any] = {
        "run_dir": str(run_dir), "model": model_path.name, "algo": config.algo, "data": config.env.data,
        "unseen_data": data, "fee_rate": config.env.fee_rate, "sizer": config.to_dict()["sizer"],
        "log_regime_positions": LOG_REGIME_POSITIONS, "splits": {}}
    curves: dict[str, dict[str, np.ndarray]] = {}
    baseline_sets: dict[int, Any] = {}
    supervised_fit: Any = True
    for label, prepared, split_name in passes:
        env = make_env(prepared, split_name)
        l3 = run_sizer_pass(RecurrentRunner(model), env, seed=config.train.seed)
        delta0 = run_sizer_pass(ZeroDelta(), env, seed=config.train.seed)
        env.close()
        regime_ids = prepared.regime_ids[config.env.regime_source]
        if id(prepared) not in baseline_sets:
            baseline_sets[id(prepared)] = build_baselines(
                prepared, regime_ids=regime_ids, risk_config=risk_config, fee_rate=config.env.fee_rate,
                max_leverage=config.env.max_leverage, seed=config.train.seed, supervised=supervised_fit)
            supervised_fit = baseline_sets[id(prepared)].notes.get("supervised_fit", supervised_fit)
        start = int(l3.bar_indices[0])
        scores = score_pass(l3.equity, l3.positions, prepared=prepared, baselines=baseline_sets[id(prepared)],
                            start=start, regime_ids=regime_ids, risk_config=risk_config,
                            fee_rate=config.env.fee_rate, max_leverage=config.env.max_leverage,
                            trial_sharpes=trial_sharpes, seed=config.train.seed)
        vs_delta0 = significance_report(_returns(l3.equity), bars_per_year=BARS_PER_YEAR, best_baseline="delta0",
                                        best_baseline_returns=_returns(delta0.equity), seed=config.train.seed)
        timestamps = prepared.market.timestamps
        section = {
            "period": [str(timestamps[start]), str(timestamps[start + l3.positions.size])],
            "l3": scores["agent"] | {"mean_reward": float(np.mean(l3.rewards))},
            "delta0": performance_summary(delta0.equity, delta0.positions) | {"mean_reward": float(np.mean(delta0.rewards))},
            "l3_vs_delta0": vs_delta0.to_dict(),
            "baselines": scores["baselines"],
            "best_baseline": scores["best_baseline"],
            "significance": scores["significance"],
            "regimes_l3": regime_position_table(l3.decision_positions, l3.deltas, l3.regimes, l3.directions),
            "regimes_delta0": regime_position_table(delta0.decision_positions, delta0.deltas, delta0.regimes,
                                                    delta0.directions),
            "reward_terms_l3": l3.reward_terms,
            "delta_pinned_share": float(np.mean(np.abs(l3.actions[l3.directions != 0]) >= 0.95))
            if np.any(l3.directions != 0) else 0.0,
        }
        report["splits"][label] = section
        curves[label] = {"l3_equity": l3.equity, "l3_positions": l3.positions, "delta0_equity": delta0.equity,
                         "delta0_positions": delta0.positions, "bar_indices": l3.bar_indices, "regimes": l3.regimes,
                         "deltas": l3.deltas, "directions": l3.directions}
        if label in ("test", "unseen") and write:
            from experiments.ledger import record_test_look

            record_test_look(ledger_file, run_dir=run_dir, config=config.to_dict(), split=label,
                             sharpe=section["l3"]["sharpe"])
    report["ledger"] = {"path": str(ledger_file), "trials": len(trial_sharpes)}
    if write:
        from experiments.commands._output import to_json

        (run_dir / "report.json").write_text(to_json(report))
        (run_dir / "report.md").write_text(format_sizer_markdown(report))
        for label, arrays in curves.items():
            np.savez(run_dir / f"equity_{label}.npz", **arrays)  # type: ignore[arg-type]
    return report


def format_sizer_markdown(report: dict[str, Any]) -> str:
    """The sizer report as Markdown: metrics of L3 and delta = 0 per split, significance of
    L3 against delta = 0 and the best baseline, per-regime positions next to the log's."""
    from experiments.commands._output import format_table

    metrics = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "turnover", "trade_count", "exposure")
    lines = [f"# Sizer evaluation of `{report['run_dir']}`", "",
             f"Model `{report['model']}`, data `{report['data']}`, fee rate {report['fee_rate']}, direction source "
             f"`{report['sizer']['direction_source']}`, delta bound {report['sizer']['delta_bound']}; deterministic "
             "passes, metrics after fees.", ""]
    for label, section in report["splits"].items():
        lines += [f"## {label} ({section['period'][0]} .. {section['period'][1]})", ""]
        rows = [["L2 + RSS + L3", *(section["l3"][m] for m in metrics)],
                ["L2 + RSS (delta = 0)", *(section["delta0"][m] for m in metrics)]]
        best = section["best_baseline"]
        if best in section["baselines"]:
            rows.append([f"best baseline: {best}", *(section["baselines"][best][m] for m in metrics)])
        lines += [format_table(["policy", *metrics], rows), ""]
        vs = section["l3_vs_delta0"]
        lines += [f"L3 vs delta = 0: PSR {vs['psr_vs_best_baseline']:.3f}, bootstrap p-value "
                  f"{vs['bootstrap_pvalue_vs_best_baseline']:.3f}; vs the best baseline: "
                  f"{section['significance']['sentence']}", "",
                  f"Delta pinned at a bound on {100 * section['delta_pinned_share']:.1f} % of in-market steps.", ""]
        rows = []
        for name in ("Overall", *REGIME_NAMES):
            if name not in section["regimes_l3"]:
                continue
            a, b = section["regimes_l3"][name], section["regimes_delta0"][name]
            rows.append([name, f"{100 * a['share']:.1f}%", f"{b['mean_abs_position']:.3f}", f"{a['mean_abs_position']:.3f}",
                         f"{a['mean_delta']:+.3f}", LOG_REGIME_POSITIONS.get(name, "")])
        lines += [format_table(["regime", "bars", "mean |pos| delta=0", "mean |pos| L3", "mean delta L3",
                                "design log position"], rows), ""]
    return "\n".join(lines)
