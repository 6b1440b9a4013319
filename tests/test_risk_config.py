"""RiskConfig: strict JSON round trip and calibration on train returns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from himari_env.risk.calibration import calibrate_risk
from himari_env.risk.config import RiskConfig, RiskConfigError
from himari_env.risk.engine import RiskEngine
from himari_env.risk.evt import fit_tail
from himari_env.risk.kelly import KellyParams


@pytest.fixture(scope="module")
def train_returns() -> np.ndarray:
    return np.random.default_rng(11).standard_t(4, 6_000) * 0.005


@pytest.fixture(scope="module")
def calibrated(train_returns) -> RiskConfig:
    return calibrate_risk(train_returns)


def test_calibration_fits_both_tails_and_the_volatility_target(train_returns, calibrated):
    assert calibrated.is_calibrated
    assert calibrated.evt.long_tail == fit_tail(train_returns, side="long")
    assert calibrated.evt.short_tail == fit_tail(train_returns, side="short")
    assert calibrated.vol_target.target_vol == pytest.approx(0.6 * calibrated.vol_target.median_vol)
    assert calibrated.fitted_on == {"n_returns": 6_000, "n_gap_returns_excluded": 0}


def test_calibration_leaves_gap_returns_out_and_counts_them(train_returns):
    gaps = np.zeros(train_returns.size, dtype=bool)
    gaps[[10, 500, 4_000]] = True
    config = calibrate_risk(train_returns, gap_before=gaps)
    assert config.fitted_on == {"n_returns": 5_997, "n_gap_returns_excluded": 3}
    assert config.evt.long_tail == fit_tail(train_returns[~gaps], side="long")


def test_json_round_trip_is_exact(calibrated, tmp_path):
    path = calibrated.save(tmp_path / "risk.json")
    assert RiskConfig.load(path) == calibrated
    document = json.loads(path.read_text())
    assert document["evt"]["long_tail"]["xi"] == calibrated.evt.long_tail.xi
    assert document["drawdown_brake"]["thresholds"] == [0.03, 0.06, 0.10]


def test_unknown_keys_are_rejected_with_their_path(calibrated):
    document = calibrated.to_dict()
    document["evt"]["long_tail"]["kappa"] = 1.0
    with pytest.raises(RiskConfigError, match=r"unknown key\(s\) \['evt\.long_tail\.kappa'\]"):
        RiskConfig.from_dict(document)


def test_wrong_types_and_values_are_rejected_with_their_path(calibrated):
    document = calibrated.to_dict()
    document["vol_target"]["window"] = "168"
    with pytest.raises(RiskConfigError, match=r"vol_target\.window must be an integer"):
        RiskConfig.from_dict(document)
    document = calibrated.to_dict()
    document["drawdown_brake"]["reductions"] = [0.3, 0.2, 0.95]
    with pytest.raises(RiskConfigError, match=r"drawdown_brake.*non-decreasing"):
        RiskConfig.from_dict(document)
    with pytest.raises(RiskConfigError, match="not valid JSON"):
        RiskConfig.from_json("{")


def test_an_uncalibrated_config_cannot_drive_the_engine():
    config = RiskConfig(kelly=KellyParams(mode="off"))
    assert not config.is_calibrated
    with pytest.raises(ValueError, match="calibrated"):
        RiskEngine(config, np.zeros(10), max_leverage=1.0)
