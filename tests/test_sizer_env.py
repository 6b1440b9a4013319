"""HimariBTCSizer-v0: registration, Gymnasium's and SB3's checkers, the delta arithmetic, the
caps the delta can never breach, delta = 0 = the RSS layer, causality, determinism."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import himari_env
from agents.sizer_callbacks import ZeroDelta, run_sizer_pass
from experiments.baselines import build_baselines, regime_gated_directions
from himari_env.data import synthesize_market
from himari_env.env import HimariBTCEnv
from himari_env.pipeline import prepare_market
from himari_env.risk.backtest import run_backtest
from himari_env.risk.composer import RiskState, compose_position
from himari_env.risk.leverage import leverage_limit
from wrappers.sizer import (
    BINDINGS,
    DIRECTION_RULES,
    BoundedDeltaSizer,
    make_himari_sizer_env,
    rule_directions,
    size_with_delta,
)
from wrappers.stack import make_himari_env

N_BARS = 4000


@pytest.fixture(scope="module")
def frame():
    return synthesize_market(n_bars=N_BARS, seed=7).frame


@pytest.fixture(scope="module")
def prepared(frame):
    return prepare_market(frame, cache=False)


@pytest.fixture(scope="module")
def risk_config(prepared):
    return make_himari_env(prepared, context=1, episode_length=8).config


def test_importing_himari_env_registers_the_sizer():
    assert himari_env.SIZER_ENV_ID == "HimariBTCSizer-v0"
    assert gym.spec("HimariBTCSizer-v0").entry_point == "wrappers.sizer:make_himari_sizer_env"


def test_gym_make_builds_the_sizer_on_the_l2_stack(prepared):
    env = gym.make("HimariBTCSizer-v0", data=prepared, context=4, episode_length=16)
    assert isinstance(env.unwrapped, HimariBTCEnv)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert set(env.observation_space.spaces) == {"features", "regime", "position", "direction", "base_size", "binding"}
    assert env.observation_space["binding"] == gym.spaces.Discrete(len(BINDINGS))
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    env.close()


@pytest.mark.parametrize("source", DIRECTION_RULES)
def test_gymnasium_and_sb3_checkers_pass(prepared, source):
    env = make_himari_sizer_env(prepared, direction_source=source, context=2, episode_length=64)
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)


def test_rule_directions_are_the_scoreboard_baselines(prepared):
    close, regimes = prepared.market.close, prepared.regime_ids["rules"]
    baselines = build_baselines(prepared, regime_ids=regimes, risk_config=None, fee_rate=0.001, max_leverage=1.0,
                                supervised=False)
    np.testing.assert_array_equal(rule_directions("always_long", close, regimes), baselines.directions["buy_and_hold"])
    np.testing.assert_array_equal(rule_directions("momentum", close, regimes), baselines.directions["momentum_24_ls"])
    np.testing.assert_array_equal(rule_directions("regime_gated", close, regimes), regime_gated_directions(regimes))
    with pytest.raises(ValueError, match="direction_source"):
        rule_directions("oracle", close, regimes)


def _random_state(draw_floats):
    vol, sigma, var_long, var_short, drawdown, budget, kelly, regime = draw_floats
    return RiskState(vol, sigma, var_long, var_short, regime, drawdown, budget, kelly)


_states = st.tuples(
    st.floats(0.05, 3.0), st.floats(1e-4, 0.05), st.floats(1e-4, 0.1), st.floats(1e-4, 0.1), st.floats(0.0, 0.5),
    st.floats(0.5, 1.5), st.one_of(st.just(math.inf), st.floats(0.0, 2.0)), st.integers(0, 3))


@settings(max_examples=200, deadline=None)
@given(draw=_states, direction=st.sampled_from([-1, 0, 1]), a=st.floats(-1.0, 1.0), leverage=st.floats(0.2, 3.0))
def test_the_delta_scales_the_base_and_never_breaches_the_caps(risk_config, draw, direction, a, leverage):
    state = _random_state(draw)
    reference = compose_position(direction, state, risk_config, leverage)
    zero = size_with_delta(direction, state, risk_config, leverage, 0.0)
    assert zero.position == reference.position  # delta = 0 is exactly the RSS layer
    sized = size_with_delta(direction, state, risk_config, leverage, 0.30 * a)
    if direction == 0:
        assert sized.position == 0.0 and sized.binding == "hold"
        return
    base = reference.sizes[4]
    assert sized.base == base
    assert sized.sizes[5] == pytest.approx(base * (1.0 + 0.30 * a))
    # |position| never exceeds what the caps allow: H7 of the tightest of H6, H2, H1, H5.
    tightest = min(_binding_caps(reference))
    allowed = leverage_limit(tightest, risk_config.leverage, leverage)
    assert abs(sized.position) <= allowed + 1e-15
    assert abs(sized.position) <= min(risk_config.leverage.max_leverage, leverage) + 1e-15
    assert np.sign(sized.position) in (0, direction)


def _binding_caps(reference):
    """The cap values implied by a delta-0 composition: a cap that bound shows its value;
    one that did not bind is at least the size it let through."""
    sizes = reference.sizes
    return [sizes[5] if sizes[5] < sizes[4] else math.inf, sizes[6] if sizes[6] < sizes[5] else math.inf,
            sizes[7] if sizes[7] < sizes[6] else math.inf, sizes[8] if sizes[8] < sizes[7] else math.inf]


def test_actions_at_the_bounds_move_the_position_by_at_most_30_percent(prepared):
    env = make_himari_sizer_env(prepared, direction_source="always_long", context=1, episode_length=200)
    env.reset(seed=3)
    seen = 0
    for step in range(200):
        a = (1.0, -1.0, 0.0)[step % 3]
        _, _, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        base = info["base_size"]
        assert info["delta"] == pytest.approx(0.30 * a)
        assert info["requested_size"] == pytest.approx(base * (1 + 0.30 * a))
        if info["risk_rebalanced"]:
            assert 0.0 <= info["position"] <= base * 1.30 + 1e-6
            seen += 1
        if terminated or truncated:
            break
    assert seen > 10


@pytest.mark.parametrize("bad", [np.array([1.5], dtype=np.float32), np.array([np.nan], dtype=np.float32),
                                 np.array([0.1, 0.2], dtype=np.float32), "x"])
def test_actions_outside_the_box_raise_a_clear_error(prepared, bad):
    env = make_himari_sizer_env(prepared, context=1, episode_length=8)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be one number in \[-1, 1\]"):
        env.step(bad)


def test_risk_false_and_a_missing_l2_run_are_refused(prepared):
    with pytest.raises(ValueError, match="risk=True"):
        make_himari_sizer_env(prepared, risk=False)
    with pytest.raises(ValueError, match="l2_run"):
        make_himari_sizer_env(prepared, direction_source="l2_run")


def test_delta_zero_is_exactly_the_rss_layer_on_the_same_direction(prepared, risk_config):
    """The do-nothing sizer with the regime-gated rule reproduces the scoreboard's
    ``regime_gated+rss`` pass (RiskEngine + composer + band) bar for bar."""
    env = make_himari_sizer_env(prepared, direction_source="regime_gated", context=1, split="val",
                                episode_length=None, risk_config=risk_config)
    sizer_pass = run_sizer_pass(ZeroDelta(), env, seed=0)
    market = prepared.market
    regimes = prepared.regime_ids["rules"]
    start = int(sizer_pass.bar_indices[0])
    steps = sizer_pass.positions.size
    reference = run_backtest(market.returns, regime_gated_directions(regimes), regimes, start=start,
                             stop=start + steps, config=risk_config, fee_rate=0.001, max_leverage=1.0)
    np.testing.assert_allclose(sizer_pass.positions, reference.positions, rtol=0, atol=1e-7)
    np.testing.assert_allclose(sizer_pass.equity, reference.equity, rtol=1e-9)


def _trajectory(prepared_market, actions, source):
    env = make_himari_sizer_env(prepared_market, direction_source=source, split="all", episode_length=None,
                                context=24)
    observation, info = env.reset(seed=0)
    rows = [(info["bar_index"], observation, None)]
    for a in actions:
        observation, reward, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        rows.append((info["bar_index"], observation, reward))
        if terminated or truncated:
            break
    return rows


@pytest.mark.parametrize("source", ["momentum", "regime_gated"])
def test_observations_and_rewards_up_to_t_ignore_bars_after_t_plus_1(frame, source):
    original = prepare_market(frame, cache=False)
    cut = 3200
    assert cut > original.market.splits["train"].stop
    perturbed_frame = frame.copy()
    rng = np.random.default_rng(0)
    shock = np.exp(np.cumsum(rng.normal(0, 0.02, N_BARS - cut)))
    for column in ("open", "high", "low", "close"):
        perturbed_frame.iloc[cut:, perturbed_frame.columns.get_loc(column)] *= shock
    perturbed_frame.iloc[cut:, perturbed_frame.columns.get_loc("volume")] *= 3.0
    perturbed = prepare_market(perturbed_frame, pipeline=original.pipeline, cache=False)
    actions = np.random.default_rng(1).uniform(-1, 1, N_BARS).tolist()
    a = _trajectory(original, actions, source)
    b = _trajectory(perturbed, actions, source)
    compared = 0
    for (bar_a, obs_a, reward_a), (bar_b, obs_b, reward_b) in zip(a, b):
        assert bar_a == bar_b
        if bar_a > cut - 1:
            break
        for key in ("features", "position", "direction", "base_size"):
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        assert obs_a["regime"] == obs_b["regime"] and obs_a["binding"] == obs_b["binding"]
        assert reward_a == reward_b
        compared += 1
    assert compared > 1000


def test_the_same_seed_gives_the_same_trajectory(prepared):
    def run():
        env = make_himari_sizer_env(prepared, direction_source="momentum", context=1, episode_length=128)
        env.action_space.seed(5)
        env.reset(seed=11)
        out = []
        for _ in range(128):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out.append((reward, info["position"], info["equity"]))
            if terminated or truncated:
                break
        return out

    assert run() == run()


def test_decision_interval_wraps_the_sizer(prepared):
    env = make_himari_sizer_env(prepared, context=1, episode_length=40, decision_interval=4)
    assert isinstance(env.env, BoundedDeltaSizer)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.5], dtype=np.float32))
    assert info["decision_bars"] == 4


def _train_l2_run(folder, **env_changes):
    """A tiny trained HimariBTC-v0 run (the L2 direction source) on a synthetic file in ``folder``."""
    import dataclasses

    from agents.config import load_config
    from experiments.train import train
    from tests.conftest import REPO_ROOT

    data_path = folder / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    config = dataclasses.replace(
        config, env=dataclasses.replace(config.env, data=str(data_path), episode_length=128, **env_changes),
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=2),
        train=dataclasses.replace(config.train, total_timesteps=256, n_envs=1, eval_freq=0, checkpoint_freq=0,
                                  verbose=0))
    train(config, run_dir=folder / "run")
    return data_path, folder / "run"


@pytest.fixture(scope="module")
def l2_run(tmp_path_factory):
    return _train_l2_run(tmp_path_factory.mktemp("l2-source"))


@pytest.fixture(scope="module")
def l2_run_spot_view(tmp_path_factory):
    """An L2 run that observes 3 named features and trades long/flat (as the spot preset does)."""
    return _train_l2_run(tmp_path_factory.mktemp("l2-view"), action_set="long_flat",
                         observed_features=("trend_pct", "ekf_logret_168", "ekf_rv_24"))


@pytest.mark.parametrize("source", ["l2_run", "l2_run_spot_view"])
def test_an_l2_run_source_with_delta_zero_replays_the_l2_agents_own_pass(source, request):
    """With delta = 0 the sizer holds exactly the L2 stack's positions, so the L2 policy sees the
    observation it would see in its own env: the two passes agree bar for bar (also for a run
    that observes a feature view and trades long/flat)."""
    import json

    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.config import ExperimentConfig
    from agents.ppo import load_ppo
    from experiments.evaluate import run_pass
    from himari_env.artifacts import RunArtifacts

    data_path, run_dir = request.getfixturevalue(source)
    bundle = RunArtifacts.load(run_dir)
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    l2_env = make_himari_env(str(data_path), split="val", context=32, episode_length=None, artifacts=bundle,
                             action_set=config.env.action_set, observed_features=config.env.observed_features)
    model = load_ppo(run_dir / "final_model.zip", DummyVecEnv([lambda: l2_env]), config)
    l2_pass = run_pass(l2_env, lambda observation, bar: int(model.predict(observation, deterministic=True)[0]))
    sizer_env = make_himari_sizer_env(str(data_path), direction_source="l2_run", l2_run=run_dir, split="val",
                                      context=1, episode_length=None)
    sizer_pass = run_sizer_pass(ZeroDelta(), sizer_env)
    np.testing.assert_array_equal(sizer_pass.bar_indices, l2_pass.bar_indices)
    np.testing.assert_array_equal(np.array([(0, 1, 2)[(0, 1, -1).index(d)] for d in sizer_pass.directions]),
                                  l2_pass.actions)
    np.testing.assert_array_equal(sizer_pass.positions, l2_pass.positions)
    np.testing.assert_array_equal(sizer_pass.equity, l2_pass.equity)
    assert np.count_nonzero(l2_pass.actions) > 0  # the L2 policy trades: the positions compared are sized


def _sizer_on_l2_run(data_path, run_dir):
    """The sizer preset on the L2 run's data and bundle, at test size (64 steps)."""
    import dataclasses

    from agents.config import load_config
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "experiments" / "configs" / "sizer-cpu-small.yaml")
    return dataclasses.replace(
        config, env=dataclasses.replace(config.env, data=str(data_path), episode_length=64),
        sizer=dataclasses.replace(config.sizer, direction_source="l2_run", l2_run=str(run_dir)),
        ppo=dataclasses.replace(config.ppo, n_steps=32, batch_size=32, n_epochs=1),
        train=dataclasses.replace(config.train, total_timesteps=64, eval_freq=0, checkpoint_freq=0, verbose=0))


