"""The regime fit report (the computation behind ``himari fit-regimes``).

Pipeline (everything fitted on train only):

1. the six rolling-percentile regime features (:mod:`himari_env.features.percentiles`);
2. the balanced rule-based labels (:mod:`himari_env.regimes.labeler`);
3. ``chronological_splits(len(frame))`` (warm-up raised when a larger ``window`` needs it);
4. :class:`~himari_env.regimes.StudentTHMM` fitted supervised on the train rows, and the
   same supervised fit of hmmlearn's ``GaussianHMM`` (diagonal) as the baseline;
5. both models' causal forward filters run once over every decision bar (train, val, test
   in order: the filter at t sees bars <= t only), and their argmax is scored against the
   labeler per split: accuracy overall and per regime (the share of a regime's bars the
   filter names correctly), the confusion matrix (rows: labeler, columns: filter), shares
   and mean run lengths, and the mean one-step predictive log-likelihood per bar.

:func:`save_regime_models` writes the fitted models and series (JSON + NPZ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_WARMUP_BARS = 720
MODEL_KEYS = ("student_t", "gaussian")


@dataclass
class RegimeFit:
    """Everything ``fit-regimes`` computes; ``report`` is the JSON-ready summary."""

    report: dict[str, Any]
    features: np.ndarray  # (n, 6) float64
    feature_names: tuple[str, ...]
    regime_ids: np.ndarray  # (n,) int8, -1 in warm-up
    filtered: dict[str, np.ndarray]  # model key -> (n, 4) float64, NaN before the first split
    models: dict[str, Any]  # "student_t": StudentTHMM, "gaussian": GaussianHMM


def fit_regimes(
    frame: pd.DataFrame,
    *,
    window: int = 500,
    smoothing: float = 1.0,
    source: str = "frame",
) -> RegimeFit:
    """Run the whole pipeline on a canonical OHLCV frame (see the module docstring)."""
    from himari_env.constants import N_REGIMES, REGIME_NAMES
    from himari_env.data import chronological_splits
    from himari_env.features.percentiles import feature_warmup_bars, regime_percentile_features
    from himari_env.regimes import (
        LabelerConfig,
        StudentTHMM,
        forward_filter_with_evidence,
        gaussian_hmm_from_labels,
        label_regimes,
        labeler_warmup_bars,
        regime_label_stats,
    )

    features, names = regime_percentile_features(frame, window=window)
    config = replace(LabelerConfig(), window=window)
    regime_ids = label_regimes(frame, config=config)
    warmup = max(DEFAULT_WARMUP_BARS, feature_warmup_bars(window), labeler_warmup_bars(config))
    splits = chronological_splits(len(frame), warmup_bars=warmup)
    train = splits["train"]

    student_t = StudentTHMM(N_REGIMES).fit_supervised(
        features[train], regime_ids[train], smoothing=smoothing, feature_names=names
    )
    gaussian = gaussian_hmm_from_labels(
        features[train], regime_ids[train], n_components=N_REGIMES, smoothing=smoothing
    )
    models = {"student_t": student_t, "gaussian": gaussian}

    decision = slice(warmup, len(frame))
    filtered: dict[str, np.ndarray] = {}
    evidence: dict[str, np.ndarray] = {}
    for key, model in models.items():
        proba = np.full((len(frame), N_REGIMES), np.nan)
        step_ll = np.full(len(frame), np.nan)
        log_lik = model._compute_log_likelihood(features[decision])
        proba[decision], step_ll[decision] = forward_filter_with_evidence(
            log_lik, model.startprob_, model.transmat_
        )
        filtered[key], evidence[key] = proba, step_ll

    def model_section(key: str, rows: slice) -> dict[str, Any]:
        truth = regime_ids[rows].astype(np.int64)
        predicted = filtered[key][rows].argmax(axis=1)
        confusion = np.zeros((N_REGIMES, N_REGIMES), dtype=np.int64)
        np.add.at(confusion, (truth, predicted), 1)
        support = confusion.sum(axis=1)
        recall = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
        stats = regime_label_stats(predicted)
        return {
            "accuracy": {
                "overall": float(np.trace(confusion) / confusion.sum()),
                "per_regime": dict(zip(REGIME_NAMES, recall.tolist(), strict=True)),
            },
            "confusion": confusion.tolist(),
            "shares": dict(zip(REGIME_NAMES, stats.shares, strict=True)),
            "mean_run_length": dict(zip(REGIME_NAMES, stats.mean_run_length, strict=True)),
            "log_likelihood_per_bar": float(evidence[key][rows].mean()),
        }

    report: dict[str, Any] = {
        "source": source,
        "n_bars": len(frame),
        "first_timestamp": str(frame.index[0]),
        "last_timestamp": str(frame.index[-1]),
        "window": window,
        "warmup_bars": warmup,
        "labeler_warmup_bars": labeler_warmup_bars(config),
        "labeler": config.to_dict(),
        "feature_names": list(names),
        "regime_names": list(REGIME_NAMES),
        "confusion_axes": "rows: labeler regime, columns: filter argmax, ids 0..3",
        "splits": {name: [s.start, s.stop] for name, s in splits.items()},
    }
    for split_name, rows in [*splits.items(), ("all", decision)]:
        label_stats = regime_label_stats(regime_ids[rows])
        section: dict[str, Any] = {
            "n_bars": rows.stop - rows.start,
            "labels": {
                "shares": dict(zip(REGIME_NAMES, label_stats.shares, strict=True)),
                "mean_run_length": dict(
                    zip(REGIME_NAMES, label_stats.mean_run_length, strict=True)
                ),
                "min_run_length": label_stats.min_run_length,
            },
        }
        for key in MODEL_KEYS:
            section[key] = model_section(key, rows)
        report[split_name] = section
    report["emission_means"] = {
        "student_t": _means_table(student_t.means_, names),
        "gaussian": _means_table(gaussian.means_, names),
    }
    report["student_t_dofs"] = dict(zip(REGIME_NAMES, student_t.dofs_.tolist(), strict=True))
    return RegimeFit(report, features, names, regime_ids, filtered, models)


def _means_table(means: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    from himari_env.constants import REGIME_NAMES

    return {
        regime: dict(zip(names, row.tolist(), strict=True))
        for regime, row in zip(REGIME_NAMES, means, strict=True)
    }


def save_regime_models(fit: RegimeFit, out_dir: Path, frame_index: pd.DatetimeIndex) -> list[Path]:
    """Write the fitted models (JSON + NPZ, no pickle), the labeler config and the per-bar
    series (NPZ) into ``out_dir``; returns the paths written.

    Files: ``student_t_hmm.json/.npz`` (:meth:`StudentTHMM.save`), ``gaussian_hmm.json/.npz``
    (hmmlearn's diagonal ``GaussianHMM``: start probabilities, transitions, means, covariances),
    ``labeler_config.json`` and ``regime_series.npz`` (timestamps, percentile features, labels,
    each model's filtered probabilities).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = list(fit.models["student_t"].save(out_dir / "student_t_hmm"))
    gaussian = fit.models["gaussian"]
    gaussian_json = out_dir / "gaussian_hmm.json"
    gaussian_npz = out_dir / "gaussian_hmm.npz"
    gaussian_json.write_text(
        json.dumps(
            {
                "format": "hmmlearn.GaussianHMM.diag",
                "n_components": int(gaussian.n_components),
                "n_features": int(gaussian.n_features),
                "min_covar": float(gaussian.min_covar),
                "feature_names": list(fit.feature_names),
                "arrays": gaussian_npz.name,
            },
            indent=2,
        )
        + "\n"
    )
    np.savez(
        gaussian_npz,
        startprob=gaussian.startprob_,
        transmat=gaussian.transmat_,
        means=gaussian.means_,
        covars=gaussian._covars_,
    )
    labeler_json = out_dir / "labeler_config.json"
    labeler_json.write_text(json.dumps(fit.report["labeler"], indent=2) + "\n")
    series = out_dir / "regime_series.npz"
    np.savez(
        series,
        timestamp_ns=frame_index.as_unit("ns").asi8,
        features=fit.features,
        feature_names=np.array(fit.feature_names),
        regime_ids=fit.regime_ids,
        student_t_proba=fit.filtered["student_t"],
        gaussian_proba=fit.filtered["gaussian"],
    )
    return [*written, gaussian_json, gaussian_npz, labeler_json, series]
