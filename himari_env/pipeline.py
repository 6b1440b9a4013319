"""From a canonical OHLCV frame to everything the environment observes, fitted on train.

:func:`prepare_market` runs the whole causal pipeline once over the full series:

1. the data layer's gap mask (no return silently spans a gap),
2. the technical features (the 44 of the standard set, or the 50 of ``long_horizon``), standardized with mean/std fitted on the **train** rows
   (:func:`fit_scaler`),
3. the EKF denoiser over each standardized feature (filtering only),
4. the six rolling percentile regime features,
5. the rules labeler's regime ids (settings in :class:`FittedPipeline.labeler`), and, when
   asked, the Student-t HMM fitted on train (:func:`fit_regime_hmm`, supervised from the
   labels) and run as a causal forward filter.

Everything fitted is stored in a :class:`FittedPipeline` (JSON + NPZ, never pickle), which is
part of the run bundle (:class:`himari_env.artifacts.RunArtifacts`). Given a bundle
(``artifacts=``), nothing is fitted: on the bundle's own training data the chronological
splits are rebuilt; on later data the bundle's training tail is prepended so that every
rolling feature, filter and normalizer is warm at the later file's first bar, and the only
split is ``all`` (the later file's bars). Results are cached on disk under a key that hashes
the data, the config, the fitted state and the code version (:func:`~himari_env.provenance.code_version`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from himari_env.config_codec import decode_dataclass
from himari_env.data import chronological_splits, gap_mask, validate_ohlcv
from himari_env.features.ekf import EKFConfig, ekf_filter
from himari_env.features.percentiles import regime_percentile_features
from himari_env.features.technical import FEATURE_SETS, compute_technical_features
from himari_env.market import MarketData, returns_from_close
from himari_env.provenance import code_version, frame_digest
from himari_env.regimes.labeler import LabelerConfig, label_regimes

if TYPE_CHECKING:
    from himari_env.artifacts import RunArtifacts

#: Format version of ``pipeline.json`` (2: the labeler settings are stored).
PIPELINE_VERSION = 2


@dataclass(frozen=True)
class PipelineConfig:
    """Typed pipeline configuration.

    Attributes
    ----------
    warmup_bars : int
        Bars at the start excluded from every split so all features have history.
    percentile_window : int
        Rolling window (bars) of the percentile regime features.
    process_noise, measurement_noise : float
        EKF Q and R on standardized (unit-variance) features.
    fit_hmm : bool
        Fit the Student-t HMM (needed for ``regime_source="hmm"``).
    split_fractions : tuple of float
        Train/val/test fractions of the decision bars.
    feature_set : str
        ``"standard"`` (44 technical features, horizons up to 168 bars) or ``"long_horizon"``
        (plus 6 features over 336-720 bars; :data:`~himari_env.features.technical.FEATURE_SETS`).
        Its 720-bar windows fit inside the default 720-bar warm-up.
    """

    warmup_bars: int = 720
    percentile_window: int = 500
    process_noise: float = 0.001
    measurement_noise: float = 0.1
    fit_hmm: bool = False
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    feature_set: str = "standard"

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"pipeline.feature_set must be one of {sorted(FEATURE_SETS)}, got {self.feature_set!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without a default ``feature_set``: the fitted state's identity, so
        bundles fitted before the option existed keep their fingerprints."""
        values = self.to_dict()
        if values["feature_set"] == "standard":
            del values["feature_set"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        """Strict decode (:func:`~himari_env.config_codec.decode_dataclass`)."""
        return decode_dataclass(cls, values, path="pipeline")


@dataclass
class FittedPipeline:
    """Everything fitted on train that shapes the observation.

    Attributes
    ----------
    config : the pipeline settings it was fitted with.
    feature_names : names of the technical features (F,: 44 standard, 50 long_horizon).
    feature_mean, feature_std : float64 (F,), the train-split scaler.
    hmm : the Student-t HMM fitted on train, or None (``regime_source="rules"`` only).
    train_period : first and last timestamp of the train rows.
    labeler : the rules labeler's settings (thresholds tuned once, stored with the run).
    """

    config: PipelineConfig
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    hmm: Any | None = None
    train_period: tuple[str, str] = ("", "")
    labeler: LabelerConfig = field(default_factory=LabelerConfig)

    def save(self, directory: str | Path) -> Path:
        """Write ``pipeline.json`` and ``pipeline_scaler.npz`` (and the HMM files) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        document = {
            "version": PIPELINE_VERSION,
            "config": self.config.to_dict(),
            "feature_names": list(self.feature_names),
            "train_period": list(self.train_period),
            "labeler": self.labeler.to_dict(),
            "has_hmm": self.hmm is not None,
        }
        (directory / "pipeline.json").write_text(json.dumps(document, indent=2))
        np.savez(directory / "pipeline_scaler.npz", mean=self.feature_mean, std=self.feature_std)
        if self.hmm is not None:
            self.hmm.save(directory / "regime_hmm")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FittedPipeline:
        """Read a pipeline written by :meth:`save` (version 1 files get the default labeler)."""
        directory = Path(directory)
        document = json.loads((directory / "pipeline.json").read_text())
        if document.get("version") not in (1, PIPELINE_VERSION):
            raise ValueError(f"{directory}/pipeline.json has version {document.get('version')}, expected {PIPELINE_VERSION}")
        with np.load(directory / "pipeline_scaler.npz", allow_pickle=False) as arrays:
            mean, std = arrays["mean"], arrays["std"]
        hmm = None
        if document["has_hmm"]:
            from himari_env.regimes.student_t_hmm import StudentTHMM

            hmm = StudentTHMM.load(directory / "regime_hmm")
        return cls(
            config=PipelineConfig.from_dict(document["config"]),
            feature_names=tuple(document["feature_names"]),
            feature_mean=mean,
            feature_std=std,
            hmm=hmm,
            train_period=tuple(document["train_period"]),
            labeler=decode_dataclass(LabelerConfig, document.get("labeler", {}), path="labeler"),
        )

    def fingerprint(self) -> str:
        """SHA-256 (first 20 hex digits) of the fitted content (settings, scaler, labeler, HMM)."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.config.identity_dict(), list(self.feature_names), self.labeler.to_dict()],
                                 sort_keys=True).encode())
        for array in (self.feature_mean, self.feature_std):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        if self.hmm is not None:
            for name in ("startprob_", "transmat_", "means_", "scales_", "dofs_"):
                digest.update(np.ascontiguousarray(getattr(self.hmm, name), dtype=np.float64).tobytes())
        return digest.hexdigest()[:20]