def test_a_sizer_run_on_an_l2_run_trains_on_its_bundle_and_refuses_another(l2_run, tmp_path):
    from experiments.train import train
    from himari_env.artifacts import RunArtifacts

    data_path, run_dir = l2_run
    summary = train(_sizer_on_l2_run(data_path, run_dir), run_dir=tmp_path / "sizer")
    assert summary["timesteps"] == 64
    assert RunArtifacts.load(tmp_path / "sizer").fingerprint() == RunArtifacts.load(run_dir).fingerprint()
    other = tmp_path / "other-bundle"
    from himari_env.artifacts import build_run_artifacts

    bundle, _ = build_run_artifacts(synthesize_market(n_bars=3000, seed=12).frame, cache=False)
    bundle.save(other)
    with pytest.raises(ValueError, match="not the run bundle of the L2 run"):
        make_himari_sizer_env(str(data_path), direction_source="l2_run", l2_run=run_dir, artifacts=other)


def test_a_sizer_run_on_an_l2_run_refuses_a_risk_section_the_l2_bundle_does_not_have(l2_run, tmp_path):
    import dataclasses

    from agents.config import RiskSettings
    from experiments.train import train
    from himari_env.risk.regime_multipliers import RegimeMultipliers

    data_path, run_dir = l2_run
    config = dataclasses.replace(_sizer_on_l2_run(data_path, run_dir),
                                 risk=RiskSettings(regime_multipliers=RegimeMultipliers(crisis=0.5)))
    with pytest.raises(ValueError, match="risk section differs from the RSS settings of the L2 run"):
        train(config, run_dir=tmp_path / "sizer")
