"""The one place that assembles the HIMARI wrapper stack (``gym.make("HimariBTC-v0")``).

::

    HimariBTCEnv(market)                    core: positions, fees, equity, episodes
      -> RegimeReward(preset)               reward: adaptive regime costs (default)
      -> RegimeFeatureObservation(...)      observation: EKF-denoised + percentile features,
                                            regime from the labeler or the HMM filter
      -> RSSRiskAction | DiscreteDirection  action: Discrete(3) -> sized target position
      -> LongFlatActions                    (action_set "long_flat") Discrete(2) HOLD/LONG
      -> DecisionInterval                   (decision_interval > 1) hold each action k bars
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd

from himari_env.artifacts import RunArtifacts
from himari_env.constants import DEFAULT_FEE_RATE
from himari_env.env import HimariBTCEnv
from himari_env.features.technical import FEATURE_SETS
from himari_env.pipeline import PipelineConfig, PreparedMarket, prepare_market
from wrappers.action_sets import ACTION_SETS, LongFlatActions
from wrappers.actions import DiscreteDirection
from wrappers.observations import REGIME_SOURCES, RegimeFeatureObservation, select_observed_features
from wrappers.rewards import RewardConfig

#: ``info`` levels of the stack (see :func:`make_himari_env`).
INFO_LEVELS = ("full", "training")

#: Bars of the embedded synthetic market (about five years of hours, like the real file).
SYNTHETIC_BARS = 45_000
SPLITS = ("train", "val", "test", "all")

_PREPARED: OrderedDict[tuple, PreparedMarket] = OrderedDict()
_PREPARED_MAX = 4


def load_frame(data: str | Path | pd.DataFrame, *, seed: int = 0, synthetic_bars: int = SYNTHETIC_BARS) -> pd.DataFrame:
    """Resolve the ``data`` argument: ``"synthetic"``, ``"planted"`` (the synthetic market with
    a planted trend edge, :mod:`himari_env.data.planted`), a path to any supported file, or a
    frame."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, str) and data == "synthetic":
        from himari_env.data import synthesize_market

        return synthesize_market(n_bars=synthetic_bars, seed=seed).frame
    if isinstance(data, str) and data == "planted":
        from himari_env.data.planted import synthesize_planted_market

        return synthesize_planted_market(n_bars=synthetic_bars, seed=seed).frame
    if isinstance(data, str | Path):
        from himari_env.data import load_ohlcv

        return load_ohlcv(Path(data))
    raise TypeError(f"data must be 'synthetic', a path or a DataFrame, got {type(data).__name__}")


def _data_key(data: str | Path) -> tuple:
    """Memo key of a ``data`` argument: a file is named by its resolved path, size and
    modification time, so a file rewritten in place is read again."""
    if isinstance(data, str) and data == "synthetic":
        return ("synthetic",)
    path = Path(data).resolve()
    try:
        stat = path.stat()
    except OSError:
        return (str(path),)  # load_frame reports the missing file
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _resolve_artifacts(artifacts: RunArtifacts | str | Path | None) -> RunArtifacts | None:
    if artifacts is None or isinstance(artifacts, RunArtifacts):
        return artifacts
    return RunArtifacts.load(artifacts)


def prepare(
    data: str | Path | pd.DataFrame = "synthetic",
    *,
    seed: int = 0,
    artifacts: RunArtifacts | str | Path | None = None,
    pipeline_config: PipelineConfig | None = None,
    synthetic_bars: int = SYNTHETIC_BARS,
) -> PreparedMarket:
    """Prepare (and memoize in this process) the market for ``data``.

    With ``artifacts`` (a :class:`~himari_env.artifacts.RunArtifacts` or a run folder),
    nothing is fitted on ``data`` and ``pipeline_config`` is not used. The memo is keyed by content, never by object identity:
    the data file's path, size and modification time, and the bundle's fingerprint.
    """
    bundle = _resolve_artifacts(artifacts)
    key = None
    if not isinstance(data, pd.DataFrame):
        # With a bundle, its fingerprint names the whole fitted state (pipeline_config is unused).
        fitted = repr(pipeline_config) if bundle is None else bundle.fingerprint()
        key = (_data_key(data), seed, synthetic_bars, fitted)
        if key in _PREPARED:
            _PREPARED.move_to_end(key)
            cached = _PREPARED[key]
            return cached if bundle is None else dataclasses.replace(cached, artifacts=bundle)
    frame = load_frame(data, seed=seed, synthetic_bars=synthetic_bars)
    if bundle is not None:
        prepared = prepare_market(frame, artifacts=bundle)
    else:
        prepared = prepare_market(frame, config=pipeline_config)
    if key is not None:
        _PREPARED[key] = prepared
        while len(_PREPARED) > _PREPARED_MAX:
            _PREPARED.popitem(last=False)
    return prepared


