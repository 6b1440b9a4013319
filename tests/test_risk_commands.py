"""``himari calibrate risk`` and ``himari calibrate sortino`` end to end on small data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from himari_env.risk.backtest import run_backtest
from himari_env.risk.config import RiskConfig
from himari_env.risk.report import load_inputs
from himari_env.rules import momentum_directions
from wrappers.sortino import SortinoConfig


@pytest.fixture(scope="module")
def ohlcv_csv(tmp_path_factory) -> str:
    rng = np.random.default_rng(17)
    n = 5_000
    close = 30_000.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.005))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.002, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.002, n)))
    index = pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC", name="timestamp")
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                          "volume": rng.uniform(10, 100, n)}, index=index)
    path = tmp_path_factory.mktemp("data") / "ohlcv.csv"
    frame.to_csv(path, date_format="%Y-%m-%dT%H:%M:%SZ")
    return str(path)


def test_calibrate_risk_writes_a_loadable_config_and_train_test_report(ohlcv_csv, tmp_path, capsys):
    assert main(["calibrate", "risk", "--data", ohlcv_csv, "--out", str(tmp_path), "--json",
                 "--episode-length", "500"]) == 0
    report = json.loads(capsys.readouterr().out)
    config = RiskConfig.load(tmp_path / "risk_config.json")
    assert config.is_calibrated
    assert report["config"] == config.to_dict()
    # The reported passes are those of the saved config: recomputed from it, train and test.
    inputs = load_inputs(Path(ohlcv_csv))
    directions = momentum_directions(inputs.close, 24)
    for period in ("train", "test"):
        assert set(report[period]["evt"]) >= {"xi", "sigma", "var99", "es99"}
        assert set(report[period]["kelly"]) >= {"win_rate", "payoff_ratio", "informative"}
        split = inputs.splits[period]
        for layer, risk_config in (("risk_on", config), ("risk_off", None)):
            rerun = run_backtest(inputs.returns, directions, inputs.regime_ids, start=split.start,
                                 stop=split.stop - 1, config=risk_config, fee_rate=0.001, max_leverage=3.0)
            for metric in ("max_drawdown", "var99", "total_return"):
                assert report[period][layer][metric] == pytest.approx(rerun.summary()[metric], rel=1e-12), metric
        assert sum(report[period]["binding_shares"].values()) == pytest.approx(1.0)
    assert len(report["brake_grid"]) == 6
    markdown = (tmp_path / "risk_report.md").read_text()
    assert "| Max Drawdown" in markdown and "| VaR_99" in markdown


def test_calibrate_sortino_writes_a_loadable_config_and_table(ohlcv_csv, tmp_path, capsys):
    assert main(["calibrate", "sortino", "--data", ohlcv_csv, "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for metric in ("Sortino Ratio", "Max Drawdown", "Reward-Return Corr", "Total Trades"):
        assert f"| {metric}" in table
    config = SortinoConfig.load(tmp_path / "sortino_config.json")
    report = json.loads((tmp_path / "sortino_report.json").read_text())
    assert config.to_dict() == report["config"]


def test_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["calibrate", "risk", "--data", str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err
