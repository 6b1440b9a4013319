"""Training callbacks of the L3 sizer (``HimariBTCSizer-v0`` + ``RecurrentPPO``).

The L2 callbacks (:mod:`agents.callbacks`) count discrete HOLD/LONG/SHORT actions; the
sizer's action is a continuous delta, so it gets its own statistics, collapse detector and
validation pass (the recurrent policy carries its LSTM state through the pass):

* :class:`SizerStatsCallback`: per rollout, the mean position, mean |position|, mean delta
  and the share of in-market steps whose delta sits at a bound, overall and per regime
  (``sizer/...``, ``regime/<NAME>/mean_position`` ...), and the mean of each reward term;
* :class:`DeltaCollapseDetector`: warns (:class:`~agents.callbacks.PolicyCollapseWarning`)
  when, for ``patience`` consecutive checks, more than ``share_high`` of the in-market
  steps have their delta pinned at +bound or at -bound (``|a| >= pinned_at``); a check is
  a rollout's sampled actions (``train.collapse_source: rollout``) or a validation pass's
  deterministic actions (``eval``: the policy's mean, which exploration noise does not hide);
* :class:`SizerValidationCallback`: the L2 :class:`~agents.callbacks.ValidationCallback`
  (best model by the validation metric, ``evaluations.json``, the bundle's validation
  state for resume) with a recurrent deterministic pass; a pinned pass is not eligible.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from agents.callbacks import (
    PolicyCollapseWarning,
    ResumableCheckpointCallback,
    ValidationCallback,
)
from agents.config import ExperimentConfig
from himari_env.artifacts import RunArtifacts, ValidationState
from himari_env.constants import N_REGIMES, REGIME_NAMES
from himari_env.metrics import performance_summary

__all__ = [
    "DeltaCollapseDetector",
    "SizerPass",
    "SizerStatsCallback",
    "SizerValidationCallback",
    "ZeroDelta",
    "make_sizer_callbacks",
    "regime_position_table",
    "run_sizer_pass",
]


class SizerPolicy(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: dict[str, Any]) -> np.ndarray: ...


class ZeroDelta:
    """The do-nothing sizer: ``a = 0`` every step (position = the RSS layer's)."""

    def reset(self) -> None:
        return None

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)


@dataclass(frozen=True)
class SizerPass:
    """One deterministic pass of a sizer policy over an env with ``episode_length=None``.

    ``equity`` (bars + 1,) and ``positions`` (bars,) are the core env's, bar by bar;
    ``actions``, ``deltas``, ``directions``, ``base_sizes``, ``regimes`` (decision regime),
    ``decision_positions`` (position set at each decision) and ``rewards`` are per step (n,).
    """

    bar_indices: NDArray[np.int64]
    equity: NDArray[np.float64]
    positions: NDArray[np.float64]
    actions: NDArray[np.float64]
    deltas: NDArray[np.float64]
    directions: NDArray[np.int64]
    base_sizes: NDArray[np.float64]
    regimes: NDArray[np.int64]
    decision_positions: NDArray[np.float64]
    rewards: NDArray[np.float64]
    reward_terms: dict[str, float]


