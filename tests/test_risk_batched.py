"""BatchedRiskLayer (compiled) equals ReferenceBatchedRiskLayer (one RiskEngine per env) bit for
bit: positions, rebalance flags, per-method sizes, binding methods and risk_state info, over
random configs (every RiskConfig field varied within its valid range, calibrated on synthetic
returns), random directions, decision bars, regimes, held positions, equity paths and resets;
and it reproduces the single-env stack (``make_himari_env``) env by env."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from himari_env.data import synthesize_market
from himari_env.env import core_env
from himari_env.pipeline import prepare_market
from himari_env.risk.batched import (
    BINDING_CODE_HOLD,
    BINDING_CODE_NONE,
    BatchedRiskLayer,
    ReferenceBatchedRiskLayer,
    binding_name,
)
from himari_env.risk.calibration import calibrate_risk
from himari_env.risk.composer import METHOD_ORDER
from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.evt import EVTParams, EVTTailWarning
from himari_env.risk.kelly import KELLY_MODES, KellyParams
from himari_env.risk.leverage import LeverageParams
from himari_env.risk.portfolio_var import PortfolioVaRParams
from himari_env.risk.regime_multipliers import RegimeMultipliers
from himari_env.risk.risk_budget import RiskBudgetParams
from himari_env.risk.safe_margin import SafeMarginParams
from himari_env.risk.vol_target import VolTargetParams
from wrappers.stack import make_himari_env

N_BARS = 1_500


def _returns(seed: int, scale: float) -> np.ndarray:
    values = np.random.default_rng(seed).standard_t(4, N_BARS) * scale
    values[0] = 0.0  # MarketData.returns[0] is the placeholder 0
    return values


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def risk_configs(draw: st.DrawFn) -> tuple[RiskConfig, np.ndarray]:
    """A calibrated RiskConfig with every field drawn within its valid range, and its market."""
    returns = _returns(draw(st.integers(0, 2**16)), draw(_floats(0.002, 0.03)))
    n_levels = draw(st.integers(1, 4))
    thresholds = sorted(draw(st.lists(_floats(0.002, 0.4), min_size=n_levels, max_size=n_levels, unique=True)))
    reductions = sorted(draw(st.lists(_floats(0.0, 1.0), min_size=n_levels, max_size=n_levels)))
    lower = draw(_floats(0.2, 1.0))
    upper = draw(_floats(lower, 2.0))
    var_window = draw(st.integers(2, 150))
    config = RiskConfig(
        evt=EVTParams(es_budget=draw(_floats(0.005, 0.2)), level=draw(st.sampled_from([0.99, 0.995]))),
        kelly=KellyParams(
            mode=draw(st.sampled_from(KELLY_MODES)),
            fraction=draw(_floats(0.05, 1.0)),
            prior_alpha=draw(_floats(0.5, 5.0)),
            prior_beta=draw(_floats(0.5, 5.0)),
            payoff_prior_ratio=draw(_floats(0.5, 2.0)),
            payoff_prior_weight=draw(_floats(0.0, 40.0)),
            min_trades=draw(st.integers(1, 30)),
            min_edge_probability=draw(_floats(0.5, 0.99)),
        ),
        vol_target=VolTargetParams(window=draw(st.integers(2, 200)), target_fraction=draw(_floats(0.1, 3.0)),
                                   max_scale=draw(_floats(0.3, 5.0))),
        drawdown_brake=DrawdownBrakeParams(tuple(thresholds), tuple(reductions),
                                           draw(st.one_of(st.none(), st.integers(1, 60)))),
        portfolio_var=PortfolioVaRParams(level=draw(_floats(0.9, 0.995)), window=var_window,
                                         min_periods=draw(st.integers(1, var_window)),
                                         var_budget=draw(_floats(0.003, 0.1))),
        safe_margin=SafeMarginParams(k_sigma=draw(_floats(0.5, 4.0)), execution_cost=draw(_floats(1e-4, 0.01)),
                                     horizon_bars=draw(st.integers(1, 6)), window=draw(st.integers(2, 60)),
                                     margin_buffer=draw(_floats(0.005, 0.1))),
        leverage=LeverageParams(max_leverage=draw(_floats(0.3, 4.0)), decay_start=draw(_floats(0.0, 1.5))),
        risk_budget=RiskBudgetParams(initial=draw(_floats(lower, upper)), step=draw(_floats(0.0, 0.2)),
                                     lower=lower, upper=upper, period_bars=draw(st.integers(1, 30))),
        regime_multipliers=RegimeMultipliers(*(draw(_floats(0.0, 2.0)) for _ in range(4))),
        rebalance_band=draw(_floats(0.0, 0.9)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EVTTailWarning)
        return calibrate_risk(returns[1:], config=config), returns


def assert_same_batch(fast, reference) -> None:
    assert fast.positions.tobytes() == reference.positions.tobytes()
    assert fast.sizes.tobytes() == reference.sizes.tobytes()
    assert np.array_equal(fast.rebalanced, reference.rebalanced)
    assert np.array_equal(fast.binding, reference.binding)


def drive(config: RiskConfig, returns: np.ndarray, *, n_envs: int, n_steps: int, seed: int,
          max_leverage: float) -> set[int]:
    """Step both layers through one random trajectory; assert equality each step; return the
    binding codes seen."""
    rng = np.random.default_rng(seed)
    fast = BatchedRiskLayer(config, returns, max_leverage=max_leverage, n_envs=n_envs)
    reference = ReferenceBatchedRiskLayer(config, returns, max_leverage=max_leverage, n_envs=n_envs)
    start_equity = rng.uniform(0.5, 2.0, n_envs)
    fast.reset(np.arange(n_envs), start_equity)
    reference.reset(np.arange(n_envs), start_equity)
    equity = start_equity.copy()
    held = np.zeros(n_envs)
    skill = rng.uniform(0.3, 0.9)  # how often a held position has the sign of the next return
    seen: set[int] = set()
    for _ in range(n_steps):
        directions = rng.choice([-1, 0, 1], n_envs, p=[0.35, 0.2, 0.45])
        bars = rng.integers(0, N_BARS - 1, n_envs)
        regimes = rng.integers(0, 4, n_envs)
        a = fast.size(directions, bars, regimes, held)
        b = reference.size(directions, bars, regimes, held)
        assert_same_batch(a, b)
        expected_infos = [reference.risk_state_info(i) for i in range(n_envs)]
        for i in range(n_envs):
            assert fast.risk_state_info(i) == expected_infos[i]
        assert fast.risk_state_infos() == expected_infos
        seen.update(a.binding.tolist())
        # what the core env would hold over the next bar, with some skill at its sign
        new_bars = bars + 1
        sign = np.where(rng.random(n_envs) < skill, np.sign(returns[new_bars]), -np.sign(returns[new_bars]))
        position_held = np.where(rng.random(n_envs) < 0.7, np.abs(a.positions) * sign, a.positions)
        position_held[rng.random(n_envs) < 0.1] = 0.0
        equity = equity * np.exp(rng.normal(0.0, 0.03, n_envs))
        equity[rng.random(n_envs) < 0.02] *= 0.7  # a crash: the drawdown brake's deeper levels
        fast.record_step(new_bars, position_held, equity)
        reference.record_step(new_bars, position_held, equity)
        # the band sees a held position equal to the new size, a drift of it, or a fresh one
        choice = rng.random(n_envs)
        held = np.where(choice < 0.5, a.positions * rng.uniform(0.8, 1.2, n_envs),
                        np.where(choice < 0.8, a.positions, rng.uniform(-1.0, 1.0, n_envs)))
        resets = np.flatnonzero(rng.random(n_envs) < 0.03)
        if resets.size:
            values = rng.uniform(0.5, 2.0, resets.size)
            fast.reset(resets, values)
            reference.reset(resets, values)
            equity[resets] = values
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=risk_configs(), n_envs=st.integers(1, 6), n_steps=st.integers(1, 80), seed=st.integers(0, 2**16),
       max_leverage=_floats(0.2, 3.0))
def test_fast_layer_equals_the_reference_bit_for_bit(case, n_envs, n_steps, seed, max_leverage) -> None:
    config, returns = case
    drive(config, returns, n_envs=n_envs, n_steps=n_steps, seed=seed, max_leverage=max_leverage)


def _coverage_configs() -> list[RiskConfig]:
    base = RiskConfig(kelly=KellyParams(min_trades=5, min_edge_probability=0.6, payoff_prior_weight=2.0),
                      drawdown_brake=DrawdownBrakeParams((0.02, 0.05, 0.1), (0.3, 0.6, 0.95), 30),
                      vol_target=VolTargetParams(window=48), portfolio_var=PortfolioVaRParams(window=50))
    return [
        base,
        base.replace(kelly=dataclasses.replace(base.kelly, mode="strict")),
        base.replace(kelly=dataclasses.replace(base.kelly, mode="off"),
                     drawdown_brake=dataclasses.replace(base.drawdown_brake, peak_window_bars=None)),
        base.replace(regime_multipliers=RegimeMultipliers(1.0, 1.5, 0.5, 0.1), rebalance_band=0.0),
    ]


def _loose(config: RiskConfig, *, budget: float) -> RiskConfig:
    """No cap binds, the vol target is flat at 1 and the leverage decay starts above 3x."""
    return config.replace(
        evt=dataclasses.replace(config.evt, es_budget=10.0),
        portfolio_var=dataclasses.replace(config.portfolio_var, var_budget=10.0),
        safe_margin=dataclasses.replace(config.safe_margin, margin_buffer=10.0),
        vol_target=dataclasses.replace(config.vol_target, target_vol=10.0, max_scale=1.0),
        leverage=LeverageParams(max_leverage=3.0, decay_start=5.0),
        risk_budget=RiskBudgetParams(initial=budget, lower=budget, upper=1.5),
        drawdown_brake=DrawdownBrakeParams((0.5,), (0.5,), 30),
    )


def test_every_method_binds_and_every_mode_is_exercised() -> None:
    """Coverage of the equality check: across a few configs each of the nine methods is the
    binding one somewhere, as are "none" and "hold"."""
    seen: set[int] = set()
    returns = _returns(3, 0.01)
    for k, config in enumerate(_coverage_configs()):
        calibrated = calibrate_risk(returns[1:], config=config)
        for variant in (calibrated,
                        calibrated.replace(evt=dataclasses.replace(calibrated.evt, es_budget=0.003)),
                        calibrated.replace(portfolio_var=dataclasses.replace(calibrated.portfolio_var,
                                                                              var_budget=0.002)),
                        calibrated.replace(safe_margin=dataclasses.replace(calibrated.safe_margin,
                                                                            margin_buffer=0.004)),
                        calibrated.replace(vol_target=dataclasses.replace(calibrated.vol_target,
                                                                           target_vol=1e-3)),
                        _loose(calibrated, budget=1.0),  # nothing cuts: "none"
                        _loose(calibrated, budget=0.5)):  # only the risk budget cuts
            for max_leverage in (0.05, 1.0, 3.0):
                seen |= drive(variant, returns, n_envs=8, n_steps=150, seed=k, max_leverage=max_leverage)
    expected = set(range(len(METHOD_ORDER))) | {BINDING_CODE_NONE, BINDING_CODE_HOLD}
    assert seen == expected, sorted(binding_name(code) for code in expected - seen)


def test_kelly_cap_binds_in_confident_and_strict_mode() -> None:
    returns = _returns(5, 0.01)
    for mode in ("confident_cap", "strict"):
        config = calibrate_risk(returns[1:], config=RiskConfig(
            kelly=KellyParams(mode=mode, min_trades=3, min_edge_probability=0.55, fraction=0.05),
            rebalance_band=0.0))
        fast = BatchedRiskLayer(config, returns, max_leverage=3.0, n_envs=2)
        reference = ReferenceBatchedRiskLayer(config, returns, max_leverage=3.0, n_envs=2)
        informative = False
        for bar in range(300, 400):
            right = 1.0 if bar % 5 else -1.0  # right four times in five: a credible edge
            held = right * np.sign(returns[bar + 1]) * np.ones(2)
            a = fast.size([1, -1], [bar, bar], [0, 1], [0.0, 0.0])
            b = reference.size([1, -1], [bar, bar], [0, 1], [0.0, 0.0])
            assert_same_batch(a, b)
            assert fast.risk_state_info(0) == reference.risk_state_info(0)
            informative |= fast.risk_state_info(0)["kelly_informative"]
            fast.record_step([bar + 1] * 2, held, [1.0, 1.0])
            reference.record_step([bar + 1] * 2, held, [1.0, 1.0])
        assert informative


def test_bad_inputs_name_the_env() -> None:
    returns = _returns(1, 0.01)
    layer = BatchedRiskLayer(calibrate_risk(returns[1:]), returns, max_leverage=1.0, n_envs=3)
    with pytest.raises(ValueError, match="direction of env 1"):
        layer.size([1, 2, 0], [10, 10, 10], [0, 0, 0], [0.0] * 3)
    with pytest.raises(ValueError, match="regime id of env 2"):
        layer.size([1, 1, -1], [10, 10, 10], [0, 0, 7], [0.0] * 3)
    with pytest.raises(ValueError, match="bar_index of env 0"):
        layer.size([1, 1, 1], [N_BARS, 10, 10], [0, 0, 0], [0.0] * 3)
    with pytest.raises(ValueError, match="new_bar_index of env 2"):
        layer.record_step([1, 2, -1], [0.0] * 3, [1.0] * 3)
    with pytest.raises(ValueError, match=r"directions must have shape \(3,\)"):
        layer.size([1, 1], [10, 10, 10], [0, 0, 0], [0.0] * 3)
    with pytest.raises(ValueError, match="n_envs"):
        BatchedRiskLayer(calibrate_risk(returns[1:]), returns, max_leverage=1.0, n_envs=0)


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=3_000, seed=11).frame, cache=False)


def test_batched_layer_reproduces_the_single_env_stack(prepared) -> None:
    """N single-env stacks (make_himari_env, RSS layer on) with their own starts and random
    actions: the batched layer, fed each env's decision bar, regime, held position and the
    step's outcome, sends the same positions and reports the same risk info."""
    n_envs, n_steps = 4, 300
    stacks = [make_himari_env(prepared, context=16, episode_length=n_steps) for _ in range(n_envs)]
    for i, stack in enumerate(stacks):
        stack.reset(seed=100 + i)
    cores = [core_env(stack) for stack in stacks]
    config = stacks[0].config
    layer = BatchedRiskLayer(config, prepared.market.returns, max_leverage=cores[0].max_leverage, n_envs=n_envs)
    layer.reset(np.arange(n_envs), [core.equity for core in cores])
    regimes = [stack._regime for stack in stacks]
    rng = np.random.default_rng(0)
    for _ in range(n_steps):
        actions = rng.integers(0, 3, n_envs)
        directions = np.array([0, 1, -1])[actions]
        batch = layer.size(directions, [core.bar_index for core in cores], regimes, [core.position for core in cores])
        for i, (stack, core) in enumerate(zip(stacks, cores, strict=True)):
            observation, _, _, _, info = stack.step(int(actions[i]))
            assert core.position == batch.positions[i]
            assert info["risk_rebalanced"] == bool(batch.rebalanced[i])
            assert info["risk_binding"] == binding_name(int(batch.binding[i]))
            assert tuple(v for pair in info["risk"].values() for v in pair)[::2] + (batch.sizes[i, -1],) \
                == tuple(batch.sizes[i].tolist())
            assert info["risk_state"] == layer.risk_state_info(i)
            regimes[i] = int(observation["regime"])
        layer.record_step([core.bar_index for core in cores], [core.position for core in cores],
                          [core.equity for core in cores])


def test_the_kernels_betainc_is_scipys_bit_for_bit() -> None:
    """The compiled kernels call scipy's own double-precision betainc; it equals
    scipy.special.betainc exactly, including where Kelly evaluates it (x near the posterior mean)."""
    from scipy import special

    from himari_env.risk.batched_kernels import betainc_into

    rng = np.random.default_rng(0)
    n = 200_000
    a = np.concatenate([rng.uniform(0.1, 30.0, n // 2), rng.integers(1, 20_000, n // 2) + rng.uniform(0.1, 5.0, n // 2)])
    b = np.concatenate([rng.uniform(0.1, 30.0, n // 2), rng.integers(1, 20_000, n // 2) + rng.uniform(0.1, 5.0, n // 2)])
    x = np.clip(np.where(rng.random(n) < 0.5, a / (a + b) + rng.normal(0.0, 0.01, n), rng.random(n)), 1e-12, 1 - 1e-12)
    out = np.empty(n)
    betainc_into(a, b, x, out)
    assert out.tobytes() == special.betainc(a, b, x).tobytes()
