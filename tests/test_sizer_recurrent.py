"""The L3 sizer's agent: the presets, the LSTM shape of sizer-gpu-full, loading without
unpickling, the sizer callbacks, and an end-to-end train / evaluate / resume with RecurrentPPO
through the same entry points as L2 (``train`` and ``evaluate_run`` dispatch on ``algo``)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.callbacks import PolicyCollapseWarning
from agents.config import ConfigError, ExperimentConfig, SizerConfig, load_config
from agents.ppo import count_parameters
from agents.recurrent import RecurrentRunner, build_recurrent_ppo, load_recurrent_ppo
from agents.sizer_callbacks import (
    DeltaCollapseDetector,
    ZeroDelta,
    regime_position_table,
    run_sizer_pass,
)
from experiments.evaluate import evaluate_run
from experiments.ledger import read_ledger
from experiments.sizer_train import sizer_env_kwargs
from experiments.train import train
from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from tests.conftest import REPO_ROOT
from wrappers.sizer import make_himari_sizer_env

CONFIGS = REPO_ROOT / "experiments" / "configs"
#: sizer-gpu-full with the sizer observation (50 features, 4 regimes, position, direction, base
#: size, 11 bindings = 68 inputs): LSTM 2 x 256 shared by actor and critic, heads 256-256.
GPU_FULL_PARAMETERS = 1_123_843
LOG_PARAMETERS = 1_132_163


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=3000, seed=7).frame, cache=False)


def _vec_env(config, prepared):
    kwargs = sizer_env_kwargs(config, episode_length=64)
    kwargs.pop("seed")
    return DummyVecEnv([lambda: make_himari_sizer_env(prepared, **kwargs)])


def test_presets_load_as_recurrent_sizer_configs():
    for name in ("sizer-cpu-small", "sizer-gpu-full"):
        config = load_config(CONFIGS / f"{name}.yaml")
        assert config.algo == "recurrent_ppo" and config.sizer is not None
        assert config.sizer.delta_bound == 0.30 and config.ppo.ent_coef == 0.05
        assert config.ppo.learning_rate == 3.0e-4
        assert ExperimentConfig.from_dict(config.to_dict()) == config
    gpu = load_config(CONFIGS / "sizer-gpu-full.yaml")
    assert (gpu.sizer.n_lstm_layers, gpu.sizer.lstm_hidden_size, gpu.ppo.batch_size) == (2, 256, 256)


def test_the_l2_presets_stay_ppo_and_a_sizer_section_needs_recurrent_ppo():
    assert load_config(CONFIGS / "cpu-small.yaml").algo == "ppo"
    with pytest.raises(ConfigError, match="sizer"):
        ExperimentConfig(algo="recurrent_ppo")
    with pytest.raises(ConfigError, match="sizer"):
        ExperimentConfig(sizer=SizerConfig())
    with pytest.raises(ConfigError, match="algo"):
        ExperimentConfig(algo="a2c")
    with pytest.raises(ConfigError, match="l2_run"):
        SizerConfig(direction_source="l2_run")
    with pytest.raises(ConfigError, match="delta_bound"):
        SizerConfig(delta_bound=1.5)


def test_sizer_gpu_full_has_the_logs_lstm_shape(prepared):
    config = load_config(CONFIGS / "sizer-gpu-full.yaml")
    config = dataclasses.replace(config, ppo=dataclasses.replace(config.ppo, device="cpu"),
                                 train=dataclasses.replace(config.train, n_envs=1, verbose=0))
    model = build_recurrent_ppo(_vec_env(config, prepared), config, tensorboard_log=None, seed=0)
    lstm = model.policy.lstm_actor
    assert (lstm.num_layers, lstm.hidden_size, lstm.input_size) == (2, 256, 68)
    assert model.policy.lstm_critic is None  # one LSTM shared by actor and critic
    assert count_parameters(model) == GPU_FULL_PARAMETERS
    assert abs(GPU_FULL_PARAMETERS / LOG_PARAMETERS - 1) < 0.01


def test_a_saved_model_reloads_from_tensors_only_and_acts_identically(prepared, tmp_path):
    config = load_config(CONFIGS / "sizer-cpu-small.yaml")
    config = dataclasses.replace(config, ppo=dataclasses.replace(config.ppo, n_steps=32, batch_size=32, n_epochs=1),
                                 train=dataclasses.replace(config.train, verbose=0))
    model = build_recurrent_ppo(_vec_env(config, prepared), config, tensorboard_log=None, seed=0)
    model.learn(64)
    model.save(tmp_path / "m.zip")
    reloaded = load_recurrent_ppo(tmp_path / "m.zip", _vec_env(config, prepared), config, seed=1)
    kwargs = sizer_env_kwargs(config, episode_length=None, split="val")
    kwargs.pop("seed")
    a = run_sizer_pass(RecurrentRunner(model), make_himari_sizer_env(prepared, **kwargs))
    b = run_sizer_pass(RecurrentRunner(reloaded), make_himari_sizer_env(prepared, **kwargs))
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.equity, b.equity)
    with pytest.raises(FileNotFoundError):
        load_recurrent_ppo(tmp_path / "absent.zip", _vec_env(config, prepared), config)


def test_delta_collapse_detector_warns_after_patience_pinned_checks():
    detector = DeltaCollapseDetector(share_high=0.99, patience=2)
    assert not detector.observe(1.0, 0.0)
    with pytest.warns(PolicyCollapseWarning, match=r"\+bound"):
        assert detector.observe(0.995, 0.0)
    assert not detector.observe(0.5, 0.2)  # a spread-out check ends the streak
    detector = DeltaCollapseDetector(share_high=0.99, patience=1, stop_on_collapse=True)
    with pytest.warns(PolicyCollapseWarning, match="-bound"):
        detector.observe(0.0, 1.0)
    assert detector.stop_requested
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not DeltaCollapseDetector(patience=1).observe(0.6, 0.3)
    with pytest.raises(ValueError):
        detector.observe(1.5, 0.0)


def test_regime_position_table_reports_mean_position_and_delta_per_regime():
    positions = np.array([0.5, 0.6, 0.1, -0.2, 0.0])
    deltas = np.array([0.3, -0.3, 0.0, 0.1, 0.0])
    regimes = np.array([0, 0, 3, 3, 2])
    directions = np.array([1, 1, 1, -1, 0])
    table = regime_position_table(positions, deltas, regimes, directions)
    assert set(table) == {"Overall", "LOW_VOL", "CRISIS", "HIGH_VOL"}
    assert table["LOW_VOL"]["mean_position"] == pytest.approx(0.55)
    assert table["CRISIS"]["mean_abs_position"] == pytest.approx(0.15)
    assert table["CRISIS"]["mean_delta"] == pytest.approx(0.05)
    assert table["HIGH_VOL"]["mean_delta"] == 0.0  # flat: no in-market step
    assert table["Overall"]["steps"] == 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sizer-e2e")
    data_path = folder / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(CONFIGS / "sizer-cpu-small.yaml")
    config = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data_path), episode_length=128),
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=2),
        train=dataclasses.replace(config.train, total_timesteps=256, eval_freq=128, checkpoint_freq=128, verbose=0),
    )
    train(config, run_dir=folder / "run")
    return folder / "run"


def test_training_writes_a_complete_run_folder(run_dir):
    for name in ("config.json", "artifacts/manifest.json", "artifacts/risk_config.json", "artifacts/validation.json",
                 "final_model.zip", "best/best_model.zip", "best/evaluations.json", "checkpoints/latest.json",
                 "training_summary.json"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.pkl"))
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert summary["algo"] == "recurrent_ppo" and summary["timesteps"] == 256
    assert json.loads((run_dir / "config.json").read_text())["algo"] == "recurrent_ppo"


def test_tensorboard_has_per_regime_mean_position_and_mean_delta(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for path in (run_dir / "tb").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    for tag in ("sizer/mean_position", "sizer/mean_delta", "sizer/pinned_high_share", "collapse/delta_pinned_share",
                "eval/sharpe", "eval/mean_delta", "train/approx_kl", "train/entropy_loss"):
        assert tag in tags, tag
    assert any(t.startswith("regime/") and t.endswith("/mean_position") for t in tags), sorted(tags)
    assert any(t.startswith("regime/") and t.endswith("/mean_delta") for t in tags), sorted(tags)


def test_evaluation_compares_the_sizer_with_delta_zero_and_records_the_test_look(run_dir):
    report = evaluate_run(run_dir, split="all")
    assert set(report["splits"]) == {"train", "val", "test"}
    for name in ("report.json", "report.md", "equity_test.npz"):
        assert (run_dir / name).is_file(), name
    section = report["splits"]["test"]
    for key in ("l3", "delta0", "l3_vs_delta0", "baselines", "significance", "regimes_l3", "regimes_delta0"):
        assert key in section, key
    assert section["l3_vs_delta0"]["best_baseline"] == "delta0"
    assert "buy_and_hold+rss" in section["baselines"]
    with np.load(run_dir / "equity_test.npz", allow_pickle=False) as curves:
        assert curves["l3_equity"][-1] - 1 == pytest.approx(section["l3"]["total_return"])
        assert curves["delta0_equity"][-1] - 1 == pytest.approx(section["delta0"]["total_return"])
        assert np.all(np.abs(curves["deltas"]) <= 0.30 + 1e-12)
    looks = [entry for entry in read_ledger(report["ledger"]["path"]) if entry["kind"] == "test_look"]
    assert any(entry["run_dir"] == str(run_dir) and entry["split"] == "test" for entry in looks)
    assert "L2 + RSS (delta = 0)" in (run_dir / "report.md").read_text()


def test_delta_zero_row_is_the_do_nothing_sizer(run_dir, tmp_path):
    report = json.loads((run_dir / "report.json").read_text())
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    from himari_env.artifacts import RunArtifacts
    from wrappers.stack import load_frame

    bundle = RunArtifacts.load(run_dir)
    prepared = prepare_market(load_frame(config.env.data), artifacts=bundle)
    kwargs = sizer_env_kwargs(config, split="val", episode_length=None)
    kwargs.pop("seed")
    zero = run_sizer_pass(ZeroDelta(), make_himari_sizer_env(prepared, **kwargs, artifacts=bundle))
    assert zero.equity[-1] - 1 == pytest.approx(report["splits"]["val"]["delta0"]["total_return"])


def test_resume_continues_from_the_latest_checkpoint(run_dir):
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, total_timesteps=384))
    summary = train(config, run_dir=run_dir, resume=True)
    assert summary["timesteps"] == 384 and summary["timesteps_this_session"] == 128
    evaluations = json.loads((run_dir / "best" / "evaluations.json").read_text())
    assert [record["num_timesteps"] for record in evaluations] == sorted(r["num_timesteps"] for r in evaluations)
    assert len(evaluations) >= 3  # the earlier evaluations are kept


def test_with_eval_source_the_validation_pass_feeds_the_delta_detector(tmp_path):
    data_path = tmp_path / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(CONFIGS / "sizer-cpu-small.yaml")
    config = dataclasses.replace(
        config, env=dataclasses.replace(config.env, data=str(data_path), episode_length=128),
        sizer=dataclasses.replace(config.sizer, delta_collapse_share=1e-9),  # every in-market step "at a bound"
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=1),
        train=dataclasses.replace(config.train, total_timesteps=256, eval_freq=64, checkpoint_freq=0, verbose=0,
                                  collapse_source="eval", collapse_hold_high=0.4, collapse_patience=1,
                                  stop_on_collapse=True))
    with pytest.warns(PolicyCollapseWarning, match="eval checks"):
        summary = train(config, run_dir=tmp_path / "run")
    assert summary["timesteps"] < 256  # stopped at the first collapsed validation pass
