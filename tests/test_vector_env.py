"""The batched env (himari_env.vector): every env of the batch IS an independent single-env stack.

Specification: for random starts (seeds) and random actions, env i of ``HimariBTCVecEnv`` /
``HimariBTCVectorEnv`` gives the same observations, rewards, terminations, truncations and
infos as ``make_himari_env`` with the same arguments, reset with the same seed and given the
same actions, bit for bit (the reward's ``math.fsum`` is reproduced exactly), across episode
ends (autoreset continues each env's generator, as a subprocess worker's env does), for
every reward preset, with and without the RSS layer, hourly and k-bar decisions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.utils.passive_env_checker import data_shares_objects
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv

import himari_env
from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from himari_env.risk.calibration import calibrate_risk
from himari_env.vector import BatchedHimariStack, HimariBTCVecEnv, HimariBTCVectorEnv
from wrappers.rewards import REWARD_PRESETS
from wrappers.stack import make_himari_env

N_BARS = 3000
CONTEXT = 16
SB3_KEYS = ("terminal_observation", "TimeLimit.truncated")


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=N_BARS, seed=7).frame, cache=False)


@pytest.fixture(scope="module")
def risk_config(prepared):
    market = prepared.market
    train = market.splits["train"]
    return calibrate_risk(market.returns[train], gap_before=market.gap_before[train])


def _same(a: Any, b: Any, where: str) -> None:
    assert data_equivalence(a, b, exact=True), f"{where}: batched {a!r} != single {b!r}"


def _same_float(a: float, b: float, where: str) -> None:
    assert type(a) is type(b) or isinstance(a, float | np.floating), where
    assert np.float64(a).view(np.int64) == np.float64(b).view(np.int64), f"{where}: {a!r} != {b!r} (bits)"


def _row(obs: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {key: (int(value[i]) if key == "regime" else value[i]) for key, value in obs.items()}


def _run_lockstep(prepared, env_kwargs: dict[str, Any], *, n_envs: int, seed: int, actions: np.ndarray) -> dict[str, int]:
    """Step a HimariBTCVecEnv and n_envs single stacks side by side; assert equality everywhere.
    Returns counts of episode ends seen."""
    vec = HimariBTCVecEnv(n_envs, prepared, **env_kwargs)
    singles = [make_himari_env(prepared, **env_kwargs) for _ in range(n_envs)]
    vec.seed(seed)
    obs = vec.reset()
    for i, single in enumerate(singles):
        single_obs, single_info = single.reset(seed=seed + i)
        _same(_row(obs, i), single_obs, f"reset obs env {i}")
        _same(vec.reset_infos[i], single_info, f"reset info env {i}")
    ends = {"terminated": 0, "truncated": 0}
    for step, action in enumerate(actions):
        obs, rewards, dones, infos = vec.step(action)
        assert rewards.dtype == np.float64 and dones.dtype == np.bool_
        for i, single in enumerate(singles):
            where = f"step {step} env {i} ({env_kwargs})"
            single_obs, reward, terminated, truncated, single_info = single.step(int(action[i]))
            _same_float(rewards[i], reward, f"{where} reward")
            assert dones[i] == (terminated or truncated), where
            info = dict(infos[i])
            assert info.pop("TimeLimit.truncated") == (truncated and not terminated), where
            if terminated or truncated:
                ends["terminated" if terminated else "truncated"] += 1
                _same(info.pop("terminal_observation"), single_obs, f"{where} terminal obs")
                _same(info, single_info, f"{where} info")
                single_obs, reset_info = single.reset()  # the worker's autoreset: no seed
                _same(vec.reset_infos[i], reset_info, f"{where} reset info")
            else:
                _same(info, single_info, f"{where} info")
            _same(_row(obs, i), single_obs, f"{where} obs")
    vec.close()
    return ends


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    preset=st.sampled_from(REWARD_PRESETS),
    risk=st.booleans(),
    decision_interval=st.sampled_from([1, 3]),
    episode_length=st.integers(4, 11),
    action_set=st.sampled_from(["long_short", "long_flat"]),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_every_env_of_the_batch_is_the_single_env_stack(prepared, risk_config, preset, risk, decision_interval,
                                                        episode_length, action_set, seed, data):
    n_envs = 3
    steps = data.draw(st.integers(1, 12), label="steps")
    top = 2 if action_set == "long_short" else 1
    actions = np.array(data.draw(st.lists(st.lists(st.integers(0, top), min_size=n_envs, max_size=n_envs),
                                          min_size=steps, max_size=steps), label="actions"), dtype=np.int64)
    kwargs = {"context": CONTEXT, "episode_length": episode_length, "reward": preset, "risk": risk,
              "decision_interval": decision_interval, "action_set": action_set}
    if risk:
        kwargs["risk_config"] = risk_config
    _run_lockstep(prepared, kwargs, n_envs=n_envs, seed=seed, actions=actions)


@pytest.mark.parametrize("preset", REWARD_PRESETS)
def test_every_preset_across_several_episode_ends(prepared, risk_config, preset):
    """Long enough to cross episode ends in every env (autoreset continues the generator)."""
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 3, (40, 4))
    ends = _run_lockstep(prepared, {"context": CONTEXT, "episode_length": 9, "reward": preset, "risk_config": risk_config,
                                    "decision_interval": 2}, n_envs=4, seed=11, actions=actions)
    assert ends["truncated"] >= 8


def test_an_observed_feature_subset_is_the_single_stacks_and_the_named_columns(prepared, risk_config):
    observed = ["trend_pct", "ekf_logret_168", "ekf_rv_24"]
    rng = np.random.default_rng(4)
    kwargs = {"context": CONTEXT, "episode_length": 7, "risk_config": risk_config, "decision_interval": 3,
              "action_set": "long_flat", "observed_features": observed}
    _run_lockstep(prepared, kwargs, n_envs=3, seed=2, actions=rng.integers(0, 2, (20, 3)))
    vec = HimariBTCVecEnv(2, prepared, **kwargs)
    columns = [prepared.observation_feature_names.index(name) for name in observed]
    np.testing.assert_array_equal(vec.get_attr("feature_table", indices=[0])[0],
                                  prepared.observation_features[:, columns])
    assert vec.observation_space["features"].shape == (CONTEXT, 3)
    vec.close()


@pytest.mark.parametrize("preset", ["adaptive", "opportunity"])
def test_the_hmm_regime_source_sets_observation_and_reward_regimes(preset):
    """regime_source "hmm": the agent's regime (observation, reward costs, RSS multiplier) is the
    HMM filter's, info["regime"] stays the market's labeler regime, as in the single env."""
    from himari_env.pipeline import PipelineConfig

    with_hmm = prepare_market(synthesize_market(n_bars=N_BARS, seed=7).frame, config=PipelineConfig(fit_hmm=True),
                              cache=False)
    assert (with_hmm.regime_ids["hmm"] != with_hmm.regime_ids["rules"]).any()
    rng = np.random.default_rng(9)
    _run_lockstep(with_hmm, {"context": CONTEXT, "episode_length": 12, "reward": preset, "regime_source": "hmm"},
                  n_envs=3, seed=1, actions=rng.integers(0, 3, (20, 3)))


def test_the_default_construction_calibrates_the_risk_layer_as_the_single_env(prepared):
    """risk_config=None: the template stack calibrates on train, as RSSRiskAction does."""
    rng = np.random.default_rng(5)
    _run_lockstep(prepared, {"context": CONTEXT, "episode_length": 6}, n_envs=2, seed=0,
                  actions=rng.integers(0, 3, (10, 2)))


def test_a_full_pass_without_episode_length_is_the_deterministic_pass(prepared, risk_config):
    batch = BatchedHimariStack(2, prepared, split="val", episode_length=None, context=CONTEXT, risk_config=risk_config)
    batch.reset_envs([0, 1], [0, 1])
    first, end = batch.first_decision, batch.end_decision
    assert batch.bar_index.tolist() == [first, first]
    assert batch.istate[1].tolist() == [end, end]


def test_bankruptcy_terminates_like_the_single_env(prepared):
    """A 150 % rally under a short wipes the account out: terminated, info bankrupt, equity 0."""
    market = prepared.market
    returns = market.returns.copy()
    first, end = market.decision_range("train", CONTEXT)
    returns[first + 3 : end : 7] = 1.5
    crashing = dataclasses.replace(prepared, market=dataclasses.replace(market, returns=returns))
    shorts = np.full((12, 3), 2, dtype=np.int64)
    ends = _run_lockstep(crashing, {"context": CONTEXT, "episode_length": 30, "risk": False}, n_envs=3, seed=2,
                         actions=shorts)
    assert ends["terminated"] >= 3
    ends = _run_lockstep(crashing, {"context": CONTEXT, "episode_length": 30, "risk": False, "reward": "sortino",
                                    "decision_interval": 4}, n_envs=3, seed=2, actions=shorts[:6])
    assert ends["terminated"] >= 3


def test_an_ended_episode_must_be_reset_before_stepping(prepared):
    batch = BatchedHimariStack(2, prepared, context=CONTEXT, episode_length=2, risk=False)
    with pytest.raises(RuntimeError, match="before every env was reset"):
        batch.step(np.array([0, 0]))
    batch.reset_envs([0, 1], [0, 1])
    batch.step(np.array([1, 2]))
    _, _, truncated, _ = batch.step(np.array([1, 2]))
    assert truncated.all()
    with pytest.raises(RuntimeError, match="env 0's episode ended"):
        batch.step(np.array([0, 0]))
    batch.reset_envs([0, 1])
    batch.step(np.array([0, 0]))


def test_training_infos_are_the_full_infos_subset(prepared, risk_config):
    kwargs = {"context": CONTEXT, "episode_length": 8, "risk_config": risk_config, "decision_interval": 2}
    full = HimariBTCVecEnv(3, prepared, **kwargs)
    light = HimariBTCVecEnv(3, prepared, info_level="training", **kwargs)
    none = HimariBTCVecEnv(3, prepared, info_level="none", **kwargs)
    for env in (full, light, none):
        env.seed(4)
        env.reset()
    rng = np.random.default_rng(1)
    for action in rng.integers(0, 3, (12, 3)):
        obs_f, rew_f, done_f, infos_f = full.step(action)
        obs_l, rew_l, done_l, infos_l = light.step(action)
        obs_n, rew_n, done_n, infos_n = none.step(action)
        _same((obs_l, rew_l, done_l), (obs_f, rew_f, done_f), "training level")
        _same((obs_n, rew_n, done_n), (obs_f, rew_f, done_f), "none level")
        for i in range(3):
            expected = {key: infos_f[i][key] for key in ("action", "bar_index", "equity", "position", "reward_terms",
                                                          *SB3_KEYS) if key in infos_f[i]}
            _same(infos_l[i], expected, f"training info env {i}")
            _same(infos_n[i], {key: infos_f[i][key] for key in SB3_KEYS if done_f[i]}, f"none info env {i}")


def test_the_sb3_vec_env_matches_a_dummy_vec_env_of_single_stacks(prepared, risk_config):
    """Same seeding and autoreset as SB3's own in-process vectorization of the single env."""
    kwargs = {"context": CONTEXT, "episode_length": 7, "risk_config": risk_config}
    ours = HimariBTCVecEnv(3, prepared, **kwargs)
    theirs = DummyVecEnv([lambda: make_himari_env(prepared, **kwargs) for _ in range(3)])
    assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space
    assert ours.render_mode is None
    for env in (ours, theirs):
        env.seed(9)
    _same(ours.reset(), dict(theirs.reset()), "reset")  # DummyVecEnv returns an OrderedDict
    rng = np.random.default_rng(2)
    for action in rng.integers(0, 3, (20, 3)):
        obs, rewards, dones, infos = ours.step(action)
        obs_d, rewards_d, dones_d, infos_d = theirs.step(action)
        _same(obs, dict(obs_d), "obs")
        assert np.array_equal(rewards.astype(np.float32), rewards_d) and np.array_equal(dones, dones_d)
        for info in infos_d:
            if "terminal_observation" in info:
                info["terminal_observation"] = dict(info["terminal_observation"])
        _same(infos, infos_d, "infos")


