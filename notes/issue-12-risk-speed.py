"""Best-of-N steps/s of gym.make("HimariBTC-v0") at the given info levels and of gym-anytrading's
StocksEnv (window 100), interleaved in one process (issue 12 notes).

Usage: ``PYTHONPATH=. python notes/issue-12-risk-speed.py full,training 5`` (``default``: no
``info_level`` keyword, for a checkout that predates it).
"""

import sys
import time

import gymnasium as gym
import numpy as np

import himari_env  # noqa: F401
from experiments.bench_env import _synthetic_frame

frame = _synthetic_frame(50000, 0)
levels = sys.argv[1].split(",") if len(sys.argv) > 1 else ["full"]
envs = {}
for level in levels:
    kwargs = {"data": frame, "split": "all", "episode_length": None}
    if level != "default":
        kwargs["info_level"] = level
    envs[level] = gym.make("HimariBTC-v0", **kwargs)
from gym_anytrading.envs import StocksEnv  # noqa: E402

df = frame.rename(columns=str.capitalize)
envs["anytrading"] = StocksEnv(df=df, window_size=100, frame_bound=(100, len(df)))
rng = np.random.default_rng(0)
actions3 = rng.integers(0, 3, 20000).tolist()
actions2 = rng.integers(0, 2, 20000).tolist()


def loop(env, actions) -> float:  # type: ignore[no-untyped-def]
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        result = env.step(action)
        if result[2] or result[3]:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


best = dict.fromkeys(envs, 0.0)
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
    for name, env in envs.items():
        best[name] = max(best[name], loop(env, actions2 if name == "anytrading" else actions3))
for name, value in best.items():
    print(f"{name:12s} {value:10,.0f} steps/s  ratio {value / best['anytrading']:.3f}")