@dataclass(frozen=True)
class PreparedMarket:
    """The core env's :class:`MarketData` plus the observation wrapper's arrays.

    ``artifacts`` is the run bundle the market was prepared with (None when it was fitted on
    its own train split); ``prepended_bars`` counts the bundle's training-tail bars placed
    before the data (0 unless the data are later than the bundle's training data).
    """

    market: MarketData
    observation_features: np.ndarray
    observation_feature_names: tuple[str, ...]
    regime_ids: dict[str, np.ndarray] = field(default_factory=dict)
    pipeline: FittedPipeline | None = None
    frame_index: pd.DatetimeIndex | None = None
    artifacts: RunArtifacts | None = None
    prepended_bars: int = 0


def _frame_digest(frame: pd.DataFrame) -> str:
    return frame_digest(frame)


def default_cache_dir() -> Path:
    """``$HIMARI_CACHE_DIR`` or ``<tmp>/himari-cache`` (never inside the read-only data folder)."""
    return Path(os.environ.get("HIMARI_CACHE_DIR", Path(tempfile.gettempdir()) / "himari-cache"))


def fit_scaler(train_rows: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float64 (F,)) of the train rows (n, F), NaN warm-up rows ignored.

    Raises ValueError naming the features that are constant on train.
    """
    mean = np.nanmean(train_rows, axis=0)
    std = np.nanstd(train_rows, axis=0)
    constant = ~(std > 1e-12)
    if constant.any():
        bad = [names[i] for i in np.flatnonzero(constant)]
        raise ValueError(f"features {bad} are constant on the train split; cannot standardize them")
    return mean, std


def fit_regime_hmm(percentiles: np.ndarray, regime_ids: np.ndarray) -> Any:
    """The Student-t HMM fitted supervised on train rows: percentiles (n, 6), labels (n,)."""
    from himari_env.regimes.student_t_hmm import StudentTHMM

    hmm = StudentTHMM(n_components=4, random_state=0)
    hmm.fit_supervised(percentiles, regime_ids)
    return hmm


def prepare_market(
    frame: pd.DataFrame,
    *,
    config: PipelineConfig | None = None,
    pipeline: FittedPipeline | None = None,
    artifacts: RunArtifacts | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> PreparedMarket:
    """Run the causal pipeline over ``frame``.

    Parameters
    ----------
    frame : canonical OHLCV frame (validated here; structural faults raise).
    config : pipeline settings (ignored when ``pipeline`` or ``artifacts`` is given).
    pipeline : an already fitted pipeline: nothing is refitted; the splits are the frame's
        own chronological splits (for perturbation tests and the in-sample data).
    artifacts : a run bundle: nothing is fitted on ``frame``. Its own training data get the
        training splits; data that start after the training data get the bundle's training
        tail prepended and the single split ``all`` over the frame's own bars; any other
        data get the single split ``all`` over every bar.
    cache : reuse arrays cached on disk under a hash of the data, config, fitted state and
        code version.
    """
    validate_ohlcv(frame)
    prepended = 0
    relation = "fit"
    if artifacts is not None:
        if pipeline is not None:
            raise ValueError("pass either artifacts= (a run bundle) or pipeline=, not both")
        pipeline = artifacts.pipeline
        frame, prepended, relation = artifacts.with_history(frame)
    elif pipeline is not None:
        relation = "pipeline"
    if pipeline is not None:
        config = pipeline.config
    config = config or PipelineConfig()
    labeler = pipeline.labeler if pipeline is not None else LabelerConfig()
    n = len(frame)
    if relation in ("fit", "pipeline", "training"):
        splits = chronological_splits(n, warmup_bars=config.warmup_bars, fractions=config.split_fractions)
    else:
        splits = {"all": slice(prepended, n)}
    arrays = None
    cache_path = None
    if cache:
        key_source = json.dumps(
            {"data": frame_digest(frame), "config": config.to_dict(), "code": code_version(),
             "labeler": labeler.to_dict(), "version": PIPELINE_VERSION,
             "scaler": None if pipeline is None else [pipeline.feature_mean.tolist(), pipeline.feature_std.tolist()]},
            sort_keys=True,
        )
        key = hashlib.sha256(key_source.encode()).hexdigest()[:24]
        cache_path = Path(cache_dir or default_cache_dir()) / f"market-{key}.npz"
        if cache_path.is_file():
            with np.load(cache_path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}

    if arrays is None:
        arrays = _compute_arrays(frame, config, splits, pipeline, labeler)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwargs vs allow_pickle
            os.replace(tmp, cache_path)

    feature_names = tuple(str(name) for name in arrays["feature_names"])
    pct_names = tuple(str(name) for name in arrays["percentile_names"])
    fitted = pipeline or FittedPipeline(
        config=config,
        feature_names=feature_names,
        feature_mean=arrays["feature_mean"],
        feature_std=arrays["feature_std"],
        train_period=(str(frame.index[splits["train"].start]), str(frame.index[splits["train"].stop - 1])),
        labeler=labeler,
    )
    regime_ids = {"rules": arrays["regime_rules"].astype(np.int8)}
    first_bar = int(arrays["first_bar"])
    percentiles = arrays["percentile_features"].astype(np.float64)
    if pipeline is None and config.fit_hmm:
        train = splits["train"]
        rows = slice(max(train.start, first_bar), train.stop)
        fitted = FittedPipeline(
            config=fitted.config, feature_names=fitted.feature_names, feature_mean=fitted.feature_mean,
            feature_std=fitted.feature_std, hmm=fit_regime_hmm(percentiles[rows], arrays["regime_rules"][rows]),
            train_period=fitted.train_period, labeler=fitted.labeler,
        )
    if fitted.hmm is not None:
        probabilities = fitted.hmm.filter_proba(percentiles[first_bar:])
        hmm_regimes = np.full(len(percentiles), -1, dtype=np.int8)
        hmm_regimes[first_bar:] = np.argmax(probabilities, axis=1).astype(np.int8)
        regime_ids["hmm"] = hmm_regimes

    close = frame["close"].to_numpy(dtype=np.float64)
    market = MarketData(
        timestamps=frame.index.tz_convert(None).to_numpy(dtype="datetime64[ns]"),
        close=close,
        returns=returns_from_close(close),
        gap_before=gap_mask(frame.index),
        features=arrays["scaled_features"].astype(np.float32),
        feature_names=feature_names,
        regime_ids=regime_ids["rules"],
        first_bar=first_bar,
        splits=splits,
    )
    observation_features = np.concatenate(
        [arrays["denoised_features"], arrays["percentile_features"]], axis=1
    ).astype(np.float32)
    observation_features[:first_bar] = np.nan_to_num(observation_features[:first_bar], nan=0.0)
    return PreparedMarket(
        market=market,
        observation_features=observation_features,
        observation_feature_names=tuple(f"ekf_{name}" for name in feature_names) + pct_names,
        regime_ids=regime_ids,
        pipeline=fitted,
        frame_index=frame.index,
        artifacts=artifacts,
        prepended_bars=prepended,
    )


def _compute_arrays(frame: pd.DataFrame, config: PipelineConfig, splits: dict[str, slice],
                    pipeline: FittedPipeline | None, labeler: LabelerConfig) -> dict[str, np.ndarray]:
    gaps = gap_mask(frame.index)
    technical = compute_technical_features(frame, gap_mask=gaps, feature_set=config.feature_set)
    values = technical.values
    if pipeline is None:
        train = splits["train"]
        mean, std = fit_scaler(values[train], tuple(technical.names))
    else:
        if tuple(pipeline.feature_names) != tuple(technical.names):
            raise ValueError("the fitted pipeline's feature names differ from this version's features")
        mean, std = pipeline.feature_mean, pipeline.feature_std
    scaled = (values - mean) / std
    denoised = ekf_filter(scaled, EKFConfig(process_noise=config.process_noise,
                                             measurement_noise=config.measurement_noise))
    percentiles, percentile_names = regime_percentile_features(
        frame, window=config.percentile_window, gap_mask=gaps
    )
    regime_rules = label_regimes(frame, config=labeler)
    finite_rows = (
        np.isfinite(scaled).all(axis=1)
        & np.isfinite(denoised).all(axis=1)
        & np.isfinite(percentiles).all(axis=1)
        & (regime_rules >= 0)
    )
    invalid_after = np.flatnonzero(~finite_rows)
    first_bar = int(invalid_after[-1] + 1) if len(invalid_after) else 0
    if first_bar > config.warmup_bars:
        bad = int(invalid_after[invalid_after >= config.warmup_bars][0])
        raise ValueError(
            f"the pipeline produced NaN/inf or no regime at bar {bad} ({frame.index[bad]}), after the "
            f"{config.warmup_bars}-bar warm-up; check the data around that timestamp"
        )
    first_bar = max(first_bar, 0)
    return {
        "scaled_features": np.nan_to_num(scaled, nan=0.0).astype(np.float32),
        "denoised_features": np.nan_to_num(denoised, nan=0.0).astype(np.float32),
        "percentile_features": np.nan_to_num(percentiles, nan=0.5).astype(np.float32),
        "regime_rules": np.where(regime_rules >= 0, regime_rules, -1).astype(np.int8),
        "feature_names": np.array(technical.names),
        "percentile_names": np.array(percentile_names),
        "feature_mean": mean,
        "feature_std": std,
        "first_bar": np.array(first_bar),
    }
