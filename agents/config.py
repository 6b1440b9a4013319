"""Typed experiment configuration: extractor, PPO, environment and training settings.

A run is described by one :class:`ExperimentConfig`, read from YAML with :func:`load_config`
(unknown keys are rejected by their dotted name, values are type-checked) and written back
with :meth:`ExperimentConfig.to_dict` as the run's resolved configuration (JSON). Presets
live in ``experiments/configs/`` (``cpu-small.yaml``, ``gpu-full.yaml``).

This module imports neither torch nor SB3, so reading a config is fast.

YAML layout::

    name: cpu-small
    env:       {data, split, context, reward, regime_source, fee_rate, max_leverage,
                episode_length, risk, market_seed, decision_interval, action_set, feature_set,
                split_fractions, observed_features}
    extractor: {d_model, n_layers, n_heads, dim_feedforward, dropout, pooling}
    ppo:       {learning_rate, n_steps, batch_size, n_epochs, gamma, gae_lambda, clip_range,
                ent_coef, vf_coef, max_grad_norm, target_kl, device, net_arch_pi, net_arch_vf}
    train:     {seed, total_timesteps, n_envs, vec_env_start_method, eval_freq, eval_episodes,
                eval_split, validation_metric, checkpoint_freq, collapse_hold_low,
                collapse_hold_high, collapse_patience, stop_on_collapse, collapse_source,
                run_name, runs_dir, verbose, torch_threads, sleeves, mirror_envs}
    risk:      {drawdown_brake: {thresholds, reductions, peak_window_bars},
                regime_multipliers: {low_vol, trending, high_vol, crisis}, rebalance_band}
                (the RSS layer's settings; defaults: the design log's)
    algo:      ppo | recurrent_ppo
    sizer:     {direction_source, l2_run, delta_bound, momentum_lookback, lstm_hidden_size,
                n_lstm_layers, shared_lstm, enable_critic_lstm, delta_collapse_share}
                (only with recurrent_ppo)

Note: YAML 1.1 reads ``3e-4`` as a string; write floats with a dot (``3.0e-4``).
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from himari_env.config_codec import decode_dataclass, encode_dataclass
from himari_env.constants import DEFAULT_FEE_RATE, MAX_FEE_RATE, REGIME_SOURCES, REWARD_PRESETS
from himari_env.features.technical import FEATURE_SETS
from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.regime_multipliers import RegimeMultipliers
from wrappers.action_sets import ACTION_SETS

FEATURE_SET_NAMES = tuple(FEATURE_SETS)

__all__ = [
    "REGIME_SOURCES",
    "REWARD_PRESETS",
    "SPLITS",
    "VALIDATION_METRICS",
    "ConfigError",
    "EnvConfig",
    "ExperimentConfig",
    "ExtractorConfig",
    "PPOConfig",
    "RiskSettings",
    "SizerConfig",
    "TrainConfig",
    "load_config",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
VALIDATION_METRICS: tuple[str, ...] = ("sharpe", "total_return", "mean_reward")
POOLINGS: tuple[str, ...] = ("last", "mean")
START_METHODS: tuple[str, ...] = ("forkserver", "spawn", "fork")
#: ``train.vectorization``: the batched env (himari_env.vector, in process) or one
#: ``make_himari_env`` per ``SubprocVecEnv`` worker (the path before issue 12).
VECTORIZATIONS: tuple[str, ...] = ("batched", "subproc")
#: ``train.observation_mode``: the feature window in every observation, or the bar index
#: with the window gathered by the extractor from the market's feature table.
OBSERVATION_MODES: tuple[str, ...] = ("window", "index")
COLLAPSE_SOURCES: tuple[str, ...] = ("rollout", "eval")
#: Entropy coefficients the design log found to avoid action collapse (sessions 3 and 13).
LOG_ENT_COEF_RANGE: tuple[float, float] = (0.05, 0.10)


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type or out-of-range value (named)."""


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    _require(value in allowed, key, f"must be one of {list(allowed)}, got {value!r}")


