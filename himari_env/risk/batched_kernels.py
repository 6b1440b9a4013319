"""Compiled kernels of :class:`~himari_env.risk.batched.BatchedRiskLayer` (numba, ``cache=True``).

Two kernels loop over the N envs with exactly the scalar arithmetic of the single-env RSS layer
(the same IEEE operations in the same order, so results are bit-identical to
:func:`himari_env.risk.composer.compose_position` and :class:`himari_env.risk.engine.RiskEngine`):

* :func:`size_kernel`: the causal state (drawdown from the rolling peak, risk budget, Kelly cap),
  the composer's nine methods, the binding method and the rebalance band;
* :func:`record_kernel`: Kelly outcome totals and position cap, the risk budget's period
  update and the rolling peak (a per-env monotonic deque in a ring buffer).

Kelly's cap in ``confident_cap`` mode is either ``inf`` or ``fraction * f* / mean_loss``
depending on whether the edge is credible. The size only depends on that decision when the
credible cap is below the size reaching the Kelly stage (``min(s5, cap)`` is ``s5`` for
``inf`` and for any candidate ``>= s5``), so :func:`record_kernel` stores the candidate and
:func:`size_kernel` decides credibility only when it could bind.

Kelly's edge probability needs the regularized incomplete beta function. The kernel calls
scipy's own compiled double-precision ``betainc`` (the function behind
``scipy.special.betainc``'s float64 loop, exported by ``scipy.special.cython_special``) as an
external symbol, so the value is the one ``estimate_kelly`` gets, bit for bit (tested), and
only where the cap depends on it (confident_cap mode, enough outcomes, a positive full Kelly).
The symbol is registered with LLVM at import, before any (cached) kernel is loaded.

Python's ``min(a, b)`` / ``max(a, b)`` keep the first argument on ties and on NaN; the helpers
:func:`_pymin` / :func:`_pymax` do the same.

Packed layouts (indices are module constants, shared with ``batched.py``):

``cf`` float64 config vector, ``ci`` int64 config vector, ``brake`` float64 (2, k)
(thresholds, reductions); per-env state ``sf`` float64 (N, SF_*) and ``si`` int64 (N, SI_*);
the peak deque ``dq_val`` float64 (N, C) and ``dq_step`` int64 (N, C), C = window + 1.
"""

from __future__ import annotations

import math

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address

