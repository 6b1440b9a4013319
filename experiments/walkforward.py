"""Walk-forward evaluation: expanding-window folds x seeds, the agent next to every baseline.

Folds. The bars of the file before ``end`` (default: 2024-01-01 when the file reaches
into 2024, so that 2024 stays the final test; else the whole file) are cut into
``folds + 4`` equal blocks. Fold ``f`` (0-based) tests on block ``4 + f``, validates on the
block before it and trains on everything before that (its first 720 bars are the feature
warm-up): an expanding window whose test windows tile the last ``folds`` blocks. Each fold
is given **only the bars up to its own test window's end**, written to
``fold<f>/data.parquet``, so nothing fitted in a fold (scaler, HMM, labeler thresholds, risk
calibration, supervised baseline) and no model selection can see a later bar.

Per fold and seed, one ordinary training run (``fold<f>/seed<k>/``, a line in the trials
ledger each) selected on the fold's validation window, then one deterministic pass on each
of its windows with every baseline (:mod:`experiments.scoreboard`).

Outputs in ``run_dir``: ``walkforward.json`` (per fold, per seed, per policy: all metrics,
PSR and DSR), ``walkforward.md`` (median, IQR, min and max of each metric over folds x seeds
for the agent and every baseline) and ``walkforward_sharpe.png`` (per-fold test Sharpe:
agent seeds as points, baselines as lines).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Blocks before the first test window: 3 to train on (one is the feature warm-up), 1 to validate.
LEADING_BLOCKS = 4
SUMMARY_METRICS = ("sharpe", "sortino", "total_return", "max_drawdown", "calmar", "trade_count", "exposure")
DEFAULT_END = "2024-01-01"


@dataclass(frozen=True)
class Fold:
    """Bar positions (into the file) of one fold: ``[0, train_end)`` train (with warm-up),
    ``[train_end, val_end)`` validation, ``[val_end, test_end)`` test."""

    index: int
    train_end: int
    val_end: int
    test_end: int

    def split_fractions(self, warmup_bars: int) -> tuple[float, float, float]:
        """Train/val/test fractions of the decision bars of ``[0, test_end)``."""
        usable = self.test_end - warmup_bars
        train = (self.train_end - warmup_bars) / usable
        val = (self.val_end - self.train_end) / usable
        return (train, val, 1.0 - train - val)


def walkforward_folds(index: pd.DatetimeIndex, n_folds: int, *, end: str | pd.Timestamp | None = DEFAULT_END,
                      warmup_bars: int = 720) -> list[Fold]:
    """Expanding-window folds over the bars of ``index`` before ``end`` (see module docstring).

    ``end=None`` uses every bar. Raises ``ValueError`` naming ``--folds`` when a block would
    be shorter than a week or the first training window not longer than the warm-up.
    """
    if n_folds < 1:
        raise ValueError(f"--folds must be >= 1, got {n_folds}")
    n = len(index)
    if end is not None:
        cut = pd.Timestamp(end)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut
        n = int(np.searchsorted(index.to_numpy(), cut.to_datetime64() if index.tz is None else cut, side="left")) \
            if index.tz is None else int(index.searchsorted(cut, side="left"))
    block = n // (n_folds + LEADING_BLOCKS)
    if block < 168 or (LEADING_BLOCKS - 1) * block <= warmup_bars + 168:
        raise ValueError(f"--folds {n_folds}: {n} bars before {end} give blocks of {block} bars, too short "
                         f"(need a week per block and more than {warmup_bars} warm-up bars to train on)")
    folds = []
    for f in range(n_folds):
        train_end = (LEADING_BLOCKS - 1 + f) * block
        folds.append(Fold(f, train_end, train_end + block, train_end + 2 * block))
    return folds


def same_training_settings(recorded: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether two ``ExperimentConfig.to_dict()`` documents train the same model: the same
    configuration as the trials ledger counts it (:func:`experiments.ledger.config_hash`: the
    preset's name, folders, verbosity and vectorization path may differ) and the same seed.
    ``recorded`` (a run's ``config.json``, possibly from an older release) is read through the
    config decoder first, so keys added since then take their defaults."""
    from agents.config import ExperimentConfig
    from experiments.ledger import config_hash

    decoded = ExperimentConfig.from_dict(recorded, source="config.json").to_dict()
    return (config_hash(decoded) == config_hash(wanted)
            and decoded["train"]["seed"] == wanted["train"]["seed"])


