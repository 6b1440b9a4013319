"""HimariBTCVectorEnv: the batched HIMARI stack as a Gymnasium ``VectorEnv``.

``gym.make_vec("HimariBTC-v0", num_envs=N, vectorization_mode="vector_entry_point", **kwargs)``
builds it (``kwargs`` are ``make_himari_env``'s, plus ``info_level`` and ``observation_mode``).

Autoreset: ``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``. An env whose episode
ends in ``step`` is reset within that step: the returned observation is its new episode's
first observation, ``infos["final_obs"][i]`` (object array, mask ``infos["_final_obs"]``) its
last observation and ``infos["final_info"]`` (masked like every info key) its last step's info;
the top-level info of that env is its reset info, exactly as ``SyncVectorEnv`` in SAME_STEP
mode. Why SAME_STEP rather than NEXT_STEP: it is the convention of the SB3 adapter
(``terminal_observation``), so both APIs share one behaviour; every transition is a real one
(NEXT_STEP inserts a step whose action is ignored and whose reward is 0, which a training
loop must mask out); and the final observation, needed to bootstrap a truncated episode's
value, comes with the step that ended it.

Infos are Gymnasium's dict of arrays with ``_key`` masks. ``info_level="full"`` merges each
env's single-env info with ``VectorEnv._add_info`` (as ``SyncVectorEnv`` does);
``"training"`` builds the arrays directly (``action``, ``bar_index``, ``equity``,
``position``, ``reward_terms``); ``"none"`` returns ``{}`` (plus the final_* keys).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from himari_env.vector.batch import BatchedHimariStack


class HimariBTCVectorEnv(VectorEnv):
    """N episodes of ``make_himari_env(data, **env_kwargs)`` as one Gymnasium ``VectorEnv``.

    Parameters as :class:`~himari_env.vector.sb3.HimariBTCVecEnv`.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, data: Any = "synthetic", *, info_level: str = "full",
                 observation_mode: str = "window", **env_kwargs: Any) -> None:
        self.batch = BatchedHimariStack(num_envs, data, info_level=info_level,
                                        observation_mode=observation_mode, **env_kwargs)
        self.num_envs = int(num_envs)
        self.single_observation_space = self.batch.single_observation_space
        self.single_action_space = self.batch.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._all = np.arange(self.num_envs)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every env (or those of ``options["reset_mask"]``, bool (N,)). ``seed``: an int
        (env i gets ``seed + i``), a list of N seeds/None, or None. ``options["start_bar"]``
        (int or a list of N) as the single env's option."""
        super().reset(seed=seed if isinstance(seed, int) else None)
        n = self.num_envs
        seeds: list[int | None]
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"a list of seeds must have num_envs={n} entries, got {len(seeds)}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(n, dtype=np.bool_)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (n,) and mask.any()):
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({n},) with a True, got {mask!r}")
        starts = options.pop("start_bar", None)
        if starts is None or np.isscalar(starts):
            starts = [starts] * n
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; known: reset_mask, start_bar")
        ids = np.flatnonzero(mask)
        reset_infos = self.batch.reset_envs(ids, [seeds[i] for i in ids], [starts[i] for i in ids])
        obs = self.batch.observations()
        return obs, self._merge(ids, reset_infos)

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        batch = self.batch
        rewards, terminated, truncated, step_infos = batch.step(actions)
        obs = batch.observations()
        if step_infos is not None:
            infos = self._merge(self._all, step_infos)
        elif batch.info_level == "training":
            infos = self._training_infos()
        else:
            infos = {}
        ended = np.flatnonzero(terminated | truncated)
        if ended.size:
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in ended.tolist():
                single = {key: values[i].copy() for key, values in obs.items()}
                single["regime"] = int(obs["regime"][i])
                final_obs[i] = single
            mask = np.zeros(self.num_envs, dtype=np.bool_)
            mask[ended] = True
            if batch.info_level == "none":
                final_info: dict[str, Any] = {}
            else:
                per_env = step_infos if step_infos is not None else batch.light_infos()
                final_info = self._merge(ended, [per_env[i] for i in ended.tolist()])
            reset_infos = batch.reset_envs(ended)
            fresh = batch.observations(ended)
            for key, values in fresh.items():
                obs[key][ended] = values
            if batch.info_level != "none":
                # the ended envs' top-level info is their reset info (SyncVectorEnv, SAME_STEP)
                infos = self._drop(infos, ended)
                infos = self._merge(ended, reset_infos, infos)
            infos["final_obs"], infos["_final_obs"] = final_obs, mask
            infos["final_info"], infos["_final_info"] = final_info, mask.copy()
        return obs, rewards, terminated, truncated, infos

    # ------------------------------------------------------------------ infos
    def _merge(self, ids: np.ndarray, infos: list[dict[str, Any]], into: dict[str, Any] | None = None) -> dict[str, Any]:
        merged: dict[str, Any] = {} if into is None else into
        for i, info in zip(np.asarray(ids).tolist(), infos, strict=True):
            merged = self._add_info(merged, info, i)
        return merged

    def _drop(self, infos: dict[str, Any], ended: np.ndarray) -> dict[str, Any]:
        """``infos`` with the entries of envs ``ended`` masked out (their step info moves to
        ``final_info``)."""
        out: dict[str, Any] = {}
        for key, value in infos.items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict):
                out[key] = self._drop(value, ended)
                continue
            mask = infos.get(f"_{key}", np.ones(self.num_envs, dtype=np.bool_)).copy()
            mask[ended] = False
            if mask.any():
                out[key], out[f"_{key}"] = value, mask
        return out

    def _training_infos(self) -> dict[str, Any]:
        batch = self.batch
        every = np.ones(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {
            "action": batch.last_actions.copy(), "_action": every,
            "bar_index": batch.bar_index.copy(), "_bar_index": every.copy(),
            "equity": batch.equity.copy(), "_equity": every.copy(),
            "position": batch.position.copy(), "_position": every.copy(),
        }
        terms = batch.decision_terms
        infos["reward_terms"] = {}
        for k, name in enumerate(batch.term_names):
            infos["reward_terms"][name] = terms[:, k].copy()
            infos["reward_terms"][f"_{name}"] = every.copy()
        return infos

    def close_extras(self, **kwargs: Any) -> None:
        self.batch.close()


def make_himari_vector_env(num_envs: int = 1, **kwargs: Any) -> HimariBTCVectorEnv:
    """Vector entry point of ``HimariBTC-v0`` (``gym.make_vec(..., vectorization_mode=
    "vector_entry_point")``): ``kwargs`` are ``make_himari_env``'s plus ``info_level`` and
    ``observation_mode``."""
    data = kwargs.pop("data", "synthetic")
    return HimariBTCVectorEnv(num_envs, data, **kwargs)
