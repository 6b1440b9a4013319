"""Staggered sleeves: one policy on K decision grids offset by interval/K bars, K sub-accounts of
equal capital. The grids are where they should be, the combined equity is the mean of the
sleeves' exact equity curves, one sleeve is the plain pass, nothing reads a later bar, and model
selection, the report, the timing test and the cadence baselines all see the same policy."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from agents.callbacks import PolicyPass, run_deterministic_pass, run_policy_pass
from agents.config import ConfigError, EnvConfig, ExperimentConfig, TrainConfig, load_config
from agents.sleeves import SleevedPass, run_sleeved_pass, sleeve_phases
from experiments.baselines import at_decision_interval, build_baselines, run_baselines
from experiments.ledger import config_hash
from himari_env.data import synthesize_market
from himari_env.metrics import sharpe_ratio
from himari_env.pipeline import prepare_market
from himari_env.risk.backtest import run_backtest
from himari_env.rules import decision_grid
from himari_env.timing import sleeved_timing_permutation_test, timing_permutation_test
from tests.conftest import REPO_ROOT, assert_the_default_hashes_as_absent
from wrappers.stack import make_himari_env

INTERVAL = 8


@pytest.fixture(scope="module")
def prepared():
    return prepare_market(synthesize_market(n_bars=4000, seed=5).frame)


def _env(prepared, first_bars=None, split="test", risk=True):
    return make_himari_env(prepared, split=split, context=16, episode_length=None, decision_interval=INTERVAL,
                           action_set="long_flat", risk=risk, first_decision_bars=first_bars)


def _momentum(obs, bar):
    """Long when the newest feature row's first feature is positive: a policy of the observation."""
    return int(obs["features"][-1, 0] > 0)


def test_the_first_decision_is_held_first_bars_then_every_interval_and_reset_restores_it(prepared):
    env = _env(prepared, first_bars=3)
    env.reset(seed=0)
    held = [env.step(1)[4]["decision_bars"] for _ in range(3)]
    assert held == [3, INTERVAL, INTERVAL]
    env.reset(seed=0)
    assert env.step(0)[4]["decision_bars"] == 3
    assert _env(prepared).reset(seed=0) and _env(prepared).unwrapped is not None


@pytest.mark.parametrize("first_bars", [0, INTERVAL + 1, 2.5])
def test_a_first_hold_outside_one_to_the_interval_is_refused(prepared, first_bars):
    with pytest.raises(ValueError, match="first_bars must be an int in"):
        _env(prepared, first_bars=first_bars)


def test_hourly_decisions_have_no_grid_to_offset(prepared):
    with pytest.raises(ValueError, match="first_decision_bars needs decision_interval > 1"):
        make_himari_env(prepared, split="test", decision_interval=1, first_decision_bars=1)


def test_the_batched_env_refuses_an_offset_grid(prepared):
    from himari_env.vector import HimariBTCVecEnv

    with pytest.raises(ValueError, match="staggered sleeves are an evaluation policy"):
        HimariBTCVecEnv(2, prepared, split="train", context=16, episode_length=64, decision_interval=INTERVAL,
                        first_decision_bars=3)


def test_a_decision_grid_starts_at_the_first_bar_then_runs_from_its_phase():
    assert decision_grid(10, 40, 8).tolist() == [10, 18, 26, 34]
    assert decision_grid(10, 40, 8, phase=3).tolist() == [10, 13, 21, 29, 37]
    with pytest.raises(ValueError, match="phase must be in"):
        decision_grid(10, 40, 8, phase=8)


def test_sleeve_phases_split_the_interval_evenly():
    assert sleeve_phases(72, 8) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert sleeve_phases(72, 1) == [0]
    assert sleeve_phases(10, 3) == [0, 3, 6]
    with pytest.raises(ValueError, match="must not exceed the decision interval"):
        sleeve_phases(4, 5)
    with pytest.raises(ValueError, match="sleeves must be an int >= 1"):
        sleeve_phases(4, 0)


