"""RSSRiskAction: the agent's Discrete(3) direction -> a position sized by the RSS risk layer.

The outermost wrapper of the stack. Each step it reads only causal state:

* the regime of the latest observation it passed through (``obs["regime"]``, so the
  regime source the agent sees: rules labeler or HMM filter),
* the per-market arrays of :class:`~himari_env.risk.engine.RiskEngine` at the current bar
  ``t = unwrapped.bar_index`` (trailing volatility, rolling VaR: returns of bars <= t,
  computed once per market),
* its own episode state (risk budget, Kelly outcome totals, the drawdown brake's rolling
  equity peak), reset with the episode.

``info`` gains ``"action"`` (0 HOLD / 1 LONG / 2 SHORT), ``"risk"`` (``{method: (size before,
size after)}`` in pipeline order, multiples of equity), ``"risk_binding"`` (the method that
cut the size most, ``"none"`` or ``"hold"``) and ``"risk_state"`` (the causal inputs, with
``None`` for a quantity that has no history yet, and Kelly's informative flag and reason) and
``"risk_rebalanced"`` (False when the new size lay inside the no-trade band
``config.rebalance_band`` around the held position, which was then kept: same direction, size
within the band, no fee). HOLD always sends exactly 0.0.

Calibration: without a calibrated config the wrapper fits one on the market's ``train`` split
at construction (about 0.2 s for five years of hours). A market prepared from *unseen* data
with a run bundle (``gym.make(..., data=LATER, artifacts=RUN_DIR, split="all")``) has no
``train`` split, only ``all``: the env factory passes the bundle's config, and without one
the wrapper refuses instead of fitting on the unseen bars.

``info_level``: ``"full"`` (default) reports all of the above; ``"training"`` only
``"action"`` (what the training callbacks read), which saves building the trace and state
dicts and computing Kelly's edge probability where the size does not depend on it. Positions,
observations, rewards and terminations are the same at both levels.

Cost: the composer's arithmetic on per-bar values computed once per market
(:class:`~himari_env.risk.bar_composer.BarComposer`), an O(1) update of the episode state and,
at the full info level, the info dicts and Kelly's estimate (one ``betainc`` per change of
the outcome totals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from himari_env.constants import ACTION_NAMES
from himari_env.env import core_env
from himari_env.risk.bar_composer import BarComposer
from himari_env.risk.calibration import calibrate_risk
from himari_env.risk.composer import BINDING_HOLD, METHOD_ORDER, binding_method
from himari_env.risk.config import RiskConfig
from himari_env.risk.engine import RiskEngine

#: Direction of each discrete action (0 HOLD, 1 LONG, 2 SHORT) as integers for the composer.
_DIRECTIONS = (0, 1, -1)
#: ``info`` levels: everything, or only what the training callbacks read.
INFO_LEVELS = ("full", "training")
_HOLD_SIZES = (0.0,) * (len(METHOD_ORDER) + 1)


def _trace(sizes: tuple[float, ...]) -> dict[str, tuple[float, float]]:
    """``Sizing.trace()``: ``{method: (size before, size after)}`` in pipeline order."""
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = sizes
    return {"h3_vol_target": (s0, s1), "regime_multiplier": (s1, s2), "h8_risk_budget": (s2, s3),
            "h4_drawdown_brake": (s3, s4), "h6_safe_margin": (s4, s5), "h2_kelly": (s5, s6),
            "h1_evt": (s6, s7), "h5_var": (s7, s8), "h7_leverage": (s8, s9)}


assert tuple(_trace(tuple(map(float, range(10))))) == METHOD_ORDER


def _finite_or_none(value: float) -> float | None:
    # math.isfinite without the call: x - x is 0.0 for finite x, NaN for inf and NaN.
    return value if value - value == 0.0 else None


class RSSRiskAction(gym.Wrapper):
    """Discrete(3) -> RSS-sized target position on an env with a Box(-L, L, (1,)) action.

    Parameters
    ----------
    env : gym.Env
        A stack whose unwrapped env is a :class:`~himari_env.env.HimariBTCEnv` (it provides
        ``market``, ``bar_index``, ``equity``, ``drawdown``, ``position``, ``max_leverage``).
    config : RiskConfig, path to its JSON, or None
        A calibrated config. ``None`` (or an uncalibrated config): calibrate it on the
        market's ``train`` split (returns that span gaps excluded), never on other data.
    info_level : ``"full"`` (default) or ``"training"`` (see the module docstring).
    """

    def __init__(self, env: gym.Env, config: RiskConfig | str | Path | None = None, *,
                 info_level: str = "full") -> None:
        super().__init__(env)
        if info_level not in INFO_LEVELS:
            raise ValueError(f"info_level must be one of {INFO_LEVELS}, got {info_level!r}")
        self.info_level = info_level
        self._full_info = info_level == "full"
        inner = env.action_space
        if not isinstance(inner, spaces.Box) or inner.shape != (1,):
            raise ValueError(f"RSSRiskAction needs an inner Box action space of shape (1,), got {inner}")
        if isinstance(config, str | Path):
            config = RiskConfig.load(config)
        self._requested_config = config
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self._market: Any = None
        self.engine: RiskEngine | None = None
        self._composer: BarComposer | None = None
        self._core = core_env(env)
        self._target = np.zeros(1, dtype=np.float32)
        self._regime = 0
        self._ensure_engine()

    @property
    def config(self) -> RiskConfig:
        """The calibrated config in use (save it with ``wrapper.config.save(path)``)."""
        assert self.engine is not None
        return self.engine.config

    def _ensure_engine(self) -> RiskEngine:
        core = core_env(self.env)
        market = core.market
        if self.engine is not None and market is self._market:
            return self.engine
        config = self._requested_config
        if config is None or not config.is_calibrated:
            if "train" not in market.splits:
                raise ValueError(
                    "RSSRiskAction without a calibrated RiskConfig calibrates on the market's "
                    f"'train' split, but this market has splits {sorted(market.splits)}: pass the "
                    "training run's risk config (risk_config=PATH or artifacts=RUN_DIR)"
                )
            train = market.splits["train"]
            config = calibrate_risk(market.returns[train], config=config, gap_before=market.gap_before[train])
        self.engine = RiskEngine(config, market.returns, max_leverage=float(core.max_leverage))
        self.engine.eager_kelly = self._full_info  # full info reads the estimate every step
        self._composer = BarComposer(self.engine)
        self._market = market
        return self.engine

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        engine = self._ensure_engine()
        engine.reset(float(core_env(self.env).equity))
        self._regime = int(observation["regime"])
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        kind = type(action)
        if (kind is int or kind is np.int64) and 0 <= action <= 2:  # the fast path; the rest is checked
            index = int(action)
        else:
            try:
                index = int(action)
            except (TypeError, ValueError) as error:
                raise ValueError(f"action must be 0 HOLD, 1 LONG or 2 SHORT, got {action!r}") from error
            if index != action or not 0 <= index < len(_DIRECTIONS):
                raise ValueError(f"action must be 0 HOLD, 1 LONG or 2 SHORT, got {action!r}")
        engine = self.engine
        composer = self._composer
        assert engine is not None and composer is not None, "call reset() before step()"
        core = self._core
        t = core.bar_index
        direction = _DIRECTIONS[index]
        held = core.position
        risk_budget = engine.risk_budget
        # HOLD needs no state (only the full info reports it)
        drawdown = engine.brake_drawdown() if direction or self._full_info else 0.0
        if direction == 0:
            sizes = _HOLD_SIZES
            position = 0.0
        else:
            # an undecided Kelly cap is decided (betainc) only if it could bind
            sizes = composer.sizes(direction, t, self._regime, drawdown, risk_budget, engine._kelly_cap,
                                   None if engine._kelly_pending is None else engine.resolve_kelly_cap)
            position = direction * sizes[9]
        # the rebalance band (composer.apply_rebalance_band)
        rebalanced = True
        if position != 0.0 and held != 0.0 and (position > 0.0) == (held > 0.0) \
                and abs(position - held) <= engine.config.rebalance_band * abs(held):
            position, rebalanced = held, False
        if self._full_info:
            kelly = engine.kelly  # as it stood when the size was computed
            regime = self._regime
        target = self._target  # the core env reads the value at once and keeps no reference
        target[0] = position
        observation, reward, terminated, truncated, info = self.env.step(target)
        engine.record_step(core.bar_index, core.position, core.equity)
        self._regime = int(observation["regime"])
        info["action"] = index
        if self._full_info:
            info["risk"] = _trace(sizes)
            info["risk_binding"] = BINDING_HOLD if direction == 0 else binding_method(sizes)
            info["risk_rebalanced"] = rebalanced
            info["risk_state"] = {
                "regime": regime,
                "vol_annualized": _finite_or_none(engine._vol[t]),
                "bar_volatility": _finite_or_none(engine._sigma[t]),
                "var_unit": _finite_or_none(engine._var_long[t] if direction >= 0 else engine._var_short[t]),
                "drawdown": drawdown,
                "risk_budget": risk_budget,
                "kelly_informative": kelly.informative,
                "kelly_reason": kelly.reason,
                "kelly_edge_probability": kelly.edge_probability,
            }
        return observation, reward, terminated, truncated, info
