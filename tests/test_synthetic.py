"""The synthetic market: BTC-like stylized facts, regimes, OHLC consistency, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from himari_env.constants import CRISIS, HIGH_VOL, LOW_VOL, N_REGIMES, OHLCV_COLUMNS, TRENDING
from himari_env.data import validate_ohlcv
from himari_env.data.synthetic import SyntheticMarket, SyntheticMarketParams, synthesize_market

SEEDS = (0, 1, 2)
DESIGN_SHARES = np.array([0.453, 0.262, 0.169, 0.115])  # design log, LOW/TREND/HIGH/CRISIS


@pytest.fixture(scope="module")
def markets() -> dict[int, SyntheticMarket]:
    return {seed: synthesize_market(45_000, seed) for seed in SEEDS}


def _simple_returns(market: SyntheticMarket) -> np.ndarray:
    close = market.frame["close"].to_numpy()
    return close[1:] / close[:-1] - 1.0


def _autocorrelation(values: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(values[:-lag], values[lag:])[0, 1])


def _excess_kurtosis(values: np.ndarray) -> float:
    centered = values - values.mean()
    return float(np.mean(centered**4) / np.mean(centered**2) ** 2 - 3.0)


def _skewness(values: np.ndarray) -> float:
    centered = values - values.mean()
    return float(np.mean(centered**3) / np.mean(centered**2) ** 1.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_hourly_return_std_is_btc_like(markets: dict[int, SyntheticMarket], seed: int) -> None:
    assert 0.005 <= _simple_returns(markets[seed]).std() <= 0.009


@pytest.mark.parametrize("seed", SEEDS)
def test_returns_are_fat_tailed(markets: dict[int, SyntheticMarket], seed: int) -> None:
    assert _excess_kurtosis(_simple_returns(markets[seed])) > 5.0


@pytest.mark.parametrize("seed", SEEDS)
def test_absolute_returns_are_autocorrelated_at_every_lag_up_to_a_day(
    markets: dict[int, SyntheticMarket], seed: int
) -> None:
    absolute = np.abs(_simple_returns(markets[seed]))
    autocorrelations = [_autocorrelation(absolute, lag) for lag in range(1, 25)]
    assert min(autocorrelations) > 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_price_starts_near_7000_and_stays_plausible(
    markets: dict[int, SyntheticMarket], seed: int
) -> None:
    frame = markets[seed].frame
    assert frame["open"].iloc[0] == 7_000.0
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    assert prices.min() > 700.0
    assert prices.max() < 70_000.0


@pytest.mark.parametrize("seed", SEEDS)
def test_regime_shares_are_near_design_targets(
    markets: dict[int, SyntheticMarket], seed: int
) -> None:
    shares = np.bincount(markets[seed].regime_ids, minlength=N_REGIMES) / 45_000
    np.testing.assert_allclose(shares, DESIGN_SHARES, atol=0.03)


def test_transition_matrix_long_run_shares_match_design_targets() -> None:
    params = SyntheticMarketParams()
    np.testing.assert_allclose(params.stationary_distribution(), DESIGN_SHARES, atol=0.005)
    assert np.all((params.mean_run_bars() >= 10) & (params.mean_run_bars() <= 100))


def test_regimes_are_persistent(markets: dict[int, SyntheticMarket]) -> None:
    regime_ids = markets[0].regime_ids
    run_starts = np.flatnonzero(np.diff(regime_ids) != 0) + 1
    run_regimes = regime_ids[np.concatenate(([0], run_starts))]
    run_lengths = np.diff(np.concatenate(([0], run_starts, [regime_ids.size])))
    for regime in range(N_REGIMES):
        assert run_lengths[run_regimes == regime].mean() >= 15


def test_regime_ids_are_int8_in_range(markets: dict[int, SyntheticMarket]) -> None:
    regime_ids = markets[0].regime_ids
    assert regime_ids.dtype == np.int8
    assert regime_ids.shape == (45_000,)
    assert set(np.unique(regime_ids).tolist()) == {LOW_VOL, TRENDING, HIGH_VOL, CRISIS}


def test_volatility_rises_from_low_vol_to_crisis(markets: dict[int, SyntheticMarket]) -> None:
    market = markets[0]
    log_returns = np.diff(np.log(market.frame["close"].to_numpy()))
    regimes = market.regime_ids[1:]
    stds = [log_returns[regimes == regime].std() for regime in range(N_REGIMES)]
    assert stds[LOW_VOL] < stds[TRENDING] < stds[HIGH_VOL] < stds[CRISIS]


def test_crisis_returns_drift_down_and_are_negatively_skewed(
    markets: dict[int, SyntheticMarket],
) -> None:
    for market in markets.values():
        log_returns = np.diff(np.log(market.frame["close"].to_numpy()))
        crisis = log_returns[market.regime_ids[1:] == CRISIS]
        assert crisis.mean() < 0.0
        assert _skewness(crisis) < 0.0


def test_trending_drift_sign_is_drawn_per_episode(markets: dict[int, SyntheticMarket]) -> None:
    market = markets[0]
    log_returns = np.diff(np.log(market.frame["close"].to_numpy()), prepend=np.nan)
    regime_ids = market.regime_ids
    run_starts = np.concatenate(([0], np.flatnonzero(np.diff(regime_ids) != 0) + 1))
    run_ends = np.concatenate((run_starts[1:], [regime_ids.size]))
    episodes = [
        (start, end)
        for start, end in zip(run_starts, run_ends, strict=True)
        if regime_ids[start] == TRENDING and end - start >= 30
    ]
    episode_moves = np.array([np.nansum(log_returns[start:end]) for start, end in episodes])
    episode_bars = np.array([end - start for start, end in episodes])
    assert np.mean(episode_moves > 0) >= 0.25
    assert np.mean(episode_moves < 0) >= 0.25
    # Without drift, |move| / (sigma sqrt(bars)) averages sqrt(2 / pi) (Gaussian sum); a
    # signed drift per episode pushes it above that.
    trending_std = log_returns[1:][regime_ids[1:] == TRENDING].std()
    normalized_moves = np.abs(episode_moves) / (trending_std * np.sqrt(episode_bars))
    assert normalized_moves.mean() > np.sqrt(2.0 / np.pi)


def test_volume_is_positive_and_rises_with_absolute_return(
    markets: dict[int, SyntheticMarket],
) -> None:
    frame = markets[0].frame
    volume = frame["volume"].to_numpy()
    assert np.all(volume > 0)
    absolute_return = np.abs(_simple_returns(markets[0]))
    assert np.corrcoef(np.log(volume[1:]), absolute_return)[0, 1] > 0.2


@pytest.mark.parametrize("seed", SEEDS)
def test_ohlc_follows_an_intrabar_path(markets: dict[int, SyntheticMarket], seed: int) -> None:
    frame = markets[seed].frame
    open_, high, low, close = (frame[name].to_numpy() for name in ("open", "high", "low", "close"))
    assert np.all(high >= np.maximum(open_, close))
    assert np.all(low <= np.minimum(open_, close))
    assert np.all(low > 0)
    assert np.array_equal(open_[1:], close[:-1])
    # The bar range is wider than the open-close move on most bars (a real intrabar path).
    assert np.mean(high - low > np.abs(close - open_)) > 0.9


def test_frame_is_canonical(markets: dict[int, SyntheticMarket]) -> None:
    frame = markets[0].frame
    assert list(frame.columns) == list(OHLCV_COLUMNS)
    assert all(frame[name].dtype == np.float64 for name in OHLCV_COLUMNS)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "timestamp"
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2020-01-01T00:00Z")
    assert np.all(np.diff(frame.index.asi8) == np.diff(frame.index.asi8)[0])
    assert (frame.index[1] - frame.index[0]) == pd.Timedelta(hours=1)


def test_frame_passes_validate_ohlcv_without_gaps(markets: dict[int, SyntheticMarket]) -> None:
    report = validate_ohlcv(markets[0].frame)
    assert report.is_valid
    assert report.n_gap_runs == 0


def test_same_seed_gives_bit_identical_market(markets: dict[int, SyntheticMarket]) -> None:
    again = synthesize_market(45_000, 0)
    pd.testing.assert_frame_equal(again.frame, markets[0].frame, check_exact=True)
    assert np.array_equal(again.regime_ids, markets[0].regime_ids)


def test_different_seeds_give_different_markets(markets: dict[int, SyntheticMarket]) -> None:
    assert not np.array_equal(markets[0].frame["close"], markets[1].frame["close"])
    assert not np.array_equal(markets[0].regime_ids, markets[1].regime_ids)


def test_generator_arguments_are_recorded() -> None:
    market = synthesize_market(500, 7, start="2024-06-01 12:00")
    assert (market.seed, market.n_bars) == (7, 500)
    assert market.start == pd.Timestamp("2024-06-01T12:00Z")
    assert market.frame.index[0] == market.start
    assert market.params == SyntheticMarketParams()
    assert json.loads(json.dumps(market.params.to_dict()))["start_price"] == 7_000.0


def test_two_bars_is_the_smallest_market() -> None:
    market = synthesize_market(2, 0)
    assert market.frame.shape == (2, 5)
    assert market.regime_ids.shape == (2,)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_bars": 1}, "n_bars"),
        ({"n_bars": 0}, "n_bars"),
        ({"n_bars": 100.0}, "n_bars"),
        ({"n_bars": True}, "n_bars"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"start": "2020-01-01T00:30Z"}, "start"),
        ({"start": "not a date"}, "start"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(
    kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        synthesize_market(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "argument"),
    [
        ({"transition_matrix": ((1.0, 0.0, 0.0, 0.0),) * 4}, "transition_matrix"),
        ({"transition_matrix": ((0.5, 0.5, 0.0, 0.0),) * 3}, "transition_matrix"),
        ({"regime_df": (6.0, 5.0, 2.0, 4.0)}, "regime_df"),
        ({"regime_vol": (0.0, 0.006, 0.01, 0.014)}, "regime_vol"),
        ({"garch_alpha": 0.2, "garch_beta": 0.8}, "garch_alpha"),
        ({"intrabar_steps": 0}, "intrabar_steps"),
    ],
)
def test_bad_parameters_raise_value_error_naming_the_parameter(
    override: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        SyntheticMarketParams(**override)  # type: ignore[arg-type]
