"""BatchedRiskLayer: the RSS layer for N independent episodes on one market, stepped together.

The batched env (:mod:`himari_env.vector`) sizes N positions per step. This module is the
contract it uses: per-env episode state (risk budget, Kelly outcome totals, the drawdown
brake's rolling peak) and one call that sizes every env's direction at its own decision bar,
followed by one call that records every env's step.

:class:`BatchedRiskLayer` keeps that state in arrays and runs two compiled loops over the envs
(:mod:`himari_env.risk.batched_kernels`, numba) with exactly the single env's scalar
arithmetic (Kelly's edge probability with scipy's own compiled ``betainc``, called from the
kernel, only where the cap depends on it); ``info``'s Kelly fields are computed lazily from
the totals snapshot taken at :meth:`BatchedRiskLayer.size`. :class:`ReferenceBatchedRiskLayer`
(one :class:`~himari_env.risk.engine.RiskEngine` per env, so exactly the single-env
:class:`~wrappers.risk_action.RSSRiskAction` by construction) is the specification the fast
class is tested bit-identical to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from himari_env.risk import batched_kernels as kn
from himari_env.risk.composer import (
    BINDING_HOLD,
    BINDING_NONE,
    METHOD_ORDER,
    apply_rebalance_band,
    compose_position,
)
from himari_env.risk.config import RiskConfig
from himari_env.risk.engine import RiskEngine
from himari_env.risk.evt import evt_position_cap
from himari_env.risk.kelly import KELLY_MODES, KellyEstimate, estimate_kelly

#: Binding codes in :attr:`SizingBatch.binding`: an index into ``METHOD_ORDER``, or these.
BINDING_CODE_NONE = kn.BINDING_CODE_NONE
BINDING_CODE_HOLD = kn.BINDING_CODE_HOLD
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


class ReferenceBatchedRiskLayer:
    """RSS sizing for ``n_envs`` independent episodes on one market (reference implementation:
    one :class:`RiskEngine` per env; the specification :class:`BatchedRiskLayer` is tested equal to).

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


def _check_n_envs(n_envs: int) -> int:
    if isinstance(n_envs, bool) or int(n_envs) != n_envs or n_envs < 1:
        raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
    return int(n_envs)


