"""Environment speed benchmark: HIMARI vs gym-anytrading vs gym-trading-env, in one run.

Each contender runs in its own subprocess (gym-trading-env turns warnings into errors at
import, and separate processes keep allocator and import state apart), on the same
50,000-bar synthetic market, with pre-drawn random actions; each reports the median
steps/second of ``--repeats`` timed runs after one warm-up run. The table gives each figure
and the ratio ours / peer. The machine is small and noisy: compare ratios, not absolutes.

Contenders:

* ``himari_core``: :class:`~himari_env.env.HimariBTCEnv` alone (100-bar Dict window of 44
  features, fees on turnover, equity, drawdown), continuous actions in {-1, 0, 1};
* ``himari_stack``: ``gym.make("HimariBTC-v0")`` (reward, observation and RSS wrappers);
* ``himari_stack_norisk``: the same with ``risk=False`` (DiscreteDirection);
* ``himari_stack_training``: the full stack with ``info_level="training"`` (what a training
  run builds: the RSS layer adds only ``info["action"]``);
* ``himari_vec`` (with ``--vec N``): :class:`~himari_env.vector.HimariBTCVecEnv`, N episodes of
  the full stack with the RSS layer stepped together, window observations, training infos;
  one call steps N envs and counts N steps;
* ``himari_vec_index`` (with ``--vec N``): the same with index observations (the bar index
  instead of the context x features window) and no infos, as the index-mode trainer uses it;
* ``anytrading``: gym-anytrading ``StocksEnv`` (window 100);
* ``trading_env``: gym-trading-env ``TradingEnv`` (positions [-1, 0, 1], fees, 10 feature
  columns).

Run: ``python -m experiments.bench_env`` or ``himari bench env`` (peers from the ``[bench]``
extra; a missing peer is reported, not silently skipped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CONTENDERS = ("himari_core", "himari_stack", "himari_stack_training", "himari_stack_norisk", "anytrading",
              "trading_env")
VEC_CONTENDERS = ("himari_vec", "himari_vec_index")
OURS = ("himari_core", "himari_stack", "himari_stack_training", "himari_stack_norisk") + VEC_CONTENDERS
PEERS = ("anytrading", "trading_env")


def _synthetic_frame(n_bars: int, seed: int):
    from himari_env.data import synthesize_market

    return synthesize_market(n_bars=n_bars, seed=seed).frame


def _time_loop(reset: Callable[[], Any], step: Callable[[Any], tuple], actions: list[Any]) -> float:
    reset()
    start = time.perf_counter()
    for action in actions:
        result = step(action)
        if result[2] or result[3]:
            reset()
    return len(actions) / (time.perf_counter() - start)


def _build(name: str, n_bars: int, seed: int, vec: int = 0) -> tuple[Callable[[], Any], Callable[[Any], tuple], Callable[[np.random.Generator, int], list[Any]]]:
    frame = _synthetic_frame(n_bars, seed)
    if name in VEC_CONTENDERS:
        from himari_env.vector import HimariBTCVecEnv
        from wrappers.stack import prepare

        index = name == "himari_vec_index"
        batch = HimariBTCVecEnv(vec, prepare(frame), split="all", episode_length=None, risk=True,
                                observation_mode="index" if index else "window",
                                info_level="none" if index else "training")

        def reset_batch() -> Any:
            batch.seed(seed)
            return batch.reset()

        def step_batch(actions: Any) -> tuple:
            batch.step_async(actions)
            _, _, dones, _ = batch.step_wait()
            return (None, None, False, False)  # the VecEnv resets ended episodes itself

        return reset_batch, step_batch, (lambda rng, k: list(rng.integers(0, 3, (max(k // vec, 1), vec))))
    if name == "himari_core":
        from himari_env.env import HimariBTCEnv
        from wrappers.stack import prepare

        prepared = prepare(frame)
        env = HimariBTCEnv(prepared.market, split="all", context=100, episode_length=None)
        targets = [np.array([value], dtype=np.float32) for value in (-1.0, 0.0, 1.0)]
        return (lambda: env.reset(seed=seed)), env.step, (lambda rng, k: [targets[i] for i in rng.integers(0, 3, k)])
    if name in ("himari_stack", "himari_stack_training", "himari_stack_norisk"):
        import gymnasium as gym

        import himari_env  # noqa: F401

        stack = gym.make("HimariBTC-v0", data=frame, split="all", episode_length=None,
                         risk=(name != "himari_stack_norisk"),
                         info_level="training" if name == "himari_stack_training" else "full")
        return (lambda: stack.reset(seed=seed)), stack.step, (lambda rng, k: rng.integers(0, 3, k).tolist())
    if name == "anytrading":
        from gym_anytrading.envs import StocksEnv

        df = frame.rename(columns=str.capitalize)
        env = StocksEnv(df=df, window_size=100, frame_bound=(100, len(df)))
        return (lambda: env.reset(seed=seed)), env.step, (lambda rng, k: rng.integers(0, 2, k).tolist())
    if name == "trading_env":
        import warnings

        with warnings.catch_warnings():
            from gym_trading_env.environments import TradingEnv
        df = frame.copy()
        close = df["close"]
        for i, window in enumerate((1, 2, 4, 8, 12, 24, 48, 96, 168, 336)):
            df[f"feature_{i}"] = close.pct_change(window).fillna(0.0)
        env = TradingEnv(df=df, positions=[-1, 0, 1], trading_fees=0.001, verbose=0,
                         initial_position=0, max_episode_duration="max")
        return (lambda: env.reset(seed=seed)), env.step, (lambda rng, k: rng.integers(0, 3, k).tolist())
    raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS}")


def run_worker(name: str, *, n_bars: int, steps: int, repeats: int, seed: int, vec: int = 0) -> dict[str, Any]:
    reset, step, draw = _build(name, n_bars, seed, vec)
    rng = np.random.default_rng(seed)
    actions = draw(rng, steps)
    envs_per_call = vec if name in VEC_CONTENDERS else 1
    _time_loop(reset, step, actions[: max(1000 // envs_per_call, len(actions) // 10)])  # warm-up
    rates = [envs_per_call * _time_loop(reset, step, actions) for _ in range(repeats)]
    return {"name": name, "steps_per_second": statistics.median(rates), "runs": rates, "envs": envs_per_call}


def run_benchmark(*, contenders: tuple[str, ...] = CONTENDERS, n_bars: int = 50_000, steps: int = 20_000,
                  repeats: int = 5, seed: int = 0, vec: int = 0) -> dict[str, Any]:
    """Each contender in its own subprocess; with ``vec`` N > 0 the batched contenders join
    (each timed over ``steps`` env steps, i.e. ``steps // N`` calls of N envs)."""
    results: dict[str, Any] = {}
    if vec > 0:
        contenders = tuple(contenders) + tuple(name for name in VEC_CONTENDERS if name not in contenders)
    for name in contenders:
        if name in VEC_CONTENDERS and vec < 1:
            raise ValueError(f"contender {name!r} needs --vec N (envs per batch) >= 1")
        command = [sys.executable, "-m", "experiments.bench_env", "--worker", name, "--bars", str(n_bars),
                   "--steps", str(steps), "--repeats", str(repeats), "--seed", str(seed), "--vec", str(vec)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
            results[name] = {"name": name, "error": tail[0]}
            continue
        results[name] = json.loads(completed.stdout.strip().splitlines()[-1])
    ratios: dict[str, float] = {}
    for ours in OURS:
        for peer in PEERS:
            a, b = results.get(ours, {}), results.get(peer, {})
            if "steps_per_second" in a and "steps_per_second" in b:
                ratios[f"{ours}/{peer}"] = a["steps_per_second"] / b["steps_per_second"]
    return {"n_bars": n_bars, "steps": steps, "repeats": repeats, "vec": vec, "results": results, "ratios": ratios}


def format_report(report: dict[str, Any]) -> str:
    from experiments.commands._output import format_table

    rows = []
    for name, result in report["results"].items():
        if "error" in result:
            rows.append([name, "error", result["error"]])
        else:
            runs = result["runs"]
            label = f"{name} (N={result['envs']})" if result.get("envs", 1) > 1 else name
            rows.append([label, f"{result['steps_per_second']:,.0f}", f"{min(runs):,.0f} .. {max(runs):,.0f}"])
    table = format_table(["env", "median steps/s (all envs)", "range over repeats"], rows)
    ratio_rows = [[key, f"{value:.2f}x"] for key, value in report["ratios"].items()]
    return (f"{report['n_bars']:,}-bar market, {report['steps']:,} random-action steps, median of "
            f"{report['repeats']} repeats after a warm-up\n\n{table}\n\n"
            + format_table(["ratio (ours / peer)", "value"], ratio_rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bars", type=int, default=50_000,
                        help="bars of the synthetic market (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20_000, help="timed steps per repeat (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats after one warm-up; the median is reported (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the market and the random actions (default: %(default)s)")
    parser.add_argument("--vec", type=int, default=0, metavar="N",
                        help="also time the batched env with N episodes per call (himari_vec, himari_vec_index); "
                        "0: off (default)")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS + VEC_CONTENDERS,
                        help="run a subset (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run_from_args(args: argparse.Namespace) -> int:
    if args.vec < 0:
        raise SystemExit(f"--vec must be >= 0 (envs per batch), got {args.vec}")
    report = run_benchmark(contenders=tuple(args.only or CONTENDERS), n_bars=args.bars, steps=args.steps,
                           repeats=args.repeats, seed=args.seed, vec=args.vec)
    if args.json:
        from experiments.commands._output import to_json

        print(to_json(report))
    else:
        print(format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--worker", choices=CONTENDERS + VEC_CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, n_bars=args.bars, steps=args.steps, repeats=args.repeats,
                                    seed=args.seed, vec=args.vec)))
        return 0
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
