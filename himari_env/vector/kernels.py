"""Compiled per-env loops of the batched env: the core accounting, every reward preset and the RSS layer.

One call of :func:`step_bar` (with the risk layer sizing between bars: the per-bar path),
:func:`step_decision` (a whole decision, without the risk layer) or :func:`step_decision_risk`
(a whole decision with the RSS layer's sizing and record step on the layer's own state
arrays, the arithmetic of :mod:`himari_env.risk.batched_kernels` written out per env)
advances every *active* env of the batch by one hourly bar,
exactly as one ``step`` of the single-env stack's core env (:class:`~himari_env.env.HimariBTCEnv`)
followed by its reward wrapper (:class:`~wrappers.rewards.RegimeReward`) would, and adds the
bar's reward, fee, turnover and reward terms to the decision's running sums (what
:class:`~wrappers.decision.DecisionInterval` sums). Every float operation is the single env's,
in the same order (numba does not reassociate or contract without ``fastmath``), and the
reward's ``math.fsum`` is CPython's algorithm (:func:`fsum`), so the results are bit-identical
to the single env (tested).

State layout (structure of arrays: each quantity a contiguous row of N values, so the
risk layer gets ``istate[BAR]``, ``fstate[POSITION]``... without copies):

``istate`` int64 (ISTATE_COLS, N) (one contiguous row per quantity)
    ``BAR`` decision bar t, ``STOP`` last decision bar + 1, ``STEPS`` steps this episode,
    ``SORTINO_N`` periods of the Sortino shaper, ``HELD`` bars held by the current decision,
    ``TERMINATED`` (bankrupt) and ``TRUNCATED`` of the latest bar (0/1).
``fstate`` float64 (FSTATE_COLS, N)
    ``POSITION``, ``EQUITY``, ``PEAK`` (of equity), ``SORTINO_SUMSQ`` (sum of squared
    downside), ``SORTINO_DD`` (the shaper's previous drawdown).
``market`` float64 (n_bars, 3)
    Columns: simple return ``r[t]``, the causal sigma[t] and E[t] of the adaptive presets.
``reward_regime`` int64 (n_bars,)
    The regime that sets the reward's costs (the one the agent observes).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
from numba import njit

from himari_env.risk import batched_kernels as _risk_kernels
from himari_env.risk.batched_kernels import (
    BINDING_CODE_HOLD,
    BINDING_CODE_NONE,
    CF_BAND,
    CF_EVT_LONG,
    CF_EVT_SHORT,
    CF_K_ALPHA,
    CF_K_BETA,
    CF_K_FRACTION,
    CF_K_MIN_EDGE,
    CF_K_RATIO,
    CF_K_WEIGHT,
    CF_LEV_CAP,
    CF_LEV_KNEE,
    CF_MULT,
    CF_RB_LOWER,
    CF_RB_STEP,
    CF_RB_UPPER,
    CF_SIZE,
    CI_K_MIN_TRADES,
    CI_K_MODE,
    CI_PERIOD,
    CI_SIZE,
    CI_WINDOW,
    K_MODE_OFF,
    K_MODE_STRICT,
    N_METHODS,
    RM_RETURNS,
    RM_SCALE,
    RM_SM_CAP,
    RM_VAR_CAP_LONG,
    RM_VAR_CAP_SHORT,
    SF_BUDGET,
    SF_EQUITY,
    SF_K_A,
    SF_K_B,
    SF_K_X,
    SF_KELLY_CAP,
    SF_PEAK,
    SF_PERIOD_START,
    SF_SNAP_BUDGET,
    SF_SNAP_DD,
    SF_SNAP_LOSS,
    SF_SNAP_WIN,
    SF_TOTAL_LOSS,
    SF_TOTAL_WIN,
    SI_DQ_COUNT,
    SI_DQ_HEAD,
    SI_DQ_STEP,
    SI_K_PENDING,
    SI_N_LOSSES,
    SI_N_WINS,
    SI_SNAP_BAR,
    SI_SNAP_DIR,
    SI_SNAP_LOSSES,
    SI_SNAP_REGIME,
    SI_SNAP_WINS,
    SI_STEPS,
    _pymax,
    _pymin,
    scipy_betainc,
)

# istate rows
BAR, STOP, STEPS, SORTINO_N, HELD, TERMINATED, TRUNCATED = 0, 1, 2, 3, 4, 5, 6
ISTATE_COLS = 7
# fstate rows
POSITION, EQUITY, PEAK, SORTINO_SUMSQ, SORTINO_DD = 0, 1, 2, 3, 4
FSTATE_COLS = 5
MAX_TERMS = 5
# work columns: this bar's fee, turnover, base reward (net log return), terms; then the
# decision's sums of reward, fee, turnover and terms
W_FEE, W_TURNOVER, W_BASE, W_TERMS = 0, 1, 2, 3
W_ACC_REWARD = W_TERMS + MAX_TERMS
W_ACC_FEE, W_ACC_TURNOVER, W_ACC_TERMS = W_ACC_REWARD + 1, W_ACC_REWARD + 2, W_ACC_REWARD + 3
W_SCRATCH = W_ACC_TERMS + MAX_TERMS
WORK_COLS = W_SCRATCH + MAX_TERMS + 1
# sizing columns of step_decision_risk: target, rebalanced, binding code, the 10 sizes
S_TARGET, S_REBALANCED, S_BINDING, S_SIZES = 0, 1, 2, 3
S_COLS = S_SIZES + N_METHODS + 1
# iconf / fconf layouts of step_decision_risk (pack_risk_decision)
IC_BARS, IC_PRESET, IC_N_TERMS, IC_N_BRAKE, IC_CI = 0, 1, 2, 3, 4
IC_DIRECTIONS = IC_CI + CI_SIZE
# error kinds of step_decision_risk
E_ACTION, E_ENDED, E_REGIME = 1, 2, 3
#: params: the preset's scalars, then 8 per-regime costs
P_REGIME = 8
N_PARAMS = P_REGIME + 8
FC_FEE_RATE, FC_MAX_LEVERAGE, FC_CF = N_PARAMS, N_PARAMS + 1, N_PARAMS + 2
FC_BRAKE = FC_CF + CF_SIZE

#: Preset codes of :func:`step_bar` (``preset`` argument).
PRESET_CODES = {"pnl": 0, "adaptive": 1, "adaptive-log": 2, "simple": 3, "opportunity": 4, "sortino": 5}
#: Names of each preset's reward terms, in the single env's ``info["reward_terms"]`` order.
TERM_NAMES = {
    "pnl": ("pnl",),
    "adaptive": ("norm_pnl", "turnover_cost"),
    "adaptive-log": ("norm_pnl", "trade_cost", "hold_cost", "wrong_direction", "fee"),
    "simple": ("pnl", "trade_cost"),
    "opportunity": ("pnl", "trade_cost", "trending_hold", "wrong_direction", "risky_wrong"),
    "sortino": ("pnl", "trade_cost", "drawdown", "downside"),
}
EQUITY_FLOOR = 1e-12
TRENDING, HIGH_VOL, CRISIS = 1, 2, 3


@njit(cache=True)
def fsum(values: np.ndarray, n: int, partials: np.ndarray) -> float:  # pragma: no cover - compiled
    """``math.fsum(values[:n])`` for finite values: CPython's algorithm (Shewchuk's partials,
    then a correctly rounded sum with half-even fix-up), so the result is bit-identical.
    ``partials``: scratch of at least ``n`` floats."""
    return _fsum_row(values.reshape(1, -1), 0, 0, n, partials.reshape(1, -1), 0)


@njit(cache=True)
def _fsum_row(values: np.ndarray, row: int, first: int, n: int, scratch: np.ndarray,
              scratch_first: int) -> float:  # pragma: no cover - compiled
    """``math.fsum(values[row, first:first + n])`` (see :func:`fsum`), with the partials in
    ``scratch[row, scratch_first:]``. For n <= 2 the correctly rounded sum is the plain
    ``a + b`` (IEEE addition is correctly rounded; the terms are never -0.0)."""
    if n == 1:
        return values[row, first]
    if n == 2:
        return values[row, first] + values[row, first + 1]
    m = 0
    for k in range(n):
        x = values[row, first + k]
        i = 0
        for j in range(m):
            y = scratch[row, scratch_first + j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                scratch[row, scratch_first + i] = lo
                i += 1
            x = hi
        m = i
        if x != 0.0:
            scratch[row, scratch_first + m] = x
            m += 1
    hi = 0.0
    lo = 0.0
    if m > 0:
        m -= 1
        hi = scratch[row, scratch_first + m]
        while m > 0:
            x = hi
            m -= 1
            y = scratch[row, scratch_first + m]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if m > 0:
            below = scratch[row, scratch_first + m - 1]
            if (lo < 0.0 and below < 0.0) or (lo > 0.0 and below > 0.0):
                y = lo * 2.0
                x = hi + y
                yr = x - hi
                if y == yr:
                    hi = x
    return hi


@njit(cache=True)
def _advance(by_decision: bool, risk: bool, actions: np.ndarray, table: np.ndarray, bars: int, active: np.ndarray,
             targets: np.ndarray, istate: np.ndarray, fstate: np.ndarray, work: np.ndarray, market: np.ndarray,
             reward_regime: np.ndarray, preset: int, n_terms: int, params: np.ndarray, fee_rate: float,
             max_leverage: float, directions: np.ndarray, obs_regime: np.ndarray, ro: int,
             cf: np.ndarray, ci: np.ndarray, brake: np.ndarray, sf: np.ndarray, si: np.ndarray,
             dq_val: np.ndarray, dq_step: np.ndarray, sizing: np.ndarray,
             flags: np.ndarray) -> int:  # pragma: no cover - compiled
    """The one per-env loop behind :func:`step_bar` (``by_decision`` False: one bar of the
    envs with ``active[i]`` towards ``targets[i]``), :func:`step_decision` (True: up to
    ``bars`` bars of every env towards ``table[actions[i]]``) and :func:`step_decision_risk`
    (``risk`` True: up to ``bars`` bars of every env, each bar's target sized by the RSS layer
    for direction ``directions[actions[i]]``, and the layer's record step after it); see
    their docstrings. The risk arrays are not touched when ``risk`` is False.

    The per-env code is written out here rather than in a helper function: numba increfs
    and decrefs every array argument of a call, which, per env and bar, cost more than the
    arithmetic itself (one helper call is made only for a 3-5 term fsum)."""
    n_brake = brake.shape[1]
    band = cf[CF_BAND] if risk else 0.0
    period = ci[CI_PERIOD] if risk else 1
    window = ci[CI_WINDOW] if risk else -1
    mode = ci[CI_K_MODE] if risk else 0
    min_trades = ci[CI_K_MIN_TRADES] if risk else 0
    ring = dq_val.shape[1]
    if risk:  # begin_decision's checks and clearing
        n_actions = directions.shape[0]
        for i in range(istate.shape[1]):
            if actions[i] < 0 or actions[i] >= n_actions:
                return -2 - (8 * i + E_ACTION)
            if istate[BAR, i] >= istate[STOP, i]:
                return -2 - (8 * i + E_ENDED)
        for i in range(istate.shape[1]):
            for c in range(W_ACC_REWARD, W_SCRATCH):
                work[i, c] = 0.0
            istate[HELD, i] = 0
            istate[TERMINATED, i] = 0
            istate[TRUNCATED, i] = 0
    for i in range(istate.shape[1]):
        direction_i = 0
        if risk:
            target_i = 0.0
            direction_i = directions[actions[i]]
            repeats = bars
        elif by_decision:
            target_i = table[actions[i]]
            repeats = bars
        else:
            if not active[i]:
                continue
            target_i = targets[i]
            repeats = 1
        for _ in range(repeats):
            if risk:
                # --- RSS sizing: batched_kernels.size_kernel's arithmetic for env i at its bar
                d = direction_i
                bar = istate[BAR, i]
                regime_o = obs_regime[bar]
                r_equity = sf[i, SF_EQUITY]
                r_peak = sf[i, SF_PEAK]
                if r_peak <= 0.0:
                    dd = 0.0
                else:
                    dd = _pymin(_pymax(1.0 - r_equity / r_peak, 0.0), 1.0)
                budget = sf[i, SF_BUDGET]
                sf[i, SF_SNAP_DD] = dd
                sf[i, SF_SNAP_BUDGET] = budget
                sf[i, SF_SNAP_WIN] = sf[i, SF_TOTAL_WIN]
                sf[i, SF_SNAP_LOSS] = sf[i, SF_TOTAL_LOSS]
                si[i, SI_SNAP_BAR] = bar
                si[i, SI_SNAP_REGIME] = regime_o
                si[i, SI_SNAP_DIR] = d
                si[i, SI_SNAP_WINS] = si[i, SI_N_WINS]
                si[i, SI_SNAP_LOSSES] = si[i, SI_N_LOSSES]
                if d == 0:
                    for j in range(N_METHODS + 1):
                        sizing[i, S_SIZES + j] = 0.0
                    sizing[i, S_BINDING] = BINDING_CODE_HOLD
                    sized = 0.0
                else:
                    if regime_o < 0 or regime_o > 3:
                        return -2 - (8 * i + E_REGIME)
                    # the bar's vol-target scale, safe-margin and VaR caps: fill_bar_caps
                    scale = market[bar, ro + RM_SCALE]
                    s0 = 1.0
                    s1 = s0 * scale
                    s2 = s1 * cf[CF_MULT + regime_o]
                    s3 = s2 * budget
                    cut = 0.0
                    for k in range(n_brake):
                        if dd >= brake[0, k]:
                            cut = brake[1, k]
                        else:
                            break
                    s4 = s3 * (1.0 - cut)
                    s5 = _pymin(s4, market[bar, ro + RM_SM_CAP])
                    kelly_cap = sf[i, SF_KELLY_CAP]
                    if si[i, SI_K_PENDING] != 0 and kelly_cap < s5:
                        edge_probability = 1.0 - scipy_betainc(sf[i, SF_K_A], sf[i, SF_K_B], sf[i, SF_K_X], 0)  # type: ignore[call-overload]
                        if edge_probability < cf[CF_K_MIN_EDGE]:
                            kelly_cap = math.inf
                        sf[i, SF_KELLY_CAP] = kelly_cap
                        si[i, SI_K_PENDING] = 0
                    s6 = _pymin(s5, kelly_cap)
                    s7 = _pymin(s6, cf[CF_EVT_LONG] if d > 0 else cf[CF_EVT_SHORT])
                    s8 = _pymin(s7, market[bar, ro + (RM_VAR_CAP_LONG if d > 0 else RM_VAR_CAP_SHORT)])
                    lev_cap = cf[CF_LEV_CAP]
                    knee = cf[CF_LEV_KNEE]
                    if s8 <= knee:
                        s9 = s8
                    else:
                        span = lev_cap - knee
                        if span <= 0.0:
                            s9 = lev_cap
                        else:
                            s9 = _pymin(lev_cap, knee + span * -math.expm1(-(s8 - knee) / span))
                    sizing[i, S_SIZES] = s0
                    sizing[i, S_SIZES + 1] = s1
                    sizing[i, S_SIZES + 2] = s2
                    sizing[i, S_SIZES + 3] = s3
                    sizing[i, S_SIZES + 4] = s4
                    sizing[i, S_SIZES + 5] = s5
                    sizing[i, S_SIZES + 6] = s6
                    sizing[i, S_SIZES + 7] = s7
                    sizing[i, S_SIZES + 8] = s8
                    sizing[i, S_SIZES + 9] = s9
                    best_ratio = 1.0
                    best = BINDING_CODE_NONE
                    before = s0
                    for j in range(N_METHODS):
                        after = sizing[i, S_SIZES + 1 + j]
                        # a method that did not cut (after >= before) never binds: no division
                        if before > 0.0 and after < before:
                            ratio = after / before
                            if ratio < best_ratio:
                                best_ratio = ratio
                                best = j
                        before = after
                    sizing[i, S_BINDING] = best
                    sized = d * s9
                h = fstate[POSITION, i]
                if sized != 0.0 and h != 0.0 and (sized > 0.0) == (h > 0.0) and abs(sized - h) <= band * abs(h):
                    sized = h
                    sizing[i, S_REBALANCED] = 0.0
                else:
                    sizing[i, S_REBALANCED] = 1.0
                target = float(np.float32(sized))  # the Box action's float32 rounding
                sizing[i, S_TARGET] = target
            else:
                target = target_i
            # --- HimariBTCEnv._parse_action
            limit = max_leverage
            if not (-limit <= target <= limit):
                if math.isfinite(target) and abs(target) <= limit * (1 + 1e-6):
                    target = limit if target > 0 else -limit
                else:
                    return i
            # --- accounting_step
            t = istate[BAR, i]
            equity = fstate[EQUITY, i]
            next_return = market[t + 1, 0]
            turnover = abs(target - fstate[POSITION, i])
            fee = fee_rate * turnover * equity
            new_equity = (equity - fee) * (1.0 + target * next_return)
            bankrupt = False
            if new_equity <= EQUITY_FLOOR:
                new_equity = 0.0
                bankrupt = True
            floored = new_equity if not (EQUITY_FLOOR > new_equity) else EQUITY_FLOOR
            base = math.log(floored / equity)
            fstate[POSITION, i] = target
            fstate[EQUITY, i] = new_equity
            if new_equity > fstate[PEAK, i]:
                fstate[PEAK, i] = new_equity
            istate[STEPS, i] += 1
            istate[BAR, i] = t + 1
            truncated = istate[BAR, i] >= istate[STOP, i] and not bankrupt
            if bankrupt:
                istate[STOP, i] = t + 1
            istate[TERMINATED, i] = bankrupt
            istate[TRUNCATED, i] = truncated
            # --- RegimeReward._terms (each term + 0.0, as the wrapper does)
            position = target
            regime = reward_regime[t]
            t0 = t1 = t2 = t3 = t4 = 0.0
            if preset == 0:  # pnl
                t0 = base + 0.0
            elif preset == 1:  # adaptive
                t0 = base / market[t, 1] + 0.0
                t1 = (-params[P_REGIME + regime] * market[t, 2] * turnover if turnover else 0.0) + 0.0
            else:
                is_trade = position != 0.0
                wrong = is_trade and position * next_return < 0.0
                if preset == 2:  # adaptive-log
                    direction = float((position > 0.0) - (position < 0.0))
                    sigma = market[t, 1]
                    expected_abs = market[t, 2]
                    t0 = direction * next_return / sigma + 0.0
                    t1 = (-params[P_REGIME + regime] * expected_abs if is_trade else 0.0) + 0.0
                    t2 = (-params[P_REGIME + 4 + regime] * expected_abs if not is_trade else 0.0) + 0.0
                    t3 = (-params[0] * expected_abs if wrong else 0.0) + 0.0
                    if params[1] != 0.0:
                        t4 = (-(fee / equity) / sigma if fee else 0.0) + 0.0
                elif preset == 3:  # simple
                    t0 = params[0] * position * next_return + 0.0
                    t1 = (-params[1] if is_trade else 0.0) + 0.0
                elif preset == 4:  # opportunity
                    magnitude = abs(next_return)
                    risky = regime == HIGH_VOL or regime == CRISIS
                    t0 = params[0] * position * next_return + 0.0
                    t1 = (-params[1] if is_trade else 0.0) + 0.0
                    t2 = (-params[2] * magnitude if (not is_trade and regime == TRENDING) else 0.0) + 0.0
                    t3 = (-params[3] * magnitude if wrong else 0.0) + 0.0
                    t4 = (-params[4] * magnitude if (wrong and risky) else 0.0) + 0.0
                else:  # sortino (wrappers.sortino.SortinoShaper.step / sortino_reward)
                    pnl = math.exp(base) - 1.0
                    drawdown = 1.0 - new_equity / fstate[PEAK, i]
                    rise = drawdown - fstate[SORTINO_DD, i]
                    increase = rise if rise > 0.0 else 0.0
                    fstate[SORTINO_DD, i] = drawdown
                    periods = istate[SORTINO_N, i]
                    deviation = 0.0 if periods == 0 else math.sqrt(fstate[SORTINO_SUMSQ, i] / periods)
                    penalty = 0.0
                    if pnl < 0.0:
                        loss = -pnl
                        if deviation <= 0.0:
                            penalty = loss
                        else:
                            ratio = loss / deviation
                            penalty = loss * (ratio if ratio < 1.0 else 1.0)
                    scale = params[2]
                    t0 = scale * pnl + 0.0
                    t1 = -scale * params[0] * turnover + 0.0
                    t2 = -scale * params[1] * increase + 0.0
                    t3 = -scale * params[3] * penalty + 0.0
                    downside = pnl if pnl < 0.0 else 0.0
                    istate[SORTINO_N, i] = periods + 1
                    fstate[SORTINO_SUMSQ, i] = fstate[SORTINO_SUMSQ, i] + downside * downside
            work[i, W_TERMS] = t0
            work[i, W_TERMS + 1] = t1
            work[i, W_TERMS + 2] = t2
            work[i, W_TERMS + 3] = t3
            work[i, W_TERMS + 4] = t4
            if n_terms == 1:
                reward = t0
            elif n_terms == 2:  # the correctly rounded sum of two terms is IEEE a + b (never -0.0 here)
                reward = t0 + t1
            else:
                reward = _fsum_row(work, i, W_TERMS, n_terms, work, W_SCRATCH)
            work[i, W_FEE] = fee
            work[i, W_TURNOVER] = turnover
            work[i, W_BASE] = base
            # --- DecisionInterval sums (from 0.0, in bar order)
            work[i, W_ACC_REWARD] += reward
            work[i, W_ACC_FEE] += fee
            work[i, W_ACC_TURNOVER] += turnover
            for k in range(n_terms):
                work[i, W_ACC_TERMS + k] += work[i, W_TERMS + k]
            istate[HELD, i] += 1
            if risk:
                # --- RSS record step: batched_kernels.record_kernel's arithmetic for env i
                h = target
                if h != 0.0:
                    r = market[t + 1, ro + RM_RETURNS]
                    outcome = r if h > 0 else -r
                    if outcome > 0.0:
                        si[i, SI_N_WINS] += 1
                        sf[i, SF_TOTAL_WIN] += outcome
                    elif outcome < 0.0:
                        si[i, SI_N_LOSSES] += 1
                        sf[i, SF_TOTAL_LOSS] -= outcome
                    n_wins = si[i, SI_N_WINS]
                    n_losses = si[i, SI_N_LOSSES]
                    total_win = sf[i, SF_TOTAL_WIN]
                    total_loss = sf[i, SF_TOTAL_LOSS]
                    kcap = math.inf
                    pending = 0
                    if mode != K_MODE_OFF and n_wins + n_losses >= min_trades:
                        mean_loss = total_loss / n_losses if n_losses > 0 else math.nan
                        if mean_loss > 0.0:
                            alpha = cf[CF_K_ALPHA] + n_wins
                            beta = cf[CF_K_BETA] + n_losses
                            win_rate = alpha / (alpha + beta)
                            pairs = n_wins if n_wins < n_losses else n_losses
                            weight = cf[CF_K_WEIGHT]
                            if pairs > 0 and total_win > 0.0 and total_loss > 0.0:
                                raw_payoff = (total_win / n_wins) / (total_loss / n_losses)
                                payoff = (pairs * raw_payoff + weight * cf[CF_K_RATIO]) / (pairs + weight)
                            else:
                                payoff = cf[CF_K_RATIO]
                            full_kelly = win_rate - (1.0 - win_rate) / payoff
                            if mode == K_MODE_STRICT:
                                kcap = _pymax(0.0, cf[CF_K_FRACTION] * full_kelly / mean_loss)
                            elif not full_kelly <= 0.0:
                                kcap = cf[CF_K_FRACTION] * full_kelly / mean_loss
                                sf[i, SF_K_A] = alpha
                                sf[i, SF_K_B] = beta
                                sf[i, SF_K_X] = 1.0 / (1.0 + payoff)
                                pending = 1
                    sf[i, SF_KELLY_CAP] = kcap
                    si[i, SI_K_PENDING] = pending
                r_steps = si[i, SI_STEPS] + 1
                si[i, SI_STEPS] = r_steps
                e = new_equity
                sf[i, SF_EQUITY] = e
                # RollingPeak.push
                step = si[i, SI_DQ_STEP] + 1
                si[i, SI_DQ_STEP] = step
                if window < 0:
                    if si[i, SI_DQ_COUNT] == 0 or sf[i, SF_PEAK] <= e:
                        sf[i, SF_PEAK] = e
                    si[i, SI_DQ_COUNT] = 1
                else:
                    head = si[i, SI_DQ_HEAD]
                    count = si[i, SI_DQ_COUNT]
                    back = head + count - 1
                    if back >= ring:
                        back -= ring
                    while count > 0 and dq_val[i, back] <= e:
                        count -= 1
                        back -= 1
                        if back < 0:
                            back += ring
                    slot = back + 1
                    if slot >= ring:
                        slot -= ring
                    dq_val[i, slot] = e
                    dq_step[i, slot] = step
                    count += 1
                    oldest = step - window + 1
                    while dq_step[i, head] < oldest:
                        head += 1
                        if head >= ring:
                            head -= ring
                        count -= 1
                    si[i, SI_DQ_HEAD] = head
                    si[i, SI_DQ_COUNT] = count
                    sf[i, SF_PEAK] = dq_val[i, head]
                if r_steps % period == 0:
                    start = sf[i, SF_PERIOD_START]
                    pnl_r = math.log(e / start) if e > 0.0 and start > 0.0 else -1.0
                    r_budget = sf[i, SF_BUDGET]
                    if pnl_r > 0.0:
                        r_budget *= 1.0 + cf[CF_RB_STEP]
                    elif pnl_r < 0.0:
                        r_budget *= 1.0 - cf[CF_RB_STEP]
                    sf[i, SF_BUDGET] = _pymin(cf[CF_RB_UPPER], _pymax(cf[CF_RB_LOWER], r_budget))
                    sf[i, SF_PERIOD_START] = e
            if istate[TERMINATED, i] or istate[TRUNCATED, i]:
                if not by_decision:
                    active[i] = False
                break
        if risk:
            terminated_i = istate[TERMINATED, i] != 0
            truncated_i = istate[TRUNCATED, i] != 0
            flags[0, i] = terminated_i
            flags[1, i] = truncated_i
            flags[2, i] = terminated_i or truncated_i
    return -1


@njit(cache=True)
def begin_decision(actions: np.ndarray, n_actions: int, istate: np.ndarray, work: np.ndarray,
                   active: np.ndarray) -> int:  # pragma: no cover - compiled
    """Check ``actions`` (int64 (N,)) are in [0, n_actions) and clear the decision's sums;
    returns the first bad env's index, or -1; ``-2 - i`` when env ``i``'s episode has ended
    (it must be reset first)."""
    for i in range(actions.shape[0]):
        if actions[i] < 0 or actions[i] >= n_actions:
            return i
        if istate[BAR, i] >= istate[STOP, i]:
            return -2 - i
    for i in range(actions.shape[0]):
        for c in range(W_ACC_REWARD, W_SCRATCH):
            work[i, c] = 0.0
        istate[HELD, i] = 0
        istate[TERMINATED, i] = 0
        istate[TRUNCATED, i] = 0
        active[i] = True
    return -1


@njit(cache=True)
def step_bar(active: np.ndarray, targets: np.ndarray, istate: np.ndarray, fstate: np.ndarray, work: np.ndarray,
             market: np.ndarray, reward_regime: np.ndarray, preset: int, n_terms: int, params: np.ndarray,
             fee_rate: float, max_leverage: float) -> int:  # pragma: no cover - compiled
    """Step every env with ``active[i]`` by one bar towards target position ``targets[i]``
    (the core env's step, then the reward wrapper's), adding to the decision's sums.

    ``params`` float64 (P_REGIME + 8,): the preset's scalars (adaptive-log: wrong_direction,
    include_fees; simple: pnl_scale, trade_cost; opportunity: pnl_scale, trade_cost,
    trending_hold_scale, wrong_scale, risky_wrong_scale; sortino: trade_cost,
    drawdown_weight, reward_scale, downside_weight), then per regime the adaptive preset's
    turnover cost (adaptive-log: trade cost fraction) and adaptive-log's hold cost fraction.

    Writes ``work`` (N, WORK_COLS): this bar's fee, turnover, base reward (net log return)
    and terms; adds to the decision's reward, fee, turnover and term sums; sets the
    TERMINATED/TRUNCATED rows of ``istate`` and increments HELD; clears ``active`` of an
    env whose episode ended. Returns the index of the first env whose target is not a valid
    position (-1 if none): the envs after it are not stepped.
    """
    return _advance(False, False, np.empty(0, dtype=np.int64), targets, 1, active, targets, istate, fstate, work, market,
                    reward_regime, preset, n_terms, params, fee_rate, max_leverage,
                    # the risk arrays (untouched): any of the right types
                    reward_regime, reward_regime, 0, params, reward_regime, market, work, istate, work, istate, work,
                    work)


@njit(cache=True)
def step_decision(actions: np.ndarray, table: np.ndarray, bars: int, istate: np.ndarray, fstate: np.ndarray,
                  work: np.ndarray, market: np.ndarray, reward_regime: np.ndarray, preset: int, n_terms: int,
                  params: np.ndarray, fee_rate: float, max_leverage: float) -> int:  # pragma: no cover
    """A whole decision without the risk layer: each env holds ``table[actions[i]]`` for up to
    ``bars`` bars (fewer when its episode ends). Call :func:`begin_decision` first. Returns
    the first env with a bad target, or -1."""
    return _advance(True, False, actions, table, bars, np.empty(0, dtype=np.bool_), table, istate, fstate, work, market,
                    reward_regime, preset, n_terms, params, fee_rate, max_leverage,
                    # the risk arrays (untouched): any of the right types
                    reward_regime, reward_regime, 0, params, reward_regime, market, work, istate, work, istate, work,
                    work)


@njit(cache=True)
def step_decision_risk(actions: np.ndarray, iconf: np.ndarray, istate: np.ndarray, fstate: np.ndarray,
                       work: np.ndarray, market: np.ndarray, reward_regime: np.ndarray, obs_regime: np.ndarray,
                       fconf: np.ndarray, sf: np.ndarray, si: np.ndarray, dq_val: np.ndarray, dq_step: np.ndarray,
                       sizing: np.ndarray, flags: np.ndarray) -> int:  # pragma: no cover - compiled
    """A whole decision with the RSS layer, in one call (no :func:`begin_decision` first: it
    checks the actions and clears the decision's sums itself): for every env and each of its
    up to ``bars`` bars (fewer when its episode ends), the layer sizes direction
    ``directions[actions[i]]`` at the env's bar in its observed regime ``obs_regime[bar]``
    given the held position (the arithmetic of ``batched_kernels.size_kernel``), the core env
    and the reward preset step towards that target (as :func:`step_bar`), and the layer
    records the step (``batched_kernels.record_kernel``, the rolling peak written out).

    ``iconf`` int64: :func:`pack_risk_decision`'s integers (bars per decision, preset, number
    of terms, brake levels, the layer's ``ci``, the direction of each action); ``fconf``
    float64: its floats (the reward ``params``, fee rate, max leverage, the layer's ``cf`` and
    ``brake``). One argument each, because the call's fixed cost grows with every argument
    numba converts. ``market`` float64 (n_bars, 3 + RM_SIZE): this module's three market
    columns, then the layer's ``market_table``. ``sf, si, dq_val, dq_step``: the layer's state
    (:meth:`~himari_env.risk.batched.BatchedRiskLayer.kernel_arrays`), updated in place. An
    env whose episode ends is neither sized nor recorded further (the per-bar path sized and
    recorded it until the decision's end; it is reset before its next step either way).

    Writes, per env, its last sized bar's ``sizing`` float64 (N, S_COLS): target position,
    rebalanced (0/1), binding code, then the unit size before the first method and after each;
    and the decision's ``flags`` bool (3, N): terminated, truncated, either (done).

    Returns -1; ``i >= 0`` when env ``i``'s target is not a valid position; ``-2 - (8 i + kind)``
    with kind E_ACTION (action outside [0, n_actions)), E_ENDED (env ``i``'s episode ended: reset
    it first) or E_REGIME (its regime is outside 0..3, which the layer cannot size).
    """
    n_brake = iconf[IC_N_BRAKE]
    directions = iconf[IC_DIRECTIONS:]
    ci = iconf[IC_CI:IC_CI + CI_SIZE]
    params = fconf[:N_PARAMS]
    cf = fconf[FC_CF:FC_CF + CF_SIZE]
    brake = fconf[FC_BRAKE:FC_BRAKE + 2 * n_brake].reshape((2, n_brake))
    return _advance(True, True, actions, params, iconf[IC_BARS], np.empty(0, dtype=np.bool_), params, istate, fstate,
                    work, market, reward_regime, iconf[IC_PRESET], iconf[IC_N_TERMS], params, fconf[FC_FEE_RATE],
                    fconf[FC_MAX_LEVERAGE], directions, obs_regime, 3, cf, ci, brake, sf, si, dq_val, dq_step, sizing,
                    flags)


def pack_risk_decision(bars: int, preset: int, n_terms: int, directions: np.ndarray, params: np.ndarray,
                       fee_rate: float, max_leverage: float, cf: np.ndarray, ci: np.ndarray,
                       brake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(iconf, fconf)`` arguments of :func:`step_decision_risk` (copies of the values:
    the layer's config does not change after construction)."""
    iconf = np.concatenate([np.array([bars, preset, n_terms, brake.shape[1]], dtype=np.int64),
                            np.asarray(ci, dtype=np.int64), np.asarray(directions, dtype=np.int64)])
    fconf = np.concatenate([np.asarray(params, dtype=np.float64), np.array([fee_rate, max_leverage]),
                            np.asarray(cf, dtype=np.float64), np.ascontiguousarray(brake, dtype=np.float64).ravel()])
    assert iconf.shape[0] == IC_DIRECTIONS + len(directions) and fconf.shape[0] == FC_BRAKE + brake.size
    return iconf, fconf


# ---- numba's on-disk cache and the risk kernels' source
# numba invalidates a cached function when *its own* file changes, not when a module it takes
# constants or functions from does: the fused path compiles batched_kernels' layout indices and
# helpers into _advance. The CRC of that file is compiled in too; a cache built from another
# version of it is dropped at import (the functions then compile afresh and re-cache).
_RISK_KERNELS_CRC = zlib.crc32(Path(_risk_kernels.__file__).read_bytes())


@njit(cache=True)
def _compiled_risk_kernels_crc() -> int:  # pragma: no cover - compiled
    return _RISK_KERNELS_CRC


def _drop_a_stale_cache() -> None:
    if _compiled_risk_kernels_crc() == _RISK_KERNELS_CRC:
        return
    for dispatcher in (_compiled_risk_kernels_crc, _advance, step_bar, step_decision, step_decision_risk):
        cache = getattr(dispatcher, "_cache", None)
        if cache is None or not hasattr(cache, "flush"):
            raise RuntimeError(f"numba's cache of {__file__} was built from another version of "
                               f"{_risk_kernels.__file__}: delete {Path(__file__).parent / '__pycache__'}")
        cache.flush()


_drop_a_stale_cache()
