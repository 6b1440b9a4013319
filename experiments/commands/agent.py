"""``himari train`` and ``himari evaluate``."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    from experiments import evaluate, train

    train_parser = root.add_parser("train", help="train the transformer PPO agent (writes a run folder)")
    train.add_arguments(train_parser)
    train_parser.set_defaults(func=train.run_from_args)
    evaluate_parser = root.add_parser("evaluate", help="deterministic after-fee evaluation vs baselines")
    evaluate.add_arguments(evaluate_parser)
    evaluate_parser.set_defaults(func=evaluate.run_from_args)