def test_sb3_attribute_access(prepared, risk_config):
    env = HimariBTCVecEnv(2, prepared, context=CONTEXT, episode_length=5, risk_config=risk_config, decision_interval=2)
    env.seed(0)
    env.reset()
    assert env.get_attr("decision_interval") == [2, 2]
    assert env.get_attr("render_mode") == [None, None]
    assert env.get_attr("bar_index") == env.batch.bar_index.tolist()
    assert env.env_is_wrapped(gym.Wrapper) == [False, False]
    env.set_attr("info_level", "training")
    assert env.batch.info_level == "training"
    with pytest.raises(AttributeError, match="cannot set"):
        env.set_attr("context", 3)
    with pytest.raises(ValueError, match="action of env 1"):
        env.step(np.array([0, 3]))


def test_the_long_flat_action_set_has_two_actions(prepared, risk_config):
    for risk in (True, False):
        env = HimariBTCVecEnv(2, prepared, context=CONTEXT, episode_length=5, risk=risk, risk_config=risk_config,
                              action_set="long_flat")
        assert env.action_space == gym.spaces.Discrete(2)
        env.reset()
        with pytest.raises(ValueError, match=r"action of env 0 must be an int in \[0, 2\)"):
            env.step(np.array([2, 0]))


def test_make_vec_builds_the_batched_env_with_same_step_autoreset(prepared):
    env = gym.make_vec(himari_env.ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", data=prepared,
                       context=CONTEXT, episode_length=5, risk=False)
    assert isinstance(env.unwrapped, HimariBTCVectorEnv)
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert gym.spec(himari_env.ENV_ID).vector_entry_point == "himari_env.vector.gym_vector:make_himari_vector_env"
    env.close()