def test_each_sleeve_decides_at_the_first_bar_then_on_its_own_grid(prepared):
    sleeved = run_sleeved_pass(lambda first: _env(prepared, first), _momentum, decision_interval=INTERVAL,
                               sleeves=4, seed=0)
    assert sleeved.phases == (0, 2, 4, 6)
    start = int(sleeved.sleeves[0].bar_indices[0])
    for phase, sleeve in zip(sleeved.phases, sleeved.sleeves, strict=True):
        bars = sleeve.bar_indices
        assert bars[0] == start
        first_next = start + (phase or INTERVAL)
        assert bars[1] == first_next
        assert np.all(np.diff(bars[1:]) == INTERVAL)
        assert sleeve.equity.size == sleeved.sleeves[0].equity.size  # the same bars


def test_one_sleeve_is_the_plain_pass_and_sleeve_zero_is_the_plain_grid(prepared):
    plain = run_policy_pass(_env(prepared), _momentum, seed=0)
    one = run_sleeved_pass(lambda first: _env(prepared, first), _momentum, decision_interval=INTERVAL,
                           sleeves=1, seed=0).combined()
    np.testing.assert_array_equal(one.equity, plain.equity)
    np.testing.assert_array_equal(one.actions, plain.actions)
    np.testing.assert_array_equal(one.bar_indices, plain.bar_indices)
    four = run_sleeved_pass(lambda first: _env(prepared, first), _momentum, decision_interval=INTERVAL,
                            sleeves=4, seed=0)
    np.testing.assert_array_equal(four.sleeves[0].equity, plain.equity)


def _policy_pass(equity, positions, bars, actions):
    n = len(actions)
    return PolicyPass(equity=np.asarray(equity, float), positions=np.asarray(positions, float),
                      actions=np.asarray(actions, np.int64), regimes=np.zeros(n, np.int64),
                      rewards=np.arange(n, dtype=float), bar_indices=np.asarray(bars, np.int64),
                      reward_terms={"pnl": float(n)})


def test_the_combined_account_is_the_mean_of_the_sleeves_equity_by_hand():
    # two sub-accounts of equal capital: +10 % then +10 %, and -10 % then +10 %
    a = _policy_pass([100.0, 110.0, 121.0], [1.0, 1.0], [5, 6], [1, 1])
    b = _policy_pass([100.0, 90.0, 99.0], [1.0, 0.0], [5], [1])
    sleeved = SleevedPass(sleeves=(a, b), phases=(0, 1))
    np.testing.assert_allclose(sleeved.equity, [100.0, 100.0, 110.0])  # (121 + 99) / 2
    np.testing.assert_allclose(sleeved.positions, [1.0, 0.5])
    combined = sleeved.combined()
    np.testing.assert_array_equal(combined.bar_indices, [5, 5, 6])  # bar order, sleeve order within a bar
    np.testing.assert_array_equal(sleeved.decision_sleeves(), [0, 1, 0])
    np.testing.assert_array_equal(combined.rewards, [0.0, 0.0, 1.0])
    assert combined.reward_terms == {"pnl": 1.5}
    with pytest.raises(ValueError, match="cover different bars"):
        SleevedPass(sleeves=(a, _policy_pass([1.0, 1.0], [0.0], [5], [0])), phases=(0, 1))


def test_no_sleeve_reads_a_later_bar(prepared):
    """Perturb every bar after T: the combined equity up to T does not move."""
    frame = synthesize_market(n_bars=4000, seed=5).frame
    cut = 3650  # inside the test split
    later = frame.copy()
    scale = np.exp(np.random.default_rng(1).normal(0.0, 0.05, len(frame) - cut)).cumprod()
    for column in ("open", "high", "low", "close"):
        later.iloc[cut:, later.columns.get_loc(column)] = frame[column].to_numpy()[cut:] * scale
    passes = []
    for data in (frame, later):
        market = prepare_market(data)
        passes.append(run_sleeved_pass(lambda first, m=market: _env(m, first), _momentum,
                                       decision_interval=INTERVAL, sleeves=4, seed=0))
    start = int(passes[0].sleeves[0].bar_indices[0])
    upto = cut - start - 1  # equity index k is after bar start + k - 1
    assert upto > 50
    np.testing.assert_array_equal(passes[0].equity[:upto], passes[1].equity[:upto])
    assert not np.array_equal(passes[0].equity, passes[1].equity)