@dataclass(frozen=True)
class EnvConfig:
    """Keyword arguments of ``make_himari_env`` / ``gym.make("HimariBTC-v0")``, with the
    factory's defaults (a test holds them equal).

    ``data`` is ``"synthetic"`` or a path to an OHLCV file. ``market_seed`` seeds the
    synthetic market (passed as the env's ``seed`` keyword): it is the same for every
    vectorized copy and for the validation env, so all of them see one market.
    ``episode_length`` is in bars (None: one full pass over the split). ``feature_set``
    names the technical features the run's pipeline fits (``standard`` or ``long_horizon``);
    ``observed_features`` (None: all) the observation features the agent sees, by name, in
    that order (``make_himari_env``; the regimes still come from every feature).
    """

    data: str = "synthetic"
    split: str = "train"
    context: int = 100
    reward: str = "adaptive"
    regime_source: str = "rules"
    fee_rate: float = DEFAULT_FEE_RATE
    max_leverage: float = 1.0
    episode_length: int | None = 2048
    risk: bool = True
    market_seed: int = 0
    decision_interval: int = 1
    action_set: str = "long_short"
    feature_set: str = "standard"
    split_fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
    observed_features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _require(bool(self.data), "env.data", "must be 'synthetic', 'planted' or a file path")
        _require(len(self.split_fractions) == 3 and all(f > 0 for f in self.split_fractions)
                 and abs(sum(self.split_fractions) - 1.0) < 1e-9, "env.split_fractions",
                 f"must be three positive train/val/test fractions summing to 1, got {self.split_fractions}")
        _require(self.decision_interval >= 1, "env.decision_interval",
                 f"must be >= 1 bar per decision, got {self.decision_interval}")
        _one_of(self.split, SPLITS, "env.split")
        _one_of(self.action_set, ACTION_SETS, "env.action_set")
        _one_of(self.feature_set, FEATURE_SET_NAMES, "env.feature_set")
        _require(self.observed_features is None or (len(self.observed_features) > 0
                 and len(set(self.observed_features)) == len(self.observed_features)), "env.observed_features",
                 f"must be null (all) or distinct feature names, got {self.observed_features}")
        _require(self.context >= 1, "env.context", f"must be >= 1 bar, got {self.context}")
        _one_of(self.reward, REWARD_PRESETS, "env.reward")
        _one_of(self.regime_source, REGIME_SOURCES, "env.regime_source")
        _require(
            0.0 <= self.fee_rate < MAX_FEE_RATE,
            "env.fee_rate",
            f"must be in [0, {MAX_FEE_RATE}) (a fraction of notional), got {self.fee_rate}",
        )
        _require(
            self.max_leverage > 0.0, "env.max_leverage", f"must be > 0, got {self.max_leverage}"
        )
        _require(
            self.episode_length is None or self.episode_length >= 1,
            "env.episode_length",
            f"must be >= 1 bar or null, got {self.episode_length}",
        )

    def env_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for the env factory, with ``overrides`` (e.g. ``split="val"``,
        ``episode_length=None``) applied; an override must name an env keyword."""
        kwargs: dict[str, Any] = {
            "data": self.data,
            "split": self.split,
            "context": self.context,
            "reward": self.reward,
            "regime_source": self.regime_source,
            "fee_rate": self.fee_rate,
            "max_leverage": self.max_leverage,
            "episode_length": self.episode_length,
            "risk": self.risk,
            "seed": self.market_seed,
            "decision_interval": self.decision_interval,
            "action_set": self.action_set,
            "feature_set": self.feature_set,
            "observed_features": None if self.observed_features is None else list(self.observed_features),
        }
        unknown = sorted(set(overrides) - set(kwargs))
        if unknown:
            raise ConfigError(f"unknown env keyword(s) {unknown}; known: {sorted(kwargs)}")
        kwargs.update(overrides)
        return kwargs


@dataclass(frozen=True)
class ExtractorConfig:
    """Transformer feature extractor (see :class:`agents.extractor.RegimeTransformerExtractor`).

    The extractor's output is ``[pooled sequence (d_model), regime + position embedding
    (d_model)]``, so :attr:`features_dim` is ``2 * d_model``. Presets: :meth:`full` (design
    log model) and :meth:`small` (CPU).
    """

    d_model: int = 256
    n_layers: int = 3
    n_heads: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.0
    pooling: str = "last"

    def __post_init__(self) -> None:
        _require(self.d_model >= 1, "extractor.d_model", f"must be >= 1, got {self.d_model}")
        _require(self.n_layers >= 1, "extractor.n_layers", f"must be >= 1, got {self.n_layers}")
        _require(self.n_heads >= 1, "extractor.n_heads", f"must be >= 1, got {self.n_heads}")
        _require(
            self.d_model % self.n_heads == 0,
            "extractor.d_model",
            f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
        )
        _require(
            self.dim_feedforward >= 1,
            "extractor.dim_feedforward",
            f"must be >= 1, got {self.dim_feedforward}",
        )
        _require(
            0.0 <= self.dropout < 1.0, "extractor.dropout", f"must be in [0, 1), got {self.dropout}"
        )
        _one_of(self.pooling, POOLINGS, "extractor.pooling")

    @property
    def features_dim(self) -> int:
        """Width of the extractor output (``2 * d_model``)."""
        return 2 * self.d_model

    def extractor_kwargs(self, *, context: int | None = None) -> dict[str, Any]:
        """``features_extractor_kwargs`` for SB3 (``context`` checks the observation space)."""
        return {
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "dim_feedforward": self.dim_feedforward,
            "dropout": self.dropout,
            "pooling": self.pooling,
            "context": context,
        }

    @classmethod
    def full(cls) -> ExtractorConfig:
        """The design log's model: 256-wide, 3 layers, 4 heads, features_dim 512."""
        return cls(d_model=256, n_layers=3, n_heads=4, dim_feedforward=1024, dropout=0.0)

    @classmethod
    def small(cls) -> ExtractorConfig:
        """The same code at CPU size: 32-wide, 1 layer, 2 heads, features_dim 64."""
        return cls(d_model=32, n_layers=1, n_heads=2, dim_feedforward=64, dropout=0.0)


