"""``himari bench env`` (environment speed vs peers)."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    from experiments import bench_env

    parser = groups["bench"].add_parser(
        "env", help="steps/s of HIMARI (core and full stack) vs gym-anytrading and gym-trading-env"
    )
    bench_env.add_arguments(parser)
    parser.set_defaults(func=bench_env.run_from_args)
