"""Quick timing of the batched env beside gym-anytrading's single env, same process (not a test).

Run from the repository root: ``OMP_NUM_THREADS=1 PYTHONPATH=. python notes/issue-12-vec-timing.py 64``.
The lead's ``himari bench env --vec N`` is the measurement; this is the helper's quick check.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from gym_anytrading.envs import StocksEnv

from himari_env.vector import HimariBTCVecEnv
from wrappers.stack import load_frame, prepare


def best_of(run: Callable[[], float], repeats: int = 3) -> float:
    """Seconds per step: the best of ``repeats`` runs after one warm-up run."""
    run()
    return min(run() for _ in range(repeats))


def anytrading_seconds_per_step(n_steps: int = 20_000) -> float:
    frame = load_frame("synthetic").rename(columns=str.capitalize)
    env = StocksEnv(df=frame, window_size=100, frame_bound=(100, len(frame)))
    actions = np.random.default_rng(0).integers(0, 2, n_steps).tolist()

    def run() -> float:
        env.reset(seed=0)
        start = time.perf_counter()
        for action in actions:
            result = env.step(action)
            if result[2] or result[3]:
                env.reset()
        return (time.perf_counter() - start) / n_steps

    return best_of(run)


def batched_seconds_per_step(n_envs: int, **kwargs: object) -> float:
    env = HimariBTCVecEnv(n_envs, prepare("synthetic"), **kwargs)
    env.seed(0)
    env.reset()
    actions = np.random.default_rng(0).integers(0, 3, (300, n_envs))

    def run() -> float:
        start = time.perf_counter()
        for action in actions:
            env.step(action)
        return (time.perf_counter() - start) / len(actions)

    return best_of(run)


def main() -> None:
    n_envs = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    peer = anytrading_seconds_per_step()
    print(f"gym-anytrading StocksEnv (window 100), 1 env: {1 / peer:10.0f} steps/s ({peer * 1e6:.2f} us/step)")
    for risk in (False, True):
        for mode, level in (("index", "none"), ("index", "training"), ("window", "training"), ("window", "full")):
            seconds = batched_seconds_per_step(n_envs, risk=risk, observation_mode=mode, info_level=level)
            print(f"N={n_envs} risk={risk!s:5} obs={mode:6} info={level:8}: {seconds * 1e6:8.1f} us/batched step, "
                  f"{n_envs / seconds:10.0f} env steps/s = {n_envs / seconds * peer:6.2f}x anytrading")


if __name__ == "__main__":
    main()
