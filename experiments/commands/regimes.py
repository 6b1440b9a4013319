"""``himari fit-regimes``: percentile features, balanced labels, supervised Student-t HMM.

The command line only; the computation and its pipeline are :mod:`himari_env.regimes.fit_report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.commands._output import format_table, to_json
from himari_env.regimes.fit_report import (
    DEFAULT_WARMUP_BARS,
    MODEL_KEYS,
    RegimeFit,
    fit_regimes,
    save_regime_models,
)

__all__ = ["DEFAULT_WARMUP_BARS", "RegimeFit", "fit_regimes", "format_report", "register", "write_artefacts"]

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


# The computations live in the library (himari_env.regimes.fit_report); the command formats them.


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
    """Write the models, labeler config and series (:func:`save_regime_models`) and the report
    (``report.json``, ``report.md``)."""
    written = save_regime_models(fit, out_dir, frame_index)
    report_json = out_dir / "report.json"
    report_json.write_text(to_json(fit.report) + "\n")
    report_md = out_dir / "report.md"
    report_md.write_text(format_report(fit.report) + "\n")
    return [*written, report_json, report_md]


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
