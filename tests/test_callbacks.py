"""Training callbacks: regime action statistics, collapse detection, validation with best-model
selection, and resumable checkpoints — driven by known info streams and by real short runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.callbacks import (
    CollapseDetector,
    PolicyCollapseWarning,
    RegimeActionStatsCallback,
    ResumableCheckpointCallback,
    ValidationCallback,
    latest_checkpoint,
    make_training_callbacks,
    run_deterministic_pass,
)
from agents.config import TrainConfig
from agents.ppo import build_ppo, load_ppo
from himari_env import metrics
from himari_env.artifacts import ValidationState
from tests.test_extractor import TinyRegimeEnv, tiny_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_model() -> PPO:
    return build_ppo(DummyVecEnv([TinyRegimeEnv]), tiny_config(), tensorboard_log=None, seed=0)


def info(action: int, next_regime: int = 0, **terms: float) -> dict[str, Any]:
    """An info as the stack returns it: ``regime`` is that of the bar just reached (t + 1)."""
    return {"regime": next_regime, "action": action, "reward_terms": terms}


# Two envs, three steps: (regime observed at the decision bar, info). LOW_VOL: HOLD, LONG,
# HOLD. TRENDING: LONG, SHORT. CRISIS: HOLD. The infos' next-bar regimes deliberately differ.
KNOWN_STREAM = [
    [(0, info(0, 1, pnl=0.01)), (1, info(1, 1, pnl=0.03))],
    [(0, info(1, 0, pnl=-0.02)), (1, info(2, 3, pnl=0.00, trend_hold_cost=-0.5))],
    [(0, info(0, 2, pnl=0.00)), (3, info(0, 3, pnl=0.04))],
]


def feed(callback: Any, stream: list[list[tuple[int, dict[str, Any]]]]) -> list[bool]:
    """One rollout: per step, the observed regimes (as SB3's ``obs_tensor``) and the infos."""
    callback.on_rollout_start()
    results = []
    for step in stream:
        regimes = torch.as_tensor([regime for regime, _ in step])
        callback.update_locals({"obs_tensor": {"regime": regimes}, "infos": [i for _, i in step]})
        results.append(callback.on_step())
    callback.on_rollout_end()
    return results


def test_regime_shares_recorded_for_a_known_info_stream(tiny_model: PPO, tmp_path: Path) -> None:
    tiny_model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = RegimeActionStatsCallback()
    callback.init_callback(tiny_model)
    feed(callback, KNOWN_STREAM)
    recorded = tiny_model.logger.name_to_value
    expected = {
        "actions/hold_share": 3 / 6,
        "actions/long_share": 2 / 6,
        "actions/short_share": 1 / 6,
        "regime/LOW_VOL/share": 3 / 6,
        "regime/LOW_VOL/hold_share": 2 / 3,
        "regime/LOW_VOL/long_share": 1 / 3,
        "regime/LOW_VOL/short_share": 0.0,
        "regime/TRENDING/share": 2 / 6,
        "regime/TRENDING/hold_share": 0.0,
        "regime/TRENDING/long_share": 0.5,
        "regime/TRENDING/short_share": 0.5,
        "regime/HIGH_VOL/share": 0.0,
        "regime/CRISIS/share": 1 / 6,
        "regime/CRISIS/hold_share": 1.0,
        "regime/CRISIS/long_share": 0.0,
        "regime/CRISIS/short_share": 0.0,
        "reward_terms/pnl": (0.01 + 0.03 - 0.02 + 0.0 + 0.0 + 0.04) / 6,
        "reward_terms/trend_hold_cost": -0.5,  # averaged over the one step that reported it
    }
    for key, value in expected.items():
        assert recorded[key] == pytest.approx(value), key
    assert "regime/HIGH_VOL/hold_share" not in recorded  # never seen: no made-up share
    assert callback.last_scalars == pytest.approx(expected)


def test_regime_counts_restart_with_each_rollout(tiny_model: PPO) -> None:
    callback = RegimeActionStatsCallback()
    callback.init_callback(tiny_model)
    feed(callback, KNOWN_STREAM)
    feed(callback, [[(2, info(2)), (2, info(2))]])
    assert callback.last_scalars["actions/short_share"] == 1.0
    assert callback.last_scalars["regime/HIGH_VOL/share"] == 1.0
    assert "regime/LOW_VOL/hold_share" not in callback.last_scalars


def test_info_without_action_is_a_clear_error(tiny_model: PPO) -> None:
    callback = RegimeActionStatsCallback()
    callback.init_callback(tiny_model)
    callback.on_rollout_start()
    callback.update_locals(
        {"obs_tensor": {"regime": torch.as_tensor([0, 1])}, "infos": [info(0), {"regime": 1}]}
    )
    with pytest.raises(ValueError, match=r"info of env 1 lacks 'action'"):
        callback.on_step()


def test_rollout_without_a_regime_observation_is_a_clear_error(tiny_model: PPO) -> None:
    callback = RegimeActionStatsCallback()
    callback.init_callback(tiny_model)
    callback.on_rollout_start()
    callback.update_locals({"obs_tensor": torch.zeros(1, 3), "infos": [info(0)]})
    with pytest.raises(ValueError, match=r"no Dict observation with a 'regime' entry"):
        callback.on_step()


def test_collapse_detector_fires_on_an_always_hold_stream() -> None:
    detector = CollapseDetector(patience=3)
    with pytest.warns(
        PolicyCollapseWarning, match=r"HOLD share 100\.0% > 99%.*never trades.*ent_coef"
    ):
        flags = [detector.observe(1.0) for _ in range(3)]
    assert flags == [False, False, True]
    assert detector.collapsed and not detector.stop_requested


def test_collapse_detector_fires_on_an_always_trade_stream() -> None:
    detector = CollapseDetector(patience=2)
    with pytest.warns(PolicyCollapseWarning, match=r"HOLD share 0\.4% < 1%.*always trades"):
        detector.observe(0.0)
        detector.observe(0.004)


def test_collapse_detector_is_silent_on_a_mixed_stream() -> None:
    detector = CollapseDetector(patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolicyCollapseWarning)
        # Two collapsed checks in a row, then a healthy one: the streak restarts.
        for share in (1.0, 1.0, 0.31, 1.0, 1.0, 0.05, 0.5, 0.0, 0.98):
            assert not detector.observe(share)
    assert detector.streak == 0


def test_collapse_detector_counts_hold_actions_of_each_rollout(tiny_model: PPO) -> None:
    detector = CollapseDetector(patience=2)
    detector.init_callback(tiny_model)
    feed(detector, KNOWN_STREAM)
    feed(detector, [[(0, info(0)), (1, info(0))]] * 4)
    assert detector.history == [0.5, 1.0]


def test_collapse_detector_rejects_a_share_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"hold_share must be in \[0, 1\], got 1\.5"):
        CollapseDetector().observe(1.5)


