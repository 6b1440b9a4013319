"""The single-env stack's fast paths give today's results exactly: the Kelly cap without
``betainc`` where it cannot matter, the per-bar BarComposer, the observation the core builds
for the observation wrapper, and ``info_level="training"`` (same observations, rewards and
terminations as ``"full"``, info without the risk layer's dicts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from himari_env.data import synthesize_market
from himari_env.env import core_env
from himari_env.pipeline import prepare_market
from himari_env.risk.bar_composer import BarComposer
from himari_env.risk.calibration import calibrate_risk
from himari_env.risk.composer import RiskState, compose_position
from himari_env.risk.config import RiskConfig
from himari_env.risk.engine import RiskEngine
from himari_env.risk.kelly import KELLY_MODES, KellyParams, estimate_kelly, kelly_position_cap
from himari_env.risk.portfolio_var import var_position_cap
from himari_env.risk.safe_margin import safe_margin_cap
from himari_env.risk.vol_target import vol_target_scale
from tests.test_risk_batched import risk_configs
from wrappers.observations import RegimeFeatureObservation
from wrappers.risk_action import RSSRiskAction
from wrappers.stack import make_himari_env

RISK_INFO_KEYS = ("risk", "risk_binding", "risk_rebalanced", "risk_state")


@st.composite
def kelly_params(draw: st.DrawFn) -> KellyParams:
    return KellyParams(
        mode=draw(st.sampled_from(KELLY_MODES)),
        fraction=draw(st.floats(0.01, 1.0)),
        prior_alpha=draw(st.floats(0.1, 10.0)),
        prior_beta=draw(st.floats(0.1, 10.0)),
        payoff_prior_ratio=draw(st.floats(0.2, 5.0)),
        payoff_prior_weight=draw(st.floats(0.0, 50.0)),
        min_trades=draw(st.integers(1, 200)),
        min_edge_probability=draw(st.floats(0.5, 0.999)),
    )


@settings(max_examples=400, deadline=None)
@given(params=kelly_params(), n_wins=st.integers(0, 500), n_losses=st.integers(0, 500),
       mean_win=st.floats(1e-5, 0.05), mean_loss=st.floats(1e-5, 0.05))
def test_kelly_cap_shortcut_equals_the_full_estimate(params, n_wins, n_losses, mean_win, mean_loss) -> None:
    total_win = n_wins * mean_win
    total_loss = n_losses * mean_loss
    expected = estimate_kelly(n_wins, n_losses, total_win, total_loss, params).position_cap
    got = kelly_position_cap(n_wins, n_losses, total_win, total_loss, params)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=risk_configs(), seed=st.integers(0, 2**16), eager=st.booleans())
def test_engine_kelly_is_lazy_but_the_same(case, seed, eager) -> None:
    """After any sequence of steps the engine's cap and (lazily or eagerly computed) estimate
    are estimate_kelly of its outcome totals."""
    config, returns = case
    engine = RiskEngine(config, returns, max_leverage=2.0)
    engine.eager_kelly = eager
    rng = np.random.default_rng(seed)
    engine.reset(1.0)
    wins = losses = 0
    total_win = total_loss = 0.0
    for bar in rng.integers(1, returns.size, 200).tolist():
        held = float(rng.choice([-1.0, 0.0, 0.5]))
        engine.record_step(bar, held, float(rng.uniform(0.5, 1.5)))
        outcome = returns[bar] * np.sign(held)
        if held and outcome > 0:
            wins, total_win = wins + 1, total_win + float(outcome)
        elif held and outcome < 0:
            losses, total_loss = losses + 1, total_loss - float(outcome)
        expected = estimate_kelly(wins, losses, total_win, total_loss, config.kelly)
        assert engine.kelly_cap == expected.position_cap
        if rng.random() < 0.3:
            assert engine.kelly == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=risk_configs(), seed=st.integers(0, 2**16), max_leverage=st.floats(0.2, 3.0))
def test_bar_composer_equals_compose_position(case, seed, max_leverage) -> None:
    config, returns = case
    engine = RiskEngine(config, returns, max_leverage=max_leverage)
    composer = BarComposer(engine)
    # Every per-bar value equals the scalar function's.
    assert composer.scale == [vol_target_scale(v, config.vol_target.target_vol, config.vol_target.max_scale)
                              for v in engine.vol_annualized.tolist()]
    assert composer.margin_cap == [safe_margin_cap(s, config.safe_margin) for s in engine.bar_volatility.tolist()]
    assert composer.var_cap_long == [var_position_cap(v, config.portfolio_var.var_budget)
                                     for v in engine.var_long.tolist()]
    assert composer.var_cap_short == [var_position_cap(v, config.portfolio_var.var_budget)
                                      for v in engine.var_short.tolist()]
    rng = np.random.default_rng(seed)
    for _ in range(200):
        bar = int(rng.integers(0, returns.size))
        direction = int(rng.choice([-1, 1]))
        regime = int(rng.integers(0, 4))
        drawdown = float(rng.choice([0.0, rng.uniform(0.0, 0.5), 1.0]))
        budget = float(rng.uniform(0.0, 2.0))
        kelly_cap = float(rng.choice([math.inf, 0.0, rng.uniform(0.0, 3.0)]))
        state = RiskState(engine.vol_annualized[bar].item(), engine.bar_volatility[bar].item(),
                          engine.var_long[bar].item(), engine.var_short[bar].item(), regime, drawdown, budget,
                          kelly_cap)
        expected = compose_position(direction, state, config, max_leverage).sizes
        assert composer.sizes(direction, bar, regime, drawdown, budget, kelly_cap) == expected


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=3_000, seed=5).frame, cache=False)


def _rollout(env, actions, seed):
    out = []
    observation, info = env.reset(seed=seed)
    out.append((observation, None, False, False, info))
    for action in actions:
        step = env.step(int(action))
        out.append(step)
        if step[2] or step[3]:
            observation, info = env.reset()
            out.append((observation, None, False, False, info))
    return out


@pytest.mark.parametrize("kwargs", [
    {},
    {"reward": "sortino"},
    {"reward": "adaptive-log", "regime_source": "rules", "decision_interval": 3},
    {"risk": False},
])
def test_training_info_level_gives_the_same_episode(prepared, kwargs) -> None:
    full = make_himari_env(prepared, context=16, episode_length=150, **kwargs)
    training = make_himari_env(prepared, context=16, episode_length=150, info_level="training", **kwargs)
    actions = np.random.default_rng(3).integers(0, 3, 700)
    for a, b in zip(_rollout(full, actions, 9), _rollout(training, actions, 9), strict=True):
        obs_a, reward_a, term_a, trunc_a, info_a = a
        obs_b, reward_b, term_b, trunc_b, info_b = b
        assert obs_a["features"].tobytes() == obs_b["features"].tobytes()
        assert obs_a["regime"] == obs_b["regime"]
        assert obs_a["position"].tobytes() == obs_b["position"].tobytes()
        assert (reward_a, term_a, trunc_a) == (reward_b, term_b, trunc_b)
        assert info_b == {key: value for key, value in info_a.items() if key not in RISK_INFO_KEYS}
        if kwargs.get("risk", True) and reward_a is not None:
            assert set(RISK_INFO_KEYS) <= set(info_a)


def test_info_level_is_checked(prepared) -> None:
    with pytest.raises(ValueError, match="info_level must be one of"):
        make_himari_env(prepared, context=16, episode_length=100, info_level="minimal")
    core = core_env(make_himari_env(prepared, context=16, episode_length=100, risk=False))
    with pytest.raises(ValueError, match="info_level must be one of"):
        RSSRiskAction(core, info_level="everything")


def test_the_core_builds_the_observation_wrappers_view(prepared) -> None:
    """The observation the stack returns is what RegimeFeatureObservation.observation maps
    the core's state to: the wrapper's features and regimes at the decision bar."""
    env = make_himari_env(prepared, context=16, episode_length=100, regime_source="rules")
    wrapper = env
    while not isinstance(wrapper, RegimeFeatureObservation):
        wrapper = wrapper.env
    observation, _ = env.reset(seed=1)
    rng = np.random.default_rng(1)
    core = core_env(env)
    for _ in range(99):
        expected = wrapper.observation({"position": observation["position"]})
        assert observation["features"].tobytes() == expected["features"].tobytes()
        assert observation["regime"] == expected["regime"]
        t = core.bar_index
        assert np.array_equal(observation["features"], prepared.observation_features[t - 15 : t + 1])
        assert observation["regime"] == int(prepared.regime_ids["rules"][t])
        assert env.observation_space.contains(observation)
        observation, *_ = env.step(int(rng.integers(0, 3)))


def test_regularized_beta_is_scipys_betainc_bit_for_bit() -> None:
    from scipy import special

    from himari_env.risk.kelly import regularized_beta

    rng = np.random.default_rng(4)
    for _ in range(20_000):
        a = float(rng.choice([rng.uniform(0.1, 30.0), rng.integers(1, 20_000) + rng.uniform(0.1, 5.0)]))
        b = float(rng.choice([rng.uniform(0.1, 30.0), rng.integers(1, 20_000) + rng.uniform(0.1, 5.0)]))
        x = float(np.clip(rng.choice([rng.random(), a / (a + b) + rng.normal(0.0, 0.01)]), 1e-12, 1 - 1e-12))
        assert regularized_beta(a, b, x) == float(special.betainc(a, b, x))
    assert regularized_beta(3, 2, 0.5) == float(special.betainc(3, 2, 0.5))  # ints are floats


def _binding_as_specified(sizes: tuple[float, ...]) -> str:
    """The binding rule as first written: smallest after/before ratio below 1, first on ties."""
    from himari_env.risk.composer import BINDING_NONE, METHOD_ORDER

    best_ratio, best, before = 1.0, BINDING_NONE, sizes[0]
    for name, after in zip(METHOD_ORDER, sizes[1:], strict=True):
        if before > 0.0:
            ratio = after / before
            if ratio < best_ratio:
                best_ratio, best = ratio, name
        before = after
    return best


@settings(max_examples=2000, deadline=None)
@given(sizes=st.lists(st.one_of(st.sampled_from([0.0, 0.1, 0.5, 1.0, 1.2, 3.0]), st.floats(0.0, 5.0)),
                      min_size=10, max_size=10))
def test_binding_method_keeps_its_rule(sizes) -> None:
    from himari_env.risk.composer import binding_method

    assert binding_method(tuple(sizes)) == _binding_as_specified(tuple(sizes))


def test_kelly_estimate_reports_as_before() -> None:
    params = KellyParams(min_trades=5, min_edge_probability=0.95)
    estimate = estimate_kelly(30, 28, 0.3, 0.27, params)
    assert type(estimate).__name__ == "KellyEstimate" and estimate.n_wins == 30 and estimate[1] == 28
    assert estimate.reason == f"edge not credible (P(edge>0)={estimate.edge_probability:.3f} < 0.95)"
    assert estimate_kelly(2, 1, 0.1, 0.1, params).reason == "too few trades (3 < 5)"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=risk_configs(), seed=st.integers(0, 2**16), skill=st.floats(0.5, 0.95),
       fraction=st.sampled_from([0.002, 0.02, 0.25, 1.0]))
def test_an_undecided_kelly_cap_gives_the_same_sizes(case, seed, skill, fraction) -> None:
    """The RSS wrapper's path (BarComposer with the engine's undecided Kelly cap, decided only
    when it could bind) gives compose_position's sizes on the engine's decided state."""
    config, returns = case
    config = config.replace(kelly=KellyParams(mode="confident_cap", min_trades=3, fraction=fraction,
                                              min_edge_probability=config.kelly.min_edge_probability))
    drive_undecided_kelly(config, returns, seed=seed, skill=skill)


def drive_undecided_kelly(config, returns, *, seed: int, skill: float) -> dict[str, int]:
    """Step an engine with outcomes of the given skill; at each step compare the deferred path
    with compose_position; return how often the decision was made or skipped."""
    engine = RiskEngine(config, returns, max_leverage=3.0)
    composer = BarComposer(engine)
    rng = np.random.default_rng(seed)
    engine.reset(1.0)
    counts = {"decided": 0, "skipped": 0}

    def resolve() -> float:
        counts["decided"] += 1
        return engine.resolve_kelly_cap()

    for _ in range(150):
        bar = int(rng.integers(1, returns.size - 1))
        direction = int(rng.choice([-1, 1]))
        regime = int(rng.integers(0, 4))
        drawdown = engine.brake_drawdown()
        pending = engine._kelly_pending is not None
        sizes = composer.sizes(direction, bar, regime, drawdown, engine.risk_budget, engine._kelly_cap,
                               resolve if pending else None)
        counts["skipped"] += pending and engine._kelly_pending is not None
        expected = compose_position(direction, engine.state(bar, regime, drawdown), config, 3.0).sizes
        assert sizes == expected
        right = rng.random() < skill
        held = float(np.sign(returns[bar + 1])) * (1.0 if right else -1.0) * float(rng.uniform(0.1, 1.0))
        engine.record_step(bar + 1, held, float(rng.uniform(0.8, 1.2)))
    assert engine.kelly_cap == engine.kelly.position_cap
    return counts


def test_the_kelly_decision_is_made_when_it_could_bind_and_skipped_otherwise() -> None:
    from tests.test_risk_batched import _returns

    returns = _returns(7, 0.01)
    for fraction, key in ((0.005, "decided"), (1.0, "skipped")):
        config = calibrate_risk(returns[1:], config=RiskConfig(
            kelly=KellyParams(min_trades=3, fraction=fraction, min_edge_probability=0.6)))
        counts = drive_undecided_kelly(config, returns, seed=0, skill=0.8)
        assert counts[key] > 5, counts
