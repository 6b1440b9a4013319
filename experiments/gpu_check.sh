#!/usr/bin/env bash
# GPU check: train the gpu-full preset (the design log's 2.67M-parameter transformer PPO)
# briefly on the synthetic market and report env steps/s, peak GPU memory and the parameter
# count. Needs a CUDA GPU and the project installed (`pip install -e .`); finishes within
# 5 minutes or is stopped.
#
# usage: experiments/gpu_check.sh [TIMESTEPS]      (default 20000)
# env:   PYTHON (default python), OUT (output folder; default a new temporary folder),
#        HIMARI_GPU_CHECK_CONFIG (default experiments/configs/gpu-full.yaml)
# output: $OUT/gpu_check.json, $OUT/tb/ (TensorBoard + progress.csv); a summary on stdout.
# exit:  0 ok; 3 no CUDA GPU; 124 ran past 5 minutes; other non-zero: the error printed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN=${PYTHON:-python}
TIMESTEPS=${1:-20000}
CONFIG=${HIMARI_GPU_CHECK_CONFIG:-experiments/configs/gpu-full.yaml}
OUT_DIR=${OUT:-$(mktemp -d -t himari-gpu-check.XXXXXX)}
mkdir -p "$OUT_DIR"

if ! "$PYTHON_BIN" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU: torch.cuda.is_available() is False (torch $("$PYTHON_BIN" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not importable')). Run this on a machine with an NVIDIA GPU and a CUDA build of torch; on CPU use experiments/configs/cpu-small.yaml instead." >&2
    exit 3
fi

status=0
timeout --signal=INT --kill-after=15 300 "$PYTHON_BIN" - "$CONFIG" "$TIMESTEPS" "$OUT_DIR" <<'PY' || status=$?
"""Build the env stack with gym.make, the agent with agents.ppo.build_ppo, and time learn()."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from agents.config import load_config
from agents.ppo import build_ppo, count_parameters, make_vec_env_from_config


def make_env_factory(env_kwargs):
    def make_env(rank):
        def thunk():
            import gymnasium as gym

            import himari_env  # noqa: F401  (registers HimariBTC-v0 in this process)

            return gym.make("HimariBTC-v0", **env_kwargs)

        return thunk

    return make_env


def main() -> int:
    config_path, timesteps, out_dir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    config = load_config(config_path)
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, total_timesteps=timesteps, verbose=0),
        ppo=dataclasses.replace(config.ppo, device="cuda"),
    )
    started = time.perf_counter()
    vec_env = make_vec_env_from_config(config, make_env_factory(config.env.env_kwargs()))
    env_build_s = time.perf_counter() - started
    try:
        model = build_ppo(vec_env, config, tensorboard_log=str(out_dir / "tb"), seed=config.train.seed)
        if model.device.type != "cuda":
            print(f"gpu_check: the model is on {model.device}, not CUDA", file=sys.stderr)
            return 1
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        started = time.perf_counter()
        model.learn(total_timesteps=timesteps)
        torch.cuda.synchronize()
        learn_s = time.perf_counter() - started
    finally:
        vec_env.close()

    observation_shape = tuple(model.observation_space["features"].shape)
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": config_path,
        "n_envs": config.train.n_envs,
        "features_shape": list(observation_shape),
        "parameters": count_parameters(model),
        "timesteps": int(model.num_timesteps),
        "env_build_s": round(env_build_s, 2),
        "learn_s": round(learn_s, 2),
        "env_steps_per_s": round(model.num_timesteps / learn_s, 1),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
PY

if [ "$status" -eq 124 ]; then
    echo "gpu_check: stopped after 5 minutes; rerun with fewer timesteps (e.g. $0 8192)" >&2
elif [ "$status" -eq 0 ]; then
    echo "gpu_check: ok; results in $OUT_DIR/gpu_check.json"
fi
exit "$status"
