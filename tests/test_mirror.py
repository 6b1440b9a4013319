"""The mirrored market (``himari_env.data.augment``) and training on it (``train.mirror_envs``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from agents.config import ConfigError, ExperimentConfig, TrainConfig, load_config
from experiments.ledger import config_hash
from himari_env.data import OHLCVValidationError, synthesize_market
from himari_env.data.augment import mirror_ohlcv
from himari_env.pipeline import prepare_market
from tests.conftest import REPO_ROOT, assert_the_default_hashes_as_absent


def _frame(closes, highs, lows, opens=None):
    index = pd.date_range("2022-01-01", periods=len(closes), freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": opens or closes, "high": highs, "low": lows, "close": closes,
                         "volume": [5.0 + k for k in range(len(closes))]}, index=index)


def test_the_mirror_negates_every_log_return_and_swaps_high_and_low_by_hand():
    frame = _frame(closes=[100.0, 110.0, 99.0], highs=[101.0, 112.0, 111.0], lows=[99.0, 100.0, 98.0],
                   opens=[100.0, 100.0, 110.0])
    mirrored = mirror_ohlcv(frame)
    # c0^2 / x with c0 = 100: 10,000 / x
    np.testing.assert_allclose(mirrored["close"], [100.0, 10_000 / 110, 10_000 / 99], rtol=1e-15)
    np.testing.assert_allclose(mirrored["open"], [100.0, 100.0, 10_000 / 110], rtol=1e-15)
    np.testing.assert_allclose(mirrored["high"], [10_000 / 99, 100.0, 10_000 / 98], rtol=1e-15)
    np.testing.assert_allclose(mirrored["low"], [10_000 / 101, 10_000 / 112, 10_000 / 111], rtol=1e-15)
    np.testing.assert_array_equal(mirrored["volume"], frame["volume"])
    assert mirrored.index.equals(frame.index)
    # log(110/100) = 0.0953...: the mirror falls by exactly that; log(99/110) = -0.1054...: it rises
    np.testing.assert_allclose(np.diff(np.log(mirrored["close"])), [-np.log(1.10), -np.log(0.90)], rtol=1e-12)


def test_mirroring_twice_gives_the_market_back_and_keeps_every_bar_valid():
    frame = synthesize_market(n_bars=2000, seed=3).frame
    mirrored = mirror_ohlcv(frame)
    assert (mirrored["high"] >= mirrored[["open", "close"]].max(axis=1)).all()
    assert (mirrored["low"] <= mirrored[["open", "close"]].min(axis=1)).all()
    np.testing.assert_allclose(np.diff(np.log(mirrored["close"])), -np.diff(np.log(frame["close"])), atol=1e-12)
    np.testing.assert_allclose(mirror_ohlcv(mirrored).to_numpy(), frame.to_numpy(), rtol=1e-12)


def test_a_bad_bar_is_refused_with_its_row_not_mirrored():
    frame = _frame(closes=[100.0, -1.0, 99.0], highs=[101.0, 112.0, 111.0], lows=[99.0, -2.0, 98.0])
    with pytest.raises(OHLCVValidationError, match="row 1 at 2022-01-01T01:00:00Z"):
        mirror_ohlcv(frame)


def test_the_mirrored_observations_at_a_bar_do_not_move_when_later_bars_change():
    frame = synthesize_market(n_bars=3000, seed=8).frame
    fitted = prepare_market(frame, cache=False).pipeline
    cut = 2400
    perturbed = frame.copy()
    rng = np.random.default_rng(0)
    scale = np.exp(rng.normal(0.0, 0.05, size=len(frame) - cut))
    perturbed.iloc[cut:, :4] = perturbed.iloc[cut:, :4].to_numpy() * scale[:, None]
    base = prepare_market(mirror_ohlcv(frame), pipeline=fitted, cache=False)
    moved = prepare_market(mirror_ohlcv(perturbed), pipeline=fitted, cache=False)
    np.testing.assert_array_equal(base.observation_features[:cut], moved.observation_features[:cut])
    for source in base.regime_ids:
        np.testing.assert_array_equal(base.regime_ids[source][:cut], moved.regime_ids[source][:cut])
    assert not np.array_equal(base.observation_features[cut:], moved.observation_features[cut:])


def test_mirror_envs_needs_worker_envs_and_a_real_env_and_zero_keeps_the_hash():
    with pytest.raises(ConfigError, match=r"train\.mirror_envs"):
        TrainConfig(n_envs=2, mirror_envs=2, vectorization="subproc")
    with pytest.raises(ConfigError, match=r"train\.mirror_envs"):
        TrainConfig(n_envs=4, mirror_envs=2, vectorization="batched")
    with pytest.raises(ConfigError, match=r"train\.mirror_envs"):
        TrainConfig(n_envs=4, mirror_envs=-1, vectorization="subproc")
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small-spot.yaml")
    assert_the_default_hashes_as_absent(config, "train", "mirror_envs", 0)  # runs recorded before the key existed
    document = config.to_dict()
    mirrored = dataclasses.replace(config, train=dataclasses.replace(config.train, vectorization="subproc",
                                                                     mirror_envs=2))
    assert isinstance(mirrored, ExperimentConfig)
    assert config_hash(mirrored.to_dict()) != config_hash(document)


def test_training_steps_the_mirror_in_the_last_envs_and_validates_on_the_real_bars(tmp_path, monkeypatch):
    import agents.ppo
    from experiments.train import train

    data_path = tmp_path / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small-spot.yaml")
    config = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data_path), episode_length=256, decision_interval=8),
        ppo=dataclasses.replace(config.ppo, n_steps=16, batch_size=32, n_epochs=1),
        train=dataclasses.replace(config.train, total_timesteps=64, n_envs=2, vectorization="subproc",
                                  mirror_envs=1, eval_freq=32, checkpoint_freq=0, verbose=0, sleeves=1),
    )
    factories = []
    build = agents.ppo.make_vec_env_from_config

    def recording(config, make_env):
        factories.append(make_env)
        return build(config, make_env)

    monkeypatch.setattr(agents.ppo, "make_vec_env_from_config", recording)
    run = tmp_path / "run"
    summary = train(config, run_dir=run, ledger=tmp_path / "ledger.jsonl")
    assert summary["timesteps"] >= 64

    (factory,) = factories
    real_env = factory(0)()
    mirror_env = factory(1)()
    real, mirrored = real_env.unwrapped.market, mirror_env.unwrapped.market
    np.testing.assert_array_equal(real.timestamps, mirrored.timestamps)
    # simple returns: 1 + r' = 1 / (1 + r), the mirrored bar's move is the real one's inverse
    np.testing.assert_allclose(1.0 + mirrored.returns[1:], 1.0 / (1.0 + real.returns[1:]), rtol=1e-10)
    real_env.close()
    mirror_env.close()

    line = json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[-1])
    assert line["config_hash"] == config_hash(config.to_dict())
    assert json.loads((run / "config.json").read_text())["train"]["mirror_envs"] == 1
    best = json.loads((run / "best" / "best_metric.json").read_text())
    assert np.isfinite(best["value"])  # validation ran on the real bars' val split
