"""HimariBTCVecEnv: the batched HIMARI stack as a Stable-Baselines3 ``VecEnv``.

What ``himari train`` uses when ``train.n_envs > 1`` (``train.vectorization: batched``). It
behaves like today's ``SubprocVecEnv`` of ``make_himari_env`` workers, value for value:

* ``seed(s)`` then ``reset()``: env ``i`` starts its first episode with ``reset(seed=s + i)``
  and later episodes continue that env's generator (what the workers do), so a run draws the
  same episode starts as the subprocess path;
* ``step_wait`` returns ``(obs, rewards float64 (N,), dones bool (N,), infos)``; an env whose
  episode ended is reset in the same step (SB3's convention): ``infos[i]["terminal_observation"]``
  holds its last observation and ``infos[i]["TimeLimit.truncated"]`` says whether it was a
  truncation (set on every info, as the workers do, except at ``info_level="none"``, where it
  is set on ended envs only), ``reset_infos[i]`` its new episode's reset info;
* ``infos[i]`` is the single env's info at ``info_level="full"``, or the training subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from himari_env.vector.batch import BatchedHimariStack

#: Attributes of the batch that ``set_attr`` may change.
_SETTABLE = ("info_level",)


class HimariBTCVecEnv(VecEnv):
    """N episodes of ``make_himari_env(data, **env_kwargs)`` as one SB3 ``VecEnv``.

    Parameters
    ----------
    num_envs : int
        N.
    data : as ``make_himari_env`` (``"synthetic"``, a path, a frame or a PreparedMarket).
    info_level : ``"full"`` (default: the single env's info), ``"training"`` or ``"none"``
        (see :class:`~himari_env.vector.batch.BatchedHimariStack`).
    observation_mode : ``"window"`` (default) or ``"index"``.
    **env_kwargs : every other keyword of :func:`wrappers.stack.make_himari_env`.
    """

    def __init__(self, num_envs: int, data: Any = "synthetic", *, info_level: str = "full",
                 observation_mode: str = "window", **env_kwargs: Any) -> None:
        self.batch = BatchedHimariStack(num_envs, data, info_level=info_level,
                                        observation_mode=observation_mode, **env_kwargs)
        self.render_mode = None
        super().__init__(int(num_envs), self.batch.single_observation_space, self.batch.single_action_space)
        self._actions: np.ndarray | None = None
        self._all = np.arange(self.num_envs)

    # ------------------------------------------------------------------ core API
    def reset(self) -> VecEnvObs:
        starts = [options.get("start_bar") for options in self._options]
        self.reset_infos = self.batch.reset_envs(self._all, self._seeds, starts)
        self._reset_seeds()
        self._reset_options()
        return self.batch.observations()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        batch = self.batch
        rewards, terminated, truncated, full_infos = batch.step(actions)
        if full_infos is not None:
            infos = full_infos
            for info, flag in zip(infos, (truncated & ~terminated).tolist(), strict=True):
                info["TimeLimit.truncated"] = flag
        elif batch.info_level == "training":
            infos = batch.light_infos(truncated & ~terminated)
        else:  # "none": ended envs get the flag below
            infos = batch.light_infos()
        obs = batch.observations()
        dones = batch.last_dones
        if dones.any():
            ended = np.flatnonzero(dones)
            for i in ended.tolist():
                infos[i]["terminal_observation"] = self._single_obs(obs, i)
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            for i, reset_info in zip(ended.tolist(), batch.reset_envs(ended), strict=True):
                self.reset_infos[i] = reset_info
            fresh = batch.observations(ended)
            for key, values in fresh.items():
                obs[key][ended] = values
        return obs, rewards, dones, infos

    @staticmethod
    def _single_obs(obs: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        single: dict[str, Any] = {key: values[i].copy() for key, values in obs.items()}
        single["regime"] = int(obs["regime"][i])
        return single

    def close(self) -> None:
        self.batch.close()

    # ------------------------------------------------------------------ attributes
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The batch's attribute (``info_level``, ``decision_interval``, ``risk_config``...) or,
        failing that, the single-env template stack's (``render_mode``, ``spec``...), once per
        index. Per-env state is in arrays: ``bar_index``, ``position`` and ``equity`` give
        each env's own value."""
        ids = self._indices(indices)
        if attr_name in ("bar_index", "position", "equity"):
            values = getattr(self.batch, attr_name)
            return [values[i].item() for i in ids]
        if attr_name == "render_mode":
            return [None for _ in ids]
        source: Any = self.batch if hasattr(self.batch, attr_name) else self.batch.template
        value = getattr(source, attr_name)
        return [value for _ in ids]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Only batch-wide settings (``info_level``) can be set, for every env at once."""
        if attr_name not in _SETTABLE:
            raise AttributeError(f"HimariBTCVecEnv cannot set {attr_name!r}; settable: {list(_SETTABLE)}")
        if indices is not None and sorted(self._indices(indices)) != list(range(self.num_envs)):
            raise ValueError(f"{attr_name!r} is batch-wide: set it for every env (indices=None)")
        if attr_name == "info_level":
            from himari_env.vector.batch import INFO_LEVELS

            if value not in INFO_LEVELS:
                raise ValueError(f"info_level must be one of {INFO_LEVELS}, got {value!r}")
        setattr(self.batch, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Calls a method of the single-env template stack (queries such as
        ``get_wrapper_attr``), once per index; the episodes themselves live in the batch."""
        ids = self._indices(indices)
        method = getattr(self.batch.template, method_name)
        return [method(*method_args, **method_kwargs) for _ in ids]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """False: the batch is not a stack of gym wrappers (SB3 asks for ``Monitor``)."""
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

