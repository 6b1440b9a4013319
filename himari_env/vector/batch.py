"""BatchedHimariStack: N episodes of the ``make_himari_env`` stack stepped together on arrays.

This is the engine behind both vector APIs (:class:`~himari_env.vector.sb3.HimariBTCVecEnv`
for Stable-Baselines3 and :class:`~himari_env.vector.gym_vector.HimariBTCVectorEnv` for
Gymnasium). It has no autoreset of its own: :meth:`step` ends episodes, the adapters call
:meth:`reset_envs` for the envs that ended (same-step autoreset).

Per agent step (``decision_interval = k`` bars, fewer when an episode ends inside):

* directions from a table indexed by the discrete action (HOLD 0, LONG +1, SHORT -1);
* with the RSS layer: one numba call (:func:`~himari_env.vector.kernels.step_decision_risk`)
  for the whole decision: per env and bar, the layer's sizing on its state arrays
  (:class:`~himari_env.risk.batched.BatchedRiskLayer` ``kernel_arrays()``), the core accounting
  and the reward preset, the decision's sums, and the layer's record step (``fused = False``:
  the per-bar path, ``BatchedRiskLayer.size`` / :func:`~himari_env.vector.kernels.step_bar` /
  ``BatchedRiskLayer.record_step`` per bar, the reference it is tested equal to);
* without it: one numba call (:func:`~himari_env.vector.kernels.step_decision`);
* the observation is gathered once at the end (one gather into a fresh array).

Everything the single env computes is reproduced bit for bit (the tests compare every env of
the batch with an independent ``make_himari_env`` stack: observations, rewards, flags, infos).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from himari_env.constants import ACTION_DIRECTIONS, N_REGIMES
from himari_env.vector import kernels as K

INFO_LEVELS = ("full", "training", "none")
OBSERVATION_MODES = ("window", "index")


def _find(env: gym.Env, name: str) -> Any:
    layer: Any = env
    while True:
        if type(layer).__name__ == name:
            return layer
        if not hasattr(layer, "env"):
            return None
        layer = layer.env


class BatchedHimariStack:
    """N independent episodes of the full HIMARI stack on one market.

    Parameters
    ----------
    num_envs : int
        N, the number of episodes stepped together.
    data : as :func:`wrappers.stack.make_himari_env`.
    info_level : ``"full"`` (per env, the single env's ``info``), ``"training"`` (only what
        the training callbacks read: ``action``, ``bar_index``, ``equity``, ``position``,
        ``reward_terms``, and ``bankrupt`` when it happens) or ``"none"`` (empty dicts).
    observation_mode : ``"window"`` (default: the single env's Dict observation with the
        ``features`` window (context, F)) or ``"index"`` (``bar_index`` int64 (1,) instead of
        the window: a consumer gathers the window from :attr:`feature_table`, e.g.
        :class:`agents.feature_gather.FeatureWindowGather`).
    **env_kwargs : every keyword of ``make_himari_env`` (split, context, reward, regime_source,
        fee_rate, max_leverage, episode_length, risk, risk_config, seed, artifacts,
        pipeline_config, decision_interval...). One template stack is built with them, so the
        arguments are validated, and the risk config calibrated, exactly as for the single env.
    """

    def __init__(self, num_envs: int, data: Any = "synthetic", *, info_level: str = "full",
                 observation_mode: str = "window", **env_kwargs: Any) -> None:
        from himari_env.env import core_env
        from himari_env.risk.composer import METHOD_ORDER
        from wrappers.stack import make_himari_env

        if isinstance(num_envs, bool) or int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if info_level not in INFO_LEVELS:
            raise ValueError(f"info_level must be one of {INFO_LEVELS}, got {info_level!r}")
        if observation_mode not in OBSERVATION_MODES:
            raise ValueError(f"observation_mode must be one of {OBSERVATION_MODES}, got {observation_mode!r}")
        if env_kwargs.get("render_mode") is not None:
            raise ValueError("the batched env does not render; use make_himari_env(render_mode=...) for one episode")
        self.num_envs = n = int(num_envs)
        self.info_level = info_level
        self.observation_mode = observation_mode
        self.template = template = make_himari_env(data, **env_kwargs)
        core = core_env(template)
        self.core = core
        market = core.market
        self.market = market
        reward_wrapper = _find(template, "RegimeReward")
        obs_wrapper = _find(template, "RegimeFeatureObservation")
        risk_wrapper = _find(template, "RSSRiskAction")
        direction_wrapper = _find(template, "DiscreteDirection")
        decision_wrapper = _find(template, "DecisionInterval")
        self.decision_interval = 1 if decision_wrapper is None else int(decision_wrapper.bars)
        if decision_wrapper is not None and decision_wrapper.first_bars != decision_wrapper.bars:
            raise ValueError("the batched env decides on the split's grid only (DecisionInterval first_bars "
                             f"{decision_wrapper.first_bars} != {decision_wrapper.bars}); staggered sleeves are "
                             "an evaluation policy: use agents.sleeves.run_sleeved_pass")
        self.context = core.context
        self.episode_length = core.episode_length
        self.fee_rate = core.fee_rate
        self.max_leverage = core.max_leverage
        self.first_decision, self.end_decision = core.market.decision_range(core.split, core.context)

        # observation arrays
        self.feature_table: np.ndarray = obs_wrapper._features  # float32 (n_bars, F), read-only
        self.feature_names: tuple[str, ...] = tuple(obs_wrapper.feature_names)
        self._obs_regime = np.asarray(obs_wrapper._regimes, dtype=np.int64)
        # reward arrays
        config = reward_wrapper.config
        self.reward_config = config
        self.preset = config.preset
        self._preset_code = K.PRESET_CODES[self.preset]
        names = K.TERM_NAMES[self.preset]
        if self.preset == "adaptive-log" and not config.adaptive.include_fees:
            names = names[:4]
        self.term_names: tuple[str, ...] = names
        self._n_terms = len(names)
        self._market = np.ascontiguousarray(
            np.stack([market.returns, np.asarray(reward_wrapper._sigma), np.asarray(reward_wrapper._expected_abs)],
                     axis=1), dtype=np.float64)
        self._reward_regime = np.asarray(reward_wrapper._regimes, dtype=np.int64)
        self._params = np.zeros(K.N_PARAMS)
        regime_params = self._params[K.P_REGIME:].reshape(2, N_REGIMES)
        if self.preset == "adaptive":
            regime_params[0] = config.turnover_costs.per_regime()
        elif self.preset == "adaptive-log":
            cfg = config.adaptive
            regime_params[0] = [cfg.trade_cost_fraction(r) for r in range(N_REGIMES)]
            regime_params[1] = [cfg.hold_cost_fraction(r) for r in range(N_REGIMES)]
            self._params[:2] = (cfg.wrong_direction, 1.0 if cfg.include_fees else 0.0)
        elif self.preset == "simple":
            self._params[:2] = (config.simple.pnl_scale, config.simple.trade_cost)
        elif self.preset == "opportunity":
            o = config.opportunity
            self._params[:5] = (o.pnl_scale, o.trade_cost, o.trending_hold_scale, o.wrong_scale, o.risky_wrong_scale)
        elif self.preset == "sortino":
            s = reward_wrapper._sortino.config
            self._params[:4] = (s.trade_cost, s.drawdown_weight, s.reward_scale, s.downside_weight)
        # info arrays (Python lists: the single env's scalar types)
        self._timestamps = market.timestamps
        self._close = market.close.tolist()
        self._info_regimes = market.regime_ids.tolist()
        self._gap_before = market.gap_before.tolist()

        # actions: a direction table indexed by the discrete action (action_set "long_short":
        # Discrete(3) HOLD/LONG/SHORT; "long_flat": Discrete(2) HOLD/LONG)
        self.single_action_space = template.action_space
        assert isinstance(self.single_action_space, spaces.Discrete)
        n_actions = self._n_actions = int(self.single_action_space.n)
        self.risk = risk_wrapper is not None
        self.method_order = METHOD_ORDER
        if self.risk:
            from himari_env.risk.batched import BatchedRiskLayer

            self._directions = np.array([int(d) for d in ACTION_DIRECTIONS[:n_actions]], dtype=np.int64)
            self.risk_layer: Any = BatchedRiskLayer(risk_wrapper.config, market.returns,
                                                    max_leverage=core.max_leverage, n_envs=n)
            self.risk_config = risk_wrapper.config
            market_table, *risk_arrays = self.risk_layer.kernel_arrays()
            # the fused kernel's arguments: the reward's and the layer's per-bar columns in one
            # table, the layer's config and state arrays (its own, not copies)
            self._fused_market = np.ascontiguousarray(np.concatenate([self._market, market_table], axis=1))
            cf, ci, brake, *state = risk_arrays
            self._risk_state: tuple[np.ndarray, ...] = tuple(state)  # sf, si, dq_val, dq_step
            self._iconf, self._fconf = K.pack_risk_decision(
                self.decision_interval, self._preset_code, self._n_terms, self._directions, self._params,
                self.fee_rate, self.max_leverage, cf, ci, brake)
            # the last sized bar of each env (fused path): target, rebalanced, binding, sizes
            self._sizing = np.zeros((n, K.S_COLS))
        else:
            # the indices keep their meaning in every action set (0 HOLD, 1 LONG, 2 SHORT)
            self._targets = np.array([float(t[0]) for t in direction_wrapper._targets[:n_actions]], dtype=np.float64)
            self.risk_layer = None
            self.risk_config = None
        if len(self._directions if self.risk else self._targets) != n_actions:
            raise ValueError(f"action table has the wrong size for {self.single_action_space}")

        # spaces
        single = template.observation_space
        assert isinstance(single, spaces.Dict)
        if observation_mode == "index":
            self.single_observation_space = spaces.Dict({
                "bar_index": spaces.Box(0, market.n_bars - 1, shape=(1,), dtype=np.int64),
                "regime": single["regime"],
                "position": single["position"],
            })
        else:
            self.single_observation_space = single

        # state
        self.istate = np.zeros((K.ISTATE_COLS, n), dtype=np.int64)
        self.fstate = np.zeros((K.FSTATE_COLS, n), dtype=np.float64)
        self._work = np.zeros((n, K.WORK_COLS), dtype=np.float64)
        self._active = np.zeros(n, dtype=np.bool_)
        self._all_started = False
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._started = np.zeros(n, dtype=np.bool_)
        #: risk=True: one compiled call per decision (:func:`~himari_env.vector.kernels.step_decision_risk`);
        #: False: the per-bar path (``BatchedRiskLayer.size``, :func:`~himari_env.vector.kernels.step_bar`,
        #: ``BatchedRiskLayer.record_step`` for every bar), kept as the reference the fused path is tested equal to
        self.fused = True
        #: done flags (terminated or truncated) of the latest :meth:`step`, bool (N,)
        self.last_dones = np.zeros(n, dtype=np.bool_)

    # ------------------------------------------------------------------ properties
    @property
    def bar_index(self) -> np.ndarray:
        """Decision bar of each env, int64 (N,) (a view: do not write)."""
        return self.istate[K.BAR]

    @property
    def position(self) -> np.ndarray:
        return self.fstate[K.POSITION]

    @property
    def equity(self) -> np.ndarray:
        return self.fstate[K.EQUITY]

    @property
    def decision_terms(self) -> np.ndarray:
        """Reward terms of the latest decision (summed over its bars), float64 (N, MAX_TERMS), a view;
        column k is ``term_names[k]``."""
        return self._work[:, K.W_ACC_TERMS:]

    # ------------------------------------------------------------------ resets
    def reset_envs(self, env_ids: Sequence[int] | np.ndarray, seeds: Sequence[int | None] | None = None,
                   start_bars: Sequence[int | None] | None = None) -> list[dict[str, Any]]:
        """Start a new episode in each env of ``env_ids``; returns their reset infos.

        ``seeds[j]`` (optional) re-seeds env ``env_ids[j]``'s generator as the single env's
        ``reset(seed=...)`` does (``gymnasium.utils.seeding.np_random``); without it the env's
        generator continues. ``start_bars[j]`` (optional) is the single env's
        ``options={"start_bar": ...}``.
        """
        ids = [int(i) for i in env_ids]
        first, end = self.first_decision, self.end_decision
        length = self.episode_length
        for j, i in enumerate(ids):
            seed = None if seeds is None else seeds[j]
            if seed is not None:
                self._rngs[i] = seeding.np_random(int(seed))[0]
            elif self._rngs[i] is None:
                self._rngs[i] = seeding.np_random()[0]
            if length is None:
                start, stop = first, end
            else:
                rng = self._rngs[i]
                assert rng is not None
                start = int(rng.integers(first, end - length + 1))
                stop = start + length
            bar = None if start_bars is None else start_bars[j]
            if bar is not None:
                start = int(bar)
                if not first <= start < end:
                    raise ValueError(f"start_bar={start} of env {i} outside the decision range [{first}, {end})")
                stop = end if length is None else min(start + length, end)
            self.istate[:, i] = (start, stop, 0, 0, 0, 0, 0)
            self.fstate[:, i] = (0.0, 1.0, 1.0, 0.0, 0.0)
            self._started[i] = True
        if self.risk_layer is not None and ids:
            self.risk_layer.reset(np.asarray(ids, dtype=np.int64), np.ones(len(ids)))
        return [self._reset_info(i) for i in ids]

    def _reset_info(self, i: int) -> dict[str, Any]:
        t = int(self.istate[K.BAR, i])
        if self.info_level == "none":
            return {}
        if self.info_level == "training":
            return {"bar_index": t, "equity": 1.0, "position": 0.0}
        return {"timestamp": self._timestamps[t], "bar_index": t, "price": self._close[t],
                "regime": self._info_regimes[t], "position": 0.0, "equity": 1.0, "fee": 0.0, "turnover": 0.0,
                "drawdown": 0.0, "spans_gap": False, "reward_terms": {"pnl": 0.0}}

    # ------------------------------------------------------------------ observations
    def observations(self, env_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The observation of every env (or of ``env_ids``) at its current bar, fresh arrays:
        ``features`` float32 (N, context, F) (window mode) or ``bar_index`` int64 (N, 1)
        (index mode), ``regime`` int64 (N,), ``position`` float32 (N, 1)."""
        bars = self.istate[K.BAR] if env_ids is None else self.istate[K.BAR, env_ids]
        positions = self.fstate[K.POSITION] if env_ids is None else self.fstate[K.POSITION, env_ids]
        obs: dict[str, np.ndarray] = {}
        if self.observation_mode == "window":
            # one contiguous block copy per env (measured faster than one fancy-index gather,
            # which computes and reads context x F indices)
            context, table = self.context, self.feature_table
            features = np.empty((len(bars), context, table.shape[1]), dtype=np.float32)
            for j, bar in enumerate(bars.tolist()):
                features[j] = table[bar - context + 1 : bar + 1]
            obs["features"] = features
        else:
            obs["bar_index"] = bars[:, None].copy()
        obs["regime"] = self._obs_regime[bars]
        obs["position"] = positions.astype(np.float32)[:, None]
        return obs

    # ------------------------------------------------------------------ step
    def check_actions(self, actions: Any) -> np.ndarray:
        """The actions as int64 (N,), or a ValueError naming the first bad env."""
        values = np.asarray(actions)
        if values.shape not in ((self.num_envs,), (self.num_envs, 1)):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {values.shape}")
        values = values.reshape(self.num_envs)
        as_int = values.astype(np.int64)
        n_actions = self._n_actions
        bad = np.flatnonzero((as_int != values) | (as_int < 0) | (as_int >= n_actions))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"action of env {i} must be an int in [0, {n_actions}), got {values[i]!r}")
        return as_int

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]] | None]:
        """One agent decision for every env (``decision_interval`` bars, fewer at an episode's end).

        Returns ``(rewards float64 (N,), terminated bool (N,), truncated bool (N,), infos)``
        (``infos``: the single env's info per env at ``info_level="full"``, else None: see
        :meth:`light_infos`); the observation is :meth:`observations` (before any reset).
        Envs that ended must be reset (:meth:`reset_envs`) before the next step.
        """
        if not self._all_started:
            if not self._started.all():
                raise RuntimeError("step() called before every env was reset; call reset() first")
            self._all_started = True
        acts = actions if (type(actions) is np.ndarray and actions.dtype == np.int64
                           and actions.shape == (self.num_envs,)) else self.check_actions(actions)
        istate, fstate, work, active = self.istate, self.fstate, self._work, self._active
        layer = self.risk_layer
        fused = layer is not None and self.fused
        if not fused:  # (the fused kernel checks and clears itself)
            bad = K.begin_decision(acts, self._n_actions, istate, work, active)
            if bad <= -2:
                self._ended(-2 - bad)
            if bad >= 0:
                self._bad_action(bad, acts)
        self.last_actions = acts
        full = self.info_level == "full"
        infos: list[Any] | None = [None] * self.num_envs if full else None
        if layer is None:
            bad = K.step_decision(acts, self._targets, self.decision_interval, istate, fstate, work, self._market,
                                  self._reward_regime, self._preset_code, self._n_terms, self._params,
                                  self.fee_rate, self.max_leverage)
            if bad >= 0:
                self._bad_target(bad, acts, self._targets[acts])
            if infos is not None:
                for i, action in enumerate(acts.tolist()):
                    infos[i] = self._full_info(i, action, None, None)
        elif fused:
            flags = np.empty((3, self.num_envs), dtype=np.bool_)
            self._step_fused(acts, infos, flags)
            terminated, truncated = flags[0], flags[1]
            self.last_dones = flags[2]
            return work[:, K.W_ACC_REWARD].copy(), terminated, truncated, infos
        else:
            self._step_bars(acts, infos)
        terminated, truncated = istate[K.TERMINATED].astype(np.bool_), istate[K.TRUNCATED].astype(np.bool_)
        self.last_dones = terminated | truncated
        return work[:, K.W_ACC_REWARD].copy(), terminated, truncated, infos

    def _step_fused(self, acts: np.ndarray, infos: list[Any] | None, flags: np.ndarray) -> None:
        """The decision in one compiled call (sizing, accounting, reward and the layer's record
        step for every env and bar); full infos from what it left: each env's state is its last
        bar's (an env that ended inside the decision is not stepped, sized or recorded further)."""
        istate, layer, out = self.istate, self.risk_layer, self._sizing
        bad = K.step_decision_risk(acts, self._iconf, istate, self.fstate, self._work, self._fused_market,
                                   self._reward_regime, self._obs_regime, self._fconf, *self._risk_state,
                                   out, flags)  # type: ignore[call-arg]
        if bad == -1 and infos is None:
            return
        if bad >= 0:
            self._bad_target(bad, acts, out[:, K.S_TARGET])
        if bad <= -2:
            i, kind = divmod(-2 - bad, 8)
            if kind == K.E_ACTION:
                self._bad_action(i, acts)
            if kind == K.E_ENDED:
                self._ended(i)
            from himari_env.risk import batched_kernels as kn

            bars = istate[K.BAR]
            layer._raise(kn.ERR_REGIME, i, self._directions[acts], bars, self._obs_regime[bars])
        if infos is not None:
            from himari_env.risk.batched import SizingBatch

            sizing = SizingBatch(out[:, K.S_TARGET], out[:, K.S_REBALANCED] != 0.0, out[:, K.S_SIZES:],
                                 out[:, K.S_BINDING].astype(np.int64))
            states = layer.risk_state_infos()
            for i, action in enumerate(acts.tolist()):
                infos[i] = self._full_info(i, action, sizing, states[i])

    def _step_bars(self, acts: np.ndarray, infos: list[Any] | None) -> None:
        """The decision bar by bar with the risk layer sizing every bar; full infos are taken at
        each env's last bar, while the layer's state is that bar's."""
        istate, fstate, active, layer = self.istate, self.fstate, self._active, self.risk_layer
        k = self.decision_interval
        directions = self._directions[acts]
        for bar_step in range(k):
            before = active.copy() if infos is not None else None
            bars = istate[K.BAR]
            sizing = layer.size(directions, bars, self._obs_regime[bars], fstate[K.POSITION])
            targets = sizing.positions
            bad = K.step_bar(active, targets, istate, fstate, self._work, self._market, self._reward_regime,
                             self._preset_code, self._n_terms, self._params, self.fee_rate, self.max_leverage)
            if bad >= 0:
                self._bad_target(bad, acts, targets)
            layer.record_step(istate[K.BAR], fstate[K.POSITION], fstate[K.EQUITY])
            last = bar_step == k - 1
            if infos is not None:
                assert before is not None
                ending = np.flatnonzero(before if last else before & ~active).tolist()
                # every env's risk_state in one pass when most envs end their decision here
                states = layer.risk_state_infos() if len(ending) > 1 else None
                for i in ending:
                    state = states[i] if states is not None else layer.risk_state_info(i)
                    infos[i] = self._full_info(i, int(acts[i]), sizing, state)
            if last or not active.any():
                break

    def _ended(self, i: int) -> None:
        raise RuntimeError(f"step() called after env {i}'s episode ended; reset it first (reset_envs)")

    def _bad_action(self, i: int, acts: np.ndarray) -> None:
        raise ValueError(f"action of env {i} must be an int in [0, {self._n_actions}), got {acts[i]!r}")

    def _bad_target(self, i: int, acts: np.ndarray, targets: Any) -> None:
        raise ValueError(f"env {i}: action {int(acts[i])} gave target position {float(targets[i])!r}, not a finite "
                         f"position in [-{self.max_leverage}, {self.max_leverage}] (max_leverage)")

    def _full_info(self, i: int, action: int, sizing: Any, risk_state: dict[str, Any] | None = None) -> dict[str, Any]:
        t = int(self.istate[K.BAR, i])
        position, equity, peak = self.fstate[: K.PEAK + 1, i].tolist()
        k = self.decision_interval
        work = self._work[i].tolist()
        if k > 1:
            fee, turnover = work[K.W_ACC_FEE], work[K.W_ACC_TURNOVER]
        else:
            fee, turnover = work[K.W_FEE], work[K.W_TURNOVER]
        info: dict[str, Any] = {
            "timestamp": self._timestamps[t], "bar_index": t, "price": self._close[t],
            "regime": self._info_regimes[t], "position": position, "equity": equity, "fee": fee,
            "turnover": turnover, "drawdown": 1.0 - equity / peak, "spans_gap": self._gap_before[t],
            "reward_terms": dict(zip(self.term_names, work[K.W_ACC_TERMS:K.W_ACC_TERMS + self._n_terms], strict=True)),
            "base_reward": work[K.W_BASE],
        }
        if self.istate[K.TERMINATED, i]:
            info["bankrupt"] = True
        info["action"] = action
        if sizing is not None:
            from himari_env.risk.batched import binding_name

            sizes = sizing.sizes[i].tolist()
            info["risk"] = dict(zip(self.method_order, itertools.pairwise(sizes), strict=True))
            info["risk_binding"] = binding_name(int(sizing.binding[i]))
            info["risk_rebalanced"] = bool(sizing.rebalanced[i])
            info["risk_state"] = risk_state
        if k > 1:
            info["decision_bars"] = int(self.istate[K.HELD, i])
        return info

    def light_infos(self, time_limit: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The infos of the latest :meth:`step` at ``info_level`` "training" (what the training
        callbacks read) or "none" (empty dicts), one fresh dict per env. ``time_limit`` (bool
        (N,), training level): also SB3's ``"TimeLimit.truncated"`` key."""
        n = self.num_envs
        if self.info_level == "none":
            return [{} for _ in range(n)]
        names = self.term_names
        width = self._n_terms
        rows = self._work[:, K.W_ACC_TERMS:K.W_ACC_TERMS + width].tolist()
        if width == 1:
            (n0,) = names
            terms = [{n0: x} for (x,) in rows]
        elif width == 2:  # the default preset: literal dicts are twice as fast as dict(zip(...))
            n0, n1 = names
            terms = [{n0: x, n1: y} for x, y in rows]
        else:
            terms = [dict(zip(names, row, strict=True)) for row in rows]
        columns = (self.last_actions.tolist(), self.istate[K.BAR].tolist(), self.fstate[K.EQUITY].tolist(),
                   self.fstate[K.POSITION].tolist(), terms)
        if time_limit is None:
            infos = [{"action": a, "bar_index": b, "equity": e, "position": p, "reward_terms": r}
                     for a, b, e, p, r in zip(*columns, strict=True)]
        else:
            infos = [{"action": a, "bar_index": b, "equity": e, "position": p, "reward_terms": r, "TimeLimit.truncated": f}
                     for a, b, e, p, r, f in zip(*columns, time_limit.tolist(), strict=True)]
        terminated = self.istate[K.TERMINATED]
        if terminated.any():
            for i in np.flatnonzero(terminated).tolist():
                infos[i]["bankrupt"] = True
        return infos

    def close(self) -> None:
        self.template.close()

