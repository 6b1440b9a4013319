"""The batched env's fused RSS path (one numba call per decision) IS its per-bar path.

With the RSS layer on, :class:`~himari_env.vector.batch.BatchedHimariStack` steps a whole
decision in one compiled call (``step_decision_risk``: sizing, core accounting, reward and the
layer's record step per env and bar, on the layer's own state arrays). The per-bar path
(``BatchedRiskLayer.size``, ``kernels.step_bar``, ``BatchedRiskLayer.record_step`` per bar,
``batch.fused = False``) is the reference: for random risk configs (every Kelly mode, the
drawdown brake with and without a peak window, the band, the leverage knee, the risk budget),
decision intervals, reward presets, action sets, observation modes and info levels, both give
bit-identical observations, rewards, flags and infos, and leave the risk layer in the same
state for every env still in its episode (an env that ended inside a decision is not sized
or recorded further by the fused path; it is reset before its next step either way).
``tests/test_vector_env.py`` checks both against independent single-env stacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from himari_env.risk import batched_kernels as kn
from himari_env.risk.calibration import calibrate_risk
from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.kelly import KELLY_MODES, KellyParams
from himari_env.risk.leverage import LeverageParams
from himari_env.risk.regime_multipliers import RegimeMultipliers
from himari_env.risk.risk_budget import RiskBudgetParams
from himari_env.vector import BatchedHimariStack, HimariBTCVecEnv
from himari_env.vector import kernels as K

N_BARS = 3000
CONTEXT = 8


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=N_BARS, seed=7).frame, cache=False)


@pytest.fixture(scope="module")
def calibrated(prepared) -> RiskConfig:
    market = prepared.market
    train = market.splits["train"]
    return calibrate_risk(market.returns[train], gap_before=market.gap_before[train])


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def config_changes(draw: st.DrawFn) -> dict[str, Any]:
    """Fields of a calibrated RiskConfig redrawn within their valid ranges (Kelly with few
    trades so its cap binds inside short episodes)."""
    lower = draw(_floats(0.2, 1.0))
    upper = draw(_floats(lower, 2.0))
    levels = draw(st.integers(1, 3))
    thresholds = sorted(draw(st.lists(_floats(0.001, 0.2), min_size=levels, max_size=levels, unique=True)))
    reductions = sorted(draw(st.lists(_floats(0.0, 1.0), min_size=levels, max_size=levels)))
    return {
        "kelly": KellyParams(mode=draw(st.sampled_from(KELLY_MODES)), fraction=draw(_floats(0.05, 1.0)),
                             min_trades=draw(st.integers(1, 8)), min_edge_probability=draw(_floats(0.5, 0.95)),
                             payoff_prior_weight=draw(_floats(0.0, 10.0))),
        "drawdown_brake": DrawdownBrakeParams(tuple(thresholds), tuple(reductions),
                                              draw(st.one_of(st.none(), st.integers(1, 12)))),
        "leverage": LeverageParams(max_leverage=draw(_floats(0.3, 3.0)), decay_start=draw(_floats(0.0, 1.5))),
        "risk_budget": RiskBudgetParams(initial=draw(_floats(lower, upper)), step=draw(_floats(0.0, 0.2)),
                                        lower=lower, upper=upper, period_bars=draw(st.integers(1, 6))),
        "regime_multipliers": RegimeMultipliers(*(draw(_floats(0.0, 2.0)) for _ in range(4))),
        "rebalance_band": draw(_floats(0.0, 0.9)),
    }


def _same(a: Any, b: Any, where: str) -> None:
    assert data_equivalence(a, b, exact=True), f"{where}: fused {a!r} != per-bar {b!r}"


def _same_layer_state(fused: BatchedHimariStack, per_bar: BatchedHimariStack, envs: np.ndarray, where: str) -> None:
    a, b = fused.risk_layer, per_bar.risk_layer
    assert a._sf[envs].tobytes() == b._sf[envs].tobytes(), f"{where}: layer float state"
    assert a._si[envs].tobytes() == b._si[envs].tobytes(), f"{where}: layer int state"


def _lockstep(prepared, kwargs: dict[str, Any], *, info_level: str, observation_mode: str, n_envs: int, seed: int,
              actions: np.ndarray) -> int:
    """Step the SB3 adapter on the fused and on the per-bar path side by side; assert equality
    of everything each step. Returns the number of episode ends."""
    fused = HimariBTCVecEnv(n_envs, prepared, info_level=info_level, observation_mode=observation_mode, **kwargs)
    per_bar = HimariBTCVecEnv(n_envs, prepared, info_level=info_level, observation_mode=observation_mode, **kwargs)
    assert fused.batch.fused
    per_bar.batch.fused = False
    fused.seed(seed)
    per_bar.seed(seed)
    _same(fused.reset(), per_bar.reset(), "reset")
    ends = 0
    for step, action in enumerate(actions):
        where = f"step {step} ({kwargs}, {info_level}, {observation_mode})"
        obs, rewards, dones, infos = fused.step(action)
        obs_r, rewards_r, dones_r, infos_r = per_bar.step(action)
        _same(obs, obs_r, where)
        assert rewards.tobytes() == rewards_r.tobytes(), f"{where}: rewards {rewards} != {rewards_r}"
        _same(dones, dones_r, where)
        _same(infos, infos_r, where)
        _same(fused.reset_infos, per_bar.reset_infos, where)
        # every env's layer state: the running ones continue, the ended ones were just reset
        _same_layer_state(fused.batch, per_bar.batch, np.arange(n_envs), where)
        ends += int(dones.sum())
    return ends


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(changes=config_changes(), preset=st.sampled_from(["adaptive", "adaptive-log", "sortino", "opportunity", "pnl"]),
       decision_interval=st.sampled_from([1, 2, 3, 5]), episode_length=st.integers(3, 14),
       info_level=st.sampled_from(["full", "training", "none"]), observation_mode=st.sampled_from(["index", "window"]),
       action_set=st.sampled_from(["long_short", "long_flat"]), n_envs=st.integers(1, 5), seed=st.integers(0, 2**16),
       data=st.data())
def test_the_fused_path_is_the_per_bar_path(prepared, calibrated, changes, preset, decision_interval, episode_length,
                                            info_level, observation_mode, action_set, n_envs, seed, data):
    kwargs = {"context": CONTEXT, "episode_length": episode_length, "reward": preset,
              "risk_config": calibrated.replace(**changes), "decision_interval": decision_interval,
              "action_set": action_set}
    n_actions = 3 if action_set == "long_short" else 2
    actions = np.array(data.draw(st.lists(st.lists(st.integers(0, n_actions - 1), min_size=n_envs, max_size=n_envs),
                                          min_size=1, max_size=30)), dtype=np.int64)
    _lockstep(prepared, kwargs, info_level=info_level, observation_mode=observation_mode, n_envs=n_envs, seed=seed,
              actions=actions)


def test_long_episodes_with_informative_kelly_caps(prepared, calibrated):
    """Many in-market bars per episode (Kelly past min_trades, the credible-cap decision with
    scipy's betainc inside the kernel, the rolling peak's window wrapping): still bit-identical,
    and the Kelly estimate does become informative."""
    config = calibrated.replace(kelly=KellyParams(min_trades=5, min_edge_probability=0.55),
                                drawdown_brake=DrawdownBrakeParams((0.01, 0.05), (0.3, 0.8), 24))
    actions = np.random.default_rng(3).choice([0, 1, 2], p=[0.1, 0.6, 0.3], size=(150, 6))
    kwargs = {"context": CONTEXT, "episode_length": 60, "risk_config": config, "decision_interval": 2}
    ends = _lockstep(prepared, kwargs, info_level="full", observation_mode="index", n_envs=6, seed=5, actions=actions)
    assert ends >= 6
    batch = BatchedHimariStack(4, prepared, context=CONTEXT, episode_length=None, split="all", risk_config=config,
                               info_level="full")
    batch.reset_envs(range(4), seeds=range(4))
    informative = False
    for action in np.random.default_rng(4).choice([1, 2], p=[0.7, 0.3], size=(300, 4)):
        _, _, _, infos = batch.step(action)
        assert infos is not None
        informative |= any(info["risk_state"]["kelly_informative"] for info in infos)
    assert informative
    assert batch.risk_layer._si[:, kn.SI_STEPS].min() == 300


def test_errors_on_the_fused_path_are_the_per_bar_paths(prepared, calibrated):
    for fused in (True, False):
        batch = BatchedHimariStack(2, prepared, context=CONTEXT, episode_length=2, risk_config=calibrated)
        batch.fused = fused
        batch.reset_envs([0, 1], seeds=[0, 1])
        with pytest.raises(ValueError, match="action of env 1 must be an int in \\[0, 3\\)"):
            batch.step(np.array([0, 3]))
        batch.step(np.array([1, 2]))
        batch.step(np.array([1, 2]))  # both episodes end
        with pytest.raises(RuntimeError, match="env 0's episode ended; reset it first"):
            batch.step(np.array([0, 0]))
        batch.reset_envs([0, 1], seeds=[0, 1])
        batch._obs_regime = np.full_like(batch._obs_regime, 7)  # a regime the layer cannot size
        batch.step(np.array([0, 0]))  # HOLD needs no regime
        with pytest.raises(ValueError, match=r"regime id of env 1 is 7, not one of 0\.\.3"):
            batch.step(np.array([0, 1]))


def test_the_fused_kernel_reports_the_last_sized_bar(prepared, calibrated):
    """What full infos read after a decision: each env's last bar's target, rebalance flag,
    binding code and sizes; an env that ended early keeps its last bar's."""
    batch = BatchedHimariStack(3, prepared, context=CONTEXT, episode_length=4, risk_config=calibrated,
                               decision_interval=3)
    batch.reset_envs([0, 1, 2], seeds=[0, 1, 2], start_bars=[800, 900, 1000])
    batch.step(np.array([1, 2, 0]))
    out = batch._sizing
    assert out.shape == (3, K.S_COLS)
    assert out[2, K.S_BINDING] == kn.BINDING_CODE_HOLD and not out[2, K.S_SIZES:].any()
    assert out[0, K.S_TARGET] == batch.position[0] and out[1, K.S_TARGET] == batch.position[1]
    _, terminated, truncated, _ = batch.step(np.array([1, 2, 0]))  # bar 4 of 4 ends every episode
    assert (truncated | terminated).all()
    assert batch.istate[K.HELD].tolist() == [1, 1, 1]
