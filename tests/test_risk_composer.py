"""The pure composition of the eight methods: hand-computed sizes, binding, HOLD, bounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.constants import LOW_VOL, TRENDING
from himari_env.risk.composer import METHOD_ORDER, RiskState, compose_position
from himari_env.risk.config import RiskConfig
from himari_env.risk.evt import EVTParams, TailFit
from himari_env.risk.vol_target import VolTargetParams

LONG_TAIL = TailFit(threshold=0.02, xi=0.25, sigma=0.01, n_exceedances=500, n_observations=10_000)
SHORT_TAIL = TailFit(threshold=0.02, xi=0.0, sigma=0.01, n_exceedances=500, n_observations=10_000)
CONFIG = RiskConfig(
    evt=EVTParams(long_tail=LONG_TAIL, short_tail=SHORT_TAIL),
    vol_target=VolTargetParams(target_vol=0.30),
)
# ES99 of a unit long, by hand (see test_risk_evt): VaR = 0.02 + 0.04 * (0.2 ** -0.25 - 1)
LONG_VAR = 0.02 + 0.04 * (0.2**-0.25 - 1.0)
LONG_ES = (LONG_VAR + 0.01 - 0.25 * 0.02) / 0.75
# xi = 0: VaR = u + sigma ln(zeta / p) = 0.02 + 0.01 ln 5, ES = VaR + sigma
SHORT_ES = 0.02 + 0.01 * math.log(5.0) + 0.01


def decay(x: float, cap: float = 3.0, knee: float = 0.1) -> float:
    return knee + (cap - knee) * (1.0 - math.exp(-(x - knee) / (cap - knee)))


def test_vol_targeting_binds_in_an_ordinary_trending_hour():
    state = RiskState(vol_annualized=0.60, bar_volatility=0.005, var_long=0.02, var_short=0.02,
                      regime_id=TRENDING, drawdown=0.04, risk_budget=1.0)
    sizing = compose_position(1, state, CONFIG, max_leverage=3.0)
    # 1 -> 0.5 (0.30/0.60) -> 0.6 (x1.2) -> 0.6 (budget) -> 0.42 (brake 30 %) -> caps
    # 2.5 (margin), inf (Kelly), 0.05/ES = 0.837 (EVT), 1.5 (VaR) do not bind -> decay(0.42)
    expected = (1.0, 0.5, 0.6, 0.6, 0.42, 0.42, 0.42, 0.42, 0.42, decay(0.42))
    assert sizing.sizes == pytest.approx(expected)
    assert sizing.position == pytest.approx(decay(0.42))
    assert sizing.binding == "h3_vol_target"
    assert list(sizing.trace()) == list(METHOD_ORDER)
    assert sizing.trace()["h4_drawdown_brake"] == pytest.approx((0.6, 0.42))


def test_evt_cap_binds_when_calm_volatility_asks_for_a_large_size():
    state = RiskState(vol_annualized=0.05, bar_volatility=0.001, var_long=0.01, var_short=0.01,
                      regime_id=TRENDING, drawdown=0.0, risk_budget=1.0)
    sizing = compose_position(1, state, CONFIG, max_leverage=3.0)
    evt_cap = 0.05 / LONG_ES
    assert sizing.sizes[1] == 3.0  # 0.30 / 0.05 = 6, capped at max_scale 3
    assert sizing.sizes[2] == pytest.approx(3.6)
    assert sizing.sizes[7] == pytest.approx(evt_cap)
    assert sizing.binding == "h1_evt"
    assert sizing.position == pytest.approx(decay(evt_cap))


def test_short_uses_the_short_tail_and_the_short_var():
    state = RiskState(vol_annualized=0.05, bar_volatility=0.001, var_long=0.001, var_short=0.04,
                      regime_id=LOW_VOL, drawdown=0.0, risk_budget=1.0)
    sizing = compose_position(-1, state, CONFIG, max_leverage=3.0)
    # 3.0 -> caps: margin 0.03 / 0.004 = 7.5, EVT 0.05 / SHORT_ES, VaR 0.03 / 0.04 = 0.75
    assert sizing.sizes[7] == pytest.approx(min(3.0, 0.05 / SHORT_ES))
    assert sizing.sizes[8] == pytest.approx(min(3.0, 0.05 / SHORT_ES, 0.75))
    assert sizing.position < 0


def test_informative_kelly_caps_and_is_reported_binding():
    state = RiskState(0.60, 0.005, 0.02, 0.02, LOW_VOL, 0.0, 1.0, kelly_cap=0.1)
    sizing = compose_position(1, state, CONFIG, max_leverage=3.0)
    assert sizing.sizes[6] == pytest.approx(0.1)
    assert sizing.binding == "h2_kelly"


def test_hold_is_exactly_zero_whatever_the_state():
    state = RiskState(math.nan, math.nan, math.nan, math.nan, 3, 0.5, 0.5)
    sizing = compose_position(0, state, CONFIG)
    assert sizing.position == 0.0 and math.copysign(1.0, sizing.position) == 1.0
    assert sizing.binding == "hold"
    assert set(sizing.sizes) == {0.0}


def test_invalid_inputs_raise_by_name():
    state = RiskState(0.6, 0.005, 0.02, 0.02, 7, 0.0, 1.0)
    with pytest.raises(ValueError, match="regime id 7"):
        compose_position(1, state, CONFIG)
    with pytest.raises(ValueError, match="direction"):
        compose_position(2, state._replace(regime_id=0), CONFIG)
    with pytest.raises(ValueError, match="not calibrated"):
        compose_position(1, state._replace(regime_id=0), RiskConfig())


maybe_nan = st.one_of(st.just(math.nan), st.floats(0.0, 50.0))


@settings(max_examples=200, deadline=None)
@given(
    direction=st.sampled_from([-1, 1]),
    vol=maybe_nan,
    sigma=maybe_nan,
    var_long=maybe_nan,
    var_short=maybe_nan,
    regime=st.integers(0, 3),
    drawdown=st.floats(0.0, 1.0),
    budget=st.floats(0.5, 1.5),
    kelly_cap=st.one_of(st.just(math.inf), st.floats(0.0, 100.0)),
    env_max=st.floats(0.05, 10.0),
)
def test_position_is_finite_signed_and_within_min_of_three_and_env_leverage(
    direction, vol, sigma, var_long, var_short, regime, drawdown, budget, kelly_cap, env_max
):
    state = RiskState(vol, sigma, var_long, var_short, regime, drawdown, budget, kelly_cap)
    sizing = compose_position(direction, state, CONFIG, max_leverage=env_max)
    assert math.isfinite(sizing.position)
    assert abs(sizing.position) <= min(3.0, env_max)
    assert sizing.position == 0.0 or math.copysign(1.0, sizing.position) == direction
    assert all(math.isfinite(s) and s >= 0.0 for s in sizing.sizes)
    assert sizing.binding in (*METHOD_ORDER, "none")
