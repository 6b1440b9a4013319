"""RSSRiskAction on the real core env: HOLD is flat, sizes are causal, bounded and finite,
episode state resets, and the calibration simulator reproduces the wrapper exactly."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from himari_env.env import HimariBTCEnv
from himari_env.market import market_from_prices
from himari_env.risk.backtest import run_backtest
from himari_env.risk.calibration import calibrate_risk
from himari_env.risk.composer import METHOD_ORDER
from himari_env.risk.config import RiskConfig
from wrappers.risk_action import RSSRiskAction

N_BARS = 2_500
TRAIN = slice(0, 2_000)
TEST = slice(2_000, N_BARS)
CONTEXT = 5


def make_market(returns: np.ndarray, regime_ids: np.ndarray | None = None, splits=None):
    close = 100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + returns)))
    return market_from_prices(close, regime_ids=regime_ids, splits=splits or {"train": TRAIN, "test": TEST})


@pytest.fixture(scope="module")
def returns() -> np.ndarray:
    return np.random.default_rng(21).standard_t(4, N_BARS - 1) * 0.006


@pytest.fixture(scope="module")
def regimes() -> np.ndarray:
    return np.random.default_rng(22).integers(0, 4, N_BARS).astype(np.int8)


@pytest.fixture(scope="module")
def config(returns) -> RiskConfig:
    return calibrate_risk(returns[:1_999])


def make_env(market, config=None, *, max_leverage=3.0, split="test", fee_rate=0.001) -> RSSRiskAction:
    core = HimariBTCEnv(market, split=split, context=CONTEXT, fee_rate=fee_rate,
                        max_leverage=max_leverage, episode_length=None)
    return RSSRiskAction(core, config)


def run_actions(env: RSSRiskAction, actions) -> list[dict]:
    env.reset(seed=0)
    infos = []
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        if terminated or truncated:
            break
    return infos


def test_hold_sends_exactly_zero_and_reports_it(returns, regimes, config):
    env = make_env(make_market(returns, regimes), config)
    infos = run_actions(env, [1, 0, 2, 0])
    assert infos[1]["position"] == 0.0 and infos[3]["position"] == 0.0
    assert infos[1]["risk_binding"] == "hold"
    assert all(pair == (0.0, 0.0) for pair in infos[1]["risk"].values())
    assert infos[0]["position"] > 0 > infos[2]["position"]
    assert [info["action"] for info in infos] == [1, 0, 2, 0]


def test_info_reports_every_method_before_and_after_and_the_binding_one(returns, regimes, config):
    env = make_env(make_market(returns, regimes), config)
    info = run_actions(env, [1])[0]
    assert list(info["risk"]) == list(METHOD_ORDER)
    sizes = [info["risk"][name] for name in METHOD_ORDER]
    assert sizes[0][0] == 1.0
    for (_, after), (before, _) in itertools.pairwise(sizes):
        assert after == before  # each method starts from the previous one's output
    assert info["position"] == pytest.approx(sizes[-1][1], rel=1e-6)  # float32 through the Box
    assert info["risk_binding"] in (*METHOD_ORDER, "none")
    state = info["risk_state"]
    assert state["regime"] == int(regimes[env.unwrapped.episode_bounds[0]])
    assert state["kelly_informative"] is False and "too few trades" in state["kelly_reason"]


def test_without_a_config_it_calibrates_on_the_train_split_only(returns, regimes):
    market = make_market(returns, regimes)
    env = make_env(market)
    expected = calibrate_risk(market.returns[TRAIN], gap_before=market.gap_before[TRAIN])
    assert env.config == expected
    changed = returns.copy()
    changed[2_200:] *= 3.0  # test-period bars only
    assert make_env(make_market(changed, regimes)).config == expected


def test_sizes_at_and_before_t_ignore_every_later_bar(returns, regimes, config):
    actions = np.random.default_rng(3).integers(0, 3, 300).tolist()
    base = run_actions(make_env(make_market(returns, regimes), config), actions)
    cut_bar = base[150]["bar_index"]  # bar observed after step 150; decisions up to it are fixed
    changed = returns.copy()
    changed[cut_bar:] = np.random.default_rng(4).normal(0.0, 0.03, changed.size - cut_bar)
    other = run_actions(make_env(make_market(changed, regimes), config), actions)
    for first, second in zip(base[:151], other[:151], strict=True):
        assert first["risk"] == second["risk"]
        assert first["position"] == second["position"]


def test_reset_restores_the_risk_budget_and_kelly_state(returns, regimes, config):
    env = make_env(make_market(returns, regimes), config)
    first = run_actions(env, [1] * 120)
    assert env.engine.risk_budget != 1.0 or env.engine.kelly.n_wins > 0
    again = run_actions(env, [1] * 120)
    assert [i["risk"] for i in first] == [i["risk"] for i in again]


def test_the_calibration_simulator_reproduces_the_wrapper_exactly(returns, regimes, config):
    market = make_market(returns, regimes)
    env = make_env(market, config)
    start, stop = env.unwrapped.episode_bounds
    directions = np.random.default_rng(9).choice([-1, 0, 1], N_BARS).astype(np.int8)
    action_of = {0: 0, 1: 1, -1: 2}
    infos = run_actions(env, [action_of[int(d)] for d in directions[start:stop]])
    simulated = run_backtest(market.returns, directions, regimes, start=start, stop=stop,
                             config=config, fee_rate=0.001, max_leverage=3.0)
    np.testing.assert_array_equal(simulated.positions, [i["position"] for i in infos])
    np.testing.assert_array_equal(simulated.equity[1:], [i["equity"] for i in infos])
    assert list(simulated.bindings) == [i["risk_binding"] for i in infos]


def test_invalid_actions_are_rejected(returns, regimes, config):
    env = make_env(make_market(returns, regimes), config)
    env.reset(seed=0)
    for bad in (3, -1, 1.5, "long"):
        with pytest.raises(ValueError, match="HOLD, 1 LONG or 2 SHORT"):
            env.step(bad)


ordinary = st.floats(-0.05, 0.05)
extreme = st.sampled_from([0.0, 0.0, 0.0, -0.5, -0.9, -0.99, 1.0, 5.0])
return_lists = st.one_of(
    st.lists(st.one_of(ordinary, extreme), min_size=60, max_size=60),
    st.builds(lambda v: [v] * 60, st.one_of(st.just(0.0), ordinary)),  # constant series
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=return_lists,
    actions=st.lists(st.integers(0, 2), min_size=60, max_size=60),
    max_leverage=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    regime=st.integers(0, 3),
)
def test_positions_stay_finite_and_within_min_of_three_and_env_leverage(
    config, history, actions, max_leverage, regime
):
    returns = np.array(history)
    market = make_market(returns, np.full(61, regime, dtype=np.int8),
                         splits={"train": slice(0, 30), "test": slice(0, 61)})
    env = make_env(market, config, max_leverage=max_leverage)
    bound = min(3.0, max_leverage)
    for info in run_actions(env, actions):
        assert math.isfinite(info["position"])
        assert abs(info["position"]) <= np.float32(bound)
        assert all(math.isfinite(b) and math.isfinite(a) for b, a in info["risk"].values())
        assert math.isfinite(info["equity"])
