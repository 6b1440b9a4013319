"""The batched HIMARI env: N episodes of the ``make_himari_env`` stack stepped together.

* :class:`HimariBTCVecEnv`: a Stable-Baselines3 ``VecEnv`` (what ``himari train`` uses);
* :class:`HimariBTCVectorEnv`: a Gymnasium ``VectorEnv``
  (``gym.make_vec("HimariBTC-v0", num_envs=N, vectorization_mode="vector_entry_point")``);
* :class:`BatchedHimariStack`: the engine both adapt (numba kernels in :mod:`.kernels`).

Every env of the batch is, value for value, an independent single-env stack given the same
start and actions (``tests/test_vector_env.py``).
"""

from __future__ import annotations

from typing import Any

from himari_env.vector.batch import INFO_LEVELS, OBSERVATION_MODES, BatchedHimariStack
from himari_env.vector.gym_vector import HimariBTCVectorEnv, make_himari_vector_env


def __getattr__(name: str) -> Any:
    # The SB3 adapter imports stable_baselines3: only when asked for.
    if name == "HimariBTCVecEnv":
        from himari_env.vector.sb3 import HimariBTCVecEnv

        return HimariBTCVecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["INFO_LEVELS", "OBSERVATION_MODES", "BatchedHimariStack", "HimariBTCVecEnv", "HimariBTCVectorEnv",
           "make_himari_vector_env"]
