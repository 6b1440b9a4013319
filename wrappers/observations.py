"""Observation mapping: EKF-denoised features + percentile regime features, and the regime
from the chosen source.

The arrays are precomputed once over the whole market by the pipeline
(:func:`himari_env.pipeline.prepare_market`), causally; each step copies one contiguous slice at
the core env's ``bar_index``. Nothing is computed per step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from himari_env.constants import N_REGIMES
from himari_env.env import core_env

REGIME_SOURCES = ("rules", "hmm")


def select_observed_features(features: np.ndarray, feature_names: tuple[str, ...],
                             observed: tuple[str, ...] | list[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The columns of ``features`` (float32 (n, F)) named by ``observed``, in that order, and
    their names; ``None`` keeps every column. An unknown or repeated name raises, listing
    the market's names (the agent must not silently see fewer features than configured)."""
    if observed is None:
        return features, tuple(feature_names)
    wanted = tuple(str(name) for name in observed)
    if not wanted:
        raise ValueError("observed_features is empty: name at least one feature, or null for all of them")
    repeated = sorted({name for name in wanted if wanted.count(name) > 1})
    if repeated:
        raise ValueError(f"observed_features names {repeated} more than once")
    index = {name: k for k, name in enumerate(feature_names)}
    unknown = [name for name in wanted if name not in index]
    if unknown:
        raise ValueError(f"observed_features {unknown} are not features of this market; it has {list(feature_names)}")
    columns = np.fromiter((index[name] for name in wanted), dtype=np.int64, count=len(wanted))
    return np.ascontiguousarray(features[:, columns]), wanted


class RegimeFeatureObservation(gym.ObservationWrapper):
    """Replace ``features`` and ``regime`` of the core env's Dict observation.

    Parameters
    ----------
    env : gym.Env
        A wrapped :class:`~himari_env.env.HimariBTCEnv`.
    features : float32 (n, F')
        Per-bar observation features over the same bars as ``env.unwrapped.market``
        (e.g. 44 EKF-denoised + 6 percentile features), finite from ``market.first_bar``.
    feature_names : sequence of str (F',)
    regime_ids : int (n,)
        The regime shown to the agent (labeler or HMM forward filter), in [0, 4) from
        ``market.first_bar``.
    """

    def __init__(self, env: gym.Env, features: np.ndarray, feature_names: tuple[str, ...],
                 regime_ids: np.ndarray) -> None:
        super().__init__(env)
        self._core = core_env(env)
        market = self._core.market
        if features.shape[0] != market.n_bars or regime_ids.shape[0] != market.n_bars:
            raise ValueError(
                f"observation arrays have {features.shape[0]} feature rows and {regime_ids.shape[0]} "
                f"regime rows; the market has {market.n_bars} bars"
            )
        if features.ndim != 2 or features.shape[1] != len(feature_names):
            raise ValueError(f"features shape {features.shape} does not match {len(feature_names)} names")
        tail = slice(market.first_bar, None)
        if not np.isfinite(features[tail]).all():
            row = market.first_bar + int(np.flatnonzero(~np.isfinite(features[tail]).all(axis=1))[0])
            raise ValueError(f"observation features are not finite at bar {row} ({market.timestamps[row]})")
        regimes_tail = regime_ids[tail]
        if np.any((regimes_tail < 0) | (regimes_tail >= N_REGIMES)):
            raise ValueError("regime_ids must be in [0, 4) from market.first_bar on")
        self._features = np.ascontiguousarray(features, dtype=np.float32)
        self._features.flags.writeable = False
        self._regimes = np.asarray(regime_ids).tolist()
        self.feature_names = tuple(feature_names)
        self._context = self._core.context
        inner = env.observation_space
        assert isinstance(inner, spaces.Dict)
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(-np.inf, np.inf, shape=(self._context, len(feature_names)), dtype=np.float32),
                "regime": spaces.Discrete(N_REGIMES),
                "position": inner["position"],
            }
        )

        # The core builds exactly this observation from these arrays (one window copy a step);
        # step and reset pass it through.
        self._core.use_observation_arrays(self._features, self._regimes, self.observation_space)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        return self.env.step(action)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        t = self._core.bar_index
        return {
            "features": self._features[t - self._context + 1 : t + 1].copy(),
            "regime": self._regimes[t],
            "position": observation["position"],
        }
