"""Training on the batched env: PPO learns exactly what it learns on single-env workers; the
index-observation mode gives the same extractor outputs as windows and trains; ``himari
train`` uses the batched env by default and the worker processes on request."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from agents.config import ConfigError, TrainConfig
from agents.extractor import RegimeTransformerExtractor
from agents.feature_gather import FeatureWindowGather
from agents.ppo import build_ppo, policy_kwargs
from experiments.train import train, uses_batched_env
from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from himari_env.vector import HimariBTCVecEnv
from tests.test_extractor import tiny_config
from wrappers.stack import make_himari_env

torch.set_num_threads(1)
CONTEXT = 8
ENV_KWARGS = {"context": CONTEXT, "episode_length": 40, "decision_interval": 2}


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=3000, seed=5).frame, cache=False)


def _learned_weights(vec_env, seed: int) -> dict[str, torch.Tensor]:
    vec_env = VecMonitor(vec_env)
    model = build_ppo(vec_env, tiny_config(context=CONTEXT), tensorboard_log=None, seed=seed)
    model.learn(total_timesteps=256)
    return {name: value.detach().clone() for name, value in model.policy.state_dict().items()}


def test_ppo_learns_the_same_weights_on_the_batched_env_as_on_single_env_stacks(prepared):
    """Same seed, same per-env seeding (env k: seed + k, then its own generator), two rollouts
    with episode ends inside: bit-identical weights (the learning curve is the same curve)."""
    batched = _learned_weights(HimariBTCVecEnv(2, prepared, info_level="training", **ENV_KWARGS), seed=3)
    singles = _learned_weights(DummyVecEnv([lambda: make_himari_env(prepared, **ENV_KWARGS)] * 2), seed=3)
    assert batched.keys() == singles.keys()
    for name in batched:
        assert torch.equal(batched[name], singles[name]), name


def test_the_index_mode_extractor_equals_the_window_mode_extractor(prepared):
    window_env = HimariBTCVecEnv(4, prepared, **ENV_KWARGS)
    index_env = HimariBTCVecEnv(4, prepared, observation_mode="index", **ENV_KWARGS)
    table = index_env.batch.feature_table
    kwargs = {"d_model": 16, "n_layers": 1, "n_heads": 2, "dim_feedforward": 32, "context": CONTEXT}
    torch.manual_seed(0)
    window_extractor = RegimeTransformerExtractor(window_env.observation_space, **kwargs)
    index_extractor = RegimeTransformerExtractor(index_env.observation_space, feature_table=table, **kwargs)
    index_extractor.load_state_dict(window_extractor.state_dict())  # the table is not in the state dict
    for env in (window_env, index_env):
        env.seed(1)
    obs_w, obs_i = window_env.reset(), index_env.reset()
    for action in np.random.default_rng(0).integers(0, 3, (5, 4)):
        with torch.no_grad():
            out_w = window_extractor(preprocess_obs({k: torch.as_tensor(v) for k, v in obs_w.items()},
                                                    window_env.observation_space))
            out_i = index_extractor(preprocess_obs({k: torch.as_tensor(v) for k, v in obs_i.items()},
                                                   index_env.observation_space))
        assert torch.equal(out_w, out_i)
        obs_w, obs_i = window_env.step(action)[0], index_env.step(action)[0]


def test_feature_gather_checks_its_inputs():
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    gather = FeatureWindowGather(table, 3)
    window = gather(torch.tensor([[2.0], [9.0]]))
    assert window.shape == (2, 3, 4) and torch.equal(window[1], torch.as_tensor(table[7:10]))
    with pytest.raises(IndexError, match=r"bar indices must be in \[2, 9\]"):
        gather(torch.tensor([1]))
    with pytest.raises(ValueError, match="context must be"):
        FeatureWindowGather(table, 11)
    with pytest.raises(ValueError, match="needs feature_table"):
        RegimeTransformerExtractor(HimariBTCVecEnv(1, "synthetic", observation_mode="index", context=CONTEXT,
                                                   risk=False).observation_space, context=CONTEXT)


def test_ppo_trains_in_index_mode_with_a_small_rollout_buffer(prepared):
    env = VecMonitor(HimariBTCVecEnv(2, prepared, observation_mode="index", info_level="training", **ENV_KWARGS))
    config = tiny_config(context=CONTEXT)
    kwargs = policy_kwargs(config)
    kwargs["features_extractor_kwargs"]["feature_table"] = env.venv.batch.feature_table
    from stable_baselines3 import PPO

    model = PPO("MultiInputPolicy", env, policy_kwargs=kwargs, n_steps=32, batch_size=32, n_epochs=1, seed=0,
                device="cpu")
    model.learn(total_timesteps=64)
    stored = model.rollout_buffer.observations
    # 32 steps x 2 envs of one bar index each (flattened after the update), no (context, F) windows
    assert set(stored) == {"bar_index", "regime", "position"} and stored["bar_index"].shape == (64, 1)


def test_train_uses_the_batched_env_unless_subproc_is_asked():
    assert uses_batched_env(tiny_config(n_envs=2))
    assert not uses_batched_env(tiny_config(n_envs=2, vectorization="subproc"))
    assert not uses_batched_env(tiny_config(n_envs=1))
    with pytest.raises(ConfigError, match=r"train\.vectorization"):
        TrainConfig(vectorization="threads")


def test_a_training_run_on_the_batched_env_writes_its_run(tmp_path, prepared):
    """The callbacks (per-regime action shares, reward terms, collapse) run on training infos."""
    config = tiny_config(context=CONTEXT, n_envs=2, eval_freq=64, checkpoint_freq=0, total_timesteps=128)
    config = dataclasses.replace(config, env=dataclasses.replace(config.env, episode_length=40, decision_interval=2),
                                 ppo=dataclasses.replace(config.ppo, n_steps=32, batch_size=32))
    frame = synthesize_market(n_bars=3000, seed=5).frame
    summary = train(config, run_dir=tmp_path / "run", frame=frame)
    assert summary["timesteps"] >= config.train.total_timesteps
    header = (tmp_path / "run" / "tb" / "progress.csv").read_text().splitlines()[0].split(",")
    assert "actions/hold_share" in header and "reward_terms/norm_pnl" in header and "rollout/ep_rew_mean" in header


def test_the_single_env_index_observation_is_the_batched_one(prepared):
    from wrappers.index_observation import BarIndexObservation

    batched = HimariBTCVecEnv(2, prepared, observation_mode="index", **ENV_KWARGS)
    singles = [BarIndexObservation(make_himari_env(prepared, **ENV_KWARGS)) for _ in range(2)]
    assert singles[0].observation_space == batched.observation_space
    assert np.array_equal(singles[0].feature_table, batched.batch.feature_table)
    batched.seed(6)
    obs = batched.reset()
    single_obs = [single.reset(seed=6 + i)[0] for i, single in enumerate(singles)]
    for action in np.random.default_rng(4).integers(0, 3, (30, 2)):
        for i in range(2):
            assert np.array_equal(obs["bar_index"][i], single_obs[i]["bar_index"])
            assert obs["regime"][i] == single_obs[i]["regime"]
            assert np.array_equal(obs["position"][i], single_obs[i]["position"])
        obs, _, dones, _ = batched.step(action)
        for i, single in enumerate(singles):
            single_obs[i], _, terminated, truncated, _ = single.step(int(action[i]))
            if terminated or truncated:
                single_obs[i], _ = single.reset()


def test_an_index_observation_run_trains_validates_and_evaluates(tmp_path):
    """train.observation_mode: index end to end: the batched env in index mode, validation and
    evaluation on the single env through BarIndexObservation."""
    from experiments.evaluate import evaluate_run

    config = tiny_config(context=CONTEXT, n_envs=2, eval_freq=64, checkpoint_freq=0, total_timesteps=128,
                         observation_mode="index")
    config = dataclasses.replace(config, env=dataclasses.replace(config.env, episode_length=40, decision_interval=2),
                                 ppo=dataclasses.replace(config.ppo, n_steps=32, batch_size=32))
    frame = synthesize_market(n_bars=3000, seed=5).frame
    train(config, run_dir=tmp_path / "run", frame=frame)
    assert (tmp_path / "run" / "best" / "best_model.zip").is_file()
    # The market's features are not pickled into the model zip (rule: no pickle for data).
    import zipfile

    with zipfile.ZipFile(tmp_path / "run" / "final_model.zip") as archive:
        assert "feature_table" not in archive.read("data").decode()
        assert archive.getinfo("data").file_size < 100_000
    report = evaluate_run(tmp_path / "run", split="val", frame=frame, write=False, record_test_look=False)
    assert set(report["splits"]) >= {"train", "val"}
    with pytest.raises(ConfigError, match=r"train\.observation_mode"):
        TrainConfig(observation_mode="index", vectorization="subproc", n_envs=2)
