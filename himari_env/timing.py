"""Does a policy time the market, or only choose how much of it to hold? A permutation test.

A policy that is long 70 % of a bull year beats flat and most rules without any timing skill:
its Sharpe comes from its exposure. This test keeps everything but the timing. The policy's
decisions (one direction per decision bar, held until the next decision) form stretches of
one direction (runs). A reordering keeps the sequence of directions the policy switches
through, hence its number of trades and its turnover, and the number of decisions it spends
in each direction, and permutes the lengths of its stretches among the stretches of the same
direction: a long stretch of 20 decisions and one of 3 trade places, which moves *when* the
policy is long. This is the "random entries with the same trades and holding periods" null;
shuffling single decisions instead would multiply the trades of a persistent policy, charge
its reorderings the fees it never paid and make any such policy look skilled. Every
reordering is traded through the same accounting and the same RSS risk engine as the policy
(:func:`~himari_env.risk.backtest.run_backtest`); the RSS layer's sizes depend on the path, so
the exposure it produces is not held fixed, only the directions are.

``p_value = (1 + #{reordered Sharpe >= policy Sharpe}) / (1 + n_permutations)``, the
one-sided permutation p-value of "the order of its stretches carries no information". A
policy with one stretch per direction, or one direction throughout, has nothing to reorder
and gets ``p_value`` 1.0. A p-value near 1 says the timing costs: most reorderings do better.

The policy's Sharpe is recomputed from its decisions by the same backtest (``sharpe``) and
:func:`timing_permutation_test` checks it against the Sharpe of the pass it is given, so the
test always compares like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from himari_env.constants import ACTION_DIRECTIONS, BARS_PER_YEAR
from himari_env.metrics import sharpe_ratio
from himari_env.risk.backtest import run_backtest
from himari_env.risk.engine import RiskEngine
from himari_env.rules import held_decisions

__all__ = ["DEFAULT_PERMUTATIONS", "TimingTest", "directions_from_actions", "reorder_runs",
           "reorder_sleeves_together", "sleeved_timing_permutation_test", "timing_permutation_test"]

#: Reorderings per test: p-values in steps of 1/201; about a second per 1,000 hourly bars of
#: the pass with the RSS layer (each reordering is a full backtest over the pass's bars).
DEFAULT_PERMUTATIONS = 200


@dataclass(frozen=True)
class TimingTest:
    """Result of :func:`timing_permutation_test` (Sharpe ratios annualized, after fees).

    Attributes
    ----------
    sharpe : the policy's Sharpe over the pass.
    p_value : ``(1 + #{reordered >= sharpe}) / (1 + n_permutations)``.
    shuffled_median, shuffled_q05, shuffled_q95 : quantiles of the reordered Sharpe ratios.
    n_permutations : reorderings drawn.
    n_decisions : decision bars in the pass.
    n_runs : stretches of one direction (a reordering keeps their number and directions).
    long_share, short_share : fractions of decisions that are long / short (kept too).
    seed : seed of the reorderings.
    """

    sharpe: float
    p_value: float
    shuffled_median: float
    shuffled_q05: float
    shuffled_q95: float
    n_permutations: int
    n_decisions: int
    n_runs: int
    long_share: float
    short_share: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {"sentence": self.sentence()}

    def sentence(self) -> str:
        """One line for reports."""
        if self.p_value <= 0.05:
            verdict = "its timing adds to the Sharpe at 95 %"
        elif self.p_value >= 0.95:
            verdict = "its timing costs: most reorderings of its own holding periods do better"
        else:
            verdict = "no evidence of timing skill: reorderings of its own holding periods do as well"
        return (f"timing test: Sharpe {self.sharpe:.2f} against {self.shuffled_median:.2f} "
                f"[{self.shuffled_q05:.2f}, {self.shuffled_q95:.2f}] for {self.n_permutations} reorderings of its "
                f"{self.n_runs} holding periods over {self.n_decisions} decisions (long {self.long_share:.0%}, "
                f"short {self.short_share:.0%}), p {self.p_value:.3f}: {verdict}")


def directions_from_actions(actions: ArrayLike) -> np.ndarray:
    """Directions (int8: 0 flat, 1 long, -1 short) of discrete actions 0 HOLD, 1 LONG, 2 SHORT
    (the ``long_flat`` set uses 0 and 1 only)."""
    values = np.asarray(actions)
    if values.ndim != 1 or not np.isin(values, (0, 1, 2)).all():
        raise ValueError(f"actions must be a 1-d array of 0 HOLD, 1 LONG, 2 SHORT, got {values[:5]!r}...")
    return np.asarray(ACTION_DIRECTIONS, dtype=np.float64)[values.astype(np.int64)].astype(np.int8)


def reorder_runs(directions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``directions`` with the lengths of its stretches of one direction permuted among the
    stretches of the same direction (the sequence of directions it switches through kept).
    Any integer codes work (the staggered test passes codes of direction vectors); the result
    has the input's dtype."""
    change = np.flatnonzero(np.diff(directions)) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.append(starts, directions.size))
    values = directions[starts]
    for value in np.unique(values):
        same = np.flatnonzero(values == value)
        lengths[same] = lengths[rng.permutation(same)]
    return np.repeat(values, lengths).astype(directions.dtype)


