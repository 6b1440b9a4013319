"""The planted-signal market: its construction, its oracles, the reward's ranking of policies
on it, and (slow) that the default agent preset learns the planted edge."""

from __future__ import annotations

import numpy as np
import pytest

from himari_env.constants import TRENDING
from himari_env.data.planted import (
    PlantedSignalParams,
    filter_oracle_positions,
    state_oracle_positions,
    synthesize_planted_market,
)
from himari_env.data.synthetic import synthesize_market


def test_the_planted_drift_is_the_only_difference_from_a_driftless_synthetic_market():
    planted = synthesize_planted_market(5_000, 3)
    from himari_env.data.synthetic import SyntheticMarketParams

    base = synthesize_market(5_000, 3, params=SyntheticMarketParams(regime_drift=(0.0, 0.0, 0.0, 0.0)))
    np.testing.assert_array_equal(planted.market.regime_ids, base.regime_ids)
    gap = np.log(planted.frame.close.to_numpy()) - np.log(base.frame.close.to_numpy())
    # gap[t] = (1 - kappa) gap[t-1] + drift[t]: the planted drift, under the price's slow reversion.
    kappa = base.params.price_reversion_per_bar
    drift = planted.params.drift_per_bar * planted.planted_sign
    np.testing.assert_allclose(gap[1:] - (1 - kappa) * gap[:-1], drift[1:], atol=1e-9)
    again = synthesize_planted_market(5_000, 3)
    np.testing.assert_array_equal(again.frame.to_numpy(), planted.frame.to_numpy())


def test_sign_runs_last_about_mean_run_bars():
    planted = synthesize_planted_market(200_000, 0, PlantedSignalParams(mean_run_bars=500.0))
    switches = np.count_nonzero(np.diff(planted.planted_sign))
    assert 500 * 0.8 < 200_000 / (switches + 1) < 500 * 1.2
    assert set(np.unique(planted.planted_sign)) == {-1, 1}


def test_filter_oracle_is_causal():
    planted = synthesize_planted_market(6_000, 1)
    close = planted.frame.close.to_numpy()
    positions = filter_oracle_positions(close, planted.params)
    changed = close.copy()
    changed[4_000:] *= np.exp(np.linspace(0, 0.8, 2_000))
    np.testing.assert_array_equal(positions[:4_000], filter_oracle_positions(changed, planted.params)[:4_000])
    assert set(np.unique(positions[1:])) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(state_oracle_positions(planted.planted_sign), planted.planted_sign)


@pytest.fixture(scope="module")
def planted_stack():
    from wrappers.stack import make_himari_env

    return make_himari_env("planted", split="train", context=8, episode_length=None, risk=True)


def _pass(env, directions: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Total reward, per-step rewards and the decision regimes of one pass of a direction rule."""
    action_of = {0: 0, 1: 1, -1: 2}
    _, info = env.reset(seed=0)
    rewards, regimes = [], []
    while True:
        bar = info["bar_index"]
        regimes.append(info["regime"])
        _, reward, terminated, truncated, info = env.step(action_of[int(directions[bar])])
        rewards.append(reward)
        if terminated or truncated:
            break
    return float(np.sum(rewards)), np.asarray(rewards), np.asarray(regimes)


def test_the_default_reward_ranks_the_oracle_above_flat_and_above_trading_only_in_trending(planted_stack):
    from himari_env.env import core_env

    market = core_env(planted_stack).market
    planted = synthesize_planted_market(market.close.size, 0)
    oracle = filter_oracle_positions(market.close, planted.params).astype(np.int64)
    total_oracle, _, _ = _pass(planted_stack, oracle)
    total_flat, flat_rewards, _ = _pass(planted_stack, np.zeros_like(oracle))
    total_trending_only, _, _ = _pass(planted_stack, np.where(market.regime_ids == TRENDING, oracle, 0))
    assert total_flat == 0.0 and not flat_rewards.any()
    assert total_oracle > total_flat and total_oracle > total_trending_only
    # HOLD earns exactly 0, so for a policy with an edge in a regime it is not optimal there:
    # the state oracle (an edge everywhere) earns a positive total reward in every regime.
    _, rewards, regimes = _pass(planted_stack, planted.planted_sign.astype(np.int64))
    for regime in range(4):
        assert rewards[regimes == regime].sum() > 0.0, f"regime {regime}"


#: The planted-signal bar (issue 9): the default preset within 100k cpu-small steps reaches at
#: least this share of the oracle's after-fee test Sharpe (the oracle through the same risk
#: layer and fees as the agent, with the agent's action set: ``oracle_lf`` for "long_flat").
ORACLE_SHARE_REQUIRED = 0.70


@pytest.mark.slow
def test_the_default_preset_learns_the_planted_edge(tmp_path):
    import dataclasses
    import json

    from agents.config import load_config
    from experiments.evaluate import evaluate_run
    from experiments.train import train

    config = load_config("experiments/configs/cpu-small.yaml")
    assert config.train.total_timesteps <= 100_000
    config = dataclasses.replace(config, env=dataclasses.replace(config.env, data="planted"),
                                 train=dataclasses.replace(config.train, verbose=0, checkpoint_freq=0))
    run_dir = tmp_path / "planted"
    train(config, run_dir=run_dir)
    report = evaluate_run(run_dir, split="test", write=False)
    test = report["splits"]["test"]
    oracle_name = "oracle_lf" if config.env.action_set == "long_flat" else "oracle"
    agent, oracle = test["agent"]["sharpe"], test["baselines"][f"{oracle_name}+rss"]["sharpe"]
    long_short_oracle = test["baselines"]["oracle+rss"]["sharpe"]
    ratio = agent / oracle
    (tmp_path / "planted_result.json").write_text(json.dumps({"agent": agent, "oracle": oracle, "ratio": ratio}))
    print(f"planted test: agent Sharpe {agent:.2f}, {oracle_name}+rss {oracle:.2f}, ratio {ratio:.2f} "
          f"(long/short oracle+rss {long_short_oracle:.2f})")
    assert oracle > 1.0
    assert ratio >= ORACLE_SHARE_REQUIRED, f"agent {agent:.2f} vs oracle {oracle:.2f}"
