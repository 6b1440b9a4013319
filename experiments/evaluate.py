"""Honest evaluation of a trained run: one deterministic pass per split, after fees, next to
buy-and-hold, flat, a momentum rule and a random policy.

``himari evaluate RUN_DIR [--split test|unseen|all] [--data PATH]`` (also
``python -m experiments.evaluate``) writes into the run folder:

* ``report.json``: every figure below, machine-readable;
* ``report.md``: per-regime action distribution (the design log's format), after-fee metrics
  table (agent and baselines), train vs test (vs unseen) HOLD table;
* ``equity_<split>.npz``: the equity curves and positions the metrics were computed from;
* ``equity_<split>.png`` (equity, a regime band and the agent's position),
  ``drawdown_<split>.png``, ``actions_by_regime.png``: see :mod:`experiments.plots`.

The observation is rebuilt from the run bundle (``artifacts/``), never refitted: on unseen
data the same fitted scaler, labeler settings, HMM and risk config are applied, and the
bundle's training tail is prepended so that the first unseen bar is already scored. Baselines trade through the same core
env and fee as the agent (positions 0/+1/-1, no risk layer): buy-and-hold (always long),
flat, momentum (long when the trailing 24-bar return is positive, else short; a decision at
bar t uses closes up to t) and random (uniform actions, seeded).

Beside every Sharpe: its PSR/DSR (:mod:`himari_env.significance`) and, on every split but
train, the timing test (:mod:`himari_env.timing`): the agent's holding periods reordered (same
trades, same time in each direction) and traded through the same RSS layer, so a Sharpe that
only its exposure earns is shown as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from experiments.baselines import build_baselines
from experiments.scoreboard import passes_for_curves, score_pass
from himari_env.constants import ACTION_NAMES, REGIME_NAMES
from himari_env.timing import directions_from_actions, sleeved_timing_permutation_test

#: Baselines whose equity curves are kept in ``equity_<split>.npz`` and plotted.
CURVE_BASELINES = ("buy_and_hold", "flat", "momentum_24_ls", "momentum_168_ls")


def run_pass(env: Any, choose_action: Any, *, seed: int = 0) -> Any:
    """One deterministic pass of ``choose_action(obs, bar)`` over ``env`` (a HIMARI stack with
    ``episode_length=None``): :func:`agents.callbacks.run_policy_pass`, the same rollout as
    validation (actions filed under the regime the agent observes)."""
    from agents.callbacks import run_policy_pass

    return run_policy_pass(env, choose_action, seed=seed)


def action_distribution(actions: np.ndarray, regimes: np.ndarray) -> dict[str, dict[str, float]]:
    """Shares of HOLD/LONG/SHORT overall and per regime (regimes with no bar are omitted)."""

    def shares(selected: np.ndarray) -> dict[str, float]:
        counts = np.bincount(selected, minlength=3)
        total = max(int(counts.sum()), 1)
        return {name: float(counts[i] / total) for i, name in enumerate(ACTION_NAMES)} | {"bars": int(counts.sum())}

    table = {"Overall": shares(actions)}
    for regime_id, name in enumerate(REGIME_NAMES):
        mask = regimes == regime_id
        if mask.any():
            table[name] = shares(actions[mask])
    return table


def format_action_distribution(table: dict[str, dict[str, float]]) -> str:
    lines = []
    for name, row in table.items():
        lines.append(f"{name:<9}: HOLD={100 * row['HOLD']:.1f}% LONG={100 * row['LONG']:.1f}% "
                     f"SHORT={100 * row['SHORT']:.1f}%  ({row['bars']} bars)")
    return "\n".join(lines)


def evaluate_run(run_dir: str | Path, *, split: str = "test", data: str | None = None,
                 model_name: str = "best/best_model.zip", write: bool = True,
                 frame: Any = None, record_test_look: bool = True, ensemble: bool = False,
                 ensemble_seeds: Sequence[int] | None = None, sleeves: int | None = None) -> dict[str, Any]:
    """Evaluate the run in ``run_dir``; see the module docstring. Returns the report dict.

    ``ensemble``: ``run_dir`` is a folder of seed runs (``himari train --seeds`` output or a
    walk-forward fold) and the policy is their :class:`~agents.ensemble.SeedEnsemble` (soft
    vote of each seed's ``model_name``); the report goes to ``run_dir/ensemble`` and its test
    looks are recorded under that folder with the tag ``seed-ensemble``. ``ensemble_seeds``:
    only these seeds' runs vote (default: every ``seed*`` run in the folder).

    ``frame`` (a canonical OHLCV frame) gives the run's training bars when they were not
    loaded from ``config.env.data`` (``train(..., frame=...)``, e.g. a walk-forward fold);
    it must be the frame the run bundle was fitted on. ``sleeves``: evaluate the run's model
    as that many staggered sleeves (:mod:`agents.sleeves`) instead of its configuration's
    ``train.sleeves``; when they differ the report goes to ``<run_dir>/sleeves<K>`` and a test
    look is recorded under the configuration with ``train.sleeves: K`` (another policy).
    ``record_test_look``: append a
    ``test_look`` line to the trials ledger for each pass over test or unseen data (default;
    the walk-forward's fold windows are recorded with their training lines instead).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.config import ExperimentConfig
    from agents.ppo import load_ppo
    from himari_env.artifacts import RunArtifacts
    from himari_env.pipeline import prepare_market
    from wrappers.stack import load_frame, make_himari_env

    run_dir = Path(run_dir)
    members: list[Path] = []
    output_dir = run_dir
    if ensemble:
        from agents.ensemble import seed_runs

        members = seed_runs(run_dir, ensemble_seeds)
        output_dir = run_dir / "ensemble"
        run_dir = members[0]  # configuration and bundle (the same for every member)
    if not (run_dir / "config.json").is_file():
        what = "no such folder" if not run_dir.exists() else "no config.json in it"
        raise FileNotFoundError(f"not a run folder: {run_dir} ({what}); pass a folder written by "
                                "himari train --run-dir DIR")
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()),
                                        source=str(run_dir / "config.json"))
    sleeve_tag = None
    if sleeves is not None and sleeves != config.train.sleeves:
        if config.algo != "ppo":
            raise ValueError(f"--sleeves is for PPO direction runs; {run_dir} is algo {config.algo!r}")
        document = config.to_dict()
        config = ExperimentConfig.from_dict({**document, "train": {**document["train"], "sleeves": int(sleeves)}},
                                            source=f"{run_dir / 'config.json'} with --sleeves {sleeves}")
        sleeve_tag = f"sleeves{sleeves}"
        output_dir = output_dir / sleeve_tag
    if config.algo == "recurrent_ppo" and not ensemble:  # the L3 sizer: L3 against delta = 0 (experiments/sizer_eval.py)
        from experiments.sizer_eval import evaluate_sizer_run

        return evaluate_sizer_run(run_dir, split=split, data=data, model_name=model_name, write=write)
    bundle = RunArtifacts.load(run_dir)
    model_path = _model_file(run_dir, model_name)
    if split not in ("val", "test", "unseen", "all"):
        raise ValueError(f"--split must be val, test, unseen or all, got {split!r}")
    if split == "unseen" and data is None:
        raise ValueError("--split unseen needs --data PATH: a file with bars after the training data")

    # The run bundle is the only fitted state: nothing below fits anything on any data.
    in_sample_frame = frame if frame is not None else load_frame(config.env.data, seed=config.env.market_seed)
    in_sample = prepare_market(in_sample_frame, artifacts=bundle)
    if "train" not in in_sample.market.splits:
        raise ValueError(
            f"the training data {config.env.data} differ from those the run bundle of {run_dir} was fitted on "
            f"(data hash {bundle.data_hash}); evaluate with the original file"
        )
    passes: list[tuple[str, Any, str]] = [("train", in_sample, "train"), ("test", in_sample, "test")]
    if split == "all":
        passes.insert(1, ("val", in_sample, "val"))
    if split == "val":
        passes = [("train", in_sample, "train"), ("val", in_sample, "val")]
    if data is not None and split != "unseen":
        raise ValueError("--data is only used with --split unseen (the in-sample data come from the run's config)")
    if split == "unseen":
        unseen_frame = load_frame(data)
        if unseen_frame.index[0] <= in_sample_frame.index[-1]:
            raise ValueError(
                f"unseen data start at {unseen_frame.index[0]}, not after the training data's last bar "
                f"{in_sample_frame.index[-1]}"
            )
        # The bundle's training tail is prepended: scoring starts at the unseen file's first bar.
        passes.append(("unseen", prepare_market(unseen_frame, artifacts=bundle), "all"))

    env_kwargs = config.env.env_kwargs()
    env_kwargs.pop("data")
    env_kwargs.pop("seed")

    def make_env(prepared: Any, split_name: str, first_decision_bars: int | None = None) -> Any:
        from experiments.train import with_observation_mode

        kwargs = {**env_kwargs, "split": split_name, "episode_length": None}
        return with_observation_mode(make_himari_env(prepared, **kwargs, artifacts=bundle,
                                                     first_decision_bars=first_decision_bars), config)

    probe = DummyVecEnv([lambda: make_env(in_sample, "test")])
    model: Any = load_ppo(model_path, probe, config, seed=config.train.seed)
    model_label = model_path.name
    if members:
        from agents.ensemble import SeedEnsemble

        paths = [model_path] + [_model_file(member, model_name) for member in members[1:]]
        if len({path.name for path in paths}) > 1:
            raise ValueError(f"the seed runs of {output_dir.parent} resolve to different models "
                             f"({', '.join(str(p) for p in paths)}): an ensemble votes with one kind of model; "
                             "pass --model FILE that every seed has")
        model = SeedEnsemble([model] + [load_ppo(path, probe, config, seed=config.train.seed) for path in paths[1:]])
        model_label = f"seed ensemble (soft vote) of {', '.join(str(p) for p in paths)}"

    def agent_policy(observation: dict[str, Any], bar: int) -> int:
        action, _ = model.predict(observation, deterministic=True)
        return int(action)

    report: dict[str, Any] = {"run_dir": str(output_dir), "model": model_label, "data": config.env.data,
                              "unseen_data": data, "fee_rate": config.env.fee_rate, "splits": {}}
    curves: dict[str, dict[str, np.ndarray]] = {}
    risk_config = bundle.risk_config if config.env.risk else None
    trial_sharpes, ledger_file = _ledger_trials(run_dir, config)
    planted = _planted(config)
    baseline_sets: dict[int, Any] = {}
    supervised_fit: Any = True
    sleeves = config.train.sleeves
    for label, prepared, split_name in passes:
        sleeved = None
        if sleeves > 1:
            from agents.sleeves import run_sleeved_pass

            sleeved = run_sleeved_pass(partial(make_env, prepared, split_name), agent_policy,
                                       decision_interval=config.env.decision_interval, sleeves=sleeves,
                                       seed=config.train.seed)
            agent = sleeved.combined()
        else:
            env = make_env(prepared, split_name)
            agent = run_pass(env, agent_policy, seed=config.train.seed)
            env.close()
        regime_ids = prepared.regime_ids[config.env.regime_source]
        if id(prepared) not in baseline_sets:
            # Fitted baselines are fitted on the in-sample train split only and applied as they
            # are to unseen data.
            baseline_sets[id(prepared)] = build_baselines(
                prepared, regime_ids=regime_ids, risk_config=risk_config, fee_rate=config.env.fee_rate,
                max_leverage=config.env.max_leverage, seed=config.train.seed, supervised=supervised_fit,
                planted=planted if prepared is in_sample else None)
            supervised_fit = baseline_sets[id(prepared)].notes.get("supervised_fit", supervised_fit)
        baselines = baseline_sets[id(prepared)]
        start = int(agent.bar_indices[0])
        scores = score_pass(agent.equity, agent.positions, prepared=prepared, baselines=baselines, start=start,
                            regime_ids=regime_ids, risk_config=risk_config, fee_rate=config.env.fee_rate,
                            max_leverage=config.env.max_leverage, trial_sharpes=trial_sharpes,
                            seed=config.train.seed, decision_interval=config.env.decision_interval,
                            sleeves=sleeves)
        timestamps = prepared.market.timestamps
        steps = agent.positions.size
        section = {
            "period": [str(timestamps[start]), str(timestamps[start + steps])],
            "agent": scores["agent"] | {"mean_reward": agent.mean_reward},
            "baselines": scores["baselines"],
            "best_baseline": scores["best_baseline"],
            "significance": scores["significance"],
            "actions": action_distribution(agent.actions, agent.regimes),
            "reward_terms": agent.reward_terms,
            "regime_shares": {REGIME_NAMES[i]: float(np.mean(agent.regimes == i)) for i in range(len(REGIME_NAMES))},
        }
        if sleeved is not None:
            from himari_env.metrics import sharpe_ratio

            section["sleeves"] = {"count": sleeves, "phases": list(sleeved.phases),
                                  "sharpe": [sharpe_ratio(p.equity) for p in sleeved.sleeves]}
        report["splits"][label] = section
        # Curves are hourly (one value per bar); with a decision interval the agent's actions
        # are per decision (``decision_bars``).
        hourly_bars = np.arange(start, start + steps)
        curves[label] = {"agent_equity": agent.equity, "agent_positions": agent.positions,
                         "bar_indices": hourly_bars, "regimes": np.asarray(regime_ids)[hourly_bars],
                         "actions": agent.actions, "decision_bars": agent.bar_indices}
        if sleeved is not None:  # which sleeve made each decision (himari timing splits them again)
            curves[label]["decision_sleeves"] = sleeved.decision_sleeves()
        for name, record in passes_for_curves(baselines, prepared, start=start, steps=steps, regime_ids=regime_ids,
                                              risk_config=risk_config, fee_rate=config.env.fee_rate,
                                              max_leverage=config.env.max_leverage, names=CURVE_BASELINES).items():
            curves[label][f"{name}_equity"] = record.equity
            curves[label][f"{name}_positions"] = record.positions
        # The plots' historical names: "momentum" is the 24-bar long/short rule.
        curves[label]["momentum_equity"] = curves[label]["momentum_24_ls_equity"]
        curves[label]["momentum_positions"] = curves[label]["momentum_24_ls_positions"]
        if "supervised_hgb" in baselines.notes:
            report["supervised_hgb"] = baselines.notes["supervised_hgb"]
        if label in ("test", "unseen") and write and record_test_look:
            from experiments.ledger import record_test_look as append_test_look

            tags = [tag for tag in ("seed-ensemble" if members else None, sleeve_tag) if tag]
            append_test_look(ledger_file, run_dir=output_dir, config=config.to_dict(), split=label,
                             sharpe=section["agent"]["sharpe"], tag=",".join(tags) or None)
        if label != "train":  # the policy was fitted on train: its timing there says nothing
            # After the ledger line: a failure here must not leave a test look unrecorded.
            section["timing"] = sleeved_timing_permutation_test(
                prepared.market.returns, regime_ids, sleeves=[
                    (p.bar_indices, directions_from_actions(p.actions))
                    for p in (sleeved.sleeves if sleeved is not None else (agent,))],
                stop=start + steps, risk_config=risk_config,
                fee_rate=config.env.fee_rate, max_leverage=config.env.max_leverage,
                policy_sharpe=scores["agent"]["sharpe"], seed=config.train.seed).to_dict()
    report["ledger"] = {"path": str(ledger_file), "trials": len(trial_sharpes)}
    report["hold_table"] = hold_table(report)
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_report(output_dir, report, curves, passes)
    return report


