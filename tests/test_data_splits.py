"""Chronological splits of decision bars, their description, and the unseen frame."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari_env.data import (
    DataError,
    OHLCVValidationError,
    chronological_splits,
    describe_splits,
    load_ohlcv,
    validate_unseen,
)


def make_frame(n_bars: int, start: str = "2024-01-01T00:00:00Z") -> pd.DataFrame:
    index = pd.date_range(start, periods=n_bars, freq="h", name="timestamp")
    close = np.linspace(100.0, 110.0, n_bars)
    return pd.DataFrame(
        {"open": close, "high": close + 1.0, "low": close - 1.0, "close": close, "volume": 5.0},
        index=index,
    )


def test_real_file_split_sizes_and_dates(real_data_path: Path) -> None:
    frame = load_ohlcv(real_data_path)
    splits = chronological_splits(len(frame))
    assert splits == {
        "train": slice(720, 26_577),
        "val": slice(26_577, 35_196),
        "test": slice(35_196, 43_816),
    }
    report = describe_splits(frame.index, splits)
    assert report.warmup_bars == 720
    assert [(s.name, s.n_bars, s.first_timestamp, s.last_timestamp) for s in report.splits] == [
        ("train", 25_857, "2020-01-31T00:00:00Z", "2023-01-13T15:00:00Z"),
        ("val", 8_619, "2023-01-13T16:00:00Z", "2024-01-07T19:00:00Z"),
        ("test", 8_620, "2024-01-07T20:00:00Z", "2024-12-31T23:00:00Z"),
    ]


def test_train_and_val_are_floored_and_test_takes_the_remainder() -> None:
    # 1000 usable bars: 0.29 * 1000 is 289.99999999999997 in float arithmetic; the split
    # reads 0.29 as 29/100, so train gets exactly 290 (and 1/6 of 18 bars is 3, not 2).
    splits = chronological_splits(1_010, warmup_bars=10, fractions=(0.29, 0.31, 0.40))
    assert splits == {"train": slice(10, 300), "val": slice(300, 610), "test": slice(610, 1_010)}
    one_sixth = chronological_splits(19, warmup_bars=1, fractions=(1 / 6, 3 / 6, 2 / 6))
    assert one_sixth["train"] == slice(1, 4)
    splits = chronological_splits(17, warmup_bars=0)
    assert splits == {"train": slice(0, 10), "val": slice(10, 13), "test": slice(13, 17)}


@settings(max_examples=25, deadline=None)
@given(
    n_bars=st.integers(10, 100_000),
    warmup_fraction=st.floats(0.0, 0.9),
    train=st.integers(1, 8),
    val=st.integers(1, 8),
)
def test_splits_are_contiguous_ordered_and_cover_every_decision_bar(
    n_bars: int, warmup_fraction: float, train: int, val: int
) -> None:
    total = train + val + 2
    fractions = (train / total, val / total, 2 / total)
    warmup = int(n_bars * warmup_fraction)
    try:
        splits = chronological_splits(n_bars, warmup_bars=warmup, fractions=fractions)
    except DataError as error:
        assert "would be empty" in str(error)
        return
    assert splits["train"].start == warmup
    assert splits["train"].stop == splits["val"].start
    assert splits["val"].stop == splits["test"].start
    assert splits["test"].stop == n_bars
    usable = n_bars - warmup
    assert splits["train"].stop - warmup == int(usable * train // total)
    assert all(s.stop > s.start for s in splits.values())


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"n_bars": 1000, "fractions": (0.6, 0.2, 0.3)}, "fractions must sum to 1"),
        ({"n_bars": 1000, "fractions": (0.8, 0.2)}, "must have 3 entries"),
        ({"n_bars": 1000, "fractions": (1.2, -0.1, -0.1)}, "val share must be a positive number"),
        ({"n_bars": 100, "warmup_bars": 100}, "warmup_bars=100 leaves no decision bars"),
        ({"n_bars": 100, "warmup_bars": -1}, "warmup_bars must be a non-negative integer"),
        ({"n_bars": 2.5}, "n_bars must be a positive integer"),
        ({"n_bars": 724, "warmup_bars": 720}, "split 'val' would be empty"),
    ],
)
def test_bad_arguments_are_named(arguments: dict, fragment: str) -> None:
    arguments = dict(arguments)
    n_bars = arguments.pop("n_bars")
    with pytest.raises(DataError, match=re.escape(fragment)):
        chronological_splits(n_bars, **arguments)


def test_describe_splits_rejects_a_range_outside_the_index() -> None:
    index = make_frame(50).index
    with pytest.raises(DataError, match="split 'test'"):
        describe_splits(index, {"train": slice(0, 30), "test": slice(30, 60)})


def test_unseen_frame_after_the_in_sample_data_is_validated_and_described() -> None:
    in_sample = make_frame(100)
    unseen = make_frame(40, start="2024-01-06T00:00:00Z")  # 20 hours after the last bar
    report = validate_unseen(in_sample.index, unseen)
    assert report.is_valid and report.n_rows == 40
    splits = chronological_splits(100, warmup_bars=10)
    described = describe_splits(in_sample.index, splits, unseen_index=unseen.index)
    assert [s.name for s in described.splits] == ["train", "val", "test", "unseen"]
    assert described["unseen"].n_bars == 40
    assert described["unseen"].first_timestamp == "2024-01-06T00:00:00Z"
    assert described.to_dict()["splits"][-1]["last_timestamp"] == "2024-01-07T15:00:00Z"


def test_unseen_frame_overlapping_the_in_sample_data_is_rejected() -> None:
    in_sample = make_frame(100)
    overlapping = make_frame(40, start="2024-01-05T03:00:00Z")  # the last in-sample bar
    with pytest.raises(OHLCVValidationError) as caught:
        validate_unseen(in_sample.index, overlapping, raise_on_error=False)
    assert "after the last in-sample bar 2024-01-05T03:00:00Z" in str(caught.value)
    assert "earliest bar is 2024-01-05T03:00:00Z (unseen row 0)" in str(caught.value)
    with pytest.raises(OHLCVValidationError):
        describe_splits(
            in_sample.index,
            chronological_splits(100, warmup_bars=10),
            unseen_index=overlapping.index,
        )


def test_unseen_frame_is_validated_the_same_way() -> None:
    in_sample = make_frame(100)
    unseen = make_frame(10, start="2024-02-01T00:00:00Z")
    unseen.loc[unseen.index[4], "close"] = -3.0
    with pytest.raises(
        OHLCVValidationError, match=r"non-positive price: 1 row.*row 4 at 2024-02-01T04:00:00Z"
    ):
        validate_unseen(in_sample.index, unseen)
