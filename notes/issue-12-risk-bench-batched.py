"""Best-of-7 time of one BatchedRiskLayer.size() + record_step() pair at N envs (issue 12 notes).

Usage: ``PYTHONPATH=. python notes/issue-12-risk-bench-batched.py [N] [KELLY_MODE]``
"""

import dataclasses
import sys
import time

import numpy as np

from himari_env.risk.batched import BatchedRiskLayer, ReferenceBatchedRiskLayer
from himari_env.risk.calibration import calibrate_risk

n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
rng = np.random.default_rng(0)
returns = rng.standard_t(4, 20000) * 0.006
returns[0] = 0.0
config = calibrate_risk(returns[1:15000])
if len(sys.argv) > 2:
    config = config.replace(kelly=dataclasses.replace(config.kelly, mode=sys.argv[2]))
t0 = time.perf_counter()
layer = BatchedRiskLayer(config, returns, max_leverage=1.0, n_envs=n)
layer.size(np.zeros(n, dtype=np.int64), np.full(n, 500), np.zeros(n, dtype=np.int64), np.zeros(n))
print(f"construct + first size (compile or cache load): {time.perf_counter() - t0:.2f} s")
steps = 2000
dirs = rng.integers(-1, 2, (steps, n))
regs = rng.integers(0, 4, (steps, n))
bars0 = rng.integers(1000, 12000, n)
held = rng.choice([-1.0, 0.0, 0.7], (steps, n))
eq = 1.0 + rng.normal(0, 0.05, (steps, n))


def run(layer, steps: int) -> float:  # type: ignore[no-untyped-def]
    bars = bars0
    t = time.perf_counter()
    for k in range(steps):
        layer.size(dirs[k], bars, regs[k], held[k])
        layer.record_step(bars + 1, held[k], eq[k])
    return (time.perf_counter() - t) / steps


run(layer, steps)  # Kelly totals past min_trades
best = min(run(layer, steps) for _ in range(7))
print(f"N={n}: {best * 1e6:.1f} us per size()+record_step() pair (best of 7 x {steps})")
ref = ReferenceBatchedRiskLayer(config, returns, max_leverage=1.0, n_envs=n)
run(ref, 100)
print(f"reference (one RiskEngine per env): {min(run(ref, 100) for _ in range(3)) * 1e6:.1f} us")
