"""Seeded synthetic BTC-like 1-hour market: the embedded default data source.

A 4-regime Markov-switching generator (ids 0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS):

1. Regime chain. A Markov chain with transition matrix ``P`` drawn run by run: a run in
   regime ``i`` lasts ``Geometric(1 - P[i, i])`` bars (mean ``1 / (1 - P[i, i])``), then the
   chain jumps to ``j != i`` with probability ``P[i, j] / (1 - P[i, i])``. The default ``P``
   has long-run shares near the design log's 45.3 / 26.2 / 16.9 / 11.5 % and mean run
   lengths of 20-50 bars.
2. Log returns ``r[t] = drift[t] + vol[regime[t]] * sqrt(h[t]) * z[t]`` with ``z`` a
   unit-variance Student-t (regime-dependent degrees of freedom), made negatively skewed in
   CRISIS (Fernandez-Steel two-piece scaling, re-standardized analytically) and ``h`` a
   GARCH(1,1) multiplier with unit mean (volatility clustering within regimes). TRENDING
   carries a drift whose sign is drawn once per trending episode; CRISIS drifts down,
   HIGH_VOL (rebounds) and LOW_VOL drift slightly up so the long-run drift is near zero.
3. Price. The log price reverts to the start level with a time constant of about a year
   (``price_reversion_per_bar``) so long simulations stay in a plausible range; the
   per-bar edge this creates is far below one basis point.
4. Volume. Lognormal: log volume loads on the bar's volatility and on ``|z|`` plus AR(1)
   noise, so volume is correlated with absolute returns and volatility.
5. OHLC. ``open[t] == close[t-1]`` exactly; high and low are the extremes of a Brownian
   bridge of ``intrabar_steps`` sub-steps from the open to the close with the bar's
   volatility, so ``high >= max(open, close)`` and ``low <= min(open, close)``.

Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives a
bit-identical frame. Timestamps are hourly, UTC, without gaps.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from himari_env.constants import CRISIS, HIGH_VOL, INDEX_NAME, LOW_VOL, N_REGIMES, TRENDING

__all__ = ["SyntheticMarket", "SyntheticMarketParams", "synthesize_market"]


def _default_transition_matrix() -> tuple[tuple[float, ...], ...]:
    # Mean run lengths (bars) and where a run goes when it ends; chosen so the stationary
    # distribution is ~45.3 / 26.2 / 16.9 / 11.5 % (checked in tests/test_synthetic.py).
    mean_run_bars = {LOW_VOL: 49.0, TRENDING: 33.5, HIGH_VOL: 20.0, CRISIS: 22.0}
    exit_to = {
        LOW_VOL: {TRENDING: 0.50, HIGH_VOL: 0.38, CRISIS: 0.12},
        TRENDING: {LOW_VOL: 0.55, HIGH_VOL: 0.30, CRISIS: 0.15},
        HIGH_VOL: {LOW_VOL: 0.40, TRENDING: 0.25, CRISIS: 0.35},
        CRISIS: {LOW_VOL: 0.30, TRENDING: 0.20, HIGH_VOL: 0.50},
    }
    rows = []
    for i in range(N_REGIMES):
        leave = 1.0 / mean_run_bars[i]
        rows.append(
            tuple(1.0 - leave if j == i else leave * exit_to[i][j] for j in range(N_REGIMES))
        )
    return tuple(rows)


@dataclass(frozen=True)
class SyntheticMarketParams:
    """Parameters of the synthetic generator. Per-regime tuples are indexed by regime id.

    Attributes
    ----------
    transition_matrix : tuple of 4 tuples of 4 floats
        Row-stochastic regime transition matrix ``P[i, j] = P(regime[t+1]=j | regime[t]=i)``;
        every ``P[i, i]`` must be in ``[0, 1)``.
    regime_drift : tuple of 4 floats
        Drift of the 1-bar log return, per bar. For TRENDING this is the magnitude; its sign
        is drawn per trending episode.
    regime_vol : tuple of 4 floats
        Standard deviation of the 1-bar log-return shock (before the GARCH multiplier).
    regime_df : tuple of 4 floats
        Student-t degrees of freedom of the shock, each > 2 (finite variance).
    regime_skew : tuple of 4 floats
        Fernandez-Steel scale ``gamma`` of the shock: 1 symmetric, > 1 negatively skewed.
    garch_alpha, garch_beta : float
        GARCH(1,1) multiplier ``h[t] = (1 - a - b) + a * h[t-1] * z[t-1]**2 + b * h[t-1]``
        (unit long-run mean); ``a, b >= 0`` and ``a + b < 1``.
    start_price : float
        Open of the first bar (quote currency, USDT-like).
    price_reversion_per_bar : float
        Fraction of the log-price distance to ``log(start_price)`` removed each bar, in [0, 1).
    volume_median : float
        Median volume (base units, BTC-like) at reference volatility.
    volume_vol_loading : float
        Loading of log volume on ``log(bar volatility / reference volatility)``.
    volume_shock_loading : float
        Loading of log volume on ``|z| - E|z|`` (volume rises with the absolute return).
    volume_noise_std, volume_noise_ar : float
        Stationary std and AR(1) coefficient of the remaining log-volume noise.
    intrabar_steps : int
        Sub-steps of the Brownian bridge that sets high and low, >= 1.
    """

    transition_matrix: tuple[tuple[float, ...], ...] = field(
        default_factory=_default_transition_matrix
    )
    regime_drift: tuple[float, ...] = (1.0e-4, 6.0e-4, 4.0e-4, -1.0e-3)
    regime_vol: tuple[float, ...] = (0.0035, 0.0060, 0.0100, 0.0140)
    regime_df: tuple[float, ...] = (6.0, 5.0, 4.5, 4.0)
    regime_skew: tuple[float, ...] = (1.0, 1.0, 1.0, 1.25)
    garch_alpha: float = 0.06
    garch_beta: float = 0.90
    start_price: float = 7_000.0
    price_reversion_per_bar: float = 1.0 / 8_760.0
    volume_median: float = 1_000.0
    volume_vol_loading: float = 0.8
    volume_shock_loading: float = 0.3
    volume_noise_std: float = 0.7
    volume_noise_ar: float = 0.8
    intrabar_steps: int = 12

    def __post_init__(self) -> None:
        matrix = np.asarray(self.transition_matrix, dtype=np.float64)
        if matrix.shape != (N_REGIMES, N_REGIMES):
            raise ValueError(
                f"transition_matrix must be {N_REGIMES}x{N_REGIMES}, got shape {matrix.shape}"
            )
        if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
            raise ValueError("transition_matrix entries must be finite and >= 0")
        bad_rows = np.flatnonzero(np.abs(matrix.sum(axis=1) - 1.0) > 1e-9)
        if bad_rows.size:
            raise ValueError(f"transition_matrix rows {bad_rows.tolist()} do not sum to 1")
        absorbing = np.flatnonzero(np.diag(matrix) >= 1.0)
        if absorbing.size:
            raise ValueError(
                f"transition_matrix regimes {absorbing.tolist()} never leave (P[i, i] = 1)"
            )
        for name in ("regime_drift", "regime_vol", "regime_df", "regime_skew"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.shape != (N_REGIMES,) or not np.all(np.isfinite(values)):
                raise ValueError(f"{name} must hold {N_REGIMES} finite floats, got {values}")
        if min(self.regime_vol) <= 0:
            raise ValueError(f"regime_vol must be > 0, got {self.regime_vol}")
        if min(self.regime_df) <= 2:
            raise ValueError(f"regime_df must be > 2 (finite variance), got {self.regime_df}")
        if min(self.regime_skew) <= 0:
            raise ValueError(f"regime_skew must be > 0, got {self.regime_skew}")
        if not (
            self.garch_alpha >= 0
            and self.garch_beta >= 0
            and self.garch_alpha + self.garch_beta < 1
        ):
            raise ValueError(
                f"garch_alpha={self.garch_alpha}, garch_beta={self.garch_beta}: need both >= 0 "
                "and garch_alpha + garch_beta < 1"
            )
        if not (math.isfinite(self.start_price) and self.start_price > 0):
            raise ValueError(f"start_price must be finite and > 0, got {self.start_price}")
        if not 0 <= self.price_reversion_per_bar < 1:
            raise ValueError(
                f"price_reversion_per_bar must be in [0, 1), got {self.price_reversion_per_bar}"
            )
        if not (math.isfinite(self.volume_median) and self.volume_median > 0):
            raise ValueError(f"volume_median must be finite and > 0, got {self.volume_median}")
        if self.volume_noise_std < 0 or not -1 < self.volume_noise_ar < 1:
            raise ValueError(
                f"volume_noise_std={self.volume_noise_std} must be >= 0 and "
                f"volume_noise_ar={self.volume_noise_ar} in (-1, 1)"
            )
        if (
            isinstance(self.intrabar_steps, bool)
            or not isinstance(self.intrabar_steps, numbers.Integral)
            or self.intrabar_steps < 1
        ):
            raise ValueError(f"intrabar_steps must be an int >= 1, got {self.intrabar_steps!r}")

    def stationary_distribution(self) -> np.ndarray:
        """Long-run regime shares of the transition matrix, float64 (4,), summing to 1."""
        matrix = np.asarray(self.transition_matrix, dtype=np.float64)
        eigenvalues, eigenvectors = np.linalg.eig(matrix.T)
        vector = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1.0))])
        return vector / vector.sum()

    def mean_run_bars(self) -> np.ndarray:
        """Mean run length of each regime in bars, float64 (4,): ``1 / (1 - P[i, i])``."""
        return 1.0 / (1.0 - np.diag(np.asarray(self.transition_matrix, dtype=np.float64)))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of every parameter."""
        return {
            "transition_matrix": [list(row) for row in self.transition_matrix],
            "regime_drift": list(self.regime_drift),
            "regime_vol": list(self.regime_vol),
            "regime_df": list(self.regime_df),
            "regime_skew": list(self.regime_skew),
            "garch_alpha": self.garch_alpha,
            "garch_beta": self.garch_beta,
            "start_price": self.start_price,
            "price_reversion_per_bar": self.price_reversion_per_bar,
            "volume_median": self.volume_median,
            "volume_vol_loading": self.volume_vol_loading,
            "volume_shock_loading": self.volume_shock_loading,
            "volume_noise_std": self.volume_noise_std,
            "volume_noise_ar": self.volume_noise_ar,
            "intrabar_steps": int(self.intrabar_steps),
        }


