"""The scoreboard's baselines: every policy the agent must beat, through the same accounting.

Each baseline is a causal *direction* array over the whole market (``+1`` long, ``0`` flat,
``-1`` short; the value at bar t uses bars <= t only, and fitted baselines are fitted on the
train split and tuned on val only). A direction array is traded over a split's decision bars
by :func:`himari_env.risk.backtest.run_backtest`, which is the env's exact accounting (fee on
turnover at the close, compounding; a test checks it step by step against the gym stack):

* ``raw``: unit positions (``direction * 1``), no risk layer;
* ``rss``: sized by the RSS risk layer with the run's calibrated config (same engine, brake,
  band and regime multipliers as the agent's stack).

Baselines (names as they appear in reports):

``buy_and_hold``, ``vol_target_bh`` (long, sized by the H3 volatility-target rule alone:
``min(target / trailing vol, max_leverage)``, target from train), ``momentum_{24,168,720}_ls``
and ``_lf`` (sign of the trailing return, long/short and long/flat), ``ma_cross_ls`` /
``ma_cross_lf`` (daily-scale moving averages: 20-day vs 50-day SMA of closes, 480 / 1,200
bars), ``regime_gated`` (long except in HIGH_VOL and CRISIS, the regime the agent observes),
``supervised_hgb`` (scikit-learn ``HistGradientBoostingClassifier`` on the agent's
observation features at bar t predicting the sign of the next 24-bar return; fitted on
train bars whose label ends inside train, the no-trade threshold chosen on val by after-fee
Sharpe), ``flat``, ``random`` (seeded uniform directions), and on the planted market
``oracle`` (the Bayes-filter oracle: knows the generating model, not the hidden state nor the
future) and ``state_oracle`` (knows the hidden drift sign; an upper bound no causal policy
reaches); see :mod:`himari_env.data.planted`; ``oracle_lf`` is ``oracle`` with the long/flat
action set (long when it is long, else flat). No oracle counts as a baseline to beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from himari_env.constants import BARS_PER_YEAR
from himari_env.metrics import performance_summary
from himari_env.rules import (
    decision_grid,
    held_decisions,
    momentum_directions,
    regime_gated_directions,
)

if TYPE_CHECKING:
    from agents.config import RiskSettings

MOMENTUM_LOOKBACKS = (24, 168, 720)
MA_FAST_BARS, MA_SLOW_BARS = 20 * 24, 50 * 24
SUPERVISED_HORIZON_BARS = 24
SUPERVISED_THRESHOLDS = (0.0, 0.02, 0.05, 0.10, 0.15)
#: References that know the generating model (planted market only): never baselines to beat.
ORACLES = ("oracle", "oracle_lf", "state_oracle")
#: Baselines whose position is not a direction (they are not re-sized by the RSS layer).
SIZED_BASELINES = ("vol_target_bh",)


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(values.size, np.nan)
    if values.size >= window:
        csum = np.concatenate(([0.0], np.cumsum(values)))
        out[window - 1:] = (csum[window:] - csum[:-window]) / window
    return out


def ma_cross_directions(close: np.ndarray, fast: int = MA_FAST_BARS, slow: int = MA_SLOW_BARS, *,
                        long_short: bool = True) -> np.ndarray:
    """Long when the ``fast``-bar SMA of closes is above the ``slow``-bar SMA, else short
    (or flat with ``long_short=False``); 0 until ``slow`` bars exist. int8 (n,)."""
    if not 1 <= fast < slow:
        raise ValueError(f"need 1 <= fast < slow bars, got fast={fast}, slow={slow}")
    prices = np.asarray(close, dtype=np.float64)
    fast_ma, slow_ma = _trailing_mean(prices, fast), _trailing_mean(prices, slow)
    directions = np.zeros(prices.size, dtype=np.int8)
    ready = np.isfinite(slow_ma)
    directions[ready] = np.where(fast_ma[ready] > slow_ma[ready], 1, -1 if long_short else 0)
    return directions


def random_directions(n: int, seed: int) -> np.ndarray:
    """Uniform over {flat, long, short}, seeded. int8 (n,)."""
    return np.array((0, 1, -1), dtype=np.int8)[np.random.default_rng(seed).integers(0, 3, n)]


def vol_target_positions(returns: np.ndarray, risk_config: Any, *, max_leverage: float) -> np.ndarray:
    """The H3 rule alone on a permanent long: ``min(target / trailing annualized vol,
    max_leverage)`` with the calibrated target and window (0 before the window fills)."""
    from himari_env.risk.engine import RiskEngine

    engine = RiskEngine(risk_config, returns, max_leverage=max_leverage)
    target = float(risk_config.vol_target.target_vol)
    vol = engine.vol_annualized
    positions = np.zeros(vol.size)
    ok = np.isfinite(vol) & (vol > 0)
    positions[ok] = np.minimum(target / vol[ok], max_leverage)
    return positions


@dataclass
class SupervisedBaseline:
    """The fitted supervised baseline (fitted on train, threshold chosen on val).

    ``directions`` are its decisions over the market it was fitted on; apply it to another
    market (unseen data, prepared with the same fitted pipeline) with :meth:`directions_for`.
    """

    model: Any
    threshold: float
    directions: np.ndarray
    val_sharpe_by_threshold: dict[str, float] = field(default_factory=dict)
    train_accuracy: float = 0.0

    def directions_for(self, features: np.ndarray, regime_ids: np.ndarray) -> np.ndarray:
        """Long when ``P(up) > 0.5 + threshold``, short when ``< 0.5 - threshold``, else flat
        (also flat where a feature is not finite). int8 (n,)."""
        probability_up = _predict_up(self.model, features, regime_ids)
        out = np.zeros(probability_up.size, dtype=np.int8)
        out[probability_up > 0.5 + self.threshold] = 1
        out[probability_up < 0.5 - self.threshold] = -1
        return out

    def notes(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "val_sharpe_by_threshold": self.val_sharpe_by_threshold,
                "train_accuracy": self.train_accuracy, "horizon_bars": SUPERVISED_HORIZON_BARS}


def _supervised_inputs(features: np.ndarray, regime_ids: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(features, dtype=np.float64), np.asarray(regime_ids, dtype=np.float64)])


def _predict_up(model: Any, features: np.ndarray, regime_ids: np.ndarray) -> np.ndarray:
    inputs = _supervised_inputs(features, regime_ids)
    probability_up = np.full(inputs.shape[0], 0.5)
    usable = np.all(np.isfinite(inputs), axis=1)
    if usable.any():
        probability_up[usable] = model.predict_proba(inputs[usable])[:, 1]
    return probability_up


def supervised_directions(features: np.ndarray, regime_ids: np.ndarray, close: np.ndarray,
                          splits: dict[str, slice], *, fee_rate: float, seed: int = 0,
                          horizon: int = SUPERVISED_HORIZON_BARS) -> SupervisedBaseline:
    """Fit ``HistGradientBoostingClassifier`` on train, choose the no-trade threshold on val.

    Inputs at bar t: the observation's feature row ``features[t]`` (n, F) and the regime;
    label: ``close[t + horizon] > close[t]``. Only train bars whose label ends inside the
    train split are used, so nothing after train is seen by the fit. Direction: long when
    ``P(up) > 0.5 + threshold``, short when ``< 0.5 - threshold``, else flat; the threshold
    maximizes the val split's after-fee Sharpe (unit positions).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    from himari_env.risk.backtest import run_backtest

    inputs = _supervised_inputs(features, regime_ids)
    prices = np.asarray(close, dtype=np.float64)
    train = splits["train"]
    fit_bars = np.arange(train.start, train.stop - horizon)
    labels = (prices[fit_bars + horizon] > prices[fit_bars]).astype(np.int64)
    # Strongly regularized: 24-bar labels overlap, so a flexible model memorizes train.
    model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=500,
                                           l2_regularization=1.0, random_state=seed)
    model.fit(inputs[fit_bars], labels)
    probability_up = _predict_up(model, features, regime_ids)
    returns = np.zeros(prices.size)
    returns[1:] = prices[1:] / prices[:-1] - 1.0

    def directions_for(threshold: float) -> np.ndarray:
        out = np.zeros(prices.size, dtype=np.int8)
        out[probability_up > 0.5 + threshold] = 1
        out[probability_up < 0.5 - threshold] = -1
        return out

    val = splits["val"]
    scores = {}
    for threshold in SUPERVISED_THRESHOLDS:
        result = run_backtest(returns, directions_for(threshold), np.asarray(regime_ids), start=val.start,
                              stop=min(val.stop, prices.size - 1), config=None, fee_rate=fee_rate,
                              max_leverage=1.0)
        scores[f"{threshold:g}"] = performance_summary(result.equity, result.positions)["sharpe"]
    best = max(SUPERVISED_THRESHOLDS, key=lambda th: (scores[f"{th:g}"], th))
    accuracy = float(np.mean(model.predict(inputs[fit_bars]) == labels))
    return SupervisedBaseline(model, best, directions_for(best), scores, accuracy)


