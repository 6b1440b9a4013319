"""Training throughput benchmark: the same PPO run on each vectorization path, in one run.

``himari bench train --config C --timesteps T`` trains the preset ``C`` for ``T`` steps once
per path, each in its own subprocess (fresh imports, no shared allocator or torch state), and
reports env steps per wall second of ``model.learn`` (rollouts *and* PPO updates, the
validation passes switched off so that only training is timed) and the ratio to today's
``SubprocVecEnv`` path:

* ``subproc``: ``train.vectorization: subproc``, ``n_envs`` worker processes (the old default);
* ``batched``: ``train.vectorization: batched``, the ``n_envs`` episodes stepped together in
  process by :class:`~himari_env.vector.HimariBTCVecEnv` (window observations);
* ``batched_index``: the same with ``train.observation_mode: index`` (the extractor gathers
  the windows from the feature table).

Same config, seed and steps for every path; the runs go to a temporary folder and a
temporary trials ledger (a benchmark is not a research trial). The machine is small and
noisy: compare the ratios of one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PATHS: tuple[str, ...] = ("subproc", "batched", "batched_index")
#: ``(train.vectorization, train.observation_mode)`` of each path.
_PATH_SETTINGS: dict[str, tuple[str, str]] = {
    "subproc": ("subproc", "window"),
    "batched": ("batched", "window"),
    "batched_index": ("batched", "index"),
}


def run_worker(path: str, *, config_path: str, timesteps: int, data: str | None, seed: int) -> dict[str, Any]:
    """Train once on ``path``; returns the training summary's throughput figures."""
    from agents.config import load_config
    from experiments.train import train

    config = load_config(config_path)
    env = config.env if data is None else dataclasses.replace(config.env, data=data)
    vectorization, observation_mode = _PATH_SETTINGS[path]
    train_cfg = dataclasses.replace(
        config.train, vectorization=vectorization, observation_mode=observation_mode,
        total_timesteps=int(timesteps), seed=seed, verbose=0,
        eval_freq=10 * int(timesteps) + 1, checkpoint_freq=0,
    )
    config = dataclasses.replace(config, env=env, train=train_cfg)
    with tempfile.TemporaryDirectory(prefix="himari-bench-train-") as tmp:
        summary = train(config, run_dir=Path(tmp) / "run", ledger=Path(tmp) / "ledger.jsonl")
    return {"path": path, "steps": summary["timesteps_this_session"], "wall_seconds": summary["wall_seconds"],
            "steps_per_second": summary["fps"], "n_envs": config.train.n_envs,
            "bars_per_step": config.env.decision_interval}


def run_benchmark(*, config_path: str, timesteps: int, data: str | None = None, seed: int = 0,
                  paths: tuple[str, ...] = PATHS) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for path in paths:
        command = [sys.executable, "-m", "experiments.bench_train", "--worker", path, "--config", config_path,
                   "--timesteps", str(timesteps), "--seed", str(seed)] + (["--data", data] if data else [])
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
            results[path] = {"path": path, "error": tail[0]}
            continue
        results[path] = json.loads(completed.stdout.strip().splitlines()[-1])
    ratios: dict[str, float] = {}
    base = results.get("subproc", {})
    for path, result in results.items():
        if path != "subproc" and "steps_per_second" in result and "steps_per_second" in base:
            ratios[f"{path}/subproc"] = result["steps_per_second"] / base["steps_per_second"]
    return {"config": config_path, "timesteps": timesteps, "data": data, "seed": seed, "results": results,
            "ratios": ratios}


def format_report(report: dict[str, Any]) -> str:
    from experiments.commands._output import format_table

    rows = []
    for path, result in report["results"].items():
        if "error" in result:
            rows.append([path, "error", result["error"], ""])
        else:
            rows.append([path, f"{result['steps_per_second']:,.0f}", f"{result['wall_seconds']:.1f}",
                         f"{result['steps_per_second'] * result['bars_per_step']:,.0f}"])
    table = format_table(["path", "steps/s (PPO updates included)", "learn wall s", "bars/s"], rows)
    ratio_rows = [[key, f"{value:.2f}x"] for key, value in report["ratios"].items()]
    return (f"{report['config']}, {report['timesteps']:,} steps per path, seed {report['seed']}\n\n{table}\n\n"
            + format_table(["ratio", "value"], ratio_rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="experiments/configs/cpu-small.yaml",
                        help="YAML preset (default: %(default)s)")
    parser.add_argument("--timesteps", type=int, default=20_480,
                        help="training steps per path (default: %(default)s)")
    parser.add_argument("--data", default=None, help="OHLCV file (default: the config's data)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--only", nargs="*", choices=PATHS, help="run a subset of the paths (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run_from_args(args: argparse.Namespace) -> int:
    if args.timesteps < 1:
        raise SystemExit(f"--timesteps must be >= 1, got {args.timesteps}")
    report = run_benchmark(config_path=args.config, timesteps=args.timesteps, data=args.data, seed=args.seed,
                           paths=tuple(args.only or PATHS))
    if args.json:
        from experiments.commands._output import to_json

        print(to_json(report))
    else:
        print(format_report(report))
    return 0 if all("error" not in r for r in report["results"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, config_path=args.config, timesteps=args.timesteps, data=args.data,
                                    seed=args.seed)))
        return 0
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
