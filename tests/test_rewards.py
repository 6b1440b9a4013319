"""Reward presets: the design log's effective adaptive-cost table, term bookkeeping, causality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari_env.constants import CRISIS, HIGH_VOL, LOW_VOL, TRENDING
from himari_env.env import HimariBTCEnv
from himari_env.market import market_from_prices
from wrappers.actions import DiscreteDirection
from wrappers.rewards import (
    AdaptiveCostConfig,
    RegimeReward,
    RewardConfig,
    causal_return_normalizers,
)


def test_effective_adaptive_cost_table_matches_the_design_log():
    config = AdaptiveCostConfig()
    table = {regime: (config.trade_cost_fraction(regime), config.hold_cost_fraction(regime))
             for regime in (TRENDING, LOW_VOL, HIGH_VOL, CRISIS)}
    expected = {TRENDING: (0.0, 1.0), LOW_VOL: (0.4, 0.0), HIGH_VOL: (0.8, 0.0), CRISIS: (1.0, 0.0)}
    for regime, (trade, hold) in expected.items():
        assert table[regime] == pytest.approx((trade, hold))


def market(n=800, seed=0, regimes=None):
    rng = np.random.default_rng(seed)
    prices = 100 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.006))
    if regimes is None:
        regimes = rng.integers(0, 4, n).astype(np.int8)
    return market_from_prices(prices, regime_ids=regimes)


def rollout(env, actions, seed=0):
    env.reset(seed=seed)
    out = []
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        out.append((reward, info))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("regime", [LOW_VOL, TRENDING, HIGH_VOL, CRISIS])
def test_adaptive_log_terms_equal_the_session_18_formula_with_E_units(regime):
    data = market(regimes=np.full(800, regime, dtype=np.int8))
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.0), RewardConfig(preset="adaptive-log")))
    sigma, expected_abs = causal_return_normalizers(data.returns, sigma_window=500, e_window=500)
    actions = [0, 1, 2, 1, 0, 2, 2, 0] * 20
    cfg = AdaptiveCostConfig()
    for step, (reward, info) in enumerate(rollout(env, actions)):
        t = info["bar_index"] - 1
        r = data.returns[t + 1]
        direction = (0.0, 1.0, -1.0)[actions[step]]
        terms = info["reward_terms"]
        assert terms["norm_pnl"] == pytest.approx(direction * r / sigma[t])
        expected_trade = cfg.trade_cost_fraction(regime) * expected_abs[t] if direction else 0.0
        expected_hold = cfg.hold_cost_fraction(regime) * expected_abs[t] if not direction else 0.0
        assert -terms["trade_cost"] == pytest.approx(expected_trade)
        assert -terms["hold_cost"] == pytest.approx(expected_hold)
        assert -terms["wrong_direction"] == pytest.approx(0.5 * expected_abs[t] if direction * r < 0 else 0.0)
        assert reward == pytest.approx(sum(terms.values()))


@pytest.mark.parametrize("preset", ["adaptive", "adaptive-log", "simple", "opportunity", "pnl"])
def test_hold_is_never_rewarded_positively(preset):
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(market(), context=1, fee_rate=0.001),
                                         RewardConfig(preset=preset)))
    rewards = [reward for reward, _ in rollout(env, [0] * 700)]
    assert max(rewards) <= 0.0


def test_adaptive_log_fee_term_is_the_real_fee_in_normalized_units():
    data = market()
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.001), RewardConfig(preset="adaptive-log")))
    sigma, _ = causal_return_normalizers(data.returns, sigma_window=500, e_window=500)
    (_, first), (_, second) = rollout(env, [1, 1])
    assert first["reward_terms"]["fee"] == pytest.approx(-0.001 / sigma[0])
    assert second["reward_terms"]["fee"] == 0.0


def test_simple_and_opportunity_presets_follow_sessions_4_and_6():
    data = market(regimes=np.full(800, TRENDING, dtype=np.int8))
    simple = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.0), RewardConfig(preset="simple")))
    (reward, info), = rollout(simple, [1])
    assert reward == pytest.approx(100 * data.returns[1] - 0.03)
    opportunity = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.0),
                                                 RewardConfig(preset="opportunity")))
    (reward, info), = rollout(opportunity, [0])
    assert reward == pytest.approx(-50 * abs(data.returns[1]))


def test_pnl_preset_is_the_base_reward():
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(market(), context=1, fee_rate=0.001), RewardConfig(preset="pnl")))
    for reward, info in rollout(env, [1, 2, 0, 1]):
        assert reward == info["base_reward"]


def test_normalizers_are_causal_and_finite():
    rng = np.random.default_rng(3)
    returns = np.concatenate(([0.0], rng.normal(0, 0.01, 2000)))
    sigma, expected_abs = causal_return_normalizers(returns, sigma_window=100, e_window=100)
    changed = returns.copy()
    changed[1500:] *= 7.0
    sigma2, expected_abs2 = causal_return_normalizers(changed, sigma_window=100, e_window=100)
    np.testing.assert_array_equal(sigma[:1500], sigma2[:1500])
    np.testing.assert_array_equal(expected_abs[:1500], expected_abs2[:1500])
    assert np.isfinite(sigma).all() and np.isfinite(expected_abs).all()
    # E of Gaussian returns normalized by their std is about sqrt(2/pi) = 0.80
    assert expected_abs[-1] == pytest.approx(math.sqrt(2 / math.pi), abs=0.12)


def test_flat_prices_give_finite_rewards():
    prices = np.full(600, 100.0)
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(market_from_prices(prices), context=1)))
    rewards = [reward for reward, _ in rollout(env, [1, 2, 0] * 100)]
    assert np.isfinite(rewards).all()


@pytest.mark.parametrize("kwargs", [{"preset": "nope"}, {"sigma_window": 1}])
def test_bad_reward_config_is_named(kwargs):
    with pytest.raises(ValueError):
        RewardConfig(**kwargs)


def test_reward_config_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match="trade_costt"):
        RewardConfig.from_dict({"adaptive": {"trade_costt": 0.1}})


@pytest.mark.parametrize("regime", [LOW_VOL, TRENDING, HIGH_VOL, CRISIS])
def test_adaptive_is_net_log_return_in_sigma_units_minus_regime_cost_per_unit_turnover(regime):
    data = market(regimes=np.full(800, regime, dtype=np.int8))
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.001)))
    sigma, expected_abs = causal_return_normalizers(data.returns, sigma_window=500, e_window=500)
    cost = {LOW_VOL: 0.40, TRENDING: 0.0, HIGH_VOL: 0.80, CRISIS: 1.00}[regime]
    actions = [0, 1, 1, 2, 2, 0, 1, 0] * 20
    previous = 0.0
    for step, (reward, info) in enumerate(rollout(env, actions)):
        t = info["bar_index"] - 1
        position = (0.0, 1.0, -1.0)[actions[step]]
        turnover = abs(position - previous)
        net_log_return = math.log((1 - 0.001 * turnover) * (1 + position * data.returns[t + 1]))
        terms = info["reward_terms"]
        assert terms["norm_pnl"] == pytest.approx(net_log_return / sigma[t], rel=1e-9, abs=1e-12)
        assert -terms["turnover_cost"] == pytest.approx(cost * expected_abs[t] * turnover)  # unit positions
        assert reward == pytest.approx(sum(terms.values()))
        previous = position


def test_adaptive_does_not_charge_holding_a_position_as_a_trade():
    data = market(regimes=np.full(800, CRISIS, dtype=np.int8))
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.001)))
    steps = rollout(env, [1, 1, 1, 2, 2])
    costs = [info["reward_terms"]["turnover_cost"] for _, info in steps]
    fees = [info["fee"] for _, info in steps]
    assert costs[0] < 0 and costs[1] == 0.0 and costs[2] == 0.0 and costs[3] < 0 and costs[4] == 0.0
    assert fees[1] == fees[2] == fees[4] == 0.0
    # A flip long -> short is two units of turnover: twice the cost of an entry.
    _, expected_abs = causal_return_normalizers(data.returns, sigma_window=500, e_window=500)
    assert costs[3] == pytest.approx(-2 * 1.00 * expected_abs[steps[3][1]["bar_index"] - 1])


def test_reward_costs_follow_the_regime_array_the_agent_sees():
    data = market(regimes=np.full(800, LOW_VOL, dtype=np.int8))
    observed = np.full(800, CRISIS, dtype=np.int64)
    env = DiscreteDirection(RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.0), regime_ids=observed))
    (_, info), = rollout(env, [1])
    _, expected_abs = causal_return_normalizers(data.returns, sigma_window=500, e_window=500)
    assert info["reward_terms"]["turnover_cost"] == pytest.approx(-1.00 * expected_abs[info["bar_index"] - 1])
    with pytest.raises(ValueError, match="one regime per bar"):
        RegimeReward(HimariBTCEnv(data, context=1), regime_ids=observed[:10])


def test_turnover_costs_reject_negative_values_by_name():
    with pytest.raises(ValueError, match="crisis"):
        RewardConfig.from_dict({"turnover_costs": {"crisis": -1.0}})


def test_resizing_pays_the_regime_cost_in_proportion_to_the_size_changed():
    from gymnasium import spaces

    data = market(regimes=np.full(800, CRISIS, dtype=np.int8))
    env = RegimeReward(HimariBTCEnv(data, context=1, fee_rate=0.001))
    assert isinstance(env.action_space, spaces.Box)
    env.reset(seed=0)
    steps = [env.step(np.array([size], dtype=np.float32)) for size in (0.5, 0.2, 0.2, -0.3, 0.0)]
    costs = [info["reward_terms"]["turnover_cost"] for *_, info in steps]
    _, expected_abs = causal_return_normalizers(data.returns, sigma_window=500, e_window=500)
    for (*_, info), cost in zip(steps, costs):
        t = info["bar_index"] - 1
        assert cost == pytest.approx(-1.00 * expected_abs[t] * info["turnover"], rel=1e-6, abs=1e-12)
    assert costs[2] == 0.0  # holding 0.2: no change, no cost
    assert steps[3][-1]["turnover"] == pytest.approx(0.5, rel=1e-6)  # 0.2 -> -0.3