def _fold_config(config: Any, data_path: Path, fold: Fold, *, seed: int, timesteps: int | None) -> Any:
    env = dataclasses.replace(config.env, data=str(data_path),
                              split_fractions=fold.split_fractions(warmup_bars=720))
    train = dataclasses.replace(config.train, seed=seed, verbose=0,
                                total_timesteps=timesteps if timesteps is not None else config.train.total_timesteps)
    return dataclasses.replace(config, env=env, train=train)


def run_walkforward(config: Any, *, data: str | None, n_folds: int, seeds: list[int], run_dir: Path,
                    timesteps: int | None = None, end: str | None = DEFAULT_END,
                    ledger: str | Path | None = None, resume: bool = False,
                    ensemble: bool = False) -> dict[str, Any]:
    """Train and score every fold x seed; writes the three outputs and returns the JSON.

    ``ensemble``: also score each fold's seed ensemble (:class:`agents.ensemble.SeedEnsemble`,
    the soft vote of the fold's ``seeds``; report in ``foldK/ensemble``), recorded per fold as
    ``ensemble`` and aggregated as the policy ``agent (seed ensemble)``, one value per fold.

    ``resume``: a fold x seed whose run already finished in ``run_dir`` (its
    ``training_summary.json`` is there) is not trained again but scored again (the same
    deterministic passes), provided it was trained with the same settings
    (:func:`same_training_settings`); an unfinished one is trained again from scratch. So an
    interrupted walk-forward continues, and seeds can be added to a finished one.
    """
    from experiments.evaluate import evaluate_run
    from experiments.train import train
    from wrappers.stack import load_frame

    if ensemble and len(seeds) < 2:
        raise ValueError(f"--ensemble needs at least two seeds per fold, got --seeds {len(seeds)}")
    source = data if data is not None else config.env.data
    frame = load_frame(source, seed=config.env.market_seed)
    folds = walkforward_folds(frame.index, n_folds, end=end)
    run_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"config": config.name, "data": str(source), "end": end, "seeds": seeds,
                                "timesteps": timesteps or config.train.total_timesteps, "folds": []}
    for fold in folds:
        fold_dir = run_dir / f"fold{fold.index}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        data_path = fold_dir / "data.parquet"
        frame.iloc[:fold.test_end].to_parquet(data_path)
        windows = {name: [str(frame.index[a]), str(frame.index[b - 1])] for name, a, b in
                   (("train", 720, fold.train_end), ("val", fold.train_end, fold.val_end),
                    ("test", fold.val_end, fold.test_end))}
        fold_record: dict[str, Any] = {"fold": fold.index, "windows": windows, "seeds": {}}
        for seed in seeds:
            seed_dir = fold_dir / f"seed{seed}"
            fold_config = _fold_config(config, data_path, fold, seed=seed, timesteps=timesteps)
            summary_path = seed_dir / "training_summary.json"
            if resume and summary_path.is_file():
                recorded = json.loads((seed_dir / "config.json").read_text())
                if not same_training_settings(recorded, fold_config.to_dict()):
                    raise ValueError(f"--resume: {seed_dir} was trained with other settings than {config.name!r} "
                                     "(env, extractor, ppo, risk or seed/steps differ); use another --run-dir")
                summary = json.loads(summary_path.read_text())
            else:
                summary = train(fold_config, run_dir=seed_dir, fold=fold.index, tag="walkforward", ledger=ledger,
                                overwrite=resume)
            report = evaluate_run(seed_dir, split="all", record_test_look=False)
            fold_record["seeds"][str(seed)] = {
                "best_validation": summary["best_validation"] and {
                    key: summary["best_validation"].get(key) for key in ("num_timesteps", "value", "hold_share")},
                "splits": {name: {key: report["splits"][name][key] for key in
                                  ("period", "agent", "baselines", "best_baseline", "significance", "timing",
                                   "actions")}
                           for name in ("val", "test")},
            }
        if ensemble:
            report = evaluate_run(fold_dir, split="all", record_test_look=False, ensemble=True, ensemble_seeds=seeds)
            fold_record["ensemble"] = {"splits": {name: {key: report["splits"][name][key] for key in
                                                         ("period", "agent", "significance", "timing", "actions")}
                                                  for name in ("val", "test")}}
        document["folds"].append(fold_record)
        (run_dir / "walkforward.json").write_text(json.dumps(document, indent=2, default=float))
    (run_dir / "walkforward.md").write_text(format_walkforward(document))
    plot_walkforward(document, run_dir / "walkforward_sharpe.png")
    return document


