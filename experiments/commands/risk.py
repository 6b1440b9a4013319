"""``himari calibrate risk`` and ``himari calibrate sortino``: fit on train, report train vs test.

Both read the synthetic market by default (``--data PATH`` loads any supported OHLCV file),
split it with ``chronological_splits(len(frame))`` (60/20/20 after a 720-bar warm-up) and
trade a reference momentum rule (``sign(close[t] - close[t - lookback])``, 24 bars) with the
env's exact accounting (fee on turnover at ``--fee-rate``).

``calibrate risk``
    Fits the EVT tails (H1) and the volatility target (H3) on train returns (gap-spanning
    returns excluded and counted), then selects the drawdown brake (H4) on train from a
    small grid by the Calmar ratio of the reference rule sized by the risk layer
    (``--no-brake-search`` keeps 3/6/10 % -> 30/60/95 %). H2 Kelly, H5 VaR, H6 safe margin,
    H7 leverage and H8 risk budget keep their documented defaults (they learn per episode or
    are budgets). Reports, as the design log: xi, sigma, VaR99, ES99, the reference rule's
    Kelly win rate and payoff, target and annual vol, brake thresholds; max drawdown and VaR99
    of the reference rule with the risk layer (and without, for comparison), train vs test;
    and how often each method bound the size.
``calibrate sortino``
    Grid over trade_cost, drawdown_weight and reward_scale (see
    :mod:`wrappers.sortino_calibration` for the criterion); reports Sortino, max
    drawdown, reward-return correlation and trade count of the reference rule, train vs test.

``--out DIR`` writes ``risk_config.json`` / ``sortino_config.json`` (load them with
``RiskConfig.load`` / ``SortinoConfig.load``), a JSON report and a Markdown report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from experiments.commands._output import format_table, to_json
from himari_env.constants import DEFAULT_FEE_RATE
from himari_env.risk.report import (
    DEFAULT_EPISODE_LENGTH,
    DEFAULT_LOOKBACK,
    DEFAULT_SYNTHETIC_BARS,
    MarketInputs,
    calibrate_risk_report,
    load_inputs,
)

__all__ = ["MarketInputs", "calibrate_risk_report", "load_inputs", "register", "risk_tables", "sortino_table"]


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    calibrate = groups["calibrate"]
    risk = calibrate.add_parser(
        "risk",
        help="fit the RSS risk layer (EVT, vol target, drawdown brake) on train; report train vs test",
        description="Fit the RSS risk layer on train and report it on test (design log format).",
    )
    _add_common_arguments(risk)
    risk.add_argument("--max-leverage", type=float, default=3.0,
                      help="the env's bound on |position| for the reference run (default: %(default)s)")
    risk.add_argument("--no-brake-search", action="store_true",
                      help="keep the design log's drawdown brake instead of selecting it on train")
    risk.add_argument("--episode-length", type=int, default=DEFAULT_EPISODE_LENGTH,
                      help="also evaluate fresh episodes of this many steps, as in training "
                           f"(default {DEFAULT_EPISODE_LENGTH})")
    risk.set_defaults(func=run_risk_from_args)

    settings = calibrate.add_parser(
        "rss-settings",
        help="choose the RSS layer's preset settings (brake, regime multipliers, band) on walk-forward windows",
        description="Size buy-and-hold and the long/flat momentum rules (720, 168 bars) through the RSS layer "
                    "under each candidate of a grid of drawdown brakes x regime multipliers x rebalance bands, "
                    "on every validation and test window of the walk-forward folds before --end (each fold "
                    "calibrated on its own train split; no agent, no look at the final test year). Score: the "
                    "mean over the rules of the median after-fee Sharpe over the windows. The winner goes into "
                    "a preset's risk section.",
    )
    settings.add_argument("--data", type=Path, required=True, help="OHLCV file (the real market)")
    settings.add_argument("--folds", type=int, default=4, help="walk-forward folds (default: %(default)s)")
    settings.add_argument("--end", default="2024-01-01",
                          help="use only bars before this time; 'none' uses the whole file (default: %(default)s)")
    settings.add_argument("--fee-rate", type=float, default=DEFAULT_FEE_RATE,
                          help=f"fee per unit of traded notional (default {DEFAULT_FEE_RATE})")
    settings.add_argument("--top", type=int, default=24, help="candidates to print, best first (default: all 24)")
    settings.add_argument("--json", action="store_true", help="print one JSON document")
    settings.set_defaults(func=run_rss_settings_from_args)

    sortino = calibrate.add_parser(
        "sortino",
        help="grid-calibrate the Sortino reward shaper on train; report train vs test",
        description="Grid over trade_cost, drawdown_weight, reward_scale on train; report on test.",
    )
    _add_common_arguments(sortino)
    sortino.set_defaults(func=run_sortino_from_args)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="OHLCV file (Binance kline CSV/ZIP, OHLCV CSV/Parquet); default: the synthetic market")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic market (default 0)")
    parser.add_argument("--n-bars", type=int, default=DEFAULT_SYNTHETIC_BARS,
                        help=f"bars of the synthetic market (default {DEFAULT_SYNTHETIC_BARS})")
    parser.add_argument("--fee-rate", type=float, default=DEFAULT_FEE_RATE,
                        help=f"fee per unit of traded notional (default {DEFAULT_FEE_RATE})")
    parser.add_argument("--lookback", type=int, default=DEFAULT_LOOKBACK,
                        help=f"momentum lookback of the reference rule in bars (default {DEFAULT_LOOKBACK})")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--out", type=Path, default=None, help="write the configs and reports here (default: print only)")


# The computations live in the library (himari_env.risk.report); the command formats them.
def risk_tables(report: dict[str, Any]) -> str:
    """The report as Markdown tables in the design log's format."""
    train, test = report["train"], report["test"]
    fitted = report["fitted"]

    def row(name: str, a: float | None, b: float | None, percent: bool = False) -> list[Any]:
        scale, unit = (100.0, "%") if percent else (1.0, "")
        cells = [f"{v * scale:.4g}{unit}" if v is not None else "-" for v in (a, b)]
        diff = f"{(b - a) * scale:+.3g}{unit}" if a is not None and b is not None else "-"
        return [name, *cells, diff]

    headers = ["Metric", "Training", "Test", "Diff"]
    parts = [
        f"Source: {report['source']}; train {train['period']}, test {test['period']}; "
        f"fee {report['fee_rate']}, max leverage {report['max_leverage']}, "
        f"reference {report['reference_policy']}, regimes from the {report['regime_source']}.",
        "",
        "H1 EVT (long losses, POT over the 95th percentile, GPD)"
        + "".join(f"; {name}: {p['evt']['note']}" for name, p in (("train", train), ("test", test)) if p["evt"]["note"])
        + ":",
        format_table(headers, [
            row("xi (shape)", train["evt"]["xi"], test["evt"]["xi"]),
            row("sigma (scale)", train["evt"]["sigma"], test["evt"]["sigma"]),
            row("VaR_99 (1 bar)", train["evt"]["var99"], test["evt"]["var99"], percent=True),
            row("ES_99 (1 bar)", train["evt"]["es99"], test["evt"]["es99"], percent=True),
        ]),
        "",
        "H2 Kelly (reference rule, per bar in the market; quarter-Kelly):",
        format_table(headers, [
            row("win rate", train["kelly"]["win_rate"], test["kelly"]["win_rate"], percent=True),
            row("payoff ratio", train["kelly"]["payoff_ratio"], test["kelly"]["payoff_ratio"]),
            row("quarter Kelly", train["kelly"]["quarter_kelly"], test["kelly"]["quarter_kelly"], percent=True),
            row("P(edge > 0)", train["kelly"]["edge_probability"], test["kelly"]["edge_probability"]),
        ]),
        f"Kelly informative: train {train['kelly']['informative']} ({train['kelly']['reason']}), "
        f"test {test['kelly']['informative']} ({test['kelly']['reason']}).",
        "",
        f"H3 volatility target (fitted on train): {fitted['target_vol'] * 100:.1f}% annualized "
        f"(60% of the median trailing vol {fitted['median_vol'] * 100:.1f}%).",
        format_table(headers, [
            row("annual vol", train["volatility"]["annual_vol"], test["volatility"]["annual_vol"], percent=True),
            row("median trailing vol", train["volatility"]["median_vol"], test["volatility"]["median_vol"], percent=True),
        ]),
        "",
        f"H4 drawdown brake: thresholds {[f'{v:.0%}' for v in fitted['drawdown_brake']['thresholds']]} -> "
        f"cuts {[f'{v:.0%}' for v in fitted['drawdown_brake']['reductions']]} "
        f"({fitted['drawdown_brake']['selection']}).",
    ]
    if report["brake_grid"]:
        parts.append(format_table(
            ["Thresholds", "Cuts", "Calmar (train)", "Max DD (train)", "Return (train)"],
            [[str(r["thresholds"]), str(r["reductions"]), r["calmar"], f"{r['max_drawdown']:.2%}",
              f"{r['total_return']:.2%}"] for r in report["brake_grid"]],
        ))
    parts += [
        "",
        "Reference strategy with the risk layer (risk off = unit positions, for comparison):",
        format_table(headers, [
            row("Max Drawdown", train["risk_on"]["max_drawdown"], test["risk_on"]["max_drawdown"], percent=True),
            row("VaR_99", train["risk_on"]["var99"], test["risk_on"]["var99"], percent=True),
            row("Total return", train["risk_on"]["total_return"], test["risk_on"]["total_return"], percent=True),
            row("Sortino", train["risk_on"]["sortino"], test["risk_on"]["sortino"]),
            row("Max Drawdown (risk off)", train["risk_off"]["max_drawdown"], test["risk_off"]["max_drawdown"], percent=True),
            row("VaR_99 (risk off)", train["risk_off"]["var99"], test["risk_off"]["var99"], percent=True),
            row("Total return (risk off)", train["risk_off"]["total_return"], test["risk_off"]["total_return"], percent=True),
        ]),
    ]
    ep_train, ep_test = train["episodes"], test["episodes"]
    if ep_train["n_episodes"] and ep_test["n_episodes"]:
        parts += [
            "",
            f"Fresh episodes of {ep_train['episode_length']} steps (as in training): "
            f"{ep_train['n_episodes']} train, {ep_test['n_episodes']} test.",
            format_table(headers, [
                row("Episode max DD, median", ep_train["max_drawdown_on_median"], ep_test["max_drawdown_on_median"], percent=True),
                row("Episode max DD, worst", ep_train["max_drawdown_on_worst"], ep_test["max_drawdown_on_worst"], percent=True),
                row("Episode max DD, median (risk off)", ep_train["max_drawdown_off_median"], ep_test["max_drawdown_off_median"], percent=True),
                row("Episode max DD, worst (risk off)", ep_train["max_drawdown_off_worst"], ep_test["max_drawdown_off_worst"], percent=True),
            ]),
        ]
    parts += [
        "",
        "Binding method (share of in-market decisions where it cut the size most; whole split, "
        "then fresh episodes):",
        format_table(["Method", "Training", "Test", "Training (episodes)", "Test (episodes)"], [
            [name, f"{train['binding_shares'][name]:.1%}", f"{test['binding_shares'][name]:.1%}",
             f"{ep_train['binding_shares'][name]:.1%}", f"{ep_test['binding_shares'][name]:.1%}"]
            for name in train["binding_shares"]
        ]),
    ]
    return "\n".join(parts)


