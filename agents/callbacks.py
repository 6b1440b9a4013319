"""Training callbacks (SB3 ``BaseCallback``): per-regime action statistics, a policy-collapse
detector, validation with best-model selection, and resumable checkpoints.

They read the ``info`` dicts of the HIMARI env stack: ``"action"`` (int, 0 HOLD / 1 LONG /
2 SHORT, added by the action wrappers), ``"reward_terms"`` (dict of named floats),
``"equity"`` and ``"position"``. Scalars go to the model's SB3 logger (TensorBoard / CSV /
stdout, see :func:`agents.ppo.build_ppo`).

Regime attribution: an action is counted under the regime of the observation the policy
chose it from (``obs["regime"]`` at the decision bar t). The ``info`` returned by that step
describes the bar just reached, t + 1, so ``info["regime"]`` would file a share of the
actions under the next bar's regime at every regime change.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from agents.config import COLLAPSE_SOURCES, VALIDATION_METRICS, ExperimentConfig
from himari_env.artifacts import RunArtifacts, ValidationState
from himari_env.constants import ACTION_NAMES, HOLD, N_REGIMES, REGIME_NAMES
from himari_env.metrics import performance_summary

__all__ = [
    "CheckpointInfo",
    "CollapseDetector",
    "PolicyCollapseWarning",
    "PolicyPass",
    "RegimeActionStatsCallback",
    "ResumableCheckpointCallback",
    "ValidationCallback",
    "action_share_scalars",
    "latest_checkpoint",
    "make_training_callbacks",
    "run_deterministic_pass",
]

N_ACTIONS = len(ACTION_NAMES)


class PolicyCollapseWarning(UserWarning):
    """The policy's HOLD share stayed near 0 % or 100 % for several checks."""


def _read_int(info: Mapping[str, Any], key: str, upper: int, env_index: int) -> int:
    if key not in info:
        raise ValueError(
            f"info of env {env_index} lacks {key!r} (keys: {sorted(info)}); the callbacks need "
            "the HIMARI stack with an action wrapper (info 'action')"
        )
    value = info[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not 0 <= int(value) < upper
    ):
        raise ValueError(
            f"info {key!r} of env {env_index} must be an int in [0, {upper}), got {value!r}"
        )
    return int(value)


def _actions(infos: Sequence[Mapping[str, Any]]) -> NDArray[np.int64]:
    # One dict per vectorized env: a short Python loop is unavoidable here.
    return np.fromiter(
        (_read_int(info, "action", N_ACTIONS, i) for i, info in enumerate(infos)),
        dtype=np.int64,
        count=len(infos),
    )


def _decision_regimes(rollout_locals: Mapping[str, Any], n_envs: int) -> NDArray[np.int64]:
    """Regime ids (n_envs,) of the observations the policy acted on in this step.

    SB3's ``collect_rollouts`` exposes them as ``obs_tensor["regime"]`` (the observation
    before ``env.step``).
    """
    observation = rollout_locals.get("obs_tensor")
    if not isinstance(observation, Mapping) or "regime" not in observation:
        raise ValueError(
            "the rollout has no Dict observation with a 'regime' entry (locals['obs_tensor']); "
            "RegimeActionStatsCallback needs the HIMARI observation space"
        )
    regime = observation["regime"]
    regime = regime.detach().cpu().numpy() if hasattr(regime, "detach") else np.asarray(regime)
    regimes = regime.reshape(-1).astype(np.int64)
    if regimes.size != n_envs or np.any((regimes < 0) | (regimes >= N_REGIMES)):
        raise ValueError(
            f"observation regimes must be {n_envs} ids in [0, {N_REGIMES}), got {regimes.tolist()}"
        )
    return regimes