@pytest.mark.parametrize(("risk", "info_level"), [(True, "full"), (False, "full"), (False, "training")])
def test_the_gymnasium_vector_env_matches_sync_vector_env(prepared, risk_config, risk, info_level):
    """SyncVectorEnv over single stacks, SAME_STEP autoreset, is the reference (infos included)."""
    kwargs = {"context": CONTEXT, "episode_length": 6, "risk": risk, "decision_interval": 2}
    if risk:
        kwargs["risk_config"] = risk_config
    ours = HimariBTCVectorEnv(3, prepared, info_level=info_level, **kwargs)
    reference = gym.vector.SyncVectorEnv([lambda: make_himari_env(prepared, **kwargs) for _ in range(3)],
                                         autoreset_mode=AutoresetMode.SAME_STEP)
    assert ours.observation_space == reference.observation_space and ours.action_space == reference.action_space
    obs, infos = ours.reset(seed=5)
    obs_r, infos_r = reference.reset(seed=5)
    _same(obs, obs_r, "reset obs")
    if info_level == "full":
        _same(infos, infos_r, "reset infos")
    rng = np.random.default_rng(8)
    ended = 0
    for step, action in enumerate(rng.integers(0, 3, (14, 3))):
        result = ours.step(action)
        expected = reference.step(action)
        for name, a, b in zip(("obs", "rewards", "terminated", "truncated"), result[:4], expected[:4], strict=True):
            _same(a, b, f"step {step} {name}")
        infos, infos_r = result[4], expected[4]
        if info_level == "full":
            _same(infos, infos_r, f"step {step} infos")
        else:
            for key in ("action", "bar_index", "equity", "position"):
                ok = infos_r.get(f"_{key}", np.zeros(3, dtype=np.bool_))
                assert np.array_equal(infos[f"_{key}"], ok), f"step {step} mask of {key}"
                if ok.any():
                    _same(infos[key][ok], infos_r[key][ok], f"step {step} info {key}")
        if "final_obs" in infos_r:
            ended += 1
            _same(infos["_final_obs"], infos_r["_final_obs"], "final obs mask")
            _same(infos["final_obs"], infos_r["final_obs"], "final obs")
            if info_level == "full":
                _same(infos["final_info"], infos_r["final_info"], "final info")
    assert ended >= 2


