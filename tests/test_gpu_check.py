"""experiments/gpu_check.sh runs its real code path (on CPU here: CI has no GPU) and reports
what the README's GPU table needs, for both observation modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_gpu_check_reports_samples_per_second_and_update_time_for_both_observation_modes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    text = Path("experiments/configs/cpu-small.yaml").read_text()
    config.write_text(text.replace("n_steps: 512", "n_steps: 32").replace("batch_size: 256", "batch_size: 64")
                      .replace("n_epochs: 10", "n_epochs: 1"))
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
           "HIMARI_GPU_CHECK_CONFIG": str(config), "HIMARI_GPU_CHECK_DEVICE": "cpu"}
    completed = subprocess.run(["bash", "experiments/gpu_check.sh", "256"], env=env, capture_output=True, text=True,
                               check=False, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [m["observation_mode"] for m in result["modes"]] == ["window", "index"]
    for mode in result["modes"]:
        assert mode["timesteps"] == 256 and mode["samples_per_s"] > 0
        assert mode["ppo_updates"] == 2 and mode["seconds_per_update"] > 0
    assert "samples_per_s" in completed.stdout


def test_gpu_check_says_what_to_do_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    completed = subprocess.run(["bash", "experiments/gpu_check.sh", "256"], env=env, capture_output=True, text=True,
                               check=False, timeout=120)
    assert completed.returncode == 3
    assert "no CUDA GPU" in completed.stderr and "cpu-small.yaml" in completed.stderr
