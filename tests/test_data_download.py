"""Downloader, offline: real ZIPs and checksum files built here, served by an in-memory
server object that speaks the downloader's transport protocol."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari_env.data import (
    DataError,
    DownloadError,
    download_binance_klines,
    load_ohlcv,
    month_range,
    monthly_kline_url,
)

ROOT = "https://data.binance.vision/data/spot/monthly/klines/BTCUSDT/1h"


def kline_zip(month: str) -> tuple[bytes, pd.DataFrame]:
    """A real Binance-format monthly ZIP (first 50 hours of the month) and its frame."""
    index = pd.date_range(f"{month}-01T00:00:00Z", periods=50, freq="h", name="timestamp")
    rng = np.random.default_rng(int(month.replace("-", "")))
    close = 90_000.0 + np.cumsum(rng.normal(0, 100, 50))
    frame = pd.DataFrame(
        {"open": close - 5, "high": close + 50, "low": close - 60, "close": close, "volume": 10.0},
        index=index,
    )
    # Binance switched spot dumps to microsecond open times in 2025.
    scale = 1_000_000 if month >= "2025-01" else 1_000
    lines = []
    for stamp, (o, h, lo, c, v) in zip(
        index.as_unit("s").asi8.tolist(), frame.to_numpy().tolist(), strict=True
    ):
        open_time = stamp * scale
        lines.append(
            f"{open_time},{o},{h},{lo},{c},{v},{open_time + 3600 * scale - 1},{v * c},100,5.0,{v * c / 2},0"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"BTCUSDT-1h-{month}.csv", "\n".join(lines) + "\n")
    return buffer.getvalue(), frame


class FakeBinanceServer:
    """In-memory data.binance.vision: serves ZIPs and their .CHECKSUM files.

    Options mimic real server behaviour: honour or ignore ``Range``, drop the connection
    after some bytes (once), be unreachable, or serve corrupted bytes.
    """

    def __init__(self, months: list[str], *, chunk_bytes: int = 1_000) -> None:
        self.files: dict[str, bytes] = {}
        self.frames: dict[str, pd.DataFrame] = {}
        for month in months:
            payload, frame = kline_zip(month)
            name = f"BTCUSDT-1h-{month}.zip"
            self.files[f"{ROOT}/{name}"] = payload
            digest = hashlib.sha256(payload).hexdigest()
            self.files[f"{ROOT}/{name}.CHECKSUM"] = f"{digest}  {name}\n".encode()
            self.frames[month] = frame
        self.chunk_bytes = chunk_bytes
        self.honour_range = True
        self.offline = False
        self.drop_after_bytes: int | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []

    def get(
        self, url: str, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], Iterator[bytes]]:
        self.requests.append((url, dict(headers)))
        if self.offline:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        if url not in self.files:
            return 404, {}, iter([b"<Error>NoSuchKey</Error>"])
        body = self.files[url]
        status, start = 200, 0
        if "Range" in headers and self.honour_range:
            start = int(headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                return 416, {}, iter([b""])
            status = 206
        payload = body[start:]
        return status, {"Content-Length": str(len(payload))}, self._stream(payload)

    def _stream(self, payload: bytes) -> Iterator[bytes]:
        sent = 0
        for offset in range(0, len(payload), self.chunk_bytes):
            chunk = payload[offset : offset + self.chunk_bytes]
            if self.drop_after_bytes is not None and sent + len(chunk) > self.drop_after_bytes:
                keep = self.drop_after_bytes - sent
                self.drop_after_bytes = None  # the connection drops once
                yield chunk[:keep]
                raise ConnectionResetError("connection reset by peer")
            sent += len(chunk)
            yield chunk

    def zip_requests(self) -> list[tuple[str, dict[str, str]]]:
        return [(url, headers) for url, headers in self.requests if url.endswith(".zip")]


def test_url_layout_of_monthly_spot_klines() -> None:
    assert monthly_kline_url("BTCUSDT", "1h", "2025-01") == f"{ROOT}/BTCUSDT-1h-2025-01.zip"


def test_month_range_crosses_years_and_rejects_bad_months() -> None:
    assert month_range("2024-11", "2025-02") == ["2024-11", "2024-12", "2025-01", "2025-02"]
    with pytest.raises(DataError, match="end_month='2024-01' is before start_month='2024-02'"):
        month_range("2024-02", "2024-01")
    with pytest.raises(DataError, match="start_month='2024-13'"):
        month_range("2024-13", "2025-01")


def test_downloads_verify_and_load_as_one_frame(tmp_path: Path) -> None:
    months = ["2024-12", "2025-01", "2025-02"]
    server = FakeBinanceServer(months)
    results = download_binance_klines(
        "BTCUSDT", "1h", "2024-12", "2025-02", tmp_path, transport=server, progress=False
    )
    assert [(r.month, r.status) for r in results] == [(m, "downloaded") for m in months]
    for result in results:
        assert result.path.read_bytes() == server.files[f"{ROOT}/{result.path.name}"]
        assert (tmp_path / (result.path.name + ".CHECKSUM")).is_file()
    assert not list(tmp_path.glob("*.part"))
    expected = pd.concat([server.frames[m] for m in months])
    pd.testing.assert_frame_equal(load_ohlcv(tmp_path), expected, check_freq=False)


def test_files_present_with_matching_checksum_are_skipped(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-03", "2025-04"])
    download_binance_klines(
        "BTCUSDT", "1h", "2025-03", "2025-04", tmp_path, transport=server, progress=False
    )
    server.requests.clear()
    results = download_binance_klines(
        "BTCUSDT", "1h", "2025-03", "2025-04", tmp_path, transport=server, progress=False
    )
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert server.zip_requests() == []  # only the checksum files were fetched


def test_present_file_with_wrong_content_is_downloaded_again(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-03"])
    stale = tmp_path / "BTCUSDT-1h-2025-03.zip"
    stale.write_bytes(b"stale bytes")
    (result,) = download_binance_klines(
        "BTCUSDT", "1h", "2025-03", "2025-03", tmp_path, transport=server, progress=False
    )
    assert result.status == "downloaded"
    assert stale.read_bytes() == server.files[f"{ROOT}/{stale.name}"]


def test_interrupted_download_resumes_with_a_range_request(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-05"], chunk_bytes=700)
    server.drop_after_bytes = 2_000
    with pytest.raises(
        DownloadError, match=r"connection lost .* after 2000 bytes .* run again to resume"
    ):
        download_binance_klines(
            "BTCUSDT", "1h", "2025-05", "2025-05", tmp_path, transport=server, progress=False
        )
    part = tmp_path / "BTCUSDT-1h-2025-05.zip.part"
    assert part.stat().st_size == 2_000
    assert not (tmp_path / "BTCUSDT-1h-2025-05.zip").exists()

    server.requests.clear()
    (result,) = download_binance_klines(
        "BTCUSDT", "1h", "2025-05", "2025-05", tmp_path, transport=server, progress=False
    )
    assert result.status == "resumed"
    assert server.zip_requests() == [(f"{ROOT}/BTCUSDT-1h-2025-05.zip", {"Range": "bytes=2000-"})]
    assert result.path.read_bytes() == server.files[f"{ROOT}/BTCUSDT-1h-2025-05.zip"]
    assert not part.exists()


def test_server_that_ignores_range_restarts_the_file_cleanly(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-06"])
    server.honour_range = False
    part = tmp_path / "BTCUSDT-1h-2025-06.zip.part"
    part.write_bytes(server.files[f"{ROOT}/BTCUSDT-1h-2025-06.zip"][:1_500])
    (result,) = download_binance_klines(
        "BTCUSDT", "1h", "2025-06", "2025-06", tmp_path, transport=server, progress=False
    )
    assert server.zip_requests()[0][1] == {"Range": "bytes=1500-"}
    assert result.status == "downloaded"  # 200 answer: written from byte 0, not appended
    assert result.path.read_bytes() == server.files[f"{ROOT}/BTCUSDT-1h-2025-06.zip"]


def test_checksum_mismatch_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-07"])
    url = f"{ROOT}/BTCUSDT-1h-2025-07.zip"
    server.files[url] = server.files[url][:-10] + b"corrupted!"
    with pytest.raises(
        DownloadError,
        match=r"checksum mismatch for BTCUSDT-1h-2025-07\.zip: expected sha256 [0-9a-f]{64}, got",
    ):
        download_binance_klines(
            "BTCUSDT", "1h", "2025-07", "2025-07", tmp_path, transport=server, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_offline_is_a_clear_error_naming_host_and_folder(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-01"])
    server.offline = True
    with pytest.raises(DownloadError) as caught:
        download_binance_klines(
            "BTCUSDT", "1h", "2025-01", "2025-01", tmp_path, transport=server, progress=False
        )
    message = str(caught.value)
    assert message.startswith("cannot reach data.binance.vision: ")
    assert f"check the network or place the ZIPs in {tmp_path}" in message


def test_month_not_published_is_an_http_error_naming_the_url(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-01"])
    with pytest.raises(
        DownloadError, match=r"HTTP 404 for .*BTCUSDT-1h-2025-02\.zip\.CHECKSUM .*not be published"
    ):
        download_binance_klines(
            "BTCUSDT", "1h", "2025-01", "2025-02", tmp_path, transport=server, progress=False
        )
    # The month before the missing one was fetched and verified.
    assert (tmp_path / "BTCUSDT-1h-2025-01.zip").is_file()


def test_malformed_checksum_file_is_an_error(tmp_path: Path) -> None:
    server = FakeBinanceServer(["2025-01"])
    server.files[f"{ROOT}/BTCUSDT-1h-2025-01.zip.CHECKSUM"] = b"<html>maintenance</html>"
    with pytest.raises(DownloadError, match="is malformed"):
        download_binance_klines(
            "BTCUSDT", "1h", "2025-01", "2025-01", tmp_path, transport=server, progress=False
        )


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeBinanceServer(["2025-01"])
    download_binance_klines(
        "BTCUSDT", "1h", "2025-01", "2025-01", tmp_path, transport=server, progress=True
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "BTCUSDT-1h-2025-01.zip" in captured.err


@pytest.mark.parametrize(
    ("symbol", "interval", "fragment"),
    [("BTC/USDT", "1h", "symbol='BTC/USDT'"), ("BTCUSDT", "7h", "interval='7h'")],
)
def test_bad_symbol_or_interval_is_named(
    tmp_path: Path, symbol: str, interval: str, fragment: str
) -> None:
    with pytest.raises(DataError, match=fragment):
        download_binance_klines(
            symbol, interval, "2025-01", "2025-01", tmp_path, transport=FakeBinanceServer([])
        )
