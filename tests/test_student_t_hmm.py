"""Student-t HMM: EM and supervised fits, the causal forward filter, persistence, errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM
from scipy import stats

from himari_env.regimes.student_t_hmm import (
    ForwardFilter,
    StudentTHMM,
    fit_student_t,
    forward_filter,
    forward_filter_with_evidence,
    gaussian_hmm_from_labels,
    label_transition_probabilities,
    student_t_log_density,
)

TRUE_MEANS = np.array([[0.0, 0.0], [3.0, -2.0]])
TRUE_SCALES = np.array([[1.0, 0.5], [0.7, 1.5]])
TRUE_DOFS = np.array([4.0, 15.0])
TRUE_TRANSMAT = np.array([[0.95, 0.05], [0.10, 0.90]])


def known_model() -> StudentTHMM:
    model = StudentTHMM(2, init_params="")
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = TRUE_TRANSMAT.copy()
    model.means_ = TRUE_MEANS.copy()
    model.scales_ = TRUE_SCALES.copy()
    model.dofs_ = TRUE_DOFS.copy()
    model.n_features = 2
    return model


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    X, states = known_model().sample(3000, random_state=1)
    return X, states


@pytest.fixture(scope="module")
def em_model(sample) -> StudentTHMM:
    X, _ = sample
    return StudentTHMM(2, random_state=0, n_iter=100, tol=1e-4).fit(X)


def _order(model: StudentTHMM) -> np.ndarray:
    return np.argsort(model.means_[:, 0])  # true state 0 has the smaller first mean


def test_student_t_log_density_matches_scipy_multivariate_t():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 3))
    means = rng.normal(size=(2, 3))
    scales = rng.uniform(0.2, 2.0, size=(2, 3))
    dofs = np.array([3.5, 40.0])
    ours = student_t_log_density(X, means, scales, dofs)
    for k in range(2):
        expected = stats.multivariate_t(means[k], np.diag(scales[k]), df=dofs[k]).logpdf(X)
        np.testing.assert_allclose(ours[:, k], expected, rtol=1e-12)


def test_em_recovers_the_parameters_of_a_known_student_t_hmm(em_model):
    order = _order(em_model)
    np.testing.assert_allclose(em_model.means_[order], TRUE_MEANS, atol=0.1)
    np.testing.assert_allclose(em_model.scales_[order], TRUE_SCALES, rtol=0.2)
    np.testing.assert_allclose(em_model.transmat_[np.ix_(order, order)], TRUE_TRANSMAT, atol=0.03)
    ratio = em_model.dofs_[order] / TRUE_DOFS
    assert ((ratio > 1 / 3) & (ratio < 3)).all(), em_model.dofs_[order]


def test_em_log_likelihood_never_decreases(em_model):
    history = np.asarray(em_model.monitor_.history)
    assert len(history) > 5
    assert np.diff(history).min() >= -1e-9 * np.abs(history).max()


def test_em_with_dofs_fixed_still_never_decreases(sample):
    X, _ = sample
    model = StudentTHMM(2, random_state=1, n_iter=15, tol=0.0, params="stmc").fit(X)
    history = np.asarray(model.monitor_.history)
    assert np.diff(history).min() >= -1e-9 * np.abs(history).max()
    assert (model.dofs_ == model.dof_init).all()


def test_heavy_tailed_outliers_move_t_means_less_than_gaussian_means(sample):
    X, _ = sample
    rng = np.random.default_rng(5)
    contaminated = X.copy()
    hit = rng.choice(len(X), size=60, replace=False)  # 2 % of rows thrown far away
    contaminated[hit] += rng.choice([-1.0, 1.0], size=(60, 2)) * 25.0
    start = np.array([[0.5, 0.5], [2.5, -1.5]])
    variances = np.array([[1.5, 1.0], [1.5, 2.0]])
    common = dict(n_iter=40, tol=0.0, init_params="", random_state=0)
    student = StudentTHMM(2, **common)
    gaussian = GaussianHMM(2, covariance_type="diag", **common)
    for model in (student, gaussian):
        model.startprob_ = np.array([0.5, 0.5])
        model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
        model.means_ = start.copy()
    student.scales_, student.dofs_ = variances.copy(), np.array([10.0, 10.0])
    gaussian.covars_ = variances.copy()
    student.fit(contaminated)
    gaussian.fit(contaminated)
    student_error = np.abs(student.means_ - TRUE_MEANS).max()
    gaussian_error = np.abs(gaussian.means_ - TRUE_MEANS).max()
    assert student_error < 0.15
    assert student_error < 0.5 * gaussian_error


def test_fit_student_t_recovers_a_single_distribution():
    rng = np.random.default_rng(2)
    n = 6000
    weights = rng.chisquare(5.0, n) / 5.0
    X = np.array([1.0, -3.0]) + rng.standard_normal((n, 2)) * np.sqrt([0.5, 2.0]) / np.sqrt(
        weights[:, None]
    )
    mean, scale, dof = fit_student_t(X, n_iter=200)
    np.testing.assert_allclose(mean, [1.0, -3.0], atol=0.05)
    np.testing.assert_allclose(scale, [0.5, 2.0], rtol=0.1)
    assert 3.5 < dof < 7.0


def test_supervised_fit_uses_labels_for_emissions_and_counts_for_transitions(sample):
    X, states = sample
    model = StudentTHMM(2).fit_supervised(X, states, smoothing=1.0, feature_names=["a", "b"])
    np.testing.assert_allclose(model.means_, TRUE_MEANS, atol=0.1)
    np.testing.assert_allclose(model.scales_, TRUE_SCALES, rtol=0.2)
    counts = np.zeros((2, 2))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    np.testing.assert_allclose(model.transmat_, (counts + 1) / (counts + 1).sum(1, keepdims=True))
    label_counts = np.bincount(states, minlength=2) + 1.0
    np.testing.assert_allclose(model.startprob_, label_counts / label_counts.sum())
    assert model.feature_names_ == ("a", "b")


def test_label_transitions_by_hand():
    start, trans = label_transition_probabilities(np.array([0, 0, 1, 1, 1, 0]), 3, smoothing=0.5)
    np.testing.assert_allclose(start, np.array([3.5, 3.5, 0.5]) / 7.5)
    # pairs: 0->0, 0->1, 1->1, 1->1, 1->0
    np.testing.assert_allclose(trans[0], np.array([1.5, 1.5, 0.5]) / 3.5)
    np.testing.assert_allclose(trans[1], np.array([1.5, 2.5, 0.5]) / 4.5)
    np.testing.assert_allclose(trans[2], np.full(3, 1 / 3))


def test_forward_filter_equals_brute_force_enumeration_of_state_paths():
    rng = np.random.default_rng(3)
    k, n = 3, 5
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    log_lik = rng.normal(size=(n, k)) * 2.0
    expected = np.zeros((n, k))
    for t in range(n):
        for path in itertools.product(range(k), repeat=t + 1):
            p = start[path[0]] * np.exp(log_lik[0, path[0]])
            for s in range(1, t + 1):
                p *= trans[path[s - 1], path[s]] * np.exp(log_lik[s, path[s]])
            expected[t, path[-1]] += p
        expected[t] /= expected[t].sum()
    np.testing.assert_allclose(forward_filter(log_lik, start, trans), expected, rtol=1e-12)


def test_streaming_filter_agrees_with_batch_to_1e_10(sample):
    X, states = sample
    model = StudentTHMM(2).fit_supervised(X, states)
    X = X[:600]
    batch = model.filter_proba(X)
    stream = ForwardFilter.from_model(model)
    streamed = np.array([stream.update(x) for x in X])
    assert np.abs(streamed - batch).max() < 1e-10
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-12)


def test_step_log_likelihoods_sum_to_the_sequence_log_likelihood(sample):
    X, states = sample
    model = StudentTHMM(2).fit_supervised(X, states)
    _, step_ll = forward_filter_with_evidence(
        model._compute_log_likelihood(X), model.startprob_, model.transmat_
    )
    assert step_ll.sum() == pytest.approx(model.score(X), rel=1e-10)


def test_filter_is_causal_while_hmmlearn_predict_proba_sees_the_future(sample):
    X, states = sample
    model = StudentTHMM(2).fit_supervised(X, states)
    t = 1500
    changed = X.copy()
    changed[t + 1 :] = changed[t + 1 :][::-1] + 1.0
    np.testing.assert_array_equal(
        model.filter_proba(changed)[: t + 1], model.filter_proba(X)[: t + 1]
    )
    # Forward-backward smoothing: the row at t moves when only later rows change.
    smoothed_before = model.predict_proba(X)[t]
    smoothed_after = model.predict_proba(changed)[t]
    assert not np.array_equal(smoothed_after, smoothed_before)


def test_underflow_falls_back_to_the_log_space_recursion():
    start = np.array([1.0, 0.0])
    trans = np.array([[1.0 - 1e-300, 1e-300], [0.0, 1.0]])
    log_lik = np.array([[0.0, -1.0], [-2000.0, 0.0], [-2000.0, 0.0]])
    proba = forward_filter(log_lik, start, trans)
    step = ForwardFilter(start, trans)
    expected = np.array([step.update_log_likelihood(row) for row in log_lik])
    np.testing.assert_allclose(proba, expected, rtol=1e-12)
    assert proba[0].tolist() == [1.0, 0.0]


def test_impossible_observation_is_reported():
    step = ForwardFilter(np.array([1.0, 0.0]), np.eye(2))
    with pytest.raises(ValueError, match="update 0"):
        step.update_log_likelihood(np.array([-np.inf, 0.0]))


def test_save_load_round_trip_gives_identical_filter_output(sample, tmp_path):
    X, states = sample
    model = StudentTHMM(2).fit_supervised(X, states, feature_names=["a", "b"])
    json_path, npz_path = model.save(tmp_path / "models" / "regime_hmm")
    assert json_path.name == "regime_hmm.json" and npz_path.name == "regime_hmm.npz"
    header = json.loads(json_path.read_text())
    assert header["format"] == "himari.student_t_hmm" and header["n_features"] == 2
    loaded = StudentTHMM.load(tmp_path / "models" / "regime_hmm")
    np.testing.assert_array_equal(loaded.filter_proba(X), model.filter_proba(X))
    assert loaded.feature_names_ == ("a", "b")
    np.testing.assert_array_equal(loaded.dofs_, model.dofs_)


def test_load_rejects_a_foreign_json(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ValueError, match=r"not a himari\.student_t_hmm"):
        StudentTHMM.load(tmp_path / "other")


def test_gaussian_baseline_fitted_from_labels(sample):
    X, states = sample
    model = gaussian_hmm_from_labels(X, states, n_components=2)
    np.testing.assert_allclose(model.means_[1], X[states == 1].mean(axis=0))
    np.testing.assert_allclose(np.diagonal(model.covars_[0]), X[states == 0].var(axis=0))
    student = StudentTHMM(2).fit_supervised(X, states)
    np.testing.assert_array_equal(model.transmat_, student.transmat_)


@pytest.mark.parametrize(
    "regime_ids, message",
    [
        (np.array([0, 1, 4, 1]), "unknown regime id 4 at row 2"),
        (np.array([0, -1, 1, 1]), "unknown regime id -1 at row 1"),
        (np.array([0, 1, 1]), "regime_ids has 3 rows but X has 4"),
        (np.array([0.0, 1.0, 1.0, 0.0]), "must be integers"),
    ],
)
def test_bad_labels_are_rejected(regime_ids, message):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match=message):
        StudentTHMM(2).fit_supervised(X, regime_ids)


def test_regime_without_enough_rows_is_rejected():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match="regime 2 has 0 labeled rows"):
        StudentTHMM(3).fit_supervised(X, np.repeat([0, 1], 10))


def test_nan_rows_are_rejected_naming_the_row(sample):
    X, states = sample
    bad = X.copy()
    bad[17, 1] = np.nan
    with pytest.raises(ValueError, match="row 17"):
        StudentTHMM(2).fit_supervised(bad, states)
    model = StudentTHMM(2).fit_supervised(X, states)
    with pytest.raises(ValueError, match="row 17"):
        model.filter_proba(bad)
    with pytest.raises(ValueError, match="3 features"):
        model.filter_proba(np.zeros((5, 3)))


def test_bad_dof_bounds_are_rejected(sample):
    X, states = sample
    with pytest.raises(ValueError, match="dof_bounds"):
        StudentTHMM(2, dof_bounds=(5.0, 2.0)).fit_supervised(X, states)


def test_fit_regimes_command_reports_both_models_and_writes_artefacts(tmp_path, capsys):
    from experiments.cli import main
    from experiments.commands.regimes import fit_regimes
    from himari_env.data import synthesize_market

    out_dir = tmp_path / "run"
    frame = synthesize_market(n_bars=6000, seed=3).frame
    frame.to_csv(tmp_path / "market.csv", index_label="timestamp")
    status = main(
        ["fit-regimes", "--data", str(tmp_path / "market.csv"), "--json", "--out", str(out_dir)]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    for split in ("train", "test"):
        for model in ("student_t", "gaussian"):
            section = report[split][model]
            assert set(section) >= {"shares", "mean_run_length", "accuracy", "confusion"}
            assert set(section["accuracy"]["per_regime"]) == {
                "LOW_VOL",
                "TRENDING",
                "HIGH_VOL",
                "CRISIS",
            }
            confusion = np.asarray(section["confusion"])
            assert confusion.sum() == report[split]["n_bars"]
            assert section["accuracy"]["overall"] == pytest.approx(
                np.trace(confusion) / confusion.sum()
            )
    assert report["splits"]["train"][0] == report["warmup_bars"] == 720
    loaded = StudentTHMM.load(out_dir / "student_t_hmm")
    series = np.load(out_dir / "regime_series.npz", allow_pickle=False)
    decision = slice(report["warmup_bars"], None)
    np.testing.assert_array_equal(
        loaded.filter_proba(series["features"][decision]), series["student_t_proba"][decision]
    )
    assert json.loads((out_dir / "report.json").read_text())["test"] == report["test"]
    # The same pipeline called directly on the in-memory frame gives the same numbers.
    direct = fit_regimes(frame).report
    assert direct["test"]["student_t"]["confusion"] == report["test"]["student_t"]["confusion"]
