"""The core env's accounting, checked against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari_env.accounting import accounting_path, accounting_step, drawdown, drawdown_path
from himari_env.env import HimariBTCEnv
from himari_env.market import market_from_prices

PRICES = [100.0, 110.0, 99.0, 99.0, 108.9]  # returns: +10 %, -10 %, 0 %, +10 %


def make_env(prices=PRICES, **kwargs) -> HimariBTCEnv:
    kwargs.setdefault("context", 1)
    kwargs.setdefault("fee_rate", 0.0)
    return HimariBTCEnv(market_from_prices(np.array(prices)), **kwargs)


def run(env: HimariBTCEnv, positions: list[float]) -> list[dict]:
    env.reset(seed=0)
    infos = []
    for p in positions:
        _, reward, terminated, truncated, info = env.step(np.array([p], dtype=np.float32))
        info["reward"] = reward
        infos.append(info)
    return infos


def test_long_pnl_compounds_bar_by_bar():
    infos = run(make_env(), [1.0, 1.0, 1.0, 1.0])
    assert [round(i["equity"], 12) for i in infos] == [1.1, 0.99, 0.99, 1.089]


def test_short_pnl_has_the_opposite_sign():
    infos = run(make_env(), [-1.0, -1.0])
    # short over +10 %: 1 * (1 - 0.10) = 0.9; then short over -10 %: 0.9 * 1.1 = 0.99
    assert infos[0]["equity"] == pytest.approx(0.9)
    assert infos[1]["equity"] == pytest.approx(0.99)


def test_fees_are_charged_on_turnover_only():
    env = make_env(fee_rate=0.001)
    infos = run(env, [1.0, 1.0, -1.0, 0.0])
    # step 1: buy 1.0 -> fee 0.001; equity (1 - 0.001) * 1.1
    e1 = (1 - 0.001) * 1.1
    assert infos[0]["fee"] == pytest.approx(0.001)
    assert infos[0]["equity"] == pytest.approx(e1)
    # step 2: unchanged position -> no fee
    e2 = e1 * 0.9
    assert infos[1]["fee"] == 0.0
    assert infos[1]["equity"] == pytest.approx(e2)
    # step 3: long -> short is a turnover of 2
    assert infos[2]["turnover"] == pytest.approx(2.0)
    assert infos[2]["fee"] == pytest.approx(0.002 * e2)
    e3 = (e2 - 0.002 * e2) * (1 - (-1.0) * 0.0)
    assert infos[2]["equity"] == pytest.approx(e3)
    # step 4: flatten: turnover 1, then flat over +10 %: equity unchanged after the fee
    assert infos[3]["fee"] == pytest.approx(0.001 * e3)
    assert infos[3]["equity"] == pytest.approx(e3 * (1 - 0.001))


def test_leverage_scales_pnl():
    infos = run(make_env(max_leverage=2.0), [2.0])
    assert infos[0]["equity"] == pytest.approx(1.2)


def test_reward_is_the_net_log_return_of_equity():
    env = make_env(fee_rate=0.001)
    infos = run(env, [1.0, -0.5])
    assert infos[0]["reward"] == pytest.approx(math.log(infos[0]["equity"]))
    assert infos[1]["reward"] == pytest.approx(math.log(infos[1]["equity"] / infos[0]["equity"]))


def test_drawdown_tracks_the_running_peak():
    infos = run(make_env(), [1.0, 1.0, 1.0, 1.0])
    assert [round(i["drawdown"], 12) for i in infos] == [0.0, 0.1, 0.1, 0.01]


def test_flat_policy_keeps_equity_constant():
    rng = np.random.default_rng(0)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    env = make_env(prices, fee_rate=0.001)
    infos = run(env, [0.0] * (len(prices) - 1))
    assert all(i["equity"] == 1.0 and i["fee"] == 0.0 for i in infos)


def test_buy_and_hold_equals_price_ratio_minus_one_entry_fee():
    rng = np.random.default_rng(1)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    fee_rate = 0.001
    env = make_env(prices, fee_rate=fee_rate)
    infos = run(env, [1.0] * (len(prices) - 1))
    assert infos[-1]["equity"] == pytest.approx((1 - fee_rate) * prices[-1] / prices[0], rel=1e-12)
    assert sum(i["fee"] for i in infos) == pytest.approx(fee_rate)


def test_episode_equity_and_positions_are_recorded():
    env = make_env()
    run(env, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(env.episode_equity(), [1.0, 1.1, 1.1, 1.1])
    np.testing.assert_array_equal(env.episode_positions(), [1.0, 0.0, -1.0])


def test_episode_ends_at_the_last_bar_with_a_next_return():
    env = make_env()
    env.reset(seed=0)
    flags = [env.step(np.array([0.0], dtype=np.float32))[3] for _ in range(len(PRICES) - 1)]
    assert flags == [False, False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.0], dtype=np.float32))


def test_short_through_a_doubling_terminates_as_bankrupt_with_a_finite_reward():
    env = make_env([100.0, 250.0, 260.0], max_leverage=1.0)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.array([-1.0], dtype=np.float32))
    assert terminated and not truncated and info["bankrupt"]
    assert info["equity"] == 0.0 and math.isfinite(reward)


@pytest.mark.parametrize("bad", [np.array([1.5], dtype=np.float32), np.array([np.nan]), "long", np.array([])])
def test_invalid_actions_raise_clear_errors(bad):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"context": 0}, "context"), ({"fee_rate": -0.1}, "fee_rate"), ({"max_leverage": 0}, "max_leverage"),
     ({"episode_length": 100}, "episode_length"), ({"split": "nope"}, "unknown split")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env(**kwargs)


def test_the_accounting_step_is_the_hand_rule_and_the_path_iterates_it():
    # equity 2, from +0.5 to -1: turnover 1.5, fee 0.001 * 1.5 * 2 = 0.003,
    # equity (2 - 0.003) * (1 - 1 * 0.02) = 1.95706.
    turnover, fee, equity, bankrupt = accounting_step(2.0, 0.5, -1.0, 0.02, 0.001)
    assert (turnover, fee, bankrupt) == (1.5, 0.003, False)
    assert equity == pytest.approx(1.95706, rel=1e-15)
    assert accounting_step(1.0, 0.0, -1.0, 1.0, 0.0) == (1.0, 0.0, 0.0, True)  # a short through +100 %
    rng = np.random.default_rng(3)
    positions = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], 500)
    returns = rng.normal(0.0, 0.01, 500)
    path, turnovers, fees, broke = accounting_path(positions, returns, 0.001)
    equity, previous, stepped = 1.0, 0.0, [1.0]
    for position, next_return, turnover, fee in zip(positions, returns, turnovers, fees, strict=True):
        step_turnover, step_fee, equity, _ = accounting_step(equity, previous, position, next_return, 0.001)
        assert (step_turnover, step_fee) == pytest.approx((turnover, fee), rel=1e-12, abs=1e-15)
        previous = position
        stepped.append(equity)
    np.testing.assert_allclose(path, stepped, rtol=1e-12)
    assert not broke
    np.testing.assert_allclose(drawdown_path(path), [drawdown(e, p) for e, p in zip(path, np.maximum.accumulate(path), strict=True)])