def _model_file(run_dir: Path, model_name: str) -> Path:
    """``run_dir/model_name``, or the run's ``final_model.zip`` when it has no such file."""
    path = run_dir / model_name
    if path.is_file():
        return path
    fallback = run_dir / "final_model.zip"
    if not fallback.is_file():
        raise FileNotFoundError(f"no {model_name} and no final_model.zip in {run_dir}")
    print(f"note: {path} not found (no validation pass ran?); evaluating final_model.zip", file=sys.stderr)
    return fallback


def _ledger_trials(run_dir: Path, config: Any) -> tuple[list[float], Path]:
    """The validation Sharpe of every training run in the run's ledger, and that ledger."""
    from experiments.ledger import ledger_path, read_ledger, trial_validation_sharpes

    summary_path = run_dir / "training_summary.json"
    ledger_file = None
    if summary_path.is_file():
        ledger_file = json.loads(summary_path.read_text()).get("ledger")
    path = Path(ledger_file) if ledger_file else ledger_path(config.train.runs_dir)
    return trial_validation_sharpes(read_ledger(path)), path


def _planted(config: Any) -> Any | None:
    """The planted market (for the oracle baselines) when the run trained on it, else None."""
    if config.env.data != "planted":
        return None
    from himari_env.data.planted import synthesize_planted_market
    from wrappers.stack import SYNTHETIC_BARS

    return synthesize_planted_market(SYNTHETIC_BARS, config.env.market_seed)


