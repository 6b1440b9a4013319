"""Compiled per-env loops of the batched env: the core accounting and every reward preset.

One call of :func:`step_bar` advances every *active* env of the batch by one hourly bar,
exactly as one ``step`` of the single-env stack's core env (:class:`~himari_env.env.HimariBTCEnv`)
followed by its reward wrapper (:class:`~wrappers.rewards.RegimeReward`) would, and adds the
bar's reward, fee, turnover and reward terms to the decision's running sums (what
:class:`~wrappers.decision.DecisionInterval` sums). Every float operation is the single env's,
in the same order (numba does not reassociate or contract without ``fastmath``), and the
reward's ``math.fsum`` is CPython's algorithm (:func:`fsum`), so the results are bit-identical
to the single env (tested).

State layout (one row per env, N rows):

``istate`` int64 (N, ISTATE_COLS)
    ``BAR`` decision bar t, ``STOP`` last decision bar + 1, ``STEPS`` steps this episode,
    ``SORTINO_N`` periods of the Sortino shaper, ``HELD`` bars held by the current decision.
``fstate`` float64 (N, FSTATE_COLS)
    ``POSITION``, ``EQUITY``, ``PEAK`` (of equity), ``SORTINO_SUMSQ`` (sum of squared
    downside), ``SORTINO_DD`` (the shaper's previous drawdown).
``market`` float64 (n_bars, 3)
    Columns: simple return ``r[t]``, the causal sigma[t] and E[t] of the adaptive presets.
``reward_regime`` int64 (n_bars,)
    The regime that sets the reward's costs (the one the agent observes).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# istate columns
BAR, STOP, STEPS, SORTINO_N, HELD = 0, 1, 2, 3, 4
ISTATE_COLS = 5
# fstate columns
POSITION, EQUITY, PEAK, SORTINO_SUMSQ, SORTINO_DD = 0, 1, 2, 3, 4
FSTATE_COLS = 5
# out_bar columns (this bar): fee, turnover, base reward (net log return), reward
OUT_FEE, OUT_TURNOVER, OUT_BASE, OUT_REWARD = 0, 1, 2, 3
# acc columns (this decision): reward, fee, turnover
ACC_REWARD, ACC_FEE, ACC_TURNOVER = 0, 1, 2
# flags columns
FLAG_TERMINATED, FLAG_TRUNCATED, FLAG_BAD_ACTION = 0, 1, 2

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
MAX_TERMS = 5
EQUITY_FLOOR = 1e-12
TRENDING, HIGH_VOL, CRISIS = 1, 2, 3


@njit(cache=True)
def fsum(values: np.ndarray, n: int) -> float:  # pragma: no cover - compiled
    """``math.fsum(values[:n])`` for finite values: CPython's algorithm (Shewchuk's partials,
    then a correctly rounded sum with half-even fix-up), so the result is bit-identical."""
    partials = np.empty(n + 1)
    m = 0
    for k in range(n):
        x = values[k]
        i = 0
        for j in range(m):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        m = i
        if x != 0.0:
            partials[m] = x
            m += 1
    hi = 0.0
    lo = 0.0
    if m > 0:
        m -= 1
        hi = partials[m]
        while m > 0:
            x = hi
            m -= 1
            y = partials[m]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if m > 0 and ((lo < 0.0 and partials[m - 1] < 0.0) or (lo > 0.0 and partials[m - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@njit(cache=True)
def step_bar(active: np.ndarray, targets: np.ndarray, istate: np.ndarray, fstate: np.ndarray,
             market: np.ndarray, reward_regime: np.ndarray, preset: int, n_terms: int,
             params: np.ndarray, regime_params: np.ndarray, fee_rate: float, max_leverage: float,
             out_bar: np.ndarray, terms: np.ndarray, acc: np.ndarray, acc_terms: np.ndarray,
             flags: np.ndarray) -> int:  # pragma: no cover - compiled
    """Step every env with ``active[i]`` by one bar towards target position ``targets[i]``.

    ``params`` float64 (8,): the preset's scalars (adaptive-log: wrong_direction,
    include_fees; simple: pnl_scale, trade_cost; opportunity: pnl_scale, trade_cost,
    trending_hold_scale, wrong_scale, risky_wrong_scale; sortino: trade_cost,
    drawdown_weight, reward_scale, downside_weight). ``regime_params`` float64 (2, 4): per
    regime, the adaptive preset's turnover cost (row 0; adaptive-log: trade cost fraction)
    and adaptive-log's hold cost fraction (row 1).

    Writes ``out_bar`` (N, 4), ``terms`` (N, MAX_TERMS) of this bar, adds to ``acc`` (N, 3)
    and ``acc_terms`` (N, MAX_TERMS), sets ``flags`` (N, 3) and increments ``HELD``. Returns
    the index of the first env whose target is not a valid position (-1 if none): that env
    and the envs after it are not stepped.
    """
    n = active.shape[0]
    for i in range(n):
        if not active[i]:
            continue
        # --- HimariBTCEnv._parse_action
        target = targets[i]
        limit = max_leverage
        if not (-limit <= target <= limit):
            if math.isfinite(target) and abs(target) <= limit * (1 + 1e-6):
                target = limit if target > 0 else -limit
            else:
                flags[i, FLAG_BAD_ACTION] = True
                return i
        # --- accounting_step
        t = istate[i, BAR]
        equity = fstate[i, EQUITY]
        next_return = market[t + 1, 0]
        turnover = abs(target - fstate[i, POSITION])
        fee = fee_rate * turnover * equity
        new_equity = (equity - fee) * (1.0 + target * next_return)
        bankrupt = False
        if new_equity <= EQUITY_FLOOR:
            new_equity = 0.0
            bankrupt = True
        floored = new_equity if not (EQUITY_FLOOR > new_equity) else EQUITY_FLOOR
        base = math.log(floored / equity)
        fstate[i, POSITION] = target
        fstate[i, EQUITY] = new_equity
        if new_equity > fstate[i, PEAK]:
            fstate[i, PEAK] = new_equity
        istate[i, STEPS] += 1
        istate[i, BAR] = t + 1
        truncated = istate[i, BAR] >= istate[i, STOP] and not bankrupt
        if bankrupt:
            istate[i, STOP] = t + 1
        flags[i, FLAG_TERMINATED] = bankrupt
        flags[i, FLAG_TRUNCATED] = truncated
        # --- RegimeReward._terms (each term + 0.0, as the wrapper does)
        position = target
        regime = reward_regime[t]
        for k in range(MAX_TERMS):
            terms[i, k] = 0.0
        if preset == 0:  # pnl
            terms[i, 0] = base + 0.0
        elif preset == 1:  # adaptive
            terms[i, 0] = base / market[t, 1] + 0.0
            terms[i, 1] = (-regime_params[0, regime] * market[t, 2] * turnover if turnover else 0.0) + 0.0
        else:
            is_trade = position != 0.0
            wrong = is_trade and position * next_return < 0.0
            if preset == 2:  # adaptive-log
                direction = float((position > 0.0) - (position < 0.0))
                sigma = market[t, 1]
                expected_abs = market[t, 2]
                terms[i, 0] = direction * next_return / sigma + 0.0
                terms[i, 1] = (-regime_params[0, regime] * expected_abs if is_trade else 0.0) + 0.0
                terms[i, 2] = (-regime_params[1, regime] * expected_abs if not is_trade else 0.0) + 0.0
                terms[i, 3] = (-params[0] * expected_abs if wrong else 0.0) + 0.0
                if params[1] != 0.0:
                    terms[i, 4] = (-(fee / equity) / sigma if fee else 0.0) + 0.0
            elif preset == 3:  # simple
                terms[i, 0] = params[0] * position * next_return + 0.0
                terms[i, 1] = (-params[1] if is_trade else 0.0) + 0.0
            elif preset == 4:  # opportunity
                magnitude = abs(next_return)
                risky = regime == HIGH_VOL or regime == CRISIS
                terms[i, 0] = params[0] * position * next_return + 0.0
                terms[i, 1] = (-params[1] if is_trade else 0.0) + 0.0
                terms[i, 2] = (-params[2] * magnitude if (not is_trade and regime == TRENDING) else 0.0) + 0.0
                terms[i, 3] = (-params[3] * magnitude if wrong else 0.0) + 0.0
                terms[i, 4] = (-params[4] * magnitude if (wrong and risky) else 0.0) + 0.0
            else:  # sortino (wrappers.sortino.SortinoShaper.step / sortino_reward)
                pnl = math.exp(base) - 1.0
                drawdown = 1.0 - new_equity / fstate[i, PEAK]
                rise = drawdown - fstate[i, SORTINO_DD]
                increase = rise if rise > 0.0 else 0.0
                fstate[i, SORTINO_DD] = drawdown
                periods = istate[i, SORTINO_N]
                deviation = 0.0 if periods == 0 else math.sqrt(fstate[i, SORTINO_SUMSQ] / periods)
                penalty = 0.0
                if pnl < 0.0:
                    loss = -pnl
                    if deviation <= 0.0:
                        penalty = loss
                    else:
                        ratio = loss / deviation
                        penalty = loss * (ratio if ratio < 1.0 else 1.0)
                scale = params[2]
                terms[i, 0] = scale * pnl + 0.0
                terms[i, 1] = -scale * params[0] * turnover + 0.0
                terms[i, 2] = -scale * params[1] * increase + 0.0
                terms[i, 3] = -scale * params[3] * penalty + 0.0
                downside = pnl if pnl < 0.0 else 0.0
                istate[i, SORTINO_N] = periods + 1
                fstate[i, SORTINO_SUMSQ] = fstate[i, SORTINO_SUMSQ] + downside * downside
        reward = fsum(terms[i], n_terms)
        out_bar[i, OUT_FEE] = fee
        out_bar[i, OUT_TURNOVER] = turnover
        out_bar[i, OUT_BASE] = base
        out_bar[i, OUT_REWARD] = reward
        # --- DecisionInterval sums (from 0.0, in bar order)
        acc[i, ACC_REWARD] += reward
        acc[i, ACC_FEE] += fee
        acc[i, ACC_TURNOVER] += turnover
        for k in range(n_terms):
            acc_terms[i, k] += terms[i, k]
        istate[i, HELD] += 1
    return -1


@njit(cache=True)
def gather_windows(features: np.ndarray, bars: np.ndarray, context: int, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = features[bars[i] - context + 1 : bars[i] + 1]`` for every i (one copy)."""
    for i in range(bars.shape[0]):
        first = bars[i] - context + 1
        for c in range(context):
            out[i, c, :] = features[first + c, :]
