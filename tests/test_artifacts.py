"""The run bundle (RunArtifacts): built on train, saved and loaded whole, and the only fitted
state of the unseen-data path: ``gym.make(..., data=LATER, artifacts=RUN_DIR, split="all")``
fits nothing on the later file and scores it from its first bar."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import himari_env  # noqa: F401  (registers HimariBTC-v0)
import himari_env.pipeline as pipeline_module
import himari_env.risk.calibration as calibration_module
import wrappers.risk_action as risk_action_module
import wrappers.stack as stack_module
from himari_env.artifacts import RunArtifacts, ValidationState, build_run_artifacts
from himari_env.data import synthesize_market
from himari_env.pipeline import PipelineConfig, prepare_market
from himari_env.regimes.student_t_hmm import StudentTHMM
from wrappers.stack import make_himari_env

TRAIN_BARS = 4_000
LATER_BARS = 1_500


@pytest.fixture(scope="module")
def training_frame() -> pd.DataFrame:
    return synthesize_market(n_bars=TRAIN_BARS, seed=31).frame


@pytest.fixture(scope="module")
def later_frame(training_frame) -> pd.DataFrame:
    start = training_frame.index[-1] + pd.Timedelta(hours=1)
    return synthesize_market(n_bars=LATER_BARS, seed=32, start=start).frame


@pytest.fixture(scope="module")
def bundle(training_frame) -> RunArtifacts:
    built, _ = build_run_artifacts(training_frame, pipeline_config=PipelineConfig(fit_hmm=True), source="test")
    return built


@pytest.fixture(scope="module")
def run_dir(bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    bundle.save(folder / "artifacts")
    return folder


@pytest.fixture(scope="module")
def later_path(later_frame, tmp_path_factory):
    path = tmp_path_factory.mktemp("later") / "later.parquet"
    later_frame.to_parquet(path)
    return path


def _refuse(*args, **kwargs):
    raise AssertionError("something was fitted on the data although a run bundle was given")


def test_the_bundle_survives_save_and_load(bundle, run_dir):
    assert sorted(p.name for p in (run_dir / "artifacts").iterdir()) == [
        "manifest.json", "pipeline", "risk_config.json", "tail.npz", "validation.json"]
    assert not list(run_dir.rglob("*.pkl"))
    loaded = RunArtifacts.load(run_dir)
    assert loaded.fingerprint() == bundle.fingerprint()
    assert loaded.risk_config == bundle.risk_config
    assert loaded.pipeline.hmm is not None and loaded.pipeline.labeler == bundle.pipeline.labeler
    pd.testing.assert_frame_equal(loaded.tail, bundle.tail, check_index_type=False, check_freq=False)
    assert (loaded.data_hash, loaded.code_version, loaded.reward_normalizers) == (
        bundle.data_hash, bundle.code_version, bundle.reward_normalizers)
    assert loaded.data_period == bundle.data_period and loaded.n_bars == TRAIN_BARS


def test_the_bundle_holds_the_last_training_bars_as_its_tail(bundle, training_frame):
    assert len(bundle.tail) == 2_000
    assert bundle.tail.index[-1] == training_frame.index[-1]
    np.testing.assert_array_equal(bundle.tail["close"].to_numpy(), training_frame["close"].to_numpy()[-2_000:])


def test_a_validation_state_round_trips_and_rejects_non_finite_values(tmp_path):
    state = ValidationState(metric="sharpe", best_value=-3.57, best_num_timesteps=384,
                            history=[{"num_timesteps": 384, "value": -3.57}])
    assert ValidationState.load(state.save(tmp_path / "v.json")) == state
    with pytest.raises(ValueError, match="best_value"):
        ValidationState.from_dict({"best_value": float("inf")})


def test_a_folder_without_a_bundle_is_named_in_the_error(tmp_path):
    (tmp_path / "pipeline").mkdir()
    with pytest.raises(ValueError, match=r"holds no run bundle .*retrain"):
        RunArtifacts.load(tmp_path)


def test_gym_make_with_artifacts_fits_nothing_on_the_later_file(run_dir, later_path, bundle, monkeypatch):
    # Fault 2: every fit function raises while the env is built and run.
    monkeypatch.setattr(pipeline_module, "fit_scaler", _refuse)
    monkeypatch.setattr(pipeline_module, "fit_regime_hmm", _refuse)
    monkeypatch.setattr(calibration_module, "calibrate_risk", _refuse)
    monkeypatch.setattr(risk_action_module, "calibrate_risk", _refuse)
    monkeypatch.setattr(StudentTHMM, "fit_supervised", _refuse)
    monkeypatch.setattr(StudentTHMM, "fit", _refuse)
    for regime_source in ("rules", "hmm"):
        env = gym.make("HimariBTC-v0", data=str(later_path), artifacts=str(run_dir), split="all",
                       regime_source=regime_source, episode_length=None)
        assert env.get_wrapper_attr("config") == bundle.risk_config  # the RSS config of the run
        env.reset(seed=0)
        for action in np.random.default_rng(0).integers(0, 3, 300):
            *_, terminated, truncated, info = env.step(int(action))
            assert np.isfinite(info["equity"])
        env.close()


def test_the_later_file_has_only_the_all_split(run_dir, later_path):
    with pytest.raises(ValueError, match=r"unknown split 'train'; this market has \['all'\]"):
        gym.make("HimariBTC-v0", data=str(later_path), artifacts=str(run_dir))
    # Without the bundle's risk config the RSS layer refuses instead of calibrating on it.
    prepared = stack_module.prepare(str(later_path), artifacts=str(run_dir))
    core = make_himari_env(prepared, split="all", risk=False, episode_length=None).unwrapped
    with pytest.raises(ValueError, match="train' split"):
        risk_action_module.RSSRiskAction(core, None)


def test_pipeline_keyword_is_replaced_by_artifacts(later_path, run_dir):
    with pytest.raises(TypeError, match="artifacts=RUN_DIR"):
        gym.make("HimariBTC-v0", data=str(later_path), pipeline=str(run_dir / "artifacts" / "pipeline"), split="all")


def test_scoring_starts_at_the_later_files_first_bar(run_dir, later_path, later_frame):
    # Fault 5: features restarted on the later file and about 765 warm-up bars were lost.
    env = gym.make("HimariBTC-v0", data=str(later_path), artifacts=str(run_dir), split="all", episode_length=None)
    _, info = env.reset(seed=0)
    assert pd.Timestamp(info["timestamp"], tz="UTC") == later_frame.index[0]
    steps = 0
    while True:
        *_, terminated, truncated, info = env.step(1)
        steps += 1
        if terminated or truncated:
            break
    assert pd.Timestamp(info["timestamp"], tz="UTC") == later_frame.index[-1]
    assert steps == LATER_BARS - 1  # every return inside the file is scored


def test_with_the_tail_the_later_file_is_scored_as_if_the_data_were_contiguous(
        bundle, training_frame, later_frame):
    later = prepare_market(later_frame, artifacts=bundle, cache=False)
    contiguous = prepare_market(pd.concat([training_frame, later_frame]), pipeline=bundle.pipeline, cache=False)
    offset = TRAIN_BARS - later.prepended_bars  # bar i of `later` is bar i + offset of `contiguous`
    scored = slice(later.prepended_bars, None)
    shifted = slice(later.prepended_bars + offset, None)
    # Every finite-window quantity (percentile features, rules regimes) is identical.
    np.testing.assert_array_equal(later.observation_features[scored, -6:], contiguous.observation_features[shifted, -6:])
    np.testing.assert_array_equal(later.regime_ids["rules"][scored], contiguous.regime_ids["rules"][shifted])
    # The rewards (causal 500-bar normalizers) of the same positions agree to rounding.
    first = later.prepended_bars
    a = make_himari_env(later, split="all", risk=False, episode_length=None, context=32)
    b = make_himari_env(contiguous, split="all", risk=False, episode_length=None, context=32)
    a.reset(seed=0)
    b.reset(seed=0, options={"start_bar": first + offset})
    actions = np.random.default_rng(5).integers(0, 3, 500)
    for action in actions:
        _, reward_a, _, _, info_a = a.step(int(action))
        _, reward_b, _, _, info_b = b.step(int(action))
        assert info_a["timestamp"] == info_b["timestamp"]
        assert reward_a == pytest.approx(reward_b, rel=1e-9, abs=1e-12)


def test_the_in_sample_data_get_the_training_splits_and_arrays(bundle, training_frame):
    fitted = prepare_market(training_frame, config=PipelineConfig(fit_hmm=True), cache=False)
    again = prepare_market(training_frame, artifacts=bundle, cache=False)
    assert dict(again.market.splits) == dict(fitted.market.splits)
    np.testing.assert_array_equal(again.observation_features, fitted.observation_features)
    np.testing.assert_array_equal(again.regime_ids["hmm"], fitted.regime_ids["hmm"])


def test_the_memo_is_keyed_by_content_not_object_identity(training_frame, later_path, monkeypatch):
    # Fault 8: prepare() keyed an in-memory pipeline by id(), which Python reuses after
    # garbage collection. Simulate that reuse: every object gets the same id.
    monkeypatch.setattr(stack_module, "id", lambda obj: 1, raising=False)
    first, _ = build_run_artifacts(training_frame, cache=False)
    shifted_frame = training_frame.copy()
    shifted_frame["volume"] *= 2.0
    second, _ = build_run_artifacts(shifted_frame, cache=False)
    assert first.fingerprint() != second.fingerprint()
    a = stack_module.prepare(str(later_path), artifacts=first)
    b = stack_module.prepare(str(later_path), artifacts=second)
    assert b.artifacts is second
    expected = prepare_market(pd.read_parquet(later_path), artifacts=second, cache=False)
    np.testing.assert_array_equal(b.observation_features, expected.observation_features)
    assert not np.array_equal(a.observation_features, b.observation_features)