@dataclass
class BaselineSet:
    """Direction arrays (and the one sized baseline) for one prepared market."""

    directions: dict[str, np.ndarray]
    positions: dict[str, np.ndarray]
    notes: dict[str, Any] = field(default_factory=dict)


def build_baselines(prepared: Any, *, regime_ids: np.ndarray, risk_config: Any | None, fee_rate: float,
                    max_leverage: float, seed: int = 0, supervised: bool | SupervisedBaseline = True,
                    planted: Any | None = None) -> BaselineSet:
    """Every baseline for ``prepared`` (a :class:`~himari_env.pipeline.PreparedMarket`).

    ``regime_ids``: the regimes the agent observes (labeler or HMM). ``risk_config``: the
    run's calibrated config (for ``vol_target_bh``'s target; None skips it). ``supervised``:
    True fits the supervised baseline on ``prepared``'s train split (threshold on val);
    a fitted :class:`SupervisedBaseline` is applied as it is (unseen data: never refit);
    False leaves it out. ``notes["supervised_fit"]`` holds the fitted baseline for reuse.
    """
    market = prepared.market
    close = np.asarray(market.close, dtype=np.float64)
    n = close.size
    directions: dict[str, np.ndarray] = {"buy_and_hold": np.ones(n, dtype=np.int8)}
    for lookback in MOMENTUM_LOOKBACKS:
        directions[f"momentum_{lookback}_ls"] = momentum_directions(close, lookback, long_short=True)
        directions[f"momentum_{lookback}_lf"] = momentum_directions(close, lookback, long_short=False)
    directions["ma_cross_ls"] = ma_cross_directions(close, long_short=True)
    directions["ma_cross_lf"] = ma_cross_directions(close, long_short=False)
    directions["regime_gated"] = regime_gated_directions(regime_ids)
    notes: dict[str, Any] = {}
    if isinstance(supervised, SupervisedBaseline):
        directions["supervised_hgb"] = supervised.directions_for(prepared.observation_features, regime_ids)
        notes["supervised_hgb"] = supervised.notes()
        notes["supervised_fit"] = supervised
    elif supervised and "train" in market.splits and "val" in market.splits:
        fitted = supervised_directions(prepared.observation_features, regime_ids, close, dict(market.splits),
                                       fee_rate=fee_rate, seed=seed)
        directions["supervised_hgb"] = fitted.directions
        notes["supervised_hgb"] = fitted.notes()
        notes["supervised_fit"] = fitted
    if planted is not None:
        from himari_env.data.planted import filter_oracle_positions

        if planted.planted_sign.size != n:
            raise ValueError(f"planted market has {planted.planted_sign.size} bars, the prepared market {n}")
        directions["oracle"] = filter_oracle_positions(close, planted.params).astype(np.int8)
        directions["state_oracle"] = np.asarray(planted.planted_sign, dtype=np.int8)
        # The same oracle with the long/flat action set (action_set "long_flat"): long or flat.
        directions["oracle_lf"] = np.maximum(directions["oracle"], 0).astype(np.int8)
    directions["flat"] = np.zeros(n, dtype=np.int8)
    directions["random"] = random_directions(n, seed)
    positions = {}
    if risk_config is not None:
        positions["vol_target_bh"] = vol_target_positions(market.returns, risk_config, max_leverage=max_leverage)
    return BaselineSet(directions, positions, notes)