@dataclass(frozen=True)
class PPOConfig:
    """Stable-Baselines3 PPO hyperparameters and policy heads.

    ``ent_coef`` defaults to 0.05: with hourly decisions the design log saw collapse to
    always-trade at 0.01 and used 0.05-0.10 afterwards (a value below 0.05 with
    ``env.decision_interval`` 1 warns; the presets decide every 24 bars, where 0.01 is what
    validation chose, see the README). ``target_kl`` None disables early
    stopping of the epochs. ``net_arch_pi`` / ``net_arch_vf`` are the actor and critic hidden
    layers on top of the extractor (the log: 512 -> 256 -> 3 and 512 -> 256 -> 1).
    """

    learning_rate: float = 3.0e-4
    n_steps: int = 2048
    batch_size: int = 256
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.05
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    device: str = "auto"
    net_arch_pi: tuple[int, ...] = (256,)
    net_arch_vf: tuple[int, ...] = (256,)

    def __post_init__(self) -> None:
        _require(
            self.learning_rate > 0.0, "ppo.learning_rate", f"must be > 0, got {self.learning_rate}"
        )
        _require(self.n_steps >= 2, "ppo.n_steps", f"must be >= 2, got {self.n_steps}")
        _require(self.batch_size >= 2, "ppo.batch_size", f"must be >= 2, got {self.batch_size}")
        _require(self.n_epochs >= 1, "ppo.n_epochs", f"must be >= 1, got {self.n_epochs}")
        _require(0.0 < self.gamma <= 1.0, "ppo.gamma", f"must be in (0, 1], got {self.gamma}")
        _require(
            0.0 <= self.gae_lambda <= 1.0,
            "ppo.gae_lambda",
            f"must be in [0, 1], got {self.gae_lambda}",
        )
        _require(self.clip_range > 0.0, "ppo.clip_range", f"must be > 0, got {self.clip_range}")
        _require(self.ent_coef >= 0.0, "ppo.ent_coef", f"must be >= 0, got {self.ent_coef}")
        _require(self.vf_coef >= 0.0, "ppo.vf_coef", f"must be >= 0, got {self.vf_coef}")
        _require(
            self.max_grad_norm > 0.0, "ppo.max_grad_norm", f"must be > 0, got {self.max_grad_norm}"
        )
        _require(
            self.target_kl is None or self.target_kl > 0.0,
            "ppo.target_kl",
            f"must be > 0 or null, got {self.target_kl}",
        )
        _require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "ppo.device",
            f"must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}",
        )
        for key, layers in (
            ("ppo.net_arch_pi", self.net_arch_pi),
            ("ppo.net_arch_vf", self.net_arch_vf),
        ):
            _require(
                all(width >= 1 for width in layers),
                key,
                f"layer widths must be >= 1, got {list(layers)}",
            )


