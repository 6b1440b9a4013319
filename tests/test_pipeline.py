"""The pipeline: fitted on the train split only, cached under a key that names everything the
arrays depend on (data, config, fitted state and code version), saved and loaded whole."""

from __future__ import annotations

import numpy as np
import pytest

import himari_env.pipeline as pipeline_module
from himari_env.data import synthesize_market
from himari_env.features.technical import compute_technical_features
from himari_env.pipeline import FittedPipeline, PipelineConfig, prepare_market

N_BARS = 3_000


@pytest.fixture(scope="module")
def frame():
    return synthesize_market(n_bars=N_BARS, seed=5).frame


@pytest.fixture(scope="module")
def prepared(frame):
    return prepare_market(frame, config=PipelineConfig(fit_hmm=True), cache=False)


def test_the_scaler_is_the_mean_and_std_of_the_train_rows(frame, prepared):
    train = prepared.market.splits["train"]
    values = compute_technical_features(frame).values[train]
    np.testing.assert_allclose(prepared.pipeline.feature_mean, np.nanmean(values, axis=0), rtol=1e-12)
    np.testing.assert_allclose(prepared.pipeline.feature_std, np.nanstd(values, axis=0), rtol=1e-12)


def test_nothing_fitted_depends_on_bars_after_the_train_split(frame, prepared):
    train_stop = prepared.market.splits["train"].stop
    changed = frame.copy()
    changed.iloc[train_stop:, :4] *= np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.02, N_BARS - train_stop)))[:, None]
    changed.iloc[train_stop:, 4] *= 5.0
    other = prepare_market(changed, config=PipelineConfig(fit_hmm=True), cache=False)
    assert other.pipeline.fingerprint() == prepared.pipeline.fingerprint()
    assert other.pipeline.train_period == prepared.pipeline.train_period


def test_the_cache_serves_the_same_inputs_and_recomputes_when_the_code_changes(frame, tmp_path, monkeypatch):
    calls = []
    compute = pipeline_module._compute_arrays
    monkeypatch.setattr(pipeline_module, "_compute_arrays", lambda *a, **k: calls.append(1) or compute(*a, **k))
    first = prepare_market(frame, cache_dir=tmp_path)
    again = prepare_market(frame, cache_dir=tmp_path)
    assert len(calls) == 1  # served from the cache
    np.testing.assert_array_equal(first.observation_features, again.observation_features)
    # Fault 3: a change to the features, labeler or EKF code changes the code version, and
    # arrays an older version cached are never served.
    monkeypatch.setattr(pipeline_module, "code_version", lambda: "a-newer-version")
    prepare_market(frame, cache_dir=tmp_path)
    assert len(calls) == 2
    # The fitted state is part of the key too: another scaler, other arrays.
    shifted = FittedPipeline(config=first.pipeline.config, feature_names=first.pipeline.feature_names,
                             feature_mean=first.pipeline.feature_mean + 0.1, feature_std=first.pipeline.feature_std)
    prepare_market(frame, pipeline=shifted, cache_dir=tmp_path)
    assert len(calls) == 3
    assert len(list(tmp_path.glob("market-*.npz"))) == 3


def test_the_tests_cache_folder_is_a_temporary_one(tmp_path_factory):
    assert str(pipeline_module.default_cache_dir()).startswith(str(tmp_path_factory.getbasetemp()))


def test_a_fitted_pipeline_survives_save_and_load(prepared, tmp_path):
    folder = prepared.pipeline.save(tmp_path / "pipeline")
    assert not list(tmp_path.rglob("*.pkl"))
    loaded = FittedPipeline.load(folder)
    assert loaded.fingerprint() == prepared.pipeline.fingerprint()
    assert loaded.labeler == prepared.pipeline.labeler
    assert loaded.train_period == prepared.pipeline.train_period
    assert loaded.config == prepared.pipeline.config
    # Reused on the same data it rebuilds the same observations, HMM regimes included.
    again = prepare_market(synthesize_market(n_bars=N_BARS, seed=5).frame, pipeline=loaded, cache=False)
    np.testing.assert_array_equal(again.observation_features, prepared.observation_features)
    np.testing.assert_array_equal(again.regime_ids["hmm"], prepared.regime_ids["hmm"])