def action_share_scalars(counts: NDArray[np.int64], prefix: str) -> dict[str, float]:
    """Scalars from a (4 regimes, 3 actions) count table.

    Keys: ``<prefix>actions/{hold,long,short}_share`` over all steps,
    ``<prefix>regime/<NAME>/share`` (share of steps in the regime) and, for regimes seen at
    least once, ``<prefix>regime/<NAME>/{hold,long,short}_share``. Regimes never seen get no
    action shares (rather than a made-up 0).
    """
    total = int(counts.sum())
    scalars: dict[str, float] = {}
    if total == 0:
        return scalars
    for action, action_name in enumerate(ACTION_NAMES):
        scalars[f"{prefix}actions/{action_name.lower()}_share"] = float(
            counts[:, action].sum() / total
        )
    for regime, regime_name in enumerate(REGIME_NAMES):
        in_regime = int(counts[regime].sum())
        scalars[f"{prefix}regime/{regime_name}/share"] = in_regime / total
        if in_regime == 0:
            continue
        for action, action_name in enumerate(ACTION_NAMES):
            scalars[f"{prefix}regime/{regime_name}/{action_name.lower()}_share"] = float(
                counts[regime, action] / in_regime
            )
    return scalars


class RegimeActionStatsCallback(BaseCallback):
    """Per-regime HOLD/LONG/SHORT shares and mean reward terms of each rollout.

    During a rollout it counts (decision regime, action) pairs, the regime from the
    observation the policy acted on and the action from ``info["action"]`` (see the module
    docstring), and sums every ``info["reward_terms"]`` entry; at rollout end it records (see
    :func:`action_share_scalars`) ``actions/*_share``, ``regime/<NAME>/share``,
    ``regime/<NAME>/{hold,long,short}_share`` and ``reward_terms/<name>`` (the mean of that
    term over the steps that reported it). ``last_scalars`` keeps the last recorded values.
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.counts = np.zeros((N_REGIMES, N_ACTIONS), dtype=np.int64)
        self.term_sums: dict[str, float] = {}
        self.term_counts: dict[str, int] = {}
        self.last_scalars: dict[str, float] = {}

    def _on_rollout_start(self) -> None:
        self.counts[:] = 0
        self.term_sums = {}
        self.term_counts = {}

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        actions = _actions(infos)
        regimes = _decision_regimes(self.locals, len(infos))
        np.add.at(self.counts, (regimes, actions), 1)
        for info in infos:
            for name, value in info.get("reward_terms", {}).items():
                self.term_sums[name] = self.term_sums.get(name, 0.0) + float(value)
                self.term_counts[name] = self.term_counts.get(name, 0) + 1
        return True

    def _on_rollout_end(self) -> None:
        scalars = action_share_scalars(self.counts, prefix="")
        for name, total in self.term_sums.items():
            scalars[f"reward_terms/{name}"] = total / self.term_counts[name]
        for key, value in scalars.items():
            self.logger.record(key, value)
        self.last_scalars = scalars


class CollapseDetector(BaseCallback):
    """Warns (and optionally stops training) when the policy collapses to always or never HOLD.

    Each check gives a HOLD share in [0, 1]; a check is *collapsed* when the share is below
    ``hold_low`` or above ``hold_high``. After ``patience`` consecutive collapsed checks a
    :class:`PolicyCollapseWarning` says what to change, once per collapsed streak; with
    ``stop_on_collapse`` the callback then returns False from ``on_step``, which ends
    ``model.learn``.

    Checks come from :meth:`observe`: with ``source="rollout"`` the detector counts
    ``info["action"]`` itself and checks once per rollout; with ``source="eval"`` a
    :class:`ValidationCallback` feeds it the validation HOLD share.
    """

    def __init__(
        self,
        *,
        hold_low: float = 0.01,
        hold_high: float = 0.99,
        patience: int = 3,
        stop_on_collapse: bool = False,
        source: str = "rollout",
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if not 0.0 <= hold_low < hold_high <= 1.0:
            raise ValueError(f"need 0 <= hold_low < hold_high <= 1, got {hold_low} and {hold_high}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if source not in COLLAPSE_SOURCES:
            raise ValueError(f"source must be one of {list(COLLAPSE_SOURCES)}, got {source!r}")
        self.hold_low = hold_low
        self.hold_high = hold_high
        self.patience = patience
        self.stop_on_collapse = stop_on_collapse
        self.source = source
        self.streak = 0
        self.stop_requested = False
        self.history: list[float] = []
        self._hold_steps = 0
        self._total_steps = 0

    @property
    def _has_model(self) -> bool:
        # BaseCallback sets ``model`` only in init_callback; observe() also works standalone.
        return getattr(self, "model", None) is not None

    @property
    def collapsed(self) -> bool:
        """True while the last ``patience`` checks were all collapsed."""
        return self.streak >= self.patience

    def observe(self, hold_share: float) -> bool:
        """Register one check; returns :attr:`collapsed` after it.

        Raises
        ------
        ValueError
            When ``hold_share`` is not a finite number in [0, 1].
        """
        share = float(hold_share)
        if not (math.isfinite(share) and 0.0 <= share <= 1.0):
            raise ValueError(f"hold_share must be in [0, 1], got {hold_share!r}")
        self.history.append(share)
        self.streak = self.streak + 1 if (share < self.hold_low or share > self.hold_high) else 0
        if self._has_model:
            self.logger.record("collapse/hold_share", share)
            self.logger.record("collapse/streak", self.streak)
        if self.streak == self.patience:
            self._warn(share)
            if self.stop_on_collapse:
                self.stop_requested = True
        return self.collapsed

    def _warn(self, share: float) -> None:
        at = f" at {self.num_timesteps:,} timesteps" if self._has_model else ""
        if share > self.hold_high:
            what = (
                f"HOLD share {share:.1%} > {self.hold_high:.0%}: the policy never trades. Remove any "
                "guaranteed HOLD reward and lower the regime trade costs (reward preset 'adaptive'), "
                "or raise ppo.ent_coef toward 0.10"
            )
        else:
            what = (
                f"HOLD share {share:.1%} < {self.hold_low:.0%}: the policy always trades. Raise the "
                "regime trade costs (preset 'adaptive': 0.40 base, +0.40 HIGH_VOL, +0.60 CRISIS, as "
                "fractions of E|norm pnl|) or raise ppo.ent_coef (0.05-0.10)"
            )
        stop = "; stopping training (stop_on_collapse)" if self.stop_on_collapse else ""
        warnings.warn(
            f"policy collapse{at} for {self.patience} consecutive {self.source} checks: {what}{stop}",
            PolicyCollapseWarning,
            stacklevel=3,
        )

    def _on_rollout_start(self) -> None:
        self._hold_steps = 0
        self._total_steps = 0

    def _on_step(self) -> bool:
        if self.source == "rollout":
            actions = _actions(self.locals["infos"])
            self._hold_steps += int(np.count_nonzero(actions == HOLD))
            self._total_steps += int(actions.size)
        return not self.stop_requested

    def _on_rollout_end(self) -> None:
        if self.source == "rollout" and self._total_steps > 0:
            self.observe(self._hold_steps / self._total_steps)


@dataclass(frozen=True)
class PolicyPass:
    """One deterministic episode of a policy.

    Attributes
    ----------
    equity : float64 (bars + 1,)
        Equity before the first bar, then after each bar (after fees), from the core env
        (one step may span several bars with a decision interval).
    positions : float64 (bars,)
        Target weight held over each bar.
    actions : int64 (n,)
        Agent actions (0 HOLD, 1 LONG, 2 SHORT).
    regimes : int64 (n,)
        Regime of the observation each action was chosen from (decision bar).
    rewards : float64 (n,)
        Env rewards (with the stack's reward wrapper).
    bar_indices : int64 (n,)
        Decision bar of each action.
    reward_terms : dict
        Mean per decision of each reward term (``info["reward_terms"]``).
    """

    equity: NDArray[np.float64]
    positions: NDArray[np.float64]
    actions: NDArray[np.int64]
    regimes: NDArray[np.int64]
    rewards: NDArray[np.float64]
    bar_indices: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    reward_terms: dict[str, float] = field(default_factory=dict)

    @property
    def mean_reward(self) -> float:
        return float(np.mean(self.rewards)) if self.rewards.size else 0.0

    def action_counts(self) -> NDArray[np.int64]:
        """(4 regimes, 3 actions) table of step counts."""
        counts = np.zeros((N_REGIMES, N_ACTIONS), dtype=np.int64)
        np.add.at(counts, (self.regimes, self.actions), 1)
        return counts


def run_policy_pass(env: gym.Env, choose_action: Callable[[Any, int], Any], *, seed: int | None = 0) -> PolicyPass:
    """Run one episode of ``env``, choosing each action with ``choose_action(obs, bar)``.

    The one deterministic rollout of validation and evaluation. The env is reset with
    ``seed``. Each action is filed under the regime of the observation it was chosen from
    (``obs["regime"]``: the regime source the agent sees). With a Discrete action space the
    recorded action is the chosen one; otherwise it is read from ``info["action"]``. Equity and
    positions are the core env's, bar by bar (a step may span several bars with a decision
    interval).
    """
    obs, info = env.reset(seed=seed)
    equity = [float(env.unwrapped.equity)]  # type: ignore[attr-defined]  # a HIMARI-like core env
    positions: list[float] = []
    actions: list[int] = []
    regimes: list[int] = []
    rewards: list[float] = []
    bars: list[int] = []
    term_sums: dict[str, float] = {}
    discrete = isinstance(env.action_space, spaces.Discrete)
    done = False
    # Sequential by nature: each observation carries the position the last action chose.
    while not done:
        decision_regime = int(obs["regime"])
        if not 0 <= decision_regime < N_REGIMES:
            raise ValueError(
                f"observation regime must be in [0, {N_REGIMES}), got {decision_regime}"
            )
        bars.append(int(info.get("bar_index", len(bars))))
        action = choose_action(obs, bars[-1])
        step_action: Any = int(action) if discrete else action
        obs, reward, terminated, truncated, info = env.step(step_action)
        done = bool(terminated or truncated)
        equity.append(float(info["equity"]))
        positions.append(float(info["position"]))
        actions.append(step_action if discrete else _read_int(info, "action", N_ACTIONS, 0))
        regimes.append(decision_regime)
        rewards.append(float(reward))
        for name, value in info.get("reward_terms", {}).items():
            term_sums[name] = term_sums.get(name, 0.0) + float(value)
    core = env.unwrapped
    if hasattr(core, "episode_equity"):
        # Bar by bar from the core env: with a decision interval a step spans several bars,
        # and metrics are annualized per bar.
        equity = core.episode_equity().tolist()  # type: ignore[attr-defined]
        positions = core.episode_positions().tolist()  # type: ignore[attr-defined]
    n = max(len(actions), 1)
    return PolicyPass(
        equity=np.asarray(equity, dtype=np.float64),
        positions=np.asarray(positions, dtype=np.float64),
        actions=np.asarray(actions, dtype=np.int64),
        regimes=np.asarray(regimes, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float64),
        bar_indices=np.asarray(bars, dtype=np.int64),
        reward_terms={name: total / n for name, total in term_sums.items()},
    )


def run_deterministic_pass(
    model: BaseAlgorithm, env: gym.Env, *, seed: int | None = 0
) -> PolicyPass:
    """Run one episode of ``env`` with ``model.predict(obs, deterministic=True)``
    (:func:`run_policy_pass`)."""
    return run_policy_pass(env, lambda obs, bar: model.predict(obs, deterministic=True)[0], seed=seed)


def _write_json(path: Path, document: Any) -> None:
    """Strict JSON (NaN/inf raise), written atomically."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, allow_nan=False), encoding="utf-8")
    os.replace(temporary, path)


