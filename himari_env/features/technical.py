"""The causal technical features over the canonical OHLCV frame: the 44 of the standard set,
plus 6 long-horizon ones (up to 720 bars, 30 days) in the opt-in ``long_horizon`` set.

Every value at bar t uses bars <= t only: the whole frame is processed at once with pandas
rolling windows and forward recursions (``ewm(adjust=False)``, Wilder smoothing), never
``center=True``, back-filling or whole-series statistics. Windows count bars, not hours.

Conventions (documented rules, not silent fixes):

- Warm-up: a feature is NaN until its window is full (EMA and Wilder features too, for
  their span); :attr:`FeatureMatrix.warmup_bars` is the first row where all 44 are finite.
  Warm-up rows are never filled.
- Degenerate denominators: a zero-range bar (high == low) has body and wick shares 0; a
  zero-range window gives stochastic %K 0.5 and Bollinger %B 0.5; a zero-variance window
  gives z-scores, skew and kurtosis 0 and a long-vol denominator of 0 gives the vol ratio 1;
  RSI with no gains and no losses is 0 (neutral); a window without volume gives OBV slope 0,
  log volume ratio 0 and illiquidity 0.
- Zero volume: divisions by a bar's volume use ``V + 0.01 * mean_24(V)`` (``VOLUME_FLOOR``),
  so an isolated zero-volume bar gives a large finite value, never inf.
- Gaps: with ``gap_mask``, a 1-bar log return spanning a gap of k missing hours is divided
  by ``sqrt(k + 1)`` (the square root of the hours it spans) before it enters the
  volatility-type features (realized vol and its ratios, return skew and kurtosis, Amihud
  illiquidity); the previous-close terms of the true range are scaled the same way.
  Price-level features (log returns over h bars, MACD, RSI, ADX, distances) use prices as
  they are: their horizon is h bars, whatever hours those span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from himari_env.constants import OHLCV_COLUMNS
from himari_env.data.errors import DataFormatError, OHLCVValidationError

if TYPE_CHECKING:
    from pandas.api.typing import Rolling

__all__ = [
    "FEATURE_SETS",
    "FEATURE_TABLE",
    "LONG_HORIZON_TABLE",
    "N_TECHNICAL_FEATURES",
    "VOLUME_FLOOR",
    "FeatureMatrix",
    "FeatureSpec",
    "compute_technical_features",
    "feature_table_markdown",
]

#: Fraction of the 24-bar mean volume added to a bar's volume where it divides.
VOLUME_FLOOR = 0.01
_HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class FeatureSpec:
    """One row of the feature table.

    Attributes
    ----------
    name : str
        Column name.
    formula : str
        Short human-readable formula (C, O, H, L, V: close, open, high, low, volume of a bar;
        r: 1-bar log return; ``_w`` subscripts are windows in bars).
    window : int
        Nominal lookback in bars: the largest window parameter of the formula (the span,
        for EMA/Wilder features, which have infinite memory). Warm-up can be longer for
        nested windows (e.g. ``amihud_z_168``: 24 + 168 bars).
    unit : str
        Unit or range of the value.
    """

    name: str
    formula: str
    window: int
    unit: str


_RETURN_HORIZONS = (1, 2, 4, 8, 12, 24, 48, 168)

FEATURE_TABLE: tuple[FeatureSpec, ...] = (
    *(FeatureSpec(f"logret_{h}", f"ln(C_t / C_t-{h})", h, "log return") for h in _RETURN_HORIZONS),
    FeatureSpec("rv_24", "std_24(r~), r~ = gap-scaled 1-bar log return", 24, "log return"),
    FeatureSpec("rv_168", "std_168(r~)", 168, "log return"),
    FeatureSpec("rv_ratio_12_168", "std_12(r~) / std_168(r~)", 168, "ratio"),
    FeatureSpec("rv_ratio_24_168", "std_24(r~) / std_168(r~)", 168, "ratio"),
    FeatureSpec("parkinson_24", "sqrt(mean_24(ln(H/L)^2) / (4 ln 2))", 24, "log return"),
    FeatureSpec(
        "garman_klass_24",
        "sqrt(mean_24(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))",
        24,
        "log return",
    ),
    FeatureSpec("true_range", "max(H - L, |H - C_t-1|, |L - C_t-1|) / C", 1, "ratio"),
    FeatureSpec("atr_14", "Wilder_14(true_range)", 14, "ratio"),
    FeatureSpec("rsi_14", "(RSI_Wilder_14 - 50) / 50", 14, "[-1,1]"),
    FeatureSpec("macd", "(EMA_12(C) - EMA_26(C)) / C", 26, "ratio"),
    FeatureSpec("macd_signal", "EMA_9(EMA_12(C) - EMA_26(C)) / C", 26, "ratio"),
    FeatureSpec("macd_hist", "macd - macd_signal", 26, "ratio"),
    FeatureSpec("bb_pctb_20", "(C - SMA_20 + 2 sd_20) / (4 sd_20), sd with ddof 0", 20, "ratio"),
    FeatureSpec("bb_width_20", "4 sd_20 / SMA_20", 20, "ratio"),
    FeatureSpec("adx_14", "Wilder_14(|+DI - -DI| / (+DI + -DI))", 14, "[0,1]"),
    FeatureSpec("plus_di_14", "Wilder_14(+DM) / Wilder_14(TR)", 14, "[0,1]"),
    FeatureSpec("minus_di_14", "Wilder_14(-DM) / Wilder_14(TR)", 14, "[0,1]"),
    FeatureSpec("stoch_k_14", "(C - min_14(L)) / (max_14(H) - min_14(L))", 14, "[0,1]"),
    FeatureSpec("stoch_d_3", "SMA_3(stoch_k_14)", 14, "[0,1]"),
    FeatureSpec("dist_high_24", "ln(C / max_24(H))", 24, "log ratio"),
    FeatureSpec("dist_low_24", "ln(C / min_24(L))", 24, "log ratio"),
    FeatureSpec("dist_sma_50", "ln(C / SMA_50(C))", 50, "log ratio"),
    FeatureSpec("dist_ema_168", "ln(C / EMA_168(C))", 168, "log ratio"),
    FeatureSpec("drawdown_168", "C / max_168(C) - 1", 168, "[-1,0]"),
    FeatureSpec("volume_z_24", "(V - mean_24(V)) / std_24(V)", 24, "z-score"),
    FeatureSpec("volume_z_168", "(V - mean_168(V)) / std_168(V)", 168, "z-score"),
    FeatureSpec(
        "log_volume_ratio_24",
        "ln((V + 0.01 mean_24(V)) / (1.01 mean_24(V)))",
        24,
        "log ratio",
    ),
    FeatureSpec("obv_slope_24", "sum_24(sign(C_t - C_t-1) V) / sum_24(V)", 24, "[-1,1]"),
    FeatureSpec(
        "amihud_z_168",
        "z-score over 168 bars of |r~| / (C (V + 0.01 mean_24(V)))",
        168,
        "z-score",
    ),
    FeatureSpec("body_share", "(C - O) / (H - L)", 1, "[-1,1]"),
    FeatureSpec("upper_wick_share", "(H - max(O, C)) / (H - L)", 1, "[0,1]"),
    FeatureSpec("lower_wick_share", "(min(O, C) - L) / (H - L)", 1, "[0,1]"),
    FeatureSpec("ret_skew_168", "skew_168(r~), bias-corrected", 168, "skewness"),
    FeatureSpec("ret_kurt_168", "excess kurtosis_168(r~), bias-corrected", 168, "excess kurtosis"),
    FeatureSpec("hour_sin", "sin(2 pi hour_utc / 24)", 1, "[-1,1]"),
    FeatureSpec("hour_cos", "cos(2 pi hour_utc / 24)", 1, "[-1,1]"),
)

N_TECHNICAL_FEATURES = len(FEATURE_TABLE)

# The horizons of the rule baselines that sit beside the agent (momentum_720, the 720-bar
# drawdown brake): the standard set stops at 168 bars, a week, so the agent could not see
# the 30-day trend the strongest rule trades. Warm-up 720 bars, the pipeline's default.
LONG_HORIZON_TABLE: tuple[FeatureSpec, ...] = (
    FeatureSpec("logret_336", "ln(C_t / C_t-336)", 336, "log return"),
    FeatureSpec("logret_720", "ln(C_t / C_t-720)", 720, "log return"),
    FeatureSpec("rv_720", "std_720(r~)", 720, "log return"),
    FeatureSpec("rv_ratio_168_720", "std_168(r~) / std_720(r~)", 720, "ratio"),
    FeatureSpec("dist_ema_720", "ln(C / EMA_720(C))", 720, "log ratio"),
    FeatureSpec("drawdown_720", "C / max_720(C) - 1", 720, "[-1,0]"),
)

#: Feature sets by name: ``standard`` (44 features, the default) and ``long_horizon`` (50).
FEATURE_SETS: dict[str, tuple[FeatureSpec, ...]] = {
    "standard": FEATURE_TABLE,
    "long_horizon": FEATURE_TABLE + LONG_HORIZON_TABLE,
}


@dataclass(frozen=True)
class FeatureMatrix:
    """The technical features of one frame.

    Attributes
    ----------
    values : np.ndarray
        float64 (n_bars, F), columns in ``table`` order (F = 44 for the standard set, 50 for
        ``long_horizon``); rows before ``warmup_bars`` hold NaN where a window is not yet full.
    names : tuple of str
        The F column names.
    warmup_bars : int
        First row at which every feature is finite (``n_bars`` if there is none); every row
        from it on is finite.
    table : tuple of FeatureSpec
        The feature set's table (:data:`FEATURE_SETS`).
    """

    values: np.ndarray
    names: tuple[str, ...]
    warmup_bars: int
    table: tuple[FeatureSpec, ...]

    def column(self, name: str) -> np.ndarray:
        """The (n_bars,) column of feature ``name``."""
        try:
            position = self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown feature name {name!r}") from None
        return self.values[:, position]


def feature_table_markdown(feature_set: str = "standard") -> str:
    """The feature table as Markdown (name | formula | window | unit), one row a feature."""
    lines = ["| # | name | formula | window (bars) | unit |", "|---|---|---|---|---|"]
    for number, spec in enumerate(_feature_table(feature_set), start=1):
        formula = spec.formula.replace("|", "\\|")
        lines.append(f"| {number} | `{spec.name}` | {formula} | {spec.window} | {spec.unit} |")
    return "\n".join(lines) + "\n"


def _feature_table(feature_set: str) -> tuple[FeatureSpec, ...]:
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise ValueError(f"feature_set must be one of {sorted(FEATURE_SETS)}, got {feature_set!r}") from None


def _fault(index: pd.DatetimeIndex, rows: np.ndarray, what: str) -> OHLCVValidationError:
    first = int(rows[0])
    return OHLCVValidationError(
        f"{what} at {rows.size} row(s), first at row {first} ({index[first]})"
    )


def _checked_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """float64 (n,) arrays of the OHLCV columns after the checks the features rely on."""
    if not isinstance(frame, pd.DataFrame):
        raise DataFormatError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
    if missing:
        raise DataFormatError(f"frame is missing column(s) {missing}")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataFormatError(f"frame index must be a DatetimeIndex, got {type(index).__name__}")
    if len(index) > 1:
        steps = np.diff(index.asi8)
        bad = np.flatnonzero(steps <= 0) + 1
        if bad.size:
            raise _fault(index, bad, "timestamp not strictly increasing")
    arrays: dict[str, np.ndarray] = {}
    for name in OHLCV_COLUMNS:
        try:
            values = frame[name].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataFormatError(f"column {name!r} is not numeric: {error}") from None
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise _fault(index, bad, f"non-finite {name}")
        arrays[name] = values
    for name in ("open", "high", "low", "close"):
        bad = np.flatnonzero(arrays[name] <= 0)
        if bad.size:
            raise _fault(index, bad, f"non-positive {name}")
    bad = np.flatnonzero(arrays["volume"] < 0)
    if bad.size:
        raise _fault(index, bad, "negative volume")
    bad = np.flatnonzero(arrays["high"] < np.maximum(arrays["open"], arrays["close"]))
    if bad.size:
        raise _fault(index, bad, "high < max(open, close)")
    bad = np.flatnonzero(arrays["low"] > np.minimum(arrays["open"], arrays["close"]))
    if bad.size:
        raise _fault(index, bad, "low > min(open, close)")
    return arrays


def _gap_scale(index: pd.DatetimeIndex, gap_mask: np.ndarray | None) -> np.ndarray:
    """Factor 1 / sqrt(hours spanned) for the 1-bar return ending at each bar, float64 (n,)."""
    n_bars = len(index)
    scale = np.ones(n_bars, dtype=np.float64)
    if gap_mask is None:
        return scale
    mask = np.asarray(gap_mask)
    if mask.dtype != np.bool_ or mask.shape != (n_bars,):
        raise ValueError(
            f"gap_mask must be a bool array of shape ({n_bars},), got {mask.dtype} {mask.shape}"
        )
    hours = np.ones(n_bars, dtype=np.float64)
    if n_bars > 1:
        hours[1:] = ((index[1:] - index[:-1]) / _HOUR).to_numpy(dtype=np.float64)
    expected = np.zeros(n_bars, dtype=bool)
    expected[1:] = hours[1:] > 1.0
    mismatch = np.flatnonzero(mask != expected)
    if mismatch.size:
        first = int(mismatch[0])
        raise ValueError(
            f"gap_mask disagrees with the index at {mismatch.size} row(s), first at row {first} "
            f"({index[first]}): gap_mask={bool(mask[first])} but the bar follows the previous "
            f"one by {hours[first] if first else float('nan')} hour(s)"
        )
    scale[mask] = 1.0 / np.sqrt(hours[mask])
    return scale


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray, when_zero: float) -> np.ndarray:
    """numerator / denominator, ``when_zero`` where denominator == 0; NaN stays NaN."""
    out = np.full_like(numerator, np.nan)
    valid = ~(np.isnan(numerator) | np.isnan(denominator))
    nonzero = valid & (denominator != 0)
    np.divide(numerator, denominator, out=out, where=nonzero)
    out[valid & (denominator == 0)] = when_zero
    return out


def _rolling(values: np.ndarray, window: int) -> Rolling:
    return pd.Series(values).rolling(window, min_periods=window)


def _log_return(log_close: np.ndarray, horizon: int) -> np.ndarray:
    """ln(C_t / C_t-horizon), float64 (n,); NaN for the first ``horizon`` bars."""
    out = np.full(log_close.size, np.nan)
    out[horizon:] = log_close[horizon:] - log_close[:-horizon]
    return out


def _zscore(values: np.ndarray, window: int) -> np.ndarray:
    rolling = _rolling(values, window)
    mean = rolling.mean().to_numpy()
    std = rolling.std().to_numpy()
    return _safe_ratio(values - mean, std, 0.0)


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(values).ewm(span=span, adjust=False, min_periods=span).mean().to_numpy()


def _wilder(values: np.ndarray, period: int) -> np.ndarray:
    """Wilder smoothing, float64 (n,): seeded with the mean of the first ``period`` valid
    values, then ``s[t] = s[t-1] + (x[t] - s[t-1]) / period``. Leading NaNs stay NaN."""
    out = np.full(values.size, np.nan)
    valid = np.flatnonzero(~np.isnan(values))
    if valid.size < period:
        return out
    first = int(valid[0])
    seed_row = first + period - 1
    seeded = np.full(values.size, np.nan)
    seeded[seed_row] = values[first : seed_row + 1].mean()
    seeded[seed_row + 1 :] = values[seed_row + 1 :]
    out[:] = pd.Series(seeded).ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()
    return out


def _rsi(close: np.ndarray, period: int) -> np.ndarray:
    """Wilder RSI rescaled to [-1, 1], float64 (n,); 0 when there are no gains and no losses."""
    change = np.full(close.size, np.nan)
    change[1:] = np.diff(close)
    gain = _wilder(np.maximum(change, 0.0), period)  # np.maximum keeps the leading NaN
    loss = _wilder(np.maximum(-change, 0.0), period)
    # RSI = 100 - 100 / (1 + gain / loss) = 100 * gain / (gain + loss); rescaled to [-1, 1].
    return _safe_ratio(gain - loss, gain + loss, 0.0)


def _adx(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ADX, +DI, -DI (Wilder, ``period``) as fractions in [0, 1], each float64 (n,)."""
    n_bars = close.size
    true_range = np.full(n_bars, np.nan)
    plus_dm = np.full(n_bars, np.nan)
    minus_dm = np.full(n_bars, np.nan)
    previous_close = close[:-1]
    true_range[1:] = np.maximum(
        high[1:] - low[1:],
        np.maximum(np.abs(high[1:] - previous_close), np.abs(low[1:] - previous_close)),
    )
    up_move = high[1:] - high[:-1]
    down_move = low[:-1] - low[1:]
    plus_dm[1:] = np.where((up_move > down_move) & (up_move > 0), up_move, 0.0)
    minus_dm[1:] = np.where((down_move > up_move) & (down_move > 0), down_move, 0.0)
    smoothed_range = _wilder(true_range, period)
    plus_di = _safe_ratio(_wilder(plus_dm, period), smoothed_range, 0.0)
    minus_di = _safe_ratio(_wilder(minus_dm, period), smoothed_range, 0.0)
    directional_index = _safe_ratio(np.abs(plus_di - minus_di), plus_di + minus_di, 0.0)
    return _wilder(directional_index, period), plus_di, minus_di


