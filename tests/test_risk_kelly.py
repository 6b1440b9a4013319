"""H2 Bayesian Kelly: hand-computed estimates and the "not informative" state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari_env.risk.kelly import KellyParams, estimate_kelly, kelly_fraction, outcome_totals


def test_design_log_calibration_gives_an_edge_of_essentially_zero():
    # win rate 47.8 %, payoff 1.10: 0.478 - 0.522 / 1.10 = 0.478 - 0.474545 = +0.003455,
    # quarter-Kelly 0.086 % (the log prints 0.0 %): tiny, and (below) not credible.
    assert kelly_fraction(0.478, 1.10) == pytest.approx(0.0034545454, abs=1e-9)
    assert 0.25 * kelly_fraction(0.478, 1.10) < 0.001


def test_posterior_win_rate_payoff_and_edge_probability_by_hand():
    # Prior Beta(1, 1); 3 wins, 1 loss -> Beta(4, 2), mean 4/6.
    # Payoff: mean win 0.02 / mean loss 0.01 = 2 with m = 1 pair, shrunk toward 1 with
    # weight 1: (1 * 2 + 1 * 1) / 2 = 1.5. Breakeven p = 1 / (1 + 1.5) = 0.4.
    # P(p > 0.4) under Beta(4, 2) = P(Binomial(5, 0.4) >= 4) complement rule:
    # I_0.4(4, 2) = P(Bin(5, 0.4) >= 4) = 5 * 0.4^4 * 0.6 + 0.4^5 = 0.08704.
    params = KellyParams(payoff_prior_weight=1.0, min_trades=4)
    estimate = estimate_kelly(3, 1, 0.06, 0.01, params)
    assert estimate.win_rate == pytest.approx(4 / 6)
    assert estimate.payoff_ratio == pytest.approx(1.5)
    assert estimate.full_kelly == pytest.approx(4 / 6 - (2 / 6) / 1.5)
    assert estimate.edge_probability == pytest.approx(1 - 0.08704, abs=1e-12)
    assert estimate.mean_loss == pytest.approx(0.01)


def test_too_few_trades_is_not_informative_and_does_not_cap():
    estimate = estimate_kelly(10, 2, 0.2, 0.02, KellyParams(min_trades=50))
    assert not estimate.informative
    assert estimate.position_cap == math.inf
    assert "too few trades" in estimate.reason


@pytest.mark.parametrize("wins", [478, 470])
def test_an_edge_straddling_zero_does_not_zero_the_position(wins):
    # The log's 47.8 % / 1.10 (f* slightly > 0) and 47.0 % (f* < 0): the posterior does not
    # make a positive edge credible either way, so Kelly reports itself not informative.
    losses = 1000 - wins
    estimate = estimate_kelly(wins, losses, wins * 0.011, losses * 0.010, KellyParams())
    assert estimate.edge_probability < 0.9
    assert not estimate.informative
    assert estimate.position_cap == math.inf
    assert "not credible" in estimate.reason


def test_strict_mode_zeroes_a_non_positive_edge():
    estimate = estimate_kelly(470, 530, 470 * 0.011, 530 * 0.010, KellyParams(mode="strict"))
    assert estimate.full_kelly < 0
    assert estimate.informative
    assert estimate.position_cap == 0.0


def test_credible_edge_caps_at_quarter_kelly_over_mean_loss():
    wins, losses, mean_win, mean_loss = 560, 440, 0.01, 0.01
    params = KellyParams()
    estimate = estimate_kelly(wins, losses, wins * mean_win, losses * mean_loss, params)
    p = (1 + wins) / (2 + wins + losses)
    assert estimate.payoff_ratio == pytest.approx(1.0)  # raw 1.0 shrunk toward 1.0
    assert estimate.informative
    assert estimate.edge_probability > 0.99
    assert estimate.position_cap == pytest.approx(0.25 * (p - (1 - p) / 1.0) / mean_loss)


def test_off_mode_never_caps():
    estimate = estimate_kelly(900, 100, 9.0, 1.0, KellyParams(mode="off"))
    assert not estimate.informative and estimate.reason == "off"


def test_outcome_totals_ignore_exact_zeros():
    assert outcome_totals(np.array([0.01, -0.02, 0.0, 0.03])) == (2, 1, pytest.approx(0.04), pytest.approx(0.02))


def test_bad_parameters_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"kelly\.mode"):
        KellyParams(mode="always")
    with pytest.raises(ValueError, match=r"kelly\.fraction"):
        KellyParams(fraction=0.0)
