"""Errors a newcomer meets are one line that names the file, the line or the flag, and what to
do; bars are named the same way everywhere (the file's line number, header = line 1); a
shuffled file shows its structural fault first, with every listing capped."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from himari_env.data import OHLCVValidationError, load_ohlcv, synthesize_market, validate_ohlcv
from himari_env.data.errors import DataFormatError
from tests.conftest import REPO_ROOT

BAD_ROW = 4999  # 0-based data row; line 5001 of a file with a header


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthesize_market(n_bars=6000, seed=4).frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, date_format="%Y-%m-%dT%H:%M:%SZ")
    return path


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------------------- run folder


def test_evaluating_a_folder_that_is_not_a_run_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert status == 2
    one_line(err)
    assert f"not a run folder: {tmp_path} (no config.json in it)" in err
    assert "Errno" not in err and "himari train --run-dir" in err
    status, _, err = run_cli(capsys, "evaluate", str(tmp_path / "missing"))
    assert status == 2 and "(no such folder)" in one_line(err)


# ----------------------------------------------------------------------------- columns


def test_missing_column_hint_names_the_cli_flag_and_the_flag_works(
    frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(frame.rename(columns={"open": "Open", "volume": "Vol"}), tmp_path / "renamed.csv")
    status, _, err = run_cli(capsys, "data", "validate", str(path))
    assert status == 2
    one_line(err)
    assert "missing column(s) ['open', 'volume']" in err
    assert "--open-column NAME --volume-column NAME" in err
    assert "open_column=..., etc." not in err
    status, out, err = run_cli(capsys, "data", "validate", str(path), "--open-column", "Open",
                               "--volume-column", "Vol")
    assert status == 0, err
    assert "| rows " in out


# ----------------------------------------------------------------------------- one convention


def test_loader_and_validation_name_the_same_bar_by_the_same_file_line(
    frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text_cell = frame.astype({"close": object})
    text_cell.iloc[BAD_ROW, text_cell.columns.get_loc("close")] = "abc"
    negative = frame.copy()
    negative.iloc[BAD_ROW, negative.columns.get_loc("close")] = -1.0
    stamp = frame.index[BAD_ROW].strftime("%Y-%m-%dT%H:%M:%SZ")

    status, _, parse_err = run_cli(capsys, "data", "validate", str(write_csv(text_cell, tmp_path / "text.csv")))
    assert status == 2 and "text.csv: line 5001, column 'close': 'abc' is text" in one_line(parse_err)
    status, _, fault_err = run_cli(capsys, "data", "validate", str(write_csv(negative, tmp_path / "neg.csv")))
    assert status == 1 and f"non-positive price: 1 row(s): line 5001 at {stamp}" in one_line(fault_err)
    assert "row 4999" not in parse_err + fault_err and "data row" not in parse_err + fault_err

    # The pipeline's refusal names the file and the same line, and what to do.
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(load_ohlcv(tmp_path / "neg.csv"))
    message = str(caught.value)
    assert f"for {tmp_path / 'neg.csv'}" in message and f"line 5001 at {stamp}" in message
    assert "himari data validate" in message and "\n" not in message
    # A frame that is not a file's rows (sliced, or built in memory) is named by position.
    with pytest.raises(OHLCVValidationError, match=rf"row {BAD_ROW - 10} at {stamp}"):
        validate_ohlcv(load_ohlcv(tmp_path / "neg.csv").iloc[10:])


def test_blank_lines_and_several_files_keep_the_file_line(frame: pd.DataFrame, tmp_path: Path) -> None:
    rows = frame.iloc[:20].copy()
    rows.iloc[9, rows.columns.get_loc("close")] = -1.0
    text = write_csv(rows, tmp_path / "a.csv").read_text().splitlines()
    text.insert(3, "")  # a blank line 4 pushes every later row down by one line
    (tmp_path / "blank.csv").write_text("\n".join(text) + "\n")
    report = validate_ohlcv(load_ohlcv(tmp_path / "blank.csv"), raise_on_error=False)
    assert report.non_positive_price.places == ("line 12",)  # data row 9: line 11 + the blank line

    def kline_zip(name: str, rows: pd.DataFrame) -> Path:
        open_ms = rows.index.as_unit("ms").asi8
        body = "".join(f"{t},{o},{h},{lo},{c},{v},{t + 3_599_999},0,0,0,0,0\n" for t, o, h, lo, c, v in
                       zip(open_ms, *(rows[col] for col in ("open", "high", "low", "close", "volume")), strict=True))
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(f"{name}.csv", body)
        return path

    first = kline_zip("BTCUSDT-1h-2020-01", frame.iloc[:10])
    second_rows = frame.iloc[10:20].copy()
    second_rows.iloc[3, second_rows.columns.get_loc("volume")] = -5.0
    second = kline_zip("BTCUSDT-1h-2020-02", second_rows)
    report = validate_ohlcv(load_ohlcv([first, second]), raise_on_error=False)
    assert report.negative_volume.places == ("line 4 of BTCUSDT-1h-2020-02.zip!BTCUSDT-1h-2020-02.csv",)


def test_a_text_cell_such_as_n_a_is_reported_as_text_not_as_nan(
    frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for text in ("n/a", "null", "NA"):
        table = frame.astype({"close": object})
        table.iloc[BAD_ROW, table.columns.get_loc("close")] = text
        path = write_csv(table, tmp_path / "na.csv")
        with pytest.raises(DataFormatError, match=rf"na\.csv: line 5001, column 'close': '{text}' is text, not a number"):
            load_ohlcv(path)
    status, _, err = run_cli(capsys, "data", "validate", str(path))
    assert status == 2 and "is text, not a number" in one_line(err) and "NaN" not in err
    # An empty cell is a missing number: loaded as NaN, and validation names its line.
    (tmp_path / "empty.csv").write_text(
        (tmp_path / "na.csv").read_text().replace(",NA,", ",,", 1)
    )
    report = validate_ohlcv(load_ohlcv(tmp_path / "empty.csv"), raise_on_error=False)
    assert report.nan_or_inf["close"].places == ("line 5001",)


# ----------------------------------------------------------------------------- listings


def test_a_shuffled_file_shows_its_structural_fault_first_and_every_listing_capped(
    frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shuffled = frame.sample(frac=1.0, random_state=0)
    status, out, err = run_cli(capsys, "data", "validate", str(write_csv(shuffled, tmp_path / "shuffled.csv")))
    assert status == 1
    lines = out.splitlines()
    assert len(lines) < 40, f"{len(lines)} lines"  # it was one gap line per shuffled step (~3,000)
    assert lines[1].startswith("1 structural fault(s)")
    assert lines[2].startswith("  - unsorted timestamp: ") and "more)" in lines[2]
    count = int(lines[2].split("unsorted timestamp: ")[1].split(" ")[0])
    assert count > 2000 and f"(+{count - 3} more)" in lines[2]
    assert "not checked" in out and "timestamps unsorted: sort the file first" in out
    one_line(err)


def test_the_gap_table_lists_ten_runs_and_counts_the_rest(
    frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holes = frame.drop(frame.index[np.arange(15) * 300 + 100])
    status, out, _ = run_cli(capsys, "data", "validate", str(write_csv(holes, tmp_path / "holes.csv")))
    assert status == 0
    # The 10th hole drops original row 2800: the bar after it is row 2791 of the file, line 2793.
    assert "| 10  | line 2793" in out and "| 11  |" not in out
    assert "(+5 more gap runs; --json lists all 15)" in out


# ----------------------------------------------------------------------------- quick start

QUICK_START = '''
import gymnasium as gym
import himari_env  # registers HimariBTC-v0

env = gym.make("HimariBTC-v0", render_mode="rgb_array")  # synthetic market, full stack
observation, info = env.reset(seed=0)
env.action_space.seed(0)  # seeded random actions: the same numbers on every run
for _ in range(200):
    observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    if terminated or truncated:
        observation, info = env.reset()
frame = env.render()  # (H, W, 3) uint8: price, positions, equity, regime shading
print(info["equity"], info["risk_binding"], info["reward_terms"])
'''


def test_the_quick_start_snippet_prints_the_same_numbers_on_every_run(tmp_path: Path) -> None:
    readme = REPO_ROOT / "README.md"
    assert QUICK_START.strip() in readme.read_text(), "the README's quick start is this snippet"
    outputs = [
        subprocess.run([sys.executable, "-c", QUICK_START], cwd=REPO_ROOT, capture_output=True, text=True,
                       check=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                        "HIMARI_CACHE_DIR": str(tmp_path / f"cache{i}")}).stdout
        for i in range(2)
    ]
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 1
    equity = float(outputs[0].split()[0])
    assert 0.0 < equity < 10.0
