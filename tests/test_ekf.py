"""Specification of the EKF denoiser: filter, fast paths, causality, metrics, calibration, CLI."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.commands import ekf as ekf_command
from himari_env.features.ekf import (
    SCORE_WEIGHTS,
    EKFConfig,
    EKFMetrics,
    EKFStream,
    calibrate_ekf,
    centred_trend_proxy,
    ekf_filter,
    ekf_filter_reference,
    evaluate_denoiser,
    filter_scale_to_price,
    lag_bars,
    noise_reduction,
    overall_score,
    price_to_filter_scale,
    same_direction_ratio,
    signal_correlation,
    smoothness_improvement,
    trend_correlation,
)

EXACT = {"rtol": 1e-9, "atol": 1e-9}


def random_walk(n: int, seed: int, start: float = 1000.0, step_std: float = 0.7) -> np.ndarray:
    return start + np.cumsum(np.random.default_rng(seed).normal(0.0, step_std, n))


# --------------------------------------------------------------------------- configuration


def test_config_defaults_are_the_design_log_values() -> None:
    config = EKFConfig()
    assert (config.process_noise, config.measurement_noise) == (0.001, 0.1)
    assert config.noise_ratio == pytest.approx(0.01)


@pytest.mark.parametrize("argument", ["process_noise", "measurement_noise"])
@pytest.mark.parametrize("bad_value", [0.0, -0.1, math.nan, math.inf, True, "0.1"])
def test_config_rejects_non_positive_or_non_numeric_noise_naming_the_argument(
    argument: str, bad_value: object
) -> None:
    with pytest.raises(ValueError, match=argument):
        EKFConfig(**{argument: bad_value})


def test_config_round_trips_through_a_json_file(tmp_path) -> None:
    config = EKFConfig(process_noise=3e-4, measurement_noise=0.25)
    path = tmp_path / "ekf_config.json"
    config.to_json(path)
    assert json.loads(path.read_text())["kind"] == "himari.ekf_config"
    assert EKFConfig.from_json(path) == config


@pytest.mark.parametrize(
    "document, message",
    [
        (
            {
                "kind": "something.else",
                "version": 1,
                "process_noise": 0.1,
                "measurement_noise": 0.1,
            },
            "kind",
        ),
        (
            {
                "kind": "himari.ekf_config",
                "version": 9,
                "process_noise": 0.1,
                "measurement_noise": 0.1,
            },
            "version",
        ),
        ({"kind": "himari.ekf_config", "version": 1, "process_noise": 0.1}, "missing"),
        (
            {
                "kind": "himari.ekf_config",
                "version": 1,
                "process_noise": 0.1,
                "measurement_noise": 0.1,
                "x": 1,
            },
            "unknown",
        ),
        (
            {
                "kind": "himari.ekf_config",
                "version": 1,
                "process_noise": -1.0,
                "measurement_noise": 0.1,
            },
            "process_noise",
        ),
    ],
)
def test_config_file_with_wrong_content_is_rejected(tmp_path, document: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=message):
        EKFConfig.from_json(path)


def test_price_scale_is_percent_log_price_and_rejects_non_positive_prices() -> None:
    prices = np.array([100.0, 101.0, 99.0])
    scaled = price_to_filter_scale(prices)
    assert scaled[1] - scaled[0] == pytest.approx(100 * math.log(1.01))
    np.testing.assert_allclose(filter_scale_to_price(scaled), prices, rtol=1e-14)
    with pytest.raises(ValueError, match="row 2"):
        price_to_filter_scale(np.array([1.0, 2.0, 0.0]))


# --------------------------------------------------------------------------- the filter


def test_filtered_signal_is_closer_to_the_true_signal_than_the_noisy_input() -> None:
    bars = np.arange(4000, dtype=float)
    true_signal = 0.01 * bars + 5.0 * np.sin(2 * np.pi * bars / 500)
    noisy = true_signal + np.random.default_rng(7).normal(0.0, 1.0, bars.size)
    filtered = ekf_filter(noisy, EKFConfig(process_noise=1e-3, measurement_noise=1.0))
    raw_rmse = np.sqrt(np.mean((noisy - true_signal) ** 2))
    filtered_rmse = np.sqrt(np.mean((filtered - true_signal) ** 2))
    assert filtered_rmse < raw_rmse


def test_filter_starts_at_the_first_finite_value_and_leaves_nan_rows_nan() -> None:
    series = np.array([np.nan, np.nan, 5.0, 6.0, np.nan, 7.0])
    filtered = ekf_filter(series, EKFConfig())
    assert np.isnan(filtered[[0, 1, 4]]).all()
    assert filtered[2] == 5.0
    assert np.isfinite(filtered[[3, 5]]).all()
    np.testing.assert_allclose(
        filtered, ekf_filter_reference(series, EKFConfig()), equal_nan=True, **EXACT
    )


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_bars=st.integers(1, 400),
    log_q=st.floats(-6.0, 0.0),
    log_r=st.floats(-3.0, 1.0),
)
def test_vectorized_filter_equals_filterpy_reference_on_random_walks(
    seed: int, n_bars: int, log_q: float, log_r: float
) -> None:
    config = EKFConfig(process_noise=10.0**log_q, measurement_noise=10.0**log_r)
    series = random_walk(n_bars, seed)
    np.testing.assert_allclose(
        ekf_filter(series, config), ekf_filter_reference(series, config), **EXACT
    )


def test_vectorized_filter_equals_reference_on_columns_with_different_warmups() -> None:
    config = EKFConfig()
    n_bars = 700
    columns = np.column_stack(
        [random_walk(n_bars, seed, start=0.0, step_std=1.0) for seed in range(6)]
    )
    columns[:17, 1] = np.nan  # short warm-up
    columns[:450, 2] = np.nan  # warm-up longer than the gain's transient
    columns[:, 3] = np.nan  # never starts
    columns[:-1, 4] = np.nan  # one finite value, on the last row
    columns[[100, 101, 350], 5] = np.nan  # NaN after the start: skipped, not filled
    filtered = ekf_filter(columns, config)
    for column in range(columns.shape[1]):
        expected = ekf_filter_reference(columns[:, column], config)
        np.testing.assert_allclose(filtered[:, column], expected, equal_nan=True, **EXACT)
    np.testing.assert_array_equal(np.isnan(filtered), np.isnan(columns))


@pytest.mark.realdata
def test_vectorized_filter_equals_reference_on_real_closes(real_data_path) -> None:
    frame = pd.read_csv(real_data_path, parse_dates=["timestamp"], index_col="timestamp")
    closes = price_to_filter_scale(frame["close"].to_numpy()[-8_000:])
    config = EKFConfig()
    fast = ekf_filter(closes, config)
    np.testing.assert_allclose(fast, ekf_filter_reference(closes, config), **EXACT)
    # The same closes as a column next to a lagged-start copy: each column is its own filter.
    both = np.column_stack([closes, np.where(np.arange(closes.size) < 1_000, np.nan, closes)])
    filtered_both = ekf_filter(both, config)
    np.testing.assert_allclose(filtered_both[:, 0], fast, **EXACT)
    np.testing.assert_allclose(
        filtered_both[1_000:, 1], ekf_filter_reference(closes[1_000:], config), **EXACT
    )


def test_filter_keeps_the_input_shape_and_handles_empty_input() -> None:
    assert ekf_filter(np.empty(0), EKFConfig()).shape == (0,)
    assert ekf_filter(np.empty((0, 3)), EKFConfig()).shape == (0, 3)
    assert ekf_filter(np.ones((5, 2)), EKFConfig()).shape == (5, 2)


def test_filter_takes_44_feature_columns_of_the_real_length_in_one_call() -> None:
    features = np.random.default_rng(0).normal(size=(43_816, 44))
    features[:200, ::3] = np.nan
    filtered = ekf_filter(features, EKFConfig())
    assert filtered.shape == features.shape
    np.testing.assert_array_equal(np.isnan(filtered), np.isnan(features))


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([1.0, np.inf, 2.0]), "row 1"),
        (np.array([[1.0, 2.0], [3.0, -np.inf]]), "row 1, column 1"),
        (np.ones((2, 2, 2)), "dimension"),
        (np.array(["a", "b"]), "real numbers"),
        (np.array([True, False]), "real numbers"),
    ],
)
def test_bad_filter_input_is_rejected_with_its_position(values: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ekf_filter(values, EKFConfig())


def test_reference_rejects_two_dimensional_input() -> None:
    with pytest.raises(ValueError, match="dimension"):
        ekf_filter_reference(np.ones((3, 2)), EKFConfig())


# --------------------------------------------------------------------------- streaming


def test_stream_equals_batch_on_a_long_random_walk() -> None:
    config = EKFConfig()
    series = random_walk(3_000, seed=3)
    stream = EKFStream(config)
    streamed = np.array([stream.update(value) for value in series])
    batch = ekf_filter(series, config)
    np.testing.assert_allclose(streamed, batch, rtol=1e-12, atol=0.0)
    # While the gain is still converging both run the very same arithmetic.
    np.testing.assert_array_equal(streamed[:50], batch[:50])


def test_stream_over_columns_equals_batch_with_different_warmups() -> None:
    config = EKFConfig(process_noise=1e-4, measurement_noise=0.5)
    columns = np.column_stack([random_walk(1_200, seed, start=0.0) for seed in range(4)])
    columns[:30, 1] = np.nan
    columns[:700, 2] = np.nan
    columns[[400, 900], 3] = np.nan
    stream = EKFStream(config, n_columns=4)
    streamed = np.vstack([stream.update(row) for row in columns])
    np.testing.assert_allclose(
        streamed, ekf_filter(columns, config), rtol=1e-12, atol=0.0, equal_nan=True
    )


def test_stream_reset_forgets_the_past_and_rejects_wrong_widths() -> None:
    stream = EKFStream(EKFConfig(), n_columns=2)
    stream.update(np.array([1.0, 2.0]))
    stream.reset()
    np.testing.assert_array_equal(stream.update(np.array([5.0, np.nan])), [5.0, np.nan])
    with pytest.raises(ValueError, match="shape"):
        stream.update(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="n_columns"):
        EKFStream(EKFConfig(), n_columns=0)


# --------------------------------------------------------------------------- causality


@pytest.mark.parametrize("cut", [5, 60, 777])
def test_changing_or_removing_bars_after_t_changes_no_output_at_or_before_t(cut: int) -> None:
    config = EKFConfig()
    rng = np.random.default_rng(cut)
    columns = np.column_stack([random_walk(1_000, seed, start=0.0) for seed in range(3)])
    columns[:40, 1] = np.nan
    columns[:600, 2] = np.nan
    original = ekf_filter(columns, config)

    perturbed = columns.copy()
    perturbed[cut + 1 :] += rng.normal(0.0, 50.0, perturbed[cut + 1 :].shape)
    perturbed[cut + 1 :: 7, 0] = np.nan
    np.testing.assert_array_equal(ekf_filter(perturbed, config)[: cut + 1], original[: cut + 1])
    np.testing.assert_array_equal(ekf_filter(columns[: cut + 1], config), original[: cut + 1])
    np.testing.assert_array_equal(ekf_filter(columns[: cut + 1, 0], config), original[: cut + 1, 0])


# --------------------------------------------------------------------------- metrics


def test_lag_of_a_copy_delayed_by_three_bars_is_three() -> None:
    raw = random_walk(2_000, seed=11)
    assert lag_bars(raw[3:], raw[:-3], max_lag=10) == 3
    assert lag_bars(raw, raw, max_lag=10) == 0


def test_identity_filter_metrics() -> None:
    raw = random_walk(1_000, seed=12)
    assert smoothness_improvement(raw, raw) == 1.0
    assert same_direction_ratio(raw, raw) == 1.0
    assert signal_correlation(raw, raw) == pytest.approx(1.0, abs=1e-15)
    assert noise_reduction(raw, raw) == 1.0


def test_smoothness_is_the_ratio_of_first_difference_deviations() -> None:
    raw = np.array([0.0, 2.0, 0.0, 2.0, 0.0, 2.0])
    half_moves = raw / 2.0
    assert smoothness_improvement(raw, half_moves) == pytest.approx(2.0)


def test_same_direction_counts_matching_signs_of_bar_changes() -> None:
    raw = np.array([0.0, 1.0, 2.0, 1.0, 0.0])  # up, up, down, down
    filtered = np.array([0.0, 1.0, 0.5, 0.0, 1.0])  # up, down, down, up
    assert same_direction_ratio(raw, filtered) == 0.5
    assert same_direction_ratio(raw, -raw) == 0.0


def test_signal_correlation_is_one_for_an_affine_copy_and_minus_one_when_mirrored() -> None:
    raw = random_walk(300, seed=13)
    assert signal_correlation(raw, 3.0 * raw + 7.0) == pytest.approx(1.0)
    assert signal_correlation(raw, -raw) == pytest.approx(-1.0)


def test_centred_trend_proxy_is_a_centred_mean_with_nan_edges() -> None:
    raw = np.array([1.0, 2.0, 6.0, 4.0, 5.0, 9.0, 7.0])
    trend = centred_trend_proxy(raw, window=3)
    assert np.isnan(trend[[0, -1]]).all()
    np.testing.assert_allclose(trend[1:-1], [3.0, 4.0, 5.0, 6.0, 7.0])
    ramp = np.arange(50, dtype=float)
    np.testing.assert_allclose(centred_trend_proxy(ramp, 25)[12:-12], ramp[12:-12])
    with pytest.raises(ValueError, match="window"):
        centred_trend_proxy(raw, window=4)


def test_noise_reduction_and_trend_correlation_against_the_proxy() -> None:
    raw = random_walk(500, seed=14)
    trend = centred_trend_proxy(raw, 25)
    # Halfway between raw and its trend: half the deviation, so twice the noise reduction.
    halfway = np.where(np.isnan(trend), raw, 0.5 * (raw + trend))
    assert noise_reduction(raw, halfway, 25) == pytest.approx(2.0)
    on_trend = np.where(np.isnan(trend), raw, trend)
    assert trend_correlation(raw, on_trend, 25) == pytest.approx(1.0)


def test_overall_score_follows_its_written_formula() -> None:
    assert sum(SCORE_WEIGHTS.values()) == pytest.approx(1.0)
    # 0.25*(1 - 1/4) + 0.15/(1 + 0) + 0.10*1 + 0.25*(2*0.75 - 1) + 0.15*(1 - 1/4) + 0.10*1
    assert overall_score(2.0, 0, 1.0, 0.75, 2.0, 1.0) == pytest.approx(0.775)
    # A lag of 1 bar halves the lag term; a rougher-than-raw filter earns no smoothness.
    assert overall_score(0.5, 1, 1.0, 0.75, 2.0, 1.0) == pytest.approx(0.775 - 0.1875 - 0.075)


def test_evaluate_denoiser_returns_every_metric_and_rejects_bad_pairs() -> None:
    raw = random_walk(1_500, seed=15)
    metrics = evaluate_denoiser(raw, ekf_filter(raw, EKFConfig()))
    assert isinstance(metrics, EKFMetrics)
    as_dict = metrics.to_dict()
    assert set(as_dict) == {*SCORE_WEIGHTS, "overall_score"}
    assert metrics.smoothness_improvement > 1.0
    assert metrics.overall_score == pytest.approx(
        overall_score(*(as_dict[name] for name in SCORE_WEIGHTS))
    )
    with pytest.raises(ValueError, match="filtered holds NaN at row 0"):
        evaluate_denoiser(raw, np.where(np.arange(raw.size) == 0, np.nan, raw))
    with pytest.raises(ValueError, match="shape"):
        evaluate_denoiser(raw, raw[:-1])
    with pytest.raises(ValueError, match="constant"):
        evaluate_denoiser(raw, np.ones_like(raw))


# --------------------------------------------------------------------------- calibration


def test_calibration_chooses_on_train_only_and_reports_test() -> None:
    prices = 30_000.0 * np.exp(random_walk(3_000, seed=21, start=0.0, step_std=0.007))
    train, test = prices[:2_000], prices[2_000:]
    grid_q, grid_r = (1e-4, 1e-3, 1e-2), (0.1, 1.0)
    result = calibrate_ekf(train, test, grid_q, grid_r)
    assert len(result.grid) == 6
    assert result.config == result.ranked_grid()[0].config
    best = max(point.train.overall_score for point in result.grid)
    assert result.train.overall_score == pytest.approx(best, abs=1e-9)
    # The test prices only report: other test prices, same choice and same grid.
    other = calibrate_ekf(train, test[::-1].copy(), grid_q, grid_r)
    assert other.config == result.config
    assert [p.train for p in other.grid] == [p.train for p in result.grid]
    scaled_test = price_to_filter_scale(test)
    assert result.test == evaluate_denoiser(scaled_test, ekf_filter(scaled_test, result.config))


def test_configs_with_the_same_noise_ratio_score_the_same() -> None:
    prices = 100.0 * np.exp(random_walk(1_000, seed=22, start=0.0, step_std=0.01))
    result = calibrate_ekf(prices[:600], prices[600:], grid_q=(1e-4, 1e-3), grid_r=(0.01, 0.1))
    by_config = {(p.config.process_noise, p.config.measurement_noise): p.train for p in result.grid}
    assert by_config[(1e-4, 0.01)].overall_score == pytest.approx(
        by_config[(1e-3, 0.1)].overall_score, abs=1e-12
    )


def test_calibration_rejects_bad_grids_naming_them() -> None:
    prices = 100.0 * np.exp(random_walk(400, seed=23, start=0.0, step_std=0.01))
    with pytest.raises(ValueError, match="grid_q"):
        calibrate_ekf(prices[:300], prices[300:], grid_q=(), grid_r=(0.1,))
    with pytest.raises(ValueError, match=r"grid_q\[1\]"):
        calibrate_ekf(prices[:300], prices[300:], grid_q=(1e-3, -1.0), grid_r=(0.1,))


# --------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    # The command's own register(), on a parser laid out as experiments.cli builds it.
    parser = argparse.ArgumentParser(prog="himari")
    root = parser.add_subparsers(dest="command", required=True)
    calibrate = root.add_parser("calibrate").add_subparsers(dest="calibrate_command", required=True)
    ekf_command.register(root, {"calibrate": calibrate})
    args = parser.parse_args(argv)
    return args.func(args)


SMALL_CLI = [
    "calibrate",
    "ekf",
    "--synthetic-bars",
    "2500",
    "--grid-q",
    "1e-4",
    "1e-3",
    "--grid-r",
    "0.1",
]


def test_cli_json_is_one_document_with_train_test_config_and_grid(capsys, tmp_path) -> None:
    assert run_cli([*SMALL_CLI, "--json", "--out", str(tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"train", "test", "config", "grid"} <= set(document)
    assert len(document["grid"]) == 2
    assert document["source"]["data"] == "synthetic"
    chosen = EKFConfig.from_json(tmp_path / "ekf_config.json")
    assert chosen == EKFConfig.from_dict(document["config"])
    assert json.loads((tmp_path / "ekf_calibration.json").read_text())["test"] == document["test"]


def test_cli_prints_the_grid_and_the_design_log_table(capsys, tmp_path) -> None:
    csv_path = tmp_path / "market.csv"
    from himari_env.data import synthesize_market

    synthesize_market(n_bars=2_500, seed=4).frame.to_csv(csv_path)
    assert (
        run_cli(
            ["calibrate", "ekf", "--data", str(csv_path), "--grid-q", "1e-3", "--grid-r", "0.1"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| Metric" in out and "| Training" in out and "| Diff" in out
    for label in (
        "Smoothness improvement",
        "Lag (bars)",
        "Signal correlation",
        "Same direction ratio",
        "Noise reduction",
        "Trend correlation",
        "Overall score",
    ):
        assert f"| {label}" in out
    assert "Train score" in out
