"""Experiment configs (YAML presets, validation, round trip) and the PPO builder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

from agents.config import (
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    ExtractorConfig,
    PPOConfig,
    RiskSettings,
    TrainConfig,
    load_config,
)
from agents.ppo import build_ppo, load_ppo, make_vec_env_from_config
from himari_env.risk.config import RiskConfig
from tests.test_extractor import TinyRegimeEnv, make_tiny_env, tiny_config

torch.set_num_threads(1)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def write_yaml(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("preset", ["cpu-small", "gpu-full"])
def test_presets_load_and_name_themselves(preset: str) -> None:
    config = load_config(CONFIG_DIR / f"{preset}.yaml")
    assert config.name == preset
    assert config.ppo.n_steps * config.train.n_envs % config.ppo.batch_size == 0
    # Decisions every 24 bars: the hourly-decision entropy floor of the design log does not apply.
    assert config.env.decision_interval == 24 and 0.0 < config.ppo.ent_coef <= 0.10


def test_gpu_full_preset_is_the_design_log_model() -> None:
    config = load_config(CONFIG_DIR / "gpu-full.yaml")
    assert config.extractor == ExtractorConfig.full()
    assert config.extractor.features_dim == 512
    assert config.env.context == 100
    assert (config.ppo.net_arch_pi, config.ppo.net_arch_vf) == ((256,), (256,))
    assert config.ppo.device == "auto"


def test_cpu_small_preset_uses_the_small_extractor() -> None:
    config = load_config(CONFIG_DIR / "cpu-small.yaml")
    assert config.extractor == ExtractorConfig.small()
    assert config.ppo.n_steps * config.train.n_envs == 2048  # decisions per rollout (x 24 bars)
    assert config.ppo.batch_size == 256


def test_unknown_key_is_rejected_by_its_dotted_name(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "typo.yaml", {"ppo": {"learnin_rate": 1.0e-4}})
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key\(s\) \['ppo\.learnin_rate'\]"):
        load_config(path)


def test_unknown_section_is_rejected_by_name(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "extra.yaml", {"optimizer": {"lr": 0.1}})
    with pytest.raises(ConfigError, match=r"\['optimizer'\]"):
        load_config(path)


def test_round_trip_through_yaml_and_json_is_lossless(tmp_path: Path) -> None:
    config = load_config(CONFIG_DIR / "gpu-full.yaml")
    resolved = config.to_dict()
    assert json.loads(json.dumps(resolved)) == resolved
    again = load_config(write_yaml(tmp_path / "resolved.yaml", resolved))
    assert again == config
    assert ExperimentConfig.from_dict(resolved) == config


def test_missing_keys_take_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write_yaml(tmp_path / "minimal.yaml", {"name": "minimal"}))
    assert config == ExperimentConfig(name="minimal")


def test_yaml_exponent_without_dot_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "lr.yaml"
    path.write_text("ppo:\n  learning_rate: 3e-4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"ppo\.learning_rate must be a number.*write 3\.0e-4"):
        load_config(path)


def test_wrong_types_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.n_envs must be an integer, got 2\.5"):
        ExperimentConfig.from_dict({"train": {"n_envs": 2.5}})
    with pytest.raises(ConfigError, match=r"env\.risk must be true or false"):
        ExperimentConfig.from_dict({"env": {"risk": "yes"}})
    with pytest.raises(ConfigError, match=r"ppo\.net_arch_pi\[1\] must be an integer"):
        ExperimentConfig.from_dict({"ppo": {"net_arch_pi": [64, "wide"]}})


def test_out_of_range_values_name_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"extractor\.d_model: d_model \(30\) must be divisible by n_heads \(4\)"
    ):
        ExtractorConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match=r"env\.reward: must be one of"):
        EnvConfig(reward="bonus")
    with pytest.raises(ConfigError, match=r"train\.validation_metric"):
        TrainConfig(validation_metric="accuracy")


def test_the_risk_section_defaults_to_the_design_logs_rss_settings() -> None:
    assert RiskSettings().risk_config() == RiskConfig()
    assert ExperimentConfig().risk == RiskSettings()
    assert load_config(CONFIG_DIR / "cpu-small.yaml").risk == RiskSettings()


def test_the_risk_section_is_read_strictly_and_reaches_the_risk_config(tmp_path: Path) -> None:
    document = {"risk": {"drawdown_brake": {"thresholds": [0.1, 0.2], "reductions": [0.5, 0.9]},
                         "regime_multipliers": {"crisis": 0.5}, "rebalance_band": 0.4}}
    config = load_config(write_yaml(tmp_path / "risk.yaml", document))
    risk = config.risk.risk_config()
    assert risk.drawdown_brake.thresholds == (0.1, 0.2) and risk.drawdown_brake.reductions == (0.5, 0.9)
    assert risk.drawdown_brake.peak_window_bars == 720  # unset keys keep their defaults
    assert risk.regime_multipliers.as_tuple() == (1.0, 1.2, 0.6, 0.5)
    assert risk.rebalance_band == 0.4 and not risk.is_calibrated
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert RiskSettings.of(risk) == config.risk
    fitted = RiskConfig().replace(rebalance_band=0.1, fitted_on={"n_returns": 10})
    applied = config.risk.applied_to(fitted)
    assert applied.fitted_on == {"n_returns": 10} and RiskSettings.of(applied) == config.risk
    with pytest.raises(ConfigError, match=r"risk\.drawdown_brake.*thresholds must increase"):
        ExperimentConfig.from_dict({"risk": {"drawdown_brake": {"thresholds": [0.2, 0.1], "reductions": [0.5, 0.9]}}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['risk\.target_vol'\]"):
        ExperimentConfig.from_dict({"risk": {"target_vol": 0.5}})  # fitted on train, never configured
    with pytest.raises(ConfigError, match=r"risk\.rebalance_band: must be in \[0, 1\)"):
        ExperimentConfig.from_dict({"risk": {"rebalance_band": 1.5}})


def test_the_spot_preset_is_long_flat_every_72_bars_in_8_sleeves_with_its_walk_forward_chosen_rss_settings() -> None:
    config = load_config(CONFIG_DIR / "cpu-small-spot.yaml")
    assert config.env.action_set == "long_flat" and config.env.decision_interval == 72
    risk = config.risk
    assert risk.drawdown_brake.thresholds == (0.10, 0.15, 0.20)
    assert risk.regime_multipliers.as_tuple() == (1.0, 1.0, 0.8, 0.5)
    assert risk.rebalance_band == 0.5
    assert config.train.sleeves == 8  # validated and scored on 8 staggered grids
    assert config.env.observed_features is not None and len(config.env.observed_features) == 10
    assert {"ekf_logret_168", "trend_pct", "vol_pct"} <= set(config.env.observed_features)


def test_batch_size_must_divide_the_rollout() -> None:
    with pytest.raises(
        ConfigError, match=r"batch_size \(100\) must divide n_steps \* n_envs \(128 \* 4 = 512\)"
    ):
        ExperimentConfig(ppo=PPOConfig(n_steps=128, batch_size=100), train=TrainConfig(n_envs=4))


def test_entropy_below_the_log_range_warns_with_hourly_decisions_only() -> None:
    with pytest.warns(UserWarning, match=r"ent_coef = 0\.01 is below 0\.05 with hourly decisions"):
        ExperimentConfig(ppo=PPOConfig(ent_coef=0.01))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ExperimentConfig(env=EnvConfig(decision_interval=24), ppo=PPOConfig(ent_coef=0.01))


def test_env_kwargs_apply_named_overrides_only() -> None:
    env = EnvConfig(market_seed=7)
    kwargs = env.env_kwargs(split="val", episode_length=None)
    assert kwargs["split"] == "val" and kwargs["episode_length"] is None and kwargs["seed"] == 7
    with pytest.raises(ConfigError, match=r"unknown env keyword\(s\) \['splt'\]"):
        env.env_kwargs(splt="val")


def test_run_name_defaults_to_name_seed_and_utc_time() -> None:
    from datetime import datetime, timezone

    config = ExperimentConfig(name="demo", train=TrainConfig(seed=4))
    assert (
        config.resolved_run_name(datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
        == "demo_seed4_20250102-030405"
    )
    named = dataclasses.replace(config, train=dataclasses.replace(config.train, run_name="mine"))
    assert named.resolved_run_name() == "mine"


def test_build_ppo_applies_the_config_and_logs_tensorboard_and_csv(tmp_path: Path) -> None:
    config = tiny_config()
    env = make_vec_env_from_config(config, make_tiny_env)
    model = build_ppo(env, config, tensorboard_log=str(tmp_path), seed=1)
    assert (model.n_steps, model.batch_size, model.n_epochs) == (64, 32, 2)
    assert model.ent_coef == config.ppo.ent_coef
    assert model.device.type == "cpu"
    assert model.policy.features_extractor.features_dim == 64
    model.learn(total_timesteps=128)  # two rollouts: the second dump carries train/*
    header = (tmp_path / "progress.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    for diagnostic in (
        "time/fps",
        "train/approx_kl",
        "train/clip_fraction",
        "train/explained_variance",
        "train/entropy_loss",
    ):
        assert diagnostic in header
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_one_env_is_a_dummy_vec_env_seeded_with_the_train_seed() -> None:
    vec_env = make_vec_env_from_config(tiny_config(seed=9), make_tiny_env)
    assert isinstance(vec_env, VecMonitor) and isinstance(vec_env.venv, DummyVecEnv)
    vec_env.reset()
    assert vec_env.get_attr("np_random_seed") == [9]


def test_several_envs_run_in_subprocesses_each_seeded(tmp_path: Path) -> None:
    config = dataclasses.replace(
        tiny_config(seed=5),
        train=TrainConfig(seed=5, n_envs=2, eval_freq=0, checkpoint_freq=0, verbose=0),
    )
    vec_env = make_vec_env_from_config(config, make_tiny_env)
    try:
        assert isinstance(vec_env.venv, SubprocVecEnv)
        observations = vec_env.reset()
        assert observations["features"].shape == (2, 8, 5)
        assert vec_env.get_attr("np_random_seed") == [5, 6]
    finally:
        vec_env.close()


def test_resumed_model_continues_the_timestep_count(tmp_path: Path) -> None:
    config = tiny_config()
    model = build_ppo(DummyVecEnv([TinyRegimeEnv]), config, tensorboard_log=None, seed=0)
    model.learn(total_timesteps=64)
    model.save(tmp_path / "ckpt.zip")
    resumed = load_ppo(
        tmp_path / "ckpt.zip", DummyVecEnv([TinyRegimeEnv]), config, num_timesteps=64
    )
    resumed.learn(total_timesteps=64, reset_num_timesteps=False)
    assert resumed.num_timesteps == 128
    for saved, loaded in zip(
        model.policy.parameters(),
        load_ppo(tmp_path / "ckpt.zip", DummyVecEnv([TinyRegimeEnv]), config).policy.parameters(),
        strict=True,
    ):
        assert torch.equal(saved, loaded)


def test_loading_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no saved model at .*nothing\.zip"):
        load_ppo(tmp_path / "nothing.zip", DummyVecEnv([TinyRegimeEnv]), tiny_config())


def test_the_config_and_the_env_factory_share_one_vocabulary_of_names_and_defaults():
    import inspect

    from himari_env import constants
    from wrappers import observations, rewards
    from wrappers.stack import make_himari_env

    factory = inspect.signature(make_himari_env).parameters
    env = EnvConfig()
    for name, value in env.env_kwargs().items():
        assert factory[name].default == value, name  # `risk` was False here, True in the factory
    assert rewards.REWARD_PRESETS == constants.REWARD_PRESETS
    assert observations.REGIME_SOURCES == constants.REGIME_SOURCES
    # One fee range: [0, 0.1) in the env and the config (the config allowed [0, 1)).
    with pytest.raises(ConfigError, match=r"env\.fee_rate: must be in \[0, 0\.1\)"):
        EnvConfig(fee_rate=0.5)
