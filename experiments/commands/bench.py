"""``himari bench env`` (environment speed vs peers) and ``himari bench pipeline``."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    from experiments import bench_env

    parser = groups["bench"].add_parser(
        "env", help="steps/s of HIMARI (core and full stack) vs gym-anytrading and gym-trading-env",
        description="Steps per second of the HIMARI core env, the full stack with and without the RSS "
        "risk layer, gym-anytrading and gym-trading-env, each in its own subprocess on the same "
        "synthetic market with random actions; median of --repeats runs and the ratios ours/peer. "
        "Peers come from the [bench] extra.",
    )
    bench_env.add_arguments(parser)
    parser.set_defaults(func=bench_env.run_from_args)

    from experiments import bench_train

    train_parser = groups["bench"].add_parser(
        "train", help="PPO steps/s of one preset on each vectorization path (subproc, batched, batched index)",
        description="Train the preset for --timesteps steps once per vectorization path (SubprocVecEnv "
        "workers, the in-process batched env, the batched env with index observations), each in its "
        "own subprocess, validation off; env steps per wall second of model.learn (PPO updates "
        "included) and the ratio to the SubprocVecEnv path.",
    )
    bench_train.add_arguments(train_parser)
    train_parser.set_defaults(func=bench_train.run_from_args)

    from experiments import bench_pipeline

    pipeline_parser = groups["bench"].add_parser(
        "pipeline", help="time the causal pipeline (features, EKF, percentiles, labeler, HMM) on a file",
        description="Time each stage of the causal pipeline (load + validate, features, EKF, "
        "percentiles, labeler, HMM fit and filter) and prepare_market end to end, without the "
        "disk cache; median of --repeats runs.",
    )
    bench_pipeline.add_arguments(pipeline_parser)
    pipeline_parser.set_defaults(func=bench_pipeline.run_from_args)
