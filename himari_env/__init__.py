"""HIMARI: a causal Gymnasium environment for the BTC 1-hour market.

Importing this package registers ``HimariBTC-v0``. The entry point is a string, so importing
``himari_env`` imports no wrapper code; :func:`wrappers.stack.make_himari_env` assembles the
default stack (reward, observation and action wrappers) when ``gym.make`` is called::

    import gymnasium as gym
    import himari_env  # noqa: F401  (registers HimariBTC-v0)

    env = gym.make("HimariBTC-v0")
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

ENV_ID = "HimariBTC-v0"
#: The L3 bounded-delta position sizer on an L2 direction (wrappers/sizer.py).
SIZER_ENV_ID = "HimariBTCSizer-v0"

if ENV_ID not in registry:
    # vector_entry_point: gym.make_vec(ENV_ID, num_envs=N) builds the batched env
    # (himari_env.vector), N episodes stepped together on arrays.
    register(id=ENV_ID, entry_point="wrappers.stack:make_himari_env",
             vector_entry_point="himari_env.vector.gym_vector:make_himari_vector_env")
if SIZER_ENV_ID not in registry:
    register(id=SIZER_ENV_ID, entry_point="wrappers.sizer:make_himari_sizer_env")

__all__ = ["ENV_ID", "SIZER_ENV_ID", "__version__"]
