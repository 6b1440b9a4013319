"""Does a policy time the market, or only choose how much of it to hold? A permutation test.

A policy that is long 70 % of a bull year beats flat and most rules without any timing skill:
its Sharpe comes from its exposure. This test keeps everything but the timing. The policy's own
decisions (one direction per decision bar, held until the next decision) are shuffled across
its decision bars, ``n_permutations`` times, and every shuffled sequence is traded through the
same accounting and the same RSS risk engine as the policy (:func:`~himari_env.risk.backtest.run_backtest`).
A shuffle keeps the number of long, flat and short decisions and their holding periods; it
destroys only *when* they were taken.

``p_value = (1 + #{shuffled Sharpe >= policy Sharpe}) / (1 + n_permutations)``: the chance
that the policy's timing is no better than a random order of its own decisions. A policy whose
decisions are all the same has nothing to shuffle and gets ``p_value`` 1.0.

The policy's Sharpe is recomputed from its decisions by the same backtest (``replayed_sharpe``)
and :func:`timing_permutation_test` checks it against the Sharpe of the pass it is given, so
the test always compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from himari_env.constants import ACTION_DIRECTIONS, BARS_PER_YEAR
from himari_env.metrics import sharpe_ratio
from himari_env.risk.backtest import run_backtest
from himari_env.risk.engine import RiskEngine

__all__ = ["DEFAULT_PERMUTATIONS", "TimingTest", "directions_from_actions", "timing_permutation_test"]

#: Shuffles per test: p-values in steps of 1/201, about a second per 1,000 decision bars.
DEFAULT_PERMUTATIONS = 200


@dataclass(frozen=True)
class TimingTest:
    """Result of :func:`timing_permutation_test` (Sharpe ratios annualized, after fees).

    Attributes
    ----------
    sharpe : the policy's Sharpe over the pass.
    p_value : ``(1 + #{shuffled >= sharpe}) / (1 + n_permutations)``.
    shuffled_median, shuffled_q05, shuffled_q95 : quantiles of the shuffled Sharpe ratios.
    n_permutations : shuffles drawn.
    n_decisions : decision bars in the pass.
    long_share, short_share : fractions of decisions that are long / short (kept by a shuffle).
    """

    sharpe: float
    p_value: float
    shuffled_median: float
    shuffled_q05: float
    shuffled_q95: float
    n_permutations: int
    n_decisions: int
    long_share: float
    short_share: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {"sentence": self.sentence()}

    def sentence(self) -> str:
        """One line for reports."""
        verdict = ("timing adds to the Sharpe at 95 %" if self.p_value <= 0.05
                   else "no evidence of timing skill: the Sharpe is what its exposure gives")
        return (f"timing test: Sharpe {self.sharpe:.2f} against {self.shuffled_median:.2f} "
                f"[{self.shuffled_q05:.2f}, {self.shuffled_q95:.2f}] for {self.n_permutations} shuffles of its "
                f"own {self.n_decisions} decisions (long {self.long_share:.0%}, short {self.short_share:.0%}), "
                f"p {self.p_value:.3f}: {verdict}")


def directions_from_actions(actions: ArrayLike) -> np.ndarray:
    """Directions (int8: 0 flat, 1 long, -1 short) of discrete actions 0 HOLD, 1 LONG, 2 SHORT
    (the ``long_flat`` set uses 0 and 1 only)."""
    values = np.asarray(actions)
    if values.ndim != 1 or not np.isin(values, (0, 1, 2)).all():
        raise ValueError(f"actions must be a 1-d array of 0 HOLD, 1 LONG, 2 SHORT, got {values[:5]!r}...")
    return np.asarray(ACTION_DIRECTIONS, dtype=np.float64)[values.astype(np.int64)].astype(np.int8)


def _hourly(decision_bars: np.ndarray, directions: np.ndarray, n_bars: int, stop: int) -> np.ndarray:
    hourly = np.zeros(n_bars, dtype=np.int8)
    ends = np.append(decision_bars[1:], stop)
    hourly[decision_bars[0]:stop] = np.repeat(directions, ends - decision_bars)
    return hourly


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
    """Shuffle a policy's decisions across its decision bars and trade each order.

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
    n_permutations, seed : shuffles and the seed of their generator.

    Returns
    -------
    TimingTest
    """
    flows = np.asarray(returns, dtype=np.float64)
    bars = np.asarray(decision_bars, dtype=np.int64)
    chosen = np.asarray(directions, dtype=np.int8)
    if bars.ndim != 1 or bars.size == 0 or bars.shape != chosen.shape:
        raise ValueError(f"decision_bars and directions must be 1-d of one length >= 1, got {bars.shape} and {chosen.shape}")
    if np.any(np.diff(bars) <= 0) or bars[0] < 0 or stop <= bars[-1] or stop > flows.size - 1:
        raise ValueError(f"decision_bars must increase strictly inside [0, stop) and stop <= {flows.size - 1}, "
                         f"got bars {bars[0]}..{bars[-1]} and stop {stop}")
    if not np.isin(chosen, (-1, 0, 1)).all():
        raise ValueError("directions must be -1, 0 or 1")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    engine = None if risk_config is None else RiskEngine(risk_config, flows, max_leverage=max_leverage)
    start = int(bars[0])

    def sharpe_of(order: np.ndarray) -> float:
        result = run_backtest(flows, _hourly(bars, order, flows.size, stop), regime_ids, start=start, stop=stop,
                              config=None, fee_rate=fee_rate, max_leverage=max_leverage, engine=engine)
        return sharpe_ratio(result.equity, bars_per_year=bars_per_year)

    replayed = sharpe_of(chosen)
    if policy_sharpe is not None and not abs(replayed - policy_sharpe) <= 1e-6 * max(1.0, abs(policy_sharpe)):
        raise ValueError(f"the replay of the policy's decisions has Sharpe {replayed:.6f}, its pass {policy_sharpe:.6f}: "
                         "the decisions, risk config or market do not belong to that pass")
    rng = np.random.default_rng(seed)
    if np.all(chosen == chosen[0]):
        shuffled = np.full(n_permutations, replayed)  # nothing to shuffle: every order is the policy's
    else:
        shuffled = np.array([sharpe_of(rng.permutation(chosen)) for _ in range(n_permutations)])
    q05, median, q95 = np.percentile(shuffled, [5, 50, 95])
    return TimingTest(
        sharpe=float(replayed),
        p_value=float((1 + np.count_nonzero(shuffled >= replayed)) / (1 + n_permutations)),
        shuffled_median=float(median), shuffled_q05=float(q05), shuffled_q95=float(q95),
        n_permutations=int(n_permutations), n_decisions=int(bars.size),
        long_share=float(np.mean(chosen == 1)), short_share=float(np.mean(chosen == -1)),
    )
