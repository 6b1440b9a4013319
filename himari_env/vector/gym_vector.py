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
        level = batch.info_level
        ended = np.flatnonzero(terminated | truncated)
        final: dict[str, Any] = {}
        reset_infos: list[dict[str, Any]] = []
        if ended.size:
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in ended.tolist():
                single = {key: values[i].copy() for key, values in obs.items()}
                single["regime"] = int(obs["regime"][i])
                final_obs[i] = single
            mask = np.zeros(self.num_envs, dtype=np.bool_)
            mask[ended] = True
            per_env = step_infos if step_infos is not None else (batch.light_infos() if level == "training" else None)
            final_info = {} if per_env is None else self._merge(ended, [per_env[i] for i in ended.tolist()])
            final = {"final_obs": final_obs, "_final_obs": mask, "final_info": final_info, "_final_info": mask.copy()}
            reset_infos = batch.reset_envs(ended)
            fresh = batch.observations(ended)
            for key, values in fresh.items():
                obs[key][ended] = values
        if step_infos is not None:
            # an ended env's top-level info is its reset info (SyncVectorEnv, SAME_STEP)
            for i, reset_info in zip(ended.tolist(), reset_infos, strict=True):
                step_infos[i] = reset_info
            infos = self._merge(self._all, step_infos)
        elif level == "training":
            infos = self._training_infos(ended)
        else:
            infos = {}
        infos.update(final)
        return obs, rewards, terminated, truncated, infos

    # ------------------------------------------------------------------ infos
    def _merge(self, ids: np.ndarray, infos: list[dict[str, Any]], into: dict[str, Any] | None = None) -> dict[str, Any]:
        merged: dict[str, Any] = {} if into is None else into
        for i, info in zip(np.asarray(ids).tolist(), infos, strict=True):
            merged = self._add_info(merged, info, i)
        return merged

    def _training_infos(self, ended: np.ndarray) -> dict[str, Any]:
        """Arrays of the training keys; an env that ended (and was reset) shows its reset
        info's keys (bar_index, equity, position), its action and reward terms are masked out
        (they are in ``final_info``)."""
        batch = self.batch
        every = np.ones(self.num_envs, dtype=np.bool_)
        stepped = every.copy()
        stepped[ended] = False
        infos: dict[str, Any] = {
            "action": batch.last_actions.copy(), "_action": stepped,
            "bar_index": batch.bar_index.copy(), "_bar_index": every,
            "equity": batch.equity.copy(), "_equity": every.copy(),
            "position": batch.position.copy(), "_position": every.copy(),
        }
        terms = batch.decision_terms
        reward_terms: dict[str, np.ndarray] = {}
        for k, name in enumerate(batch.term_names):
            reward_terms[name] = terms[:, k].copy()
            reward_terms[f"_{name}"] = stepped.copy()
        if stepped.any():
            infos["reward_terms"], infos["_reward_terms"] = reward_terms, stepped.copy()
        return infos

    def close_extras(self, **kwargs: Any) -> None:
        self.batch.close()


def make_himari_vector_env(num_envs: int = 1, **kwargs: Any) -> HimariBTCVectorEnv:
    """Vector entry point of ``HimariBTC-v0`` (``gym.make_vec(..., vectorization_mode=
    "vector_entry_point")``): ``kwargs`` are ``make_himari_env``'s plus ``info_level`` and
    ``observation_mode``."""
    data = kwargs.pop("data", "synthetic")
    return HimariBTCVectorEnv(num_envs, data, **kwargs)
