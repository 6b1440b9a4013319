"""The regime transformer feature extractor: shapes, size of the full model, gradients,
argument checks, and deterministic actions that survive save/load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.config import EnvConfig, ExperimentConfig, ExtractorConfig, PPOConfig, TrainConfig
from agents.extractor import RegimeTransformerExtractor
from agents.ppo import build_ppo, count_parameters, load_ppo
from himari_env.constants import ACTION_DIRECTIONS

torch.set_num_threads(1)

N_FEATURES = 50  # 44 denoised features + 6 percentile features
FULL_TARGET_PARAMETERS = 2_500_000


def himari_observation_space(
    context: int, n_features: int = N_FEATURES, max_leverage: float = 1.0
) -> spaces.Dict:
    return spaces.Dict(
        {
            "features": spaces.Box(-np.inf, np.inf, (context, n_features), np.float32),
            "regime": spaces.Discrete(4),
            "position": spaces.Box(-max_leverage, max_leverage, (1,), np.float32),
        }
    )


class TinyRegimeEnv(gym.Env):
    """A small real env with the HIMARI observation/action spaces and info keys.

    A seeded random market of ``n_bars`` bars: features are random windows, regimes cycle
    through 0-3 in blocks of 8 bars, returns are N(0, 1 %). Discrete(3) actions map to
    target weights 0 / +1 / -1; fees and equity follow the env contract.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        context: int = 8,
        n_features: int = 5,
        episode_length: int = 48,
        market_seed: int = 0,
        fee_rate: float = 0.001,
    ) -> None:
        rng = np.random.default_rng(market_seed)
        n_bars = context + episode_length + 1
        self.feature_rows = rng.normal(size=(n_bars, n_features)).astype(np.float32)
        self.market_returns = rng.normal(0.0, 0.01, size=n_bars)
        self.regime_ids = (np.arange(n_bars) // 8) % 4
        self.context = context
        self.episode_length = episode_length
        self.fee_rate = fee_rate
        self.observation_space = himari_observation_space(context, n_features)
        self.action_space = spaces.Discrete(3)
        self.bar_index = context - 1
        self.position = 0.0
        self.equity = 1.0

    def _observation(self) -> dict[str, Any]:
        t = self.bar_index
        return {
            "features": self.feature_rows[t - self.context + 1 : t + 1],
            "regime": int(self.regime_ids[t]),
            "position": np.array([self.position], dtype=np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.bar_index = self.context - 1
        self.position = 0.0
        self.equity = 1.0
        return self._observation(), {"equity": self.equity}

    def step(self, action: int):
        action = int(action)
        t = self.bar_index
        target = ACTION_DIRECTIONS[action]
        turnover = abs(target - self.position)
        fee = self.fee_rate * turnover * self.equity
        previous_equity = self.equity
        self.equity = (self.equity - fee) * (1.0 + target * self.market_returns[t + 1])
        self.position = target
        self.bar_index = t + 1
        reward = float(np.log(self.equity / previous_equity))
        info = {  # like the HIMARI core env, the info describes the bar just reached
            "bar_index": self.bar_index,
            "regime": int(self.regime_ids[self.bar_index]),
            "action": action,
            "position": self.position,
            "equity": self.equity,
            "fee": fee,
            "reward_terms": {"pnl": reward, "fee": -fee},
        }
        truncated = self.bar_index - (self.context - 1) >= self.episode_length
        return self._observation(), reward, False, truncated, info


def tiny_config(context: int = 8, **train: Any) -> ExperimentConfig:
    """The small preset on TinyRegimeEnv-sized rollouts."""
    return ExperimentConfig(
        name="tiny",
        env=EnvConfig(context=context, episode_length=48),
        extractor=ExtractorConfig.small(),
        ppo=PPOConfig(
            n_steps=64,
            batch_size=32,
            n_epochs=2,
            device="cpu",
            net_arch_pi=(32,),
            net_arch_vf=(32,),
        ),
        train=TrainConfig(**{"eval_freq": 0, "checkpoint_freq": 0, "verbose": 0, **train}),
    )


def make_tiny_env(rank: int) -> Any:
    """``make_env(rank)`` factory for the tiny env (module level: picklable for subprocesses)."""
    return lambda: TinyRegimeEnv()


def raw_batch(space: spaces.Dict, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Observations as the env emits them (regime ids cycle through 0-3)."""
    rng = np.random.default_rng(seed)
    context, n_features = space["features"].shape
    return {
        "features": torch.as_tensor(
            rng.normal(size=(batch_size, context, n_features)), dtype=torch.float32
        ),
        "regime": torch.as_tensor(np.arange(batch_size) % 4),
        "position": torch.as_tensor(rng.uniform(-1, 1, size=(batch_size, 1)), dtype=torch.float32),
    }


def random_batch(space: spaces.Dict, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Observations as SB3 feeds the extractor (regime one-hot)."""
    return preprocess_obs(raw_batch(space, batch_size, seed), space)


@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_output_shape_is_batch_by_features_dim(batch_size: int, pooling: str) -> None:
    space = himari_observation_space(context=12)
    extractor = RegimeTransformerExtractor(
        space, d_model=16, n_layers=1, n_heads=2, dim_feedforward=32, pooling=pooling
    )
    output = extractor(random_batch(space, batch_size))
    assert extractor.features_dim == 32
    assert output.shape == (batch_size, 32)
    assert output.dtype == torch.float32
    assert torch.isfinite(output).all()


def test_full_policy_has_about_2_5_million_parameters() -> None:
    config = ExtractorConfig.full()
    policy = MultiInputActorCriticPolicy(
        himari_observation_space(context=100),
        spaces.Discrete(3),
        lambda _: 3e-4,
        net_arch={"pi": [256], "vf": [256]},
        features_extractor_class=RegimeTransformerExtractor,
        features_extractor_kwargs=config.extractor_kwargs(context=100),
    )
    n_parameters = sum(p.numel() for p in policy.parameters())
    assert n_parameters == 2_673_668  # the figure stated in the README and gpu-full.yaml
    assert abs(n_parameters - FULL_TARGET_PARAMETERS) <= 0.10 * FULL_TARGET_PARAMETERS
    assert policy.features_extractor.features_dim == 512
    assert policy.action_net.in_features == 256 and policy.action_net.out_features == 3


def test_backward_pass_reaches_every_parameter() -> None:
    space = himari_observation_space(context=10, n_features=6)
    policy = MultiInputActorCriticPolicy(
        space,
        spaces.Discrete(3),
        lambda _: 3e-4,
        net_arch={"pi": [16], "vf": [16]},
        features_extractor_class=RegimeTransformerExtractor,
        features_extractor_kwargs={
            "d_model": 16,
            "n_layers": 2,
            "n_heads": 2,
            "dim_feedforward": 32,
        },
    )
    observations = raw_batch(space, batch_size=8)  # covers all four regimes
    values, log_prob, entropy = policy.evaluate_actions(observations, torch.arange(8) % 3)
    loss = -log_prob.mean() + values.pow(2).mean() - 0.05 * entropy.mean()
    loss.backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_context_mismatch_names_both_lengths() -> None:
    with pytest.raises(
        ValueError, match=r"expects a window of 100 bars but the observation 'features' has 32"
    ):
        RegimeTransformerExtractor(himari_observation_space(context=32), context=100)


def test_heads_must_divide_the_model_width() -> None:
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        RegimeTransformerExtractor(himari_observation_space(context=4), d_model=30, n_heads=4)


def test_observation_space_without_regime_is_rejected_by_key() -> None:
    space = spaces.Dict(
        {
            "features": spaces.Box(-1, 1, (4, 3), np.float32),
            "position": spaces.Box(-1, 1, (1,), np.float32),
        }
    )
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['regime'\]"):
        RegimeTransformerExtractor(space)


def test_build_ppo_refuses_an_env_whose_context_differs_from_the_config() -> None:
    env = DummyVecEnv([lambda: TinyRegimeEnv(context=8)])
    with pytest.raises(ValueError, match=r"context mismatch"):
        build_ppo(env, tiny_config(context=16), tensorboard_log=None, seed=0)


def test_saved_and_loaded_model_gives_identical_deterministic_actions(tmp_path: Path) -> None:
    config = tiny_config()
    env = DummyVecEnv([lambda: TinyRegimeEnv()])
    model = build_ppo(env, config, tensorboard_log=None, seed=3)
    model.learn(total_timesteps=64)
    path = tmp_path / "model.zip"
    model.save(path)

    probe = TinyRegimeEnv(market_seed=11)
    observations = []
    obs, _ = probe.reset(seed=0)
    for step in range(20):
        observations.append(obs)
        obs, *_ = probe.step(step % 3)
    batch = {key: np.stack([o[key] for o in observations]) for key in observations[0]}

    expected, _ = model.predict(batch, deterministic=True)
    reloaded_sb3 = PPO.load(path, device="cpu")
    reloaded_tensors_only = load_ppo(path, DummyVecEnv([lambda: TinyRegimeEnv()]), config, seed=5)
    np.testing.assert_array_equal(reloaded_sb3.predict(batch, deterministic=True)[0], expected)
    np.testing.assert_array_equal(
        reloaded_tensors_only.predict(batch, deterministic=True)[0], expected
    )
    assert count_parameters(reloaded_tensors_only) == count_parameters(model)