@dataclass(frozen=True)
class SyntheticMarket:
    """A synthetic market and the parameters that made it.

    Attributes
    ----------
    frame : pd.DataFrame
        Canonical OHLCV frame, (n_bars, 5), UTC hourly ``timestamp`` index without gaps.
    regime_ids : np.ndarray
        np.int8 (n_bars,), the true generating regime of each bar (0..3).
    seed, n_bars : int
        Arguments of :func:`synthesize_market`.
    start : pd.Timestamp
        Open time (UTC) of the first bar.
    params : SyntheticMarketParams
        Generator parameters used.
    """

    frame: pd.DataFrame
    regime_ids: np.ndarray
    seed: int
    n_bars: int
    start: pd.Timestamp
    params: SyntheticMarketParams


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _parse_start(start: str | pd.Timestamp) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(start)
    except (TypeError, ValueError) as error:
        raise ValueError(f"start={start!r} is not a timestamp: {error}") from None
    if stamp is pd.NaT:
        raise ValueError(f"start={start!r} is not a timestamp")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if stamp != stamp.floor("h"):
        raise ValueError(f"start={start!r} must fall on a whole hour (bar open time)")
    return stamp


def _draw_regime_chain(
    rng: np.random.Generator, n_bars: int, params: SyntheticMarketParams
) -> tuple[np.ndarray, np.ndarray]:
    """Regime of every bar, np.int8 (n_bars,), and the episode index of every bar, int64 (n_bars,).

    The loop runs once per regime *run* (about n_bars / 35 iterations), never per bar.
    """
    matrix = np.asarray(params.transition_matrix, dtype=np.float64)
    stay = np.diag(matrix)
    destinations: list[list[int]] = []
    destination_cdfs: list[list[float]] = []
    for i in range(N_REGIMES):
        others = [j for j in range(N_REGIMES) if j != i]
        weights = matrix[i, others] / matrix[i, others].sum()
        destinations.append(others)
        destination_cdfs.append(np.cumsum(weights).tolist())

    start_cdf = np.cumsum(params.stationary_distribution())
    state = min(int(np.searchsorted(start_cdf, rng.random(), side="right")), N_REGIMES - 1)
    run_states: list[np.ndarray] = []
    run_lengths: list[np.ndarray] = []
    covered = 0
    while covered < n_bars:
        chunk = (n_bars - covered) // 10 + 16
        uniforms = rng.random(chunk).tolist()
        states = np.empty(chunk, dtype=np.int8)
        for k, u in enumerate(uniforms):
            states[k] = state
            pick = min(bisect_right(destination_cdfs[state], u), N_REGIMES - 2)
            state = destinations[state][pick]
        lengths = rng.geometric(1.0 - stay[states])
        run_states.append(states)
        run_lengths.append(lengths)
        covered += int(lengths.sum())
    states_all = np.concatenate(run_states)
    lengths_all = np.concatenate(run_lengths)
    regime_ids = np.repeat(states_all, lengths_all)[:n_bars]
    episode_ids = np.repeat(np.arange(states_all.size), lengths_all)[:n_bars]
    return regime_ids, episode_ids