def test_the_sleeved_timing_test_replays_the_combined_pass_and_one_sleeve_is_the_plain_test(prepared):
    sleeved = run_sleeved_pass(lambda first: _env(prepared, first, risk=False), _momentum,
                               decision_interval=INTERVAL, sleeves=4, seed=0)
    combined = sleeved.combined()
    stop = int(combined.bar_indices[0]) + combined.positions.size
    common = dict(stop=stop, risk_config=None, fee_rate=0.001, max_leverage=1.0,
                  n_permutations=20, seed=3)
    regimes = prepared.regime_ids["rules"]
    decisions = [(p.bar_indices, p.actions.astype(np.int8)) for p in sleeved.sleeves]
    test = sleeved_timing_permutation_test(prepared.market.returns, regimes, sleeves=decisions,
                                           policy_sharpe=sharpe_ratio(combined.equity), **common)
    assert test.sharpe == pytest.approx(sharpe_ratio(combined.equity), abs=1e-9)
    assert test.n_decisions == combined.actions.size
    with pytest.raises(ValueError, match="the replay of the policy's decisions"):
        sleeved_timing_permutation_test(prepared.market.returns, regimes, sleeves=decisions,
                                        policy_sharpe=sharpe_ratio(sleeved.sleeves[1].equity) + 1.0, **common)
    alone = sleeved_timing_permutation_test(prepared.market.returns, regimes, sleeves=decisions[:1], **common)
    plain = timing_permutation_test(prepared.market.returns, regimes, decision_bars=decisions[0][0],
                                    directions=decisions[0][1], **common)
    assert alone == plain


def test_a_staggered_rule_row_is_the_mean_of_its_phase_shifted_grids(prepared):
    start, stop = 3300, 3900
    signal = np.zeros(4000, dtype=np.int8)
    signal[start + 3] = 1  # read only at the sleeve's decision bars 3300, 3303, 3311, ...
    grid = at_decision_interval(signal, start=start, stop=stop, interval=INTERVAL, phase=3)
    np.testing.assert_array_equal(grid[start:start + 12], [0] * 3 + [1] * INTERVAL + [0])
    with pytest.raises(ValueError, match="phase must be in"):
        at_decision_interval(signal, start=start, stop=stop, interval=INTERVAL, phase=INTERVAL)
    regimes = prepared.regime_ids["rules"]
    baselines = build_baselines(prepared, regime_ids=regimes, risk_config=None, fee_rate=0.001,
                                max_leverage=1.0, seed=0, supervised=False)
    rows = run_baselines(baselines, prepared, start=start, stop=stop, regime_ids=regimes,
                         risk_config=None, fee_rate=0.001, max_leverage=1.0,
                         decision_interval=INTERVAL, sleeves=4)
    rule = baselines.directions["momentum_168_lf"]
    curves = [run_backtest(prepared.market.returns, at_decision_interval(rule, start=start, stop=stop,
                                                                         interval=INTERVAL, phase=phase),
                           regimes, start=start, stop=stop, config=None, fee_rate=0.001, max_leverage=1.0).equity
              for phase in sleeve_phases(INTERVAL, 4)]
    np.testing.assert_allclose(rows[f"momentum_168_lf@{INTERVAL}x4"]["raw"].equity,
                               np.mean([c / c[0] for c in curves], axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rows[f"momentum_168_lf@{INTERVAL}"]["raw"].equity, curves[0], rtol=0, atol=0)
    assert "flat@8x4" not in rows and "buy_and_hold@8x4" not in rows  # rules that never change their mind


def test_the_config_refuses_more_sleeves_than_bars_per_decision_and_one_sleeve_keeps_the_hash():
    with pytest.raises(ConfigError, match=r"train\.sleeves"):
        ExperimentConfig(env=EnvConfig(decision_interval=4), train=TrainConfig(sleeves=5))
    with pytest.raises(ConfigError, match=r"train\.sleeves"):
        TrainConfig(sleeves=0)
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    assert_the_default_hashes_as_absent(config, "train", "sleeves", 1)  # runs recorded before the key existed
    document = config.to_dict()
    staggered = dataclasses.replace(config, train=dataclasses.replace(config.train, sleeves=8))
    assert config_hash(staggered.to_dict()) != config_hash(document)


@pytest.fixture(scope="module")
def staggered_run(tmp_path_factory):
    from experiments.evaluate import evaluate_run
    from experiments.train import train

    folder = tmp_path_factory.mktemp("sleeves")
    data_path = folder / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small-spot.yaml")
    config = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data_path), episode_length=256, decision_interval=INTERVAL),
        ppo=dataclasses.replace(config.ppo, n_steps=32, batch_size=32, n_epochs=2),
        train=dataclasses.replace(config.train, total_timesteps=96, n_envs=1, eval_freq=32, checkpoint_freq=0,
                                  verbose=0, sleeves=4),
    )
    run = folder / "run"
    train(config, run_dir=run, ledger=folder / "ledger.jsonl")
    report = evaluate_run(run, split="all")
    return run, config, report


