"""Performance metrics against hand-computed series."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env import metrics

# Returns +10 %, -10 %, +10 %, 0 %.
EQUITY = np.array([1.0, 1.1, 0.99, 1.089, 1.089])
POSITIONS = np.array([1.0, 1.0, -1.0, 0.0])
SQRT_YEAR = math.sqrt(8760)


def test_bar_returns_are_simple_returns_of_the_equity_curve() -> None:
    np.testing.assert_allclose(metrics.bar_returns(EQUITY), [0.1, -0.1, 0.1, 0.0], atol=1e-15)


def test_total_return_is_final_over_initial_equity() -> None:
    assert metrics.total_return(EQUITY) == pytest.approx(0.089)


def test_sharpe_uses_population_std_and_8760_bars_a_year() -> None:
    # mean 0.025; deviations 0.075, -0.125, 0.075, -0.025 -> variance 0.0275 / 4.
    expected = 0.025 / math.sqrt(0.0275 / 4) * SQRT_YEAR
    assert metrics.sharpe_ratio(EQUITY) == pytest.approx(expected, rel=1e-12)


def test_sortino_downside_deviation_averages_over_all_periods() -> None:
    # min(r, 0) = [0, -0.1, 0, 0] -> sqrt(0.01 / 4) = 0.05 (not 0.1, the losing bars only).
    assert metrics.downside_deviation(EQUITY) == pytest.approx(0.05, rel=1e-12)
    assert metrics.sortino_ratio(EQUITY) == pytest.approx(0.025 / 0.05 * SQRT_YEAR, rel=1e-12)


def test_max_drawdown_is_the_largest_fall_from_the_running_peak() -> None:
    assert metrics.max_drawdown(EQUITY) == pytest.approx(0.1)
    assert metrics.max_drawdown([1.0, 2.0, 1.0, 3.0, 2.4]) == pytest.approx(0.5)
    assert metrics.max_drawdown([1.0, 1.5, 2.0]) == 0.0


def test_calmar_is_compound_annual_return_over_max_drawdown() -> None:
    # With 4 bars a year the 4-bar pass is exactly one year: CAGR = total return = 8.9 %.
    assert metrics.annualized_return(EQUITY, bars_per_year=4) == pytest.approx(0.089)
    assert metrics.calmar_ratio(EQUITY, bars_per_year=4) == pytest.approx(0.89)
    # Two years of 10 % total growth: (1.1) ** (1 / 2) - 1.
    assert metrics.annualized_return([1.0, 1.05, 1.1], bars_per_year=1) == pytest.approx(
        math.sqrt(1.1) - 1
    )


def test_trades_turnover_and_exposure_count_from_a_flat_start() -> None:
    # 0 -> 1 (trade, 1.0), 1 -> 1, 1 -> -1 (trade, 2.0), -1 -> 0 (trade, 1.0).
    assert metrics.trade_count(POSITIONS) == 3
    assert metrics.turnover(POSITIONS) == pytest.approx(4.0)
    assert metrics.exposure(POSITIONS) == pytest.approx(0.75)
    assert metrics.trade_count(POSITIONS, initial_position=1.0) == 2


def test_hit_rate_counts_positive_returns_among_bars_in_the_market() -> None:
    # In the market on bars 0, 1, 2 with returns +0.1, -0.1, +0.1.
    assert metrics.hit_rate(EQUITY, POSITIONS) == pytest.approx(2 / 3)


def test_flat_equity_gives_documented_zeros_not_errors() -> None:
    flat = np.ones(50)
    summary = metrics.performance_summary(flat, np.zeros(49))
    assert summary["sharpe"] == 0.0
    assert summary["sortino"] == 0.0
    assert summary["calmar"] == 0.0
    assert summary["max_drawdown"] == 0.0
    assert summary["hit_rate"] == 0.0
    assert summary["trade_count"] == 0
    assert all(math.isfinite(v) for v in summary.values())


def test_constant_gain_has_no_downside_and_reports_zero_not_inf() -> None:
    equity = 1.001 ** np.arange(30)
    assert metrics.sortino_ratio(equity) == 0.0
    assert metrics.sharpe_ratio(equity) == 0.0  # std is float noise below ZERO_STD


def test_summary_is_strict_json() -> None:
    summary = metrics.performance_summary(EQUITY, POSITIONS)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["n_bars"] == 4
    assert summary["trade_count"] == 3


def test_mismatched_lengths_name_both_sizes() -> None:
    with pytest.raises(ValueError, match=r"positions has 3 values but equity describes 4 bars"):
        metrics.performance_summary(EQUITY, POSITIONS[:3])


def test_non_finite_or_non_positive_equity_is_rejected_with_its_index() -> None:
    with pytest.raises(ValueError, match=r"index 2"):
        metrics.sharpe_ratio([1.0, 1.1, float("nan"), 1.2])
    with pytest.raises(ValueError, match=r"equity\[1\] = 0.0"):
        metrics.total_return([1.0, 0.0, 1.0])


def test_a_ruined_pass_ending_at_zero_is_accepted() -> None:
    assert metrics.total_return([1.0, 0.5, 0.0]) == -1.0
    assert metrics.annualized_return([1.0, 0.5, 0.0]) == -1.0
    assert metrics.max_drawdown([1.0, 0.5, 0.0]) == 1.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=-0.2, max_value=0.2, allow_nan=False), min_size=1, max_size=60),
    st.floats(min_value=0.1, max_value=100.0),
)
def test_summary_is_finite_and_scale_free(returns: list[float], scale: float) -> None:
    equity = np.cumprod(np.concatenate([[1.0], 1.0 + np.asarray(returns)]))
    positions = np.sign(np.asarray(returns))
    summary = metrics.performance_summary(equity, positions)
    scaled = metrics.performance_summary(equity * scale, positions)
    assert all(math.isfinite(v) for v in summary.values())
    assert 0.0 <= summary["max_drawdown"] <= 1.0
    # Returns are recomputed from equity ratios (~1e-16 absolute error each); a tiny downside
    # return (say -6e-8) turns that into ~1e-9 relative error of the Sortino ratio.
    for key in ("total_return", "sharpe", "sortino", "max_drawdown", "hit_rate"):
        assert scaled[key] == pytest.approx(summary[key], rel=1e-6, abs=1e-9)


def test_calmar_of_a_two_bar_pass_with_a_tiny_dip_stays_finite() -> None:
    # Found by hypothesis: +18.75 % then -1.2e-7 annualizes to ~1e304 over a 1.2e-7 drawdown.
    equity = np.cumprod([1.0, 1.1875, 1.0 - 1.192e-07])
    summary = metrics.performance_summary(equity, np.array([1.0, -1.0]))
    assert all(math.isfinite(v) for v in summary.values())
    assert summary["calmar"] == float(np.finfo(np.float64).max)
