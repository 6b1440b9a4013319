"""The ``himari`` command line.

Every module in :mod:`experiments.commands` defines ``register(root, groups)``: ``root`` is the
top-level sub-parser collection (for commands such as ``himari train``) and ``groups`` maps a
group name (``data``, ``calibrate``, ``bench``) to that group's sub-parser collection (for
commands such as ``himari data validate``). Each registered parser sets ``func`` to a callable
taking the parsed namespace and returning the exit status. Heavy imports (torch, SB3) happen
inside those callables so that ``himari data ...`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import experiments.commands as commands_package

GROUPS = {
    "data": "load, validate, synthesize and download market data",
    "calibrate": "fit pipeline parameters on train and report train vs test",
    "bench": "benchmarks (medians and ratios, not timed tests)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="himari",
        description="HIMARI: causal BTC 1H Gymnasium environment and regime-aware PPO agent.",
        epilog="Start with: himari train --config experiments/configs/cpu-small.yaml --timesteps 60000 "
        "--run-dir runs/quickstart && himari evaluate runs/quickstart. "
        "Every command has --help; errors are one line naming the file, line or flag.",
    )
    root = parser.add_subparsers(dest="command", metavar="COMMAND")
    root.required = True
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, help_text in GROUPS.items():
        group_parser = root.add_parser(name, help=help_text, description=help_text)
        sub = group_parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
        sub.required = True
        groups[name] = sub
    for module_info in sorted(pkgutil.iter_modules(commands_package.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue  # private helpers such as _output
        module = importlib.import_module(f"{commands_package.__name__}.{module_info.name}")
        module.register(root, groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as error:
        # Data and configuration errors already name the file, line, timestamp or argument.
        message = " ".join(str(error).split())  # one line, whatever the library wrote
        print(f"himari: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("himari: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