def run_seeds(config: Any, *, seeds: list[int], run_dir: Path, overwrite: bool = False,
              ledger: str | Path | None = None) -> dict[str, Any]:
    """One run per seed on the config's own splits, aggregated on the validation window
    like a one-fold walk-forward (``seeds.json``, ``seeds.md``); the test split is not looked at."""
    from experiments.evaluate import evaluate_run
    from experiments.train import train

    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds must be distinct integers >= 0, got {seeds}")
    run_dir.mkdir(parents=True, exist_ok=True)
    fold_record: dict[str, Any] = {"fold": 0, "windows": {}, "seeds": {}}
    for seed in seeds:
        seed_dir = run_dir / f"seed{seed}"
        seed_config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        summary = train(seed_config, run_dir=seed_dir, overwrite=overwrite, tag="seeds", ledger=ledger)
        report = evaluate_run(seed_dir, split="val")
        fold_record["windows"] = {name: report["splits"][name]["period"] for name in ("train", "val")}
        fold_record["seeds"][str(seed)] = {
            "best_validation": summary["best_validation"] and {
                key: summary["best_validation"].get(key) for key in ("num_timesteps", "value", "hold_share")},
            "splits": {"val": {key: report["splits"]["val"][key] for key in
                               ("period", "agent", "baselines", "best_baseline", "significance", "timing",
                                "actions")}},
        }
    document = {"config": config.name, "data": str(config.env.data), "seeds": seeds,
                "timesteps": config.train.total_timesteps, "folds": [fold_record]}
    (run_dir / "seeds.json").write_text(json.dumps(document, indent=2, default=float))
    (run_dir / "seeds.md").write_text(format_seeds(document))
    return document


def format_seeds(document: dict[str, Any]) -> str:
    """Markdown: median [IQR] (min..max) of the validation metrics over the seeds."""
    return "\n".join([f"# Seeds {document['seeds']}: `{document['config']}` on `{document['data']}`", "",
                      f"{document['timesteps']:,} steps each; validation window only (test not looked at); "
                      "metrics after fees.", "", *_window_table(document, "val")])


def _window_table(document: dict[str, Any], window: str) -> list[str]:
    from experiments.commands._output import format_table

    table = aggregate(document, window=window)
    first = [p for p in ("agent", PER_FOLD_POLICY, ENSEMBLE_POLICY) if p in table]
    order = first + sorted((p for p in table if p not in first), key=lambda p: -table[p]["sharpe"]["median"])
    rows = []
    for policy in order:
        cells = [policy]
        for metric in ("sharpe", "sortino", "total_return", "max_drawdown", "trade_count"):
            s = table[policy][metric]
            cells.append(f"{s['median']:.2f} [{s['iqr']:.2f}] ({s['min']:.2f}..{s['max']:.2f})")
        rows.append(cells)
    psr = table["agent"]["psr_vs_zero"]
    lines = [f"## {window} windows: median [IQR] (min..max) over folds x seeds", "",
             format_table(["policy", "sharpe", "sortino", "total return", "max drawdown", "trades"], rows), "",
             f"Agent PSR vs 0: median {psr['median']:.2f} (min {psr['min']:.2f}, max {psr['max']:.2f})."]
    timing = table["agent"].get("timing_p")
    if timing is not None:
        p_values = [seed["splits"][window]["timing"]["p_value"] for fold in document["folds"]
                    for seed in fold["seeds"].values() if "timing" in seed["splits"][window]]
        lines.append(f"Agent timing test (its holding periods reordered: same trades, same time long): p median "
                     f"{timing['median']:.2f} (min {timing['min']:.2f}, max {timing['max']:.2f}); "
                     f"p <= 0.05 in {sum(p <= 0.05 for p in p_values)} of {len(p_values)} windows.")
    return lines + [""]


