"""The training console: one tqdm progress bar and one line per validation pass.

SB3's own bar needs ``rich``, which we do not add; SB3's diagnostic tables go to
``progress.csv`` and TensorBoard (and to stdout only with ``himari train -v``).

The bar shows what a person watches: steps done out of the steps that will actually run
(SB3 collects whole rollouts, so ``--timesteps 3000`` with 512-step rollouts runs 3,072:
the bar's total says so and it ends exactly there), steps/s, and after the first validation
pass the latest validation metric, its HOLD share and the best so far. Each validation pass
also prints one line (stdout). The validation records are read from the run's
``best/evaluations.json``, written by :class:`agents.callbacks.ValidationCallback`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

__all__ = ["TqdmProgressCallback", "format_validation_line", "metric_label", "planned_timesteps"]

#: Seconds between bar redraws on a terminal, and when the console is a file or a pipe.
REFRESH_TTY_S = 1.0
REFRESH_PIPE_S = 30.0


def planned_timesteps(total_timesteps: int, initial: int, rollout_steps: int) -> int:
    """The step count SB3's ``learn`` reaches: it stops after the first whole rollout
    (``n_steps * n_envs`` steps) that reaches ``total_timesteps``."""
    remaining = max(total_timesteps - initial, 0)
    return initial + math.ceil(remaining / max(rollout_steps, 1)) * rollout_steps


def metric_label(metric: str) -> str:
    """How a validation metric is named on the console (``sharpe`` -> ``Sharpe``)."""
    return {"sharpe": "Sharpe", "total_return": "return", "mean_reward": "mean reward"}.get(metric, metric)


def _format_value(metric: str, value: float) -> str:
    return f"{value:+.1%}" if metric == "total_return" else f"{value:.2f}"


def format_validation_line(record: dict[str, Any], best: dict[str, Any] | None) -> str:
    """One line for one validation record of ``evaluations.json``.

    ``"validation at 20,480 steps: Sharpe 0.41, return +3.2%, max DD 4.1%, HOLD 71.5%
    (new best)"``; a collapsed pass says it cannot be selected; otherwise the best so far.
    """
    metric = str(record.get("metric", "sharpe"))
    means = record.get("means", {})
    parts = [f"{metric_label(metric)} {_format_value(metric, float(record['value']))}"]
    if metric != "total_return" and "total_return" in means:
        parts.append(f"return {means['total_return']:+.1%}")
    if "max_drawdown" in means:
        parts.append(f"max DD {means['max_drawdown']:.1%}")
    parts.append(f"HOLD {float(record.get('hold_share', float('nan'))):.1%}")
    if record.get("improved"):
        tail = " (new best)"
    elif not record.get("eligible", True):
        tail = " (collapsed policy: not eligible as best)"
    elif best is not None:
        tail = (f" (best {metric_label(metric)} {_format_value(metric, float(best['value']))} "
                f"at {int(best['num_timesteps']):,})")
    else:
        tail = ""
    return f"validation at {int(record['num_timesteps']):,} steps: " + ", ".join(parts) + tail


class TqdmProgressCallback(BaseCallback):
    """A progress bar over the steps that will run, plus one line per validation pass.

    Parameters
    ----------
    total_timesteps : int
        The requested total (``train.total_timesteps``).
    initial : int
        Steps already done (when resuming).
    evaluations_path : path or None
        The validation records (a JSON list); None: ``<run folder>/best/evaluations.json``,
        the run folder being the parent of the model's logger folder (``<run>/tb``).
    file : text stream or None
        Where the bar is drawn (default stderr); validation lines go to stdout.
    """

    def __init__(self, total_timesteps: int, initial: int = 0, *,
                 evaluations_path: str | Path | None = None, file: TextIO | None = None) -> None:
        super().__init__()
        self.total_timesteps = total_timesteps
        self.initial = initial
        self.planned_total = total_timesteps
        self.evaluations_path = Path(evaluations_path) if evaluations_path is not None else None
        self.file = file
        self.lines: list[str] = []  # validation lines printed (or that would be, with -v)
        self._bar: tqdm | None = None
        self._seen_mtime_ns: int | None = None
        self._last_printed_step = -1
        self._best: dict[str, Any] | None = None
        self._print_lines = True

    # ------------------------------------------------------------------ SB3 hooks

    def _on_training_start(self) -> None:
        rollout = int(getattr(self.model, "n_steps", 1)) * int(self.training_env.num_envs)
        self.planned_total = planned_timesteps(self.total_timesteps, self.initial, rollout)
        # With train.verbose > 0 the ValidationCallback prints its own line: do not repeat it.
        self._print_lines = int(getattr(self.model, "verbose", 0)) == 0
        if self.evaluations_path is None:
            log_dir = self.logger.get_dir() if self.logger is not None else None
            if log_dir:
                self.evaluations_path = Path(log_dir).parent / "best" / "evaluations.json"
        if self.evaluations_path is not None and self.evaluations_path.is_file():
            self._seen_mtime_ns = self.evaluations_path.stat().st_mtime_ns
            self._last_printed_step = self.initial  # records of an earlier session are not news
        stream = self.file if self.file is not None else sys.stderr
        interactive = bool(getattr(stream, "isatty", lambda: False)())
        self._bar = tqdm(
            total=self.planned_total, initial=min(self.initial, self.planned_total), unit="step",
            dynamic_ncols=True, file=stream, mininterval=REFRESH_TTY_S if interactive else REFRESH_PIPE_S,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]{postfix}",
        )
        if self.planned_total != self.total_timesteps:
            self._write(f"training {self.planned_total - self.initial:,} steps: {self.total_timesteps - self.initial:,} "
                        f"requested, rounded up to whole rollouts of {rollout} steps")

    def _on_step(self) -> bool:
        assert self._bar is not None
        done = min(int(self.num_timesteps), self.planned_total)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
        self._check_validation()
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._check_validation()
            self._bar.close()
            self._bar = None

    # ------------------------------------------------------------------ validation records

    def _check_validation(self) -> None:
        path = self.evaluations_path
        if path is None:
            return
        try:
            mtime_ns = path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime_ns == self._seen_mtime_ns:
            return
        self._seen_mtime_ns = mtime_ns
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return  # written atomically, so this is a foreign file: show nothing rather than fail
        if not isinstance(records, list):
            return
        for record in records:
            if not isinstance(record, dict) or "num_timesteps" not in record:
                continue
            if record.get("improved"):
                self._best = record
            if int(record["num_timesteps"]) <= self._last_printed_step:
                continue
            self._last_printed_step = int(record["num_timesteps"])
            line = format_validation_line(record, self._best)
            self.lines.append(line)
            if self._print_lines:
                self._write(line)
            self._set_postfix(record)

    def _set_postfix(self, record: dict[str, Any]) -> None:
        if self._bar is None:
            return
        metric = str(record.get("metric", "sharpe"))
        name = metric_label(metric)
        text = f"val {name} {_format_value(metric, float(record['value']))}, HOLD {float(record['hold_share']):.0%}"
        if self._best is not None:
            text += f", best {_format_value(metric, float(self._best['value']))} at {int(self._best['num_timesteps']):,}"
        self._bar.set_postfix_str(text, refresh=False)

    def _write(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)
