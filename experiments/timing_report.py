"""``himari timing RUN_DIR --split S``: the timing test of a pass that ``himari evaluate`` saved
(also for runs evaluated before the test existed).

The decisions are read from ``RUN_DIR/equity_<split>.npz`` (``actions``, ``decision_bars`` and,
for a staggered policy, ``decision_sleeves``),
so no policy is run again and no test look is added to the ledger: this only asks of a pass
already scored whether its Sharpe came from its timing or from its exposure
(:mod:`himari_env.timing`). The market, regimes and RSS layer are rebuilt from the run bundle,
and the replay of the saved decisions must reproduce the saved equity's Sharpe.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from himari_env.metrics import sharpe_ratio
from himari_env.timing import (
    DEFAULT_PERMUTATIONS,
    TimingTest,
    directions_from_actions,
    sleeved_timing_permutation_test,
)


def _config_run(run_dir: Path) -> Path:
    """The folder holding the config and bundle: ``run_dir``, or for a seed ensemble's report
    folder (``DIR/ensemble``) its first seed run, or for a report of ``himari evaluate
    --sleeves K`` (``RUN/sleevesK``) the run's."""
    if (run_dir / "config.json").is_file():
        return run_dir
    if run_dir.name.startswith("sleeves") and run_dir.name[7:].isdigit():
        return _config_run(run_dir.parent)
    if run_dir.name == "ensemble":
        from agents.ensemble import seed_runs

        return seed_runs(run_dir.parent)[0]
    raise FileNotFoundError(f"not a run folder: {run_dir} (no config.json); pass a folder written by himari train")


def saved_pass_timing(run_dir: str | Path, *, split: str = "test", data: str | None = None,
                      n_permutations: int = DEFAULT_PERMUTATIONS, seed: int | None = None) -> TimingTest:
    """The timing test of the pass in ``run_dir/equity_<split>.npz``.

    ``data``: the later file the ``unseen`` pass was scored on (required for ``unseen``).
    ``seed``: the reorderings' seed (default: the one in ``run_dir/report.json`` for that
    split, else the run's ``train.seed``, as ``himari evaluate`` chooses it).
    """
    from agents.config import ExperimentConfig
    from himari_env.artifacts import RunArtifacts
    from himari_env.pipeline import prepare_market
    from wrappers.stack import load_frame

    run_dir = Path(run_dir)
    curves_file = run_dir / f"equity_{split}.npz"
    if not curves_file.is_file():
        raise FileNotFoundError(f"no saved pass {curves_file}: run himari evaluate {run_dir} on that split first")
    if (split == "unseen") != (data is not None):
        raise ValueError("--data PATH is needed for --split unseen, and only for it")
    source = _config_run(run_dir)
    config = ExperimentConfig.from_dict(json.loads((source / "config.json").read_text()),
                                        source=str(source / "config.json"))
    bundle = RunArtifacts.load(source)
    frame = load_frame(data) if data is not None else load_frame(config.env.data, seed=config.env.market_seed)
    prepared = prepare_market(frame, artifacts=bundle)
    with np.load(curves_file, allow_pickle=False) as curves:
        if "decision_bars" not in curves.files:
            raise ValueError(f"{curves_file} has no decision_bars (written by an older himari evaluate): "
                             f"run himari evaluate {run_dir} again to save them")
        equity, actions, decision_bars = curves["agent_equity"], curves["actions"], curves["decision_bars"]
        owners = curves["decision_sleeves"] if "decision_sleeves" in curves.files else np.zeros(actions.size, np.int64)
        steps = int(curves["agent_positions"].size)
    if seed is None:  # the seed the report's own test used, when there is one
        report_file = run_dir / "report.json"
        stored = json.loads(report_file.read_text()).get("splits", {}).get(split, {}) if report_file.is_file() else {}
        seed = stored.get("timing", {}).get("seed")
    start = int(decision_bars[0])
    directions = directions_from_actions(actions)
    sleeves = [(decision_bars[owners == j], directions[owners == j]) for j in np.unique(owners)]
    return sleeved_timing_permutation_test(
        prepared.market.returns, prepared.regime_ids[config.env.regime_source], sleeves=sleeves, stop=start + steps,
        risk_config=bundle.risk_config if config.env.risk else None, fee_rate=config.env.fee_rate,
        max_leverage=config.env.max_leverage, policy_sharpe=sharpe_ratio(equity), n_permutations=n_permutations,
        seed=config.train.seed if seed is None else seed)


def rewrite_report_timing(run_dir: str | Path, *, split: str, test: TimingTest) -> Path:
    """Replace the ``timing`` section of ``split`` in ``run_dir/report.json`` (and regenerate
    ``report.md``) with ``test``, computed from the same saved pass: for reports scored before
    a change of the test itself. Nothing else of the report changes; no test look is added
    (no policy runs). Returns the report path."""
    from experiments.commands._output import to_json
    from experiments.evaluate import format_markdown

    report_file = Path(run_dir) / "report.json"
    if not report_file.is_file():
        raise FileNotFoundError(f"no {report_file} to rewrite: run himari evaluate {run_dir} first")
    report = json.loads(report_file.read_text())
    if split not in report.get("splits", {}):
        raise ValueError(f"{report_file} has no {split!r} split (it has {sorted(report.get('splits', {}))})")
    if split == "train":
        raise ValueError("the report carries no timing test on train (the policy was fitted there)")
    report["splits"][split]["timing"] = test.to_dict()
    report_file.write_text(to_json(report))
    (Path(run_dir) / "report.md").write_text(format_markdown(report))
    return report_file
