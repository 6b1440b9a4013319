"""BatchedRiskLayer: the RSS layer for N independent episodes on one market, stepped together.

The batched env (:mod:`himari_env.vector`) sizes N positions per step. This module is the
contract it uses: per-env episode state (risk budget, Kelly outcome totals, the drawdown
brake's rolling peak) and one call that sizes every env's direction at its own decision bar,
followed by one call that records every env's step.

This first implementation is the *reference*: one :class:`~himari_env.risk.engine.RiskEngine`
per env (they share the market's precomputed arrays), so it is exactly the single-env
:class:`~wrappers.risk_action.RSSRiskAction` by construction. Faster implementations must
keep this class's interface and be tested equal to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from himari_env.risk.composer import (
    BINDING_HOLD,
    BINDING_NONE,
    METHOD_ORDER,
    apply_rebalance_band,
    compose_position,
)
from himari_env.risk.config import RiskConfig
from himari_env.risk.engine import RiskEngine

#: Binding codes in :attr:`SizingBatch.binding`: an index into ``METHOD_ORDER``, or these.
BINDING_CODE_NONE = -1
BINDING_CODE_HOLD = -2
_BINDING_CODES = {name: i for i, name in enumerate(METHOD_ORDER)} | {BINDING_NONE: BINDING_CODE_NONE,
                                                                      BINDING_HOLD: BINDING_CODE_HOLD}


def binding_name(code: int) -> str:
    """The method name of a binding code (``"none"``, ``"hold"`` or a ``METHOD_ORDER`` entry)."""
    if code == BINDING_CODE_NONE:
        return BINDING_NONE
    if code == BINDING_CODE_HOLD:
        return BINDING_HOLD
    return METHOD_ORDER[code]


@dataclass
class SizingBatch:
    """Result of :meth:`BatchedRiskLayer.size` for N envs.

    Attributes
    ----------
    positions : float64 (N,)
        Target position each core env receives (after the rebalance band), multiples of equity,
        rounded through float32 as the single env's ``Box`` action rounds it.
    rebalanced : bool (N,)
        False where the band kept the held position.
    sizes : float64 (N, len(METHOD_ORDER) + 1)
        The unit size before the first method and after each method (zeros for HOLD).
    binding : int64 (N,)
        Binding method code (see :func:`binding_name`).
    """

    positions: np.ndarray
    rebalanced: np.ndarray
    sizes: np.ndarray
    binding: np.ndarray


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class BatchedRiskLayer:
    """RSS sizing for ``n_envs`` independent episodes on one market (reference implementation).

    Parameters
    ----------
    config : a calibrated RiskConfig.
    returns : float (n_bars,) the market's ``returns``.
    max_leverage : the core env's bound on |position|.
    n_envs : number of episodes N.
    """

    def __init__(self, config: RiskConfig, returns: ArrayLike, *, max_leverage: float, n_envs: int) -> None:
        if isinstance(n_envs, bool) or int(n_envs) != n_envs or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        base = RiskEngine(config, returns, max_leverage=max_leverage)
        self.config = base.config
        self.max_leverage = base.max_leverage
        self.n_envs = int(n_envs)
        self.engines = [base.reconfigured(base.config) for _ in range(self.n_envs)]
        self._states: list[Any] = [None] * self.n_envs
        self._kelly: list[Any] = [None] * self.n_envs
        self._directions = np.zeros(self.n_envs, dtype=np.int64)

    def reset(self, env_ids: ArrayLike, equity: ArrayLike) -> None:
        """Start a new episode in each env of ``env_ids`` (int (k,)) with ``equity`` (float (k,))."""
        for i, value in zip(np.asarray(env_ids).tolist(), np.asarray(equity, dtype=np.float64).tolist(), strict=True):
            self.engines[i].reset(value)

    def size(self, directions: ArrayLike, bar_index: ArrayLike, regime: ArrayLike, held: ArrayLike) -> SizingBatch:
        """Size every env's ``directions`` (int (N,) in {-1, 0, 1}) at its decision bar
        ``bar_index`` (int (N,)) in ``regime`` (int (N,)), given the ``held`` positions
        (float (N,)); exactly what :class:`~wrappers.risk_action.RSSRiskAction` sends."""
        n = self.n_envs
        dirs = np.asarray(directions, dtype=np.int64).tolist()
        bars = np.asarray(bar_index, dtype=np.int64).tolist()
        regimes = np.asarray(regime, dtype=np.int64).tolist()
        helds = np.asarray(held, dtype=np.float64).tolist()
        positions = np.empty(n)
        rebalanced = np.empty(n, dtype=bool)
        sizes = np.empty((n, len(METHOD_ORDER) + 1))
        binding = np.empty(n, dtype=np.int64)
        for i, engine in enumerate(self.engines):
            state = engine.state(bars[i], regimes[i], engine.brake_drawdown())
            sizing = compose_position(dirs[i], state, engine.config, engine.max_leverage)
            positions[i], rebalanced[i] = apply_rebalance_band(sizing.position, helds[i], engine.config.rebalance_band)
            sizes[i] = sizing.sizes
            binding[i] = _BINDING_CODES[sizing.binding]
            self._states[i] = state
            self._kelly[i] = engine.kelly
        self._directions[:] = dirs
        return SizingBatch(positions.astype(np.float32).astype(np.float64), rebalanced, sizes, binding)

    def record_step(self, new_bar_index: ArrayLike, position_held: ArrayLike, equity: ArrayLike) -> None:
        """Update each env's episode state after its step held ``position_held`` (float (N,))
        over bar ``new_bar_index`` (int (N,)) and ended with ``equity`` (float (N,))."""
        bars = np.asarray(new_bar_index, dtype=np.int64).tolist()
        helds = np.asarray(position_held, dtype=np.float64).tolist()
        equities = np.asarray(equity, dtype=np.float64).tolist()
        for i, engine in enumerate(self.engines):
            engine.record_step(bars[i], helds[i], equities[i])

    def risk_state_info(self, i: int) -> dict[str, Any]:
        """``info["risk_state"]`` of env ``i`` for its latest :meth:`size` call, as the single
        env's wrapper reports it (Kelly as it stood when the size was computed)."""
        state = self._states[i]
        kelly = self._kelly[i]
        direction = int(self._directions[i])
        return {
            "regime": state.regime_id,
            "vol_annualized": _finite_or_none(state.vol_annualized),
            "bar_volatility": _finite_or_none(state.bar_volatility),
            "var_unit": _finite_or_none(state.var_long if direction >= 0 else state.var_short),
            "drawdown": state.drawdown,
            "risk_budget": state.risk_budget,
            "kelly_informative": kelly.informative,
            "kelly_reason": kelly.reason,
            "kelly_edge_probability": kelly.edge_probability,
        }
