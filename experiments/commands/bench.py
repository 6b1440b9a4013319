"""``himari bench env`` (environment speed vs peers) and ``himari bench pipeline``."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    from experiments import bench_env

    parser = groups["bench"].add_parser(
        "env", help="steps/s of HIMARI (core and full stack) vs gym-anytrading and gym-trading-env"
    )
    bench_env.add_arguments(parser)
    parser.set_defaults(func=bench_env.run_from_args)

    from experiments import bench_pipeline

    pipeline_parser = groups["bench"].add_parser(
        "pipeline", help="time the causal pipeline (features, EKF, percentiles, labeler, HMM) on a file"
    )
    bench_pipeline.add_arguments(pipeline_parser)
    pipeline_parser.set_defaults(func=bench_pipeline.run_from_args)
