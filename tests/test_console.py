"""What a newcomer sees on the console: the README's main job (``himari train ... && himari
evaluate ...``) fits in 60 lines, with one progress bar that ends at its total, one line per
validation pass and SB3's tables only with ``-v``."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from agents.config import load_config
from experiments.cli import main
from experiments.progress import format_validation_line, planned_timesteps
from himari_env.data import synthesize_market
from tests.conftest import REPO_ROOT

MAX_LINES = 60


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cpu-small on a 3,000-bar market with 64-step rollouts and validation every 256 steps."""
    folder = tmp_path_factory.mktemp("console")
    data_path = folder / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    config = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data_path), episode_length=128),
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=1),
        train=dataclasses.replace(config.train, n_envs=1, eval_freq=256, checkpoint_freq=512,
                                  verbose=1),  # the preset's verbosity: the CLI decides
    )
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def test_main_job_prints_at_most_60_lines_with_one_bar_that_ends_at_its_total(
    tiny_config: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--timesteps", "1000", "--run-dir", str(run_dir)]) == 0
    assert main(["evaluate", str(run_dir)]) == 0
    out, err = capfd.readouterr()
    console = out + err
    assert console.count("\n") <= MAX_LINES, console

    # No SB3 table, no SB3 chatter.
    assert "| time/" not in console and "Using cpu device" not in console and "Logging to" not in console
    # The bar counts to the steps that run (whole 64-step rollouts: 1,024) and stops there.
    states = [(int(n), int(total)) for n, total in re.findall(r"(\d+)/(\d+) \[", err)]
    assert states and {total for _, total in states} == {1024}
    assert max(n for n, _ in states) == 1024 == states[-1][0]
    assert "1,024 steps: 1,000 requested, rounded up to whole rollouts of 64 steps" in out
    # One line per validation pass (every 256 steps: 4 passes).
    records = json.loads((run_dir / "best" / "evaluations.json").read_text())
    validation_lines = [line for line in out.splitlines() if line.startswith("validation at ")]
    assert len(validation_lines) == len(records) == 4
    assert validation_lines[0].startswith("validation at 256 steps: Sharpe ")
    assert f"run folder: {run_dir}" in out
    assert "## After-fee summary" in out and "best baseline" in out  # evaluate prints a summary of report.md


def test_verbose_flag_prints_sb3_tables(tiny_config: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--timesteps", "128", "--run-dir", str(run_dir), "-v"]) == 0
    out, _ = capfd.readouterr()
    assert "| time/" in out and "total_timesteps" in out
    # The resolved config records the console verbosity the command line chose.
    assert json.loads((run_dir / "config.json").read_text())["train"]["verbose"] == 1


def test_planned_timesteps_round_up_to_whole_rollouts() -> None:
    assert planned_timesteps(3000, 0, 512) == 3072
    assert planned_timesteps(60_000, 0, 512) == 60_416
    assert planned_timesteps(1024, 0, 512) == 1024
    assert planned_timesteps(3000, 2048, 512) == 3072  # resuming


def test_validation_line_names_metric_hold_and_best() -> None:
    record = {"num_timesteps": 20480, "metric": "sharpe", "value": 0.41, "hold_share": 0.715,
              "means": {"total_return": 0.032, "max_drawdown": 0.041}, "eligible": True, "improved": False}
    best = {"num_timesteps": 10240, "value": 0.73}
    assert format_validation_line(record, best) == (
        "validation at 20,480 steps: Sharpe 0.41, return +3.2%, max DD 4.1%, HOLD 71.5% (best Sharpe 0.73 at 10,240)")
    collapsed = {**record, "eligible": False, "hold_share": 1.0}
    assert format_validation_line(collapsed, best).endswith("(collapsed policy: not eligible as best)")
