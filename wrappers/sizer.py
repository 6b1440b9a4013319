"""HimariBTCSizer-v0: the Layer-3 bounded-delta position sizer on top of an L2 direction.

::

    HimariBTCEnv -> RegimeReward -> RegimeFeatureObservation     (make_himari_env, unchanged)
      -> BoundedDeltaSizer(direction source, RSS engine)         action Box(-1, 1, (1,))
      [-> DecisionInterval when decision_interval > 1]

Each decision bar t:

1. a **direction** ``d_t`` in {-1, 0, +1} comes from an L2 source: a rule
   (``always_long``, ``momentum`` = sign of the trailing ``momentum_lookback``-bar return,
   ``regime_gated`` = long except in HIGH_VOL and CRISIS, the regime the agent observes) or a
   trained ``HimariBTC-v0`` run (:class:`L2RunDirection`, loaded without unpickling);
2. the RSS layer's **base size** ``b_t`` is the composer's size *before the caps*: unit size
   times H3 volatility target, regime multiplier, H8 risk budget and H4 drawdown brake
   (``Sizing.sizes[4]`` of :func:`~himari_env.risk.composer.compose_position`);
3. the agent's action ``a`` in [-1, 1] scales it: ``requested = b_t * (1 + delta)`` with
   ``delta = delta_bound * a`` (0.30 by default: the design log's ``0.30 * tanh(x)``; SB3
   clips the Gaussian sample to the Box, so ``a`` plays the role of ``tanh(x)``);
4. then the **caps**, in the composer's order: H6 safe margin, H2 Kelly (when informative),
   H1 EVT, H5 VaR, H7 leverage. So ``|position| <= H7(min(caps))`` whatever ``a`` is: the delta
   can never breach a cap, and with ``a = 0`` the position is exactly the RSS layer's
   (:class:`~wrappers.risk_action.RSSRiskAction` for the same direction; tested);
5. the RSS no-trade band (``config.rebalance_band``) is applied last, as in the L2 stack.

Observation: the L2 observation (``features``, ``regime``, ``position`` = the held position)
plus ``direction`` (Box(-1, 1, (1,)): d_t), ``base_size`` (Box(0, inf, (1,)): b_t) and
``binding`` (Discrete: the RSS method that cut the delta-0 size most at t, index into
:data:`BINDINGS`). All of them are causal (bars <= t; the engine's episode state).

``info`` gains ``action`` (the direction as 0 HOLD / 1 LONG / 2 SHORT, so the L2 tools can
read it), ``sizer_action`` (a), ``delta`` (``delta_bound * a``; 0 when flat), ``direction``,
``base_size``, ``requested_size``, ``risk`` (``{method: (before, after)}`` over
:data:`SIZER_METHOD_ORDER`), ``risk_binding`` (the method that cut the final size most,
``l3_delta`` included) and ``risk_rebalanced``. Reward: the stack's reward preset on the
sized position, fees included.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from himari_env.env import core_env
from himari_env.risk.composer import (
    BINDING_HOLD,
    BINDING_NONE,
    METHOD_ORDER,
    RiskState,
    apply_rebalance_band,
    compose_position,
)
from himari_env.risk.config import RiskConfig
from himari_env.risk.engine import RiskEngine
from himari_env.risk.evt import evt_position_cap
from himari_env.risk.leverage import leverage_limit
from himari_env.risk.portfolio_var import var_position_cap
from himari_env.risk.safe_margin import safe_margin_cap
from himari_env.rules import momentum_directions, regime_gated_directions

__all__ = [
    "BINDINGS",
    "DEFAULT_DELTA_BOUND",
    "DIRECTION_RULES",
    "SIZER_METHOD_ORDER",
    "BoundedDeltaSizer",
    "DeltaSizing",
    "L2RunDirection",
    "RuleDirection",
    "make_himari_sizer_env",
    "rule_directions",
    "size_with_delta",
]

DEFAULT_DELTA_BOUND = 0.30
DIRECTION_RULES: tuple[str, ...] = ("always_long", "momentum", "regime_gated")
#: Where the delta acts: after the four factors (the base), before the caps.
SIZER_METHOD_ORDER: tuple[str, ...] = METHOD_ORDER[:4] + ("l3_delta",) + METHOD_ORDER[4:]
#: Values of the ``binding`` observation (index = the Discrete value).
BINDINGS: tuple[str, ...] = (BINDING_NONE, BINDING_HOLD, *METHOD_ORDER)
_BASE_STAGE = 4  # Sizing.sizes[4]: after h4_drawdown_brake, before h6_safe_margin
_ACTION_INDEX = {0: 0, 1: 1, -1: 2}  # direction -> 0 HOLD / 1 LONG / 2 SHORT


# ---------------------------------------------------------------------------- sizing
class DeltaSizing:
    """Result of :func:`size_with_delta`: ``position`` and the size after each stage of
    :data:`SIZER_METHOD_ORDER` (``sizes[0]`` the unit size, ``sizes[5]`` after the delta)."""

    __slots__ = ("binding", "position", "sizes")

    def __init__(self, position: float, sizes: tuple[float, ...], binding: str) -> None:
        self.position = position
        self.sizes = sizes
        self.binding = binding

    @property
    def base(self) -> float:
        """The base size (before the delta and the caps)."""
        return self.sizes[_BASE_STAGE]

    def trace(self) -> dict[str, tuple[float, float]]:
        return dict(zip(SIZER_METHOD_ORDER, itertools.pairwise(self.sizes), strict=True))


def _binding(sizes: tuple[float, ...], order: tuple[str, ...]) -> str:
    best_ratio, best, before = 1.0, BINDING_NONE, sizes[0]
    for name, after in zip(order, sizes[1:], strict=True):
        if before > 0.0 and after / before < best_ratio:
            best_ratio, best = after / before, name
        before = after
    return best


def size_with_delta(direction: int, state: RiskState, config: RiskConfig, max_leverage: float,
                    delta: float) -> DeltaSizing:
    """The RSS composition with the L3 factor ``1 + delta`` inserted between the base (after
    H4) and the caps (H6, H2, H1, H5, H7). ``delta = 0`` gives exactly
    :func:`~himari_env.risk.composer.compose_position`'s position (tested).

    Parameters
    ----------
    direction : -1, 0 or 1.
    state : the causal RiskState at the decision bar.
    config : a calibrated RiskConfig.
    max_leverage : the env's bound on |position|.
    delta : in [-1, inf) (the sizer passes ``delta_bound * a`` with ``|a| <= 1``).
    """
    if not (math.isfinite(delta) and delta >= -1.0):
        raise ValueError(f"delta must be a finite number >= -1, got {delta!r}")
    base = compose_position(direction, state, config, max_leverage)
    if direction == 0:
        return DeltaSizing(0.0, (0.0,) * (len(SIZER_METHOD_ORDER) + 1), BINDING_HOLD)
    s = list(base.sizes[: _BASE_STAGE + 1])
    x = s[-1] * (1.0 + delta)
    s.append(x)
    x = min(x, safe_margin_cap(state.bar_volatility, config.safe_margin))
    s.append(x)
    x = min(x, state.kelly_cap)
    s.append(x)
    x = min(x, evt_position_cap(config.evt.unit_es(direction), config.evt.es_budget))
    s.append(x)
    unit_var = state.var_long if direction > 0 else state.var_short
    x = min(x, var_position_cap(unit_var, config.portfolio_var.var_budget))
    s.append(x)
    x = leverage_limit(x, config.leverage, max_leverage)
    s.append(x)
    sizes = tuple(s)
    return DeltaSizing(direction * x, sizes, _binding(sizes, SIZER_METHOD_ORDER))


# ---------------------------------------------------------------------------- directions
def rule_directions(rule: str, close: np.ndarray, regime_ids: np.ndarray, *, momentum_lookback: int = 24) -> np.ndarray:
    """Causal direction array (int8 (n,), -1/0/1) of a rule: ``always_long`` (1 everywhere),
    ``momentum`` (``sign(close[t] - close[t - lookback])``, 0 before the lookback fills),
    ``regime_gated`` (1 except 0 in HIGH_VOL and CRISIS). Same values as
    :mod:`experiments.baselines`' ``buy_and_hold``, ``momentum_<k>_ls`` and ``regime_gated``."""
    prices = np.asarray(close, dtype=np.float64)
    n = prices.size
    if rule == "always_long":
        return np.ones(n, dtype=np.int8)
    if rule == "momentum":
        if momentum_lookback < 1:
            raise ValueError(f"momentum_lookback must be >= 1 bar, got {momentum_lookback}")
        return momentum_directions(prices, momentum_lookback)
    if rule == "regime_gated":
        return regime_gated_directions(regime_ids)
    raise ValueError(f"direction_source must be one of {list(DIRECTION_RULES)} or 'l2_run', got {rule!r}")


