"""One regime source per step: with ``regime_source="hmm"`` the reward's costs, the risk layer,
the observation and the evaluation's per-regime tables all use the HMM filter's regime."""

from __future__ import annotations

import numpy as np
import pytest

from wrappers.rewards import causal_return_normalizers

COSTS = (0.40, 0.0, 0.80, 1.00)  # LOW_VOL, TRENDING, HIGH_VOL, CRISIS (the default preset)


@pytest.fixture(scope="module")
def hmm_env():
    from wrappers.stack import make_himari_env

    return make_himari_env("synthetic", split="train", context=8, regime_source="hmm", risk=False,
                           episode_length=400)


def test_reward_costs_use_the_regime_the_agent_observes(hmm_env):
    from himari_env.env import core_env

    market = core_env(hmm_env).market
    _, expected_abs = causal_return_normalizers(market.returns, sigma_window=500, e_window=500)
    observation, info = hmm_env.reset(seed=3)
    differing = 0
    for step in range(300):
        t = info["bar_index"]
        observed = int(observation["regime"])
        differing += observed != int(market.regime_ids[t])
        action = 1 + step % 2  # LONG, SHORT, LONG...: a trade every step
        observation, _, terminated, truncated, info = hmm_env.step(action)
        assert info["reward_terms"]["turnover_cost"] == pytest.approx(
            -COSTS[observed] * expected_abs[t] * info["turnover"], rel=1e-9, abs=1e-12)
        if terminated or truncated:
            break
    assert differing > 0  # the HMM and the labeler disagree somewhere, so the test can fail


def test_evaluation_files_actions_under_the_observed_regime(hmm_env):
    from experiments.evaluate import run_pass
    from wrappers.stack import make_himari_env

    env = make_himari_env("synthetic", split="val", context=8, regime_source="hmm", risk=False, episode_length=None)
    observed = []

    def policy(observation, bar):
        observed.append(int(observation["regime"]))
        return 1

    record = run_pass(env, policy, seed=0)
    np.testing.assert_array_equal(record.regimes, observed)