def test_model_selection_scores_the_combined_account_of_the_sleeves(staggered_run):
    run, _, report = staggered_run
    best = json.loads((run / "best" / "best_metric.json").read_text())
    assert best["value"] == pytest.approx(report["splits"]["val"]["agent"]["sharpe"], abs=1e-9)


def test_the_report_scores_the_staggered_policy_with_its_sleeves_and_staggered_rules(staggered_run, prepared):
    import pandas as pd
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.ppo import load_ppo
    from himari_env.artifacts import RunArtifacts

    run, config, report = staggered_run
    test = report["splits"]["test"]
    assert test["sleeves"]["count"] == 4 and test["sleeves"]["phases"] == [0, 2, 4, 6]
    assert f"momentum_168_lf@{INTERVAL}x4+rss" in test["baselines"]
    assert test["actions"]["Overall"]["bars"] == test["timing"]["n_decisions"]
    # sleeve 0 is the single-grid pass of the same model
    bundle = RunArtifacts.load(run)
    market = prepare_market(pd.read_parquet(config.env.data), artifacts=bundle)
    kwargs = config.env.env_kwargs(split="test", episode_length=None)
    kwargs.pop("data"), kwargs.pop("seed")
    env = make_himari_env(market, **kwargs, artifacts=bundle)
    model = load_ppo(run / "best" / "best_model.zip", DummyVecEnv([lambda: env]), config, seed=config.train.seed)
    plain = run_deterministic_pass(model, env, seed=config.train.seed)
    assert test["sleeves"]["sharpe"][0] == pytest.approx(sharpe_ratio(plain.equity), abs=1e-12)


def test_himari_timing_splits_the_saved_decisions_by_sleeve_again(staggered_run):
    from experiments.timing_report import saved_pass_timing

    run, _, report = staggered_run
    with np.load(run / "equity_test.npz") as curves:
        assert sorted(set(curves["decision_sleeves"].tolist())) == [0, 1, 2, 3]
    assert saved_pass_timing(run, split="test").to_dict() == pytest.approx(report["splits"]["test"]["timing"])


