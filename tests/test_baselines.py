"""Baselines: hand-computed rules, causality (future bars perturbed), exact accounting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.baselines import (
    best_baseline,
    build_baselines,
    ma_cross_directions,
    momentum_directions,
    regime_gated_directions,
    run_baselines,
)
from himari_env.constants import CRISIS, HIGH_VOL, LOW_VOL, TRENDING
from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from himari_env.risk import calibrate_risk


def test_momentum_rule_by_hand():
    close = np.array([10.0, 11.0, 10.5, 10.5, 9.0, 12.0])
    np.testing.assert_array_equal(momentum_directions(close, 2), [0, 0, 1, -1, -1, 1])
    np.testing.assert_array_equal(momentum_directions(close, 2, long_short=False), [0, 0, 1, 0, 0, 1])
    with pytest.raises(ValueError, match="lookback"):
        momentum_directions(close, 0)


def test_moving_average_cross_by_hand():
    close = np.array([1.0, 2.0, 3.0, 2.0, 1.0, 1.0])
    # fast = 2-bar SMA, slow = 3-bar SMA: from bar 2 on: (2.5 vs 2), (2.5 vs 2.33), (1.5 vs 2), (1 vs 1.33)
    np.testing.assert_array_equal(ma_cross_directions(close, 2, 3), [0, 0, 1, 1, -1, -1])
    np.testing.assert_array_equal(ma_cross_directions(close, 2, 3, long_short=False), [0, 0, 1, 1, 0, 0])


def test_regime_gated_is_flat_in_high_vol_and_crisis_only():
    np.testing.assert_array_equal(regime_gated_directions(np.array([LOW_VOL, TRENDING, HIGH_VOL, CRISIS])), [1, 1, 0, 0])


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(12_000, 3).frame)


def _all_directions(prepared_market):
    train = prepared_market.market.splits["train"]
    config = calibrate_risk(prepared_market.market.returns[train], gap_before=prepared_market.market.gap_before[train])
    baselines = build_baselines(prepared_market, regime_ids=prepared_market.regime_ids["rules"], risk_config=config,
                                fee_rate=0.001, max_leverage=1.0, seed=0)
    return baselines, config


def test_every_baseline_is_causal_and_the_supervised_one_sees_no_test_bar(prepared):
    baselines, _ = _all_directions(prepared)
    expected = {"buy_and_hold", "vol_target_bh", "momentum_24_ls", "momentum_24_lf", "momentum_168_ls",
                "momentum_168_lf", "momentum_720_ls", "momentum_720_lf", "ma_cross_ls", "ma_cross_lf",
                "regime_gated", "supervised_hgb", "flat", "random"}
    assert set(baselines.directions) | set(baselines.positions) == expected
    # Perturb every bar of the test split (prices and features): nothing before it may change.
    frame = synthesize_market(12_000, 3).frame.copy()
    test_start = prepared.market.splits["test"].start
    cut = prepared.frame_index[test_start] if prepared.frame_index is not None else frame.index[test_start]
    later = frame.index >= cut
    frame.loc[later, ["open", "high", "low", "close"]] *= np.linspace(1.0, 1.7, int(later.sum()))[:, None]
    frame.loc[later, "high"] = frame.loc[later, ["open", "high", "close"]].max(axis=1) * 1.001
    frame.loc[later, "low"] = frame.loc[later, ["open", "low", "close"]].min(axis=1) * 0.999
    perturbed = prepare_market(frame, pipeline=prepared.pipeline)
    baselines_2, _ = _all_directions(perturbed)
    for name, directions in baselines.directions.items():
        np.testing.assert_array_equal(directions[:test_start], baselines_2.directions[name][:test_start], err_msg=name)
    np.testing.assert_array_equal(baselines.positions["vol_target_bh"][:test_start],
                                  baselines_2.positions["vol_target_bh"][:test_start])


def test_passes_use_the_env_accounting(prepared):
    baselines, config = _all_directions(prepared)
    test = prepared.market.splits["test"]
    start, stop = test.start, test.stop - 1
    passes = run_baselines(baselines, prepared, start=start, stop=stop, regime_ids=prepared.regime_ids["rules"],
                           risk_config=config, fee_rate=0.001, max_leverage=1.0)
    close = prepared.market.close
    bh = passes["buy_and_hold"]["raw"]
    # Buy-and-hold: the price ratio less one entry fee.
    assert bh.equity[-1] == pytest.approx((1 - 0.001) * close[stop] / close[start], rel=1e-9)
    assert passes["flat"]["raw"].equity[-1] == 1.0 and "rss" not in passes["flat"]
    # With the risk layer the long is smaller than 1 most of the time (vol target, regimes).
    assert np.mean(np.abs(passes["buy_and_hold"]["rss"].positions) < 1.0) > 0.5
    vol = passes["vol_target_bh"]["raw"]
    assert 0.0 < vol.positions.max() <= 1.0 and "rss" not in passes["vol_target_bh"]
    summaries = {name: {variant: p.summary() for variant, p in variants.items()} for name, variants in passes.items()}
    name, variant = best_baseline(summaries)
    assert summaries[name][variant]["sharpe"] == max(v["sharpe"] for variants in summaries.values() for v in variants.values())


def test_the_long_flat_oracle_is_the_oracle_long_or_flat_and_never_a_baseline_to_beat():
    from experiments.baselines import best_baseline
    from himari_env.data.planted import synthesize_planted_market

    planted = synthesize_planted_market(6_000, 2)
    prepared_market = prepare_market(planted.frame)
    baselines = build_baselines(prepared_market, regime_ids=prepared_market.regime_ids["rules"], risk_config=None,
                                fee_rate=0.001, max_leverage=1.0, seed=0, supervised=False, planted=planted)
    oracle, oracle_lf = baselines.directions["oracle"], baselines.directions["oracle_lf"]
    np.testing.assert_array_equal(oracle_lf, np.where(oracle > 0, 1, 0))
    assert (oracle < 0).any() and set(np.unique(oracle_lf).tolist()) <= {0, 1}
    summaries = {"oracle": {"raw": {"sharpe": 9.0}}, "oracle_lf": {"raw": {"sharpe": 8.0}},
                 "state_oracle@24": {"raw": {"sharpe": 9.5}}, "flat": {"raw": {"sharpe": 0.0}}}
    assert best_baseline(summaries)[0] == "flat"
    test = prepared_market.market.splits["test"]
    passes = run_baselines(baselines, prepared_market, start=test.start, stop=test.stop - 1,
                           regime_ids=prepared_market.regime_ids["rules"], risk_config=None, fee_rate=0.001,
                           max_leverage=1.0, decision_interval=24)
    assert "momentum_168_lf@24" in passes and not any(name.split("@")[0] in ("oracle", "oracle_lf", "state_oracle")
                                                      and "@" in name for name in passes)


def test_the_baseline_table_sizes_its_rss_rows_with_a_presets_risk_section(tmp_path, capsys):
    from agents.config import RiskSettings
    from experiments.baselines import baseline_table
    from experiments.cli import main
    from himari_env.risk.drawdown_brake import DrawdownBrakeParams
    from himari_env.risk.regime_multipliers import RegimeMultipliers

    settings = RiskSettings(drawdown_brake=DrawdownBrakeParams((0.2,), (0.5,)),
                            regime_multipliers=RegimeMultipliers(1.0, 1.0, 0.8, 0.5), rebalance_band=0.5)
    design_log = baseline_table("synthetic", split="val")
    preset = baseline_table("synthetic", split="val", risk_settings=settings)
    assert preset["baselines"]["buy_and_hold"] == design_log["baselines"]["buy_and_hold"]  # raw: no RSS
    assert preset["baselines"]["momentum_168_lf"] == design_log["baselines"]["momentum_168_lf"]
    assert preset["baselines"]["buy_and_hold+rss"] != design_log["baselines"]["buy_and_hold+rss"]

    config = tmp_path / "preset.yaml"
    config.write_text("risk:\n  drawdown_brake: {thresholds: [0.2], reductions: [0.5]}\n"
                      "  regime_multipliers: {trending: 1.0, high_vol: 0.8, crisis: 0.5}\n  rebalance_band: 0.5\n")
    assert main(["baselines", "--split", "val", "--config", str(config), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["baselines"]["buy_and_hold+rss"]["sharpe"] == pytest.approx(
        preset["baselines"]["buy_and_hold+rss"]["sharpe"])
    assert not any("@" in name for name in printed["baselines"])  # the preset decides hourly

    config.write_text(config.read_text() + "env: {decision_interval: 72}\n")
    assert main(["baselines", "--split", "val", "--config", str(config), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "momentum_720_lf@72+rss" in printed["baselines"] and "buy_and_hold@72" not in printed["baselines"]
    assert main(["baselines", "--split", "val", "--decision-interval", "24", "--json"]) == 0
    assert "momentum_720_lf@24" in json.loads(capsys.readouterr().out)["baselines"]
    timed = baseline_table("synthetic", split="val", decision_interval=168, timing=True, timing_permutations=10)
    assert set(timed["timing"]) == {name for name in timed["baselines"] if name.endswith("@168+rss")}
    for name, test in timed["timing"].items():
        assert test["sharpe"] == pytest.approx(timed["baselines"][name]["sharpe"], abs=1e-6) and 0 < test["p_value"] <= 1
    config.write_text(config.read_text() + "train: {sleeves: 4}\n")
    assert main(["baselines", "--split", "val", "--config", str(config), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["baselines"]
    assert "momentum_720_lf@72x4+rss" in printed and "momentum_720_lf@72+rss" in printed
    staggered = baseline_table("synthetic", split="val", decision_interval=168, timing=True, timing_permutations=10,
                               sleeves=2)
    assert {name for name in staggered["timing"] if "x2" in name} == {
        name for name in staggered["baselines"] if name.endswith("@168x2+rss")}
    for name, test in staggered["timing"].items():  # the replay of the sleeves is the row's own equity
        assert test["sharpe"] == pytest.approx(staggered["baselines"][name]["sharpe"], abs=1e-6)
    assert main(["baselines", "--split", "val", "--decision-interval", "24", "--sleeves", "25"]) == 2
    assert "--sleeves must be between 1 and the decision interval (24 bars)" in capsys.readouterr().err
    assert main(["baselines", "--split", "val", "--timing"]) == 2
    assert "needs a decision interval >= 2" in capsys.readouterr().err
    assert main(["baselines", "--decision-interval", "0"]) == 2
    assert "--decision-interval must be >= 1 bar" in capsys.readouterr().err


def test_a_rule_at_the_agents_cadence_is_read_at_its_decision_bars_and_held():
    from experiments.baselines import at_decision_interval

    directions = np.array([1, -1, 0, 1, 1, -1, 0, 0, 1, -1], dtype=np.int8)
    held = at_decision_interval(directions, start=2, stop=9, interval=3)
    #                          bars 0-1 untouched | 2-4 from bar 2 | 5-7 from bar 5 | 8 from bar 8 | 9 untouched
    assert held.tolist() == [1, -1, 0, 0, 0, -1, -1, -1, 1, -1]
    assert at_decision_interval(directions, start=0, stop=10, interval=1).tolist() == directions.tolist()
    with pytest.raises(ValueError, match="interval must be >= 1"):
        at_decision_interval(directions, start=0, stop=10, interval=0)


def test_with_a_decision_interval_every_rule_is_also_traded_at_that_cadence(prepared):
    from himari_env.risk.backtest import run_backtest

    baselines, config = _all_directions(prepared)
    test = prepared.market.splits["test"]
    start, stop = test.start, test.stop - 1
    regimes = prepared.regime_ids["rules"]
    passes = run_baselines(baselines, prepared, start=start, stop=stop, regime_ids=regimes,
                           risk_config=config, fee_rate=0.001, max_leverage=1.0, decision_interval=24)
    cadence = {name for name in passes if name.endswith("@24")}
    # Rules constant over the pass (flat, buy-and-hold, any other that never changes its mind
    # there) do not depend on the cadence and are not repeated.
    varying = {name for name, d in baselines.directions.items() if len(set(d[start:stop].tolist())) > 1}
    assert "buy_and_hold" not in varying and "flat" not in varying and "momentum_168_lf" in varying
    assert cadence == {f"{name}@24" for name in varying}
    assert "rss" in passes["momentum_168_lf@24"] and "rss" not in passes["random@24"]
    # A momentum rule at the cadence changes its position only at decision bars.
    positions = passes["momentum_168_lf@24"]["raw"].positions
    changes = np.flatnonzero(np.diff(positions) != 0) + 1
    assert changes.size > 0 and np.all(changes % 24 == 0)
    held = baselines.directions["momentum_168_lf"].copy()
    for bar in range(start, stop):
        held[bar] = baselines.directions["momentum_168_lf"][start + (bar - start) // 24 * 24]
    expected = run_backtest(prepared.market.returns, held, regimes, start=start, stop=stop, config=None,
                            fee_rate=0.001, max_leverage=1.0)
    np.testing.assert_array_equal(passes["momentum_168_lf@24"]["raw"].equity, expected.equity)