def hold_table(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """HOLD share per regime (rows) for each evaluated split (columns)."""
    rows: dict[str, dict[str, float]] = {}
    for label, section in report["splits"].items():
        for regime, row in section["actions"].items():
            rows.setdefault(regime, {})[label] = row["HOLD"]
    return rows


#: report.md's metric columns: (key in performance_summary, header, how a value is shown).
_METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "return", "{:+.1%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("max_drawdown", "max DD", "{:.1%}"),
    ("calmar", "Calmar", "{:.2f}"),
    ("turnover", "turnover", "{:,.1f}"),
    ("trade_count", "trades", "{:,.0f}"),
    ("exposure", "exposure", "{:.1%}"),
    ("hit_rate", "hit rate", "{:.1%}"),
)
_POLICY_NAMES = {"buy_and_hold": "buy-and-hold", "momentum": "momentum (24 bars)"}


def _minute(timestamp: Any) -> str:
    """``2020-01-31T00:00:00.000000000`` -> ``2020-01-31 00:00`` (UTC)."""
    import pandas as pd

    try:
        return pd.Timestamp(timestamp).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(timestamp)


def _metric_cells(metrics: dict[str, Any]) -> list[str]:
    cells = []
    for key, _, fmt in _METRIC_COLUMNS:
        value = metrics.get(key)
        cells.append("" if value is None or (isinstance(value, float) and np.isnan(value)) else fmt.format(value))
    return cells


