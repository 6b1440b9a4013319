"""``himari tune --folds``: the objective is the median validation Sharpe over walk-forward folds."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import optuna
import pytest

from experiments.ledger import read_ledger


@pytest.mark.slow
def test_walkforward_objective_is_the_median_of_the_folds_validation_sharpes(tmp_path: Path) -> None:
    from agents.config import load_config
    from experiments.tuning import TuneSettings, _walkforward_objective
    from himari_env.data import synthesize_market

    data = tmp_path / "market.parquet"
    synthesize_market(7_200, 4).frame.to_parquet(data)
    config = load_config("experiments/configs/cpu-small.yaml")
    config = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data), episode_length=256, decision_interval=4, context=8),
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=1),
        train=dataclasses.replace(config.train, n_envs=1, total_timesteps=128, eval_freq=64, checkpoint_freq=0,
                                  verbose=0),
    )
    ledger = tmp_path / "ledger.jsonl"
    settings = TuneSettings(config="unused.yaml", space="unused.yaml", study="folds", storage="sqlite://",
                            run_dir=str(tmp_path), trials=1, ledger=str(ledger), folds=2)
    value = _walkforward_objective(optuna.trial.FixedTrial({}), settings, config, tmp_path / "trial-0000")
    entries = read_ledger(ledger)
    assert [e["fold"] for e in entries] == [0, 1] and all(e["tag"] == "tune:folds" for e in entries)
    fold_values = [e["validation"]["value"] if e["validation"] else -math.inf for e in entries]
    assert value == pytest.approx(sorted(fold_values)[0] / 2 + sorted(fold_values)[1] / 2)
    assert not any(e["kind"] == "test_look" for e in entries)
