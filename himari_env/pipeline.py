"""From a canonical OHLCV frame to everything the environment observes, fitted on train.

:func:`prepare_market` runs the whole causal pipeline once over the full series:

1. the data layer's gap mask (no return silently spans a gap),
2. the 44 technical features, standardized with mean/std fitted on the **train** rows,
3. the EKF denoiser over each standardized feature (filtering only),
4. the six rolling percentile regime features,
5. the rules labeler's regime ids, and, when asked, the Student-t HMM fitted on train
   (supervised from the labels) and run as a causal forward filter.

Everything fitted is stored in a :class:`FittedPipeline` (JSON + NPZ, never pickle) so
evaluation rebuilds the exact observation on other data (e.g. the unseen set) without
refitting. Results are cached on disk under a key that hashes the data and the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from himari_env.data import chronological_splits, gap_mask, validate_ohlcv
from himari_env.features.ekf import EKFConfig, ekf_filter
from himari_env.features.percentiles import regime_percentile_features
from himari_env.features.technical import compute_technical_features
from himari_env.market import MarketData, returns_from_close
from himari_env.regimes.labeler import label_regimes

PIPELINE_VERSION = 1


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
    """

    warmup_bars: int = 720
    percentile_window: int = 500
    process_noise: float = 0.001
    measurement_noise: float = 0.1
    fit_hmm: bool = False
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown pipeline config keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(values)
        if "split_fractions" in values:
            values["split_fractions"] = tuple(values["split_fractions"])
        return cls(**values)


@dataclass
class FittedPipeline:
    """Everything fitted on train: feature scaler, EKF config and (optionally) the HMM."""

    config: PipelineConfig
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    hmm: Any | None = None
    train_period: tuple[str, str] = ("", "")

    def save(self, directory: str | Path) -> Path:
        """Write ``pipeline.json`` and ``pipeline_scaler.npz`` (and the HMM files) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        document = {
            "version": PIPELINE_VERSION,
            "config": self.config.to_dict(),
            "feature_names": list(self.feature_names),
            "train_period": list(self.train_period),
            "has_hmm": self.hmm is not None,
        }
        (directory / "pipeline.json").write_text(json.dumps(document, indent=2))
        np.savez(directory / "pipeline_scaler.npz", mean=self.feature_mean, std=self.feature_std)
        if self.hmm is not None:
            self.hmm.save(directory / "regime_hmm")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FittedPipeline:
        directory = Path(directory)
        document = json.loads((directory / "pipeline.json").read_text())
        if document.get("version") != PIPELINE_VERSION:
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
        )


@dataclass(frozen=True)
class PreparedMarket:
    """The core env's :class:`MarketData` plus the observation wrapper's arrays."""

    market: MarketData
    observation_features: np.ndarray
    observation_feature_names: tuple[str, ...]
    regime_ids: dict[str, np.ndarray] = field(default_factory=dict)
    pipeline: FittedPipeline | None = None
    frame_index: pd.DatetimeIndex | None = None


def _frame_digest(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(frame.index.asi8.tobytes())
    digest.update(np.ascontiguousarray(frame[["open", "high", "low", "close", "volume"]].to_numpy()).tobytes())
    return digest.hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$HIMARI_CACHE_DIR`` or ``<tmp>/himari-cache`` (never inside the read-only data folder)."""
    return Path(os.environ.get("HIMARI_CACHE_DIR", Path(tempfile.gettempdir()) / "himari-cache"))


def prepare_market(
    frame: pd.DataFrame,
    *,
    config: PipelineConfig | None = None,
    pipeline: FittedPipeline | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> PreparedMarket:
    """Run the causal pipeline over ``frame``.

    Parameters
    ----------
    frame : canonical OHLCV frame (validated here; structural faults raise).
    config : pipeline settings (ignored when ``pipeline`` is given: its config is used).
    pipeline : an already fitted pipeline (e.g. loaded from a run folder): nothing is
        refitted; the whole ``frame`` is then one ``"all"`` decision range plus its
        chronological splits.
    cache : reuse arrays cached on disk under a hash of the data and the config.
    """
    validate_ohlcv(frame)
    if pipeline is not None:
        config = pipeline.config
    config = config or PipelineConfig()
    n = len(frame)
    splits = chronological_splits(n, warmup_bars=config.warmup_bars, fractions=config.split_fractions)
    arrays = None
    cache_path = None
    if cache:
        key_source = json.dumps(
            {"data": _frame_digest(frame), "config": config.to_dict(), "version": PIPELINE_VERSION,
             "pipeline": None if pipeline is None else [pipeline.feature_mean.tolist(), pipeline.feature_std.tolist()]},
            sort_keys=True,
        )
        key = hashlib.sha256(key_source.encode()).hexdigest()[:24]
        cache_path = Path(cache_dir or default_cache_dir()) / f"market-{key}.npz"
        if cache_path.is_file():
            with np.load(cache_path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}

    if arrays is None:
        arrays = _compute_arrays(frame, config, splits, pipeline)
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
    )
    regime_ids = {"rules": arrays["regime_rules"].astype(np.int8)}
    if config.fit_hmm or (pipeline is not None and pipeline.hmm is not None):
        fitted, regime_ids["hmm"] = _hmm_regimes(fitted, arrays, splits)

    first_bar = int(arrays["first_bar"])
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
    )


def _compute_arrays(frame: pd.DataFrame, config: PipelineConfig, splits: dict[str, slice],
                    pipeline: FittedPipeline | None) -> dict[str, np.ndarray]:
    gaps = gap_mask(frame.index)
    technical = compute_technical_features(frame, gap_mask=gaps)
    values = technical.values
    train = splits["train"]
    if pipeline is None:
        train_rows = values[train]
        mean = np.nanmean(train_rows, axis=0)
        std = np.nanstd(train_rows, axis=0)
        constant = ~(std > 1e-12)
        if constant.any():
            names = [technical.names[i] for i in np.flatnonzero(constant)]
            raise ValueError(f"features {names} are constant on the train split; cannot standardize them")
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
    regime_rules = label_regimes(frame)
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


def _hmm_regimes(fitted: FittedPipeline, arrays: dict[str, np.ndarray],
                 splits: dict[str, slice]) -> tuple[FittedPipeline, np.ndarray]:
    from himari_env.regimes.student_t_hmm import StudentTHMM

    percentiles = arrays["percentile_features"].astype(np.float64)
    first_bar = int(arrays["first_bar"])
    if fitted.hmm is None:
        train = splits["train"]
        rows = slice(max(train.start, first_bar), train.stop)
        hmm = StudentTHMM(n_components=4, random_state=0)
        hmm.fit_supervised(percentiles[rows], arrays["regime_rules"][rows])
        fitted = FittedPipeline(
            config=fitted.config, feature_names=fitted.feature_names, feature_mean=fitted.feature_mean,
            feature_std=fitted.feature_std, hmm=hmm, train_period=fitted.train_period,
        )
    assert fitted.hmm is not None
    probabilities = fitted.hmm.filter_proba(percentiles[first_bar:])
    regimes = np.full(len(percentiles), -1, dtype=np.int8)
    regimes[first_bar:] = np.argmax(probabilities, axis=1).astype(np.int8)
    return fitted, regimes
