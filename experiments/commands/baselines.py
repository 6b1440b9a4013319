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
    parser.add_argument("--decision-interval", type=int, default=None, metavar="BARS",
                        help="also trade each rule deciding every BARS bars, as name@BARS (default: the "
                             "--config preset's env.decision_interval, else 1: hourly only)")
    parser.add_argument("--sleeves", type=int, default=None, metavar="K",
                        help="also trade each rule at the decision interval as K staggered sleeves, as "
                             "name@BARSxK (default: the --config preset's train.sleeves, else 1)")
    parser.add_argument("--timing", action="store_true",
                        help="also run the timing test (decisions shuffled, himari_env.timing) of every rule at "
                             "the decision interval, through the RSS layer (about 10 s a rule)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from experiments.baselines import baseline_table
    from experiments.commands._output import format_table, to_json

    risk_settings = None
    interval, sleeves = 1, 1
    if args.config is not None:
        from agents.config import load_config

        preset = load_config(args.config)
        risk_settings, interval, sleeves = preset.risk, preset.env.decision_interval, preset.train.sleeves
    if args.decision_interval is not None:
        if args.decision_interval < 1:
            raise ValueError(f"--decision-interval must be >= 1 bar, got {args.decision_interval}")
        interval = args.decision_interval
    if args.sleeves is not None:
        sleeves = args.sleeves
    if not 1 <= sleeves <= interval:
        raise ValueError(f"--sleeves must be between 1 and the decision interval ({interval} bars), got {sleeves}")
    table = baseline_table(args.data, split=args.split, seed=args.seed, fee_rate=args.fee_rate,
                           risk_settings=risk_settings, decision_interval=interval, timing=args.timing,
                           sleeves=sleeves)
    if args.json:
        print(to_json(table))
        return 0
    rows = [[name, f"{m['total_return']:+.1%}", f"{m['sharpe']:.2f}", f"{m['sortino']:.2f}", f"{m['max_drawdown']:.1%}",
             f"{m['trade_count']:,}", f"{m['exposure']:.0%}"]
            for name, m in sorted(table["baselines"].items(), key=lambda item: -item[1]["sharpe"])]
    print(f"{table['split']} {table['period'][0]} .. {table['period'][1]}, fee {args.fee_rate}; after fees")
    print(format_table(["baseline", "return", "Sharpe", "Sortino", "max DD", "trades", "exposure"], rows))
    if "timing" in table:
        print()
        rows = [[name, f"{t['sharpe']:.2f}", f"{t['shuffled_median']:.2f} [{t['shuffled_q05']:.2f}, {t['shuffled_q95']:.2f}]",
                 f"{t['p_value']:.3f}", f"{t['long_share']:.0%}"]
                for name, t in sorted(table["timing"].items(), key=lambda item: item[1]["p_value"])]
        print(format_table(["rule (timing test)", "Sharpe", "reordered median [5 %, 95 %]", "p", "long"], rows))
        print(f"{len(rows)} rules tested at once: about {0.05 * len(rows):.1f} of them at p <= 0.05 by chance alone.")
    return 0
