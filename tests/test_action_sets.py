"""The long/flat action set: Discrete(2) HOLD/LONG over the same sized stack."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import himari_env  # noqa: F401
from agents.config import ConfigError, EnvConfig
from himari_env.env import core_env


def _env(**kwargs):
    return gym.make("HimariBTC-v0", episode_length=300, **kwargs)


def test_long_flat_has_two_actions_with_the_long_short_meanings() -> None:
    env = _env(action_set="long_flat")
    assert env.action_space == gym.spaces.Discrete(2)
    env.reset(seed=3)
    _, _, _, _, info = env.step(1)
    assert info["action"] == 1 and core_env(env).position > 0.0
    _, _, _, _, info = env.step(0)
    assert info["action"] == 0 and core_env(env).position == 0.0


def test_long_flat_steps_exactly_like_long_short_restricted_to_hold_and_long() -> None:
    flat, both = _env(action_set="long_flat"), _env()
    flat.reset(seed=5)
    both.reset(seed=5)
    actions = np.random.default_rng(0).integers(0, 2, size=200)
    for action in actions.tolist():
        a = flat.step(action)
        b = both.step(action)
        np.testing.assert_array_equal(a[0]["features"], b[0]["features"])
        assert a[1:4] == b[1:4]
        assert a[4]["equity"] == b[4]["equity"]


def test_short_is_refused_with_a_message_naming_the_action_set() -> None:
    env = _env(action_set="long_flat")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="long_flat"):
        env.step(2)


def test_unknown_action_set_is_refused_in_the_factory_and_the_config() -> None:
    with pytest.raises(ValueError, match="action_set"):
        _env(action_set="short_only")
    with pytest.raises(ConfigError, match=r"env\.action_set"):
        EnvConfig(action_set="short_only")
    assert EnvConfig(action_set="long_flat").env_kwargs()["action_set"] == "long_flat"