_BETAINC_SYMBOL = "himari_scipy_special_betainc_f64"
llvm.add_symbol(_BETAINC_SYMBOL,
                get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_0betainc"))
#: scipy's ``betainc(a, b, x)`` for doubles (the last argument is Cython's skip-dispatch flag: 0).
scipy_betainc = types.ExternalFunction(
    _BETAINC_SYMBOL, types.float64(types.float64, types.float64, types.float64, types.intc)
)

# ---- cf: float config
CF_TARGET_VOL, CF_MAX_SCALE = 0, 1
CF_MULT = 2  # 4 entries: 2..5
CF_RB_STEP, CF_RB_LOWER, CF_RB_UPPER = 6, 7, 8
CF_SM_BUFFER, CF_SM_K, CF_SM_SQRT_H, CF_SM_COST = 9, 10, 11, 12
CF_EVT_LONG, CF_EVT_SHORT, CF_VAR_BUDGET = 13, 14, 15
CF_LEV_CAP, CF_LEV_KNEE, CF_BAND = 16, 17, 18
CF_K_FRACTION, CF_K_ALPHA, CF_K_BETA, CF_K_RATIO, CF_K_WEIGHT, CF_K_MIN_EDGE = 19, 20, 21, 22, 23, 24
CF_SIZE = 25
# ---- ci: int config
CI_PERIOD, CI_WINDOW, CI_K_MODE, CI_K_MIN_TRADES = 0, 1, 2, 3
CI_SIZE = 4
K_MODE_CONFIDENT, K_MODE_STRICT, K_MODE_OFF = 0, 1, 2
# ---- sf: float state per env
SF_BUDGET, SF_EQUITY, SF_PERIOD_START, SF_TOTAL_WIN, SF_TOTAL_LOSS, SF_KELLY_CAP, SF_PEAK = 0, 1, 2, 3, 4, 5, 6
# snapshot at size(): drawdown, budget, Kelly totals
SF_SNAP_DD, SF_SNAP_BUDGET, SF_SNAP_WIN, SF_SNAP_LOSS = 7, 8, 9, 10
# a Kelly cap whose credibility is undecided: SF_KELLY_CAP holds the cap if credible, these
# the betainc arguments (alpha, beta, x); SI_K_PENDING is 1 while undecided
SF_K_A, SF_K_B, SF_K_X = 11, 12, 13
SF_SIZE = 14
# ---- si: int state per env
SI_N_WINS, SI_N_LOSSES, SI_STEPS, SI_DQ_HEAD, SI_DQ_COUNT, SI_DQ_STEP = 0, 1, 2, 3, 4, 5
SI_SNAP_BAR, SI_SNAP_REGIME, SI_SNAP_DIR, SI_SNAP_WINS, SI_SNAP_LOSSES = 6, 7, 8, 9, 10
SI_K_PENDING = 11
SI_SIZE = 12

# ---- columns of the per-bar table BatchedRiskLayer.market_table (n_bars, RM_SIZE): the
# market's annualized vol, bar sigma, long and short unit VaR and return, then what
# size_kernel computes from one bar and the config alone (fill_bar_caps): the vol-target
# scale, the safe-margin cap and the VaR caps of a long and a short unit
RM_VOL, RM_SIGMA, RM_VAR_LONG, RM_VAR_SHORT, RM_RETURNS = 0, 1, 2, 3, 4
RM_SCALE, RM_SM_CAP, RM_VAR_CAP_LONG, RM_VAR_CAP_SHORT = 5, 6, 7, 8
RM_SIZE = 9

BINDING_CODE_NONE = -1
BINDING_CODE_HOLD = -2
N_METHODS = 9

# error codes of size_kernel (0: none)
ERR_DIRECTION, ERR_REGIME, ERR_BAR = 1, 2, 3


@njit(cache=True, inline="always")
def _pymin(a: float, b: float) -> float:
    return b if b < a else a


@njit(cache=True, inline="always")
def _pymax(a: float, b: float) -> float:
    return b if b > a else a


@njit(cache=True, inline="always")
def _peak_push(i, equity, window, sf, si, dq_val, dq_step):  # type: ignore[no-untyped-def]
    """RollingPeak.push for env ``i`` (``window < 0``: the running peak)."""
    step = si[i, SI_DQ_STEP] + 1
    si[i, SI_DQ_STEP] = step
    if window < 0:
        if si[i, SI_DQ_COUNT] == 0 or sf[i, SF_PEAK] <= equity:
            sf[i, SF_PEAK] = equity
        si[i, SI_DQ_COUNT] = 1
        return
    cap = dq_val.shape[1]
    head = si[i, SI_DQ_HEAD]
    count = si[i, SI_DQ_COUNT]
    # ring positions without a modulo: head < cap and count <= cap, so one wrap at most
    back = head + count - 1
    if back >= cap:
        back -= cap
    while count > 0 and dq_val[i, back] <= equity:
        count -= 1
        back -= 1
        if back < 0:
            back += cap
    slot = back + 1
    if slot >= cap:
        slot -= cap
    dq_val[i, slot] = equity
    dq_step[i, slot] = step
    count += 1
    oldest = step - window + 1
    while dq_step[i, head] < oldest:
        head += 1
        if head >= cap:
            head -= cap
        count -= 1
    si[i, SI_DQ_HEAD] = head
    si[i, SI_DQ_COUNT] = count
    sf[i, SF_PEAK] = dq_val[i, head]


@njit(cache=True)
def fill_bar_caps(table, cf):  # type: ignore[no-untyped-def]
    """Fill ``table``'s RM_SCALE, RM_SM_CAP, RM_VAR_CAP_LONG and RM_VAR_CAP_SHORT columns from
    its market columns, with :func:`size_kernel`'s expressions (so the values are the ones it
    computes for that bar, bit for bit)."""
    for bar in range(table.shape[0]):
        v = table[bar, RM_VOL]
        if not v == v:
            scale = 1.0
        elif v <= 0.0:
            scale = cf[CF_MAX_SCALE]
        else:
            scale = _pymin(cf[CF_TARGET_VOL] / v, cf[CF_MAX_SCALE])
        table[bar, RM_SCALE] = scale
        sg = table[bar, RM_SIGMA]
        if not sg == sg:
            sg = 0.0
        table[bar, RM_SM_CAP] = cf[CF_SM_BUFFER] / (1.0 * (cf[CF_SM_K] * sg * cf[CF_SM_SQRT_H] + cf[CF_SM_COST]))
        unit_var = table[bar, RM_VAR_LONG]
        table[bar, RM_VAR_CAP_LONG] = cf[CF_VAR_BUDGET] / unit_var if unit_var > 0.0 else math.inf
        unit_var = table[bar, RM_VAR_SHORT]
        table[bar, RM_VAR_CAP_SHORT] = cf[CF_VAR_BUDGET] / unit_var if unit_var > 0.0 else math.inf


@njit(cache=True)
def reset_kernel(env_ids, equity, budget_initial, window, sf, si, dq_val, dq_step):  # type: ignore[no-untyped-def]
    """RiskEngine.reset for each env of ``env_ids``."""
    for k in range(env_ids.shape[0]):
        i = env_ids[k]
        value = equity[k]
        sf[i, :] = 0.0
        si[i, :] = 0
        sf[i, SF_BUDGET] = budget_initial
        sf[i, SF_EQUITY] = value
        sf[i, SF_PERIOD_START] = value
        sf[i, SF_KELLY_CAP] = math.inf
        si[i, SI_DQ_STEP] = -1
        _peak_push(i, value, window, sf, si, dq_val, dq_step)


@njit(cache=True)
def size_kernel(directions, bars, regimes, held, vol, sigma, var_long, var_short, cf, ci, brake,  # type: ignore[no-untyped-def]
                sf, si, positions, rebalanced, sizes, binding, error):
    """Size every env (see the module docstring); ``error`` gets (code, env) of the first bad input."""
    n_bars = vol.shape[0]
    n_brake = brake.shape[1]
    for i in range(directions.shape[0]):
        d = directions[i]
        bar = bars[i]
        regime = regimes[i]
        if d != 0 and d != 1 and d != -1:
            error[0] = ERR_DIRECTION
            error[1] = i
            return
        if bar < 0 or bar >= n_bars:
            error[0] = ERR_BAR
            error[1] = i
            return
        # causal state at the decision bar (snapshot for risk_state_info)
        equity = sf[i, SF_EQUITY]
        peak = sf[i, SF_PEAK]
        if peak <= 0.0:
            dd = 0.0
        else:
            dd = _pymin(_pymax(1.0 - equity / peak, 0.0), 1.0)
        budget = sf[i, SF_BUDGET]
        sf[i, SF_SNAP_DD] = dd
        sf[i, SF_SNAP_BUDGET] = budget
        sf[i, SF_SNAP_WIN] = sf[i, SF_TOTAL_WIN]
        sf[i, SF_SNAP_LOSS] = sf[i, SF_TOTAL_LOSS]
        si[i, SI_SNAP_BAR] = bar
        si[i, SI_SNAP_REGIME] = regime
        si[i, SI_SNAP_DIR] = d
        si[i, SI_SNAP_WINS] = si[i, SI_N_WINS]
        si[i, SI_SNAP_LOSSES] = si[i, SI_N_LOSSES]
        if d == 0:
            for j in range(N_METHODS + 1):
                sizes[i, j] = 0.0
            binding[i] = BINDING_CODE_HOLD
            position = 0.0
        else:
            if regime < 0 or regime > 3:
                error[0] = ERR_REGIME
                error[1] = i
                return
            # H3 vol target
            v = vol[bar]
            if not v == v:
                scale = 1.0
            elif v <= 0.0:
                scale = cf[CF_MAX_SCALE]
            else:
                scale = _pymin(cf[CF_TARGET_VOL] / v, cf[CF_MAX_SCALE])
            s0 = 1.0
            s1 = s0 * scale
            s2 = s1 * cf[CF_MULT + regime]
            s3 = s2 * budget
            cut = 0.0
            for k in range(n_brake):
                if dd >= brake[0, k]:
                    cut = brake[1, k]
                else:
                    break
            s4 = s3 * (1.0 - cut)
            sg = sigma[bar]
            if not sg == sg:
                sg = 0.0
            s5 = _pymin(s4, cf[CF_SM_BUFFER] / (1.0 * (cf[CF_SM_K] * sg * cf[CF_SM_SQRT_H] + cf[CF_SM_COST])))
            kelly_cap = sf[i, SF_KELLY_CAP]
            if si[i, SI_K_PENDING] != 0 and kelly_cap < s5:
                # the credible cap would bind: decide credibility now (otherwise min(s5, cap)
                # is s5 whether the cap is this candidate or inf, and the decision can wait)
                edge_probability = 1.0 - scipy_betainc(sf[i, SF_K_A], sf[i, SF_K_B], sf[i, SF_K_X], 0)
                if edge_probability < cf[CF_K_MIN_EDGE]:
                    kelly_cap = math.inf
                sf[i, SF_KELLY_CAP] = kelly_cap
                si[i, SI_K_PENDING] = 0
            s6 = _pymin(s5, kelly_cap)
            s7 = _pymin(s6, cf[CF_EVT_LONG] if d > 0 else cf[CF_EVT_SHORT])
            unit_var = var_long[bar] if d > 0 else var_short[bar]
            var_cap = cf[CF_VAR_BUDGET] / unit_var if unit_var > 0.0 else math.inf
            s8 = _pymin(s7, var_cap)
            cap = cf[CF_LEV_CAP]
            knee = cf[CF_LEV_KNEE]
            if s8 <= knee:
                s9 = s8
            else:
                span = cap - knee
                if span <= 0.0:
                    s9 = cap
                else:
                    s9 = _pymin(cap, knee + span * -math.expm1(-(s8 - knee) / span))
            sizes[i, 0] = s0
            sizes[i, 1] = s1
            sizes[i, 2] = s2
            sizes[i, 3] = s3
            sizes[i, 4] = s4
            sizes[i, 5] = s5
            sizes[i, 6] = s6
            sizes[i, 7] = s7
            sizes[i, 8] = s8
            sizes[i, 9] = s9
            best_ratio = 1.0
            best = BINDING_CODE_NONE
            before = s0
            for j in range(N_METHODS):
                after = sizes[i, j + 1]
                # after / before < best_ratio <= 1 needs after < before (division rounds
                # monotonically): a method that did not cut never binds, no division needed
                if before > 0.0 and after < before:
                    ratio = after / before
                    if ratio < best_ratio:
                        best_ratio = ratio
                        best = j
                before = after
            binding[i] = best
            position = d * s9
        h = held[i]
        band = cf[CF_BAND]
        if position != 0.0 and h != 0.0 and (position > 0.0) == (h > 0.0) and abs(position - h) <= band * abs(h):
            position = h
            rebalanced[i] = False
        else:
            rebalanced[i] = True
        positions[i] = np.float64(np.float32(position))


@njit(cache=True)
def record_kernel(bars, held, equity, returns, cf, ci, sf, si, dq_val, dq_step):  # type: ignore[no-untyped-def]
    """RiskEngine.record_step for every env; returns 0, or ``-1 - i`` (nothing updated) when
    env ``i``'s bar is outside ``returns``."""
    n_bars = returns.shape[0]
    for i in range(bars.shape[0]):
        if bars[i] < 0 or bars[i] >= n_bars:
            return -1 - i
    period = ci[CI_PERIOD]
    window = ci[CI_WINDOW]
    mode = ci[CI_K_MODE]
    min_trades = ci[CI_K_MIN_TRADES]
    ring = dq_val.shape[1]
    for i in range(bars.shape[0]):
        h = held[i]
        if h != 0.0:
            r = returns[bars[i]]
            outcome = r if h > 0 else -r
            if outcome > 0.0:
                si[i, SI_N_WINS] += 1
                sf[i, SF_TOTAL_WIN] += outcome
            elif outcome < 0.0:
                si[i, SI_N_LOSSES] += 1
                sf[i, SF_TOTAL_LOSS] -= outcome
            # estimate_kelly's position cap, without betainc where the decision does not need it
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
                        # the cap if the edge is credible; the betainc waits until it could bind
                        kcap = cf[CF_K_FRACTION] * full_kelly / mean_loss
                        sf[i, SF_K_A] = alpha
                        sf[i, SF_K_B] = beta
                        sf[i, SF_K_X] = 1.0 / (1.0 + payoff)
                        pending = 1
            sf[i, SF_KELLY_CAP] = kcap
            si[i, SI_K_PENDING] = pending
        steps = si[i, SI_STEPS] + 1
        si[i, SI_STEPS] = steps
        e = equity[i]
        sf[i, SF_EQUITY] = e
        # RollingPeak.push (_peak_push written out: a helper call with array arguments costs an
        # NRT incref/decref pair per array per env)
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
        if steps % period == 0:
            start = sf[i, SF_PERIOD_START]
            pnl = math.log(e / start) if e > 0.0 and start > 0.0 else -1.0
            budget = sf[i, SF_BUDGET]
            if pnl > 0.0:
                budget *= 1.0 + cf[CF_RB_STEP]
            elif pnl < 0.0:
                budget *= 1.0 - cf[CF_RB_STEP]
            sf[i, SF_BUDGET] = _pymin(cf[CF_RB_UPPER], _pymax(cf[CF_RB_LOWER], budget))
            sf[i, SF_PERIOD_START] = e
    return 0


@njit(cache=True)
def betainc_into(a, b, x, out):  # type: ignore[no-untyped-def]
    """``out[i] = scipy_betainc(a[i], b[i], x[i])`` (the kernels' betainc, for checking it
    against ``scipy.special.betainc``)."""
    for i in range(a.shape[0]):
        out[i] = scipy_betainc(a[i], b[i], x[i], 0)