@dataclass(frozen=True)
class TrainConfig:
    """Training loop: seeding, length, vectorization, evaluation, checkpoints, collapse.

    Frequencies are in environment timesteps (summed over the vectorized envs); 0 disables
    evaluation or checkpoints. The collapse detector warns when the HOLD share is below
    ``collapse_hold_low`` or above ``collapse_hold_high`` for ``collapse_patience``
    consecutive checks (rollouts when ``collapse_source = "rollout"``, validation passes
    when ``"eval"``) and stops training if ``stop_on_collapse``. ``torch_threads`` (None:
    torch's default) is applied process-wide by :func:`agents.ppo.build_ppo`; the small
    model on a shared 2-core CPU trains fastest with 1.

    ``vectorization`` (with ``n_envs > 1``): ``"batched"`` (default) steps the ``n_envs``
    episodes together in this process (:class:`himari_env.vector.HimariBTCVecEnv`, equal env
    for env to the single-env stack, same per-env seeds ``seed + k``); ``"subproc"`` runs one
    single-env stack per ``SubprocVecEnv`` worker started with ``vec_env_start_method``. The
    L3 sizer (``algo: recurrent_ppo``) always uses worker processes.

    ``observation_mode``: ``"window"`` (default: the (context, F) feature window in every
    observation) or ``"index"`` (the batched env's bar-index observation; the extractor
    gathers the windows from the market's feature table on the model's device, so a rollout
    moves a few numbers per env step; needs the batched env, also for one env; validation and
    evaluation show the single env's observation as a bar index,
    :class:`wrappers.index_observation.BarIndexObservation`).

    ``sleeves`` (default 1): validation, evaluation and the walk-forward run the policy as
    that many staggered sleeves of equal capital, their decision grids offset by
    ``env.decision_interval / sleeves`` bars (:mod:`agents.sleeves`), so neither model
    selection nor the scoreboard rests on the one grid the split's first bar happens to
    fix; training is unchanged (its episodes start at random bars). At most the decision
    interval.

    ``mirror_envs`` (default 0): the last that many of the ``n_envs`` training envs step the
    mirrored market (:func:`himari_env.data.augment.mirror_ohlcv`: the training bars with
    every log return negated, transformed by the run bundle fitted on the real bars), so an
    unconditional long (or short) bias earns nothing over the rollout and only what the
    observation says pays. Validation, evaluation and the walk-forward stay on the real
    bars. Needs ``vectorization: subproc`` (the batched env steps one market).
    """

    seed: int = 0
    total_timesteps: int = 1_000_000
    n_envs: int = 1
    vectorization: str = "batched"
    observation_mode: str = "window"
    vec_env_start_method: str = "forkserver"
    eval_freq: int = 50_000
    eval_episodes: int = 1
    eval_split: str = "val"
    validation_metric: str = "sharpe"
    checkpoint_freq: int = 100_000
    collapse_hold_low: float = 0.01
    collapse_hold_high: float = 0.99
    collapse_patience: int = 3
    stop_on_collapse: bool = False
    collapse_source: str = "rollout"
    run_name: str | None = None
    runs_dir: str = "runs"
    verbose: int = 1
    torch_threads: int | None = None
    sleeves: int = 1
    mirror_envs: int = 0

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "train.seed", f"must be >= 0, got {self.seed}")
        _require(self.mirror_envs == 0 or 0 < self.mirror_envs < self.n_envs, "train.mirror_envs",
                 f"must be in [0, n_envs) (at least one env on the real bars), got {self.mirror_envs} "
                 f"with n_envs {self.n_envs}")
        _require(self.mirror_envs == 0 or self.vectorization == "subproc", "train.mirror_envs",
                 "needs train.vectorization 'subproc' (the batched env steps one market)")
        _require(self.sleeves >= 1, "train.sleeves", f"must be >= 1 staggered sleeve, got {self.sleeves}")
        _require(
            self.total_timesteps >= 1,
            "train.total_timesteps",
            f"must be >= 1, got {self.total_timesteps}",
        )
        _require(self.n_envs >= 1, "train.n_envs", f"must be >= 1, got {self.n_envs}")
        _one_of(self.vec_env_start_method, START_METHODS, "train.vec_env_start_method")
        _one_of(self.vectorization, VECTORIZATIONS, "train.vectorization")
        _one_of(self.observation_mode, OBSERVATION_MODES, "train.observation_mode")
        _require(self.observation_mode == "window" or self.vectorization == "batched", "train.observation_mode",
                 "'index' needs train.vectorization 'batched' (index observations come from the batched env)")
        _require(
            self.eval_freq >= 0,
            "train.eval_freq",
            f"must be >= 0 (0 disables), got {self.eval_freq}",
        )
        _require(
            self.eval_episodes >= 1,
            "train.eval_episodes",
            f"must be >= 1, got {self.eval_episodes}",
        )
        _one_of(self.eval_split, SPLITS, "train.eval_split")
        _one_of(self.validation_metric, VALIDATION_METRICS, "train.validation_metric")
        _require(
            self.checkpoint_freq >= 0,
            "train.checkpoint_freq",
            f"must be >= 0 (0 disables), got {self.checkpoint_freq}",
        )
        _require(
            0.0 <= self.collapse_hold_low < self.collapse_hold_high <= 1.0,
            "train.collapse_hold_low",
            "need 0 <= collapse_hold_low < collapse_hold_high <= 1, got "
            f"{self.collapse_hold_low} and {self.collapse_hold_high}",
        )
        _require(
            self.collapse_patience >= 1,
            "train.collapse_patience",
            f"must be >= 1, got {self.collapse_patience}",
        )
        _one_of(self.collapse_source, COLLAPSE_SOURCES, "train.collapse_source")
        _require(
            self.run_name is None or (self.run_name != "" and "/" not in self.run_name),
            "train.run_name",
            f"must be a non-empty name without '/', got {self.run_name!r}",
        )
        _require(
            self.verbose in (0, 1, 2), "train.verbose", f"must be 0, 1 or 2, got {self.verbose}"
        )
        _require(
            self.torch_threads is None or self.torch_threads >= 1,
            "train.torch_threads",
            f"must be >= 1 or null, got {self.torch_threads}",
        )


