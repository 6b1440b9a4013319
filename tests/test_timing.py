"""The timing test: a policy's holding periods reordered (same trades, same time in each
direction) and traded through the same accounting and RSS layer; perfect timing is
significant, a persistent policy without skill is not (the p-value is calibrated), and the
replay of the decisions is the policy's own pass."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.evaluate import run_pass
from himari_env.data import synthesize_market
from himari_env.metrics import sharpe_ratio
from himari_env.pipeline import prepare_market
from himari_env.timing import (
    DEFAULT_PERMUTATIONS,
    directions_from_actions,
    reorder_runs,
    timing_permutation_test,
)
from wrappers.stack import make_himari_env

BLOCK = 24
N_BLOCKS = 40


def _block_market(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hourly returns: each 24-bar block drifts up or down (half each), plus small noise;
    the block signs."""
    rng = np.random.default_rng(seed)
    signs = rng.permutation(np.repeat([1, -1], N_BLOCKS // 2))
    drift = np.repeat(signs * 0.002, BLOCK)
    returns = np.concatenate(([0.0], drift + rng.normal(0.0, 0.001, drift.size), [0.0]))
    return returns, signs


def _test(directions: np.ndarray, returns: np.ndarray, **kwargs):
    bars = 1 + BLOCK * np.arange(N_BLOCKS)  # decision at bar t earns returns[t + 1]
    bars[0] = 0
    return timing_permutation_test(returns, np.zeros(returns.size, dtype=np.int8), decision_bars=bars,
                                   directions=directions, stop=BLOCK * N_BLOCKS, risk_config=None,
                                   fee_rate=0.001, max_leverage=1.0, **kwargs)


def test_long_exactly_in_the_up_blocks_is_significant_timing():
    returns, signs = _block_market()
    perfect = _test(np.where(signs > 0, 1, 0), returns)
    assert perfect.p_value <= 3 / (1 + DEFAULT_PERMUTATIONS)
    assert perfect.sharpe > perfect.shuffled_q95
    assert perfect.long_share == 0.5 and perfect.short_share == 0.0
    assert "its timing adds to the Sharpe at 95 %" in perfect.sentence()


def test_long_exactly_in_the_down_blocks_is_the_worst_order():
    returns, signs = _block_market()
    worst = _test(np.where(signs < 0, 1, 0), returns)
    assert worst.p_value >= 0.95
    assert worst.sharpe < worst.shuffled_q05
    assert "its timing costs" in worst.sentence()


def test_the_same_decision_everywhere_has_nothing_to_shuffle():
    returns, _ = _block_market()
    always_long = _test(np.ones(N_BLOCKS, dtype=np.int8), returns)
    assert always_long.p_value == 1.0
    assert always_long.shuffled_median == always_long.sharpe == always_long.shuffled_q95


def test_a_reordering_keeps_the_trades_and_the_time_in_each_direction_and_moves_the_stretches():
    directions = np.array([0] * 10 + [1] * 3 + [0] * 2 + [1] * 20 + [-1] * 4 + [0] * 5, dtype=np.int8)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        reordered = reorder_runs(directions, rng)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(reordered)) + 1))
        assert reordered[starts].tolist() == [0, 1, 0, 1, -1, 0]  # the same switches: the same trades
        for value in (-1, 0, 1):
            assert np.count_nonzero(reordered == value) == np.count_nonzero(directions == value)
        seen.add(reordered.tobytes())
    assert len(seen) > 5  # the long stretches (3 and 20) and the flat ones (10, 2, 5) trade places


def test_the_same_seed_gives_the_same_test():
    returns, signs = _block_market(3)
    mixed = np.where(signs > 0, 1, -1)
    mixed[:3] = 0
    a, b = _test(mixed, returns, seed=7), _test(mixed, returns, seed=7)
    assert a == b and a.seed == 7
    assert a.long_share + a.short_share == pytest.approx(1 - 3 / N_BLOCKS)