def test_collapse_detector_stops_a_real_training_run() -> None:
    # Any HOLD share below 99.9 % counts as collapsed here, so the (untrained, mixed) policy
    # trips the detector at the end of its first rollout and learn() ends right after.
    config = tiny_config()
    model = build_ppo(DummyVecEnv([TinyRegimeEnv]), config, tensorboard_log=None, seed=0)
    detector = CollapseDetector(hold_low=0.999, hold_high=1.0, patience=1, stop_on_collapse=True)
    with pytest.warns(PolicyCollapseWarning, match=r"stopping training"):
        model.learn(total_timesteps=640, callback=detector)
    assert detector.stop_requested
    assert model.num_timesteps == config.ppo.n_steps + 1


def test_deterministic_pass_follows_the_env_accounting(tiny_model: PPO) -> None:
    env = TinyRegimeEnv(episode_length=30)
    first = run_deterministic_pass(tiny_model, env, seed=0)
    second = run_deterministic_pass(tiny_model, env, seed=0)
    assert first.equity.shape == (31,) and first.positions.shape == (30,)
    assert first.equity[0] == 1.0 and first.equity[-1] == env.equity
    np.testing.assert_array_equal(first.equity, second.equity)
    np.testing.assert_array_equal(first.actions, second.actions)
    assert set(np.unique(first.positions)) <= {-1.0, 0.0, 1.0}
    assert first.action_counts().sum() == 30
    # Filed under the regime observed at each decision bar (bars context - 1 ... ).
    np.testing.assert_array_equal(first.regimes, env.regime_ids[7 : 7 + 30])


