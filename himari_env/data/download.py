"""Download Binance public monthly spot kline ZIPs from data.binance.vision.

For each month the downloader fetches ``{SYMBOL}-{interval}-{YYYY-MM}.zip.CHECKSUM`` (the
text ``"<sha256>  <file name>"``), then the ZIP, and verifies its SHA-256 before the file
takes its final name. A ZIP already present with a matching checksum is skipped. An
interrupted download leaves ``<name>.zip.part``; the next run continues it with an HTTP
``Range`` request (a server that ignores the range and answers 200 restarts the file
cleanly). The network goes through a small injectable :class:`Transport` so that tests run
offline against an in-memory server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from himari_env.data.errors import DataError, DownloadError

__all__ = [
    "BINANCE_VISION_URL",
    "DownloadedFile",
    "Transport",
    "UrllibTransport",
    "download_binance_klines",
    "month_range",
    "monthly_kline_url",
]

#: Root of Binance's public market-data dumps.
BINANCE_VISION_URL = "https://data.binance.vision"
#: Kline intervals published by Binance.
BINANCE_INTERVALS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
    "1w", "1mo",
)  # fmt: skip
_CHUNK_BYTES = 1 << 20
_MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")
_SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,30}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")


class Transport(Protocol):
    """Minimal HTTP GET used by the downloader.

    ``get`` returns ``(status, headers, body)``: the HTTP status code (also for 4xx/5xx
    answers), the response headers, and the body as an iterator of byte chunks. It raises
    :class:`OSError` (``urllib.error.URLError`` is one) when the server cannot be reached;
    the body iterator may raise :class:`OSError` if the connection drops mid-transfer.
    """

    def get(
        self, url: str, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], Iterator[bytes]]: ...


class UrllibTransport:
    """The default :class:`Transport`, built on :mod:`urllib.request`.

    It also serves ``file://`` URLs, so a local mirror of data.binance.vision works offline
    (``base_url="file:///path/to/mirror"``); a ``file://`` server ignores ``Range``.
    """

    def __init__(self, timeout_s: float = 60.0, chunk_bytes: int = _CHUNK_BYTES) -> None:
        self.timeout_s = timeout_s
        self.chunk_bytes = chunk_bytes

    def get(
        self, url: str, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], Iterator[bytes]]:
        request = urllib.request.Request(url, headers={"User-Agent": "himari", **headers})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as error:
            body = error.read()
            error.close()
            return error.code, dict(error.headers.items()), iter([body])
        except urllib.error.URLError as error:
            # A local mirror (file:// URL) lacking a file is a 404, not an unreachable host.
            if url.startswith("file:") and isinstance(error.reason, FileNotFoundError):
                return 404, {}, iter([b""])
            raise
        # file:// responses carry no status; a body was found, which is HTTP's 200.
        status = response.status if response.status is not None else 200
        return status, dict(response.headers.items()), self._chunks(response)

    def _chunks(self, response) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        with response:
            while chunk := response.read(self.chunk_bytes):
                yield chunk


@dataclass(frozen=True)
class DownloadedFile:
    """One month's ZIP after :func:`download_binance_klines`.

    ``status`` is ``"downloaded"``, ``"resumed"`` (continued from a ``.part`` file) or
    ``"skipped"`` (already present with a matching checksum).
    """

    month: str
    path: Path
    sha256: str
    size_bytes: int
    status: str

    def to_dict(self) -> dict[str, object]:
        return {
            "month": self.month,
            "path": str(self.path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "status": self.status,
        }


def month_range(start_month: str, end_month: str) -> list[str]:
    """All months ``"YYYY-MM"`` from ``start_month`` to ``end_month`` inclusive."""
    start = _parse_month(start_month, "start_month")
    end = _parse_month(end_month, "end_month")
    if end < start:
        raise DataError(f"end_month={end_month!r} is before start_month={start_month!r}")
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(start, end + 1)]


def monthly_kline_url(
    symbol: str, interval: str, month: str, *, base_url: str = BINANCE_VISION_URL
) -> str:
    """URL of one monthly spot kline ZIP on data.binance.vision."""
    name = _zip_name(symbol, interval, month)
    return f"{base_url.rstrip('/')}/data/spot/monthly/klines/{symbol}/{interval}/{name}"


def download_binance_klines(
    symbol: str,
    interval: str,
    start_month: str,
    end_month: str,
    dest_dir: str | os.PathLike[str],
    *,
    transport: Transport | None = None,
    progress: bool = True,
    base_url: str = BINANCE_VISION_URL,
) -> list[DownloadedFile]:
    """Fetch and verify the monthly spot kline ZIPs of ``start_month .. end_month``.

    Parameters
    ----------
    symbol
        Binance symbol in capitals, e.g. ``"BTCUSDT"``.
    interval
        Kline interval, e.g. ``"1h"``.
    start_month, end_month
        Inclusive range, ``"YYYY-MM"``.
    dest_dir
        Folder for the ZIPs (created if needed); ``himari_env.data.load_ohlcv(dest_dir)``
        then loads them in month order.
    transport
        HTTP transport; default :class:`UrllibTransport`.
    progress
        Show a tqdm progress bar per file (on stderr).
    base_url
        Mirror root, default ``https://data.binance.vision``.

    Returns
    -------
    list[DownloadedFile]
        One entry per month, in month order.

    Raises
    ------
    DownloadError
        Network unreachable, HTTP error (e.g. a month not yet published), malformed checksum
        file, or SHA-256 mismatch (the bad partial file is deleted).
    DataError
        Malformed arguments.
    """
    symbol = symbol.strip().upper()
    if not _SYMBOL_PATTERN.match(symbol):
        raise DataError(f"symbol={symbol!r} is not a Binance symbol such as 'BTCUSDT'")
    if interval not in BINANCE_INTERVALS:
        raise DataError(f"interval={interval!r} is not one of {', '.join(BINANCE_INTERVALS)}")
    months = month_range(start_month, end_month)
    destination = Path(dest_dir)
    destination.mkdir(parents=True, exist_ok=True)
    client = transport if transport is not None else UrllibTransport()
    results = []
    for month in months:
        url = monthly_kline_url(symbol, interval, month, base_url=base_url)
        results.append(_download_month(client, url, month, destination, progress=progress))
    return results


def _download_month(
    transport: Transport, url: str, month: str, destination: Path, *, progress: bool
) -> DownloadedFile:
    name = url.rsplit("/", 1)[1]
    expected = _fetch_checksum(transport, url + ".CHECKSUM", name, destination)
    final_path = destination / name
    if final_path.is_file():
        present = _sha256_of(final_path)
        if present == expected:
            return DownloadedFile(month, final_path, expected, final_path.stat().st_size, "skipped")
    part_path = destination / (name + ".part")
    offset = part_path.stat().st_size if part_path.is_file() else 0
    status = _stream_to_part(transport, url, part_path, offset, destination, progress=progress)
    digest = _sha256_of(part_path)
    if digest != expected:
        part_path.unlink()
        raise DownloadError(
            f"checksum mismatch for {name}: expected sha256 {expected}, got {digest}; the "
            "partial file was deleted, run the download again"
        )
    os.replace(part_path, final_path)
    (destination / (name + ".CHECKSUM")).write_text(f"{expected}  {name}\n")
    return DownloadedFile(month, final_path, expected, final_path.stat().st_size, status)


def _stream_to_part(
    transport: Transport,
    url: str,
    part_path: Path,
    offset: int,
    destination: Path,
    *,
    progress: bool,
) -> str:
    """Write the ZIP body into ``part_path``; returns ``"resumed"`` or ``"downloaded"``."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    status, response_headers, body = _get(transport, url, headers, destination)
    if offset and status == 416:
        # Range beyond the end: the part file already holds the whole body (or is corrupt);
        # the checksum decides, so leave it as it is.
        return "resumed"
    if status == 206 and offset:
        mode, mode_status, start = "ab", "resumed", offset
    elif status == 200:
        mode, mode_status, start = "wb", "downloaded", 0  # full body: restart cleanly
    else:
        raise DownloadError(_http_message(url, status))
    length = _header(response_headers, "Content-Length")
    total = start + int(length) if length and length.isdigit() else None
    bar = _progress_bar(part_path.name.removesuffix(".part"), total, start, enabled=progress)
    written = start
    try:
        with part_path.open(mode) as handle:
            for chunk in body:
                handle.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(
            f"connection lost while downloading {url} after {written} bytes ({error}); run "
            f"again to resume from {part_path}"
        ) from error
    finally:
        bar.close()
    return mode_status