class ValidationCallback(BaseCallback):
    """Every ``eval_freq`` timesteps: a deterministic pass over the validation env.

    Logs ``eval/<metric>`` for sharpe, sortino, total_return, max_drawdown, mean_reward,
    trade_count and exposure (after-fee metrics of :mod:`himari_env.metrics`, averaged over
    ``n_episodes``), ``eval/actions/*_share`` and ``eval/regime/<NAME>/*_share``. When the
    selected ``metric`` improves, saves ``best_model.zip`` and ``best_metric.json`` in
    ``best_model_dir``; every evaluation is appended to ``evaluations.json`` there.

    Parameters
    ----------
    make_eval_env : callable
        Builds the validation env (e.g. the stack on ``split="val"`` with
        ``episode_length=None``: one full pass); called once, at the first evaluation (with
        ``sleeves > 1``: once per sleeve, with the bars its first decision is held).
    eval_freq : int
        Timesteps (summed over envs) between evaluations; > 0.
    best_model_dir : path
        Output folder (created).
    metric : {"sharpe", "total_return", "mean_reward"}
        Selection metric (higher is better).
    n_episodes : int
        Episodes per evaluation (reset seeds ``seed``, ``seed + 1``, ...).
    collapse_detector : CollapseDetector or None
        Fed the validation HOLD share; its stop request also stops training here.
    eligible_hold_range : (low, high) or None
        A pass whose HOLD share lies outside ``[low, high]`` is a collapsed policy (always
        flat or never flat) and cannot become the best model, however good its metric: an
        always-HOLD policy has Sharpe 0 and would otherwise win against any policy that
        trades at a loss. Recorded with ``"eligible": false``. None: every pass is eligible.
    state : ValidationState or None
        The state to continue from (a resumed run's best value, its timestep and the history
        of evaluations): a later evaluation becomes the best model only if it beats the
        restored best, and ``evaluations.json`` keeps the earlier records. The metric must
        match. None: a fresh run (best minus infinity, empty history).
    state_path : path or None
        Where to write the state (:class:`~himari_env.artifacts.ValidationState` JSON, the
        run bundle's ``validation.json``) after every evaluation.
    sleeves : int
        Staggered sleeves (:mod:`agents.sleeves`; ``train.sleeves``): with more than one, each
        evaluation runs the policy on ``sleeves`` decision grids offset by
        ``decision_interval / sleeves`` bars, built by ``make_eval_env(first_bars)``, and the
        metrics are those of the sleeves' combined account. 1: the one pass of ``make_eval_env()``.
    decision_interval : int
        Bars per decision of the validation env (needed with ``sleeves > 1``).
    """

    def __init__(
        self,
        make_eval_env: Callable[..., gym.Env],
        *,
        eval_freq: int,
        best_model_dir: str | Path,
        metric: str = "sharpe",
        n_episodes: int = 1,
        seed: int = 0,
        collapse_detector: CollapseDetector | None = None,
        eligible_hold_range: tuple[float, float] | None = (0.01, 0.99),
        state: ValidationState | None = None,
        state_path: str | Path | None = None,
        verbose: int = 0,
        sleeves: int = 1,
        decision_interval: int = 1,
    ) -> None:
        super().__init__(verbose)
        self.eligible_hold_range = eligible_hold_range
        if sleeves > 1:
            from agents.sleeves import sleeve_phases

            sleeve_phases(decision_interval, sleeves)  # raises on an impossible combination
        self.sleeves = int(sleeves)
        self.decision_interval = int(decision_interval)
        self._sleeve_envs: list[gym.Env] | None = None
        if metric not in VALIDATION_METRICS:
            raise ValueError(f"metric must be one of {list(VALIDATION_METRICS)}, got {metric!r}")
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be >= 1 timestep, got {eval_freq}")
        if n_episodes < 1:
            raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
        self.make_eval_env = make_eval_env
        self.eval_freq = eval_freq
        self.best_model_dir = Path(best_model_dir)
        self.metric = metric
        self.n_episodes = n_episodes
        self.seed = seed
        self.collapse_detector = collapse_detector
        self.best_value = -math.inf
        self.best_num_timesteps: int | None = None
        self.history: list[dict[str, Any]] = []
        self._eval_env: gym.Env | None = None
        self._last_eval_timesteps = 0
        self.state_path = None if state_path is None else Path(state_path)
        if state is not None:
            if state.metric is not None and state.metric != metric:
                raise ValueError(
                    f"the resumed validation state selects by {state.metric!r}, this run by {metric!r}"
                )
            self.history = [dict(record) for record in state.history]
            if state.best_value is not None:
                self.best_value = float(state.best_value)
                self.best_num_timesteps = state.best_num_timesteps
            if self.history:
                self._last_eval_timesteps = int(self.history[-1]["num_timesteps"])

    def _validation_pass(self, seed: int) -> PolicyPass:
        if self.sleeves == 1:
            if self._eval_env is None:
                self._eval_env = self.make_eval_env()
            return run_deterministic_pass(self.model, self._eval_env, seed=seed)
        from agents.sleeves import run_sleeved_pass, sleeve_envs

        if self._sleeve_envs is None:
            self._sleeve_envs = sleeve_envs(self.make_eval_env, decision_interval=self.decision_interval,
                                            sleeves=self.sleeves)
        model = self.model
        sleeved = run_sleeved_pass(self.make_eval_env, lambda obs, bar: model.predict(obs, deterministic=True)[0],
                                   decision_interval=self.decision_interval, sleeves=self.sleeves, seed=seed,
                                   envs=self._sleeve_envs)
        return sleeved.combined()

    @property
    def state(self) -> ValidationState:
        """The current selection state (what a resumed run continues from)."""
        best = self.best_value if math.isfinite(self.best_value) else None
        return ValidationState(metric=self.metric, best_value=best,
                               best_num_timesteps=self.best_num_timesteps if best is not None else None,
                               history=list(self.history))

    def _init_callback(self) -> None:
        self.best_model_dir.mkdir(parents=True, exist_ok=True)

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_eval_timesteps >= self.eval_freq:
            self._last_eval_timesteps = self.num_timesteps
            self.evaluate()
        return not (self.collapse_detector is not None and self.collapse_detector.stop_requested)

    def evaluate(self) -> dict[str, Any]:
        """Run the evaluation now; returns the record appended to ``evaluations.json``."""
        passes = [self._validation_pass(self.seed + episode) for episode in range(self.n_episodes)]
        summaries = [performance_summary(p.equity, p.positions) for p in passes]
        for summary, policy_pass in zip(summaries, passes, strict=True):
            summary["mean_reward"] = float(np.mean(policy_pass.rewards))
        logged = (
            "sharpe",
            "sortino",
            "total_return",
            "max_drawdown",
            "mean_reward",
            "trade_count",
            "exposure",
        )
        means = {key: float(np.mean([summary[key] for summary in summaries])) for key in logged}
        counts = np.sum([p.action_counts() for p in passes], axis=0)
        shares = action_share_scalars(counts, prefix="eval/")
        hold_share = shares.get("eval/actions/hold_share", 0.0)
        for key, value in means.items():
            self.logger.record(f"eval/{key}", value)
        for key, value in shares.items():
            self.logger.record(key, value)

        value = means[self.metric]
        eligible = self.eligible_hold_range is None or (
            self.eligible_hold_range[0] <= hold_share <= self.eligible_hold_range[1]
        )
        improved = eligible and math.isfinite(value) and value > self.best_value
        record = {
            "num_timesteps": int(self.num_timesteps),
            "metric": self.metric,
            "value": value,
            "hold_share": hold_share,
            "means": means,
            "episodes": summaries,
            "action_shares": shares,
            "eligible": eligible,
            "improved": improved,
        }
        self._commit(record, value, improved)
        if self.verbose > 0:
            marker = " (new best)" if improved else ("" if eligible else " (collapsed: not eligible)")
            print(
                f"eval at {self.num_timesteps:,} steps: {self.metric} = {value:.4f}, HOLD {hold_share:.1%}{marker}"
            )
        if self.collapse_detector is not None:
            self.collapse_detector.observe(hold_share)
        return record

    def _commit(self, record: dict[str, Any], value: float, improved: bool) -> None:
        """Append ``record`` to the history, keep the best model when ``improved``, persist
        the validation state and log the best value so far."""
        self.history.append(record)
        _write_json(self.best_model_dir / "evaluations.json", self.history)
        if improved:
            self.best_value = value
            self.best_num_timesteps = int(self.num_timesteps)
            self.model.save(self.best_model_dir / "best_model.zip")
            _write_json(self.best_model_dir / "best_metric.json", record)
        if self.state_path is not None:
            self.state.save(self.state_path)
        self.logger.record(f"eval/best_{self.metric}", self.best_value)

    def _on_training_end(self) -> None:
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None
        for env in self._sleeve_envs or []:
            env.close()
        self._sleeve_envs = None


