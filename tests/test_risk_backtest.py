"""The calibration simulator and calibrations: exact accounting, the brake grid, the Sortino
grid, and (on the real file) the risk layer lowering the drawdown of a momentum rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from himari_env.env import HimariBTCEnv
from himari_env.market import market_from_prices, returns_from_close
from himari_env.metrics import calmar_ratio, max_drawdown
from himari_env.risk.backtest import run_backtest
from himari_env.risk.calibration import BRAKE_CANDIDATES, calibrate_risk, select_drawdown_brake
from himari_env.rules import momentum_directions
from wrappers.sortino import SortinoConfig
from wrappers.sortino_calibration import calibrate_sortino


@pytest.fixture(scope="module")
def synthetic_close() -> np.ndarray:
    returns = np.random.default_rng(8).standard_t(4, 5_999) * 0.006
    return 100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + returns)))


def test_momentum_rule_is_the_sign_of_the_lookback_change():
    close = np.array([10.0, 11.0, 12.0, 11.5, 11.5, 13.0])
    # t=2: 12 vs 10 (+), t=3: 11.5 vs 11 (+), t=4: 11.5 vs 12 (-), t=5: 13 vs 11.5 (+)
    assert momentum_directions(close, 2).tolist() == [0, 0, 1, 1, -1, 1]
    assert momentum_directions(np.full(5, 3.0), 1).tolist() == [0, 0, 0, 0, 0]


def test_unit_backtest_equals_the_core_env_step_by_step(synthetic_close):
    market = market_from_prices(synthetic_close)
    directions = momentum_directions(synthetic_close, 6)
    env = HimariBTCEnv(market, context=10, fee_rate=0.001, max_leverage=1.0)
    env.reset(seed=0)
    start, stop = env.episode_bounds
    equity = [1.0]
    for t in range(start, stop):
        _, _, terminated, truncated, info = env.step(np.array([directions[t]], dtype=np.float32))
        equity.append(info["equity"])
    result = run_backtest(market.returns, directions, market.regime_ids, start=start, stop=stop,
                          config=None, fee_rate=0.001, max_leverage=1.0)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-12)
    assert result.fees.sum() == pytest.approx(sum(0.001 * t * e for t, e in zip(result.turnover, equity, strict=False)))


def test_brake_selection_keeps_the_best_train_calmar(synthetic_close):
    returns = returns_from_close(synthetic_close)
    config = calibrate_risk(returns[1:4_000])
    directions = momentum_directions(synthetic_close, 24)
    regimes = np.zeros(returns.size, dtype=np.int8)
    chosen, rows = select_drawdown_brake(returns, directions, regimes, train=slice(200, 4_000),
                                         config=config, fee_rate=0.001, max_leverage=3.0)
    assert len(rows) == len(BRAKE_CANDIDATES)
    best = max(range(len(rows)), key=lambda i: (rows[i]["calmar"], -i))
    assert chosen.drawdown_brake == BRAKE_CANDIDATES[best]
    check = run_backtest(returns, directions, regimes, start=200, stop=3_999, config=chosen,
                         fee_rate=0.001, max_leverage=3.0)
    assert calmar_ratio(check.equity) == pytest.approx(rows[best]["calmar"])


def test_sortino_grid_reports_train_and_test_of_the_reference_rule(synthetic_close):
    from scipy import stats

    from himari_env.metrics import sortino_ratio
    from wrappers.sortino import sortino_rewards
    from wrappers.sortino_calibration import policy_family, unit_pass

    returns = returns_from_close(synthetic_close)
    report = calibrate_sortino(returns, synthetic_close, train=slice(200, 4_000), test=slice(4_000, 6_000),
                               fee_rate=0.001, trade_costs=(0.0, 0.0005), drawdown_weights=(0.0, 0.25),
                               reward_scales=(100.0, 200.0))
    chosen = SortinoConfig.from_dict(report["config"])
    # Each grid row's Spearman, recomputed from the family's passes on train (bars 200 .. 3998).
    family = policy_family(synthetic_close)
    passes = {name: unit_pass(returns, dirs, start=200, stop=3_999, fee_rate=0.001) for name, dirs in family.items()}
    sortinos = [sortino_ratio(p.equity) for p in passes.values()]
    for row in report["grid"]:
        config = SortinoConfig(trade_cost=row["trade_cost"], drawdown_weight=row["drawdown_weight"], reward_scale=1.0)
        totals = [float(np.sum(sortino_rewards(p.pnl, p.turnover, p.drawdown_increase, config)[0]))
                  for p in passes.values()]
        assert row["spearman"] == pytest.approx(stats.spearmanr(totals, sortinos).statistic, abs=1e-9)
    chosen_row = next(r for r in report["grid"]
                      if (r["trade_cost"], r["drawdown_weight"]) == (chosen.trade_cost, chosen.drawdown_weight))
    assert chosen_row["spearman"] == pytest.approx(max(r["spearman"] for r in report["grid"]), abs=1e-12)
    stds = {row["reward_scale"]: row["reward_std"] for row in report["scales"]}
    assert stds[200.0] == pytest.approx(2 * stds[100.0])  # the scale multiplies every term
    assert chosen.reward_scale == min(stds, key=lambda s: abs(stds[s] - 1.0))
    # The reported reward-return correlation of the reference rule, recomputed on train and test.
    for period, (start, stop) in (("train", (200, 3_999)), ("test", (4_000, 5_999))):
        reference = unit_pass(returns, family["momentum_24"], start=start, stop=stop, fee_rate=0.001)
        rewards = sortino_rewards(reference.pnl, reference.turnover, reference.drawdown_increase, chosen)[0]
        assert report[period]["reward_return_corr"] == pytest.approx(np.corrcoef(rewards, reference.pnl)[0, 1])
        assert report[period]["sortino"] == pytest.approx(sortino_ratio(reference.equity))


@pytest.mark.realdata
def test_risk_layer_lowers_the_drawdown_of_a_momentum_rule_on_real_test_data(real_data_path):
    from himari_env.data import chronological_splits, gap_mask
    from himari_env.regimes.labeler import label_regimes

    frame = pd.read_csv(real_data_path, parse_dates=["timestamp"], index_col="timestamp")
    close = frame["close"].to_numpy(dtype=np.float64)
    returns = returns_from_close(close)
    splits = chronological_splits(close.size)
    train, test = splits["train"], splits["test"]
    config = calibrate_risk(returns[train], gap_before=gap_mask(frame.index)[train])
    directions = momentum_directions(close, 24)
    regimes = label_regimes(frame)
    start, stop = test.start, test.stop - 1
    on = run_backtest(returns, directions, regimes, start=start, stop=stop, config=config,
                      fee_rate=0.001, max_leverage=3.0)
    off = run_backtest(returns, directions, regimes, start=start, stop=stop, config=None,
                       fee_rate=0.001, max_leverage=3.0)
    on_dd, off_dd = max_drawdown(on.equity), max_drawdown(off.equity)
    print(f"\nreal test split, momentum_24, fee 0.1 %: max drawdown risk on {on_dd:.2%}, off {off_dd:.2%}")
    assert on_dd < off_dd
    assert not on.bankrupt
    assert np.all(np.abs(on.positions) <= 3.0)
