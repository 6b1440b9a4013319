"""Honest evaluation of a trained run: one deterministic pass per split, after fees, next to
buy-and-hold, flat, a momentum rule and a random policy.

``himari evaluate RUN_DIR [--split test|unseen|all] [--data PATH]`` (also
``python -m experiments.evaluate``) writes into the run folder:

* ``report.json``: every figure below, machine-readable;
* ``report.md``: per-regime action distribution (the design log's format), after-fee metrics
  table (agent and baselines), train vs test (vs unseen) HOLD table;
* ``equity_<split>.npz``: the equity curves and positions the metrics were computed from;
* ``equity_<split>.png`` (equity with regime shading), ``drawdown_<split>.png``,
  ``actions_by_regime.png``.

The observation is rebuilt from the run bundle (``artifacts/``), never refitted: on unseen
data the same fitted scaler, labeler settings, HMM and risk config are applied, and the
bundle's training tail is prepended so that the first unseen bar is already scored. Baselines trade through the same core
env and fee as the agent (positions 0/+1/-1, no risk layer): buy-and-hold (always long),
flat, momentum (long when the trailing 24-bar return is positive, else short; a decision at
bar t uses closes up to t) and random (uniform actions, seeded).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.baselines import build_baselines
from experiments.scoreboard import passes_for_curves, score_pass
from himari_env.constants import ACTION_NAMES, REGIME_NAMES

#: Baselines whose equity curves are kept in ``equity_<split>.npz`` and plotted.
CURVE_BASELINES = ("buy_and_hold", "flat", "momentum_24_ls", "momentum_168_ls")


@dataclass
class PassRecord:
    """One deterministic pass: arrays over the n steps of the split."""

    bar_indices: np.ndarray  # decision bars (n,)
    actions: np.ndarray  # discrete actions (n,)
    regimes: np.ndarray  # labeler regime at each decision bar (n,)
    positions: np.ndarray  # target position held over each step (n,)
    equity: np.ndarray  # (n + 1,)
    reward_terms: dict[str, float]  # mean of each reward term
    mean_reward: float


def run_pass(env: Any, choose_action: Any, *, seed: int = 0) -> PassRecord:
    """Step ``env`` (a Discrete(3) HIMARI stack with ``episode_length=None``) to the end."""
    observation, info = env.reset(seed=seed)
    bars, actions, regimes, rewards = [], [], [], []
    term_sums: dict[str, float] = {}
    while True:
        bar = info["bar_index"]
        action = int(choose_action(observation, bar))
        bars.append(bar)
        regimes.append(info["regime"])
        observation, reward, terminated, truncated, info = env.step(action)
        actions.append(info.get("action", action))
        rewards.append(float(reward))
        for name, value in info["reward_terms"].items():
            term_sums[name] = term_sums.get(name, 0.0) + float(value)
        if terminated or truncated:
            break
    core = env.unwrapped
    n = len(actions)
    return PassRecord(
        bar_indices=np.asarray(bars),
        actions=np.asarray(actions, dtype=np.int64),
        regimes=np.asarray(regimes, dtype=np.int64),
        positions=core.episode_positions(),
        equity=core.episode_equity(),
        reward_terms={name: total / n for name, total in term_sums.items()},
        mean_reward=float(np.mean(rewards)),
    )


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
                 frame: Any = None) -> dict[str, Any]:
    """Evaluate the run in ``run_dir``; see the module docstring. Returns the report dict.

    ``frame`` (a canonical OHLCV frame) gives the run's training bars when they were not
    loaded from ``config.env.data`` (``train(..., frame=...)``, e.g. a walk-forward fold);
    it must be the frame the run bundle was fitted on.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.config import ExperimentConfig
    from agents.ppo import load_ppo
    from himari_env.artifacts import RunArtifacts
    from himari_env.pipeline import prepare_market
    from wrappers.stack import load_frame, make_himari_env

    run_dir = Path(run_dir)
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()),
                                        source=str(run_dir / "config.json"))
    if config.algo == "recurrent_ppo":  # the L3 sizer: L3 against delta = 0 (experiments/sizer_eval.py)
        from experiments.sizer_eval import evaluate_sizer_run

        return evaluate_sizer_run(run_dir, split=split, data=data, model_name=model_name, write=write)
    bundle = RunArtifacts.load(run_dir)
    model_path = run_dir / model_name
    if not model_path.is_file():
        fallback = run_dir / "final_model.zip"
        if not fallback.is_file():
            raise FileNotFoundError(f"no {model_name} and no final_model.zip in {run_dir}")
        print(f"note: {model_path} not found (no validation pass ran?); evaluating final_model.zip", file=sys.stderr)
        model_path = fallback
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

    def make_env(prepared: Any, split_name: str, **overrides: Any) -> Any:
        kwargs = {**env_kwargs, "split": split_name, "episode_length": None, **overrides}
        return make_himari_env(prepared, **kwargs, artifacts=bundle)

    probe = DummyVecEnv([lambda: make_env(in_sample, "test")])
    model = load_ppo(model_path, probe, config, seed=config.train.seed)

    def agent_policy(observation: dict[str, Any], bar: int) -> int:
        action, _ = model.predict(observation, deterministic=True)
        return int(action)

    report: dict[str, Any] = {"run_dir": str(run_dir), "model": model_path.name, "data": config.env.data,
                              "unseen_data": data, "fee_rate": config.env.fee_rate, "splits": {}}
    curves: dict[str, dict[str, np.ndarray]] = {}
    risk_config = bundle.risk_config if config.env.risk else None
    trial_sharpes, ledger_file = _ledger_trials(run_dir, config)
    planted = _planted(config)
    baseline_sets: dict[int, Any] = {}
    supervised_fit: Any = True
    for label, prepared, split_name in passes:
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
                            seed=config.train.seed)
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
        report["splits"][label] = section
        curves[label] = {"agent_equity": agent.equity, "agent_positions": agent.positions,
                         "bar_indices": agent.bar_indices, "regimes": agent.regimes, "actions": agent.actions}
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
        if label in ("test", "unseen") and write:
            from experiments.ledger import record_test_look

            record_test_look(ledger_file, run_dir=run_dir, config=config.to_dict(), split=label,
                             sharpe=section["agent"]["sharpe"])
    report["ledger"] = {"path": str(ledger_file), "trials": len(trial_sharpes)}
    report["hold_table"] = hold_table(report)
    if write:
        write_report(run_dir, report, curves, passes)
    return report


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