def _fetch_checksum(transport: Transport, url: str, zip_name: str, destination: Path) -> str:
    status, _, body = _get(transport, url, {}, destination)
    if status != 200:
        raise DownloadError(_http_message(url, status))
    try:
        text = b"".join(body).decode("ascii").strip()
    except (OSError, http.client.HTTPException, UnicodeDecodeError) as error:
        raise DownloadError(f"cannot read checksum file {url}: {error}") from error
    parts = text.split()
    if len(parts) != 2 or not _SHA256_PATTERN.match(parts[0]):
        raise DownloadError(f"checksum file {url} is malformed: {text[:120]!r}")
    if parts[1].lstrip("*") != zip_name:
        raise DownloadError(f"checksum file {url} names {parts[1]!r}, expected {zip_name!r}")
    return parts[0].lower()


def _get(
    transport: Transport, url: str, headers: Mapping[str, str], destination: Path
) -> tuple[int, Mapping[str, str], Iterator[bytes]]:
    try:
        return transport.get(url, headers)
    except (OSError, http.client.HTTPException) as error:
        host = url.split("/")[2] if "://" in url else url
        raise DownloadError(
            f"cannot reach {host}: {error}; check the network or place the ZIPs in {destination}"
        ) from error


def _http_message(url: str, status: int) -> str:
    hint = " (the month may not be published yet, or the symbol/interval does not exist)"
    return f"HTTP {status} for {url}" + (hint if status == 404 else "")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(name: str, total: int | None, initial: int, *, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not enabled,
        leave=False,
    )


def _parse_month(month: str, argument: str) -> int:
    match = _MONTH_PATTERN.match(month.strip()) if isinstance(month, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise DataError(f"{argument}={month!r} is not a month 'YYYY-MM'")
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def _zip_name(symbol: str, interval: str, month: str) -> str:
    _parse_month(month, "month")
    return f"{symbol}-{interval}-{month}.zip"