def _position_pass(returns: np.ndarray, positions: np.ndarray, start: int, stop: int, fee_rate: float,
                   max_leverage: float) -> tuple[np.ndarray, np.ndarray]:
    """An arbitrary position path through the env's accounting (float32 action, clamp)."""
    from himari_env.accounting import accounting_path

    held = np.clip(positions[start:stop].astype(np.float32).astype(np.float64), -max_leverage, max_leverage)
    equity, turnover, _, _ = accounting_path(held, returns[start + 1:stop + 1], fee_rate)
    return equity, held[:turnover.size]


@dataclass
class BaselinePass:
    """One baseline over one split: its equity (steps + 1,) and positions (steps,)."""

    equity: np.ndarray
    positions: np.ndarray

    def summary(self) -> dict[str, Any]:
        return performance_summary(self.equity, self.positions)


def at_decision_interval(directions: np.ndarray, *, start: int, stop: int, interval: int,
                         phase: int = 0) -> np.ndarray:
    """``directions`` read only at the decision bars ``start, start + interval, ...`` and held
    until the next one (bars ``start .. stop - 1``; the rest unchanged): the rule at an agent's
    decision cadence. ``phase`` (``0 <= phase < interval``): the grid of one staggered sleeve
    (:mod:`agents.sleeves`), ``start, start + phase, start + phase + interval, ...``. int8 (n,)."""
    bars = decision_grid(start, stop, interval, phase)  # validates interval and phase
    out = np.array(directions, dtype=np.int8, copy=True)
    if stop <= start:
        return out
    out[start:stop] = held_decisions(bars, out[bars], n_bars=out.size, stop=stop)[start:stop]
    return out


