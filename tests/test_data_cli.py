"""``himari data validate | synth | download`` through the real CLI entry point."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from himari_env.data import load_ohlcv, synthesize_market


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write_frame_csv(path: Path, n_bars: int, start: str) -> pd.DataFrame:
    index = pd.date_range(start, periods=n_bars, freq="h", name="timestamp")
    close = np.linspace(100.0, 120.0, n_bars)
    frame = pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 3.0},
        index=index,
    )
    frame.to_csv(path, date_format="%Y-%m-%dT%H:%M:%SZ")
    return frame


# ----------------------------------------------------------------------------- validate


def test_validate_real_file_reports_gaps_and_exits_zero(
    real_data_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(capsys, "data", "validate", str(real_data_path))
    assert status == 0, err
    assert "| missing bars" in out and "| 32 " in out
    assert "2021-02-11T03:00:00Z" in out  # a zero-volume bar
    assert "| train | 720   | 26577 | 25857 |" in out

    status, out, _ = run_cli(capsys, "data", "validate", str(real_data_path), "--json")
    document = json.loads(out)
    assert status == 0
    assert document["report"]["missing_bars"] == 32
    assert document["report"]["n_gap_runs"] == 15
    assert document["report"]["zero_volume"]["count"] == 2
    assert [s["n_bars"] for s in document["splits"]["splits"]] == [25_857, 8_619, 8_620]


def test_validate_structural_fault_exits_one_naming_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dup.csv"
    frame = write_frame_csv(path, 10, "2024-01-01T00:00:00Z")
    frame.iloc[[0, 1, 2, 2, 3]].to_csv(path, date_format="%Y-%m-%dT%H:%M:%SZ")
    status, out, err = run_cli(capsys, "data", "validate", str(path))
    assert status == 1
    assert "duplicate timestamp" in out
    # The 4th data row is line 5 of the file (header = line 1), as in the loaders' messages.
    assert "duplicate timestamp: 1 row(s): line 5 at 2024-01-01T02:00:00Z" in err


def test_validate_unparseable_file_exits_two_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n2024-01-01T01:00:00Z,1.5"
    )
    status, _, err = run_cli(capsys, "data", "validate", str(path))
    assert status == 2
    assert "cut.csv: line 3 has 2 of 6 fields" in err


def test_validate_with_unseen_data_adds_it_to_the_split_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_sample = tmp_path / "in.csv"
    later = tmp_path / "later.csv"
    overlapping = tmp_path / "overlap.csv"
    write_frame_csv(in_sample, 800, "2024-01-01T00:00:00Z")
    write_frame_csv(later, 50, "2024-03-01T00:00:00Z")
    write_frame_csv(overlapping, 50, "2024-01-30T00:00:00Z")
    status, out, err = run_cli(capsys, "data", "validate", str(in_sample), "--unseen", str(later))
    assert status == 0, err
    assert "| unseen | 0     | 50   | 50   | 2024-03-01T00:00:00Z |" in out
    status, _, err = run_cli(
        capsys, "data", "validate", str(in_sample), "--unseen", str(overlapping)
    )
    assert status == 1
    assert "must start after the last in-sample bar" in err


# ----------------------------------------------------------------------------- synth


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_synth_writes_the_seeded_market_and_prints_stats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    out_path = tmp_path / f"synthetic{suffix}"
    status, out, err = run_cli(
        capsys, "data", "synth", "--bars", "1500", "--seed", "3", "--out", str(out_path), "--json"
    )
    assert status == 0, err
    market = synthesize_market(n_bars=1500, seed=3)
    pd.testing.assert_frame_equal(load_ohlcv(out_path), market.frame, check_freq=False)
    stats = json.loads(out)
    assert stats["rows"] == 1500
    returns = market.frame["close"].pct_change().dropna()
    assert stats["hourly_return_std"] == pytest.approx(returns.std(), rel=1e-12)
    assert stats["excess_kurtosis"] == pytest.approx(returns.kurt(), rel=1e-12)
    expected_shares = np.bincount(market.regime_ids, minlength=4) / 1500
    assert list(stats["regime_shares"].values()) == pytest.approx(expected_shares.tolist())


def test_synth_table_and_bad_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(
        capsys, "data", "synth", "--bars", "800", "--out", str(tmp_path / "s.csv")
    )
    assert status == 0
    assert "| rows " in out and "| share CRISIS " in out
    status, _, err = run_cli(
        capsys, "data", "synth", "--bars", "800", "--out", str(tmp_path / "s.txt")
    )
    assert status == 2
    assert "suffix must be .csv, .parquet or .pq" in err


# ----------------------------------------------------------------------------- download


def build_mirror(root: Path, months: list[str]) -> None:
    """A local mirror of data.binance.vision holding real monthly ZIPs and checksums."""
    folder = root / "data" / "spot" / "monthly" / "klines" / "BTCUSDT" / "1h"
    folder.mkdir(parents=True)
    for month in months:
        index = pd.date_range(f"{month}-01T00:00:00Z", periods=24, freq="h")
        rows = [
            f"{t * 1_000_000},100.0,101.0,99.0,100.5,7.0,{t * 1_000_000 + 3_599_999_999},703.5,9,3.5,351.75,0"
            for t in index.as_unit("s").asi8.tolist()
        ]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"BTCUSDT-1h-{month}.csv", "\n".join(rows) + "\n")
        name = f"BTCUSDT-1h-{month}.zip"
        (folder / name).write_bytes(buffer.getvalue())
        digest = hashlib.sha256(buffer.getvalue()).hexdigest()
        (folder / f"{name}.CHECKSUM").write_text(f"{digest}  {name}\n")


def test_download_from_a_local_mirror_then_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror, dest = tmp_path / "mirror", tmp_path / "zips"
    build_mirror(mirror, ["2025-01", "2025-02"])
    arguments = ["data", "download", "--start", "2025-01", "--end", "2025-02", "--dest", str(dest),
                 "--base-url", mirror.as_uri(), "--no-progress"]  # fmt: skip
    status, out, err = run_cli(capsys, *arguments)
    assert status == 0, err
    assert out.count("downloaded") == 2
    status, out, _ = run_cli(capsys, *arguments, "--json")
    assert [entry["status"] for entry in json.loads(out)] == ["skipped", "skipped"]
    status, out, _ = run_cli(capsys, "data", "validate", str(dest), "--json")
    report = json.loads(out)["report"]
    assert status == 0
    assert report["n_rows"] == 48
    assert report["n_gap_runs"] == 1  # 2025-01-02 .. 2025-01-31 are not in this mirror


def test_download_of_a_month_missing_on_the_mirror_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    build_mirror(mirror, ["2025-01"])
    status, _, err = run_cli(
        capsys, "data", "download", "--start", "2025-01", "--end", "2025-02",
        "--dest", str(tmp_path / "zips"), "--base-url", mirror.as_uri(), "--no-progress",
    )  # fmt: skip
    assert status == 2
    assert "HTTP 404" in err and "BTCUSDT-1h-2025-02.zip.CHECKSUM" in err
