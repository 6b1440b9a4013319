"""``himari baselines``: every baseline of the scoreboard on one split of a file, no agent."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    description = ("Trade every baseline (buy-and-hold, volatility-targeted buy-and-hold, momentum 24/168/720 "
                   "long/short and long/flat, moving-average cross, regime-gated long, supervised HGB, flat, "
                   "random; on the planted market the oracles) over one split after fees, raw and through the "
                   "RSS risk layer calibrated on train. Fitted baselines are fitted on train and tuned on val.")
    parser = root.add_parser("baselines", help="every baseline on one split, after fees (no agent)",
                             description=description)
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic', 'planted' or an OHLCV file (default: %(default)s)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"),
                        help="split to trade over (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="market seed (synthetic/planted) and random "
                        "baseline seed (default: %(default)s)")
    parser.add_argument("--fee-rate", type=float, default=0.001, help="fee per unit of turnover (default: %(default)s)")
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="size the +rss baselines with this preset's risk section (default: the design "
                             "log's RSS settings)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from experiments.baselines import baseline_table
    from experiments.commands._output import format_table, to_json

    risk_settings = None
    if args.config is not None:
        from agents.config import load_config

        risk_settings = load_config(args.config).risk
    table = baseline_table(args.data, split=args.split, seed=args.seed, fee_rate=args.fee_rate,
                           risk_settings=risk_settings)
    if args.json:
        print(to_json(table))
        return 0
    rows = [[name, f"{m['total_return']:+.1%}", f"{m['sharpe']:.2f}", f"{m['sortino']:.2f}", f"{m['max_drawdown']:.1%}",
             f"{m['trade_count']:,}", f"{m['exposure']:.0%}"]
            for name, m in sorted(table["baselines"].items(), key=lambda item: -item[1]["sharpe"])]
    print(f"{table['split']} {table['period'][0]} .. {table['period'][1]}, fee {args.fee_rate}; after fees")
    print(format_table(["baseline", "return", "Sharpe", "Sortino", "max DD", "trades", "exposure"], rows))
    return 0