def plot_files(report: dict[str, Any]) -> list[tuple[str, str]]:
    """``(caption, file name)`` of every plot :func:`experiments.plots.plot_report` writes for
    ``report``, the test split's first."""
    labels = sorted(report["splits"], key=lambda label: (label != "test", label))
    files = []
    for label in labels:
        files += [(f"{label}: equity after fees, regimes and position", f"equity_{label}.png"),
                  (f"{label}: drawdown", f"drawdown_{label}.png")]
    files.insert(min(2, len(files)), ("agent actions by regime", "actions_by_regime.png"))
    return files


def format_markdown(report: dict[str, Any]) -> str:
    """report.md: periods, one after-fee metrics table for every split (agent and baselines),
    the agent's actions per regime (the design log's ``HOLD=..%`` format) split by split, mean
    reward terms, and the plots embedded (test split first). Times are UTC, to the minute."""
    from experiments.commands._output import format_table

    labels = list(report["splits"])
    lines = [f"# Evaluation of `{report['run_dir']}`", "",
             f"Model `{report['model']}`, data `{report['data']}`"
             + (f", unseen `{report['unseen_data']}`" if report.get("unseen_data") else "")
             + f"; fee rate {report['fee_rate']} on turnover; deterministic passes; metrics after fees.", ""]
    for label, section in report["splits"].items():
        bars = section["actions"]["Overall"]["bars"]
        lines.append(f"- {label}: {_minute(section['period'][0])} .. {_minute(section['period'][1])} UTC, "
                     f"{bars:,} bars")
    lines += ["", "## After-fee metrics", ""]
    rows = []
    for label, section in report["splits"].items():
        rows.append([label, "**agent**", *_metric_cells(section["agent"])])
        rows += [[label, _POLICY_NAMES.get(name, name), *_metric_cells(metrics)]
                 for name, metrics in section["baselines"].items()]
    lines += [format_table(["split", "policy", *(header for _, header, _ in _METRIC_COLUMNS)], rows), ""]
    lines += ["Baselines trade the same market with the same fee; `name+rss` is the rule sized by the run's RSS "
              "risk layer. The oracles (planted market only) are references, not baselines to beat.", ""]
    lines += _significance_lines(report)

    lines += ["## Agent actions by regime", ""]
    regimes = list(report["hold_table"])
    rows = []
    for regime in regimes:
        row = [regime]
        for label in labels:
            share = report["splits"][label]["actions"].get(regime)
            row.append("" if share is None else f"HOLD={100 * share['HOLD']:.1f}% LONG={100 * share['LONG']:.1f}% "
                       f"SHORT={100 * share['SHORT']:.1f}% ({share['bars']:,})")
        rows.append(row)
    lines += [format_table(["regime", *labels], rows), ""]
    for label, section in report["splits"].items():
        terms = ", ".join(f"{name} {value:+.4f}" for name, value in section["reward_terms"].items())
        lines.append(f"Mean reward terms per step, {label}: {terms}  ")
    lines += ["", "## Plots", ""]
    lines += [f"![{caption}]({name})" for caption, name in plot_files(report)]
    return "\n".join(lines) + "\n"


