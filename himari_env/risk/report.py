"""The RSS risk layer's calibration report: fit on train, measure a reference rule on train
and test (the computation behind ``himari calibrate risk``).

:func:`load_inputs` loads (or synthesizes) a market and computes the arrays the calibrations
read: returns, gap mask, the rules labeler's regimes and the chronological splits.
:func:`calibrate_risk_report` fits the EVT tails (H1) and the volatility target (H3) on train
returns (gap-spanning returns excluded and counted), optionally selects the drawdown brake
(H4) on train by the Calmar ratio of the reference momentum rule sized by the layer, and
reports, train vs test: EVT xi, sigma, VaR99, ES99; the reference rule's Kelly win rate and
payoff; annual and median vol; max drawdown and VaR99 of the rule with and without the
layer; how often each method bound the size, over whole splits and over fresh episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from himari_env.constants import DEFAULT_FEE_RATE

DEFAULT_LOOKBACK = 24
DEFAULT_SYNTHETIC_BARS = 45_000
DEFAULT_EPISODE_LENGTH = 2048


@dataclass(frozen=True)
class MarketInputs:
    """The arrays the risk and Sortino calibrations read, over the whole series (n bars)."""

    source: str
    timestamps: np.ndarray  # datetime64[ns] (n,)
    close: np.ndarray  # float64 (n,)
    returns: np.ndarray  # float64 (n,), returns[0] = 0
    gap_before: np.ndarray  # bool (n,)
    regime_ids: np.ndarray  # int8 (n,), rules labeler, -1 in warm-up
    splits: dict[str, slice]


def load_inputs(data: Path | None, *, seed: int = 0, n_bars: int = DEFAULT_SYNTHETIC_BARS) -> MarketInputs:
    """Load (or synthesize) the market, validate it, and compute returns, gaps, regimes, splits."""
    from himari_env.data import chronological_splits, gap_mask, validate_ohlcv
    from himari_env.market import returns_from_close
    from himari_env.regimes.labeler import label_regimes

    if data is not None:
        from himari_env.data import load_ohlcv

        frame = load_ohlcv(data)
        source = str(data)
    else:
        from himari_env.data import synthesize_market

        frame = synthesize_market(n_bars=n_bars, seed=seed).frame
        source = f"synthetic(n_bars={n_bars}, seed={seed})"
    validate_ohlcv(frame)
    close = frame["close"].to_numpy(dtype=np.float64)
    return MarketInputs(
        source=source,
        timestamps=frame.index.tz_convert(None).to_numpy(dtype="datetime64[ns]"),
        close=close,
        returns=returns_from_close(close),
        gap_before=gap_mask(frame.index),
        regime_ids=label_regimes(frame),
        splits=chronological_splits(len(frame)),
    )


def _decision_range(inputs: MarketInputs, split: str) -> tuple[int, int]:
    start, stop, _ = inputs.splits[split].indices(inputs.close.size)
    unlabeled = np.flatnonzero(inputs.regime_ids[start : stop - 1] < 0)
    if unlabeled.size:
        bar = start + int(unlabeled[0])
        raise ValueError(
            f"regime label missing (labeler warm-up) at decision bar {bar} "
            f"({inputs.timestamps[bar]}) of split {split!r}"
        )
    return start, stop - 1


def _period(inputs: MarketInputs, split: str) -> str:
    start, stop, _ = inputs.splits[split].indices(inputs.close.size)
    return f"{str(inputs.timestamps[start])[:16]} .. {str(inputs.timestamps[stop - 1])[:16]}"


def calibrate_risk_report(
    inputs: MarketInputs,
    *,
    fee_rate: float = DEFAULT_FEE_RATE,
    max_leverage: float = 3.0,
    lookback: int = DEFAULT_LOOKBACK,
    brake_search: bool = True,
    episode_length: int = DEFAULT_EPISODE_LENGTH,
) -> tuple[Any, dict[str, Any]]:
    """Fit the risk layer on train and evaluate it on train and test.

    Returns ``(config, report)``: the calibrated :class:`~himari_env.risk.config.RiskConfig`
    and a JSON-ready report.
    """
    from himari_env.risk.backtest import run_backtest
    from himari_env.risk.calibration import calibrate_risk, select_drawdown_brake
    from himari_env.risk.engine import RiskEngine
    from himari_env.risk.evt import EVTFitError, fit_tail, tail_es, tail_var
    from himari_env.risk.kelly import estimate_kelly, outcome_totals
    from himari_env.risk.vol_target import VolTargetParams, fit_vol_target
    from himari_env.rules import momentum_directions

    train = inputs.splits["train"]
    config = calibrate_risk(inputs.returns[train], gap_before=inputs.gap_before[train])
    directions = momentum_directions(inputs.close, lookback)
    brake_grid: list[dict[str, Any]] = []
    if brake_search:
        config, brake_grid = select_drawdown_brake(
            inputs.returns, directions, inputs.regime_ids, train=train, config=config,
            fee_rate=fee_rate, max_leverage=max_leverage,
        )
    engine = RiskEngine(config, inputs.returns, max_leverage=max_leverage)

    periods: dict[str, dict[str, Any]] = {}
    for split in ("train", "test"):
        start, stop = _decision_range(inputs, split)
        split_returns = inputs.returns[inputs.splits[split]]
        kept = split_returns[~inputs.gap_before[inputs.splits[split]]]
        evt_report: dict[str, Any] = {"xi": None, "sigma": None, "threshold": None, "var99": None,
                                      "es99": None, "n_exceedances": 0, "note": ""}
        try:
            tail = fit_tail(kept, side="long", threshold_quantile=config.evt.threshold_quantile,
                            min_exceedances=config.evt.min_exceedances)
            evt_report.update(xi=tail.xi, sigma=tail.sigma, threshold=tail.threshold,
                              var99=tail_var(tail, config.evt.level), n_exceedances=tail.n_exceedances)
            evt_report["es99"] = tail_es(tail, config.evt.level)
        except EVTFitError as error:  # reported, not fatal: the test split may be short
            evt_report["note"] = str(error)
        held = directions[start:stop].astype(np.float64)
        outcomes = held * inputs.returns[start + 1 : stop + 1]
        totals = outcome_totals(outcomes[held != 0])
        kelly = estimate_kelly(*totals, config.kelly)
        vol = fit_vol_target(kept, VolTargetParams(window=config.vol_target.window,
                                                   target_fraction=config.vol_target.target_fraction))
        sized = run_backtest(inputs.returns, directions, inputs.regime_ids, start=start, stop=stop,
                             config=None, fee_rate=fee_rate, max_leverage=max_leverage, engine=engine)
        unit = run_backtest(inputs.returns, directions, inputs.regime_ids, start=start, stop=stop,
                            config=None, fee_rate=fee_rate, max_leverage=max_leverage)
        periods[split] = {
            "period": _period(inputs, split),
            "evt": evt_report,
            "kelly": {"win_rate": totals[0] / max(1, totals[0] + totals[1]),
                      "payoff_ratio": (totals[2] / totals[0]) / (totals[3] / totals[1])
                      if totals[0] and totals[1] else None,
                      "full_kelly": kelly.full_kelly,
                      "quarter_kelly": config.kelly.fraction * kelly.full_kelly,
                      "edge_probability": kelly.edge_probability,
                      "informative": kelly.informative, "reason": kelly.reason},
            "volatility": {"annual_vol": vol.annual_vol, "median_vol": vol.median_vol},
            "risk_on": sized.summary(),
            "risk_off": unit.summary(),
            "binding_shares": sized.binding_shares(),
            "episodes": _episode_summary(inputs, directions, engine, start, stop, episode_length,
                                         fee_rate, max_leverage),
        }

    long_tail, short_tail = config.evt.long_tail, config.evt.short_tail
    assert long_tail is not None and short_tail is not None
    report = {
        "source": inputs.source,
        "fee_rate": fee_rate,
        "max_leverage": max_leverage,
        "reference_policy": f"momentum_{lookback}",
        "regime_source": "rules labeler",
        "fitted": {
            "evt_long": {"xi": long_tail.xi, "sigma": long_tail.sigma, "threshold": long_tail.threshold,
                         "var99": tail_var(long_tail, config.evt.level), "es99": tail_es(long_tail, config.evt.level)},
            "evt_short": {"xi": short_tail.xi, "sigma": short_tail.sigma, "threshold": short_tail.threshold,
                          "var99": tail_var(short_tail, config.evt.level), "es99": tail_es(short_tail, config.evt.level)},
            "target_vol": config.vol_target.target_vol,
            "annual_vol": config.vol_target.annual_vol,
            "median_vol": config.vol_target.median_vol,
            "drawdown_brake": {"thresholds": list(config.drawdown_brake.thresholds),
                               "reductions": list(config.drawdown_brake.reductions),
                               "selection": "max Calmar of the sized reference rule on train"
                               if brake_search else "design log default"},
            "fitted_on": config.fitted_on,
        },
        "brake_grid": brake_grid,
        "train": periods["train"],
        "test": periods["test"],
    }
    return config, report


def _episode_summary(inputs: MarketInputs, directions: np.ndarray, engine: Any, start: int, stop: int,
                     episode_length: int, fee_rate: float, max_leverage: float) -> dict[str, Any]:
    """Fresh episodes (equity 1, budget 1, no Kelly outcomes), back to back over the split:
    the state the wrapper is in during training. Max drawdown per episode with and without
    the risk layer, and binding shares over all episodes."""
    from collections import Counter

    from himari_env.risk.backtest import run_backtest
    from himari_env.risk.composer import BINDING_HOLD, METHOD_ORDER

    if episode_length < 1:
        raise ValueError(f"--episode-length must be >= 1, got {episode_length}")
    on_drawdowns, off_drawdowns = [], []
    counts: Counter[str] = Counter()
    for first in range(start, stop - episode_length + 1, episode_length):
        last = first + episode_length
        sized = run_backtest(inputs.returns, directions, inputs.regime_ids, start=first, stop=last,
                             config=None, fee_rate=fee_rate, max_leverage=max_leverage, engine=engine)
        unit = run_backtest(inputs.returns, directions, inputs.regime_ids, start=first, stop=last,
                            config=None, fee_rate=fee_rate, max_leverage=max_leverage)
        on_drawdowns.append(sized.summary()["max_drawdown"])
        off_drawdowns.append(unit.summary()["max_drawdown"])
        counts.update(b for b in sized.bindings if b != BINDING_HOLD)
    total = sum(counts.values())
    return {
        "episode_length": episode_length,
        "n_episodes": len(on_drawdowns),
        "max_drawdown_on_median": float(np.median(on_drawdowns)) if on_drawdowns else None,
        "max_drawdown_on_worst": float(np.max(on_drawdowns)) if on_drawdowns else None,
        "max_drawdown_off_median": float(np.median(off_drawdowns)) if off_drawdowns else None,
        "max_drawdown_off_worst": float(np.max(off_drawdowns)) if off_drawdowns else None,
        "binding_shares": {name: (counts.get(name, 0) / total if total else 0.0)
                           for name in (*METHOD_ORDER, "none")},
    }