ALGOS: tuple[str, ...] = ("ppo", "recurrent_ppo")
DIRECTION_SOURCES: tuple[str, ...] = ("always_long", "momentum", "regime_gated", "l2_run")


@dataclass(frozen=True)
class RiskSettings:
    """The RSS risk layer's settings a preset may choose (the ``risk`` section).

    Everything else of :class:`~himari_env.risk.config.RiskConfig` keeps the design log's
    values, and its fitted parts (EVT tails, volatility target) are fitted on each run's own
    train split when the run's bundle is built. The defaults are the design log's (a test
    holds them equal to ``RiskConfig()``), so a preset without a ``risk`` section trains
    exactly as before.

    ``drawdown_brake``: H4 thresholds and cuts (drawdown and cut fractions) and the rolling
    peak window in bars. ``regime_multipliers``: the size factor per regime.
    ``rebalance_band``: the no-trade band, a fraction of the held size.
    """

    drawdown_brake: DrawdownBrakeParams = field(default_factory=DrawdownBrakeParams)
    regime_multipliers: RegimeMultipliers = field(default_factory=RegimeMultipliers)
    rebalance_band: float = 0.25

    def __post_init__(self) -> None:
        _require(0.0 <= self.rebalance_band < 1.0, "risk.rebalance_band",
                 f"must be in [0, 1) (a fraction of the held size), got {self.rebalance_band}")

    def risk_config(self) -> RiskConfig:
        """The uncalibrated :class:`RiskConfig` these settings describe (calibrate it on train)."""
        return self.applied_to(RiskConfig())

    def applied_to(self, config: RiskConfig) -> RiskConfig:
        """``config`` with these settings; its fitted parts are kept (the calibration reads none
        of these settings, so one fit serves every choice of them)."""
        return config.replace(drawdown_brake=self.drawdown_brake, regime_multipliers=self.regime_multipliers,
                              rebalance_band=self.rebalance_band)

    @classmethod
    def of(cls, config: RiskConfig) -> RiskSettings:
        """The settings of ``config`` (calibrated or not)."""
        return cls(drawdown_brake=config.drawdown_brake, regime_multipliers=config.regime_multipliers,
                   rebalance_band=config.rebalance_band)