class BatchedRiskLayer:
    """RSS sizing for ``n_envs`` independent episodes on one market (compiled; equal bit for bit
    to :class:`ReferenceBatchedRiskLayer`).

    Parameters
    ----------
    config : a calibrated RiskConfig.
    returns : float (n_bars,) the market's ``returns``.
    max_leverage : the core env's bound on |position|.
    n_envs : number of episodes N.

    Cost: one :meth:`size` plus one :meth:`record_step` is two compiled loops over the envs
    (a few microseconds at N = 64). The first use in a fresh environment compiles the kernels
    (a few seconds; cached on disk by numba afterwards). The batched env does not call them
    per bar: its fused kernel sizes, steps and records a whole decision on
    :meth:`kernel_arrays` in one call (same arithmetic, tested equal).
    """

    def __init__(self, config: RiskConfig, returns: ArrayLike, *, max_leverage: float, n_envs: int) -> None:
        n = _check_n_envs(n_envs)
        base = RiskEngine(config, returns, max_leverage=max_leverage)
        self.config = cfg = base.config
        self.max_leverage = base.max_leverage
        self.n_envs = n
        self._returns = np.ascontiguousarray(np.asarray(returns, dtype=np.float64))
        self._vol = np.ascontiguousarray(base.vol_annualized, dtype=np.float64)
        self._sigma = np.ascontiguousarray(base.bar_volatility, dtype=np.float64)
        self._var_long = np.ascontiguousarray(base.var_long, dtype=np.float64)
        self._var_short = np.ascontiguousarray(base.var_short, dtype=np.float64)
        # Python lists for the info dicts (scalar reads several times cheaper than numpy's)
        self._vol_list, self._sigma_list = self._vol.tolist(), self._sigma.tolist()
        self._var_long_list, self._var_short_list = self._var_long.tolist(), self._var_short.tolist()
        self._cf, self._ci, self._brake = _pack_config(cfg, self.max_leverage)
        #: float64 (n_bars, RM_SIZE): per bar the annualized vol, bar sigma, long and short unit
        #: VaR and the return, then the vol-target scale, safe-margin cap and long and short VaR
        #: caps under this config (columns ``batched_kernels.RM_*``), for kernels that read one
        #: row a bar
        self.market_table = np.zeros((self._vol.shape[0], kn.RM_SIZE))
        for column, values in ((kn.RM_VOL, self._vol), (kn.RM_SIGMA, self._sigma), (kn.RM_VAR_LONG, self._var_long),
                               (kn.RM_VAR_SHORT, self._var_short), (kn.RM_RETURNS, self._returns)):
            self.market_table[:, column] = values
        kn.fill_bar_caps(self.market_table, self._cf)
        self._budget_initial = float(cfg.risk_budget.initial)
        window = cfg.drawdown_brake.peak_window_bars
        self._window = -1 if window is None else int(window)
        capacity = 1 if window is None else int(window) + 1
        self._sf = np.zeros((n, kn.SF_SIZE))
        self._si = np.zeros((n, kn.SI_SIZE), dtype=np.int64)
        self._dq_val = np.zeros((n, capacity))
        self._dq_step = np.zeros((n, capacity), dtype=np.int64)
        self._error = np.zeros(2, dtype=np.int64)
        self._kelly_params = cfg.kelly
        self._kelly_cache: list[tuple[tuple[int, int, float, float], KellyEstimate] | None] = [None] * n
        self.reset(np.arange(n), np.ones(n))
        self._si[:, kn.SI_SNAP_DIR] = 0

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays a compiled caller operates on, the layer's own (not copies), in this order:
        ``market_table`` (n_bars, RM_SIZE), the config ``cf`` float64 (CF_SIZE,), ``ci`` int64
        (CI_SIZE,), ``brake`` float64 (2, levels), and the per-env state ``sf`` float64 (N, SF_SIZE),
        ``si`` int64 (N, SI_SIZE), ``dq_val`` float64 (N, C), ``dq_step`` int64 (N, C) (layouts:
        :mod:`himari_env.risk.batched_kernels`). The batched env's fused decision kernel
        (:func:`himari_env.vector.kernels.step_decision_risk`) sizes, steps and records every env
        on them in one call; :meth:`risk_state_info` then reads what it left, as after
        :meth:`size` and :meth:`record_step`."""
        return (self.market_table, self._cf, self._ci, self._brake, self._sf, self._si, self._dq_val, self._dq_step)

    def reset(self, env_ids: ArrayLike, equity: ArrayLike) -> None:
        """Start a new episode in each env of ``env_ids`` (int (k,)) with ``equity`` (float (k,))."""
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        values = np.asarray(equity, dtype=np.float64).reshape(-1)
        if ids.shape != values.shape:
            raise ValueError(f"env_ids has {ids.size} entries, equity {values.size}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_envs):
            raise ValueError(f"env_ids must be in [0, {self.n_envs}), got {ids.tolist()}")
        kn.reset_kernel(ids, values, self._budget_initial, self._window, self._sf, self._si,
                        self._dq_val, self._dq_step)

    def size(self, directions: ArrayLike, bar_index: ArrayLike, regime: ArrayLike, held: ArrayLike) -> SizingBatch:
        """Size every env's ``directions`` (int (N,) in {-1, 0, 1}) at its decision bar
        ``bar_index`` (int (N,)) in ``regime`` (int (N,)), given the ``held`` positions
        (float (N,)); exactly what :class:`~wrappers.risk_action.RSSRiskAction` sends."""
        n = self.n_envs
        dirs = _as_vector(directions, np.int64, n, "directions")
        bars = _as_vector(bar_index, np.int64, n, "bar_index")
        regimes = _as_vector(regime, np.int64, n, "regime")
        helds = _as_vector(held, np.float64, n, "held")
        positions = np.empty(n)
        rebalanced = np.empty(n, dtype=bool)
        sizes = np.empty((n, len(METHOD_ORDER) + 1))
        binding = np.empty(n, dtype=np.int64)
        error = self._error
        error[0] = 0
        kn.size_kernel(dirs, bars, regimes, helds, self._vol, self._sigma, self._var_long, self._var_short,
                       self._cf, self._ci, self._brake, self._sf, self._si, positions, rebalanced, sizes,
                       binding, error)
        if error[0]:
            self._raise(int(error[0]), int(error[1]), dirs, bars, regimes)
        return SizingBatch(positions, rebalanced, sizes, binding)

    def _raise(self, code: int, i: int, dirs: np.ndarray, bars: np.ndarray, regimes: np.ndarray) -> None:
        if code == kn.ERR_DIRECTION:
            raise ValueError(f"direction of env {i} must be -1, 0 or 1, got {int(dirs[i])}")
        if code == kn.ERR_BAR:
            raise ValueError(f"bar_index of env {i} is {int(bars[i])}, outside the market's "
                             f"{self._vol.shape[0]} bars")
        raise ValueError(f"regime id of env {i} is {int(regimes[i])}, not one of 0..3")

    def record_step(self, new_bar_index: ArrayLike, position_held: ArrayLike, equity: ArrayLike) -> None:
        """Update each env's episode state after its step held ``position_held`` (float (N,))
        over bar ``new_bar_index`` (int (N,)) and ended with ``equity`` (float (N,))."""
        n = self.n_envs
        bars = _as_vector(new_bar_index, np.int64, n, "new_bar_index")
        helds = _as_vector(position_held, np.float64, n, "position_held")
        equities = _as_vector(equity, np.float64, n, "equity")
        code = kn.record_kernel(bars, helds, equities, self._returns, self._cf, self._ci, self._sf, self._si,
                                self._dq_val, self._dq_step)
        if code < 0:
            i = -1 - code
            raise ValueError(f"new_bar_index of env {i} is {int(bars[i])}, outside the market's "
                             f"{self._returns.shape[0]} bars")

    def risk_state_info(self, i: int) -> dict[str, Any]:
        """``info["risk_state"]`` of env ``i`` for its latest :meth:`size` call, as the single
        env's wrapper reports it (Kelly as it stood when the size was computed)."""
        if not 0 <= i < self.n_envs:
            raise IndexError(f"env {i} is not in [0, {self.n_envs})")
        return self._state_info(i, self._sf[i].tolist(), self._si[i].tolist())

    def risk_state_infos(self) -> list[dict[str, Any]]:
        """:meth:`risk_state_info` of every env, in env order (one conversion of the state
        arrays for all of them)."""
        return [self._state_info(i, sf, si)
                for i, (sf, si) in enumerate(zip(self._sf.tolist(), self._si.tolist(), strict=True))]

    def _state_info(self, i: int, sf: list[float], si: list[int]) -> dict[str, Any]:
        bar = si[kn.SI_SNAP_BAR]
        direction = si[kn.SI_SNAP_DIR]
        totals = (si[kn.SI_SNAP_WINS], si[kn.SI_SNAP_LOSSES], sf[kn.SF_SNAP_WIN], sf[kn.SF_SNAP_LOSS])
        cached = self._kelly_cache[i]
        if cached is not None and cached[0] == totals:
            kelly = cached[1]
        else:  # the estimate changes only with the totals (in-market steps)
            kelly = estimate_kelly(*totals, self._kelly_params)
            self._kelly_cache[i] = (totals, kelly)
        var = self._var_long_list if direction >= 0 else self._var_short_list
        return {
            "regime": si[kn.SI_SNAP_REGIME],
            "vol_annualized": _finite_or_none(self._vol_list[bar]),
            "bar_volatility": _finite_or_none(self._sigma_list[bar]),
            "var_unit": _finite_or_none(var[bar]),
            "drawdown": sf[kn.SF_SNAP_DD],
            "risk_budget": sf[kn.SF_SNAP_BUDGET],
            "kelly_informative": kelly.informative,
            "kelly_reason": kelly.reason,
            "kelly_edge_probability": kelly.edge_probability,
        }


