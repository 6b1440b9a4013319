"""Shared fixtures. Tests that need the real 2020-2024 file skip when it is absent."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_PATH = Path(
    os.environ.get("HIMARI_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "btcusdt_1h_2020_2024.csv")
)


def assert_the_default_hashes_as_absent(config: Any, section: str, key: str, default: Any) -> None:
    """``config`` has ``section.key`` at ``default``, and its hash is the one it had before the
    key existed: runs recorded before the key keep their configuration identity."""
    from experiments.ledger import config_hash

    document = config.to_dict()
    assert document[section][key] == default
    without = json.loads(json.dumps(document))
    del without[section][key]
    assert config_hash(document) == config_hash(without)


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    if not REAL_DATA_PATH.is_file():
        pytest.skip(f"real data file not found at {REAL_DATA_PATH}")
    return REAL_DATA_PATH


@pytest.fixture(scope="session", autouse=True)
def _isolated_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Training in tests writes its trials-ledger lines to a temporary file, never to runs/.
    Session-scoped, so module-scoped fixtures that train (tests/test_train_evaluate.py) use it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HIMARI_LEDGER", str(tmp_path_factory.mktemp("ledger") / "ledger.jsonl"))
        yield


@pytest.fixture(scope="session", autouse=True)
def _isolated_market_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prepared markets are cached in one temporary folder for the test session, never in the
    user's cache folder (whose arrays another code version may have written). Session-scoped,
    so module-scoped fixtures that train or prepare markets use it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HIMARI_CACHE_DIR", str(tmp_path_factory.mktemp("market-cache")))
        yield
