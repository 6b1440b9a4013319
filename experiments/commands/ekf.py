"""``himari calibrate ekf``: grid-search the EKF denoiser's Q and R on train, report test.

The market (``--data`` file, or the seeded synthetic market when omitted) is validated and
split with :func:`himari_env.data.chronological_splits`; the grid is scored on the train
closes only, and the chosen config is reported on train and test in the design log's table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from experiments.commands._output import format_table, to_json

REPORT_FILE = "ekf_calibration.json"
CONFIG_FILE = "ekf_config.json"

#: Table rows: label, metric name, how a value is shown, how a difference is shown.
_TABLE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("Smoothness improvement", "smoothness_improvement", "{:.2f}x", "{:+.2f}"),
    ("Lag (bars)", "lag_bars", "{:d}", "{:+d}"),
    ("Signal correlation", "signal_correlation", "{:.4f}", "{:+.4f}"),
    ("Same direction ratio", "same_direction_ratio", "{:.1%}", "{:+.1%}"),
    ("Noise reduction", "noise_reduction", "{:.2f}x", "{:+.2f}"),
    ("Trend correlation", "trend_correlation", "{:.4f}", "{:+.4f}"),
    ("Overall score", "overall_score", "{:.4f}", "{:+.4f}"),
)


def register(
    root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]
) -> None:
    from himari_env.features.ekf import (
        DEFAULT_GRID_Q,
        DEFAULT_GRID_R,
        DEFAULT_MAX_LAG,
        DEFAULT_TREND_WINDOW,
    )

    parser = groups["calibrate"].add_parser(
        "ekf",
        help="grid-search the EKF denoiser's Q and R on train closes, report train vs test",
        description="Grid-search process noise Q and measurement noise R of the EKF denoiser "
        "on the train split's closes (percent log price), then report the chosen config on "
        "train and test. Without --data the seeded synthetic market is used.",
    )
    parser.add_argument("--data", type=Path, help="market file (default: the seeded synthetic market)")
    parser.add_argument(
        "--synthetic-bars", type=int, default=45_000, help="bars of the synthetic market (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic market (default: %(default)s)")
    parser.add_argument("--grid-q", type=float, nargs="+", help="process noise candidates (default: "
                        f"{' '.join(f'{q:g}' for q in DEFAULT_GRID_Q)})")
    parser.add_argument("--grid-r", type=float, nargs="+", help="measurement noise candidates (default: "
                        f"{' '.join(f'{r:g}' for r in DEFAULT_GRID_R)})")
    parser.add_argument(
        "--max-lag",
        type=int,
        default=DEFAULT_MAX_LAG,
        help="largest lag searched (default: %(default)s)",
    )
    parser.add_argument(
        "--trend-window",
        type=int,
        default=DEFAULT_TREND_WINDOW,
        help="centred moving-average window of the evaluation-only trend proxy (default: %(default)s)",
    )
    parser.add_argument("--top", type=int, default=10, help="grid rows to print (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--out", type=Path, help=f"folder for {CONFIG_FILE} and {REPORT_FILE} (default: print only)")
    parser.set_defaults(func=run_calibrate_ekf)


def run_calibrate_ekf(args: argparse.Namespace) -> int:
    from himari_env.data import chronological_splits, load_ohlcv, synthesize_market, validate_ohlcv
    from himari_env.features.ekf import DEFAULT_GRID_Q, DEFAULT_GRID_R, calibrate_ekf

    if args.data is not None:
        frame = load_ohlcv(args.data)
        source: dict[str, Any] = {"data": str(args.data)}
    else:
        frame = synthesize_market(n_bars=args.synthetic_bars, seed=args.seed).frame
        source = {"data": "synthetic", "bars": args.synthetic_bars, "seed": args.seed}
    validate_ohlcv(frame)
    splits = chronological_splits(len(frame))
    closes = frame["close"].to_numpy()
    result = calibrate_ekf(
        closes[splits["train"]],
        closes[splits["test"]],
        grid_q=tuple(args.grid_q) if args.grid_q else DEFAULT_GRID_Q,
        grid_r=tuple(args.grid_r) if args.grid_r else DEFAULT_GRID_R,
        max_lag=args.max_lag,
        trend_window=args.trend_window,
    )
    document = {
        "source": source,
        "splits": {
            name: {
                "start": frame.index[part.start].isoformat(),
                "stop": frame.index[part.stop - 1].isoformat(),
                "bars": part.stop - part.start,
            }
            for name, part in splits.items()
            if name in ("train", "test")
        },
        "settings": {"max_lag": args.max_lag, "trend_window": args.trend_window},
        **result.to_dict(),
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        result.config.to_json(args.out / CONFIG_FILE)
        (args.out / REPORT_FILE).write_text(to_json(document) + "\n", encoding="utf-8")
    if args.json:
        print(to_json(document))
        return 0
    print(_grid_table(result.ranked_grid()[: max(args.top, 0)]))
    print()
    config = result.config
    print(
        f"Chosen on train: process_noise (Q) = {config.process_noise:g}, "
        f"measurement_noise (R) = {config.measurement_noise:g} (Q/R = {config.noise_ratio:g})"
    )
    print()
    print(results_table(result.train.to_dict(), result.test.to_dict()))
    if args.out is not None:
        print(f"\nwrote {args.out / CONFIG_FILE} and {args.out / REPORT_FILE}")
    return 0


def results_table(train: dict[str, Any], test: dict[str, Any]) -> str:
    """The design log's | Metric | Training | Test | Diff | table."""
    rows = [
        (
            label,
            value_format.format(train[name]),
            value_format.format(test[name]),
            diff_format.format(test[name] - train[name]),
        )
        for label, name, value_format, diff_format in _TABLE_ROWS
    ]
    return format_table(("Metric", "Training", "Test", "Diff"), rows)


def _grid_table(points: list[Any]) -> str:
    rows = [
        (
            rank,
            f"{point.config.process_noise:g}",
            f"{point.config.measurement_noise:g}",
            f"{point.config.noise_ratio:.3g}",
            f"{point.train.smoothness_improvement:.2f}x",
            point.train.lag_bars,
            f"{point.train.same_direction_ratio:.1%}",
            f"{point.train.noise_reduction:.2f}x",
            f"{point.train.overall_score:.4f}",
        )
        for rank, point in enumerate(points, start=1)
    ]
    headers = (
        "Rank",
        "Q",
        "R",
        "Q/R",
        "Smoothness",
        "Lag",
        "Same dir",
        "Noise red.",
        "Train score",
    )
    return format_table(headers, rows)
