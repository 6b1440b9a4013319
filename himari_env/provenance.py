"""Provenance hashes: what data a fitted state came from and which code computed it.

* :func:`frame_digest` hashes a canonical OHLCV frame (index and the five columns), so a run
  bundle knows its training data and the prepared-market cache knows its input.
* :func:`code_version` hashes the source files of the packages that shape what the
  environment observes and rewards (``himari_env`` and ``wrappers``). It is part of the
  prepared-market cache key, so a change to the features, the labeler or the EKF can never be
  answered with arrays an older version computed, and it is recorded in every run bundle.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

#: Packages whose source files make up :func:`code_version`.
VERSIONED_PACKAGES: tuple[str, ...] = ("himari_env", "wrappers")

_REPO_ROOT = Path(__file__).resolve().parents[1]


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 (first 20 hex digits) of the frame's timestamps (as UTC nanoseconds, whatever
    the index's unit) and OHLCV values (float64)."""
    digest = hashlib.sha256()
    index = frame.index
    if isinstance(index, pd.DatetimeIndex):
        index = index.as_unit("ns")
    digest.update(np.ascontiguousarray(index.asi8).tobytes())
    columns = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    digest.update(np.ascontiguousarray(columns).tobytes())
    return digest.hexdigest()[:20]


@functools.cache
def code_version(packages: tuple[str, ...] = VERSIONED_PACKAGES) -> str:
    """SHA-256 (first 16 hex digits) over the relative path and bytes of every ``*.py`` file
    of ``packages`` (sorted), computed once per process."""
    digest = hashlib.sha256()
    for package in packages:
        root = _REPO_ROOT / package
        if not root.is_dir():
            raise FileNotFoundError(f"package folder {root} not found; cannot hash its sources")
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(_REPO_ROOT)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:16]
