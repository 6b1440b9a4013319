"""The opt-in ``long_horizon`` feature set: the standard 44 unchanged plus six features over
336-720 bars, causal, warm within the pipeline's 720-bar warm-up, carried by the bundle and
chosen from the experiment config or ``make_himari_env(feature_set=...)``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from agents.config import ConfigError, EnvConfig
from experiments.ledger import config_hash
from himari_env.data import synthesize_market
from himari_env.features.technical import (
    FEATURE_SETS,
    FEATURE_TABLE,
    LONG_HORIZON_TABLE,
    compute_technical_features,
    feature_table_markdown,
)
from himari_env.pipeline import FittedPipeline, PipelineConfig, prepare_market
from wrappers.stack import make_himari_env

N_BARS = 3_000
LONG_NAMES = ("logret_336", "logret_720", "rv_720", "rv_ratio_168_720", "dist_ema_720", "drawdown_720")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthesize_market(n_bars=N_BARS, seed=11).frame


@pytest.fixture(scope="module")
def long_features(frame):
    return compute_technical_features(frame, feature_set="long_horizon")


@pytest.fixture(scope="module")
def prepared_long(frame):
    return prepare_market(frame, config=PipelineConfig(feature_set="long_horizon"), cache=False)


def _ramp_frame(close: np.ndarray) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=close.size, freq="h", tz="UTC", name="timestamp")
    open_ = np.concatenate(([close[0]], close[:-1]))
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
                         "close": close, "volume": np.ones_like(close)}, index=index)


def test_the_long_horizon_set_is_the_standard_44_then_six_named_long_features():
    assert FEATURE_SETS["standard"] == FEATURE_TABLE
    assert FEATURE_SETS["long_horizon"] == FEATURE_TABLE + LONG_HORIZON_TABLE
    assert tuple(spec.name for spec in LONG_HORIZON_TABLE) == LONG_NAMES
    assert max(spec.window for spec in LONG_HORIZON_TABLE) == 720
    assert len(feature_table_markdown("long_horizon").strip().splitlines()) == 2 + 50


def test_the_first_44_columns_equal_the_standard_features(frame, long_features):
    standard = compute_technical_features(frame)
    assert long_features.values.shape == (N_BARS, 50)
    assert long_features.names[:44] == standard.names
    np.testing.assert_array_equal(long_features.values[:, :44], standard.values)


def test_warm_up_ends_at_bar_720_the_pipelines_warm_up(long_features):
    assert long_features.warmup_bars == 720
    assert np.isfinite(long_features.values[720:]).all()


def test_hand_computed_720_bar_return_drawdown_and_ema_distance():
    close = np.concatenate((np.full(400, 100.0), np.full(1, 150.0), np.full(500, 120.0)))
    matrix = compute_technical_features(_ramp_frame(close), feature_set="long_horizon")
    last = close.size - 1
    assert matrix.column("logret_720")[last] == pytest.approx(math.log(120.0 / 100.0))
    assert matrix.column("logret_336")[last] == pytest.approx(0.0)
    assert math.isnan(matrix.column("drawdown_720")[718])
    assert matrix.column("drawdown_720")[last] == pytest.approx(120.0 / 150.0 - 1.0)
    ema = pd.Series(close).ewm(span=720, adjust=False, min_periods=720).mean().to_numpy()
    assert matrix.column("dist_ema_720")[last] == pytest.approx(math.log(120.0 / ema[last]))


def test_long_volatility_and_its_ratio_use_the_gap_scaled_returns():
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 1_000)))
    matrix = compute_technical_features(_ramp_frame(close), feature_set="long_horizon")
    returns = np.diff(np.log(close))
    assert matrix.column("rv_720")[-1] == pytest.approx(np.std(returns[-720:], ddof=1))
    assert matrix.column("rv_ratio_168_720")[-1] == pytest.approx(
        np.std(returns[-168:], ddof=1) / np.std(returns[-720:], ddof=1))


@pytest.mark.parametrize("cut", [719, 720, 1500, N_BARS - 2])
def test_changing_bars_after_t_changes_no_long_feature_at_or_before_t(frame, long_features, cut):
    changed = frame.copy()
    shock = np.exp(np.random.default_rng(cut).normal(0.0, 0.05, N_BARS - cut - 1))
    for name in ("open", "high", "low", "close"):
        changed.iloc[cut + 1:, changed.columns.get_loc(name)] *= shock
    perturbed = compute_technical_features(changed, feature_set="long_horizon")
    np.testing.assert_array_equal(perturbed.values[: cut + 1], long_features.values[: cut + 1])
    assert not np.array_equal(perturbed.values[cut + 1:], long_features.values[cut + 1:])


def test_an_unknown_feature_set_is_named():
    with pytest.raises(ValueError, match=r"feature_set must be one of \['long_horizon', 'standard'\], got 'weekly'"):
        compute_technical_features(synthesize_market(n_bars=50, seed=0).frame, feature_set="weekly")
    with pytest.raises(ValueError, match=r"pipeline\.feature_set"):
        PipelineConfig(feature_set="weekly")
    with pytest.raises(ConfigError, match=r"env\.feature_set"):
        EnvConfig(feature_set="weekly")


def test_the_pipeline_observes_the_50_denoised_features_and_6_percentiles(prepared_long):
    assert prepared_long.observation_features.shape == (N_BARS, 56)
    assert prepared_long.observation_feature_names[44:50] == tuple(f"ekf_{name}" for name in LONG_NAMES)
    assert prepared_long.market.first_bar <= 720
    assert np.isfinite(prepared_long.observation_features).all()


def test_the_fitted_pipeline_keeps_its_feature_set_through_save_and_load(prepared_long, tmp_path):
    prepared_long.pipeline.save(tmp_path)
    loaded = FittedPipeline.load(tmp_path)
    assert loaded.config.feature_set == "long_horizon"
    assert loaded.fingerprint() == prepared_long.pipeline.fingerprint()


def test_the_default_set_leaves_fingerprints_and_config_hashes_as_before_the_option():
    config = PipelineConfig()
    assert "feature_set" not in config.identity_dict()
    assert PipelineConfig(feature_set="long_horizon").identity_dict()["feature_set"] == "long_horizon"
    document = {"name": "x", "env": EnvConfig().__dict__ | {"split_fractions": [0.6, 0.2, 0.2]}, "train": {}}
    without = {**document, "env": {k: v for k, v in document["env"].items() if k != "feature_set"}}
    assert config_hash(document) == config_hash(without)
    long = {**document, "env": {**document["env"], "feature_set": "long_horizon"}}
    assert config_hash(long) != config_hash(document)


def test_make_himari_env_fits_the_set_it_is_asked_for_and_refuses_a_mismatch(frame, prepared_long):
    env = make_himari_env(frame, feature_set="long_horizon", context=8, episode_length=16)
    assert env.observation_space["features"].shape == (8, 56)
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    standard = prepare_market(frame, cache=False)
    with pytest.raises(ValueError, match="prepared with the 'standard' features"):
        make_himari_env(standard, feature_set="long_horizon")
    with pytest.raises(ValueError, match=r"^feature_set must be one of"):
        make_himari_env(frame, feature_set="weekly")