def run_sizer_pass(policy: SizerPolicy, env: gym.Env, *, seed: int | None = 0) -> SizerPass:
    """Step ``env`` (``HimariBTCSizer-v0``) to the end of its episode with ``policy``."""
    observation, info = env.reset(seed=seed)
    policy.reset()
    bars, actions, deltas, directions, bases, regimes, held, rewards = [], [], [], [], [], [], [], []
    term_sums: dict[str, float] = {}
    while True:
        bars.append(int(info["bar_index"]))
        regimes.append(int(observation["regime"]))
        action = policy.act(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        actions.append(float(info["sizer_action"]))
        deltas.append(float(info["delta"]))
        directions.append(int(info["direction"]))
        bases.append(float(info["base_size"]))
        held.append(float(info["position"]))
        rewards.append(float(reward))
        for name, value in info.get("reward_terms", {}).items():
            term_sums[name] = term_sums.get(name, 0.0) + float(value)
        if terminated or truncated:
            break
    core = env.unwrapped
    n = len(rewards)
    return SizerPass(
        bar_indices=np.asarray(bars, dtype=np.int64),
        equity=np.asarray(core.episode_equity(), dtype=np.float64),  # type: ignore[attr-defined]
        positions=np.asarray(core.episode_positions(), dtype=np.float64),  # type: ignore[attr-defined]
        actions=np.asarray(actions), deltas=np.asarray(deltas), directions=np.asarray(directions, dtype=np.int64),
        base_sizes=np.asarray(bases), regimes=np.asarray(regimes, dtype=np.int64),
        decision_positions=np.asarray(held), rewards=np.asarray(rewards),
        reward_terms={name: total / n for name, total in term_sums.items()},
    )


def regime_position_table(positions: NDArray[np.float64], deltas: NDArray[np.float64],
                          regimes: NDArray[np.int64], directions: NDArray[np.int64] | None = None) -> dict[str, dict[str, float]]:
    """Per regime (and ``Overall``): share of steps, mean position, mean |position|, mean
    delta over in-market steps (``direction != 0``; all steps when ``directions`` is None)
    and the number of steps. Regimes without a step are omitted."""
    in_market = np.ones(regimes.size, dtype=bool) if directions is None else directions != 0
    table: dict[str, dict[str, float]] = {}
    for name, mask in [("Overall", np.ones(regimes.size, dtype=bool))] + [
            (REGIME_NAMES[i], regimes == i) for i in range(N_REGIMES)]:
        if not mask.any():
            continue
        active = mask & in_market
        table[name] = {
            "share": float(mask.mean()),
            "mean_position": float(positions[mask].mean()),
            "mean_abs_position": float(np.abs(positions[mask]).mean()),
            "mean_delta": float(deltas[active].mean()) if active.any() else 0.0,
            "steps": int(mask.sum()),
        }
    return table


class SizerStatsCallback(BaseCallback):
    """Per-rollout sizer scalars (module docstring); ``last_scalars`` keeps the last ones.

    Reads ``info["decision_regime"]``, ``info["position"]``, ``info["delta"]``,
    ``info["direction"]``, ``info["sizer_action"]`` and ``info["reward_terms"]``.
    """

    def __init__(self, *, pinned_at: float = 0.95, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.pinned_at = pinned_at
        self.last_scalars: dict[str, float] = {}
        self._rows: list[tuple[int, float, float, int, float]] = []
        self._terms: dict[str, list[float]] = {}

    def _on_rollout_start(self) -> None:
        self._rows = []
        self._terms = {}

    def _on_step(self) -> bool:
        for index, info in enumerate(self.locals["infos"]):
            try:
                row = (int(info["decision_regime"]), float(info["position"]), float(info["delta"]),
                       int(info["direction"]), float(info["sizer_action"]))
            except KeyError as missing:
                raise ValueError(f"info of env {index} lacks {missing} (keys: {sorted(info)}); "
                                 "SizerStatsCallback needs the HimariBTCSizer-v0 stack") from None
            self._rows.append(row)
            for name, value in info.get("reward_terms", {}).items():
                self._terms.setdefault(name, []).append(float(value))
        return True

    def _on_rollout_end(self) -> None:
        if not self._rows:
            return
        data = np.asarray(self._rows, dtype=np.float64)
        regimes, positions, deltas = data[:, 0].astype(np.int64), data[:, 1], data[:, 2]
        directions, actions = data[:, 3].astype(np.int64), data[:, 4]
        table = regime_position_table(positions, deltas, regimes, directions)
        scalars: dict[str, float] = {}
        for name, row in table.items():
            prefix = "sizer/" if name == "Overall" else f"regime/{name}/"
            for key in ("mean_position", "mean_abs_position", "mean_delta"):
                scalars[prefix + key] = row[key]
        in_market = directions != 0
        if in_market.any():
            scalars["sizer/pinned_high_share"] = float(np.mean(actions[in_market] >= self.pinned_at))
            scalars["sizer/pinned_low_share"] = float(np.mean(actions[in_market] <= -self.pinned_at))
        scalars["sizer/in_market_share"] = float(in_market.mean())
        for name, values in self._terms.items():
            scalars[f"reward_terms/{name}"] = float(np.mean(values))
        for key, value in scalars.items():
            self.logger.record(key, value)
        self.last_scalars = scalars


class DeltaCollapseDetector(BaseCallback):
    """Warns when the delta is pinned at a bound (module docstring); with ``stop_on_collapse``
    returns False from ``on_step`` after the warning (ends ``learn``). :meth:`observe`
    registers one check (the pinned shares at the upper and the lower bound)."""

    def __init__(self, *, pinned_at: float = 0.95, share_high: float = 0.99, patience: int = 3,
                 stop_on_collapse: bool = False, source: str = "rollout", verbose: int = 0) -> None:
        super().__init__(verbose)
        if source not in ("rollout", "eval"):
            raise ValueError(f"source must be 'rollout' or 'eval', got {source!r}")
        self.source = source
        if not 0.0 < pinned_at <= 1.0:
            raise ValueError(f"pinned_at must be in (0, 1], got {pinned_at}")
        if not 0.0 < share_high <= 1.0:
            raise ValueError(f"share_high must be in (0, 1], got {share_high}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.pinned_at = pinned_at
        self.share_high = share_high
        self.patience = patience
        self.stop_on_collapse = stop_on_collapse
        self.streak = 0
        self.stop_requested = False
        self.history: list[tuple[float, float]] = []
        self._actions: list[float] = []

    @property
    def collapsed(self) -> bool:
        return self.streak >= self.patience

    def observe(self, pinned_high: float, pinned_low: float) -> bool:
        """One check: shares in [0, 1] of in-market steps at +bound and at -bound."""
        for share in (pinned_high, pinned_low):
            if not (math.isfinite(share) and 0.0 <= share <= 1.0):
                raise ValueError(f"pinned shares must be in [0, 1], got {pinned_high!r}, {pinned_low!r}")
        self.history.append((pinned_high, pinned_low))
        pinned = max(pinned_high, pinned_low) > self.share_high
        self.streak = self.streak + 1 if pinned else 0
        if getattr(self, "model", None) is not None:
            self.logger.record("collapse/delta_pinned_share", max(pinned_high, pinned_low))
            self.logger.record("collapse/streak", self.streak)
        if self.streak == self.patience:
            side = "+" if pinned_high >= pinned_low else "-"
            warnings.warn(
                f"sizer collapse for {self.patience} consecutive {self.source} checks: the delta sits at the {side}bound on "
                f"{max(pinned_high, pinned_low):.1%} of in-market steps (the policy ignores its inputs); lower "
                "ppo.learning_rate or raise ppo.ent_coef (0.05-0.10), check the reward preset"
                + ("; stopping training (stop_on_collapse)" if self.stop_on_collapse else ""),
                PolicyCollapseWarning, stacklevel=2)
            if self.stop_on_collapse:
                self.stop_requested = True
        return self.collapsed

    def _on_rollout_start(self) -> None:
        self._actions = []

    def _on_step(self) -> bool:
        if self.source == "rollout":
            for info in self.locals["infos"]:
                if int(info.get("direction", 0)) != 0:
                    self._actions.append(float(info["sizer_action"]))
        return not self.stop_requested

    def _on_rollout_end(self) -> None:
        if self.source == "rollout" and self._actions:
            actions = np.asarray(self._actions)
            self.observe(float(np.mean(actions >= self.pinned_at)), float(np.mean(actions <= -self.pinned_at)))


class SizerValidationCallback(ValidationCallback):
    """:class:`~agents.callbacks.ValidationCallback` for the recurrent sizer: the pass carries
    the LSTM state; logs ``eval/<metric>``, ``eval/regime/<NAME>/mean_abs_position`` and
    ``eval/mean_delta``; a pass whose delta is pinned at a bound on more than
    ``pinned_share_high`` of its in-market steps is not eligible as the best model."""

    def __init__(self, make_eval_env: Callable[[], gym.Env], *, pinned_at: float = 0.95,
                 pinned_share_high: float = 0.99, delta_detector: DeltaCollapseDetector | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("eligible_hold_range", None)
        super().__init__(make_eval_env, **kwargs)
        self.pinned_at = pinned_at
        self.pinned_share_high = pinned_share_high
        self.delta_detector = delta_detector

    def _on_step(self) -> bool:
        keep_going = super()._on_step()
        return keep_going and not (self.delta_detector is not None and self.delta_detector.stop_requested)

    def evaluate(self) -> dict[str, Any]:
        from agents.recurrent import RecurrentRunner

        if self._eval_env is None:
            self._eval_env = self.make_eval_env()
        runner = RecurrentRunner(self.model)
        passes = [run_sizer_pass(runner, self._eval_env, seed=self.seed + episode) for episode in range(self.n_episodes)]
        summaries = [performance_summary(p.equity, p.positions) for p in passes]
        for summary, sizer_pass in zip(summaries, passes, strict=True):
            summary["mean_reward"] = float(np.mean(sizer_pass.rewards))
        logged = ("sharpe", "sortino", "total_return", "max_drawdown", "mean_reward", "trade_count", "exposure")
        means = {key: float(np.mean([summary[key] for summary in summaries])) for key in logged}
        first = passes[0]
        table = regime_position_table(first.decision_positions, first.deltas, first.regimes, first.directions)
        in_market = first.directions != 0
        pinned_high = float(np.mean(first.actions[in_market] >= self.pinned_at)) if in_market.any() else 0.0
        pinned_low = float(np.mean(first.actions[in_market] <= -self.pinned_at)) if in_market.any() else 0.0
        pinned = max(pinned_high, pinned_low)
        if self.delta_detector is not None:
            self.delta_detector.observe(pinned_high, pinned_low)
        for key, value in means.items():
            self.logger.record(f"eval/{key}", value)
        for name, row in table.items():
            self.logger.record(f"eval/regime/{name}/mean_abs_position", row["mean_abs_position"])
        self.logger.record("eval/mean_delta", table["Overall"]["mean_delta"])
        value = means[self.metric]
        eligible = pinned <= self.pinned_share_high
        improved = eligible and math.isfinite(value) and value > self.best_value
        record = {"num_timesteps": int(self.num_timesteps), "metric": self.metric, "value": value,
                  "hold_share": float(np.mean(first.directions == 0)), "pinned_share": pinned, "means": means,
                  "episodes": summaries, "regime_positions": table, "eligible": eligible, "improved": improved}
        self._commit(record, value, improved)
        if self.verbose > 0:
            marker = " (new best)" if improved else ("" if eligible else " (delta pinned: not eligible)")
            print(f"eval at {self.num_timesteps:,} steps: {self.metric} = {value:.4f}, "
                  f"mean delta {table['Overall']['mean_delta']:+.3f}{marker}")
        return record


def make_sizer_callbacks(config: ExperimentConfig, *, run_dir: str | Path,
                         make_eval_env: Callable[[], gym.Env] | None,
                         validation_state: ValidationState | None = None) -> CallbackList:
    """The sizer's callback set: stats, delta-collapse detector, validation (when
    ``train.eval_freq > 0``) and resumable checkpoints (when ``train.checkpoint_freq > 0``)."""
    train = config.train
    sizer = config.sizer
    if sizer is None:
        raise ValueError("the config has no sizer section (algo must be 'recurrent_ppo')")
    run_dir = Path(run_dir)
    detector = DeltaCollapseDetector(pinned_at=sizer.delta_collapse_share, share_high=train.collapse_hold_high,
                                     patience=train.collapse_patience, stop_on_collapse=train.stop_on_collapse,
                                     source=train.collapse_source)
    callbacks: list[BaseCallback] = [SizerStatsCallback(pinned_at=sizer.delta_collapse_share), detector]
    if train.eval_freq > 0:
        if make_eval_env is None:
            raise ValueError("train.eval_freq > 0 needs make_eval_env (or set train.eval_freq: 0)")
        callbacks.append(SizerValidationCallback(
            make_eval_env, pinned_at=sizer.delta_collapse_share, pinned_share_high=train.collapse_hold_high,
            delta_detector=detector if train.collapse_source == "eval" else None,
            eval_freq=train.eval_freq, best_model_dir=run_dir / "best", metric=train.validation_metric,
            n_episodes=train.eval_episodes, seed=train.seed, state=validation_state,
            state_path=RunArtifacts.validation_path(run_dir), verbose=train.verbose))
    if train.checkpoint_freq > 0:
        callbacks.append(ResumableCheckpointCallback(train.checkpoint_freq, run_dir / "checkpoints",
                                                     name_prefix="recurrent_ppo"))
    return CallbackList(callbacks)
