"""Is a Sharpe ratio skill or luck? PSR, DSR and a stationary-bootstrap test (pure numpy/scipy).

Conventions: ``returns`` are per-bar simple strategy returns after fees (float (n,)); Sharpe
ratios inside the formulas are **per bar** (not annualized): ``SR = mean / std`` (population
std). Annualized figures are converted with ``sqrt(bars_per_year)`` at the edges.

* :func:`probabilistic_sharpe_ratio` (Bailey and Lopez de Prado, 2012): the probability that
  the true Sharpe exceeds a benchmark ``SR*`` given the sample's length, skewness and
  kurtosis: ``PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``
  with ``g3`` the skewness and ``g4`` the (non-excess) kurtosis of the returns.
* :func:`expected_max_sharpe` and :func:`deflated_sharpe_ratio` (Bailey and Lopez de Prado,
  2014): the PSR against the Sharpe that the best of ``N`` unskilled trials would show,
  ``SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))`` with ``V`` the
  variance of the trials' Sharpe ratios and ``gamma`` the Euler-Mascheroni constant.
* :func:`stationary_bootstrap_pvalue` (Politis and Romano, 1994): one-sided p-value of
  ``mean(excess) > 0`` for a serially dependent series (blocks of geometric length).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class SharpeMoments:
    """Per-bar Sharpe ratio, sample size, skewness and (non-excess) kurtosis of a series."""

    sharpe: float
    n: int
    skewness: float
    kurtosis: float


def sharpe_moments(returns: ArrayLike) -> SharpeMoments:
    """Per-bar Sharpe (0 for a constant series), n, skewness and kurtosis (3 for a constant
    or too-short series, the normal value)."""
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"returns must be a finite 1-D series of at least 2 values, got shape {values.shape}")
    std = float(values.std())
    if std <= 1e-15:
        return SharpeMoments(0.0, int(values.size), 0.0, 3.0)
    return SharpeMoments(float(values.mean() / std), int(values.size),
                         float(stats.skew(values)), float(stats.kurtosis(values, fisher=False)))


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n: int, *, skewness: float = 0.0,
                               kurtosis: float = 3.0) -> float:
    """PSR: P(true per-bar Sharpe > ``benchmark``) for an observed per-bar ``sharpe`` over
    ``n`` bars with the given skewness and (non-excess) kurtosis. In [0, 1]."""
    if n < 2:
        raise ValueError(f"n must be >= 2 observations, got {n}")
    variance_term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if variance_term <= 0.0:
        # Extreme skew/kurtosis make the asymptotic variance non-positive: no information.
        return 0.5
    z = (sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance_term)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """``SR0``: the expected maximum per-bar Sharpe of ``n_trials`` unskilled trials whose
    Sharpe ratios have variance ``sharpe_variance`` (per-bar units). 0 for one trial."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if sharpe_variance < 0 or not math.isfinite(sharpe_variance):
        raise ValueError(f"sharpe_variance must be finite and >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    quantile_1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    quantile_2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * quantile_1 + EULER_GAMMA * quantile_2))


def deflated_sharpe_ratio(sharpe: float, n: int, *, n_trials: int, sharpe_variance: float,
                          skewness: float = 0.0, kurtosis: float = 3.0) -> float:
    """DSR: the PSR of a per-bar ``sharpe`` against :func:`expected_max_sharpe`."""
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, benchmark, n, skewness=skewness, kurtosis=kurtosis)