def run_risk_from_args(args: argparse.Namespace) -> int:
    inputs = load_inputs(args.data, seed=args.seed, n_bars=args.n_bars)
    config, report = calibrate_risk_report(
        inputs, fee_rate=args.fee_rate, max_leverage=args.max_leverage, lookback=args.lookback,
        brake_search=not args.no_brake_search, episode_length=args.episode_length,
    )
    report["config"] = config.to_dict()
    tables = risk_tables(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        config.save(args.out / "risk_config.json")
        (args.out / "risk_report.json").write_text(to_json(report) + "\n", encoding="utf-8")
        (args.out / "risk_report.md").write_text("# Risk layer calibration\n\n" + tables + "\n", encoding="utf-8")
    print(to_json(report) if args.json else tables)
    return 0


# -------------------------------------------------------------------------- rss-settings
def rss_settings_table(report: dict[str, Any], *, top: int) -> str:
    """The candidates, best first: score, then each rule's median Sharpe and worst drawdown."""
    rules = list(report["rules"])
    ranked = sorted(report["candidates"], key=lambda row: -row["score"])[:top]
    headers = ["candidate", "score"] + [f"{r} med Sharpe / worst DD" for r in rules]
    rows = [[row["label"], f"{row['score']:.2f}"]
            + [f"{np.median(row['per_rule'][r]['sharpe']):.2f} / {max(row['per_rule'][r]['max_drawdown']):.0%}"
               for r in rules] for row in ranked]
    raw = [f"{r} {np.median(report['raw'][r]['sharpe']):.2f} / {max(report['raw'][r]['max_drawdown']):.0%}"
           for r in rules]
    windows = ", ".join(f"{a[:10]}..{b[:10]}" for a, b in report["windows"])
    return "\n".join([
        f"{len(report['windows'])} windows ({windows}); fee {report['fee_rate']}; after fees.",
        "Unsized rules (median Sharpe / worst max drawdown): " + "; ".join(raw) + ".",
        "",
        format_table(headers, rows),
        "",
        f"Best: {report['best']}",
    ])


def run_rss_settings_from_args(args: argparse.Namespace) -> int:
    from experiments.rss_settings import score_rss_settings
    from wrappers.stack import load_frame

    if args.folds < 1:
        raise SystemExit(f"himari calibrate rss-settings: --folds must be >= 1, got {args.folds}")
    frame = load_frame(str(args.data))
    report = score_rss_settings(frame, n_folds=args.folds, end=None if str(args.end).lower() == "none" else args.end,
                                fee_rate=args.fee_rate)
    print(to_json(report) if args.json else rss_settings_table(report, top=args.top))
    return 0


# -------------------------------------------------------------------------- sortino
def sortino_table(report: dict[str, Any]) -> str:
    train, test = report["train"], report["test"]
    config = report["config"]
    rows = [
        ["Sortino Ratio", f"{train['sortino']:.3g}", f"{test['sortino']:.3g}", f"{test['sortino'] - train['sortino']:+.3g}"],
        ["Max Drawdown", f"{train['max_drawdown']:.2%}", f"{test['max_drawdown']:.2%}",
         f"{(test['max_drawdown'] - train['max_drawdown']) * 100:+.2f}%"],
        ["Reward-Return Corr", f"{train['reward_return_corr']:.3f}", f"{test['reward_return_corr']:.3f}",
         f"{test['reward_return_corr'] - train['reward_return_corr']:+.3f}"],
        ["Total Trades", f"{train['trades']:,}", f"{test['trades']:,}", "-"],
    ]
    best = sorted(report["grid"], key=lambda r: (-r["spearman"], -r["reward_return_corr"]))[:5]
    design = report["design_log"]
    return "\n".join([
        f"Source: {report['source']}; reference {report['reference_policy']}, fee {report['fee_rate']}.",
        f"Chosen: trade_cost {config['trade_cost']}, drawdown_weight {config['drawdown_weight']}, "
        f"reward_scale {config['reward_scale']:g}, downside_weight {config['downside_weight']:g}",
        f"Criterion: {report['criterion']}.",
        "",
        format_table(["Metric", "Training", "Test", "Diff"], rows),
        "",
        f"Design log config (trade_cost {design['config']['trade_cost']}, drawdown_weight "
        f"{design['config']['drawdown_weight']}, reward_scale {design['config']['reward_scale']:g}): "
        f"Spearman {design['spearman']:.4f}, reward-return corr {design['train']['reward_return_corr']:.3f} "
        f"train / {design['test']['reward_return_corr']:.3f} test.",
        "",
        "Top grid points (train):",
        format_table(["trade_cost", "drawdown_weight", "Spearman(reward, Sortino)", "reward-return corr"],
                     [[r["trade_cost"], r["drawdown_weight"], r["spearman"], r["reward_return_corr"]] for r in best]),
        "",
        format_table(["reward_scale", "per-step reward std (train)"],
                     [[r["reward_scale"], r["reward_std"]] for r in report["scales"]]),
    ])


def run_sortino_from_args(args: argparse.Namespace) -> int:
    from wrappers.sortino import SortinoConfig
    from wrappers.sortino_calibration import calibrate_sortino

    inputs = load_inputs(args.data, seed=args.seed, n_bars=args.n_bars)
    report = calibrate_sortino(inputs.returns, inputs.close, train=inputs.splits["train"],
                               test=inputs.splits["test"], fee_rate=args.fee_rate,
                               reference_lookback=args.lookback)
    report["source"] = inputs.source
    table = sortino_table(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        SortinoConfig.from_dict(report["config"]).save(args.out / "sortino_config.json")
        (args.out / "sortino_report.json").write_text(to_json(report) + "\n", encoding="utf-8")
        (args.out / "sortino_report.md").write_text("# Sortino shaper calibration\n\n" + table + "\n", encoding="utf-8")
    print(to_json(report) if args.json else table)
    return 0