class DirectionSource(Protocol):
    """Gives the L2 direction at decision bar t (bars <= t only)."""

    name: str

    def reset(self) -> None: ...

    def direction(self, t: int, held_position: float) -> int: ...


class RuleDirection:
    """A precomputed causal direction array (:func:`rule_directions`)."""

    def __init__(self, name: str, directions: np.ndarray) -> None:
        self.name = name
        self._directions = np.asarray(directions, dtype=np.int8).tolist()

    def reset(self) -> None:
        return None

    def direction(self, t: int, held_position: float) -> int:
        return int(self._directions[t])


class L2RunDirection:
    """The deterministic action of a trained ``HimariBTC-v0`` run (its ``best/best_model.zip``
    or ``final_model.zip``), loaded with :func:`agents.ppo.load_ppo` (tensors only).

    At bar t the L2 policy sees its own observation (its ``context`` window of the same
    observation features, the regime, and the position held in the sizer env: the L3-sized
    position, not the one the L2 stack would have held; documented difference).
    The sizer env must use the L2 run's bundle (``artifacts=L2_RUN``), so the features are
    the ones the L2 policy was trained on; when the run observes a view
    (``env.observed_features``), its columns are selected here by name from ``feature_names``
    (the names of ``features``' columns: the sizer env's observation features, all of them
    unless the sizer observes a view of its own, which must then include the run's). A long/flat run
    (``env.action_set: long_flat``) gives directions 0 and +1.
    """

    def __init__(self, run_dir: str | Path, features: np.ndarray, regime_ids: np.ndarray, *,
                 feature_names: tuple[str, ...] | None = None, model_name: str = "best/best_model.zip") -> None:
        from stable_baselines3.common.vec_env import DummyVecEnv

        from agents.config import ExperimentConfig
        from agents.ppo import load_ppo

        run_dir = Path(run_dir)
        config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()),
                                            source=str(run_dir / "config.json"))
        if config.algo != "ppo":
            raise ValueError(f"{run_dir} is not an L2 (algo 'ppo') run: algo {config.algo!r}")
        path = run_dir / model_name
        if not path.is_file():
            path = run_dir / "final_model.zip"
        if not path.is_file():
            raise FileNotFoundError(f"no {model_name} and no final_model.zip in {run_dir}")
        self.name = f"l2_run:{run_dir}"
        self.context = config.env.context
        if config.env.observed_features is not None:
            if feature_names is None:
                raise ValueError(f"{run_dir} observes {len(config.env.observed_features)} named features "
                                 "(env.observed_features): pass feature_names to select them")
            from wrappers.observations import select_observed_features

            features, _ = select_observed_features(features, tuple(feature_names), config.env.observed_features)
        self._features = np.ascontiguousarray(features, dtype=np.float32)
        self._regimes = np.asarray(regime_ids).tolist()
        n_features = self._features.shape[1]
        probe_space = spaces.Dict({
            "features": spaces.Box(-np.inf, np.inf, shape=(self.context, n_features), dtype=np.float32),
            "regime": spaces.Discrete(4),
            "position": spaces.Box(-config.env.max_leverage, config.env.max_leverage, shape=(1,), dtype=np.float32),
        })
        n_actions = 2 if config.env.action_set == "long_flat" else 3  # 0 HOLD, 1 LONG (, 2 SHORT)
        probe = DummyVecEnv([lambda: _SpaceOnlyEnv(probe_space, spaces.Discrete(n_actions))])
        self.model = load_ppo(path, probe, config, seed=config.train.seed)
        self._max_leverage = float(config.env.max_leverage)
        probe.close()

    def reset(self) -> None:
        return None

    def direction(self, t: int, held_position: float) -> int:
        if t + 1 < self.context:
            raise ValueError(f"bar {t} has fewer than the L2 run's context ({self.context}) bars before it")
        held = min(max(held_position, -self._max_leverage), self._max_leverage)
        observation = {"features": self._features[t - self.context + 1: t + 1],
                       "regime": self._regimes[t], "position": np.array([held], dtype=np.float32)}
        action, _ = self.model.predict(observation, deterministic=True)
        return (0, 1, -1)[int(action)]


