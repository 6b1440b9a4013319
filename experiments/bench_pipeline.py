"""Pipeline speed benchmark: the whole causal pipeline on one data file, median of N runs.

Stages timed separately on the full series (no disk cache): load + validate, the 44
technical features, the EKF over the 44 standardized features, the six rolling percentile
features, the rules labeler, the Student-t HMM supervised fit on train and its forward filter
over all bars; plus ``prepare_market`` end to end (which runs all of them, fit included).

Run: ``himari bench pipeline [--data PATH] [--repeats 3]`` (default data: the real file in
``../shared/data`` when present, else the 45,000-bar synthetic market).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "btcusdt_1h_2020_2024.csv"


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def run_benchmark(data: str | None, *, repeats: int = 3) -> dict[str, Any]:
    import numpy as np

    from himari_env.data import (
        chronological_splits,
        gap_mask,
        load_ohlcv,
        synthesize_market,
        validate_ohlcv,
    )
    from himari_env.features.ekf import EKFConfig, ekf_filter
    from himari_env.features.percentiles import regime_percentile_features
    from himari_env.features.technical import compute_technical_features
    from himari_env.pipeline import PipelineConfig, prepare_market
    from himari_env.regimes.labeler import label_regimes
    from himari_env.regimes.student_t_hmm import StudentTHMM

    source = data or (str(DEFAULT_REAL) if DEFAULT_REAL.is_file() else "synthetic")

    def load():
        frame = synthesize_market(45_000, seed=0).frame if source == "synthetic" else load_ohlcv(source)
        validate_ohlcv(frame)
        return frame

    timings: dict[str, list[float]] = {}
    n_bars = 0
    for _ in range(repeats):
        seconds, frame = _timed(load)
        timings.setdefault("load + validate", []).append(seconds)
        n_bars = len(frame)
        gaps = gap_mask(frame.index)
        seconds, technical = _timed(lambda: compute_technical_features(frame, gap_mask=gaps))
        timings.setdefault("44 technical features", []).append(seconds)
        values = technical.values
        scaled = (values - np.nanmean(values, axis=0)) / np.nanstd(values, axis=0)
        seconds, _ = _timed(lambda: ekf_filter(scaled, EKFConfig()))
        timings.setdefault("EKF over 44 features", []).append(seconds)
        seconds, (percentiles, _) = _timed(lambda: regime_percentile_features(frame, gap_mask=gaps))
        timings.setdefault("6 percentile features", []).append(seconds)
        seconds, labels = _timed(lambda: label_regimes(frame))
        timings.setdefault("rules labeler", []).append(seconds)
        train = chronological_splits(len(frame))["train"]
        valid = np.isfinite(percentiles).all(axis=1) & (labels >= 0)
        rows = np.flatnonzero(valid[train]) + train.start
        hmm = StudentTHMM(n_components=4, random_state=0)
        seconds, _ = _timed(lambda: hmm.fit_supervised(percentiles[rows], labels[rows]))
        timings.setdefault("Student-t HMM fit (train)", []).append(seconds)
        first = int(np.flatnonzero(valid)[0])
        seconds, _ = _timed(lambda: hmm.filter_proba(percentiles[first:]))
        timings.setdefault("HMM forward filter (all bars)", []).append(seconds)
        seconds, _ = _timed(lambda: prepare_market(frame, config=PipelineConfig(fit_hmm=True), cache=False))
        timings.setdefault("prepare_market end to end (with HMM)", []).append(seconds)
    return {"data": source, "n_bars": n_bars, "repeats": repeats,
            "median_seconds": {stage: statistics.median(values) for stage, values in timings.items()},
            "runs": timings}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="OHLCV file (default: the real file when present, else synthetic)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per stage; the median is reported (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run_from_args(args: argparse.Namespace) -> int:
    from experiments.commands._output import format_table, to_json

    report = run_benchmark(args.data, repeats=args.repeats)
    if args.json:
        print(to_json(report))
        return 0
    rows = [[stage, f"{seconds:.3f}"] for stage, seconds in report["median_seconds"].items()]
    print(f"{report['data']} ({report['n_bars']:,} bars), median of {report['repeats']} runs\n")
    print(format_table(["stage", "median seconds"], rows))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    raise SystemExit(run_from_args(parser.parse_args()))