#: The walk-forward's name for the per-fold seed ensemble (``--ensemble``).
ENSEMBLE_POLICY = "agent (seed ensemble)"
#: The agent as one value per fold (the median over its seeds), comparable with a baseline's row.
PER_FOLD_POLICY = "agent (median seed per fold)"


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.percentile(array, [25, 50, 75])
    return {"median": float(median), "iqr": float(q75 - q25), "min": float(array.min()), "max": float(array.max()),
            "n": int(array.size)}


def aggregate(document: dict[str, Any], *, window: str = "test") -> dict[str, dict[str, dict[str, float]]]:
    """``{policy: {metric: {median, iqr, min, max, n}}}`` over folds x seeds for ``window``.

    The agent contributes one value per fold and seed (``agent``) and, as
    :data:`PER_FOLD_POLICY`, one value per fold (the median over its seeds); a baseline one per
    fold (its passes do not depend on the agent's seed, except ``random``: seed 0's), and so
    does the seed ensemble when the folds were scored with it. Compare a baseline with the
    per-fold row: the pooled median weighs each fold by its number of seeds and, with folds of
    opposite sign, falls between folds."""
    values: dict[str, dict[str, list[float]]] = {}
    for fold in document["folds"]:
        seeds = list(fold["seeds"].values())
        for seed_record in seeds:
            metrics = seed_record["splits"][window]["agent"]
            for metric in SUMMARY_METRICS:
                values.setdefault("agent", {}).setdefault(metric, []).append(float(metrics[metric]))
            values.setdefault("agent", {}).setdefault("psr_vs_zero", []).append(
                float(seed_record["splits"][window]["significance"]["psr_vs_zero"]))
            timing = seed_record["splits"][window].get("timing")  # absent in walk-forwards run before the test
            if timing is not None:
                values.setdefault("agent", {}).setdefault("timing_p", []).append(float(timing["p_value"]))
        for name, metrics in seeds[0]["splits"][window]["baselines"].items():
            for metric in SUMMARY_METRICS:
                values.setdefault(name, {}).setdefault(metric, []).append(float(metrics[metric]))
        for metric in SUMMARY_METRICS:
            values.setdefault(PER_FOLD_POLICY, {}).setdefault(metric, []).append(
                float(np.median([float(seed_record["splits"][window]["agent"][metric]) for seed_record in seeds])))
        if "ensemble" in fold:
            metrics = fold["ensemble"]["splits"][window]["agent"]
            for metric in SUMMARY_METRICS:
                values.setdefault(ENSEMBLE_POLICY, {}).setdefault(metric, []).append(float(metrics[metric]))
    return {policy: {metric: _stats(v) for metric, v in metrics.items()} for policy, metrics in values.items()}


def fold_table(document: dict[str, Any], *, window: str = "test") -> list[dict[str, Any]]:
    """Per fold: the agent's Sharpe per seed and their median, the seed ensemble's,
    buy-and-hold's (raw and through the RSS layer) and the fold's best baseline (name, Sharpe)."""
    from experiments.baselines import is_oracle

    rows = []
    for fold in document["folds"]:
        seeds = {name: float(record["splits"][window]["agent"]["sharpe"]) for name, record in fold["seeds"].items()}
        baselines = next(iter(fold["seeds"].values()))["splits"][window]["baselines"]
        candidates = {name: float(m["sharpe"]) for name, m in baselines.items() if not is_oracle(name)}
        best = max(candidates, key=lambda name: candidates[name])
        rows.append({"fold": fold["fold"], "seeds": seeds, "agent_median": float(np.median(list(seeds.values()))),
                     "ensemble": (float(fold["ensemble"]["splits"][window]["agent"]["sharpe"])
                                  if "ensemble" in fold else None),
                     "buy_and_hold": candidates.get("buy_and_hold"), "buy_and_hold+rss": candidates.get("buy_and_hold+rss"),
                     "best_baseline": best, "best_baseline_sharpe": candidates[best]})
    return rows


