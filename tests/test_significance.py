"""PSR, DSR and the stationary bootstrap: published examples and limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari_env.significance import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_moments,
    significance_report,
    stationary_bootstrap_pvalue,
)


def test_deflated_sharpe_ratio_reproduces_bailey_lopez_de_prado_2014_example():
    # The paper's numerical example: 5 years of daily returns (T = 1,250), annualized SR 2.5,
    # N = 100 trials whose annualized Sharpe ratios have variance 0.5, skewness -3,
    # kurtosis 10: SR0 = 0.1132 per day and DSR = 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(250), 1250, n_trials=100, sharpe_variance=0.5 / 250,
                                skewness=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_psr_under_normal_returns_is_the_textbook_z_score():
    sr, n = 0.1, 500
    expected = 0.5 * (1 + math.erf((sr * math.sqrt(n - 1) / math.sqrt(1 + sr * sr / 2)) / math.sqrt(2)))
    assert probabilistic_sharpe_ratio(sr, 0.0, n) == pytest.approx(expected, rel=1e-12)
    assert probabilistic_sharpe_ratio(0.0, 0.0, n) == pytest.approx(0.5)
    # Negative skew and fat tails widen the Sharpe's sampling distribution: lower PSR.
    assert probabilistic_sharpe_ratio(sr, 0.0, n, skewness=-2, kurtosis=12) < probabilistic_sharpe_ratio(sr, 0.0, n)


def test_one_trial_is_not_deflated():
    assert expected_max_sharpe(1, 0.3) == 0.0
    assert deflated_sharpe_ratio(0.05, 300, n_trials=1, sharpe_variance=0.3) == pytest.approx(
        probabilistic_sharpe_ratio(0.05, 0.0, 300))
    # More trials, higher bar.
    assert expected_max_sharpe(1000, 0.01) > expected_max_sharpe(10, 0.01) > 0


def test_sharpe_moments_of_a_constant_series_are_neutral():
    moments = sharpe_moments(np.full(10, 0.01))
    assert (moments.sharpe, moments.skewness, moments.kurtosis) == (0.0, 0.0, 3.0)
    with pytest.raises(ValueError, match="finite 1-D"):
        sharpe_moments(np.array([0.0, np.nan]))


def test_bootstrap_finds_a_real_edge_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(5000)
    assert stationary_bootstrap_pvalue(noise + 0.1, resamples=400, mean_block=24) < 0.01
    assert stationary_bootstrap_pvalue(noise - 0.1, resamples=400, mean_block=24) > 0.99
    p_null = stationary_bootstrap_pvalue(noise - noise.mean(), resamples=400, mean_block=24)
    assert 0.3 < p_null < 0.7
    assert stationary_bootstrap_pvalue(noise, resamples=200, seed=3) == stationary_bootstrap_pvalue(
        noise, resamples=200, seed=3)


def test_significance_report_says_whether_the_best_baseline_is_beaten():
    rng = np.random.default_rng(1)
    baseline = rng.normal(0.0, 0.01, 4000)
    strong = baseline + 0.002
    report = significance_report(strong, bars_per_year=8760, best_baseline="momentum_168_ls",
                                 best_baseline_returns=baseline, trial_sharpes_annualized=[0.1, 0.5, -0.2],
                                 resamples=300)
    assert report.beats_best_baseline_95 is True and "beats the best baseline (momentum_168_ls" in report.sentence
    assert report.n_trials == 3 and report.dsr is not None and 0 <= report.dsr <= 1
    weak = significance_report(baseline, bars_per_year=8760, best_baseline="buy_and_hold",
                               best_baseline_returns=baseline + 0.001, resamples=300)
    assert weak.beats_best_baseline_95 is False and "does not beat" in weak.sentence
    assert weak.dsr is None
