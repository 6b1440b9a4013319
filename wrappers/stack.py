"""The one place that assembles the HIMARI wrapper stack (``gym.make("HimariBTC-v0")``).

::

    HimariBTCEnv(market)                    core: positions, fees, equity, episodes
      -> RegimeReward(preset)               reward: adaptive regime costs (default)
      -> RegimeFeatureObservation(...)      observation: EKF-denoised + percentile features,
                                            regime from the labeler or the HMM filter
      -> RSSRiskAction | DiscreteDirection  action: Discrete(3) -> sized target position
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd

from himari_env.constants import DEFAULT_FEE_RATE
from himari_env.env import HimariBTCEnv
from himari_env.pipeline import FittedPipeline, PipelineConfig, PreparedMarket, prepare_market
from wrappers.actions import DiscreteDirection
from wrappers.observations import REGIME_SOURCES, RegimeFeatureObservation
from wrappers.rewards import RewardConfig

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


def prepare(
    data: str | Path | pd.DataFrame = "synthetic",
    *,
    seed: int = 0,
    pipeline: FittedPipeline | str | Path | None = None,
    pipeline_config: PipelineConfig | None = None,
    synthetic_bars: int = SYNTHETIC_BARS,
) -> PreparedMarket:
    """Prepare (and memoize in this process) the market for ``data``."""
    key = None
    if not isinstance(data, pd.DataFrame):
        # A pipeline folder is named by its path; an in-memory pipeline by its identity.
        pipeline_key = str(Path(pipeline).resolve()) if isinstance(pipeline, str | Path) else id(pipeline)
        key = (str(data), seed, synthetic_bars, pipeline_key if pipeline is not None else None,
               repr(pipeline_config))
        if key in _PREPARED:
            _PREPARED.move_to_end(key)
            return _PREPARED[key]
    if isinstance(pipeline, str | Path):
        pipeline = FittedPipeline.load(pipeline)
    frame = load_frame(data, seed=seed, synthetic_bars=synthetic_bars)
    prepared = prepare_market(frame, config=pipeline_config, pipeline=pipeline)
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
    pipeline: FittedPipeline | str | Path | None = None,
    pipeline_config: PipelineConfig | dict[str, Any] | None = None,
    render_mode: str | None = None,
    decision_interval: int = 1,
) -> gym.Env:
    """Build the full HIMARI stack.

    Parameters
    ----------
    data : ``"synthetic"`` (the embedded seeded market), a path (Binance kline CSV/ZIP, any
        OHLCV CSV/Parquet), a canonical DataFrame, or an already :class:`PreparedMarket`.
    split : ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (chronological 60/20/20).
        For unseen data, pass the later file as ``data`` with a fitted ``pipeline`` and
        ``split="all"``.
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
    seed : seed of the synthetic market (the env's own randomness is seeded by ``reset``).
    pipeline : a fitted pipeline (or its folder) to reuse instead of fitting on ``data``.
    decision_interval : bars per decision (default 1): the outermost
        :class:`~wrappers.decision.DecisionInterval` holds each action that many bars and
        sums their rewards; the market, fee and risk layer still step every bar.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if regime_source not in REGIME_SOURCES:
        raise ValueError(f"regime_source must be one of {REGIME_SOURCES}, got {regime_source!r}")
    reward_config = reward if isinstance(reward, RewardConfig) else RewardConfig(preset=reward)
    if isinstance(pipeline_config, dict):
        pipeline_config = PipelineConfig.from_dict(pipeline_config)
    if regime_source == "hmm":
        pipeline_config = PipelineConfig(**{**(pipeline_config or PipelineConfig()).to_dict(), "fit_hmm": True})
    if isinstance(data, PreparedMarket):
        prepared = data
    else:
        prepared = prepare(data, seed=seed, pipeline=pipeline, pipeline_config=pipeline_config)
    if regime_source not in prepared.regime_ids:
        raise ValueError(
            f"regime_source={regime_source!r} is not available in this prepared market "
            f"(has {sorted(prepared.regime_ids)}); prepare it with PipelineConfig(fit_hmm=True)"
        )

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
    env = RegimeFeatureObservation(
        env,
        features=prepared.observation_features,
        feature_names=prepared.observation_feature_names,
        regime_ids=prepared.regime_ids[regime_source],
    )
    if risk:
        from wrappers.risk_action import RSSRiskAction

        env = RSSRiskAction(env, risk_config)
    else:
        env = DiscreteDirection(env)
    if decision_interval != 1:
        from wrappers.decision import DecisionInterval

        env = DecisionInterval(env, decision_interval)
    return env