@pytest.mark.parametrize("mode", ["window", "index"])
def test_vector_env_checks(prepared, mode):
    """The env checker's checks that apply to a vector env: spaces contain what is returned,
    reset(seed) and step are deterministic, returned data is fresh (never reused)."""
    def make() -> HimariBTCVectorEnv:
        return HimariBTCVectorEnv(4, prepared, observation_mode=mode, context=CONTEXT, episode_length=5, risk=False,
                                  reward="sortino")

    env, twin = make(), make()
    obs, _ = env.reset(seed=123)
    obs_twin, _ = twin.reset(seed=123)
    _same(obs, obs_twin, "reset(seed) determinism")
    assert env.observation_space.contains(obs)
    previous = obs
    env.action_space.seed(0)
    for _ in range(8):
        action = env.action_space.sample()
        result, result_twin = env.step(action), twin.step(action)
        _same(result[:4], result_twin[:4], "step determinism")
        assert env.observation_space.contains(result[0])
        assert not data_shares_objects(previous, result[0])
        previous = result[0]
    other, _ = make().reset(seed=124)
    assert not data_equivalence(obs, other, exact=True)


def test_index_observations_point_at_the_single_env_window(prepared):
    batch_w = BatchedHimariStack(3, prepared, context=CONTEXT, episode_length=6, risk=False)
    batch_i = BatchedHimariStack(3, prepared, context=CONTEXT, episode_length=6, risk=False, observation_mode="index")
    for batch in (batch_w, batch_i):
        batch.reset_envs(range(3), [0, 1, 2])
    for action in np.random.default_rng(0).integers(0, 3, (4, 3)):
        batch_w.step(action)
        batch_i.step(action)
        window, index = batch_w.observations(), batch_i.observations()
        assert batch_i.single_observation_space.contains(_row(index, 0) | {"bar_index": index["bar_index"][0]})
        bars = index["bar_index"][:, 0]
        gathered = np.stack([batch_i.feature_table[b - CONTEXT + 1 : b + 1] for b in bars])
        assert np.array_equal(gathered, window["features"])
        _same({k: index[k] for k in ("regime", "position")}, {k: window[k] for k in ("regime", "position")}, "rest")
