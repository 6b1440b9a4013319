"""Errors raised by the data layer. All are ``ValueError`` subclasses so callers that only
know about ``ValueError`` still catch them; each message names the offending rows,
timestamps, columns or arguments."""

from __future__ import annotations


class DataError(ValueError):
    """Base class of every data-layer error."""


class DataFormatError(DataError):
    """The file cannot be parsed into the canonical OHLCV frame (missing column, truncated
    row, non-numeric cell, empty file, unknown format)."""


class OHLCVValidationError(DataError):
    """A structural fault in an OHLCV frame: unsorted or duplicate timestamps, NaN,
    non-positive prices, high/low inconsistent with open/close, wrong bar spacing."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        #: The full :class:`~himari_env.data.validation.ValidationReport`, when one exists.
        self.report = report


class DownloadError(DataError):
    """A download failed: no network, HTTP error, or a checksum mismatch."""