def test_evaluate_sleeves_scores_a_run_as_another_staggered_policy_in_its_own_folder(staggered_run):
    from experiments.evaluate import evaluate_run
    from experiments.ledger import read_ledger
    from experiments.timing_report import saved_pass_timing

    run, config, report = staggered_run
    other = evaluate_run(run, split="test", sleeves=2)
    assert other["run_dir"] == str(run / "sleeves2")
    assert other["splits"]["test"]["sleeves"]["phases"] == [0, INTERVAL // 2]
    assert other["splits"]["test"]["sleeves"]["sharpe"][0] == report["splits"]["test"]["sleeves"]["sharpe"][0]
    assert json.loads((run / "report.json").read_text())["splits"]["test"]["sleeves"]["count"] == 4  # untouched
    look = read_ledger(run.parent / "ledger.jsonl")[-1]
    assert look["kind"] == "test_look" and look["tag"] == "sleeves2"
    staggered_two = dataclasses.replace(config, train=dataclasses.replace(config.train, sleeves=2))
    assert look["config_hash"] == config_hash(staggered_two.to_dict())
    assert saved_pass_timing(run / "sleeves2", split="test").to_dict() == pytest.approx(other["splits"]["test"]["timing"])


def test_himari_timing_write_replaces_only_the_timing_section_of_a_saved_report(staggered_run, capsys):
    from experiments.cli import main

    run, _, _ = staggered_run
    folder = run / "sleeves2"
    before = json.loads((folder / "report.json").read_text())
    assert main(["timing", str(folder), "--split", "test", "--permutations", "20", "--write"]) == 0
    after = json.loads((folder / "report.json").read_text())
    assert after["splits"]["test"]["timing"]["n_permutations"] == 20
    assert f"Sharpe {after['splits']['test']['timing']['sharpe']:.2f}" in capsys.readouterr().out
    after["splits"]["test"].pop("timing"), before["splits"]["test"].pop("timing")
    assert after == before
    assert main(["timing", str(folder), "--split", "train", "--write"]) == 2


def test_a_staggered_policy_without_skill_is_significant_about_as_often_as_chance_says():
    # A long/flat latent that switches with probability 0.01 an hour, independent of a random-walk
    # market, read by 4 sleeves on their grids (a decision every 24 bars): the sleeves agree most
    # of the time, as a real staggered policy's do. Reordering them together keeps that
    # correlation; reordering each on its own (the first version) found 30 of 200 such
    # policies "skilled", and 32-38 of 200 with 8 sleeves at 72 bars (README, "Staggered sleeves").
    n_bars, significant = 3_000, 0
    for seed in range(40):
        rng = np.random.default_rng(2_000 + seed)
        returns = np.concatenate(([0.0], rng.normal(0.0, 0.01, n_bars - 1)))
        latent = np.where(np.cumsum(rng.random(n_bars) < 0.01) % 2 == 0, 1, 0).astype(np.int8)
        stop = n_bars - 2
        decisions = []
        for phase in sleeve_phases(24, 4):
            bars = decision_grid(0, stop, 24, phase)
            decisions.append((bars, latent[bars]))
        result = sleeved_timing_permutation_test(returns, np.zeros(n_bars, dtype=np.int8), sleeves=decisions,
                                                 stop=stop, risk_config=None, fee_rate=0.001, max_leverage=1.0,
                                                 n_permutations=50, seed=seed)
        significant += result.p_value <= 0.05
    # 5 % expected; 6 of 40 or more has a chance of about 4 % under a calibrated test.
    assert significant <= 5


def test_reordering_together_keeps_each_sleeves_time_in_the_market_and_the_leads_trades():
    from himari_env.timing import reorder_runs, reorder_sleeves_together

    rng = np.random.default_rng(0)
    latent = np.repeat(rng.integers(0, 2, 30), rng.integers(1, 12, 30)).astype(np.int8)
    decisions = [latent[phase::4][:40] for phase in (0, 1, 2, 3)]
    seen = set()
    for _ in range(20):
        reordered = reorder_sleeves_together(decisions, rng)
        for original, again in zip(decisions, reordered, strict=True):
            assert np.count_nonzero(again) == np.count_nonzero(original)  # its time long
        assert np.count_nonzero(np.diff(reordered[0])) == np.count_nonzero(np.diff(decisions[0]))  # sleeve 0's trades
        seen.add(np.stack(reordered).tobytes())
    assert len(seen) > 5
    one = latent[:40]
    assert np.array_equal(reorder_sleeves_together([one], np.random.default_rng(3))[0],
                          reorder_runs(one, np.random.default_rng(3)))