def format_markdown(report: dict[str, Any]) -> str:
    from experiments.commands._output import format_table

    lines = [f"# Evaluation of `{report['run_dir']}`", "",
             f"Model `{report['model']}`, data `{report['data']}`"
             + (f", unseen `{report['unseen_data']}`" if report.get("unseen_data") else "")
             + f", fee rate {report['fee_rate']} on turnover; deterministic passes; metrics after fees.", ""]
    metric_names = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "turnover", "trade_count",
                    "exposure", "hit_rate")
    for label, section in report["splits"].items():
        lines += [f"## {label} ({section['period'][0]} .. {section['period'][1]})", "",
                  "Per-regime action distribution (agent):", "", "```",
                  format_action_distribution(section["actions"]), "```", ""]
        rows = [["agent", *(section["agent"][m] for m in metric_names)]]
        rows += [[name, *(metrics[m] for m in metric_names)] for name, metrics in section["baselines"].items()]
        lines += [format_table(["policy", *metric_names], rows), ""]
        terms = ", ".join(f"{name} {value:+.4f}" for name, value in section["reward_terms"].items())
        lines += [f"Mean reward terms per step: {terms}", ""]
    labels = list(report["splits"])
    rows = [[f"{regime} HOLD", *(f"{100 * values.get(label, float('nan')):.1f}%" for label in labels)]
            for regime, values in report["hold_table"].items()]
    lines += ["## HOLD share by regime, split by split", "", format_table(["", *labels], rows), ""]
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict[str, Any], curves: dict[str, dict[str, np.ndarray]],
                 passes: list[tuple[str, Any, str]]) -> None:
    from experiments.commands._output import to_json

    (run_dir / "report.json").write_text(to_json(report))
    (run_dir / "report.md").write_text(format_markdown(report))
    for label, arrays in curves.items():
        np.savez(run_dir / f"equity_{label}.npz", **arrays)  # type: ignore[arg-type]  # numpy stubs
    plot_report(run_dir, report, curves, {label: prepared for label, prepared, _ in passes})


