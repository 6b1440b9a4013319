"""``himari timing``: the timing test of a pass that ``himari evaluate`` saved."""

from __future__ import annotations

import argparse


def register(root: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    description = ("Reorder the holding periods of a saved evaluation pass (RUN_DIR/equity_SPLIT.npz): same "
                   "trades, same time in each direction, other moments; trade every reordering through the same "
                   "accounting and RSS layer. The p-value says whether the agent's Sharpe comes from its timing or "
                   "only from its exposure. Reads the saved decisions: no policy is run and no test look is added "
                   "to the ledger.")
    parser = root.add_parser("timing", help="timing test (reordered holding periods) of a saved evaluation pass",
                             description=description)
    parser.add_argument("run_dir", help="run folder (or a seed ensemble's DIR/ensemble, or the RUN/sleevesK of "
                        "himari evaluate --sleeves K) evaluated on --split")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "unseen"),
                        help="saved pass to test (default: %(default)s)")
    parser.add_argument("--data", default=None, help="the later OHLCV file of an unseen pass")
    parser.add_argument("--permutations", type=int, default=200, help="reorderings (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a sentence")
    parser.add_argument("--write", action="store_true",
                        help="also replace the split's timing section in RUN_DIR/report.json and report.md (for "
                             "reports scored before a change of the test; nothing else changes)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from experiments.commands._output import to_json
    from experiments.timing_report import rewrite_report_timing, saved_pass_timing

    result = saved_pass_timing(args.run_dir, split=args.split, data=args.data, n_permutations=args.permutations)
    print(to_json(result.to_dict()) if args.json else f"{args.split}, {result.sentence()}")
    if args.write:
        rewrite_report_timing(args.run_dir, split=args.split, test=result)
    return 0