def _abs_mean_unit_t(df: np.ndarray) -> np.ndarray:
    """E|z| of a unit-variance Student-t with ``df`` degrees of freedom, float64 like df."""
    log_ratio = np.array([math.lgamma((d + 1) / 2) - math.lgamma(d / 2) for d in df.ravel()])
    abs_mean = (
        2.0 * np.sqrt(df.ravel()) * np.exp(log_ratio) / (math.sqrt(math.pi) * (df.ravel() - 1))
    )
    return (abs_mean * np.sqrt((df.ravel() - 2) / df.ravel())).reshape(df.shape)


def _draw_shocks(
    rng: np.random.Generator, regime_ids: np.ndarray, params: SyntheticMarketParams
) -> np.ndarray:
    """Unit-variance, zero-mean shocks z, float64 (n,), Student-t with regime df and skew."""
    df_by_regime = np.asarray(params.regime_df, dtype=np.float64)
    gamma_by_regime = np.asarray(params.regime_skew, dtype=np.float64)
    df = df_by_regime[regime_ids]
    z = rng.standard_t(df) * np.sqrt((df - 2.0) / df)
    gamma = gamma_by_regime[regime_ids]
    skewed = np.where(z < 0, z * gamma, z / gamma)
    # Analytic mean and variance of the two-piece variable, so z stays unit-variance.
    half_abs = _abs_mean_unit_t(df_by_regime)[regime_ids] / 2.0
    mean = half_abs * (1.0 / gamma - gamma)
    second = 0.5 * (gamma**2 + 1.0 / gamma**2)
    return (skewed - mean) / np.sqrt(second - mean**2)


