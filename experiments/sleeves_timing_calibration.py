"""Calibration of the staggered timing test: how often is a skill-less staggered policy
called skilled at 5 %?

``python -m experiments.sleeves_timing_calibration --interval 72 --sleeves 8 --bars 4400
--switch 0.005`` draws ``--policies`` random-walk markets (hourly returns N(0, 1 %)) and, on
each, a long/flat latent that switches with probability ``--switch`` an hour, independent of
the market, read by every sleeve on its grid (:func:`agents.sleeves.sleeve_phases`): the
sleeves agree most of the time, as a real staggered policy's do. It prints how many of them
:func:`himari_env.timing.sleeved_timing_permutation_test` (the sleeves reordered together)
finds significant at 5 %, next to the first version, which reordered each sleeve on its own
(5 % expected of a calibrated test). The README's "Staggered sleeves" quotes its output.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from agents.sleeves import sleeve_phases
from himari_env.metrics import sharpe_ratio
from himari_env.risk.backtest import run_backtest
from himari_env.rules import decision_grid, held_decisions
from himari_env.timing import reorder_runs, sleeved_timing_permutation_test


def independent_reordering_p(returns: np.ndarray, sleeves: Sequence[tuple[np.ndarray, np.ndarray]], *, stop: int,
                             n_permutations: int, seed: int, fee_rate: float = 0.001) -> float:
    """p-value of the rejected design: each sleeve's holding periods reordered on its own."""
    regimes = np.zeros(returns.size, dtype=np.int8)
    start = int(sleeves[0][0][0])

    def sharpe(orders: Sequence[np.ndarray]) -> float:
        curves = []
        for (bars, _), order in zip(sleeves, orders, strict=True):
            result = run_backtest(returns, held_decisions(bars, order, n_bars=returns.size, stop=stop), regimes,
                                  start=start, stop=stop, config=None, fee_rate=fee_rate, max_leverage=1.0)
            curves.append(result.equity / result.equity[0])
        return sharpe_ratio(np.mean(curves, axis=0))

    actual = sharpe([d for _, d in sleeves])
    rng = np.random.default_rng(seed)
    shuffled = np.array([sharpe([reorder_runs(d, rng) for _, d in sleeves]) for _ in range(n_permutations)])
    return float((1 + np.count_nonzero(shuffled >= actual)) / (1 + n_permutations))


def calibrate(*, interval: int, sleeves: int, bars: int, switch: float, policies: int = 200,
              permutations: int = 50, first_seed: int = 2_000, directions: str = "long_flat") -> dict[str, int]:
    """Counts of significant (p <= 0.05) skill-less policies: ``{"together", "independent", "policies"}``.
    ``directions``: ``long_flat`` (the latent is long or flat) or ``three`` (it moves through
    flat, long and short at random, each switch to one of the other two)."""
    if directions not in ("long_flat", "three"):
        raise ValueError(f"directions must be 'long_flat' or 'three', got {directions!r}")
    together = independent = 0
    for k in range(policies):
        rng = np.random.default_rng(first_seed + k)
        returns = np.concatenate(([0.0], rng.normal(0.0, 0.01, bars - 1)))
        if directions == "long_flat":
            latent = np.where(np.cumsum(rng.random(bars) < switch) % 2 == 0, 1, 0).astype(np.int8)
        else:  # each switch moves to one of the two other directions
            steps = np.where(rng.random(bars) < switch, rng.integers(1, 3, bars), 0)
            latent = (np.cumsum(steps) % 3 - 1).astype(np.int8)
        stop = bars - 2
        decisions = []
        for phase in sleeve_phases(interval, sleeves):
            grid = decision_grid(0, stop, interval, phase)
            decisions.append((grid, latent[grid]))
        test = sleeved_timing_permutation_test(returns, np.zeros(bars, dtype=np.int8), sleeves=decisions, stop=stop,
                                               risk_config=None, fee_rate=0.001, max_leverage=1.0,
                                               n_permutations=permutations, seed=k)
        together += test.p_value <= 0.05
        independent += independent_reordering_p(returns, decisions, stop=stop, n_permutations=permutations,
                                                seed=k) <= 0.05
    return {"together": together, "independent": independent, "policies": policies}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sleeves_timing_calibration",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=int, default=72, help="bars per decision (default %(default)s)")
    parser.add_argument("--sleeves", type=int, default=8, help="staggered sleeves (default %(default)s)")
    parser.add_argument("--bars", type=int, default=4400, help="hourly bars per market (default %(default)s)")
    parser.add_argument("--switch", type=float, default=0.005,
                        help="the latent's switch probability per hour (default %(default)s)")
    parser.add_argument("--policies", type=int, default=200, help="skill-less policies (default %(default)s)")
    parser.add_argument("--permutations", type=int, default=50, help="reorderings per test (default %(default)s)")
    parser.add_argument("--directions", choices=("long_flat", "three"), default="long_flat",
                        help="the latent's directions: long/flat, or flat/long/short (default %(default)s)")
    args = parser.parse_args(argv)
    counts = calibrate(interval=args.interval, sleeves=args.sleeves, bars=args.bars, switch=args.switch,
                       policies=args.policies, permutations=args.permutations, directions=args.directions)
    print(f"{args.sleeves} sleeves ({args.directions}), a decision every {args.interval} bars, {args.bars} bars, "
          f"switch {args.switch}/h: "
          f"significant at 5 %: reordered together {counts['together']} of {counts['policies']}, each sleeve on "
          f"its own {counts['independent']} of {counts['policies']} "
          f"({0.05 * counts['policies']:.0f} expected)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
