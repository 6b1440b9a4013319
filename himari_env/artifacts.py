"""RunArtifacts: everything a training run fitted, as one bundle saved whole (JSON + NPZ).

The run bundle is the only fitted state the env factory, training, validation and evaluation
accept. It is built once, on the training data's train split (:func:`build_run_artifacts`),
and holds:

* the fitted pipeline (:class:`~himari_env.pipeline.FittedPipeline`): pipeline settings,
  feature scaler (train mean/std), EKF settings, the labeler's settings and, with
  ``regime_source="hmm"``, the Student-t HMM;
* the RSS risk config calibrated on train (EVT tails, volatility target), or None when it
  could not be calibrated and the run does not use the risk layer;
* the reward normalizers' warm state: their windows (``sigma_window``, ``e_window``) and the
  **training tail**, the last ``tail_bars`` bars of the training data. The normalizers,
  rolling features, percentiles, labeler, EKF and the risk layer's trailing arrays are all
  causal computations over the bars before t, so with the tail prepended to later data they
  are warm at the later file's first bar and scoring starts there;
* the data hash of the training frame and the code version hash
  (:mod:`himari_env.provenance`);
* the validation state (metric, best score, its timestep, the history of evaluations),
  updated by training and restored on resume.

On disk (``RUN_DIR/artifacts/``)::

    manifest.json        format, version, hashes, data source and period, tail and reward
                         normalizer settings, file names
    pipeline/            pipeline.json, pipeline_scaler.npz (+ regime_hmm.json/.npz)
    risk_config.json     the calibrated RSS config (absent when None)
    tail.npz             timestamp_ns (int64) and open/high/low/close/volume (float64)
    validation.json      the validation state

Use: ``gym.make("HimariBTC-v0", data=LATER_FILE, artifacts=RUN_DIR, split="all")`` fits
nothing on ``LATER_FILE``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from himari_env.constants import INDEX_NAME, OHLCV_COLUMNS
from himari_env.pipeline import FittedPipeline, PipelineConfig, PreparedMarket, prepare_market
from himari_env.provenance import code_version, frame_digest
from himari_env.risk.config import RiskConfig

__all__ = [
    "ARTIFACTS_DIRNAME",
    "ARTIFACTS_FORMAT",
    "ARTIFACTS_VERSION",
    "DEFAULT_REWARD_WINDOWS",
    "DEFAULT_TAIL_BARS",
    "ArtifactsError",
    "RunArtifacts",
    "ValidationState",
    "build_run_artifacts",
]

ARTIFACTS_FORMAT = "himari.run_artifacts"
ARTIFACTS_VERSION = 1
#: The bundle's folder inside a run folder.
ARTIFACTS_DIRNAME = "artifacts"
#: Training bars kept for warm-up: the 720-bar feature warm-up plus room for the
#: observation context and the 500-bar reward normalizer windows (about 83 days of hours).
DEFAULT_TAIL_BARS = 2_000
#: (sigma_window, e_window) of the reward normalizers (``wrappers.rewards.RewardConfig``).
DEFAULT_REWARD_WINDOWS: tuple[int, int] = (500, 500)


class ArtifactsError(ValueError):
    """A run bundle is missing, malformed or does not fit the request (the message says which)."""


@dataclass
class ValidationState:
    """Validation selection state of a run, restored on resume.

    Attributes
    ----------
    metric : name of the selection metric (None before the first evaluation).
    best_value : best eligible value so far (None: no eligible evaluation yet).
    best_num_timesteps : timestep of that evaluation.
    history : every evaluation record, in order (as in ``best/evaluations.json``).
    """

    metric: str | None = None
    best_value: float | None = None
    best_num_timesteps: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best_value": self.best_value,
                "best_num_timesteps": self.best_num_timesteps, "history": self.history}

    @classmethod
    def from_dict(cls, document: dict[str, Any], *, source: str = "<dict>") -> ValidationState:
        known = {"metric", "best_value", "best_num_timesteps", "history"}
        if not isinstance(document, dict) or set(document) - known:
            raise ArtifactsError(f"{source}: a validation state is an object with keys {sorted(known)}")
        best = document.get("best_value")
        if best is not None and not (isinstance(best, int | float) and math.isfinite(best)):
            raise ArtifactsError(f"{source}: best_value must be a finite number or null, got {best!r}")
        history = document.get("history", [])
        if not isinstance(history, list):
            raise ArtifactsError(f"{source}: history must be a list")
        return cls(metric=document.get("metric"), best_value=None if best is None else float(best),
                   best_num_timesteps=document.get("best_num_timesteps"), history=list(history))

    def save(self, path: str | Path) -> Path:
        """Write strict JSON atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(target.suffix + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
        os.replace(temporary, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> ValidationState:
        source = Path(path)
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ArtifactsError(f"cannot read validation state {source}: {error}") from error
        return cls.from_dict(document, source=str(source))


@dataclass
class RunArtifacts:
    """Everything one training run fitted (see the module docstring).

    Attributes
    ----------
    pipeline : the fitted pipeline (scaler, EKF settings, labeler settings, HMM).
    tail : the last bars of the training data, canonical OHLCV frame (UTC index).
    data_hash : :func:`~himari_env.provenance.frame_digest` of the training frame.
    code_version : :func:`~himari_env.provenance.code_version` when the bundle was built.
    risk_config : the RSS config calibrated on train, or None.
    reward_normalizers : ``{"sigma_window": int, "e_window": int}`` of the reward wrapper.
    data_source : where the training data came from (a path, ``synthetic(...)``, a fold).
    data_period : first and last timestamp of the training data.
    n_bars : bars of the training data.
    validation : the validation state.
    """

    pipeline: FittedPipeline
    tail: pd.DataFrame
    data_hash: str
    code_version: str
    risk_config: RiskConfig | None = None
    reward_normalizers: dict[str, int] = field(
        default_factory=lambda: {"sigma_window": DEFAULT_REWARD_WINDOWS[0], "e_window": DEFAULT_REWARD_WINDOWS[1]}
    )
    data_source: str = ""
    data_period: tuple[str, str] = ("", "")
    n_bars: int = 0
    validation: ValidationState = field(default_factory=ValidationState)

    # ---------------------------------------------------------------- use on data
    def with_history(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, int, str]:
        """Place ``frame`` relative to the training data.

        Returns ``(frame to prepare, prepended bars, relation)``: relation ``"training"``
        (the training data themselves: same hash), ``"later"`` (the frame starts after the
        training data: the training tail is prepended) or ``"other"`` (anything else: the
        frame alone, features warm up inside it).
        """
        if frame_digest(frame) == self.data_hash:
            return frame, 0, "training"
        tail = self.tail
        if len(tail) == 0 or len(frame) == 0 or not frame.index[0] > tail.index[-1]:
            return frame, 0, "other"
        if len(tail) > 1:
            interval = (tail.index[1:] - tail.index[:-1]).min()
            gap = frame.index[0] - tail.index[-1]
            if gap > interval:
                warnings.warn(
                    f"the data start at {frame.index[0]}, {gap} after the training data's last bar "
                    f"{tail.index[-1]}; the training tail is prepended across that gap (the gap mask "
                    "flags the first bar after it)",
                    UserWarning,
                    stacklevel=3,
                )
        parts = [part[list(OHLCV_COLUMNS)].astype(np.float64) for part in (tail, frame)]
        for part in parts:
            part.index = part.index.as_unit("ns")
        combined = pd.concat(parts)
        combined.index.name = INDEX_NAME
        return combined, len(tail), "later"

    def fingerprint(self) -> str:
        """SHA-256 (first 20 hex digits) of everything that shapes an env (not the validation
        state): pipeline, risk config, tail, hashes and normalizer settings."""
        digest = hashlib.sha256()
        digest.update(self.pipeline.fingerprint().encode())
        digest.update(b"-" if self.risk_config is None else self.risk_config.to_json().encode())
        digest.update(frame_digest(self.tail).encode())
        digest.update(json.dumps([self.data_hash, self.code_version, self.reward_normalizers],
                                 sort_keys=True).encode())
        return digest.hexdigest()[:20]

    # ----------------------------------------------------------------------- disk
    def save(self, directory: str | Path) -> Path:
        """Write the bundle into ``directory`` (created; usually ``RUN_DIR/artifacts``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.pipeline.save(directory / "pipeline")
        risk_path = directory / "risk_config.json"
        if self.risk_config is not None:
            self.risk_config.save(risk_path)
        elif risk_path.exists():
            risk_path.unlink()
        tail = self.tail
        np.savez(
            directory / "tail.npz",
            timestamp_ns=tail.index.as_unit("ns").asi8,
            **{column: tail[column].to_numpy(dtype=np.float64) for column in OHLCV_COLUMNS},
        )
        self.validation.save(directory / "validation.json")
        manifest = {
            "format": ARTIFACTS_FORMAT,
            "version": ARTIFACTS_VERSION,
            "data_hash": self.data_hash,
            "code_version": self.code_version,
            "data_source": self.data_source,
            "data_period": list(self.data_period),
            "n_bars": self.n_bars,
            "tail": {"file": "tail.npz", "n_bars": len(tail),
                     "first": str(tail.index[0]) if len(tail) else None,
                     "last": str(tail.index[-1]) if len(tail) else None},
            "reward_normalizers": dict(self.reward_normalizers),
            "pipeline": "pipeline",
            "risk_config": risk_path.name if self.risk_config is not None else None,
            "validation": "validation.json",
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return directory

    @staticmethod
    def locate(path: str | Path) -> Path:
        """The bundle folder for ``path``: a run folder (its ``artifacts/``) or the bundle itself."""
        path = Path(path)
        if (path / ARTIFACTS_DIRNAME / "manifest.json").is_file():
            return path / ARTIFACTS_DIRNAME
        if (path / "manifest.json").is_file():
            return path
        hint = " (it holds pipeline/ from before run bundles: retrain the run)" if (path / "pipeline").is_dir() else ""
        raise ArtifactsError(f"{path} holds no run bundle ({ARTIFACTS_DIRNAME}/manifest.json){hint}")

    @classmethod
    def load(cls, path: str | Path) -> RunArtifacts:
        """Read a bundle from a run folder or a bundle folder (JSON + NPZ, no pickle).

        Warns when the bundle was built by a different code version.
        """
        directory = cls.locate(path)
        manifest_path = directory / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ArtifactsError(f"{manifest_path} is not valid JSON: {error}") from error
        if manifest.get("format") != ARTIFACTS_FORMAT or manifest.get("version") != ARTIFACTS_VERSION:
            raise ArtifactsError(
                f"{manifest_path} is not a {ARTIFACTS_FORMAT} v{ARTIFACTS_VERSION} manifest "
                f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})"
            )
        pipeline = FittedPipeline.load(directory / manifest["pipeline"])
        risk_name = manifest.get("risk_config")
        risk_config = RiskConfig.load(directory / risk_name) if risk_name else None
        with np.load(directory / manifest["tail"]["file"], allow_pickle=False) as arrays:
            index = pd.DatetimeIndex(pd.to_datetime(arrays["timestamp_ns"], unit="ns", utc=True), name=INDEX_NAME)
            tail = pd.DataFrame({column: arrays[column] for column in OHLCV_COLUMNS}, index=index)
        validation_path = directory / manifest.get("validation", "validation.json")
        validation = ValidationState.load(validation_path) if validation_path.is_file() else ValidationState()
        current = code_version()
        if manifest["code_version"] != current:
            warnings.warn(
                f"{manifest_path} was built by code version {manifest['code_version']}, this is {current}: "
                "features, labels or rewards may differ from those the run was trained on",
                UserWarning,
                stacklevel=2,
            )
        return cls(
            pipeline=pipeline,
            tail=tail,
            data_hash=str(manifest["data_hash"]),
            code_version=str(manifest["code_version"]),
            risk_config=risk_config,
            reward_normalizers={str(k): int(v) for k, v in manifest["reward_normalizers"].items()},
            data_source=str(manifest.get("data_source", "")),
            data_period=tuple(manifest.get("data_period", ("", ""))),  # type: ignore[arg-type]
            n_bars=int(manifest.get("n_bars", 0)),
            validation=validation,
        )

    @staticmethod
    def validation_path(path: str | Path) -> Path:
        """Where the validation state of the bundle at ``path`` (run or bundle folder) lives."""
        path = Path(path)
        if path.name != ARTIFACTS_DIRNAME and not (path / "manifest.json").is_file():
            path = path / ARTIFACTS_DIRNAME
        return path / "validation.json"


def build_run_artifacts(
    frame: pd.DataFrame,
    *,
    pipeline_config: PipelineConfig | None = None,
    risk: bool = True,
    risk_config: RiskConfig | None = None,
    reward_windows: tuple[int, int] = DEFAULT_REWARD_WINDOWS,
    tail_bars: int = DEFAULT_TAIL_BARS,
    source: str = "",
    cache: bool = True,
) -> tuple[RunArtifacts, PreparedMarket]:
    """Fit everything on ``frame``'s train split and bundle it.

    Parameters
    ----------
    frame : the training data, canonical OHLCV frame (its chronological train split is fitted).
    pipeline_config : pipeline settings (``fit_hmm=True`` for ``regime_source="hmm"``).
    risk : the run uses the RSS layer: a failed risk calibration raises. Without it the
        calibration is still tried (so the bundle can serve ``risk=True`` envs) and stored
        as None when it fails.
    risk_config : settings to calibrate from (defaults: the design log's).
    reward_windows : ``(sigma_window, e_window)`` of the reward normalizers.
    tail_bars : training bars kept for warm-up on later data (at most the frame's length).
    source : a description of where ``frame`` came from.

    Returns
    -------
    (bundle, prepared) : the bundle and the training market prepared with it (its
    ``artifacts`` is the bundle).
    """
    from himari_env.risk.calibration import calibrate_risk

    if tail_bars < 1:
        raise ArtifactsError(f"tail_bars must be >= 1, got {tail_bars}")
    prepared = prepare_market(frame, config=pipeline_config, cache=cache)
    assert prepared.pipeline is not None
    market = prepared.market
    train = market.splits["train"]
    calibrated: RiskConfig | None
    try:
        calibrated = calibrate_risk(market.returns[train], config=risk_config,
                                    gap_before=market.gap_before[train])
    except ValueError:
        if risk:
            raise
        calibrated = None
    bundle = RunArtifacts(
        pipeline=prepared.pipeline,
        tail=frame[list(OHLCV_COLUMNS)].iloc[-tail_bars:].copy(),
        data_hash=frame_digest(frame),
        code_version=code_version(),
        risk_config=calibrated,
        reward_normalizers={"sigma_window": int(reward_windows[0]), "e_window": int(reward_windows[1])},
        data_source=source,
        data_period=(str(frame.index[0]), str(frame.index[-1])),
        n_bars=len(frame),
    )
    return bundle, dataclasses.replace(prepared, artifacts=bundle)
