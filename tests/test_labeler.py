"""Balanced 4-regime labeler: rules, persistence, causality, and the design-log shares."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from himari_env.constants import CRISIS, HIGH_VOL, LOW_VOL, TRENDING
from himari_env.data import chronological_splits, load_ohlcv
from himari_env.regimes.labeler import (
    TARGET_SHARES,
    WARMUP_LABEL,
    LabelerConfig,
    LabelerInputs,
    label_regimes,
    labeler_inputs,
    labeler_warmup_bars,
    persistence_filter,
    raw_regime_labels,
    regime_label_stats,
    tune_labeler_thresholds,
)
from tests.test_percentiles import make_frame

SMALL = LabelerConfig(window=60, drawdown_bars=24)


def test_priority_rules_crisis_then_high_vol_then_trending_then_low_vol():
    config = LabelerConfig(
        crisis_vol_pct=0.8, crisis_drawdown_pct=0.25, high_vol_pct=0.7, trend_pct=0.6
    )
    inputs = LabelerInputs(
        vol_pct=np.array([0.9, 0.9, 0.75, 0.5, 0.5, 0.75, np.nan]),
        trend_pct=np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.5]),
        drawdown_pct=np.array([0.1, 0.5, 0.1, 0.1, 0.1, 0.9, 0.5]),
    )
    raw = raw_regime_labels(inputs, config)
    # deep drawdown + very high vol; high vol without deep drawdown; high (not crisis) vol
    # with a drawdown; strong trend at moderate vol; calm; high vol; warm-up (NaN input)
    assert raw.tolist() == [CRISIS, HIGH_VOL, HIGH_VOL, TRENDING, LOW_VOL, HIGH_VOL, WARMUP_LABEL]
    assert raw.dtype == np.int8


def test_persistence_switch_needs_k_consecutive_raw_bars():
    raw = np.array([-1, -1, 0, 0, 1, 0, 1, 1, 1, 2, 2, 1, 1, 1, 3], dtype=np.int8)
    filtered = persistence_filter(raw, confirm_bars=3)
    assert filtered.tolist() == [-1, -1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert persistence_filter(raw, confirm_bars=1).tolist() == raw.tolist()


def test_persistence_filter_rejects_label_gap_after_start():
    with pytest.raises(ValueError, match="row 3"):
        persistence_filter(np.array([0, 1, 1, -1, 2]), confirm_bars=2)


def test_warmup_rows_are_minus_one_and_counted():
    frame = make_frame(400, seed=5)
    labels = label_regimes(frame, config=SMALL)
    warmup = labeler_warmup_bars(SMALL)
    assert warmup == max(1 + 23 + 59, 23 + 59)
    assert (labels[:warmup] == WARMUP_LABEL).all()
    assert np.isin(labels[warmup:], [LOW_VOL, TRENDING, HIGH_VOL, CRISIS]).all()
    assert labels.dtype == np.int8
    assert labeler_warmup_bars(LabelerConfig()) == 666


def test_no_single_bar_regime_runs_after_the_persistence_filter():
    frame = make_frame(1500, seed=6)
    labels = label_regimes(frame, config=SMALL)
    stats = regime_label_stats(labels)
    assert stats.min_run_length >= SMALL.confirm_bars
    raw = raw_regime_labels(labeler_inputs(frame, SMALL), SMALL)
    assert regime_label_stats(raw).min_run_length == 1  # the filter is doing real work here


def test_labels_are_causal_changing_later_bars_changes_nothing_before():
    frame = make_frame(900, seed=7)
    t = 700
    before = label_regimes(frame, config=SMALL)
    perturbed = frame.copy()
    perturbed.iloc[t + 1 :, :4] *= np.linspace(0.6, 1.4, len(frame) - t - 1)[:, None]
    perturbed.iloc[t + 1 :, 4] *= 3.0
    after = label_regimes(perturbed, config=SMALL)
    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])
    assert not np.array_equal(after[t + 1 :], before[t + 1 :])


def test_label_stats_shares_and_mean_run_lengths_by_hand():
    ids = np.array([-1, -1, 0, 0, 0, 1, 1, 0, 0, 3, 3, 3, 3])
    stats = regime_label_stats(ids)
    assert stats.n_labeled == 11
    assert stats.shares == pytest.approx((5 / 11, 2 / 11, 0.0, 4 / 11))
    assert stats.mean_run_length[0] == 2.5  # runs of 3 and 2
    assert stats.mean_run_length[1] == 2.0
    assert np.isnan(stats.mean_run_length[2])
    assert stats.mean_run_length[3] == 4.0
    assert stats.n_runs == (2, 1, 0, 1)
    assert stats.to_dict()["shares"]["CRISIS"] == pytest.approx(4 / 11)


def test_unknown_regime_id_is_rejected_with_its_row():
    with pytest.raises(ValueError, match="unknown regime id 7 at row 2"):
        regime_label_stats(np.array([0, 1, 7, 2]))


@pytest.mark.parametrize(
    "field, value",
    [("window", 1), ("confirm_bars", 0), ("trend_pct", 1.5), ("crisis_vol_pct", -0.1)],
)
def test_bad_config_is_rejected_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(LabelerConfig(), **{field: value})


@pytest.mark.realdata
def test_real_file_shares_within_three_points_of_the_design_log(real_data_path):
    frame = load_ohlcv(real_data_path)
    labels = label_regimes(frame)
    splits = chronological_splits(len(frame))
    whole = regime_label_stats(labels[splits["train"].start :])
    train = regime_label_stats(labels[splits["train"]])
    targets = np.asarray(TARGET_SHARES)
    assert np.abs(np.asarray(whole.shares) - targets).max() < 0.03
    assert np.abs(np.asarray(train.shares) - targets).max() < 0.03
    assert whole.min_run_length >= LabelerConfig().confirm_bars
    # The defaults are exactly what one tuning pass on the train rows gives.
    inputs = labeler_inputs(frame, LabelerConfig())
    untuned = replace(LabelerConfig(), crisis_vol_pct=0.5, high_vol_pct=0.5, trend_pct=0.5)
    assert tune_labeler_thresholds(inputs, splits["train"], base_config=untuned) == LabelerConfig()
