"""Staggered sleeves: one policy trading ``K`` sub-accounts whose decision grids are offset.

With a decision every ``k`` bars (``env.decision_interval``) a pass's result depends on
*which* bars the decisions fall on: the split's first bar fixes the grid, and a grid shifted
by a few hours is another sample of the same policy. On the spot preset's walk-forward the
test Sharpe of one agent spans 2 units over the eight grids of a half-year (for example
2.25 to 4.59), and the grid of the validation pass is the one model selection saw, so it is
also the one selection flattered (the README's "Staggered sleeves").

A staggered policy removes that lottery without more trading: the capital is split into
``K`` sleeves of equal size; sleeve ``j`` decides at the split's first bar and then every
``k`` bars from bar ``phase_j = floor(j * k / K)``, each on its own sub-account with its own
RSS risk layer, fee and compounding (the core env's exact accounting, unchanged). The sleeves
are not rebalanced and their trades are not netted, so the combined equity is the mean of
the sleeves' equity curves: what the ``K`` accounts hold together, fees included, with no
approximation. Sleeve 0 is the single-grid pass; ``K = 1`` is the plain pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from agents.callbacks import PolicyPass, run_policy_pass


def sleeve_phases(decision_interval: int, sleeves: int) -> list[int]:
    """Bars after the split's first bar at which each sleeve's grid starts: ``floor(j * k / K)``
    for ``j = 0 .. K-1`` (``0`` is the split's own grid). Raises ``ValueError`` unless
    ``1 <= sleeves <= decision_interval``."""
    if isinstance(sleeves, bool) or int(sleeves) != sleeves or sleeves < 1:
        raise ValueError(f"sleeves must be an int >= 1, got {sleeves!r}")
    if sleeves > decision_interval:
        raise ValueError(f"sleeves ({sleeves}) must not exceed the decision interval ({decision_interval} bars): "
                         "two sleeves would share a grid")
    return [j * int(decision_interval) // int(sleeves) for j in range(int(sleeves))]


@dataclass(frozen=True)
class SleevedPass:
    """The passes of the sleeves of one staggered policy over one window.

    Attributes
    ----------
    sleeves : one :class:`~agents.callbacks.PolicyPass` per sleeve (same bars, own decisions).
    phases : bars after the window's first bar at which each sleeve's grid starts.
    """

    sleeves: tuple[PolicyPass, ...]
    phases: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.sleeves or len(self.sleeves) != len(self.phases):
            raise ValueError("a sleeved pass needs one phase per sleeve and at least one sleeve")
        lengths = {p.equity.size for p in self.sleeves}
        if len(lengths) != 1:
            raise ValueError(f"the sleeves' passes cover different bars (equity lengths {sorted(lengths)})")

    @property
    def equity(self) -> NDArray[np.float64]:
        """Combined equity, float64 (bars + 1,): the mean of the sleeves' equity curves, each
        started at the first sleeve's initial equity (equal capital, no rebalancing)."""
        start = float(self.sleeves[0].equity[0])
        return start * np.mean([p.equity / p.equity[0] for p in self.sleeves], axis=0)

    @property
    def positions(self) -> NDArray[np.float64]:
        """Combined weight held over each bar, float64 (bars,): the mean of the sleeves'
        positions. Descriptive (exposure, bars with a trade): it weighs the sleeves equally,
        while their equities drift apart by the difference of their returns; the equity is
        exact."""
        return np.asarray(np.mean([p.positions for p in self.sleeves], axis=0), dtype=np.float64)

    def decision_sleeves(self) -> NDArray[np.int64]:
        """The sleeve of each decision of :meth:`combined`, int64 (decisions,), same order."""
        owners = np.concatenate([np.full(p.bar_indices.size, j, dtype=np.int64) for j, p in enumerate(self.sleeves)])
        bars = np.concatenate([p.bar_indices for p in self.sleeves])
        return np.asarray(owners[np.argsort(bars, kind="stable")], dtype=np.int64)

    def combined(self) -> PolicyPass:
        """One :class:`~agents.callbacks.PolicyPass` for the whole policy: the combined equity
        and positions, and every sleeve's decisions (actions, regimes, rewards, bars) in bar
        order (sleeve order within a bar); reward terms averaged over the sleeves."""
        bars = np.concatenate([p.bar_indices for p in self.sleeves])
        order = np.argsort(bars, kind="stable")
        terms: dict[str, float] = {}
        for policy_pass in self.sleeves:
            for name, value in policy_pass.reward_terms.items():
                terms[name] = terms.get(name, 0.0) + value / len(self.sleeves)
        return PolicyPass(
            equity=self.equity,
            positions=self.positions,
            actions=np.concatenate([p.actions for p in self.sleeves])[order],
            regimes=np.concatenate([p.regimes for p in self.sleeves])[order],
            rewards=np.concatenate([p.rewards for p in self.sleeves])[order],
            bar_indices=bars[order],
            reward_terms=terms,
        )


def sleeve_envs(make_env: Callable[[int], gym.Env], *, decision_interval: int, sleeves: int) -> list[gym.Env]:
    """One env per sleeve, in phase order: ``make_env(first_bars)`` with the bars each sleeve's
    first decision is held (``decision_interval`` for sleeve 0, its phase for the others)."""
    return [make_env(phase or decision_interval) for phase in sleeve_phases(decision_interval, sleeves)]


def run_sleeved_pass(make_env: Callable[[int], gym.Env], choose_action: Callable[[Any, int], Any], *,
                     decision_interval: int, sleeves: int, seed: int | None = 0,
                     envs: Sequence[gym.Env] | None = None) -> SleevedPass:
    """One deterministic pass per sleeve (:func:`~agents.callbacks.run_policy_pass`).

    ``make_env(first_bars)`` builds the stack for one full pass (``episode_length=None``)
    whose first decision is held ``first_bars`` bars (``decision_interval`` for sleeve 0;
    see :class:`~wrappers.decision.DecisionInterval`). ``envs``: already built envs, one per
    sleeve in phase order (validation reuses them); else they are built and closed here.
    """
    phases = sleeve_phases(decision_interval, sleeves)
    owned = envs is None
    if envs is None:
        envs = sleeve_envs(make_env, decision_interval=decision_interval, sleeves=sleeves)
    if len(envs) != len(phases):
        raise ValueError(f"{len(envs)} envs for {len(phases)} sleeves")
    try:
        passes = tuple(run_policy_pass(env, choose_action, seed=seed) for env in envs)
    finally:
        if owned:
            for env in envs:
                env.close()
    return SleevedPass(sleeves=passes, phases=tuple(phases))


__all__ = ["SleevedPass", "run_sleeved_pass", "sleeve_envs", "sleeve_phases"]
