"""Build, vectorize and reload the regime-aware transformer PPO agent (Stable-Baselines3).

The env factory is always passed in (``make_env(rank) -> thunk``): this module imports no
wrapper or experiment code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor

from agents.config import ExperimentConfig
from agents.extractor import RegimeTransformerExtractor

__all__ = ["build_ppo", "count_parameters", "load_ppo", "make_vec_env_from_config", "policy_kwargs"]


def policy_kwargs(config: ExperimentConfig, feature_table: Any = None) -> dict[str, Any]:
    """``policy_kwargs`` for ``MultiInputPolicy``: the extractor (checked against
    ``env.context``), the actor/critic heads, one extractor shared by actor and critic.
    ``feature_table`` (float32 (n_bars, F)): the market's features, for an index-observation
    env (``train.observation_mode: index``)."""
    extractor_kwargs = config.extractor.extractor_kwargs(context=config.env.context)
    if feature_table is not None:
        extractor_kwargs["feature_table"] = feature_table
    return {
        "features_extractor_class": RegimeTransformerExtractor,
        "features_extractor_kwargs": extractor_kwargs,
        "net_arch": {"pi": list(config.ppo.net_arch_pi), "vf": list(config.ppo.net_arch_vf)},
        "share_features_extractor": True,
    }


def ppo_hyperparameters(config: ExperimentConfig) -> dict[str, Any]:
    """The PPO keyword arguments of ``config.ppo`` shared by PPO and RecurrentPPO."""
    ppo = config.ppo
    return {"learning_rate": ppo.learning_rate, "n_steps": ppo.n_steps, "batch_size": ppo.batch_size,
            "n_epochs": ppo.n_epochs, "gamma": ppo.gamma, "gae_lambda": ppo.gae_lambda,
            "clip_range": ppo.clip_range, "ent_coef": ppo.ent_coef, "vf_coef": ppo.vf_coef,
            "max_grad_norm": ppo.max_grad_norm, "target_kl": ppo.target_kl, "device": ppo.device}


def configure_logger(model: Any, tensorboard_log: str | None, *, verbose: int) -> None:
    """CSV and TensorBoard always; SB3's console table only when ``verbose > 0``."""
    if tensorboard_log is not None:
        formats = ["csv", "tensorboard"] + (["stdout"] if verbose > 0 else [])
        model.set_logger(configure(str(tensorboard_log), formats))


def build_ppo(
    env: VecEnv,
    config: ExperimentConfig,
    *,
    tensorboard_log: str | None,
    seed: int,
) -> PPO:
    """A fresh PPO agent on ``env`` with the transformer extractor.

    Parameters
    ----------
    env : VecEnv
        Vectorized env with the HIMARI Dict observation space (see
        :func:`make_vec_env_from_config`); its context must equal ``config.env.context``.
    config : ExperimentConfig
        ``ppo`` hyperparameters, ``extractor`` sizes, ``train.verbose``.
    tensorboard_log : str or None
        Folder for the SB3 logger. When given, the logger writes TensorBoard event files
        and ``progress.csv`` there: PPO's own diagnostics (fps, approx_kl, clip_fraction,
        explained_variance, entropy_loss, ...) and the callbacks' scalars. The console
        (stdout) gets SB3's table after every rollout only when ``train.verbose > 0``
        (``himari train -v``); at 0 SB3 prints nothing at all. None: SB3's default logger
        (stdout only if verbose).
    seed : int
        Seeds Python, numpy, torch, the action space and the env (env i gets seed + i).
        ``config.train.torch_threads``, when set, is applied with ``torch.set_num_threads``
        (process-wide).

    Returns
    -------
    PPO
        On ``config.ppo.device`` ("auto": CUDA when available, else CPU).
    """
    if config.train.torch_threads is not None:
        torch.set_num_threads(config.train.torch_threads)
    table = None
    if isinstance(env.observation_space, gym.spaces.Dict) and "bar_index" in env.observation_space.spaces:
        # index observations: the extractor gathers windows from the env's feature table
        table = env.get_attr("feature_table", indices=[0])[0]
    model = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs(config, table), tensorboard_log=tensorboard_log,
                verbose=config.train.verbose, seed=seed, **ppo_hyperparameters(config))
    if table is not None:
        # The policy holds the table (a non-persistent buffer); model.save would otherwise
        # cloudpickle the market's features into the zip's "data" entry. load_ppo rebuilds the
        # model from the config and the env, so the saved kwargs need not carry it.
        model.policy_kwargs = policy_kwargs(config)
    configure_logger(model, tensorboard_log, verbose=config.train.verbose)
    return model


def load_ppo(
    path: str | Path,
    env: VecEnv,
    config: ExperimentConfig,
    *,
    tensorboard_log: str | None = None,
    seed: int = 0,
    num_timesteps: int = 0,
) -> PPO:
    """Rebuild the agent from ``config`` and load the weights and optimizer state of an SB3
    zip (``model.save``), without unpickling anything.

    ``PPO.load`` would deserialize the zip's ``data`` entry (cloudpickled classes and
    schedules: the kind of pickle that broke in the design log when modules moved); here
    only the ``.pth`` tensors are read, with ``torch.load(weights_only=True)``. Pass the
    checkpoint's ``num_timesteps`` to resume training with ``learn(...,
    reset_num_timesteps=False)``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    RuntimeError
        When the saved tensors do not match the architecture in ``config``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at {path}")
    if tensorboard_log is None:
        # Loaded to predict (evaluation), not to train: SB3 has nothing to say ("Using cpu device").
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, verbose=0))
    model = build_ppo(env, config, tensorboard_log=tensorboard_log, seed=seed)
    model.set_parameters(str(path), exact_match=True, device=model.device)
    model.num_timesteps = int(num_timesteps)
    return model


def make_vec_env_from_config(
    config: ExperimentConfig,
    make_env: Callable[[int], Callable[[], gym.Env]],
) -> VecEnv:
    """``train.n_envs`` copies of the env, vectorized, monitored and seeded.

    Parameters
    ----------
    config : ExperimentConfig
        Reads ``train.n_envs``, ``train.seed`` and ``train.vec_env_start_method``.
    make_env : callable
        ``make_env(rank)`` returns a no-argument thunk that builds env number ``rank``. With
        several envs the thunks run in subprocesses, so they must be picklable (cloudpickle).

    Returns
    -------
    VecEnv
        ``DummyVecEnv`` for one env, else ``SubprocVecEnv`` started with
        ``train.vec_env_start_method`` ("forkserver" by default: a clean server process forks
        the workers, so no torch threads or CUDA state are inherited as with "fork"; "spawn"
        is the portable choice on macOS/Windows). Wrapped in ``VecMonitor`` (episode return
        and length in the logger) and seeded: env i resets first with ``train.seed + i``.
    """
    n_envs = config.train.n_envs
    thunks = [make_env(rank) for rank in range(n_envs)]
    if n_envs == 1:
        vec_env: VecEnv = DummyVecEnv(thunks)
    else:
        vec_env = SubprocVecEnv(thunks, start_method=config.train.vec_env_start_method)
    vec_env = VecMonitor(vec_env)
    vec_env.seed(config.train.seed)
    return vec_env


def count_parameters(model: PPO) -> int:
    """Number of scalar parameters of the policy (shared extractor counted once)."""
    return int(sum(parameter.numel() for parameter in model.policy.parameters()))