def is_oracle(name: str) -> bool:
    """Whether a baseline row (``name``, ``name@<I>``, ``name+rss``) is one of :data:`ORACLES`."""
    return base_rule(name) in ORACLES


def base_rule(name: str) -> str:
    """The rule a baseline row trades: ``momentum_720_lf@72+rss`` -> ``momentum_720_lf``."""
    return name.split("@")[0].removesuffix("+rss")


def run_baselines(baselines: BaselineSet, prepared: Any, *, start: int, stop: int, regime_ids: np.ndarray,
                  risk_config: Any | None, fee_rate: float, max_leverage: float,
                  decision_interval: int = 1, sleeves: int = 1) -> dict[str, dict[str, BaselinePass]]:
    """Trade every baseline over decision bars ``start .. stop - 1``.

    Returns ``{name: {"raw": pass, "rss": pass}}`` (``rss`` only with a risk config, and
    not for flat, random or the sized ``vol_target_bh``). With ``decision_interval`` > 1 (an
    agent that decides every that many bars), every direction baseline that changes its mind
    over the pass (not ``flat`` nor ``buy_and_hold``) is also traded at that cadence as
    ``name@<interval>`` (:func:`at_decision_interval`): the same rule under the agent's
    constraint, so the comparison isolates what the agent learned. With ``sleeves`` > 1 (a
    staggered agent, :mod:`agents.sleeves`) each such rule is also traded as that many
    staggered sleeves, ``name@<interval>x<sleeves>``: the mean of the sleeves' equity curves,
    each sleeve through its own RSS layer, as the agent's.
    """
    from himari_env.risk.backtest import run_backtest
    from himari_env.risk.engine import RiskEngine

    returns = np.asarray(prepared.market.returns, dtype=np.float64)
    engine = None if risk_config is None else RiskEngine(risk_config, returns, max_leverage=max_leverage)
    out: dict[str, dict[str, BaselinePass]] = {}
    rules: dict[str, list[np.ndarray]] = {name: [directions] for name, directions in baselines.directions.items()}
    if decision_interval > 1:
        changing = {name: directions for name, directions in baselines.directions.items()
                    if not is_oracle(name) and np.any(directions[start:stop] != directions[start])}
        rules |= {f"{name}@{decision_interval}": [at_decision_interval(directions, start=start, stop=stop,
                                                                       interval=decision_interval)]
                  for name, directions in changing.items()}
        if sleeves > 1:
            from agents.sleeves import sleeve_phases

            phases = sleeve_phases(decision_interval, sleeves)
            rules |= {f"{name}@{decision_interval}x{sleeves}": [
                at_decision_interval(directions, start=start, stop=stop, interval=decision_interval, phase=phase)
                for phase in phases] for name, directions in changing.items()}

    def traded(grids: list[np.ndarray], sizing: Any) -> BaselinePass:
        results = [run_backtest(returns, directions, regime_ids, start=start, stop=stop, config=None,
                                fee_rate=fee_rate, max_leverage=max_leverage, engine=sizing) for directions in grids]
        if len(results) == 1:
            return BaselinePass(results[0].equity, results[0].positions)
        # as agents.sleeves.SleevedPass: exact equity, the positions' equal-weight mean
        return BaselinePass(results[0].equity[0] * np.mean([r.equity / r.equity[0] for r in results], axis=0),
                            np.mean([r.positions for r in results], axis=0))

    for name, grids in rules.items():
        out[name] = {"raw": traded(grids, None)}
        if engine is not None and base_rule(name) not in ("flat", "random"):
            out[name]["rss"] = traded(grids, engine)
    for name, positions in baselines.positions.items():
        equity, held = _position_pass(returns, positions, start, stop, fee_rate, max_leverage)
        out[name] = {"raw": BaselinePass(equity, held)}
    return out


