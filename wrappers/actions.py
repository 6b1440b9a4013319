"""Action mapping: the agent's Discrete(3) direction -> the core env's target position."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from himari_env.constants import ACTION_DIRECTIONS, ACTION_NAMES


class DiscreteDirection(gym.Wrapper):
    """Discrete(3) 0 HOLD / 1 LONG / 2 SHORT -> target position 0 / +1 / -1 (times ``size``).

    ``info["action"]`` carries the discrete action so callbacks can count HOLD/LONG/SHORT.
    The RSS risk layer (:class:`wrappers.risk_action.RSSRiskAction`) replaces this wrapper
    with a sized position.
    """

    def __init__(self, env: gym.Env, *, size: float = 1.0) -> None:
        super().__init__(env)
        inner = env.action_space
        if not isinstance(inner, spaces.Box) or inner.shape != (1,):
            raise ValueError(f"DiscreteDirection needs an inner Box action space of shape (1,), got {inner}")
        if not 0 < size <= float(inner.high[0]):
            raise ValueError(f"size={size} must be in (0, {float(inner.high[0])}] (the env's max_leverage)")
        self.size = float(size)
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self._targets = [np.array([direction * self.size], dtype=np.float32) for direction in ACTION_DIRECTIONS]

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        try:
            index = int(action)
        except (TypeError, ValueError) as error:
            raise ValueError(f"action must be 0 HOLD, 1 LONG or 2 SHORT, got {action!r}") from error
        if index != action or not 0 <= index < len(self._targets):
            raise ValueError(f"action must be 0 HOLD, 1 LONG or 2 SHORT, got {action!r}")
        observation, reward, terminated, truncated, info = self.env.step(self._targets[index])
        info["action"] = index
        return observation, reward, terminated, truncated, info