def test_a_persistent_policy_without_skill_is_significant_about_as_often_as_chance_says():
    # Hourly decisions that switch with probability 0.02, independent of a random-walk market:
    # reordering single decisions would multiply its trades and fees and call it skilled every
    # time; reordering its holding periods keeps its trades.
    n_bars, significant = 3_000, 0
    for seed in range(40):
        rng = np.random.default_rng(1_000 + seed)
        returns = np.concatenate(([0.0], rng.normal(0.0, 0.01, n_bars - 1)))
        switches = np.cumsum(rng.random(n_bars - 2) < 0.02)
        directions = np.where(switches % 2 == 0, 1, -1).astype(np.int8)
        result = timing_permutation_test(returns, np.zeros(n_bars, dtype=np.int8), decision_bars=np.arange(n_bars - 2),
                                         directions=directions, stop=n_bars - 2, risk_config=None, fee_rate=0.001,
                                         max_leverage=1.0, n_permutations=50, seed=seed)
        significant += result.p_value <= 0.05
    # 5 % expected; 6 of 40 or more has a chance of about 4 % under a calibrated test.
    assert significant <= 5


def test_a_replay_that_is_not_the_pass_is_refused():
    returns, signs = _block_market()
    with pytest.raises(ValueError, match="replay of the policy's decisions has Sharpe"):
        _test(np.where(signs > 0, 1, 0), returns, policy_sharpe=0.5)


def test_bad_inputs_are_named():
    returns, signs = _block_market()
    with pytest.raises(ValueError, match="one length"):
        _test(np.ones(3, dtype=np.int8), returns)
    with pytest.raises(ValueError, match="must be -1, 0 or 1"):
        _test(np.full(N_BLOCKS, 2, dtype=np.int8), returns)
    with pytest.raises(ValueError, match="must be integers"):
        timing_permutation_test(returns, np.zeros(returns.size, dtype=np.int8), decision_bars=[0.0, 24.5],
                                directions=[1, 0], stop=48, risk_config=None, fee_rate=0.001, max_leverage=1.0)
    with pytest.raises(ValueError, match="n_permutations"):
        _test(np.where(signs > 0, 1, 0), returns, n_permutations=0)
    with pytest.raises(ValueError, match="0 HOLD, 1 LONG, 2 SHORT"):
        directions_from_actions(np.array([0, 3]))
    assert directions_from_actions(np.array([0, 1, 2])).tolist() == [0, 1, -1]


@pytest.mark.parametrize("action_set, decision_interval", [("long_flat", 24), ("long_short", 1)])
def test_the_replay_reproduces_a_full_stack_pass_through_the_rss_layer(action_set, decision_interval):
    prepared = prepare_market(synthesize_market(n_bars=4_000, seed=2).frame, cache=False)
    env = make_himari_env(prepared, split="test", context=8, episode_length=None, action_set=action_set,
                          decision_interval=decision_interval)
    n_actions = env.action_space.n
    rng = np.random.default_rng(0)
    choices = rng.integers(0, n_actions, 10_000)
    policy = run_pass(env, lambda observation, bar: int(choices[bar % choices.size]))
    risk_config = env.get_wrapper_attr("engine").config
    steps = policy.positions.size
    start = int(policy.bar_indices[0])
    result = timing_permutation_test(prepared.market.returns, prepared.regime_ids["rules"],
                                     decision_bars=policy.bar_indices, directions=directions_from_actions(policy.actions),
                                     stop=start + steps, risk_config=risk_config, fee_rate=0.001, max_leverage=1.0,
                                     policy_sharpe=sharpe_ratio(policy.equity), n_permutations=20)
    assert result.sharpe == pytest.approx(sharpe_ratio(policy.equity), abs=1e-9)
    assert result.n_decisions == policy.actions.size
    assert 1 / 21 <= result.p_value <= 1.0
