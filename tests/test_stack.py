"""HimariBTC-v0: registration, the env checker, causality, fuzzing, determinism, vectorization."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import himari_env
from himari_env.data import synthesize_market
from himari_env.env import HimariBTCEnv
from himari_env.pipeline import prepare_market
from wrappers.stack import make_himari_env

N_BARS = 4000


@pytest.fixture(scope="module")
def frame():
    return synthesize_market(n_bars=N_BARS, seed=7).frame


@pytest.fixture(scope="module")
def prepared(frame):
    return prepare_market(frame, cache=False)


def test_importing_himari_env_registers_the_env():
    assert himari_env.ENV_ID in gym.registry
    spec = gym.spec("HimariBTC-v0")
    assert spec.entry_point == "wrappers.stack:make_himari_env"


def test_gym_make_with_no_argument_returns_the_full_stack():
    env = gym.make("HimariBTC-v0")
    names = []
    layer = env
    while hasattr(layer, "env"):
        names.append(type(layer).__name__)
        layer = layer.env
    assert {"RSSRiskAction", "RegimeFeatureObservation", "RegimeReward"} <= set(names)
    assert isinstance(env.unwrapped, HimariBTCEnv)
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.observation_space["features"].shape == (100, 50)
    observation, info = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    env.close()


def test_env_checker_passes_for_the_core_env(prepared):
    check_env(HimariBTCEnv(prepared.market, split="train", context=32, episode_length=64), skip_render_check=False)


@pytest.mark.parametrize("risk", [True, False])
def test_env_checker_passes_for_the_full_stack(prepared, risk):
    env = make_himari_env(prepared, context=32, episode_length=64, risk=risk)
    check_env(env.unwrapped)
    check_env(env, skip_render_check=True)


def test_info_carries_the_documented_keys(prepared):
    env = make_himari_env(prepared, context=16, episode_length=8)
    env.reset(seed=1)
    _, _, _, _, info = env.step(1)
    for key in ("timestamp", "price", "regime", "position", "equity", "fee", "drawdown", "reward_terms", "action"):
        assert key in info, key


def _trajectory(prepared_market, actions, **kwargs):
    env = make_himari_env(prepared_market, split="all", episode_length=None, context=24, **kwargs)
    observation, info = env.reset(seed=0)
    rows = [(info["bar_index"], observation, None)]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        rows.append((info["bar_index"], observation, reward))
        if terminated or truncated:
            break
    return rows


@pytest.mark.parametrize("regime_source", ["rules", "hmm"])
def test_observations_and_rewards_up_to_t_ignore_bars_after_t_plus_1(frame, regime_source):
    config_kwargs = {"fit_hmm": regime_source == "hmm"}
    from himari_env.pipeline import PipelineConfig

    original = prepare_market(frame, config=PipelineConfig(**config_kwargs), cache=False)
    # Fitted parts (scaler, HMM, risk calibration) come from the train split; perturb after it,
    # so what changes is only what a causal computation may not see.
    cut = 3200
    assert cut > original.market.splits["train"].stop
    perturbed_frame = frame.copy()
    rng = np.random.default_rng(0)
    shock = np.exp(np.cumsum(rng.normal(0, 0.02, N_BARS - cut)))
    for column in ("open", "high", "low", "close"):
        perturbed_frame.iloc[cut:, perturbed_frame.columns.get_loc(column)] *= shock
    perturbed_frame.iloc[cut:, perturbed_frame.columns.get_loc("volume")] *= 3.0
    perturbed = prepare_market(perturbed_frame, pipeline=original.pipeline, cache=False)
    actions = np.random.default_rng(1).integers(0, 3, N_BARS).tolist()
    a = _trajectory(original, actions, regime_source=regime_source)
    b = _trajectory(perturbed, actions, regime_source=regime_source)
    compared = 0
    for (bar_a, obs_a, reward_a), (bar_b, obs_b, reward_b) in zip(a, b):
        assert bar_a == bar_b
        if bar_a > cut - 1:  # the observation at bar t may use bars <= t only
            break
        np.testing.assert_array_equal(obs_a["features"], obs_b["features"])
        assert obs_a["regime"] == obs_b["regime"]
        np.testing.assert_array_equal(obs_a["position"], obs_b["position"])
        assert reward_a == reward_b  # reward of the decision at bar_a - 1 uses bars <= bar_a
        compared += 1
    assert compared > 1000


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(0, 2), min_size=1, max_size=300),
       risk=st.booleans())
def test_random_actions_never_produce_nan_or_out_of_space_observations(prepared, seed, actions, risk):
    env = make_himari_env(prepared, context=16, episode_length=300, risk=risk)
    observation, _ = env.reset(seed=seed)
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(observation)
        assert np.isfinite(reward)
        assert info["equity"] > 0
        assert all(np.isfinite(value) for value in info["reward_terms"].values())
        if terminated or truncated:
            break


@pytest.mark.parametrize("bad", [3, -1, 1.5, "LONG"])
def test_invalid_discrete_actions_raise_clear_errors(prepared, bad):
    env = make_himari_env(prepared, context=16, episode_length=10, risk=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="HOLD"):
        env.step(bad)


def test_the_same_seed_gives_the_same_trajectory(prepared):
    def run(seed):
        env = make_himari_env(prepared, context=16, episode_length=200)
        env.action_space.seed(seed)
        observation, _ = env.reset(seed=seed)
        out = []
        for _ in range(200):
            observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out.append((info["bar_index"], reward, info["equity"]))
            if terminated or truncated:
                break
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_bad_keyword_arguments_are_named(prepared):
    with pytest.raises(ValueError, match="split"):
        make_himari_env(prepared, split="future")
    with pytest.raises(ValueError, match="regime_source"):
        make_himari_env(prepared, regime_source="oracle")
    with pytest.raises(ValueError, match="preset"):
        make_himari_env(prepared, reward="moon")


def test_rgb_render_draws_price_positions_and_equity(prepared):
    env = make_himari_env(prepared, context=16, episode_length=50, render_mode="rgb_array")
    env.reset(seed=0)
    for action in [1, 1, 2, 0, 1] * 10:
        env.step(action)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0
    env.close()


def test_gymnasium_make_vec_works(frame):
    envs = gym.make_vec("HimariBTC-v0", num_envs=2, vectorization_mode="sync", data=frame, context=16,
                        episode_length=32)
    observations, _ = envs.reset(seed=0)
    assert observations["features"].shape == (2, 16, 50)
    observations, rewards, terminated, truncated, _ = envs.step(np.array([1, 2]))
    assert np.isfinite(rewards).all()
    envs.close()


def test_sb3_subproc_vec_env_works(frame, tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    path = tmp_path / "market.parquet"
    frame.to_parquet(path)
    # "module:id" makes each spawned worker import himari_env (and so register the env) first.
    vec = make_vec_env("himari_env:HimariBTC-v0", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv,
                       vec_env_kwargs={"start_method": "spawn"},
                       env_kwargs={"data": str(path), "context": 16, "episode_length": 32})
    observations = vec.reset()
    assert observations["features"].shape == (2, 16, 50)
    _, rewards, _, _ = vec.step(np.array([0, 1]))
    assert np.isfinite(rewards).all()
    vec.close()


@pytest.mark.parametrize("preset", ["adaptive", "simple", "opportunity", "sortino", "pnl"])
def test_every_reward_preset_runs_in_the_full_stack_with_finite_terms(prepared, preset):
    env = make_himari_env(prepared, context=16, episode_length=200, reward=preset)
    env.reset(seed=0)
    for action in np.random.default_rng(0).integers(0, 3, 200):
        _, reward, terminated, truncated, info = env.step(int(action))
        assert np.isfinite(reward)
        assert reward == pytest.approx(sum(info["reward_terms"].values()))
        if terminated or truncated:
            break