def plot_report(run_dir: Path, report: dict[str, Any], curves: dict[str, dict[str, np.ndarray]],
                prepared_by_label: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ("#dfe9f5", "#dff5e1", "#fbeed5", "#f7d9d9")
    for label, arrays in curves.items():
        timestamps = prepared_by_label[label].market.timestamps
        bars = arrays["bar_indices"]
        x = timestamps[np.append(bars, bars[-1] + 1)]
        fig, ax = plt.subplots(figsize=(11, 4.5), dpi=90)
        regimes = arrays["regimes"]
        for regime_id, color in enumerate(colors):
            ax.fill_between(x[:-1], 0, 1, where=regimes == regime_id, color=color, step="post",
                            transform=ax.get_xaxis_transform(), label=REGIME_NAMES[regime_id], linewidth=0)
        ax.plot(x, arrays["agent_equity"], color="navy", linewidth=1.0, label="agent")
        for name, style in (("buy_and_hold", "black"), ("momentum", "darkorange"), ("flat", "grey")):
            ax.plot(x, arrays[f"{name}_equity"], color=style, linewidth=0.8, label=name)
        ax.set_yscale("log")
        ax.set_ylabel("equity (log scale, after fees)")
        ax.set_title(f"{label}: equity with regime shading")
        ax.legend(loc="upper left", fontsize=7, ncol=4)
        fig.tight_layout()
        fig.savefig(run_dir / f"equity_{label}.png")
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(11, 3), dpi=90)
        for name, style in (("agent", "navy"), ("buy_and_hold", "black")):
            equity = arrays[f"{name}_equity"]
            drawdown = 1.0 - equity / np.maximum.accumulate(equity)
            ax.fill_between(x, -100 * drawdown, 0, alpha=0.35 if name == "agent" else 0.15, color=style, label=name)
        ax.set_ylabel("drawdown (%)")
        ax.set_title(f"{label}: drawdown")
        ax.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
        fig.savefig(run_dir / f"drawdown_{label}.png")
        plt.close(fig)

    labels = list(report["splits"])
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.6), dpi=90, squeeze=False)
    for ax, label in zip(axes[0], labels):
        table = report["splits"][label]["actions"]
        names = [name for name in REGIME_NAMES if name in table]
        bottom = np.zeros(len(names))
        for action, color in zip(ACTION_NAMES, ("#9e9e9e", "#2e7d32", "#c62828")):
            shares = np.array([100 * table[name][action] for name in names])
            ax.bar(names, shares, bottom=bottom, color=color, label=action)
            bottom += shares
        ax.set_title(f"{label}: actions by regime")
        ax.set_ylabel("% of bars")
        ax.tick_params(axis="x", labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "actions_by_regime.png")
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run folder written by `himari train`")
    parser.add_argument("--split", default="test", choices=("val", "test", "unseen", "all"),
                        help="val: train + val (no look at test); test: train + test passes; all: train, val, test; "
                             "unseen: train, test and --data. Every pass over test or unseen data is recorded in the "
                             "trials ledger (default: test)")
    parser.add_argument("--data", help="later data (after the training file) for --split unseen")
    parser.add_argument("--model", default="best/best_model.zip", help="model file in the run folder (default: best by validation)")
    parser.add_argument("--json", action="store_true", help="print report.json instead of report.md")


def run_from_args(args: argparse.Namespace) -> int:
    report = evaluate_run(args.run_dir, split=args.split, data=args.data, model_name=args.model)
    if args.json:
        from experiments.commands._output import to_json

        print(to_json(report))
    elif report.get("algo") == "recurrent_ppo":
        from experiments.sizer_eval import format_sizer_markdown

        print(format_sizer_markdown(report))
    else:
        print(format_markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
