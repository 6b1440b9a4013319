"""``himari data validate | synth | download``: inspect, generate and fetch market data.

Exit status of ``validate``: 0 when the file is valid (gaps and zero-volume bars are only
reported), 1 on a structural fault (the message names the rows), 2 when the file cannot be
parsed at all (raised errors are turned into status 2 by :func:`experiments.cli.main`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from experiments.commands._output import format_table, to_json


def register(
    root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]
) -> None:
    data = groups["data"]

    validate = data.add_parser(
        "validate",
        help="load a market file and report gaps, duplicates, bad bars and the default splits",
        description="Load PATH (Binance kline CSV/ZIP or a directory of ZIPs, generic OHLCV "
        "CSV/Parquet) and validate it. Structural faults (unsorted or duplicate times, "
        "off-grid spacing, NaN/inf, bad prices or volume) are listed first; gaps and "
        "zero-volume bars are only reported. Bars are named by the file's line number "
        "(header = line 1). Exit 0 when valid, 1 on structural faults, 2 when the file "
        "cannot be parsed.",
    )
    validate.add_argument("path", type=Path, help="file, or a directory of Binance ZIPs")
    validate.add_argument("--json", action="store_true", help="print the full report as JSON")
    validate.add_argument(
        "--interval", default="1h", help="expected bar spacing (default: %(default)s)"
    )
    validate.add_argument(
        "--warmup-bars",
        type=int,
        default=720,
        help="warm-up bars before the splits (default: %(default)s)",
    )
    validate.add_argument(
        "--timestamp-column",
        metavar="NAME",
        help="generic CSV/Parquet: the time column's name (default: timestamp)",
    )
    validate.add_argument(
        "--timestamp-unit",
        choices=("s", "ms", "us", "ns"),
        help="generic CSV/Parquet: epoch unit of the time column (default: ISO-8601 text, "
        "or epochs whose unit is read from their magnitude)",
    )
    for canonical in ("open", "high", "low", "close", "volume"):
        validate.add_argument(
            f"--{canonical}-column",
            metavar="NAME",
            help=f"generic CSV/Parquet: the {canonical} column's name (default: {canonical})",
        )
    validate.add_argument(
        "--unseen",
        type=Path,
        help="later data (same formats): validated the same way, must start after PATH ends",
    )
    validate.set_defaults(func=run_validate)

    synth = data.add_parser(
        "synth",
        help="write the seeded synthetic market (CSV or Parquet by suffix) and print its stats",
        description="Write the seeded 4-regime synthetic market (the env's default data) to "
        "--out, with its true regime id per bar, and print its headline statistics. Same "
        "--bars and --seed, same file.",
    )
    synth.add_argument(
        "--bars", type=int, default=45_000, help="number of hourly bars (default: %(default)s)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    synth.add_argument("--out", type=Path, required=True, help="output file: .csv, .parquet or .pq")
    synth.add_argument("--json", action="store_true", help="print the stats as JSON")
    synth.set_defaults(func=run_synth)

    download = data.add_parser(
        "download",
        help="download Binance monthly spot kline ZIPs with checksum verification and resume",
        description="Download monthly spot kline ZIPs from data.binance.vision into --dest, "
        "verify each against its published SHA-256, resume interrupted files and skip files "
        "already verified. Load the result with: himari data validate DEST.",
    )
    download.add_argument(
        "--symbol", default="BTCUSDT", help="Binance symbol (default: %(default)s)"
    )
    download.add_argument("--interval", default="1h", help="kline interval (default: %(default)s)")
    download.add_argument("--start", required=True, help="first month, YYYY-MM")
    download.add_argument("--end", required=True, help="last month, YYYY-MM")
    download.add_argument("--dest", type=Path, required=True, help="folder for the ZIPs")
    download.add_argument(
        "--base-url",
        default=None,
        help="mirror root (file:// works offline) (default: https://data.binance.vision)",
    )
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    download.add_argument("--json", action="store_true", help="print the result as JSON")
    download.set_defaults(func=run_download)


def run_validate(args: argparse.Namespace) -> int:
    from himari_env.data import (
        OHLCVValidationError,
        chronological_splits,
        describe_splits,
        load_ohlcv,
        validate_ohlcv,
        validate_unseen,
    )

    mapping: dict[str, Any] = {}
    for keyword in ("timestamp_column", "timestamp_unit", "open_column", "high_column",
                    "low_column", "close_column", "volume_column"):
        if getattr(args, keyword, None):
            mapping[keyword] = getattr(args, keyword)
    frame = load_ohlcv(args.path, **mapping)
    report = validate_ohlcv(frame, expected_interval=args.interval, raise_on_error=False)
    reports = [(args.path, report)]
    unseen_index = None
    if args.unseen is not None:
        unseen = load_ohlcv(args.unseen, **mapping)
        try:
            unseen_report = validate_unseen(
                frame.index, unseen, expected_interval=args.interval, raise_on_error=False
            )
        except OHLCVValidationError as error:  # unseen overlaps the in-sample data
            print(f"himari: invalid unseen data in {args.unseen}: {error}", file=sys.stderr)
            return 1
        reports.append((args.unseen, unseen_report))
        unseen_index = unseen.index
    all_valid = all(r.is_valid for _, r in reports)
    split_report = None
    if all_valid and len(frame) > args.warmup_bars:
        splits = chronological_splits(len(frame), warmup_bars=args.warmup_bars)
        split_report = describe_splits(frame.index, splits, unseen_index=unseen_index)

    if args.json:
        document: dict[str, Any] = {"path": str(args.path), "report": report.to_dict()}
        if args.unseen is not None:
            document["unseen_path"] = str(args.unseen)
            document["unseen_report"] = reports[1][1].to_dict()
        document["splits"] = split_report.to_dict() if split_report else None
        print(to_json(document))
    else:
        for index, (path, path_report) in enumerate(reports):
            _print_report(path, path_report, leading_blank=index > 0)
        if split_report is not None:
            print()
            print(
                format_table(
                    ("split", "start", "stop", "bars", "first", "last"),
                    split_report.summary_rows(),
                )
            )
    for path, path_report in reports:
        if not path_report.is_valid:
            print(
                f"himari: invalid OHLCV data in {path}: "
                + "; ".join(path_report.structural_faults()),
                file=sys.stderr,
            )
    return 0 if all_valid else 1


def _print_report(path: Path, report: Any, *, leading_blank: bool) -> None:
    """Structural faults first (each names its first bars and counts the rest), then the
    check table, then at most ``GAPS_LISTED`` gap runs with the count of the others."""
    from himari_env.data.validation import GAPS_LISTED

    if leading_blank:
        print()
    print(f"{path}")
    faults = report.structural_faults()
    if faults:
        print(f"{len(faults)} structural fault(s); the pipeline refuses this file until they are fixed:")
        for fault in faults:
            print(f"  - {fault}")
        print()
    print(format_table(("check", "count", "status", "first bars"), report.summary_rows()))
    if report.gaps:
        rows, more = report.gap_listing(GAPS_LISTED)
        print()
        print(
            format_table(
                ("gap", "place after", "last bar before", "first bar after", "missing bars"), rows
            )
        )
        if more:
            print(f"(+{more} more gap runs; --json lists all {report.n_gap_runs})")


def run_synth(args: argparse.Namespace) -> int:
    from himari_env.data import synthesize_market

    suffix = args.out.suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise ValueError(f"--out {args.out}: suffix must be .csv, .parquet or .pq")
    market = synthesize_market(n_bars=args.bars, seed=args.seed)
    table = market.frame.copy()
    table["regime_id"] = market.regime_ids
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(args.out, date_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        table.to_parquet(args.out)
    stats = market_stats(market.frame, market.regime_ids)
    stats = {"out": str(args.out), "seed": args.seed, **stats}
    if args.json:
        print(to_json(stats))
    else:
        rows = [(name, value) for name, value in stats.items() if name != "regime_shares"]
        rows += [(f"share {name}", share) for name, share in stats["regime_shares"].items()]
        print(format_table(("statistic", "value"), rows))
    return 0


def market_stats(frame, regime_ids: np.ndarray | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Headline statistics of a canonical frame: size, hourly return std and excess kurtosis.

    Returns exclude any bar-to-bar step that spans a gap (``gap_mask``).
    """
    import pandas as pd

    from himari_env.constants import BARS_PER_YEAR, REGIME_NAMES
    from himari_env.data import gap_mask

    close = frame["close"].to_numpy(dtype=np.float64)
    returns = close[1:] / close[:-1] - 1.0
    returns = returns[~gap_mask(frame.index)[1:]]
    series = pd.Series(returns)
    hourly_std = float(series.std())
    stats: dict[str, Any] = {
        "rows": len(frame),
        "first": frame.index[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last": frame.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hourly_return_std": hourly_std,
        "annualized_vol": hourly_std * float(np.sqrt(BARS_PER_YEAR)),
        "excess_kurtosis": float(series.kurt()),
        "first_close": float(close[0]),
        "last_close": float(close[-1]),
    }
    if regime_ids is not None:
        counts = np.bincount(np.asarray(regime_ids, dtype=np.int64), minlength=len(REGIME_NAMES))
        stats["regime_shares"] = {
            name: float(count) / len(regime_ids)
            for name, count in zip(REGIME_NAMES, counts, strict=True)
        }
    return stats


def run_download(args: argparse.Namespace) -> int:
    from himari_env.data import download_binance_klines

    results = download_binance_klines(
        args.symbol,
        args.interval,
        args.start,
        args.end,
        args.dest,
        progress=not args.no_progress,
        **({"base_url": args.base_url} if args.base_url else {}),
    )
    if args.json:
        print(to_json([result.to_dict() for result in results]))
    else:
        print(
            format_table(
                ("month", "file", "bytes", "status", "sha256"),
                [
                    (r.month, r.path.name, r.size_bytes, r.status, r.sha256[:16] + "...")
                    for r in results
                ],
            )
        )
        print(f"\nload with: himari data validate {args.dest}")
    return 0