def _as_vector(values: ArrayLike, dtype: type, n: int, name: str) -> np.ndarray:
    array: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    return array


def _pack_config(config: RiskConfig, max_leverage: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' config vectors (see :mod:`himari_env.risk.batched_kernels`)."""
    cf = np.zeros(kn.CF_SIZE)
    vol = config.vol_target
    assert vol.target_vol is not None
    cf[kn.CF_TARGET_VOL] = vol.target_vol
    cf[kn.CF_MAX_SCALE] = vol.max_scale
    cf[kn.CF_MULT : kn.CF_MULT + 4] = config.regime_multipliers.as_tuple()
    budget = config.risk_budget
    cf[kn.CF_RB_STEP], cf[kn.CF_RB_LOWER], cf[kn.CF_RB_UPPER] = budget.step, budget.lower, budget.upper
    margin = config.safe_margin
    cf[kn.CF_SM_BUFFER], cf[kn.CF_SM_K] = margin.margin_buffer, margin.k_sigma
    cf[kn.CF_SM_SQRT_H], cf[kn.CF_SM_COST] = math.sqrt(margin.horizon_bars), margin.execution_cost
    cf[kn.CF_EVT_LONG] = evt_position_cap(config.evt.unit_es(1), config.evt.es_budget)
    cf[kn.CF_EVT_SHORT] = evt_position_cap(config.evt.unit_es(-1), config.evt.es_budget)
    cf[kn.CF_VAR_BUDGET] = config.portfolio_var.var_budget
    cap = min(config.leverage.max_leverage, max_leverage)
    cf[kn.CF_LEV_CAP], cf[kn.CF_LEV_KNEE] = cap, min(config.leverage.decay_start, cap)
    cf[kn.CF_BAND] = config.rebalance_band
    kelly = config.kelly
    cf[kn.CF_K_FRACTION], cf[kn.CF_K_ALPHA], cf[kn.CF_K_BETA] = kelly.fraction, kelly.prior_alpha, kelly.prior_beta
    cf[kn.CF_K_RATIO], cf[kn.CF_K_WEIGHT] = kelly.payoff_prior_ratio, kelly.payoff_prior_weight
    cf[kn.CF_K_MIN_EDGE] = kelly.min_edge_probability
    ci = np.zeros(kn.CI_SIZE, dtype=np.int64)
    ci[kn.CI_PERIOD] = budget.period_bars
    window = config.drawdown_brake.peak_window_bars
    ci[kn.CI_WINDOW] = -1 if window is None else int(window)
    ci[kn.CI_K_MODE] = KELLY_MODES.index(kelly.mode)
    ci[kn.CI_K_MIN_TRADES] = kelly.min_trades
    brake = np.array([config.drawdown_brake.thresholds, config.drawdown_brake.reductions], dtype=np.float64)
    return cf, ci, brake