@dataclass(frozen=True)
class SizerConfig:
    """The L3 sizer (``HimariBTCSizer-v0``, :mod:`wrappers.sizer`) and its LSTM policy
    (sb3-contrib ``RecurrentPPO``, ``MultiInputLstmPolicy``); used when ``algo`` is
    ``recurrent_ppo``. The actor/critic heads are ``ppo.net_arch_pi`` / ``ppo.net_arch_vf``."""

    direction_source: str = "regime_gated"
    l2_run: str | None = None
    delta_bound: float = 0.30
    momentum_lookback: int = 24
    lstm_hidden_size: int = 256
    n_lstm_layers: int = 2
    shared_lstm: bool = True
    enable_critic_lstm: bool = False
    delta_collapse_share: float = 0.95

    def __post_init__(self) -> None:
        _one_of(self.direction_source, DIRECTION_SOURCES, "sizer.direction_source")
        _require((self.direction_source == "l2_run") == (self.l2_run is not None), "sizer.l2_run",
                 "a run folder is needed exactly when direction_source is 'l2_run'")
        _require(0.0 <= self.delta_bound < 1.0, "sizer.delta_bound", f"must be in [0, 1), got {self.delta_bound}")
        _require(self.momentum_lookback >= 1, "sizer.momentum_lookback", f"must be >= 1, got {self.momentum_lookback}")
        _require(self.lstm_hidden_size >= 1, "sizer.lstm_hidden_size", f"must be >= 1, got {self.lstm_hidden_size}")
        _require(self.n_lstm_layers >= 1, "sizer.n_lstm_layers", f"must be >= 1, got {self.n_lstm_layers}")
        _require(not (self.shared_lstm and self.enable_critic_lstm), "sizer.enable_critic_lstm",
                 "must be false when shared_lstm is true (one LSTM for actor and critic)")
        _require(0.0 < self.delta_collapse_share <= 1.0, "sizer.delta_collapse_share",
                 f"must be in (0, 1], got {self.delta_collapse_share}")

    def env_kwargs(self) -> dict[str, Any]:
        """The sizer keywords of :func:`wrappers.sizer.make_himari_sizer_env`."""
        return {"direction_source": self.direction_source, "l2_run": self.l2_run,
                "delta_bound": self.delta_bound, "momentum_lookback": self.momentum_lookback}


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run: ``name`` plus the four sections; ``algo`` ``ppo`` (the L2
    ``HimariBTC-v0`` transformer agent) or ``recurrent_ppo`` (the L3 sizer
    ``HimariBTCSizer-v0`` with an LSTM policy, configured by ``sizer``)."""

    name: str = "experiment"
    env: EnvConfig = field(default_factory=EnvConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    risk: RiskSettings = field(default_factory=RiskSettings)
    algo: str = "ppo"
    sizer: SizerConfig | None = None

    def __post_init__(self) -> None:
        _one_of(self.algo, ALGOS, "algo")
        _require((self.algo == "recurrent_ppo") == (self.sizer is not None), "sizer",
                 "a sizer section is needed exactly when algo is 'recurrent_ppo'")
        _require(
            bool(self.name) and "/" not in self.name,
            "name",
            f"must be a non-empty name without '/', got {self.name!r}",
        )
        rollout_size = self.ppo.n_steps * self.train.n_envs
        _require(
            rollout_size % self.ppo.batch_size == 0,
            "ppo.batch_size",
            f"batch_size ({self.ppo.batch_size}) must divide n_steps * n_envs "
            f"({self.ppo.n_steps} * {self.train.n_envs} = {rollout_size})",
        )
        if self.ppo.ent_coef < LOG_ENT_COEF_RANGE[0] and self.env.decision_interval == 1:
            warnings.warn(
                f"ppo.ent_coef = {self.ppo.ent_coef} is below {LOG_ENT_COEF_RANGE[0]} with hourly decisions "
                "(env.decision_interval 1): the design log saw the policy collapse to always-trade at 0.01; "
                "use 0.05-0.10, or decide every 24 bars as the presets do",
                UserWarning,
                stacklevel=3,
            )
        _require(self.train.sleeves <= self.env.decision_interval, "train.sleeves",
                 f"must not exceed env.decision_interval ({self.env.decision_interval} bars), got "
                 f"{self.train.sleeves}: two sleeves would share a decision grid")
        _require(self.train.sleeves == 1 or self.algo == "ppo", "train.sleeves",
                 "staggered sleeves are for the PPO direction agent (algo 'ppo')")
        _require(self.train.mirror_envs == 0 or self.algo == "ppo", "train.mirror_envs",
                 "the mirrored market is for the PPO direction agent (algo 'ppo')")
        if self.train.collapse_source == "eval":
            _require(
                self.train.eval_freq > 0,
                "train.collapse_source",
                "'eval' needs validation passes: set train.eval_freq > 0",
            )

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain JSON/YAML types (tuples become lists)."""
        return typing.cast(dict[str, Any], encode_dataclass(self, error=ConfigError))

    def resolved_run_name(self, now: datetime | None = None) -> str:
        """``train.run_name`` when set, else ``<name>_seed<seed>_<UTC YYYYmmdd-HHMMSS>``."""
        if self.train.run_name is not None:
            return self.train.run_name
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
        return f"{self.name}_seed{self.train.seed}_{stamp}"

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, source: str = "<dict>") -> ExperimentConfig:
        """Build from a mapping with the YAML layout; unknown keys and wrong types raise
        :class:`ConfigError` naming ``source`` and the dotted key."""
        try:
            return decode_dataclass(cls, document, error=ConfigError)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from a YAML file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ConfigError
        On YAML syntax errors, unknown keys (named, with the known ones), wrong types or
        out-of-range values.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(document).__name__}")
    return ExperimentConfig.from_dict(document, source=str(path))