def stationary_bootstrap_pvalue(excess: ArrayLike, *, mean_block: float = 168.0, resamples: int = 2000,
                                seed: int = 0) -> float:
    """One-sided p-value of ``mean(excess) > 0`` by the stationary bootstrap.

    The series is centred (the null: mean 0) and resampled in blocks of geometric length
    with mean ``mean_block`` bars (wrapping around); the p-value is the share of resampled
    means at or above the observed mean (with the +1 correction). Deterministic for a seed.
    """
    values = np.asarray(excess, dtype=np.float64)
    if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"excess must be a finite 1-D series of at least 2 values, got shape {values.shape}")
    if mean_block < 1:
        raise ValueError(f"mean_block must be >= 1 bar, got {mean_block}")
    n = values.size
    observed = float(values.mean())
    centred = values - observed
    rng = np.random.default_rng(seed)
    restart = 1.0 / mean_block
    exceed = 0
    chunk = max(1, min(resamples, 2_000_000 // n))
    done = 0
    while done < resamples:
        batch = min(chunk, resamples - done)
        starts = rng.integers(0, n, size=(batch, n))
        new_block = rng.random((batch, n)) < restart
        new_block[:, 0] = True
        # Index = the block's start + steps since the block started (wrapping).
        positions = np.arange(n)
        last_start = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
        block_start_index = np.take_along_axis(starts, last_start, axis=1)
        indices = (block_start_index + (positions - last_start)) % n
        means = centred[indices].mean(axis=1)
        exceed += int(np.count_nonzero(means >= observed))
        done += batch
    return (exceed + 1) / (resamples + 1)


@dataclass(frozen=True)
class SignificanceReport:
    """Significance of one strategy against zero, the best baseline and the trials ledger."""

    sharpe_annualized: float
    psr_vs_zero: float
    best_baseline: str | None
    best_baseline_sharpe_annualized: float | None
    psr_vs_best_baseline: float | None
    bootstrap_pvalue_vs_best_baseline: float | None
    beats_best_baseline_95: bool | None
    n_trials: int
    trials_sharpe_variance_annualized: float | None
    dsr: float | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def significance_report(returns: ArrayLike, *, bars_per_year: int, best_baseline: str | None = None,
                        best_baseline_returns: ArrayLike | None = None,
                        trial_sharpes_annualized: list[float] | None = None, seed: int = 0,
                        mean_block: float = 168.0, resamples: int = 2000) -> SignificanceReport:
    """PSR against 0 and against the best baseline, the bootstrap test of the excess return
    over that baseline, and the DSR given the ledger's trials (annualized Sharpe ratios of
    every configuration tried; the DSR is None with fewer than 2 trials)."""
    moments = sharpe_moments(returns)
    scale = math.sqrt(bars_per_year)
    psr_zero = probabilistic_sharpe_ratio(moments.sharpe, 0.0, moments.n, skewness=moments.skewness,
                                          kurtosis=moments.kurtosis)
    psr_best = pvalue = baseline_sharpe = None
    beats = None
    if best_baseline_returns is not None:
        baseline = np.asarray(best_baseline_returns, dtype=np.float64)
        if baseline.shape != np.asarray(returns).shape:
            raise ValueError(f"baseline returns {baseline.shape} and strategy returns {np.asarray(returns).shape} differ")
        baseline_moments = sharpe_moments(baseline)
        baseline_sharpe = baseline_moments.sharpe * scale
        psr_best = probabilistic_sharpe_ratio(moments.sharpe, baseline_moments.sharpe, moments.n,
                                              skewness=moments.skewness, kurtosis=moments.kurtosis)
        pvalue = stationary_bootstrap_pvalue(np.asarray(returns, dtype=np.float64) - baseline, seed=seed,
                                             mean_block=mean_block, resamples=resamples)
        beats = bool(pvalue < 0.05)
    trials = [float(v) for v in (trial_sharpes_annualized or []) if math.isfinite(float(v))]
    dsr = variance = None
    if len(trials) >= 2:
        variance = float(np.var(trials, ddof=1))
        dsr = deflated_sharpe_ratio(moments.sharpe, moments.n, n_trials=len(trials),
                                    sharpe_variance=variance / bars_per_year,
                                    skewness=moments.skewness, kurtosis=moments.kurtosis)
    sharpe = moments.sharpe * scale
    if best_baseline is None or pvalue is None:
        sentence = f"Sharpe {sharpe:.2f} (PSR vs 0: {psr_zero:.2f}); no baseline to compare."
    elif beats:
        sentence = (f"The agent beats the best baseline ({best_baseline}, Sharpe {baseline_sharpe:.2f}) at 95 %: "
                    f"bootstrap p = {pvalue:.3f} for its excess return.")
    else:
        sentence = (f"The agent does not beat the best baseline ({best_baseline}, Sharpe {baseline_sharpe:.2f}) "
                    f"at 95 %: bootstrap p = {pvalue:.3f} for its excess return.")
    return SignificanceReport(sharpe, psr_zero, best_baseline, baseline_sharpe, psr_best, pvalue, beats,
                              len(trials), variance, dsr, sentence)
