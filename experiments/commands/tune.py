"""``himari tune``: hyperparameter search on Optuna (see :mod:`experiments.tuning`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    parser = root.add_parser(
        "tune",
        help="hyperparameter search on Optuna (validation Sharpe; SQLite or PostgreSQL storage)",
        description="Sample configurations from a search space and train each as an ordinary run "
        "(run folder + ledger line), maximizing the validation Sharpe, with pruning. Several "
        "machines share one study through --storage postgresql://user@host:port/db (same command "
        "on each). With --report: best trials, parameter importances, optimization-history PNG.",
    )
    parser.add_argument("--config", default=None, help="base YAML config (default experiments/configs/cpu-small.yaml)")
    parser.add_argument("--space", help="search-space YAML (fixed + params; see experiments/spaces/cpu-small.yaml)")
    parser.add_argument("--data", help="OHLCV file to train on (default: the config's data, e.g. synthetic)")
    parser.add_argument("--trials", type=int, help="COMPLETE + PRUNED trials the study should hold (all workers)")
    parser.add_argument("--timeout", type=float, help="seconds after which a worker starts no new trial")
    parser.add_argument("--storage", help="Optuna storage URL (default sqlite:///<run-dir>/optuna.db); "
                        "postgresql://user@host:port/db to share a study across machines")
    parser.add_argument("--study", required=True, help="study name (the same on every machine)")
    parser.add_argument("--n-jobs", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--run-dir", help="folder for trial run folders, the SQLite file and the report "
                        "(default <train.runs_dir>/tune-<study>)")
    parser.add_argument("--heartbeat", type=int, default=None,
                        help="trial heartbeat in seconds (default 30); a killed worker's trial is marked "
                        "failed after twice that")
    parser.add_argument("--pruner", choices=("median", "none"), default="median", help="default: median")
    parser.add_argument("--folds", type=int, default=None,
                        help="objective = the median validation Sharpe over this many walk-forward folds of the "
                             "bars before 2024 (as himari walkforward; each fold fits and selects on its own "
                             "windows) instead of the config's own validation split (default: none)")
    parser.add_argument("--report", action="store_true", help="print the study's report and write the "
                        "optimization-history PNG instead of running trials")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run_from_args)


def run_from_args(args: argparse.Namespace) -> int:
    from agents.config import load_config
    from experiments import tuning

    config_path = Path(args.config) if args.config else Path(__file__).resolve().parents[1] / "configs" / "cpu-small.yaml"
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        run_dir = Path(load_config(config_path).train.runs_dir) / f"tune-{args.study}"
    storage = args.storage or tuning.default_storage(run_dir)
    if args.report:
        if args.storage is None and not (run_dir / "optuna.db").is_file():
            raise FileNotFoundError(f"no study storage at {run_dir / 'optuna.db'}; pass --storage URL or --run-dir DIR")
        report = tuning.study_report(storage, args.study, out_dir=run_dir)
    else:
        missing = [flag for flag, value in (("--space", args.space), ("--trials", args.trials)) if value is None]
        if missing:
            raise ValueError(f"himari tune needs {' and '.join(missing)} (or --report)")
        settings = tuning.TuneSettings(
            config=str(config_path), space=args.space, study=args.study, storage=storage,
            run_dir=str(run_dir), trials=args.trials, data=args.data, timeout=args.timeout,
            heartbeat=args.heartbeat or tuning.DEFAULT_HEARTBEAT_S, pruner=args.pruner, folds=args.folds,
        )
        report = tuning.tune(settings, n_jobs=args.n_jobs)
    print(json.dumps(report, indent=2, default=str) if args.json else tuning.format_report(report))
    print(f"\nstudy storage: {report['storage']}   |   optuna-dashboard {report['storage']}")
    return 0