def compute_technical_features(
    frame: pd.DataFrame, *, gap_mask: np.ndarray | None = None, feature_set: str = "standard"
) -> FeatureMatrix:
    """Compute the causal technical features of a feature set (:data:`FEATURE_SETS`).

    Parameters
    ----------
    frame : pd.DataFrame
        Canonical OHLCV frame, (n_bars, 5+): DatetimeIndex (UTC; naive is read as UTC),
        strictly increasing, float64 ``open, high, low, close, volume``.
    gap_mask : np.ndarray, optional
        bool (n_bars,), True at t when the bar follows the previous one by more than an
        hour (``himari_env.data.gap_mask``). When given it must agree with the index; the
        1-bar returns spanning gaps are then scaled by 1 / sqrt(hours spanned) inside the
        volatility-type features. When None, no gap scaling is applied.
    feature_set : str
        ``"standard"`` (the 44 of :data:`FEATURE_TABLE`) or ``"long_horizon"`` (those plus
        the 6 of :data:`LONG_HORIZON_TABLE`, warm after 720 bars).

    Returns
    -------
    FeatureMatrix
        float64 (n_bars, F) values, names, ``warmup_bars`` and the table.

    Raises
    ------
    DataFormatError, OHLCVValidationError
        (ValueError subclasses) Missing column or non-datetime index; non-finite value,
        non-positive price, negative volume, inconsistent OHLC or non-increasing timestamp,
        naming the first row and its timestamp.
    ValueError
        ``gap_mask`` of the wrong shape or dtype, or disagreeing with the index (row named);
        an unknown ``feature_set``.
    """
    table = _feature_table(feature_set)
    arrays = _checked_inputs(frame)
    index = frame.index
    gap_scale = _gap_scale(index, gap_mask)
    open_, high, low = arrays["open"], arrays["high"], arrays["low"]
    close, volume = arrays["close"], arrays["volume"]
    n_bars = close.size

    log_close = np.log(close)
    log_return = np.full(n_bars, np.nan)
    log_return[1:] = np.diff(log_close)
    scaled_return = log_return * gap_scale
    previous_close = np.concatenate(([np.nan], close[:-1]))

    features: dict[str, np.ndarray] = {}
    for horizon in _RETURN_HORIZONS:
        features[f"logret_{horizon}"] = _log_return(log_close, horizon)

    vol_12 = _rolling(scaled_return, 12).std().to_numpy()
    vol_24 = _rolling(scaled_return, 24).std().to_numpy()
    vol_168 = _rolling(scaled_return, 168).std().to_numpy()
    features["rv_24"] = vol_24
    features["rv_168"] = vol_168
    features["rv_ratio_12_168"] = _safe_ratio(vol_12, vol_168, 1.0)
    features["rv_ratio_24_168"] = _safe_ratio(vol_24, vol_168, 1.0)

    log_high_low = np.log(high / low)
    log_close_open = np.log(close / open_)
    parkinson_var = _rolling(log_high_low**2, 24).mean().to_numpy() / (4.0 * math.log(2.0))
    garman_klass_terms = 0.5 * log_high_low**2 - (2.0 * math.log(2.0) - 1.0) * log_close_open**2
    garman_klass_var = _rolling(garman_klass_terms, 24).mean().to_numpy()
    # Both terms are >= 0 bar by bar (|ln C/O| <= ln H/L); the floor absorbs rolling-sum rounding.
    features["parkinson_24"] = np.sqrt(np.maximum(parkinson_var, 0.0))
    features["garman_klass_24"] = np.sqrt(np.maximum(garman_klass_var, 0.0))

    true_range = (
        np.maximum(
            high - low,
            gap_scale * np.maximum(np.abs(high - previous_close), np.abs(low - previous_close)),
        )
        / close
    )
    features["true_range"] = true_range
    features["atr_14"] = _wilder(true_range, 14)

    features["rsi_14"] = _rsi(close, 14)

    macd_price = _ema(close, 12) - _ema(close, 26)
    signal_price = pd.Series(macd_price).ewm(span=9, adjust=False, min_periods=9).mean().to_numpy()
    features["macd"] = macd_price / close
    features["macd_signal"] = signal_price / close
    features["macd_hist"] = (macd_price - signal_price) / close

    bollinger = _rolling(close, 20)
    middle = bollinger.mean().to_numpy()
    band_sd = bollinger.std(ddof=0).to_numpy()
    features["bb_pctb_20"] = 0.5 + _safe_ratio(close - middle, 4.0 * band_sd, 0.0)
    features["bb_width_20"] = 4.0 * band_sd / middle

    adx, plus_di, minus_di = _adx(high, low, close, 14)
    features["adx_14"] = adx
    features["plus_di_14"] = plus_di
    features["minus_di_14"] = minus_di

    highest_14 = _rolling(high, 14).max().to_numpy()
    lowest_14 = _rolling(low, 14).min().to_numpy()
    stoch_k = _safe_ratio(close - lowest_14, highest_14 - lowest_14, 0.5)
    features["stoch_k_14"] = stoch_k
    features["stoch_d_3"] = _rolling(stoch_k, 3).mean().to_numpy()

    features["dist_high_24"] = log_close - np.log(_rolling(high, 24).max().to_numpy())
    features["dist_low_24"] = log_close - np.log(_rolling(low, 24).min().to_numpy())
    features["dist_sma_50"] = log_close - np.log(_rolling(close, 50).mean().to_numpy())
    features["dist_ema_168"] = log_close - np.log(_ema(close, 168))
    features["drawdown_168"] = close / _rolling(close, 168).max().to_numpy() - 1.0

    features["volume_z_24"] = _zscore(volume, 24)
    features["volume_z_168"] = _zscore(volume, 168)
    mean_volume_24 = _rolling(volume, 24).mean().to_numpy()
    floored_volume = volume + VOLUME_FLOOR * mean_volume_24
    features["log_volume_ratio_24"] = np.log(
        _safe_ratio(floored_volume, (1.0 + VOLUME_FLOOR) * mean_volume_24, 1.0)
    )
    signed_volume = np.sign(close - previous_close) * volume
    features["obv_slope_24"] = _safe_ratio(
        _rolling(signed_volume, 24).sum().to_numpy(), _rolling(volume, 24).sum().to_numpy(), 0.0
    )
    illiquidity = _safe_ratio(np.abs(scaled_return), close * floored_volume, 0.0)
    features["amihud_z_168"] = _zscore(illiquidity, 168)

    bar_range = high - low
    features["body_share"] = _safe_ratio(close - open_, bar_range, 0.0)
    features["upper_wick_share"] = _safe_ratio(high - np.maximum(open_, close), bar_range, 0.0)
    features["lower_wick_share"] = _safe_ratio(np.minimum(open_, close) - low, bar_range, 0.0)

    return_window = _rolling(scaled_return, 168)
    return_sd = return_window.std().to_numpy()
    flat_window = return_sd == 0
    # pandas gives NaN for a constant window; the documented rule makes it 0.
    features["ret_skew_168"] = np.where(flat_window, 0.0, return_window.skew().to_numpy())
    features["ret_kurt_168"] = np.where(flat_window, 0.0, return_window.kurt().to_numpy())

    utc_index = index.tz_convert("UTC") if index.tz is not None else index
    hour_angle = 2.0 * math.pi * utc_index.hour.to_numpy(dtype=np.float64) / 24.0
    features["hour_sin"] = np.sin(hour_angle)
    features["hour_cos"] = np.cos(hour_angle)

    if feature_set == "long_horizon":
        vol_720 = _rolling(scaled_return, 720).std().to_numpy()
        for horizon in (336, 720):
            features[f"logret_{horizon}"] = _log_return(log_close, horizon)
        features["rv_720"] = vol_720
        features["rv_ratio_168_720"] = _safe_ratio(vol_168, vol_720, 1.0)
        features["dist_ema_720"] = log_close - np.log(_ema(close, 720))
        features["drawdown_720"] = close / _rolling(close, 720).max().to_numpy() - 1.0

    names = tuple(spec.name for spec in table)
    values = np.column_stack([features[name] for name in names]).astype(np.float64, copy=False)
    finite_rows = np.all(np.isfinite(values), axis=1)
    warmup_bars = int(np.argmax(finite_rows)) if finite_rows.any() else n_bars
    late_bad = np.flatnonzero(~finite_rows[warmup_bars:])
    if late_bad.size:
        row = warmup_bars + int(late_bad[0])
        columns = [names[j] for j in np.flatnonzero(~np.isfinite(values[row]))]
        raise OHLCVValidationError(
            f"features {columns} are not finite at row {row} ({index[row]}) after the warm-up "
            f"ending at row {warmup_bars}"
        )
    return FeatureMatrix(values=values, names=names, warmup_bars=warmup_bars, table=table)
