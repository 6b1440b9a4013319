"""``himari walkforward``: expanding-window folds x seeds against every baseline."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    description = ("Walk-forward evaluation: expanding-window folds over the bars before --end (default "
                   "2024-01-01, so 2024 stays the final test), K seeds per fold; each fold fits everything on "
                   "its own training window, selects on its own validation window and is scored on its test "
                   "window next to every baseline, with PSR/DSR. Writes walkforward.json, walkforward.md and "
                   "walkforward_sharpe.png in --run-dir; every training run appends a line to the trials ledger.")
    parser = root.add_parser("walkforward", help="walk-forward folds x seeds vs every baseline",
                             description=description)
    parser.add_argument("--config", default=None,
                        help="YAML preset (default: experiments/configs/cpu-small.yaml)")
    parser.add_argument("--data", default=None, help="OHLCV file (default: the config's data)")
    parser.add_argument("--folds", type=int, default=4, help="number of folds (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fold, 0..K-1 (default: %(default)s)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="training steps per run (default: the config's train.total_timesteps)")
    parser.add_argument("--end", default="2024-01-01",
                        help="use only bars before this time; 'none' uses the whole file (default: %(default)s)")
    parser.add_argument("--run-dir", required=True, help="output folder (one run folder per fold and seed)")
    parser.add_argument("--ledger", default=None,
                        help="trials ledger (default: $HIMARI_LEDGER or <train.runs_dir>/ledger.jsonl)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the fold x seed runs already finished in --run-dir (same settings required; "
                        "they are scored again, not retrained) and train the rest")
    parser.add_argument("--ensemble", action="store_true",
                        help="also score each fold's seed ensemble (the soft vote of its seeds; needs --seeds >= 2), "
                             "reported as the policy 'agent (seed ensemble)', one value per fold")
    parser.add_argument("--json", action="store_true", help="print walkforward.json instead of walkforward.md")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from agents.config import load_config
    from experiments.walkforward import format_walkforward, run_walkforward

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    config_path = Path(args.config) if args.config else Path(__file__).parents[1] / "configs" / "cpu-small.yaml"
    document = run_walkforward(load_config(config_path), data=args.data, n_folds=args.folds,
                               seeds=list(range(args.seeds)), run_dir=Path(args.run_dir), timesteps=args.timesteps,
                               end=None if str(args.end).lower() == "none" else args.end, ledger=args.ledger,
                               resume=args.resume, ensemble=args.ensemble)
    print(json.dumps(document, indent=2, default=float) if args.json else format_walkforward(document))
    return 0
