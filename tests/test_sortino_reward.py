"""The Sortino reward shaper: hand-computed terms, a correct downside deviation, and the
vectorized form equal to the streaming one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari_env.metrics import downside_deviation
from wrappers.sortino import (
    DownsideState,
    SortinoConfig,
    SortinoShaper,
    downside_penalty,
    sortino_reward,
    sortino_rewards,
)

PNL = [0.01, -0.02, -0.005, 0.0]
TURNOVER = [1.0, 0.0, 2.0, 1.0]
DRAWDOWN_AFTER = [0.0, 0.02, 0.025, 0.01]
INCREASE = [0.0, 0.02, 0.005, 0.0]
# By hand with trade_cost 0.0005, drawdown_weight 0.25, reward_scale 200, downside_weight 1:
# step 0: 200*0.01 - 200*0.0005*1                                          =  1.9
# step 1: no downside history (DD = 0) -> full loss: -4 - 0 - 200*0.25*0.02 - 4   = -9.0
# step 2: DD = sqrt(0.02^2 / 2) = 0.0141421; penalty 0.005 * 0.005 / DD = 0.00176777
#         -1 - 0.2 - 0.25 - 200 * 0.00176777                               = -1.8035534
# step 3: -0.1
EXPECTED = [1.9, -9.0, -1.0 - 0.2 - 0.25 - 200 * 0.005 * 0.005 / math.sqrt(0.0002), -0.1]


def test_terms_match_the_hand_computation():
    config = SortinoConfig()
    state = DownsideState()
    rewards = []
    for pnl, turnover, increase in zip(PNL, TURNOVER, INCREASE, strict=True):
        reward, terms, state = sortino_reward(pnl, turnover, increase, state, config)
        assert reward == pytest.approx(sum(terms.values()))
        rewards.append(reward)
    assert rewards == pytest.approx(EXPECTED)
    assert rewards[2] == pytest.approx(-1.8035534, abs=1e-7)
    assert state == DownsideState(4, pytest.approx(0.02**2 + 0.005**2))


def test_downside_deviation_counts_every_period_with_target_zero():
    returns = np.array([0.01, -0.02, -0.005, 0.0, 0.03])
    state = DownsideState()
    for value in returns:
        state = state.update(float(value))
    equity = np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    # sqrt((0.02^2 + 0.005^2) / 5), not the std of the two losses
    assert state.deviation == pytest.approx(math.sqrt((0.02**2 + 0.005**2) / 5))
    assert state.deviation == pytest.approx(downside_deviation(equity))
    assert state.deviation != pytest.approx(np.std([-0.02, -0.005]))


def test_the_penalty_is_downside_only_and_bounded_by_the_loss():
    assert downside_penalty(0.05, 0.01) == 0.0
    assert downside_penalty(0.0, 0.01) == 0.0
    assert downside_penalty(-0.03, 0.01) == pytest.approx(0.03)  # larger than DD: full loss
    assert downside_penalty(-0.005, 0.01) == pytest.approx(0.005 * 0.5)  # quadratic below DD


def test_vectorized_rewards_equal_the_streaming_ones():
    rng = np.random.default_rng(2)
    pnl = rng.standard_t(3, 500) * 0.01
    pnl[rng.random(500) < 0.2] = 0.0
    turnover = rng.choice([0.0, 1.0, 2.0], 500)
    increase = np.maximum(rng.normal(0, 0.002, 500), 0.0)
    config = SortinoConfig(trade_cost=0.001, drawdown_weight=0.5, reward_scale=100, downside_weight=0.7)
    rewards, terms = sortino_rewards(pnl, turnover, increase, config)
    state = DownsideState()
    for k in range(500):
        reward, step_terms, state = sortino_reward(float(pnl[k]), float(turnover[k]), float(increase[k]), state, config)
        assert rewards[k] == pytest.approx(reward, rel=1e-12, abs=1e-12)
        for name, value in step_terms.items():
            assert terms[name][k] == pytest.approx(value, rel=1e-12, abs=1e-12)


def test_shaper_turns_drawdowns_into_increases_and_resets_per_episode():
    shaper = SortinoShaper(trade_cost=0.0005, drawdown_weight=0.25, reward_scale=200.0)
    for _ in range(2):
        shaper.reset()
        rewards = [
            sum(shaper.step(net_return=pnl, turnover=turnover, drawdown=drawdown).values())
            for pnl, turnover, drawdown in zip(PNL, TURNOVER, DRAWDOWN_AFTER, strict=True)
        ]
        assert rewards == pytest.approx(EXPECTED)


def test_bad_inputs_and_parameters_are_rejected_by_name():
    with pytest.raises(ValueError, match="unknown sortino config key"):
        SortinoShaper(trade_costs=0.1)
    with pytest.raises(ValueError, match=r"sortino\.reward_scale"):
        SortinoConfig(reward_scale=0.0)
    with pytest.raises(ValueError, match="drawdown_increase"):
        sortino_reward(0.01, 0.0, -0.1, DownsideState(), SortinoConfig())
    with pytest.raises(ValueError, match=r"pnl\[1\]"):
        sortino_rewards([0.0, math.nan], [0.0, 0.0], [0.0, 0.0], SortinoConfig())


def test_config_round_trips_through_json(tmp_path):
    config = SortinoConfig(trade_cost=0.001, drawdown_weight=0.5, reward_scale=100.0)
    assert SortinoConfig.load(config.save(tmp_path / "sortino.json")) == config