class _SpaceOnlyEnv(gym.Env):
    """An env that only carries spaces (to rebuild a policy for loading)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        return self.observation_space.sample(), 0.0, True, False, {}


# ---------------------------------------------------------------------------- the wrapper
class BoundedDeltaSizer(gym.Wrapper):
    """Box(-1, 1, (1,)) -> ``direction * caps(base * (1 + delta_bound * a))`` (module docstring).

    Parameters
    ----------
    env : the stack below the L2 action wrapper (its action is the core env's target position
        Box(1,), its observation the L2 Dict).
    engine : the RSS :class:`~himari_env.risk.engine.RiskEngine` for this market (calibrated).
    source : the direction source.
    delta_bound : the bound on |delta| (default 0.30).
    """

    def __init__(self, env: gym.Env, engine: RiskEngine, source: DirectionSource, *,
                 delta_bound: float = DEFAULT_DELTA_BOUND) -> None:
        super().__init__(env)
        if not (math.isfinite(delta_bound) and 0.0 <= delta_bound < 1.0):
            raise ValueError(f"delta_bound must be in [0, 1), got {delta_bound!r}")
        inner = env.action_space
        if not isinstance(inner, spaces.Box) or inner.shape != (1,):
            raise ValueError(f"BoundedDeltaSizer needs an inner Box action space of shape (1,), got {inner}")
        observation_space = env.observation_space
        assert isinstance(observation_space, spaces.Dict)
        self.engine = engine
        self.source = source
        self.delta_bound = float(delta_bound)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Dict({
            **dict(observation_space.spaces),
            "direction": spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
            "base_size": spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float32),
            "binding": spaces.Discrete(len(BINDINGS)),
        })
        self._regime = 0
        self._direction = 0
        self._state: RiskState | None = None
        self._base = 0.0
        self._base_binding = BINDING_HOLD

    def _decide(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Direction, base size and binding at the bar the observation describes."""
        core = core_env(self.env)
        t = core.bar_index
        self._regime = int(observation["regime"])
        self._direction = int(self.source.direction(t, float(core.position)))
        engine = self.engine
        self._state = engine.state(t, self._regime, engine.brake_drawdown())
        sizing = compose_position(self._direction, self._state, engine.config, engine.max_leverage)
        self._base = float(sizing.sizes[_BASE_STAGE])
        self._base_binding = sizing.binding
        return {**observation,
                "direction": np.array([self._direction], dtype=np.float32),
                "base_size": np.array([self._base], dtype=np.float32),
                "binding": BINDINGS.index(sizing.binding)}

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self.engine.reset(float(core_env(self.env).equity))
        self.source.reset()
        return self._decide(observation), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        try:
            a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0]) if np.size(action) == 1 else math.nan
        except (TypeError, ValueError):
            a = math.nan
        if not (math.isfinite(a) and -1.0 <= a <= 1.0):
            raise ValueError(f"action must be one number in [-1, 1] (delta = {self.delta_bound} * action), got {action!r}")
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        core = core_env(self.env)
        engine = self.engine
        direction = self._direction
        delta = self.delta_bound * a if direction != 0 else 0.0
        sizing = size_with_delta(direction, self._state, engine.config, engine.max_leverage, delta)
        position, rebalanced = apply_rebalance_band(sizing.position, float(core.position),
                                                    engine.config.rebalance_band)
        observation, reward, terminated, truncated, info = self.env.step(np.array([position], dtype=np.float32))
        engine.record_step(core.bar_index, float(core.position), float(core.equity))
        info["action"] = _ACTION_INDEX[direction]
        info["direction"] = direction
        info["sizer_action"] = a
        info["delta"] = delta
        info["base_size"] = sizing.base
        info["requested_size"] = sizing.sizes[_BASE_STAGE + 1]
        info["risk"] = sizing.trace()
        info["risk_binding"] = sizing.binding
        info["risk_rebalanced"] = rebalanced
        info["decision_regime"] = self._regime
        return self._decide(observation), reward, terminated, truncated, info


