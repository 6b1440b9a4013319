"""The Sortino reward shaper (the reward wrapper's ``sortino`` preset).

Per step, with ``pnl`` the step's net return after fees (fraction), ``turnover = |p_t - p_{t-1}|``
and ``drawdown_increase = max(0, drawdown_{t+1} - drawdown_t)``, every term scaled by
``reward_scale``:

* ``pnl``        ``+ reward_scale * pnl``
* ``trade_cost`` ``- reward_scale * trade_cost * turnover`` (a shaping cost on top of the
  env's real fee, which ``pnl`` already contains)
* ``drawdown``   ``- reward_scale * drawdown_weight * drawdown_increase`` (recoveries are not
  rewarded)
* ``downside``   ``- reward_scale * downside_weight * L * min(1, L / DD)`` for a loss
  ``L = -pnl > 0``, and 0 for a gain or a flat step. ``DD`` is the running downside
  deviation *before* the step, with target 0 over **all** periods:
  ``DD = sqrt(sum_{s<t} min(pnl_s, 0)^2 / (number of periods so far))`` (gains count as zero
  deviations; they are not dropped). A loss at least as large as ``DD`` is penalized in full
  (``downside_weight`` times the loss again); smaller losses quadratically less; with no
  history (``DD = 0``) the full loss. The penalty is causal, bounded by
  ``downside_weight * L``, and never rewards a gain.

``reward = pnl + trade_cost + drawdown + downside`` (the terms, summed in this order).
Calibrated defaults (design log): trade_cost 0.0005, drawdown_weight 0.25, reward_scale 200.

Two forms: :func:`sortino_reward` (pure, one step, returns the next :class:`DownsideState`)
and :func:`sortino_rewards` (vectorized over a pass; equal to iterating the pure form);
:class:`SortinoShaper` is the stateful adapter the reward wrapper uses.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

TERM_NAMES = ("pnl", "trade_cost", "drawdown", "downside")


@dataclass(frozen=True)
class SortinoConfig:
    """Sortino shaper parameters (all >= 0; ``reward_scale`` > 0)."""

    trade_cost: float = 0.0005
    drawdown_weight: float = 0.25
    reward_scale: float = 200.0
    downside_weight: float = 1.0

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"sortino.{item.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"sortino.{item.name} must be >= 0, got {value!r}")
        if self.reward_scale <= 0:
            raise ValueError(f"sortino.reward_scale must be > 0, got {self.reward_scale!r}")

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SortinoConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sortino config key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> SortinoConfig:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read sortino config {path}: {error}") from error
        if not isinstance(document, dict):
            raise ValueError(f"{path}: a sortino config must be a JSON object")
        return cls.from_dict(document)


@dataclass(frozen=True)
class DownsideState:
    """Running downside statistics over all periods so far (target 0)."""

    n_periods: int = 0
    sum_squared_downside: float = 0.0

    @property
    def deviation(self) -> float:
        """``sqrt(sum min(pnl, 0)^2 / n_periods)``; 0.0 before any period."""
        if self.n_periods == 0:
            return 0.0
        return math.sqrt(self.sum_squared_downside / self.n_periods)

    def update(self, pnl: float) -> DownsideState:
        downside = pnl if pnl < 0.0 else 0.0
        return DownsideState(self.n_periods + 1, self.sum_squared_downside + downside * downside)


def downside_penalty(pnl: float, deviation: float) -> float:
    """``L * min(1, L / deviation)`` for a loss ``L = -pnl > 0`` (``L`` when deviation is 0);
    0 otherwise. Unscaled and unweighted, fraction per step."""
    if pnl >= 0.0:
        return 0.0
    loss = -pnl
    if deviation <= 0.0:
        return loss
    return loss * min(1.0, loss / deviation)


def sortino_reward(
    pnl: float,
    turnover: float,
    drawdown_increase: float,
    downside_state: DownsideState,
    config: SortinoConfig,
) -> tuple[float, dict[str, float], DownsideState]:
    """One step of the shaper.

    Parameters
    ----------
    pnl : net simple return of the step (fraction, > -1 unless bankrupt).
    turnover : ``|p_t - p_{t-1}|`` (multiples of equity, >= 0).
    drawdown_increase : ``max(0, drawdown after - drawdown before)`` (fraction, >= 0).
    downside_state : the state before the step.
    config : shaper parameters.

    Returns
    -------
    (reward, terms, next_state) : the reward, ``{"pnl", "trade_cost", "drawdown",
    "downside"}`` (summing to the reward) and the state after the step.
    """
    if not math.isfinite(pnl):
        raise ValueError(f"pnl must be finite, got {pnl!r}")
    if not (math.isfinite(turnover) and turnover >= 0.0):
        raise ValueError(f"turnover must be finite and >= 0, got {turnover!r}")
    if not (math.isfinite(drawdown_increase) and drawdown_increase >= 0.0):
        raise ValueError(f"drawdown_increase must be finite and >= 0, got {drawdown_increase!r}")
    scale = config.reward_scale
    pnl_term = scale * pnl
    cost_term = -scale * config.trade_cost * turnover
    drawdown_term = -scale * config.drawdown_weight * drawdown_increase
    downside_term = -scale * config.downside_weight * downside_penalty(pnl, downside_state.deviation)
    reward = pnl_term + cost_term + drawdown_term + downside_term
    terms = {"pnl": pnl_term, "trade_cost": cost_term, "drawdown": drawdown_term, "downside": downside_term}
    return reward, terms, downside_state.update(pnl)


def sortino_rewards(
    pnl: ArrayLike,
    turnover: ArrayLike,
    drawdown_increase: ArrayLike,
    config: SortinoConfig,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vectorized :func:`sortino_reward` over one pass starting from an empty state.

    All inputs float (n,); returns ``rewards`` (n,) and the four term arrays (n,).
    """
    pnl_values = np.asarray(pnl, dtype=np.float64)
    turnover_values = np.asarray(turnover, dtype=np.float64)
    increase_values = np.asarray(drawdown_increase, dtype=np.float64)
    n = pnl_values.size
    for name, values in (("turnover", turnover_values), ("drawdown_increase", increase_values)):
        if values.shape != (n,):
            raise ValueError(f"{name} has shape {values.shape}, pnl has ({n},)")
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            raise ValueError(f"{name}[{int(bad[0])}] = {values[bad[0]]!r} is not finite and >= 0")
    bad = np.flatnonzero(~np.isfinite(pnl_values))
    if bad.size:
        raise ValueError(f"pnl[{int(bad[0])}] = {pnl_values[bad[0]]!r} is not finite")
    downside = np.minimum(pnl_values, 0.0)
    squared = downside * downside
    # State before step k covers steps 0 .. k-1 (k periods).
    sums_before = np.concatenate(([0.0], np.cumsum(squared)[:-1])) if n else np.zeros(0)
    periods_before = np.arange(n, dtype=np.float64)
    deviation = np.zeros(n)
    seen = periods_before > 0
    deviation[seen] = np.sqrt(sums_before[seen] / periods_before[seen])
    loss = -downside
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(deviation > 0.0, np.minimum(1.0, loss / deviation), 1.0)
    penalty = np.where(loss > 0.0, loss * ratio, 0.0)
    scale = config.reward_scale
    terms = {
        "pnl": scale * pnl_values,
        "trade_cost": -scale * config.trade_cost * turnover_values,
        "drawdown": -scale * config.drawdown_weight * increase_values,
        "downside": -scale * config.downside_weight * penalty,
    }
    rewards = terms["pnl"] + terms["trade_cost"] + terms["drawdown"] + terms["downside"]
    return rewards, terms


class SortinoShaper:
    """Stateful shaper for the reward wrapper: ``reset()`` per episode, ``step(...)`` per step.

    Keyword arguments are :class:`SortinoConfig` fields (a dict from a reward config).
    """

    def __init__(self, **params: float) -> None:
        self.config = SortinoConfig.from_dict(params)
        self.reset()

    def reset(self) -> None:
        self._state = DownsideState()
        self._drawdown = 0.0

    @property
    def downside_state(self) -> DownsideState:
        return self._state

    def step(self, *, net_return: float, turnover: float, drawdown: float) -> dict[str, float]:
        """Terms of one step (their sum is the reward).

        Parameters
        ----------
        net_return : the step's simple return of equity after fees.
        turnover : ``|p_t - p_{t-1}|``.
        drawdown : the episode drawdown after the step (fraction in [0, 1]).
        """
        increase = max(0.0, drawdown - self._drawdown)
        self._drawdown = drawdown
        _, terms, self._state = sortino_reward(net_return, turnover, increase, self._state, self.config)
        return terms
