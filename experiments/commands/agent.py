"""``himari train`` and ``himari evaluate``."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    from experiments import evaluate, train

    train_parser = root.add_parser("train", help="train the transformer PPO agent (writes a run folder)",
                                   description=train.DESCRIPTION)
    train.add_arguments(train_parser)
    train_parser.set_defaults(func=train.run_from_args)
    evaluate_parser = root.add_parser(
        "evaluate", help="deterministic after-fee evaluation vs baselines",
        description="Evaluate a run folder: one deterministic pass per split with the best model (by "
        "validation), after fees, next to buy-and-hold, flat, 24-bar momentum and random policies. "
        "Writes report.md (with the plots embedded), report.json, equity_<split>.npz and PNG plots "
        "into the run folder and prints report.md.",
    )
    evaluate.add_arguments(evaluate_parser)
    evaluate_parser.set_defaults(func=evaluate.run_from_args)
