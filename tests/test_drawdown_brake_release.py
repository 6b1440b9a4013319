"""The H4 brake measures drawdown from a rolling peak: it releases after a recovery or after
a month without a new high, and over a five-year pass it binds on a minority of decisions."""

from __future__ import annotations

import numpy as np
import pytest

from himari_env.risk.drawdown_brake import DrawdownBrakeParams, RollingPeak, drawdown_brake_factor
from himari_env.risk.engine import RiskEngine


def test_rolling_peak_by_hand():
    peak = RollingPeak(window=3)
    peak.reset(1.0)
    for equity in (1.2, 1.1, 1.0):
        peak.push(equity)
    assert peak.peak == 1.2  # window: 1.2, 1.1, 1.0
    peak.push(0.9)  # window: 1.1, 1.0, 0.9
    assert peak.peak == 1.1
    assert peak.drawdown(0.9) == pytest.approx(1 - 0.9 / 1.1)
    unbounded = RollingPeak(window=None)
    unbounded.reset(1.0)
    for equity in (1.2, 0.5, 0.6):
        unbounded.push(equity)
    assert unbounded.peak == 1.2


def _engine(window: int | None) -> RiskEngine:
    from himari_env.risk import calibrate_risk

    returns = np.random.default_rng(0).normal(0, 0.01, 3000)
    returns[0] = 0.0
    config = calibrate_risk(returns[1:2000])
    brake = DrawdownBrakeParams(config.drawdown_brake.thresholds, config.drawdown_brake.reductions, window)
    return RiskEngine(config.replace(drawdown_brake=brake), returns, max_leverage=1.0)


def test_a_drawdown_then_a_recovery_restores_the_size():
    engine = _engine(window=720)
    engine.reset(1.0)
    engine.record_step(1, 1.0, 0.85)  # a 15 % drawdown: the brake cuts 95 %
    assert drawdown_brake_factor(engine.brake_drawdown(), engine.config.drawdown_brake) == pytest.approx(0.05)
    engine.record_step(2, 1.0, 1.0)  # back at the peak
    assert engine.brake_drawdown() == 0.0
    assert drawdown_brake_factor(engine.brake_drawdown(), engine.config.drawdown_brake) == 1.0


def test_a_month_without_a_new_high_releases_the_brake_but_the_episode_peak_never_does():
    rolling, episode = _engine(window=720), _engine(window=None)
    for engine in (rolling, episode):
        engine.reset(1.0)
        engine.record_step(1, 1.0, 0.85)
        for bar in range(2, 2 + 720):
            engine.record_step(bar, 0.0, 0.85)  # flat, no recovery
    assert rolling.brake_drawdown() == 0.0
    assert episode.brake_drawdown() == pytest.approx(0.15)


def test_bad_window_is_named():
    with pytest.raises(ValueError, match="peak_window_bars"):
        DrawdownBrakeParams(peak_window_bars=0)


def test_a_five_year_pass_does_not_bind_on_most_in_market_decisions():
    from experiments.baselines import momentum_directions
    from himari_env.data import synthesize_market
    from himari_env.pipeline import prepare_market
    from himari_env.risk import calibrate_risk
    from himari_env.risk.backtest import run_backtest

    prepared = prepare_market(synthesize_market(45_000, 0).frame)
    market = prepared.market
    train = market.splits["train"]
    config = calibrate_risk(market.returns[train], gap_before=market.gap_before[train])
    directions = momentum_directions(market.close, 24)
    result = run_backtest(market.returns, directions, market.regime_ids, start=market.first_bar,
                          stop=len(market.close) - 1, config=config, fee_rate=0.001, max_leverage=1.0)
    assert result.binding_shares()["h4_drawdown_brake"] < 0.5  # the episode-peak brake: 0.97
