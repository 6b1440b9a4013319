#!/usr/bin/env bash
# GPU check: train the gpu-full preset (the design log's 2.67M-parameter transformer PPO,
# context 100) on the batched env, once with window observations and once with index
# observations (the extractor gathers the windows from a GPU-resident feature table), and
# report for each: samples/s (env steps per wall second of learn(), PPO updates included),
# time per PPO update, peak GPU memory and the parameter count. Needs a CUDA GPU and the
# project installed (`pip install -e .`); stops itself after 8 minutes.
#
# usage: experiments/gpu_check.sh [TIMESTEPS]      (default 32768 per observation mode)
# env:   PYTHON (default python), OUT (output folder; default a new temporary folder),
#        HIMARI_GPU_CHECK_CONFIG (default experiments/configs/gpu-full.yaml),
#        HIMARI_GPU_CHECK_DEVICE (default cuda; "cpu" runs the same code without a GPU, for
#        testing the script itself: no GPU memory figures)
# output: $OUT/gpu_check.json, $OUT/tb_<mode>/ (TensorBoard + progress.csv); a summary on stdout.
# exit:  0 ok; 3 no CUDA GPU; 124 ran past 8 minutes; other non-zero: the error printed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN=${PYTHON:-python}
TIMESTEPS=${1:-32768}
CONFIG=${HIMARI_GPU_CHECK_CONFIG:-experiments/configs/gpu-full.yaml}
DEVICE=${HIMARI_GPU_CHECK_DEVICE:-cuda}
OUT_DIR=${OUT:-$(mktemp -d -t himari-gpu-check.XXXXXX)}
mkdir -p "$OUT_DIR"

if [ "$DEVICE" = "cuda" ] && ! "$PYTHON_BIN" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU: torch.cuda.is_available() is False (torch $("$PYTHON_BIN" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not importable')). Run this on a machine with an NVIDIA GPU and a CUDA build of torch; on CPU use experiments/configs/cpu-small.yaml instead." >&2
    exit 3
fi

status=0
timeout --signal=INT --kill-after=15 480 "$PYTHON_BIN" - "$CONFIG" "$TIMESTEPS" "$OUT_DIR" "$DEVICE" <<'PY' || status=$?
"""Batched env + agents.ppo.build_ppo on the preset; time learn() and each PPO update."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
from stable_baselines3.common.vec_env import VecMonitor

from agents.config import load_config
from agents.ppo import build_ppo, count_parameters
from himari_env.vector import HimariBTCVecEnv
from wrappers.stack import prepare


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_mode(config, mode: str, timesteps: int, out_dir: Path, device: str) -> dict:
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, total_timesteps=timesteps, verbose=0, vectorization="batched",
                                  observation_mode=mode),
        ppo=dataclasses.replace(config.ppo, device=device),
    )
    env_kwargs = config.env.env_kwargs()
    prepared = prepare(env_kwargs.pop("data"), seed=config.env.market_seed)
    started = time.perf_counter()
    vec_env = VecMonitor(HimariBTCVecEnv(config.train.n_envs, prepared, info_level="training",
                                         observation_mode=mode, **env_kwargs))
    vec_env.seed(config.train.seed)
    env_build_s = time.perf_counter() - started
    try:
        model = build_ppo(vec_env, config, tensorboard_log=str(out_dir / f"tb_{mode}"), seed=config.train.seed)
        if model.device.type != device:
            raise SystemExit(f"gpu_check: the model is on {model.device}, not {device}")
        update_seconds: list[float] = []
        train_once = model.train

        def timed_train() -> None:
            sync(device)
            begin = time.perf_counter()
            train_once()
            sync(device)
            update_seconds.append(time.perf_counter() - begin)

        model.train = timed_train  # type: ignore[method-assign]
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        started = time.perf_counter()
        model.learn(total_timesteps=timesteps)
        sync(device)
        learn_s = time.perf_counter() - started
    finally:
        vec_env.close()
    return {
        "observation_mode": mode,
        "n_envs": config.train.n_envs,
        "rollout_steps": config.ppo.n_steps * config.train.n_envs,
        "decision_interval_bars": config.env.decision_interval,
        "parameters": count_parameters(model),
        "timesteps": int(model.num_timesteps),
        "env_build_s": round(env_build_s, 2),
        "learn_s": round(learn_s, 2),
        "samples_per_s": round(model.num_timesteps / learn_s, 1),
        "ppo_updates": len(update_seconds),
        "seconds_per_update": round(sum(update_seconds) / max(len(update_seconds), 1), 3),
        "peak_gpu_memory_mib": (round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None),
    }


def main() -> int:
    config_path, timesteps, out_dir, device = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    config = load_config(config_path)
    result = {
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": config_path,
        "modes": [run_mode(config, mode, timesteps, out_dir, device) for mode in ("window", "index")],
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    for key in ("gpu", "device", "torch", "python", "config"):
        print(f"{key:>22}: {result[key]}")
    for mode in result["modes"]:
        print(f"--- observation_mode {mode['observation_mode']}")
        for key, value in mode.items():
            if key != "observation_mode":
                print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
PY

if [ "$status" -eq 124 ]; then
    echo "gpu_check: stopped after 8 minutes; rerun with fewer timesteps (e.g. $0 8192)" >&2
elif [ "$status" -eq 0 ]; then
    echo "gpu_check: ok; results in $OUT_DIR/gpu_check.json"
fi
exit "$status"