def _significance_lines(report: dict[str, Any]) -> list[str]:
    lines = ["## Significance", ""]
    for label, section in report["splits"].items():
        sig = section.get("significance")
        if not sig:
            continue
        dsr = "n/a (fewer than 2 trials in the ledger)" if sig["dsr"] is None else f"{sig['dsr']:.2f} over {sig['n_trials']} trials"
        lines.append(f"- {label}: Sharpe {sig['sharpe_annualized']:.2f}, PSR vs 0 {sig['psr_vs_zero']:.2f}, "
                     f"PSR vs {sig['best_baseline']} {sig['psr_vs_best_baseline']:.2f}, DSR {dsr}. {sig['sentence']}")
        if "timing" in section:
            lines.append(f"- {label}, {section['timing']['sentence']}")
    if "supervised_hgb" in report:
        note = report["supervised_hgb"]
        lines.append(f"- supervised_hgb: threshold {note['threshold']:g} chosen on val, train accuracy "
                     f"{note['train_accuracy']:.1%} ({note['horizon_bars']}-bar sign)")
    return lines + [""]


def format_console(report: dict[str, Any], run_dir: str | Path) -> str:
    """The short console summary: per split the agent, the best baseline, buy-and-hold and
    flat, and whether the agent beats the best baseline at 95 %; the full tables are in
    report.md."""
    from experiments.commands._output import format_table

    rows = []
    for label, section in report["splits"].items():
        rows.append([label, "**agent**", *_metric_cells(section["agent"])])
        shown = [section.get("best_baseline"), "buy_and_hold", "flat"]
        for name in dict.fromkeys(n for n in shown if n and n in section["baselines"]):
            rows.append([label, _POLICY_NAMES.get(name, name) + (" (best baseline)" if name == section.get("best_baseline") else ""),
                         *_metric_cells(section["baselines"][name])])
    lines = [f"## After-fee summary (every baseline and the plots: {Path(run_dir) / 'report.md'})", "",
             format_table(["split", "policy", *(header for _, header, _ in _METRIC_COLUMNS)], rows), ""]
    lines += [f"{label}: {section['significance']['sentence']}" for label, section in report["splits"].items()
              if section.get("significance")]
    lines += [f"{label}: {section['timing']['sentence']}" for label, section in report["splits"].items()
              if section.get("timing")]
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict[str, Any], curves: dict[str, dict[str, np.ndarray]],
                 passes: list[tuple[str, Any, str]]) -> None:
    """report.json, report.md, the equity curves (NPZ) and the plots (:mod:`experiments.plots`)."""
    from experiments.commands._output import to_json
    from experiments.plots import plot_report

    (run_dir / "report.json").write_text(to_json(report))
    (run_dir / "report.md").write_text(format_markdown(report))
    for label, arrays in curves.items():
        np.savez(run_dir / f"equity_{label}.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs
    plot_report(run_dir, report, curves, {label: prepared for label, prepared, _ in passes})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder written by `himari train`")
    parser.add_argument("--split", default="test", choices=("val", "test", "unseen", "all"),
                        help="val: train and val passes (no look at test); test: train and test passes; all: "
                             "train, val and test; unseen: train, test and the later file given with --data. Every "
                             "pass over test or unseen data is recorded in the trials ledger (default: %(default)s)")
    parser.add_argument("--data", metavar="PATH",
                        help="later data (starting after the training file) for --split unseen (default: none)")
    parser.add_argument("--model", default="best/best_model.zip", metavar="FILE",
                        help="model file in the run folder; falls back to final_model.zip when absent "
                             "(default: %(default)s, the best by validation)")
    parser.add_argument("--ensemble", action="store_true",
                        help="RUN_DIR is a folder of seed runs (himari train --seeds, or a walk-forward fold): "
                             "evaluate their soft-vote seed ensemble; the report goes to RUN_DIR/ensemble")
    parser.add_argument("--sleeves", type=int, metavar="K",
                        help="evaluate the model as K staggered sleeves (decision grids offset by "
                             "decision_interval/K bars, equal capital; see README 'Staggered sleeves') instead of "
                             "the run's train.sleeves; the report goes to RUN_DIR/sleevesK (default: the run's own)")
    parser.add_argument("--full", action="store_true",
                        help="print report.md (every baseline, raw and +rss, significance, actions by regime) "
                             "instead of the short summary (default: the summary; report.md is always written)")
    parser.add_argument("--json", action="store_true", help="print report.json instead of the summary")


def run_from_args(args: argparse.Namespace) -> int:
    report = evaluate_run(args.run_dir, split=args.split, data=args.data, model_name=args.model,
                          ensemble=getattr(args, "ensemble", False), sleeves=getattr(args, "sleeves", None))
    if args.json:
        from experiments.commands._output import to_json

        print(to_json(report))
    elif report.get("algo") == "recurrent_ppo":
        from experiments.sizer_eval import format_sizer_markdown

        print(format_sizer_markdown(report))
    elif getattr(args, "full", False):
        print(format_markdown(report))
    else:
        print(format_console(report, report["run_dir"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