def make_himari_env(
    data: str | Path | pd.DataFrame | PreparedMarket = "synthetic",
    *,
    split: str = "train",
    context: int = 100,
    reward: str | RewardConfig = "adaptive",
    regime_source: str = "rules",
    fee_rate: float = DEFAULT_FEE_RATE,
    max_leverage: float = 1.0,
    episode_length: int | None = 2048,
    risk: bool = True,
    risk_config: Any | None = None,
    seed: int = 0,
    artifacts: RunArtifacts | str | Path | None = None,
    pipeline_config: PipelineConfig | dict[str, Any] | None = None,
    render_mode: str | None = None,
    decision_interval: int = 1,
    action_set: str = "long_short",
    feature_set: str = "standard",
    info_level: str = "full",
    pipeline: Any = None,
    first_decision_bars: int | None = None,
    observed_features: tuple[str, ...] | list[str] | None = None,
) -> gym.Env:
    """Build the full HIMARI stack.

    Parameters
    ----------
    data : ``"synthetic"`` (the embedded seeded market), a path (Binance kline CSV/ZIP, any
        OHLCV CSV/Parquet), a canonical DataFrame, or an already :class:`PreparedMarket`.
    split : ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (chronological 60/20/20).
        For unseen data, pass the later file as ``data`` with the training run's
        ``artifacts`` and ``split="all"``: nothing is fitted on it, the run's training tail
        is prepended (features warm from the file's first bar) and ``all`` is the file's bars.
    context : observation window in bars (default 100).
    reward : preset name (``adaptive``, ``simple``, ``opportunity``, ``sortino``, ``pnl``) or
        a :class:`~wrappers.rewards.RewardConfig`.
    regime_source : ``"rules"`` (the balanced labeler) or ``"hmm"`` (Student-t HMM forward
        filter fitted on train).
    fee_rate : fraction of traded notional (default 0.001: Binance spot taker fee, 0.10 %).
    max_leverage : bound on |position|.
    episode_length : ``int``: random start (seeded by ``reset(seed=...)``), that many steps;
        ``None``: one deterministic pass over the split.
    risk : wrap with the RSS risk layer (sized positions); ``False`` uses
        :class:`~wrappers.actions.DiscreteDirection` (positions 0, +1, -1).
    risk_config : a calibrated :class:`~himari_env.risk.config.RiskConfig` or its JSON path;
        default: the bundle's, else fitted on the market's own train split.
    seed : seed of the synthetic market (the env's own randomness is seeded by ``reset``).
    artifacts : a run bundle (:class:`~himari_env.artifacts.RunArtifacts`) or a run folder:
        the fitted state to use instead of fitting on ``data``.
    decision_interval : bars per decision (default 1): the outermost
        :class:`~wrappers.decision.DecisionInterval` holds each action that many bars and
        sums their rewards; the market, fee and risk layer still step every bar.
    action_set : ``"long_short"`` (Discrete(3) HOLD/LONG/SHORT) or ``"long_flat"`` (Discrete(2)
        HOLD/LONG, the spot trader's set; see :mod:`wrappers.action_sets`).
    feature_set : technical features fitted when the market is prepared here: ``"standard"``
        (44, horizons up to 168 bars; with a run bundle or a prepared market, whatever they
        hold) or ``"long_horizon"`` (50: plus 336- and 720-bar returns, 720-bar volatility,
        EMA distance and drawdown); a bundle or prepared market with another set raises.
    info_level : ``"full"`` (default: every info key) or ``"training"``: the RSS layer adds
        only ``info["action"]`` (no ``risk``, ``risk_binding``, ``risk_rebalanced``,
        ``risk_state``), which is all the training callbacks read; observations, rewards and
        terminations are the same.
    pipeline : removed (use ``artifacts``); passing it raises a TypeError that says so.
    first_decision_bars : bars the first decision after each reset is held (default: the
        decision interval): one sleeve of a staggered policy (:mod:`agents.sleeves`); needs
        ``decision_interval > 1``.
    observed_features : names of the observation features the agent sees, in that order
        (default None: all of them, e.g. 50 for the standard set); the pipeline still computes
        every feature and the regimes from them. An unknown name raises with the list.
    """
    if pipeline is not None:
        raise TypeError(
            "make_himari_env(pipeline=...) was replaced by artifacts=RUN_DIR: the run bundle holds the "
            "pipeline, the risk config and the training tail, so nothing is fitted on the data"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if action_set not in ACTION_SETS:
        raise ValueError(f"action_set must be one of {ACTION_SETS}, got {action_set!r}")
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {sorted(FEATURE_SETS)}, got {feature_set!r}")
    if first_decision_bars is not None and decision_interval == 1:
        raise ValueError("first_decision_bars needs decision_interval > 1 (hourly decisions have no grid to offset)")
    if info_level not in INFO_LEVELS:
        raise ValueError(f"info_level must be one of {INFO_LEVELS}, got {info_level!r}")
    if regime_source not in REGIME_SOURCES:
        raise ValueError(f"regime_source must be one of {REGIME_SOURCES}, got {regime_source!r}")
    reward_config = reward if isinstance(reward, RewardConfig) else RewardConfig(preset=reward)
    if isinstance(pipeline_config, dict):
        pipeline_config = PipelineConfig.from_dict(pipeline_config)
    if feature_set != "standard":
        pipeline_config = PipelineConfig(**{**(pipeline_config or PipelineConfig()).to_dict(),
                                            "feature_set": feature_set})
    if regime_source == "hmm":
        pipeline_config = PipelineConfig(**{**(pipeline_config or PipelineConfig()).to_dict(), "fit_hmm": True})
    bundle = _resolve_artifacts(artifacts)
    if isinstance(data, PreparedMarket):
        prepared = data
        if bundle is not None and prepared.artifacts is not None and prepared.artifacts is not bundle \
                and prepared.artifacts.fingerprint() != bundle.fingerprint():
            raise ValueError("the PreparedMarket was prepared with a different run bundle than artifacts=")
        bundle = bundle or prepared.artifacts
    else:
        prepared = prepare(data, seed=seed, artifacts=bundle, pipeline_config=pipeline_config)
    prepared_set = prepared.pipeline.config.feature_set if prepared.pipeline is not None else "standard"
    if feature_set != "standard" and prepared_set != feature_set:
        raise ValueError(f"feature_set={feature_set!r}, but the market was prepared with the {prepared_set!r} "
                         "features (its run bundle or PreparedMarket decides); drop feature_set or retrain")
    if regime_source not in prepared.regime_ids:
        fix = ("the run bundle has no HMM: train the run with regime_source 'hmm'" if bundle is not None
               else "prepare it with PipelineConfig(fit_hmm=True)")
        raise ValueError(
            f"regime_source={regime_source!r} is not available in this prepared market "
            f"(has {sorted(prepared.regime_ids)}); {fix}"
        )
    if risk and risk_config is None and bundle is not None:
        if bundle.risk_config is None:
            raise ValueError("the run bundle has no calibrated risk config (its calibration failed); "
                             "pass risk=False or risk_config=PATH")
        risk_config = bundle.risk_config

    env: gym.Env = HimariBTCEnv(
        prepared.market,
        split=split,
        context=context,
        fee_rate=fee_rate,
        max_leverage=max_leverage,
        episode_length=episode_length,
        render_mode=render_mode,
    )
    from wrappers.rewards import RegimeReward

    env = RegimeReward(env, reward_config, regime_ids=prepared.regime_ids[regime_source])
    features, feature_names = select_observed_features(
        prepared.observation_features, prepared.observation_feature_names, observed_features)
    env = RegimeFeatureObservation(
        env,
        features=features,
        feature_names=feature_names,
        regime_ids=prepared.regime_ids[regime_source],
    )
    if risk:
        from wrappers.risk_action import RSSRiskAction

        env = RSSRiskAction(env, risk_config, info_level=info_level)
    else:
        env = DiscreteDirection(env)
    if action_set == "long_flat":
        env = LongFlatActions(env)
    if decision_interval != 1:
        from wrappers.decision import DecisionInterval

        env = DecisionInterval(env, decision_interval, first_bars=first_decision_bars)
    return env
