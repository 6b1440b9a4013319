"""H1 EVT/GPD: the fit recovers a known GPD; POT VaR/ES match hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from himari_env.risk.evt import (
    EVTFitError,
    EVTParams,
    EVTTailWarning,
    TailFit,
    empirical_es,
    evt_position_cap,
    finite_es_tail,
    fit_gpd,
    fit_tail,
    tail_es,
    tail_var,
)


def test_gpd_fit_recovers_known_shape_and_scale():
    xi_true, sigma_true, n = 0.25, 0.01, 20_000
    samples = stats.genpareto.rvs(c=xi_true, scale=sigma_true, size=n, random_state=np.random.default_rng(7))
    xi, sigma = fit_gpd(samples)
    # MLE standard errors (Smith 1985): se(xi) = (1 + xi) / sqrt(n) ~ 0.009,
    # se(sigma) / sigma = sqrt(2 (1 + xi) / n) ~ 0.011; allow about 3.5 standard errors.
    assert xi == pytest.approx(xi_true, abs=3.5 * (1 + xi_true) / math.sqrt(n))
    assert sigma == pytest.approx(sigma_true, rel=3.5 * math.sqrt(2 * (1 + xi_true) / n))


def test_pot_fit_on_returns_uses_the_95th_percentile_of_losses_and_all_bars_for_zeta():
    rng = np.random.default_rng(3)
    returns = rng.standard_t(4, size=10_000) * 0.005
    fit = fit_tail(returns, side="long")
    losses = -returns[returns < 0]
    assert fit.threshold == pytest.approx(np.quantile(losses, 0.95))
    assert fit.n_exceedances == int(np.sum(losses > fit.threshold))
    assert fit.n_observations == 10_000
    assert fit.exceedance_probability == pytest.approx(fit.n_exceedances / 10_000)
    short = fit_tail(returns, side="short")
    gains = returns[returns > 0]
    assert short.threshold == pytest.approx(np.quantile(gains, 0.95))


def test_pot_var_and_es_match_the_hand_computed_formulas():
    # u = 2 %, xi = 0.25, sigma = 1 %, zeta = 500 / 10000 = 0.05, level 0.99:
    # VaR = 0.02 + 0.01 / 0.25 * ((0.01 / 0.05) ** -0.25 - 1) = 0.02 + 0.04 * (1.495349 - 1)
    # ES  = VaR / 0.75 + (0.01 - 0.25 * 0.02) / 0.75
    fit = TailFit(threshold=0.02, xi=0.25, sigma=0.01, n_exceedances=500, n_observations=10_000)
    var = 0.02 + 0.04 * (0.2 ** -0.25 - 1.0)
    assert var == pytest.approx(0.0398139, abs=1e-7)
    assert tail_var(fit, 0.99) == pytest.approx(var, rel=1e-12)
    assert tail_es(fit, 0.99) == pytest.approx(var / 0.75 + 0.005 / 0.75, rel=1e-12)


def test_pot_var_uses_the_exponential_limit_when_xi_is_zero():
    fit = TailFit(threshold=0.02, xi=0.0, sigma=0.01, n_exceedances=500, n_observations=10_000)
    assert tail_var(fit, 0.99) == pytest.approx(0.02 + 0.01 * math.log(0.05 / 0.01), rel=1e-12)
    near = TailFit(threshold=0.02, xi=1e-6, sigma=0.01, n_exceedances=500, n_observations=10_000)
    assert tail_var(near, 0.99) == pytest.approx(tail_var(fit, 0.99), rel=1e-5)


def test_expected_shortfall_is_refused_for_infinite_mean_tails():
    fit = TailFit(threshold=0.02, xi=1.2, sigma=0.01, n_exceedances=500, n_observations=10_000)
    with pytest.raises(EVTFitError, match=r"xi=1\.2"):
        tail_es(fit, 0.99)


def test_a_level_inside_the_threshold_is_refused():
    fit = TailFit(threshold=0.02, xi=0.2, sigma=0.01, n_exceedances=50, n_observations=10_000)
    with pytest.raises(EVTFitError, match="not beyond the threshold"):
        tail_var(fit, 0.99)  # 1 - 0.99 = 0.01 >= zeta = 0.005


def test_position_cap_keeps_the_positions_expected_shortfall_within_budget():
    assert evt_position_cap(0.04, 0.05) == pytest.approx(1.25)
    assert 1.25 * 0.04 == pytest.approx(0.05)
    assert evt_position_cap(0.0, 0.05) == math.inf


def test_too_few_exceedances_is_a_clear_error():
    returns = np.array([-0.01, 0.02, -0.03, 0.01] * 10)
    with pytest.raises(EVTFitError, match="need >= 30"):
        fit_tail(returns)


def test_non_finite_returns_are_rejected_with_their_index():
    returns = np.array([0.01, -0.02, np.nan, 0.0])
    with pytest.raises(EVTFitError, match=r"returns\[2\]"):
        fit_tail(returns)


def test_evt_params_pick_the_tail_of_the_direction():
    long_tail = TailFit(threshold=0.02, xi=0.25, sigma=0.01, n_exceedances=500, n_observations=10_000)
    short_tail = TailFit(threshold=0.01, xi=0.1, sigma=0.005, n_exceedances=500, n_observations=10_000)
    params = EVTParams(long_tail=long_tail, short_tail=short_tail)
    assert params.unit_es(1) == pytest.approx(tail_es(long_tail, 0.99))
    assert params.unit_es(-1) == pytest.approx(tail_es(short_tail, 0.99))
    with pytest.raises(ValueError, match="es_budget"):
        EVTParams(es_budget=-0.1)


def heavy_tailed_returns(seed: int = 0, n: int = 3_000) -> np.ndarray:
    """A coin with extreme pumps: Student-t(0.7) moves, losses bounded by the price floor."""
    moves = np.random.default_rng(seed).standard_t(0.7, n) * 0.002
    with np.errstate(over="ignore"):
        returns = np.where(moves < 0, np.expm1(np.maximum(moves, -50.0)), moves)
    return np.maximum(returns, -0.95)


def test_empirical_es_is_the_mean_loss_beyond_the_empirical_var():
    returns = np.array([-0.10, -0.05, 0.0, 0.01, 0.02, -0.20, 0.03, 0.04, 0.05, 0.06])
    losses = -returns
    var = np.quantile(losses, 0.8)
    assert empirical_es(returns, side="long", level=0.8) == pytest.approx(losses[losses >= var].mean())
    assert empirical_es(returns, side="short", level=0.8) == pytest.approx(
        returns[returns >= np.quantile(returns, 0.8)].mean())


def test_a_tail_too_heavy_for_a_finite_es_falls_back_to_the_empirical_es_with_a_warning():
    returns = heavy_tailed_returns()
    short = fit_tail(returns, side="short")
    assert short.xi >= 1.0  # the fault: tail_es(short) raised "expected shortfall is infinite"
    with pytest.raises(EVTFitError, match="infinite"):
        tail_es(short, 0.99)
    with pytest.warns(EVTTailWarning, match=r"xi=.* >= 1 .*empirical ES99"):
        patched = finite_es_tail(short, returns, side="short", level=0.99)
    assert tail_es(patched, 0.99) == empirical_es(returns, side="short", level=0.99)
    with pytest.raises(EVTFitError, match="infinite"):
        tail_es(patched, 0.95)  # the fallback holds for the level it was computed at only
    light = fit_tail(returns, side="long")
    assert light.xi < 1.0 and finite_es_tail(light, returns, side="long", level=0.99) is light


def test_the_risk_layer_runs_on_a_market_with_extreme_moves():
    from himari_env.env import HimariBTCEnv
    from himari_env.market import market_from_prices
    from himari_env.risk.calibration import calibrate_risk
    from himari_env.risk.config import RiskConfig
    from wrappers.risk_action import RSSRiskAction

    returns = heavy_tailed_returns()
    close = 100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + returns)))
    market = market_from_prices(close, splits={"train": slice(0, 2_000), "test": slice(2_000, close.size)})
    with pytest.warns(EVTTailWarning):
        env = RSSRiskAction(HimariBTCEnv(market, split="test", context=5, episode_length=None), None)
    env.reset(seed=0)
    for action in [1, 2, 0, 2, 1] * 20:
        _, _, terminated, truncated, info = env.step(action)
        assert math.isfinite(info["position"]) and math.isfinite(info["equity"])
        if terminated or truncated:
            break
    # The fallback survives the JSON round trip of the config.
    with pytest.warns(EVTTailWarning):
        config = calibrate_risk(market.returns[1:2_000])
    assert RiskConfig.from_json(config.to_json()) == config
