"""H4 drawdown brake, H5 portfolio VaR, H6 safe margin, H7 leverage, H8 risk budget and the
regime multipliers: each against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.constants import CRISIS, HIGH_VOL, LOW_VOL, TRENDING
from himari_env.risk.drawdown_brake import DrawdownBrakeParams, drawdown_brake_factor
from himari_env.risk.leverage import LeverageParams, leverage_limit
from himari_env.risk.portfolio_var import rolling_historical_var, var_position_cap
from himari_env.risk.regime_multipliers import RegimeMultipliers, regime_multiplier
from himari_env.risk.risk_budget import RiskBudgetParams, update_risk_budget
from himari_env.risk.safe_margin import SafeMarginParams, required_margin, safe_margin_cap


# ----------------------------------------------------------------------------- H4
@pytest.mark.parametrize(
    ("drawdown", "factor"),
    [(0.0, 1.0), (0.0299, 1.0), (0.03, 0.70), (0.0599, 0.70), (0.06, 0.40), (0.0999, 0.40),
     (0.10, 0.05), (0.5, 0.05), (1.0, 0.05)],
)
def test_drawdown_brake_cuts_30_60_95_percent_at_3_6_10_percent(drawdown, factor):
    assert drawdown_brake_factor(drawdown, DrawdownBrakeParams()) == pytest.approx(factor)


def test_drawdown_brake_rejects_unordered_thresholds_and_bad_drawdowns():
    with pytest.raises(ValueError, match="thresholds"):
        DrawdownBrakeParams(thresholds=(0.06, 0.03, 0.10))
    with pytest.raises(ValueError, match="drawdown"):
        drawdown_brake_factor(-0.1, DrawdownBrakeParams())


# ----------------------------------------------------------------------------- H5
def test_rolling_var_is_the_linear_interpolated_1_percent_quantile_of_the_last_100_bars():
    returns = np.concatenate(([0.0], np.linspace(-0.05, 0.049, 100)))  # 100 returns, step 0.001
    var_long = rolling_historical_var(returns, window=100, level=0.99, side="long")
    # sorted window: -0.050, -0.049, ...; quantile 0.01 at position 0.99 -> -0.050 + 0.99 * 0.001
    assert var_long[100] == pytest.approx(0.05 - 0.99 * 0.001)
    var_short = rolling_historical_var(returns, window=100, level=0.99, side="short")
    # quantile 0.99 at position 98.01 -> 0.048 + 0.01 * 0.001
    assert var_short[100] == pytest.approx(0.048 + 0.01 * 0.001)


def test_rolling_var_equals_the_streaming_computation_and_is_causal():
    rng = np.random.default_rng(5)
    returns = np.concatenate(([0.0], rng.standard_t(3, 300) * 0.01))
    precomputed = rolling_historical_var(returns, window=100, min_periods=20)
    for t in range(returns.size):
        history = returns[max(1, t - 99) : t + 1]
        if history.size < 20:
            assert math.isnan(precomputed[t])
        else:
            assert precomputed[t] == pytest.approx(max(0.0, -np.quantile(history, 0.01)), abs=1e-15)
    perturbed = returns.copy()
    perturbed[150:] *= 10
    np.testing.assert_array_equal(precomputed[:150], rolling_historical_var(perturbed, window=100)[:150])


def test_var_cap_keeps_position_var_within_budget_and_ignores_no_loss_windows():
    assert var_position_cap(0.02, 0.03) == pytest.approx(1.5)
    assert var_position_cap(0.0, 0.03) == math.inf
    assert var_position_cap(math.nan, 0.03) == math.inf
    gains_only = np.concatenate(([0.0], np.full(50, 0.01)))
    assert np.all(rolling_historical_var(gains_only, window=20, min_periods=5)[5:] == 0.0)


# ----------------------------------------------------------------------------- H6
def test_safe_margin_cap_fits_two_sigma_move_plus_cost_in_the_buffer():
    params = SafeMarginParams()  # k 2, cost 0.2 %, horizon 1, buffer 3 %
    # sigma 0.5 % per bar: required margin per unit = 2 * 0.005 + 0.002 = 0.012 -> cap 2.5
    assert safe_margin_cap(0.005, params) == pytest.approx(0.03 / 0.012)
    assert required_margin(2.5, 0.005, params) == pytest.approx(0.03)
    assert safe_margin_cap(math.nan, params) == pytest.approx(0.03 / 0.002)  # cost only
    longer = SafeMarginParams(horizon_bars=4)
    assert safe_margin_cap(0.005, longer) == pytest.approx(0.03 / (2 * 0.005 * 2 + 0.002))


# ----------------------------------------------------------------------------- H7
def test_leverage_controller_is_identity_up_to_ten_percent_then_decays():
    params = LeverageParams()
    assert leverage_limit(0.05, params, 3.0) == 0.05
    assert leverage_limit(0.10, params, 3.0) == 0.10
    # 0.1 + 2.9 * (1 - exp(-0.9 / 2.9))
    assert leverage_limit(1.0, params, 3.0) == pytest.approx(0.1 + 2.9 * (1 - math.exp(-0.9 / 2.9)))
    assert leverage_limit(1.0, params, 3.0) == pytest.approx(0.874, abs=5e-4)
    # env max_leverage 1: L = 1, 0.1 + 0.9 * (1 - exp(-(2 - 0.1) / 0.9))
    assert leverage_limit(2.0, params, 1.0) == pytest.approx(0.1 + 0.9 * (1 - math.exp(-1.9 / 0.9)))


@settings(max_examples=60, deadline=None)
@given(size=st.floats(0, 1e6), env_max=st.floats(0.01, 100))
def test_leverage_never_exceeds_three_nor_the_env_bound(size, env_max):
    allowed = leverage_limit(size, LeverageParams(), env_max)
    assert 0.0 <= allowed <= min(3.0, env_max)
    assert allowed <= size


def test_leverage_is_increasing():
    sizes = np.linspace(0, 10, 200)
    allowed = [leverage_limit(float(s), LeverageParams(), 3.0) for s in sizes]
    assert np.all(np.diff(allowed) >= 0)


# ----------------------------------------------------------------------------- H8
def test_risk_budget_moves_one_percent_with_the_sign_of_period_pnl_within_bounds():
    params = RiskBudgetParams()
    assert update_risk_budget(1.0, 0.02, params) == pytest.approx(1.01)
    assert update_risk_budget(1.0, -0.02, params) == pytest.approx(0.99)
    assert update_risk_budget(1.0, 0.0, params) == 1.0
    budget = 1.0
    for _ in range(200):
        budget = update_risk_budget(budget, -0.01, params)
    assert budget == 0.5
    for _ in range(500):
        budget = update_risk_budget(budget, 0.01, params)
    assert budget == 1.5


# -------------------------------------------------------------------- regime multipliers
def test_regime_multipliers_follow_the_design_log():
    multipliers = RegimeMultipliers()
    assert [regime_multiplier(r, multipliers) for r in (LOW_VOL, TRENDING, HIGH_VOL, CRISIS)] == [1.0, 1.2, 0.6, 0.2]
    with pytest.raises(ValueError, match="regime id -1"):
        regime_multiplier(-1, multipliers)