def _fold_lines(document: dict[str, Any]) -> list[str]:
    from experiments.commands._output import format_table

    rows, beats_bh, beats_best = [], 0, 0
    for row in fold_table(document):
        bh = row["buy_and_hold"]
        beats_bh += bh is not None and row["agent_median"] > bh
        beats_best += row["agent_median"] > row["best_baseline_sharpe"]
        rows.append([row["fold"], " / ".join(f"{v:.2f}" for v in row["seeds"].values()), f"{row['agent_median']:.2f}",
                     "" if row["ensemble"] is None else f"{row['ensemble']:.2f}",
                     "" if bh is None else f"{bh:.2f}",
                     "" if row["buy_and_hold+rss"] is None else f"{row['buy_and_hold+rss']:.2f}",
                     f"{row['best_baseline']} {row['best_baseline_sharpe']:.2f}"])
    n = len(rows)
    return ["## test Sharpe per fold", "",
            format_table(["fold", "agent seeds", "agent median", "seed ensemble", "buy_and_hold", "buy_and_hold+rss",
                          "best baseline"], rows), "",
            f"The median seed beats buy-and-hold in {beats_bh} of {n} folds and the fold's best baseline in "
            f"{beats_best} of {n}. Compare the agent with a baseline on the row `{PER_FOLD_POLICY}` below (one value a "
            "fold, like the baselines): the row `agent` pools every fold x seed run, and with folds of opposite sign "
            "its median sits between folds.", ""]


def format_walkforward(document: dict[str, Any]) -> str:
    """Markdown: folds, then per window the median [IQR] (min..max) of each metric."""
    from experiments.commands._output import format_table

    lines = [f"# Walk-forward: `{document['config']}` on `{document['data']}`", "",
             f"{len(document['folds'])} expanding-window folds (bars before {document['end']}), seeds "
             f"{document['seeds']}, {document['timesteps']:,} steps each; metrics after fees.", ""]
    rows = [[fold["fold"], *fold["windows"]["train"], *fold["windows"]["val"][1:], *fold["windows"]["test"][1:]]
            for fold in document["folds"]]
    lines += [format_table(["fold", "train from", "train to", "val to", "test to"], rows), ""]
    lines += _fold_lines(document)
    for window in ("test", "val"):
        lines += _window_table(document, window)
    sentences = [seed["splits"]["test"]["significance"]["sentence"] for fold in document["folds"]
                 for seed in fold["seeds"].values()]
    beats = sum("does not beat" not in s and "beats the best" in s for s in sentences)
    lines += [f"The agent beats its fold's best baseline at 95 % in {beats} of {len(sentences)} fold x seed test windows.",
              ""]
    return "\n".join(lines)


def plot_walkforward(document: dict[str, Any], path: Path,
                     baselines: tuple[str, ...] = ("buy_and_hold", "momentum_168_ls", "momentum_720_ls",
                                                   "ma_cross_ls", "regime_gated", "supervised_hgb")) -> None:
    """Per-fold test Sharpe: agent seeds as points, baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = [fold["fold"] for fold in document["folds"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for fold in document["folds"]:
        sharpes = [seed["splits"]["test"]["agent"]["sharpe"] for seed in fold["seeds"].values()]
        ax.scatter([fold["fold"]] * len(sharpes), sharpes, color="#1f77b4", zorder=3,
                   label="agent (one point per seed)" if fold["fold"] == folds[0] else None)
        ax.scatter([fold["fold"]], [float(np.median(sharpes))], color="#1f77b4", marker="_", s=400, zorder=3,
                   label="agent, median seed" if fold["fold"] == folds[0] else None)
        if "ensemble" in fold:
            ax.scatter([fold["fold"]], [fold["ensemble"]["splits"]["test"]["agent"]["sharpe"]], color="#d62728",
                       marker="D", zorder=4, label="seed ensemble" if fold["fold"] == folds[0] else None)
    palette = ("black", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    for name, color in zip(baselines, palette):
        ys = [next(iter(fold["seeds"].values()))["splits"]["test"]["baselines"].get(name, {}).get("sharpe", np.nan)
              for fold in document["folds"]]
        ax.plot(folds, ys, color=color, linestyle="--" if name == "buy_and_hold" else "-", marker=".", label=name)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(folds)
    ax.set_xticklabels([f"{f}\n{fold['windows']['test'][0][:7]}" for f, fold in zip(folds, document["folds"])])
    ax.set_xlabel("fold (test window start)")
    ax.set_ylabel("test Sharpe (after fees)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