def best_baseline(summaries: dict[str, dict[str, dict[str, Any]]], *, metric: str = "sharpe",
                  exclude: tuple[str, ...] = ORACLES) -> tuple[str, str]:
    """``(name, variant)`` of the baseline with the highest ``metric`` (the oracles excluded, at
    any cadence), among every row: the cadence rows ``name@<I>`` too, so with a decision
    interval the best of more rules is the bar."""
    candidates = [(values[metric], name, variant) for name, variants in summaries.items()
                  if base_rule(name) not in exclude for variant, values in variants.items()]
    if not candidates:
        raise ValueError("no baseline to compare with")
    _, name, variant = max(candidates)
    return name, variant


def baseline_table(data: Any, *, split: str = "val", seed: int = 0, fee_rate: float = 0.001,
                   max_leverage: float = 1.0, risk_settings: RiskSettings | None = None,
                   decision_interval: int = 1, timing: bool = False,
                   timing_permutations: int = 200, sleeves: int = 1) -> dict[str, Any]:
    """Every baseline on ``split`` of ``data`` (``"synthetic"``, ``"planted"``, a path or a
    frame), raw and through the RSS layer calibrated on its train split; JSON-ready.

    ``risk_settings``: a preset's :class:`agents.config.RiskSettings` (default: the design
    log's RSS settings). ``decision_interval`` > 1 adds each rule at that cadence
    (``name@<interval>``, :func:`run_baselines`); with ``timing`` each of those rules, through
    the RSS layer, also gets the timing test of :mod:`himari_env.timing` (its holding periods
    reordered ``timing_permutations`` times), under ``"timing"``. ``sleeves`` > 1 also trades
    each of them as that many staggered sleeves (``name@<interval>x<sleeves>``, with the
    sleeves' joint timing test under ``timing``)."""
    from experiments.scoreboard import flat_baseline_summaries
    from himari_env.pipeline import prepare_market
    from himari_env.risk import calibrate_risk
    from wrappers.stack import load_frame

    if timing and decision_interval < 2:
        raise ValueError("the timing test of the rules needs a decision interval >= 2 (--decision-interval or "
                         "a --config preset that decides every few bars)")
    frame = load_frame(data, seed=seed)
    prepared = prepare_market(frame)
    market = prepared.market
    train = market.splits["train"]
    risk_config = calibrate_risk(market.returns[train], gap_before=market.gap_before[train],
                                 config=None if risk_settings is None else risk_settings.risk_config())
    planted = None
    if isinstance(data, str) and data == "planted":
        from himari_env.data.planted import synthesize_planted_market

        planted = synthesize_planted_market(len(frame), seed)
    regimes = prepared.regime_ids["rules"]
    baselines = build_baselines(prepared, regime_ids=regimes, risk_config=risk_config, fee_rate=fee_rate,
                                max_leverage=max_leverage, seed=seed, planted=planted)
    window = market.splits[split]
    stop = min(window.stop, market.close.size - 1)
    passes = run_baselines(baselines, prepared, start=window.start, stop=stop, regime_ids=regimes,
                           risk_config=risk_config, fee_rate=fee_rate, max_leverage=max_leverage,
                           decision_interval=decision_interval, sleeves=sleeves)
    summaries = flat_baseline_summaries(passes)
    table: dict[str, Any] = {"data": str(data), "split": split,
             "period": [str(pd.Timestamp(market.timestamps[window.start])), str(pd.Timestamp(market.timestamps[stop]))],
             "baselines": summaries,
             "notes": {k: v for k, v in baselines.notes.items() if k != "supervised_fit"}}
    if timing:
        from himari_env.timing import timing_permutation_test

        bars = decision_grid(window.start, stop, decision_interval)
        table["timing"] = {
            f"{name}@{decision_interval}+rss": timing_permutation_test(
                market.returns, regimes, decision_bars=bars, directions=directions[bars], stop=stop,
                risk_config=risk_config, fee_rate=fee_rate, max_leverage=max_leverage,
                policy_sharpe=summaries[f"{name}@{decision_interval}+rss"]["sharpe"],
                n_permutations=timing_permutations, seed=seed).to_dict()
            for name, directions in baselines.directions.items()
            if f"{name}@{decision_interval}+rss" in summaries}
        if sleeves > 1:
            from agents.sleeves import sleeve_phases
            from himari_env.timing import sleeved_timing_permutation_test

            grids = [decision_grid(window.start, stop, decision_interval, phase)
                     for phase in sleeve_phases(decision_interval, sleeves)]
            label = f"@{decision_interval}x{sleeves}+rss"
            table["timing"] |= {
                f"{name}{label}": sleeved_timing_permutation_test(
                    market.returns, regimes, sleeves=[(grid, directions[grid]) for grid in grids], stop=stop,
                    risk_config=risk_config, fee_rate=fee_rate, max_leverage=max_leverage,
                    policy_sharpe=summaries[f"{name}{label}"]["sharpe"], n_permutations=timing_permutations,
                    seed=seed).to_dict()
                for name, directions in baselines.directions.items() if f"{name}{label}" in summaries}
    return table


__all__ = [
    "BARS_PER_YEAR",
    "ORACLES",
    "BaselinePass",
    "BaselineSet",
    "at_decision_interval",
    "base_rule",
    "baseline_table",
    "best_baseline",
    "build_baselines",
    "is_oracle",
    "ma_cross_directions",
    "momentum_directions",
    "regime_gated_directions",
    "run_baselines",
    "supervised_directions",
    "vol_target_positions",
]