# ---------------------------------------------------------------------------- factory
def _require_same_bundle(artifacts: Any, l2_run: str | Path) -> None:
    """The L2 policy must see the features it was trained on: the env's bundle must be the
    L2 run's (same fingerprint)."""
    from himari_env.artifacts import RunArtifacts

    given = artifacts if isinstance(artifacts, RunArtifacts) else RunArtifacts.load(artifacts)
    expected = RunArtifacts.load(l2_run)
    if given.fingerprint() != expected.fingerprint():
        raise ValueError(f"artifacts= is not the run bundle of the L2 run {l2_run} (fingerprint "
                         f"{given.fingerprint()} != {expected.fingerprint()}): the L2 policy needs its own features")


def make_himari_sizer_env(
    data: Any = "synthetic",
    *,
    direction_source: str = "regime_gated",
    l2_run: str | Path | None = None,
    delta_bound: float = DEFAULT_DELTA_BOUND,
    momentum_lookback: int = 24,
    decision_interval: int = 1,
    risk_config: Any | None = None,
    **stack_kwargs: Any,
) -> gym.Env:
    """Build ``HimariBTCSizer-v0``: the L2 stack of :func:`wrappers.stack.make_himari_env`
    (same data, splits, bundle, reward, observation; every keyword of it is accepted) with
    the :class:`BoundedDeltaSizer` as the action wrapper.

    Parameters
    ----------
    direction_source : ``always_long``, ``momentum``, ``regime_gated`` or ``l2_run``.
    l2_run : the ``HimariBTC-v0`` run folder (with ``direction_source="l2_run"``); the env is
        then built on that run's bundle unless ``artifacts=`` names one.
    delta_bound : bound on |delta| (0.30).
    momentum_lookback : bars of the ``momentum`` rule (24).
    decision_interval : bars per decision (:class:`~wrappers.decision.DecisionInterval`).
    risk_config : as in ``make_himari_env`` (default: the bundle's, else fitted on train).
    """
    from wrappers.risk_action import RSSRiskAction
    from wrappers.stack import make_himari_env

    if stack_kwargs.get("risk", True) is not True:
        raise ValueError("HimariBTCSizer-v0 always sizes through the RSS layer (risk=True)")
    stack_kwargs.pop("risk", None)
    if direction_source == "l2_run":
        if l2_run is None:
            raise ValueError("direction_source='l2_run' needs l2_run=RUN_DIR (a trained HimariBTC-v0 run)")
        stack_kwargs.setdefault("artifacts", l2_run)
        _require_same_bundle(stack_kwargs["artifacts"], l2_run)
    elif direction_source not in DIRECTION_RULES:
        raise ValueError(f"direction_source must be one of {[*DIRECTION_RULES, 'l2_run']}, got {direction_source!r}")
    rss = make_himari_env(data, risk=True, risk_config=risk_config, decision_interval=1, **stack_kwargs)
    assert isinstance(rss, RSSRiskAction)
    below = rss.env  # HimariBTCEnv -> RegimeReward -> RegimeFeatureObservation
    engine = rss.engine
    assert engine is not None
    market = core_env(below).market
    from wrappers.observations import RegimeFeatureObservation

    if not isinstance(below, RegimeFeatureObservation):
        raise TypeError(f"expected the L2 observation wrapper below the action wrapper, got {type(below).__name__}")
    # The arrays the L2 observation is sliced from: the regime the agent observes (labeler or HMM).
    observation_wrapper = below
    regimes = np.asarray(observation_wrapper._regimes)
    source: DirectionSource
    if direction_source == "l2_run":
        assert l2_run is not None
        source = L2RunDirection(l2_run, observation_wrapper._features, regimes,
                                feature_names=observation_wrapper.feature_names)
    else:
        source = RuleDirection(direction_source, rule_directions(direction_source, market.close, regimes,
                                                                  momentum_lookback=momentum_lookback))
    env: gym.Env = BoundedDeltaSizer(below, engine, source, delta_bound=delta_bound)
    if decision_interval != 1:
        from wrappers.decision import DecisionInterval

        env = DecisionInterval(env, decision_interval)
    return env


#: A sizer policy for passes: ``(observation, bar) -> action in [-1, 1]``.
SizerPolicy = Callable[[dict[str, Any], int], float]
