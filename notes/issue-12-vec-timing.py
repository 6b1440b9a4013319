"""Quick timing of the batched env beside gym-anytrading's single env, same process (not a test)."""
import sys, time, numpy as np
from himari_env.vector import HimariBTCVecEnv
from wrappers.stack import prepare, load_frame

N = int(sys.argv[1]) if len(sys.argv) > 1 else 64

def best_of(run, repeats=3):
    run()
    return min(run() for _ in range(repeats))

from gym_anytrading.envs import StocksEnv
df = load_frame("synthetic").rename(columns=str.capitalize)
any_env = StocksEnv(df=df, window_size=100, frame_bound=(100, len(df)))
acts = np.random.default_rng(0).integers(0, 2, 20000).tolist()
def any_run():
    any_env.reset(seed=0); t0 = time.perf_counter()
    for a in acts:
        r = any_env.step(a)
        if r[2] or r[3]: any_env.reset()
    return (time.perf_counter() - t0) / len(acts)
t_any = best_of(any_run)
print(f"gym-anytrading StocksEnv (window 100), 1 env: {1/t_any:10.0f} steps/s ({t_any*1e6:.2f} us/step)")
prepared = prepare("synthetic")
for risk in (False, True):
    for mode, level in (("index", "none"), ("index", "training"), ("window", "training"), ("window", "full")):
        env = HimariBTCVecEnv(N, prepared, risk=risk, observation_mode=mode, info_level=level)
        env.seed(0); env.reset()
        batch_acts = np.random.default_rng(0).integers(0, 3, (300, N))
        def run():
            t0 = time.perf_counter()
            for a in batch_acts: env.step(a)
            return (time.perf_counter() - t0) / len(batch_acts)
        t = best_of(run)
        print(f"N={N} risk={risk!s:5} obs={mode:6} info={level:8}: {t*1e6:8.1f} us/batched step, "
              f"{N/t:10.0f} env steps/s = {N/t*t_any:6.2f}x anytrading")