@dataclass(frozen=True)
class CheckpointInfo:
    """A saved checkpoint: the SB3 zip and the timestep count to resume from."""

    model_path: Path
    num_timesteps: int


class ResumableCheckpointCallback(BaseCallback):
    """Saves ``<prefix>_<timesteps>_steps.zip`` plus a JSON sidecar at the first rollout start
    at least ``save_freq`` timesteps after the previous save, and at the end of training;
    keeps ``latest.json`` pointing at the newest.

    Resume with :func:`latest_checkpoint` and :func:`agents.ppo.load_ppo` (which reads only
    the tensors), then ``learn(..., reset_num_timesteps=False)``.
    """

    def __init__(
        self, save_freq: int, save_dir: str | Path, *, name_prefix: str = "ppo", verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be >= 1 timestep, got {save_freq}")
        self.save_freq = save_freq
        self.save_dir = Path(save_dir)
        self.name_prefix = name_prefix
        self._last_save_timesteps = 0
        self.saved: list[CheckpointInfo] = []

    def _init_callback(self) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)

    def _on_rollout_start(self) -> None:
        # At a rollout start the weights have been trained on every step counted so far, so
        # resuming from this checkpoint neither skips nor repeats collected experience.
        if self.num_timesteps - self._last_save_timesteps >= self.save_freq:
            self.save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.save()  # the final weights (after the last update), even if just checkpointed

    def save(self) -> CheckpointInfo:
        """Save now; returns where."""
        self._last_save_timesteps = self.num_timesteps
        stem = f"{self.name_prefix}_{self.num_timesteps:010d}_steps"
        model_path = self.save_dir / f"{stem}.zip"
        self.model.save(model_path)
        metadata = {
            "model_file": model_path.name,
            "num_timesteps": int(self.num_timesteps),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _write_json(self.save_dir / f"{stem}.json", metadata)
        _write_json(self.save_dir / "latest.json", metadata)
        info = CheckpointInfo(model_path=model_path, num_timesteps=int(self.num_timesteps))
        self.saved.append(info)
        if self.verbose > 0:
            print(f"checkpoint: {model_path}")
        return info


def latest_checkpoint(save_dir: str | Path) -> CheckpointInfo | None:
    """The checkpoint named by ``save_dir/latest.json``, or None when there is none yet.

    Raises
    ------
    ValueError
        When ``latest.json`` is malformed or names a model file that does not exist.
    """
    pointer = Path(save_dir) / "latest.json"
    if not pointer.is_file():
        return None
    try:
        metadata = json.loads(pointer.read_text(encoding="utf-8"))
        model_path = Path(save_dir) / str(metadata["model_file"])
        num_timesteps = int(metadata["num_timesteps"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{pointer}: malformed checkpoint metadata ({error})") from None
    if not model_path.is_file():
        raise ValueError(f"{pointer} names {model_path.name}, which does not exist")
    return CheckpointInfo(model_path=model_path, num_timesteps=num_timesteps)


def make_training_callbacks(
    config: ExperimentConfig,
    *,
    run_dir: str | Path,
    make_eval_env: Callable[..., gym.Env] | None,
    validation_state: ValidationState | None = None,
) -> CallbackList:
    """The standard callback set for a run, from ``config.train``.

    Always :class:`RegimeActionStatsCallback` and :class:`CollapseDetector`; a
    :class:`ValidationCallback` writing to ``run_dir/best`` and the run bundle's
    ``validation.json`` when ``eval_freq > 0`` (needs ``make_eval_env``; continues from
    ``validation_state`` on resume); a :class:`ResumableCheckpointCallback` writing to
    ``run_dir/checkpoints`` when ``checkpoint_freq > 0``.
    """
    train = config.train
    run_dir = Path(run_dir)
    detector = CollapseDetector(
        hold_low=train.collapse_hold_low,
        hold_high=train.collapse_hold_high,
        patience=train.collapse_patience,
        stop_on_collapse=train.stop_on_collapse,
        source=train.collapse_source,
    )
    callbacks: list[BaseCallback] = [RegimeActionStatsCallback(), detector]
    if train.eval_freq > 0:
        if make_eval_env is None:
            raise ValueError("train.eval_freq > 0 needs make_eval_env (or set train.eval_freq: 0)")
        callbacks.append(
            ValidationCallback(
                make_eval_env,
                eval_freq=train.eval_freq,
                best_model_dir=run_dir / "best",
                metric=train.validation_metric,
                n_episodes=train.eval_episodes,
                seed=train.seed,
                collapse_detector=detector if train.collapse_source == "eval" else None,
                eligible_hold_range=(train.collapse_hold_low, train.collapse_hold_high),
                state=validation_state,
                state_path=RunArtifacts.validation_path(run_dir),
                verbose=train.verbose,
                sleeves=train.sleeves,
                decision_interval=config.env.decision_interval,
            )
        )
    if train.checkpoint_freq > 0:
        callbacks.append(
            ResumableCheckpointCallback(train.checkpoint_freq, run_dir / "checkpoints")
        )
    return CallbackList(callbacks)
