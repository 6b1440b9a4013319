"""BarIndexObservation: the single env's index observation (the batched env's ``"index"`` mode).

For a policy trained on the batched env with ``observation_mode="index"`` (``bar_index`` instead
of the (context, F) feature window; the extractor gathers the window from the market's feature
table): validation and evaluation run the single-env stack, and this outermost wrapper shows
them the same observation the batched env would, ``{"bar_index": int64 (1,), "regime",
"position"}``. ``feature_table`` is the table the policy's extractor gathers from (the
observation wrapper's features), so a model can be built on this env too.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from himari_env.env import core_env


class BarIndexObservation(gym.ObservationWrapper):
    """Replace ``features`` with ``bar_index`` (the core env's decision bar) in the Dict
    observation of a full HIMARI stack."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._core = core_env(env)
        layer: Any = env
        while type(layer).__name__ != "RegimeFeatureObservation":
            if not hasattr(layer, "env"):
                raise ValueError("BarIndexObservation needs a stack with RegimeFeatureObservation (make_himari_env)")
            layer = layer.env
        #: float32 (n_bars, F): the features the window observation shows, for the extractor.
        self.feature_table: np.ndarray = layer._features
        inner = env.observation_space
        assert isinstance(inner, spaces.Dict)
        self.observation_space = spaces.Dict({
            "bar_index": spaces.Box(0, self._core.market.n_bars - 1, shape=(1,), dtype=np.int64),
            "regime": inner["regime"],
            "position": inner["position"],
        })

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {"bar_index": np.array([self._core.bar_index], dtype=np.int64), "regime": observation["regime"],
                "position": observation["position"]}
