"""The trials ledger: one JSON line per training run and per look at the test split.

The deflated Sharpe ratio is only honest when the number of configurations tried is a
recorded fact. Every ``himari train`` (and every walk-forward fold/seed and tuning trial,
which train through the same function) appends one ``"kind": "train"`` line; every
evaluation that computes metrics on the 2024 test split (or on unseen data) appends one
``"kind": "test_look"`` line. Lines are never rewritten.

Location: ``$HIMARI_LEDGER`` when set, else ``<runs_dir>/ledger.jsonl`` (``runs_dir`` is the
config's ``train.runs_dir``, ``runs`` by default). Appends take an exclusive ``flock`` so
that concurrent workers (walk-forward seeds, Optuna jobs) never interleave lines.

Fields of a ``train`` line: ``time`` (UTC ISO), ``kind``, ``run_dir``, ``config_name``,
``config_hash`` (SHA-256 of the resolved config without seed, run name and run folder),
``data_hash``, ``seed``, ``fold`` (None outside walk-forward), ``timesteps``,
``validation`` (``{"metric", "value", "num_timesteps"}`` of the selected model, or None),
``test_looked`` (False: training never looks at test), ``tag`` (free text: ``walkforward``,
``tune:<study>``...).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LEDGER_ENV = "HIMARI_LEDGER"
LEDGER_NAME = "ledger.jsonl"

#: Config keys that do not change what is being tried (seed, naming, output folders).
#: Train keys that do not change what a run learns: the seed (trials of one configuration differ
#: by it), naming and verbosity, and how the episodes are stepped (the batched env and the
#: subprocess workers, window and index observations, give bit-identical runs: tests/test_vector_*).
_UNHASHED_TRAIN_KEYS = ("seed", "run_name", "runs_dir", "verbose", "vectorization", "observation_mode")


def ledger_path(runs_dir: str | Path = "runs") -> Path:
    """The ledger file: ``$HIMARI_LEDGER`` when set, else ``runs_dir/ledger.jsonl``."""
    override = os.environ.get(LEDGER_ENV)
    return Path(override) if override else Path(runs_dir) / LEDGER_NAME


def _default_risk_settings() -> dict[str, Any]:
    from agents.config import RiskSettings
    from himari_env.config_codec import encode_dataclass

    return json.loads(json.dumps(encode_dataclass(RiskSettings()), sort_keys=True))


#: Keys added to the config after the first ledger lines, with their defaults: a key at its
#: default is hashed as if absent, so earlier runs keep their configuration identity.
_KEYS_ADDED_LATER: dict[str, dict[str, Any]] = {
    "env": {"feature_set": "standard", "observed_features": None},
    "train": {"sleeves": 1, "mirror_envs": 0},
}


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a resolved config dict, without seed and naming keys.

    Two runs with the same hash tried the same configuration (possibly with other seeds).
    """
    document = json.loads(json.dumps(config, sort_keys=True, default=str))
    train = dict(document.get("train", {}))
    for key in _UNHASHED_TRAIN_KEYS:
        train.pop(key, None)
    document["train"] = train
    document.pop("name", None)
    if document.get("risk") == _default_risk_settings():
        # the design log's RSS settings: hashed as before the ``risk`` section existed, so
        # earlier ledger lines and run folders keep their configuration identity
        document.pop("risk")
    for section, defaults in _KEYS_ADDED_LATER.items():
        values = document.get(section)
        if isinstance(values, dict):
            document[section] = {key: value for key, value in values.items()
                                 if key not in defaults or value != defaults[key]}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_hash(data: str | Path, *, market_seed: int = 0) -> str:
    """Identity of the training data: the SHA-256 (16 hex digits) of a file's bytes, or
    ``synthetic:<seed>`` / ``planted:<seed>`` for the embedded markets."""
    text = str(data)
    if text in ("synthetic", "planted"):
        return f"{text}:{market_seed}"
    path = Path(text)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.name.encode())
            digest.update(child.read_bytes())
        return digest.hexdigest()[:16]
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append_entry(entry: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """Append one line (a ``time`` field is added when missing); returns the line written."""
    line = {"time": _now(), **entry}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(line, sort_keys=False, default=str) + "\n"
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.write(text)
            handle.flush()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return line


def record_training(
    path: str | Path,
    *,
    run_dir: str | Path,
    config: Mapping[str, Any],
    seed: int,
    timesteps: int,
    validation: Mapping[str, Any] | None,
    fold: int | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    """Append the ``train`` line of one finished training run."""
    env = config.get("env", {})
    return append_entry(
        {
            "kind": "train",
            "run_dir": str(run_dir),
            "config_name": config.get("name"),
            "config_hash": config_hash(config),
            "data_hash": data_hash(env.get("data", "synthetic"), market_seed=int(env.get("market_seed", 0))),
            "seed": int(seed),
            "fold": fold,
            "timesteps": int(timesteps),
            "validation": dict(validation) if validation is not None else None,
            "test_looked": False,
            "tag": tag,
        },
        path,
    )


def record_test_look(
    path: str | Path,
    *,
    run_dir: str | Path,
    config: Mapping[str, Any],
    split: str,
    sharpe: float,
    tag: str | None = None,
) -> dict[str, Any]:
    """Append a ``test_look`` line: metrics were computed on a held-out ``split``."""
    return append_entry(
        {
            "kind": "test_look",
            "run_dir": str(run_dir),
            "config_name": config.get("name"),
            "config_hash": config_hash(config),
            "split": split,
            "sharpe": float(sharpe),
            "test_looked": True,
            "tag": tag,
        },
        path,
    )


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """All lines of the ledger (an empty list when the file does not exist).

    Raises ``ValueError`` naming the file and line number of a line that is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entries.append(json.loads(text))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number} is not JSON ({error.msg})") from None
    return entries


def trial_validation_sharpes(entries: list[dict[str, Any]]) -> list[float]:
    """The validation Sharpe of every ``train`` line that has one (the trials the DSR counts)."""
    values = []
    for entry in entries:
        validation = entry.get("validation") or {}
        if entry.get("kind") == "train" and validation.get("metric") == "sharpe" and validation.get("value") is not None:
            values.append(float(validation["value"]))
    return values