def test_validation_saves_the_best_model_and_logs_eval_scalars(tmp_path: Path) -> None:
    config = tiny_config()
    model = build_ppo(
        DummyVecEnv([TinyRegimeEnv]), config, tensorboard_log=str(tmp_path / "tb"), seed=2
    )
    validation = ValidationCallback(
        lambda: TinyRegimeEnv(episode_length=40, market_seed=1),
        eval_freq=64,
        best_model_dir=tmp_path / "best",
        metric="sharpe",
    )
    model.learn(
        total_timesteps=192, callback=CallbackList([RegimeActionStatsCallback(), validation])
    )

    history = json.loads((tmp_path / "best" / "evaluations.json").read_text(encoding="utf-8"))
    assert [record["num_timesteps"] for record in history] == [64, 128, 192]
    best = json.loads((tmp_path / "best" / "best_metric.json").read_text(encoding="utf-8"))
    assert best["metric"] == "sharpe"
    assert best["value"] == max(record["value"] for record in history if record["eligible"])

    # The saved best model reproduces its validation Sharpe exactly.
    reloaded = PPO.load(tmp_path / "best" / "best_model.zip", device="cpu")
    replay = run_deterministic_pass(
        reloaded, TinyRegimeEnv(episode_length=40, market_seed=1), seed=0
    )
    assert metrics.sharpe_ratio(replay.equity) == best["value"]
    assert best["hold_share"] == pytest.approx(np.mean(replay.actions == 0))

    header = (
        (tmp_path / "tb" / "progress.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    )
    for column in (
        "eval/sharpe",
        "eval/total_return",
        "eval/actions/hold_share",
        "regime/LOW_VOL/hold_share",
        "reward_terms/pnl",
    ):
        assert column in header


def test_a_collapsed_validation_pass_cannot_become_the_best_model(tmp_path: Path) -> None:
    # With an eligible HOLD range of [99.9 %, 100 %], the untrained (mixed) policy counts as
    # collapsed-the-other-way: its passes are recorded but none is saved as the best model.
    model = build_ppo(DummyVecEnv([TinyRegimeEnv]), tiny_config(), tensorboard_log=None, seed=2)
    validation = ValidationCallback(
        lambda: TinyRegimeEnv(episode_length=40, market_seed=1),
        eval_freq=64,
        best_model_dir=tmp_path / "best",
        eligible_hold_range=(0.999, 1.0),
    )
    model.learn(total_timesteps=128, callback=CallbackList([RegimeActionStatsCallback(), validation]))
    history = json.loads((tmp_path / "best" / "evaluations.json").read_text(encoding="utf-8"))
    assert len(history) == 2
    assert all(not record["eligible"] and not record["improved"] for record in history)
    assert not (tmp_path / "best" / "best_model.zip").exists()


def test_a_resumed_validation_keeps_the_earlier_best_model_and_history(tmp_path: Path) -> None:
    # Fault 1: on resume the best score restarted at minus infinity and the history at [],
    # so a worse pass replaced best_model.zip and evaluations.json lost the earlier records.
    earlier = [{"num_timesteps": 64, "metric": "sharpe", "value": 1e6, "eligible": True, "improved": True}]
    state = ValidationState(metric="sharpe", best_value=1e6, best_num_timesteps=64, history=earlier)
    model = build_ppo(DummyVecEnv([TinyRegimeEnv]), tiny_config(), tensorboard_log=None, seed=2)
    validation = ValidationCallback(
        lambda: TinyRegimeEnv(episode_length=40, market_seed=1),
        eval_freq=64,
        best_model_dir=tmp_path / "best",
        eligible_hold_range=None,
        state=state,
        state_path=tmp_path / "validation.json",
    )
    model.learn(total_timesteps=128, callback=CallbackList([RegimeActionStatsCallback(), validation]))
    history = json.loads((tmp_path / "best" / "evaluations.json").read_text(encoding="utf-8"))
    assert history[0] == earlier[0]
    assert [record["num_timesteps"] for record in history] == [64, 128]  # continues after step 64
    assert not history[1]["improved"] and history[1]["value"] < 1e6
    assert not (tmp_path / "best" / "best_model.zip").exists()
    saved = ValidationState.load(tmp_path / "validation.json")
    assert (saved.best_value, saved.best_num_timesteps, saved.history) == (1e6, 64, history)
    with pytest.raises(ValueError, match="selects by 'sharpe'"):
        ValidationCallback(TinyRegimeEnv, eval_freq=10, best_model_dir=tmp_path, metric="total_return", state=state)


def test_validation_metric_must_be_known() -> None:
    with pytest.raises(
        ValueError, match=r"metric must be one of \['sharpe', 'total_return', 'mean_reward'\]"
    ):
        ValidationCallback(TinyRegimeEnv, eval_freq=10, best_model_dir="unused", metric="calmar")


def test_checkpoints_let_training_resume_where_it_stopped(tmp_path: Path) -> None:
    config = tiny_config()
    model = build_ppo(DummyVecEnv([TinyRegimeEnv]), config, tensorboard_log=None, seed=0)
    model.learn(total_timesteps=160, callback=ResumableCheckpointCallback(64, tmp_path))
    saved = sorted(path.name for path in tmp_path.glob("*.zip"))
    # Every 64 steps, plus the end of training (n_steps = 64, so learn stops at 192).
    assert saved == [
        "ppo_0000000064_steps.zip",
        "ppo_0000000128_steps.zip",
        "ppo_0000000192_steps.zip",
    ]
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.num_timesteps == 192
    assert (
        json.loads((tmp_path / "ppo_0000000128_steps.json").read_text(encoding="utf-8"))[
            "num_timesteps"
        ]
        == 128
    )

    resumed = load_ppo(
        checkpoint.model_path,
        DummyVecEnv([TinyRegimeEnv]),
        config,
        num_timesteps=checkpoint.num_timesteps,
    )
    for saved_parameter, loaded in zip(
        model.policy.parameters(), resumed.policy.parameters(), strict=True
    ):
        assert torch.equal(saved_parameter, loaded)
    resumed.learn(total_timesteps=64, reset_num_timesteps=False)
    assert resumed.num_timesteps == 256


def test_no_checkpoint_yet_is_none_and_a_broken_pointer_is_an_error(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "latest.json").write_text(
        '{"model_file": "gone.zip", "num_timesteps": 5}', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"names gone\.zip, which does not exist"):
        latest_checkpoint(tmp_path)


def test_training_callbacks_follow_the_config(tmp_path: Path) -> None:
    config = tiny_config(eval_freq=64, checkpoint_freq=128, collapse_source="eval")
    callbacks = make_training_callbacks(config, run_dir=tmp_path, make_eval_env=TinyRegimeEnv)
    kinds = [type(callback) for callback in callbacks.callbacks]
    assert kinds == [
        RegimeActionStatsCallback,
        CollapseDetector,
        ValidationCallback,
        ResumableCheckpointCallback,
    ]
    validation = callbacks.callbacks[2]
    assert validation.collapse_detector is callbacks.callbacks[1]
    assert validation.best_model_dir == tmp_path / "best"
    with pytest.raises(ValueError, match=r"needs make_eval_env"):
        make_training_callbacks(config, run_dir=tmp_path, make_eval_env=None)
    assert TrainConfig().collapse_source == "rollout"
