"""Build and reload the L3 sizer's LSTM actor-critic (sb3-contrib ``RecurrentPPO``).

Like :mod:`agents.ppo`: the env is passed in, and a saved model is reloaded by rebuilding it
from the config and reading only the ``.pth`` tensors (``torch.load(weights_only=True)``
through ``set_parameters``), never the zip's cloudpickled ``data`` entry.

Policy: ``MultiInputLstmPolicy``. sb3's ``CombinedExtractor`` flattens the Dict observation
(features window, one-hot regime, held position, direction, base size, one-hot binding), an
``n_lstm_layers`` x ``lstm_hidden_size`` LSTM carries the memory (``shared_lstm``: one LSTM
for actor and critic, as in the design log's "LSTM ActorCritic"), then the heads
``ppo.net_arch_pi`` / ``ppo.net_arch_vf``. The log's "sequence length 20" has no direct
counterpart: RecurrentPPO back-propagates through each rollout segment (``ppo.n_steps``
steps, cut at episode starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.vec_env import VecEnv

from agents.config import ExperimentConfig
from agents.ppo import configure_logger, ppo_hyperparameters

__all__ = ["RecurrentRunner", "build_recurrent_ppo", "load_recurrent_ppo", "recurrent_policy_kwargs"]


def recurrent_policy_kwargs(config: ExperimentConfig) -> dict[str, Any]:
    """``policy_kwargs`` of ``MultiInputLstmPolicy`` from ``config.sizer`` and ``config.ppo``."""
    sizer = config.sizer
    if sizer is None:
        raise ValueError("the config has no sizer section (algo must be 'recurrent_ppo')")
    return {
        "lstm_hidden_size": sizer.lstm_hidden_size,
        "n_lstm_layers": sizer.n_lstm_layers,
        "shared_lstm": sizer.shared_lstm,
        "enable_critic_lstm": sizer.enable_critic_lstm,
        "net_arch": {"pi": list(config.ppo.net_arch_pi), "vf": list(config.ppo.net_arch_vf)},
    }


def build_recurrent_ppo(env: VecEnv, config: ExperimentConfig, *, tensorboard_log: str | None,
                        seed: int) -> RecurrentPPO:
    """A fresh ``RecurrentPPO`` on ``env`` (a vectorized ``HimariBTCSizer-v0``); the same
    hyperparameters, logger and seeding as :func:`agents.ppo.build_ppo`."""
    if config.train.torch_threads is not None:
        torch.set_num_threads(config.train.torch_threads)
    model = RecurrentPPO("MultiInputLstmPolicy", env, policy_kwargs=recurrent_policy_kwargs(config),
                         tensorboard_log=tensorboard_log, verbose=config.train.verbose, seed=seed,
                         **ppo_hyperparameters(config))
    configure_logger(model, tensorboard_log, verbose=config.train.verbose)
    return model


def load_recurrent_ppo(path: str | Path, env: VecEnv, config: ExperimentConfig, *,
                       tensorboard_log: str | None = None, seed: int = 0,
                       num_timesteps: int = 0) -> RecurrentPPO:
    """Rebuild from ``config`` and load the tensors of an SB3 zip (no unpickling); see
    :func:`agents.ppo.load_ppo`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at {path}")
    model = build_recurrent_ppo(env, config, tensorboard_log=tensorboard_log, seed=seed)
    model.set_parameters(str(path), exact_match=True, device=model.device)
    model.num_timesteps = int(num_timesteps)
    return model


class RecurrentRunner:
    """Deterministic actions of a recurrent model on one (non-vectorized) env, carrying the
    LSTM state from step to step; :meth:`reset` at each episode start."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._state: Any = None
        self._episode_start = np.ones((1,), dtype=bool)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """The action (1,) for ``observation`` (float32 in the action space)."""
        action, self._state = self.model.predict(observation, state=self._state,
                                                 episode_start=self._episode_start, deterministic=True)
        self._episode_start = np.zeros((1,), dtype=bool)
        return np.asarray(action, dtype=np.float32).reshape(-1)