def _decision_matrix(directions: Sequence[np.ndarray]) -> np.ndarray:
    """Rows: the sleeves' ``m``-th decisions (a shorter sleeve padded with its last direction)."""
    matrix = np.empty((max(d.size for d in directions), len(directions)), dtype=np.int8)
    for j, chosen in enumerate(directions):
        matrix[:, j] = np.concatenate((chosen, np.full(matrix.shape[0] - chosen.size, chosen[-1], dtype=np.int8)))
    return matrix


def reorder_sleeves_together(directions: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The sleeves' directions (one int8 array per sleeve, decision ``m`` of each within one
    decision interval of the others) reordered together: the holding periods of sleeve 0 are
    permuted among those of the same direction, as :func:`reorder_runs` permutes one policy's
    (the same draws), and every other sleeve's decisions over each such period travel with it.
    Every sleeve keeps its time in each direction and sleeve 0 its trades, the others theirs up
    to the seams of the moved periods; the sleeves stay as correlated with each other as the
    policy's are. One sleeve is :func:`reorder_runs`.

    Two approximations, both at the edges of a moved period: row ``m`` pairs sleeve 0's
    decision ``m`` with the other sleeves' decision ``m``, made up to one interval *earlier*
    (their grids start ``phase_j`` bars after the first bar), so a period carries the other
    sleeves' decisions shifted by one row; and a sleeve with one decision fewer than the
    longest (sleeve 0, as a rule) is padded with its last direction, which a reordering can
    move inside and so change its time in a direction or its trades by one decision. With two
    directions (long/flat) the seams add no trades; with three they can. The calibration
    (``experiments/sleeves_timing_calibration.py``) finds the test at or under its level for
    long/flat and for flat/long/short policies alike."""
    matrix = _decision_matrix(directions)
    lead = matrix[:, 0]
    change = np.flatnonzero(np.diff(lead)) + 1
    starts = np.concatenate(([0], change))
    ends = np.append(change, lead.size)
    values = lead[starts]
    order = np.arange(starts.size)
    for value in np.unique(values):
        same = np.flatnonzero(values == value)
        order[same] = rng.permutation(same)
    rows = np.concatenate([matrix[starts[k]:ends[k]] for k in order])
    return [rows[:chosen.size, j] for j, chosen in enumerate(directions)]


def timing_permutation_test(
    returns: ArrayLike,
    regime_ids: ArrayLike,
    *,
    decision_bars: ArrayLike,
    directions: ArrayLike,
    stop: int,
    risk_config: Any | None,
    fee_rate: float,
    max_leverage: float,
    policy_sharpe: float | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    bars_per_year: int = BARS_PER_YEAR,
) -> TimingTest:
    """Reorder a policy's holding periods (:func:`reorder_runs`) and trade each reordering.

    Parameters
    ----------
    returns : float (n,)
        ``MarketData.returns`` (``returns[t] = close[t] / close[t-1] - 1``).
    regime_ids : int (n,)
        The regimes the risk layer reads (the policy's regime source).
    decision_bars : int (k,)
        Strictly increasing bars at which the policy decided; each decision holds until the
        next one, the last until ``stop``.
    directions : int (k,)
        The policy's direction at each decision (-1, 0, 1; :func:`directions_from_actions`).
    stop : int
        End of the pass (exclusive decision bar, ``<= n - 1``).
    risk_config : a calibrated :class:`~himari_env.risk.config.RiskConfig` (the policy's RSS
        layer) or None (unit positions, ``risk=False``).
    fee_rate, max_leverage : the env's.
    policy_sharpe : the Sharpe of the policy's own pass; when given, the replay of its
        decisions must reproduce it (to 1e-6), else ValueError: the test would not compare
        like with like.
    n_permutations, seed : reorderings and the seed of their generator.

    Returns
    -------
    TimingTest
    """
    return sleeved_timing_permutation_test(
        returns, regime_ids, sleeves=[(decision_bars, directions)], stop=stop, risk_config=risk_config,
        fee_rate=fee_rate, max_leverage=max_leverage, policy_sharpe=policy_sharpe,
        n_permutations=n_permutations, seed=seed, bars_per_year=bars_per_year)


def sleeved_timing_permutation_test(
    returns: ArrayLike,
    regime_ids: ArrayLike,
    *,
    sleeves: Sequence[tuple[ArrayLike, ArrayLike]],
    stop: int,
    risk_config: Any | None,
    fee_rate: float,
    max_leverage: float,
    policy_sharpe: float | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    bars_per_year: int = BARS_PER_YEAR,
) -> TimingTest:
    """:func:`timing_permutation_test` for a staggered policy (:mod:`agents.sleeves`).

    The sleeves are reordered *together* (:func:`reorder_sleeves_together`): sleeve 0's
    holding periods are permuted as one policy's, and the other sleeves' decisions over each
    period travel with it, so every sleeve keeps its time in each direction and the sleeves
    stay as correlated with each other as the policy's are. Reordering each sleeve on its own
    would decorrelate them: the reorderings' combined Sharpe would vary less than the
    policy's, and luck would pass for skill (``experiments/sleeves_timing_calibration.py``).
    Each sleeve is traded through its own RSS layer on equal capital and the Sharpe is that
    of the mean of their equity curves, as the policy's own pass computes it. One sleeve is
    :func:`timing_permutation_test` (the same draws). The counts of the result (decisions,
    holding periods, long and short shares) are over all sleeves.
    """
    flows = np.asarray(returns, dtype=np.float64)
    if len(sleeves) < 1:
        raise ValueError("sleeves must hold at least one (decision_bars, directions) pair")
    decisions: list[tuple[np.ndarray, np.ndarray]] = []
    for raw_bars_like, directions in sleeves:
        raw_bars = np.asarray(raw_bars_like)
        if raw_bars.size and not np.issubdtype(raw_bars.dtype, np.integer):
            raise ValueError(f"decision_bars must be integers (bar indices), got dtype {raw_bars.dtype}")
        bars = raw_bars.astype(np.int64)
        chosen = np.asarray(directions, dtype=np.int8)
        if bars.ndim != 1 or bars.size == 0 or bars.shape != chosen.shape:
            raise ValueError(f"decision_bars and directions must be 1-d of one length >= 1, got {bars.shape} and "
                             f"{chosen.shape}")
        if np.any(np.diff(bars) <= 0) or bars[0] < 0 or stop <= bars[-1] or stop > flows.size - 1:
            raise ValueError(f"decision_bars must increase strictly inside [0, stop) and stop <= {flows.size - 1}, "
                             f"got bars {bars[0]}..{bars[-1]} and stop {stop}")
        if not np.isin(chosen, (-1, 0, 1)).all():
            raise ValueError("directions must be -1, 0 or 1")
        decisions.append((bars, chosen))
    if len({int(bars[0]) for bars, _ in decisions}) != 1:
        raise ValueError("every sleeve must decide at the pass's first bar (one start, equal capital)")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    engine = None if risk_config is None else RiskEngine(risk_config, flows, max_leverage=max_leverage)
    start = int(decisions[0][0][0])

    def equity_of(bars: np.ndarray, order: np.ndarray) -> np.ndarray:
        result = run_backtest(flows, held_decisions(bars, order, n_bars=flows.size, stop=stop), regime_ids,
                              start=start, stop=stop, config=None, fee_rate=fee_rate, max_leverage=max_leverage,
                              engine=engine)
        return np.asarray(result.equity / result.equity[0], dtype=np.float64)

    def sharpe_of(orders: Sequence[np.ndarray]) -> float:
        equity = np.mean([equity_of(bars, order) for (bars, _), order in zip(decisions, orders, strict=True)], axis=0)
        return sharpe_ratio(equity, bars_per_year=bars_per_year)

    replayed = sharpe_of([chosen for _, chosen in decisions])
    if policy_sharpe is not None and not abs(replayed - policy_sharpe) <= 1e-6 * max(1.0, abs(policy_sharpe)):
        raise ValueError(f"the replay of the policy's decisions has Sharpe {replayed:.6f}, its pass {policy_sharpe:.6f}: "
                         "the decisions, risk config or market do not belong to that pass")
    rng = np.random.default_rng(seed)
    lead = decisions[0][1]
    firsts = lead[np.concatenate(([0], np.flatnonzero(np.diff(lead)) + 1))]
    if np.unique(firsts, return_counts=True)[1].max() < 2:
        shuffled = np.full(n_permutations, replayed)  # one holding period per direction: nothing to reorder
    else:
        chosen_all = [chosen for _, chosen in decisions]
        shuffled = np.array([sharpe_of(reorder_sleeves_together(chosen_all, rng)) for _ in range(n_permutations)])
    every = np.concatenate([chosen for _, chosen in decisions])
    q05, median, q95 = np.percentile(shuffled, [5, 50, 95])
    return TimingTest(
        sharpe=float(replayed),
        p_value=float((1 + np.count_nonzero(shuffled >= replayed)) / (1 + n_permutations)),
        shuffled_median=float(median), shuffled_q05=float(q05), shuffled_q95=float(q95),
        n_permutations=int(n_permutations), n_decisions=int(every.size),
        n_runs=int(sum(np.count_nonzero(np.diff(chosen)) + 1 for _, chosen in decisions)),
        long_share=float(np.mean(every == 1)), short_share=float(np.mean(every == -1)), seed=int(seed),
    )