def _garch_multiplier(z: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """GARCH(1,1) variance multiplier h, float64 (n,), h[0] = 1, unit long-run mean.

    A scalar loop (the recursion is inherently sequential); ~10 ms for 45,000 bars.
    """
    omega = 1.0 - alpha - beta
    multipliers = [0.0] * z.size
    previous = 1.0
    # Python floats over a list: ~5x faster than indexing numpy scalars in the loop.
    for t, shock_squared in enumerate((z * z).tolist()):
        multipliers[t] = previous
        previous = omega + (alpha * shock_squared + beta) * previous
    return np.asarray(multipliers, dtype=np.float64)


def synthesize_market(
    n_bars: int = 45_000,
    seed: int = 0,
    *,
    start: str | pd.Timestamp = "2020-01-01T00:00Z",
    params: SyntheticMarketParams | None = None,
    extra_log_drift: np.ndarray | None = None,
) -> SyntheticMarket:
    """Generate a seeded BTC-like hourly market with known regimes.

    Parameters
    ----------
    n_bars : int
        Number of hourly bars, >= 2.
    seed : int
        Seed of ``np.random.default_rng``, >= 0. Same seed and parameters -> bit-identical
        frame and regimes.
    start : str or pd.Timestamp
        Open time of the first bar; naive times are read as UTC; must be a whole hour.
    params : SyntheticMarketParams, optional
        Generator parameters; the defaults give BTC-like statistics (hourly std of simple
        returns ~0.7 %, excess kurtosis > 5, persistent |r| autocorrelation).
    extra_log_drift : float array (n_bars,), optional
        A drift added to every bar's log return before the price is built (the planted
        signal of :mod:`himari_env.data.planted`). It draws nothing from the generator's
        random stream, so the rest of the market is the same as without it.

    Returns
    -------
    SyntheticMarket
        ``frame`` (canonical OHLCV, float64, UTC hourly index named ``timestamp``) and
        ``regime_ids`` (np.int8 (n_bars,)), plus the arguments used.

    Raises
    ------
    ValueError
        Naming the argument: ``n_bars`` < 2 or not an int, ``seed`` < 0 or not an int,
        ``start`` not a whole-hour timestamp, invalid ``params``.
    """
    n_bars = _check_int("n_bars", n_bars, 2)
    seed = _check_int("seed", seed, 0)
    start_stamp = _parse_start(start)
    if params is None:
        params = SyntheticMarketParams()
    elif not isinstance(params, SyntheticMarketParams):
        raise ValueError(f"params must be a SyntheticMarketParams, got {type(params).__name__}")

    rng = np.random.default_rng(seed)
    regime_ids, episode_ids = _draw_regime_chain(rng, n_bars, params)

    # Drift: the TRENDING magnitude gets one random sign per episode.
    episode_signs = rng.choice(np.array([-1.0, 1.0]), size=int(episode_ids[-1]) + 1)
    drift = np.asarray(params.regime_drift, dtype=np.float64)[regime_ids]
    trending = regime_ids == TRENDING
    drift[trending] *= episode_signs[episode_ids[trending]]

    z = _draw_shocks(rng, regime_ids, params)
    h = _garch_multiplier(z, params.garch_alpha, params.garch_beta)
    bar_vol = np.asarray(params.regime_vol, dtype=np.float64)[regime_ids] * np.sqrt(h)
    shock_returns = drift + bar_vol * z
    if extra_log_drift is not None:
        extra = np.asarray(extra_log_drift, dtype=np.float64)
        if extra.shape != (n_bars,) or not np.all(np.isfinite(extra)):
            raise ValueError(f"extra_log_drift must be {n_bars} finite values, got shape {extra.shape}")
        shock_returns = shock_returns + extra

    # Log price relative to the start: y[t] = (1 - kappa) * y[t-1] + r[t], y[-1] = 0.
    kappa = params.price_reversion_per_bar
    from scipy.signal import lfilter  # imported here: scipy.signal costs ~2 s at CLI start-up

    log_rel_close = lfilter([1.0], [1.0, -(1.0 - kappa)], shock_returns)
    log_rel_open = np.concatenate(([0.0], log_rel_close[:-1]))
    bar_log_return = log_rel_close - log_rel_open

    # Volume: lognormal, loading on volatility and on |z|, plus AR(1) noise.
    shares = params.stationary_distribution()
    reference_vol = math.sqrt(float(np.sum(shares * np.square(params.regime_vol))))
    abs_mean = _abs_mean_unit_t(np.asarray(params.regime_df, dtype=np.float64))[regime_ids]
    innovation_std = params.volume_noise_std * math.sqrt(1.0 - params.volume_noise_ar**2)
    noise_innovations = rng.standard_normal(n_bars) * innovation_std
    noise_innovations[0] = noise_innovations[0] / math.sqrt(1.0 - params.volume_noise_ar**2)
    volume_noise = lfilter([1.0], [1.0, -params.volume_noise_ar], noise_innovations)
    log_volume = (
        math.log(params.volume_median)
        + params.volume_vol_loading * np.log(bar_vol / reference_vol)
        + params.volume_shock_loading * (np.abs(z) - abs_mean)
        + volume_noise
    )

    # Intrabar path: Brownian bridge from 0 to the bar's log return, in sub-steps.
    steps = int(params.intrabar_steps)
    increments = rng.standard_normal((n_bars, steps)) * (bar_vol / math.sqrt(steps))[:, None]
    walk = np.cumsum(increments, axis=1)
    fraction = np.arange(1, steps + 1, dtype=np.float64) / steps
    bridge = walk - fraction[None, :] * (walk[:, -1:] - bar_log_return[:, None])
    path_max = np.maximum(bridge.max(axis=1), 0.0)
    path_min = np.minimum(bridge.min(axis=1), 0.0)

    close = params.start_price * np.exp(log_rel_close)
    open_ = np.concatenate(([params.start_price], close[:-1]))
    # max/min with open and close absorb exp() rounding so the OHLC invariants hold exactly.
    high = np.maximum(open_ * np.exp(path_max), np.maximum(open_, close))
    low = np.minimum(open_ * np.exp(path_min), np.minimum(open_, close))

    index = pd.date_range(start_stamp, periods=n_bars, freq="h", name=INDEX_NAME)
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": np.exp(log_volume)},
        index=index,
    )
    return SyntheticMarket(
        frame=frame,
        regime_ids=regime_ids.astype(np.int8, copy=False),
        seed=seed,
        n_bars=n_bars,
        start=start_stamp,
        params=params,
    )
