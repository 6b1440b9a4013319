"""``himari fit-regimes``: percentile features, balanced labels, supervised Student-t HMM.

Pipeline (everything fitted on train only):

1. the six rolling-percentile regime features (:mod:`himari_env.features.percentiles`);
2. the balanced rule-based labels (:mod:`himari_env.regimes.labeler`);
3. ``chronological_splits(len(frame))`` (warm-up raised when a larger ``--window`` needs it);
4. :class:`~himari_env.regimes.StudentTHMM` fitted supervised on the train rows, and the
   same supervised fit of hmmlearn's ``GaussianHMM`` (diagonal) as the baseline;
5. both models' causal forward filters run once over every decision bar (train, val, test
   in order: the filter at t sees bars <= t only), and their argmax is scored against the
   labeler per split: accuracy overall and per regime (the share of a regime's bars the
   filter names correctly), the confusion matrix (rows: labeler, columns: filter), shares
   and mean run lengths, and the mean one-step predictive log-likelihood per bar.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.commands._output import format_table, to_json

DEFAULT_WARMUP_BARS = 720
MODEL_KEYS = ("student_t", "gaussian")
MODEL_TITLES = {"student_t": "Student-t HMM", "gaussian": "Gaussian HMM"}


def register(
    root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]
) -> None:
    parser = root.add_parser(
        "fit-regimes",
        help="label regimes, fit the Student-t HMM on train, score its causal filter",
        description="Percentile features, balanced rule-based regime labels and a supervised "
        "Student-t HMM, all fitted on the train split; scores the HMM's causal forward filter "
        "against the labels on train, val and test, next to a Gaussian HMM baseline.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="OHLCV file (Binance kline CSV/ZIP, OHLCV CSV/Parquet); default: the synthetic market",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic market (default 0)"
    )
    parser.add_argument(
        "--window", type=int, default=500, help="percentile window in bars (default 500)"
    )
    parser.add_argument(
        "--smoothing",
        type=float,
        default=1.0,
        help="additive pseudo-count of the start and transition counts (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--out", type=Path, default=None, help="write artefacts and the report here (default: print only)"
    )
    parser.set_defaults(func=run_from_args)


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


def format_report(report: dict[str, Any]) -> str:
    """Human-readable tables of a :func:`fit_regimes` report (Markdown-compatible)."""
    from himari_env.constants import REGIME_NAMES
    from himari_env.regimes import TARGET_SHARES

    lines = [
        f"# fit-regimes: {report['source']}",
        "",
        f"{report['n_bars']} bars, {report['first_timestamp']} .. {report['last_timestamp']}; "
        f"percentile window {report['window']}; warm-up {report['warmup_bars']} bars; "
        "splits (rows) " + ", ".join(f"{k} {v[0]}..{v[1]}" for k, v in report["splits"].items()),
        "",
        "## Labeler: shares % (mean run length, bars)",
        "",
    ]
    split_names = ("train", "val", "test", "all")
    rows = [
        [
            split,
            *(
                f"{100 * report[split]['labels']['shares'][r]:.1f} "
                f"({report[split]['labels']['mean_run_length'][r]:.1f})"
                for r in REGIME_NAMES
            ),
        ]
        for split in split_names
    ]
    rows.append(["design log", *(f"{100 * s:.1f}" for s in TARGET_SHARES)])
    lines += [format_table(["split", *REGIME_NAMES], rows), ""]
    lines += ["## Causal filter argmax vs labeler: accuracy %", ""]
    acc_rows = []
    for key in MODEL_KEYS:
        for split in ("train", "test"):
            section = report[split][key]
            acc_rows.append(
                [
                    MODEL_TITLES[key],
                    split,
                    f"{100 * section['accuracy']['overall']:.1f}",
                    *(
                        f"{100 * _nan(section['accuracy']['per_regime'][r]):.1f}"
                        for r in REGIME_NAMES
                    ),
                    f"{section['log_likelihood_per_bar']:.3f}",
                ]
            )
    acc_rows.append(["design log", "test", "63.4", "80.4", "59.3", "22.7", "82.5", ""])
    lines += [
        format_table(["model", "split", "overall", *REGIME_NAMES, "log-lik/bar"], acc_rows),
        "",
    ]
    for key in MODEL_KEYS:
        lines += [f"## {MODEL_TITLES[key]}: test confusion (rows labeler, columns filter)", ""]
        matrix = report["test"][key]["confusion"]
        lines += [
            format_table(
                ["labeler \\ filter", *REGIME_NAMES],
                [[REGIME_NAMES[i], *row] for i, row in enumerate(matrix)],
            ),
            "",
        ]
    for key in MODEL_KEYS:
        names = report["feature_names"]
        means = report["emission_means"][key]
        headers = ["regime", *names] + (["dof"] if key == "student_t" else [])
        table_rows = [
            [r, *(f"{means[r][f]:.3f}" for f in names)]
            + ([f"{report['student_t_dofs'][r]:.1f}"] if key == "student_t" else [])
            for r in REGIME_NAMES
        ]
        lines += [
            f"## {MODEL_TITLES[key]}: emission means (train)",
            "",
            format_table(headers, table_rows),
            "",
        ]
    return "\n".join(lines)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def write_artefacts(fit: RegimeFit, out_dir: Path, frame_index: pd.DatetimeIndex) -> list[Path]:
    """Write models (JSON + NPZ), the labeler config, per-bar series (NPZ) and the report."""
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
    report_json = out_dir / "report.json"
    report_json.write_text(to_json(fit.report) + "\n")
    report_md = out_dir / "report.md"
    report_md.write_text(format_report(fit.report) + "\n")
    return [*written, gaussian_json, gaussian_npz, labeler_json, series, report_json, report_md]


def run_from_args(args: argparse.Namespace) -> int:
    if args.data is None:
        from himari_env.data import synthesize_market

        frame = synthesize_market(seed=args.seed).frame
        source = f"synthetic market (seed {args.seed})"
    else:
        from himari_env.data import load_ohlcv

        frame = load_ohlcv(args.data)
        source = str(args.data)
    fit = fit_regimes(frame, window=args.window, smoothing=args.smoothing, source=source)
    if args.out is not None:
        written = write_artefacts(fit, args.out, frame.index)
        fit.report["artefacts"] = [str(p) for p in written]
    if args.json:
        print(to_json(fit.report))
    else:
        print(format_report(fit.report))
        if args.out is not None:
            print(f"wrote {len(fit.report['artefacts'])} files to {args.out}")
    return 0
