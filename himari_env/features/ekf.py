"""EKF denoiser: a causal level + trend filter for prices and standardized feature columns.

Model
-----
State ``x_m = [level_m, trend_m]`` (2,), advanced once per finite observation ``m``:

- transition ``x_m = F x_{m-1} + w_m`` with ``F = [[1, 1], [0, 1]]`` (the trend is in units
  per bar) and ``w_m ~ N(0, Q)``, ``Q = process_noise * I_2``;
- measurement ``z_m = h(x_m) + v_m`` with ``h(x) = level`` and ``v_m ~ N(0, R)``,
  ``R = measurement_noise``.

The measurement function is the identity on the level, so its Jacobian ``H = [1, 0]`` is
constant and the extended Kalman filter's linearization is exact: this EKF *is* the linear
Kalman filter. The reference implementation (:func:`ekf_filter_reference`) still runs
filterpy's ``ExtendedKalmanFilter`` (predict, then update with ``HJacobian``/``Hx``), and the
fast paths (:func:`ekf_filter`, :class:`EKFStream`) are proven equal to it by the tests.

Input scale
-----------
- Prices are filtered as percent log prices, ``z = 100 * ln(price)``
  (:func:`price_to_filter_scale`): one unit is a ~1 % move, so ``R = 0.1`` says the
  microstructure noise on one close has a standard deviation of ``sqrt(0.1) ~= 0.32 %`` and
  ``Q = 0.001`` lets the level and the hourly trend wander by ``~0.03 %`` a bar (BTC's hourly
  return standard deviation was ~0.7 % over 2020-2024).
- Feature columns (standardized by a train-fitted scaler, ~unit variance) are filtered as
  they are, each column independently with the same model.

Because the model is linear and the initial covariance is ``R * I_2``, the covariance divided
by ``R`` depends on ``Q / R`` only: the output is the same (up to round-off) for every pair
with the same ratio. A calibration grid over Q and R therefore explores the ratio.

Start, missing values, gaps
---------------------------
At a column's first finite value ``z_0`` the state is ``[z_0, 0]`` with covariance ``R * I_2``
and the output is ``z_0``. Each later finite value is one predict + update. A NaN (the
warm-up rows of a feature, or any later NaN) is skipped: the state is left untouched (no
predict either) and the output at that row is NaN, so NaN in means NaN out at the same row and
nothing is filled. ``+-inf`` is an error. One step is one *row*: a missing hour in the market
frame (the real file has 32) is one step, like the loaders' gap policy keeps the bars and
marks gaps rather than inventing rows.

Fast path
---------
With a linear model and constant Q, R the gain sequence ``K_m`` does not depend on the data.
:func:`ekf_filter` computes it once (Joseph-form Riccati recursion, exactly as filterpy
does), runs the exact time-varying recursion over all columns at once while the gain is
still moving (a loop over at most a few hundred observations for the usual ratios), and
once the gain has converged (consecutive gains equal to 1e-14 relative) runs the
steady-state filter with ``scipy.signal.lfilter``: ``level_m = k0 z_m + (k1 - k0) z_{m-1}
- (k0 + k1 - 2) level_{m-1} - (1 - k0) level_{m-2}``, started from the exact state.

Evaluation metrics (:func:`evaluate_denoiser`) use a centred moving average as a trend proxy:
it sees the future and is used only to score a filter, never for observations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from filterpy.kalman import ExtendedKalmanFilter
from scipy.signal import lfilter

__all__ = [
    "DEFAULT_GRID_Q",
    "DEFAULT_GRID_R",
    "DEFAULT_MAX_LAG",
    "DEFAULT_TREND_WINDOW",
    "SCORE_WEIGHTS",
    "CalibrationResult",
    "EKFConfig",
    "EKFMetrics",
    "EKFStream",
    "GridPoint",
    "calibrate_ekf",
    "centred_trend_proxy",
    "ekf_filter",
    "ekf_filter_reference",
    "evaluate_denoiser",
    "filter_scale_to_price",
    "lag_bars",
    "noise_reduction",
    "overall_score",
    "price_to_filter_scale",
    "same_direction_ratio",
    "signal_correlation",
    "smoothness_improvement",
    "trend_correlation",
]

_CONFIG_KIND = "himari.ekf_config"
_CONFIG_VERSION = 1
#: Relative change between consecutive gains below which the gain counts as converged.
_GAIN_TOLERANCE = 1e-14

_TRANSITION = np.array([[1.0, 1.0], [0.0, 1.0]])
_MEASUREMENT_JACOBIAN = np.array([[1.0, 0.0]])


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class EKFConfig:
    """Noise parameters of the level + trend filter (see the module docstring for the scale).

    Parameters
    ----------
    process_noise : float
        Q, variance added to the level and to the trend at each step (``Q = q * I_2``), in
        squared input units (percent-log-price squared for prices). Must be finite and > 0.
    measurement_noise : float
        R, variance of the measurement noise on one observation, in squared input units.
        Must be finite and > 0.
    """

    process_noise: float = 0.001
    measurement_noise: float = 0.1

    def __post_init__(self) -> None:
        for name in ("process_noise", "measurement_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(float(value)) or float(value) <= 0.0:
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def noise_ratio(self) -> float:
        """Q / R, the only quantity the filter's output depends on (see module docstring)."""
        return self.process_noise / self.measurement_noise

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with a kind/version header, as written by :meth:`to_json`."""
        return {"kind": _CONFIG_KIND, "version": _CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> EKFConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError``."""
        if not isinstance(document, dict):
            raise ValueError(f"EKF config must be a JSON object, got {type(document).__name__}")
        if document.get("kind") != _CONFIG_KIND:
            raise ValueError(
                f"not an EKF config: kind={document.get('kind')!r}, expected {_CONFIG_KIND!r}"
            )
        if document.get("version") != _CONFIG_VERSION:
            raise ValueError(f"unsupported EKF config version {document.get('version')!r}")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in document.items() if k not in ("kind", "version")}
        unknown = sorted(set(values) - names)
        missing = sorted(names - set(values))
        if unknown or missing:
            raise ValueError(f"EKF config keys: unknown {unknown}, missing {missing}")
        return cls(**values)

    def to_json(self, path: str | Path) -> None:
        """Write the config as a JSON file (never pickle)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> EKFConfig:
        """Read a config written by :meth:`to_json`."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        return cls.from_dict(document)


# --------------------------------------------------------------------------- input handling


def price_to_filter_scale(prices: np.ndarray | Sequence[float]) -> np.ndarray:
    """Percent log price ``100 * ln(price)``, shape (n,) -> (n,); prices must be finite > 0."""
    values = np.asarray(prices, dtype=np.float64)
    bad = ~np.isfinite(values) | (values <= 0.0)
    if bad.any():
        row = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"prices must be finite and > 0: row {row} is {values.ravel()[row]!r}")
    return 100.0 * np.log(values)


def filter_scale_to_price(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`price_to_filter_scale`: ``exp(values / 100)`` (NaN stays NaN)."""
    return np.exp(np.asarray(values, dtype=np.float64) / 100.0)


def _as_float_array(values: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim not in ndims:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndims))} dimension(s), got shape {array.shape}"
        )
    array = array.astype(np.float64, copy=False)
    infinite = np.isinf(array)
    if infinite.any():
        position = np.argwhere(infinite)[0]
        where = f"row {position[0]}" + (f", column {position[1]}" if array.ndim == 2 else "")
        raise ValueError(
            f"{name} holds an infinite value at {where}: only finite values or NaN (skipped) are allowed"
        )
    return array


# --------------------------------------------------------------------------- gains


class _GainSchedule:
    """Kalman gains ``K_m`` (2,) for the m-th finite observation (m >= 1), computed lazily.

    The covariance recursion is filterpy's (predict ``F P F' + Q``; gain ``P H' S^-1``;
    Joseph-form update) so the gains match the reference to round-off. Once two consecutive
    gains agree to ``_GAIN_TOLERANCE`` the schedule stops growing and :attr:`steady_gain`
    is used for every later observation.
    """

    def __init__(self, config: EKFConfig) -> None:
        self._q = config.process_noise * np.eye(2)
        self._r = np.array([[config.measurement_noise]])
        self._covariance = config.measurement_noise * np.eye(2)
        self._gains: list[np.ndarray] = []
        self._gains_array = np.empty((0, 2))
        self.steady_gain: np.ndarray | None = None

    def extend(self, n_gains: int) -> None:
        """Compute gains until ``n_gains`` are known or the gain has converged."""
        identity = np.eye(2)
        h = _MEASUREMENT_JACOBIAN
        while self.steady_gain is None and len(self._gains) < n_gains:
            p = _TRANSITION @ self._covariance @ _TRANSITION.T + self._q
            pht = p @ h.T
            gain = pht @ np.linalg.inv(h @ pht + self._r)
            i_kh = identity - gain @ h
            self._covariance = i_kh @ p @ i_kh.T + gain @ self._r @ gain.T
            gain = gain[:, 0].copy()
            if self._gains:
                change = np.max(np.abs(gain - self._gains[-1]))
                if change <= _GAIN_TOLERANCE * np.max(np.abs(gain)):
                    self.steady_gain = gain
                    break
            self._gains.append(gain)
        if len(self._gains) != len(self._gains_array):
            self._gains_array = np.array(self._gains).reshape(-1, 2)

    def transient(self, n_gains: int) -> np.ndarray:
        """Gains ``K_1 .. K_j`` (j, 2) before convergence, j <= n_gains."""
        self.extend(n_gains)
        return self._gains_array[:n_gains]

    def for_counts(self, counts: np.ndarray) -> np.ndarray:
        """Gains (k, 2) for observation numbers ``counts`` (k,) int, each >= 1."""
        self.extend(int(counts.max()))
        transient = self._gains_array
        gains = np.empty((counts.size, 2))
        in_transient = counts <= len(transient)
        gains[in_transient] = transient[counts[in_transient] - 1]
        if not in_transient.all():
            gains[~in_transient] = self.steady_gain
        return gains


# --------------------------------------------------------------------------- filters


def ekf_filter_reference(series: np.ndarray, config: EKFConfig) -> np.ndarray:
    """Reference filter: filterpy's ``ExtendedKalmanFilter``, one Python step per bar.

    Parameters
    ----------
    series : np.ndarray, shape (n,)
        Observations on the filter scale (percent log price, or a standardized feature).
        NaN rows are skipped (state untouched, output NaN); the filter starts at the first
        finite value, whose output is the value itself.
    config : EKFConfig

    Returns
    -------
    np.ndarray, shape (n,), float64
        Filtered level; NaN exactly where ``series`` is NaN.
    """
    values = _as_float_array(series, "series", (1,))
    filtered = np.full(values.shape, np.nan)
    ekf: ExtendedKalmanFilter | None = None
    for row, value in enumerate(values):
        if np.isnan(value):
            continue
        if ekf is None:
            ekf = ExtendedKalmanFilter(dim_x=2, dim_z=1)
            ekf.x = np.array([[value], [0.0]])
            ekf.F = _TRANSITION.copy()
            ekf.Q = config.process_noise * np.eye(2)
            ekf.R = np.array([[config.measurement_noise]])
            ekf.P = config.measurement_noise * np.eye(2)
            filtered[row] = value
            continue
        ekf.predict()
        ekf.update(np.array([[value]]), HJacobian=_measurement_jacobian, Hx=_measurement_function)
        filtered[row] = ekf.x[0, 0]
    return filtered


def _measurement_jacobian(state: np.ndarray) -> np.ndarray:
    return _MEASUREMENT_JACOBIAN


def _measurement_function(state: np.ndarray) -> np.ndarray:
    return _MEASUREMENT_JACOBIAN @ state


def ekf_filter(values: np.ndarray, config: EKFConfig) -> np.ndarray:
    """Vectorized filter, equal to :func:`ekf_filter_reference` column by column.

    Parameters
    ----------
    values : np.ndarray, shape (n,) or (n, k)
        Observations on the filter scale; each column is filtered independently and may
        start at its own row (leading NaN warm-up). NaN rows are skipped (output NaN).
    config : EKFConfig

    Returns
    -------
    np.ndarray, same shape as ``values``, float64
    """
    array = _as_float_array(values, "values", (1, 2))
    columns = array.reshape(array.shape[0], 1 if array.ndim == 1 else array.shape[1])
    n_rows, n_columns = columns.shape
    if n_rows == 0 or n_columns == 0:
        return np.full(array.shape, np.nan)
    finite = ~np.isnan(columns)
    if finite.all():
        return _filter_dense(columns, config).reshape(array.shape)
    # Move each column's finite values to the top (stable, so in time order), filter them
    # as observations 0, 1, 2, ... and put the results back on their rows.
    order = np.argsort(~finite, axis=0, kind="stable")
    compressed = np.take_along_axis(columns, order, axis=0)
    n_observations = int(finite.sum(axis=0).max())
    filtered_compressed = np.full_like(compressed, np.nan)
    if n_observations:
        filtered_compressed[:n_observations] = _filter_dense(compressed[:n_observations], config)
    filtered = np.empty_like(columns)
    np.put_along_axis(filtered, order, filtered_compressed, axis=0)
    filtered[~finite] = np.nan
    return filtered.reshape(array.shape)


def _filter_dense(observations: np.ndarray, config: EKFConfig) -> np.ndarray:
    """Filter (m, k) observations in which row j is every column's j-th observation.

    NaN may only appear at the bottom of a column (columns with fewer observations); it
    propagates downwards and is masked by the caller.
    """
    n_observations, n_columns = observations.shape
    schedule = _GainSchedule(config)
    transient = schedule.transient(n_observations - 1)
    filtered = np.empty_like(observations)
    level = observations[0].copy()
    trend = np.zeros(n_columns)
    filtered[0] = level
    # Exact time-varying recursion while the gain still moves (a few dozen to a few
    # hundred steps): the same arithmetic as EKFStream.update.
    for step, (gain_level, gain_trend) in enumerate(transient, start=1):
        predicted = level + trend
        innovation = observations[step] - predicted
        level = predicted + gain_level * innovation
        trend = trend + gain_trend * innovation
        filtered[step] = level
    start = len(transient) + 1
    if start >= n_observations:
        return filtered
    assert schedule.steady_gain is not None  # start < n_observations: the gain has converged
    gain_level, gain_trend = schedule.steady_gain
    # Steady state x_m = A x_{m-1} + K z_m with A = (I - K H) F; level transfer function
    # b = [k0, k1 - k0], a = [1, k0 + k1 - 2, 1 - k0]. The initial conditions of lfilter's
    # transposed direct form carry the free response C A x, C A^2 x of the current state.
    numerator = np.array([gain_level, gain_trend - gain_level, 0.0])
    denominator = np.array([1.0, gain_level + gain_trend - 2.0, 1.0 - gain_level])
    steady_transition = (np.eye(2) - np.outer([gain_level, gain_trend], [1.0, 0.0])) @ _TRANSITION
    state = np.vstack([level, trend])
    free_1 = steady_transition @ state
    free_2 = steady_transition @ free_1
    initial = np.vstack([free_1[0], free_2[0] + denominator[1] * free_1[0]])
    filtered[start:], _ = lfilter(numerator, denominator, observations[start:], axis=0, zi=initial)
    return filtered


class EKFStream:
    """Streaming filter: feed one bar at a time, get the filtered value back.

    Equal to :func:`ekf_filter` on the same bars (bit for bit while the gain is still
    converging, to round-off, < 1e-12 relative, afterwards).

    Parameters
    ----------
    config : EKFConfig
    n_columns : int or None
        None: :meth:`update` takes and returns a float. An int k: it takes and returns
        arrays of shape (k,), each column filtered independently.
    """

    def __init__(self, config: EKFConfig, n_columns: int | None = None) -> None:
        if n_columns is not None and (
            isinstance(n_columns, bool) or not isinstance(n_columns, int) or n_columns < 1
        ):
            raise ValueError(f"n_columns must be None or an int >= 1, got {n_columns!r}")
        self.config = config
        self.n_columns = n_columns
        self._schedule = _GainSchedule(config)
        self.reset()

    def reset(self) -> None:
        """Forget every observation (the gain schedule, which is data-free, is kept)."""
        width = 1 if self.n_columns is None else self.n_columns
        self._level = np.full(width, np.nan)
        self._trend = np.zeros(width)
        self._counts = np.zeros(width, dtype=np.int64)

    def update(self, value: float | np.ndarray) -> float | np.ndarray:
        """Consume one bar and return its filtered value (NaN where the input is NaN).

        Parameters
        ----------
        value : float, or np.ndarray of shape (k,) when ``n_columns`` is k

        Returns
        -------
        float, or np.ndarray of shape (k,)
        """
        width = 1 if self.n_columns is None else self.n_columns
        observation = _as_float_array(
            value, "value", (0,) if self.n_columns is None else (1,)
        ).reshape(-1)
        if observation.size != width:
            raise ValueError(f"value must have shape ({width},), got {np.shape(value)}")
        present = ~np.isnan(observation)
        starting = present & (self._counts == 0)
        running = present & (self._counts > 0)
        self._level[starting] = observation[starting]
        if running.any():
            gains = self._schedule.for_counts(self._counts[running])
            predicted = self._level[running] + self._trend[running]
            innovation = observation[running] - predicted
            self._level[running] = predicted + gains[:, 0] * innovation
            self._trend[running] = self._trend[running] + gains[:, 1] * innovation
        self._counts[present] += 1
        filtered = np.where(present, self._level, np.nan)
        return float(filtered[0]) if self.n_columns is None else filtered


# --------------------------------------------------------------------------- metrics

#: Default largest lag (bars) searched by :func:`lag_bars`.
DEFAULT_MAX_LAG = 24
#: Default centred moving-average window (bars) of the evaluation-only trend proxy.
DEFAULT_TREND_WINDOW = 25
#: Weights of the normalized metrics in :func:`overall_score` (they sum to 1).
SCORE_WEIGHTS: dict[str, float] = {
    "smoothness_improvement": 0.25,
    "lag_bars": 0.15,
    "signal_correlation": 0.10,
    "same_direction_ratio": 0.25,
    "noise_reduction": 0.15,
    "trend_correlation": 0.10,
}


def _check_pair(
    raw: Any, filtered: Any, names: tuple[str, str] = ("raw", "filtered")
) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in zip(names, (raw, filtered), strict=True):
        array = _as_float_array(values, name, (1,))
        if np.isnan(array).any():
            raise ValueError(
                f"{name} holds NaN at row {int(np.flatnonzero(np.isnan(array))[0])}: evaluate finite rows only"
            )
        arrays.append(array)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(
            f"{names[0]} and {names[1]} differ in shape: {arrays[0].shape} vs {arrays[1].shape}"
        )
    if arrays[0].size < 3:
        raise ValueError(f"{names[0]} needs at least 3 rows, got {arrays[0].size}")
    return arrays[0], arrays[1]


def _std(values: np.ndarray, name: str) -> float:
    deviation = float(np.std(values))
    if deviation == 0.0:
        raise ValueError(f"{name} is constant: the metric is undefined")
    return deviation


def _pearson(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> float:
    a_centred = a - a.mean()
    b_centred = b - b.mean()
    denominator = math.sqrt(float(a_centred @ a_centred) * float(b_centred @ b_centred))
    if denominator == 0.0:
        raise ValueError(f"{names[0]} or {names[1]} is constant: correlation is undefined")
    return float(a_centred @ b_centred) / denominator


def smoothness_improvement(raw: np.ndarray, filtered: np.ndarray) -> float:
    """``std(diff(raw)) / std(diff(filtered))`` (population std of first differences).

    > 1 means the filtered series moves less from bar to bar; 2 means half the bar-to-bar
    standard deviation.
    """
    raw, filtered = _check_pair(raw, filtered)
    return _std(np.diff(raw), "diff(raw)") / _std(np.diff(filtered), "diff(filtered)")


def lag_bars(raw: np.ndarray, filtered: np.ndarray, max_lag: int = DEFAULT_MAX_LAG) -> int:
    """``argmax_L corr(diff(raw)[t - L], diff(filtered)[t])`` over ``L = 0 .. max_lag``.

    The lag at which the filtered changes best line up with the raw changes; the first
    (smallest) lag wins a tie. A copy of ``raw`` delayed by 3 bars has lag 3.
    """
    raw, filtered = _check_pair(raw, filtered)
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise ValueError(f"max_lag must be an int >= 0, got {max_lag!r}")
    raw_changes, filtered_changes = np.diff(raw), np.diff(filtered)
    n_changes = raw_changes.size
    if max_lag > n_changes - 3:
        raise ValueError(
            f"max_lag={max_lag} too large for {raw.size} rows (at most {n_changes - 3})"
        )
    correlations = [
        _pearson(
            raw_changes[: n_changes - lag], filtered_changes[lag:], ("diff(raw)", "diff(filtered)")
        )
        for lag in range(max_lag + 1)
    ]
    return int(np.argmax(correlations))


def signal_correlation(raw: np.ndarray, filtered: np.ndarray) -> float:
    """Pearson correlation of the raw and filtered levels."""
    raw, filtered = _check_pair(raw, filtered)
    return _pearson(raw, filtered, ("raw", "filtered"))


def same_direction_ratio(raw: np.ndarray, filtered: np.ndarray) -> float:
    """``mean(sign(diff(filtered)) == sign(diff(raw)))`` over the n - 1 bar-to-bar changes.

    1 means every filtered move has the raw move's direction; 0.5 is a coin flip. A zero
    change only matches a zero change.
    """
    raw, filtered = _check_pair(raw, filtered)
    return float(np.mean(np.sign(np.diff(filtered)) == np.sign(np.diff(raw))))


def centred_trend_proxy(raw: np.ndarray, window: int = DEFAULT_TREND_WINDOW) -> np.ndarray:
    """Centred moving average ``mean(raw[t - h .. t + h])``, ``h = (window - 1) / 2``.

    EVALUATION ONLY: it uses ``h`` future bars, so it must never feed an observation.

    Parameters
    ----------
    raw : np.ndarray, shape (n,)
    window : int
        Odd number of bars >= 3.

    Returns
    -------
    np.ndarray, shape (n,)
        NaN on the first and last ``h`` rows, where the window does not fit.
    """
    values = _as_float_array(raw, "raw", (1,))
    if (
        isinstance(window, bool)
        or not isinstance(window, int | np.integer)
        or window < 3
        or window % 2 == 0
    ):
        raise ValueError(f"window must be an odd int >= 3, got {window!r}")
    if values.size < window:
        raise ValueError(f"raw has {values.size} rows, fewer than window={window}")
    half = window // 2
    trend = np.full(values.shape, np.nan)
    cumulative = np.concatenate([[0.0], np.cumsum(values - values[0])])
    trend[half : values.size - half] = (
        cumulative[window:] - cumulative[:-window]
    ) / window + values[0]
    return trend


def noise_reduction(
    raw: np.ndarray, filtered: np.ndarray, window: int = DEFAULT_TREND_WINDOW
) -> float:
    """``std(raw - trend) / std(filtered - trend)`` with ``trend = centred_trend_proxy(raw)``.

    Computed on the rows where the proxy is defined. > 1 means the filtered series stays
    closer to the (future-aware) local trend than the raw series does.
    """
    raw, filtered = _check_pair(raw, filtered)
    trend = centred_trend_proxy(raw, window)
    defined = ~np.isnan(trend)
    return _std(raw[defined] - trend[defined], "raw - trend") / _std(
        filtered[defined] - trend[defined], "filtered - trend"
    )


def trend_correlation(
    raw: np.ndarray, filtered: np.ndarray, window: int = DEFAULT_TREND_WINDOW
) -> float:
    """Pearson correlation of ``filtered`` with ``centred_trend_proxy(raw)`` where defined."""
    raw, filtered = _check_pair(raw, filtered)
    trend = centred_trend_proxy(raw, window)
    defined = ~np.isnan(trend)
    return _pearson(filtered[defined], trend[defined], ("filtered", "trend"))


def overall_score(
    smoothness: float,
    lag: int,
    signal_corr: float,
    same_direction: float,
    noise_red: float,
    trend_corr: float,
) -> float:
    """Weighted sum of the metrics, each first mapped to [0, 1] with higher = better.

    ``score = 0.25 * max(0, 1 - 1/smoothness**2) + 0.15 / (1 + lag)
    + 0.10 * max(0, signal_corr) + 0.25 * max(0, 2 * same_direction - 1)
    + 0.15 * max(0, 1 - 1/noise_red**2) + 0.10 * max(0, trend_corr)``
    (weights in :data:`SCORE_WEIGHTS`, summing to 1).

    Smoothness and noise reduction are ratios of standard deviations, so ``1 - 1/ratio**2``
    is the share of the variance removed (of the bar-to-bar changes, and around the trend
    proxy); ``2 * same_direction - 1`` is the direction agreement above a coin flip. More
    smoothing raises the first and fifth terms and lowers the fourth, so the best filter
    balances them. The unfiltered series itself scores ``0.15 + 0.10 + 0.25 + ~0.10 =
    ~0.60``: no noise removed, every signal term at its best.
    """
    normalized = {
        "smoothness_improvement": max(0.0, 1.0 - 1.0 / smoothness**2),
        "lag_bars": 1.0 / (1.0 + lag),
        "signal_correlation": max(0.0, signal_corr),
        "same_direction_ratio": max(0.0, 2.0 * same_direction - 1.0),
        "noise_reduction": max(0.0, 1.0 - 1.0 / noise_red**2),
        "trend_correlation": max(0.0, trend_corr),
    }
    return float(sum(SCORE_WEIGHTS[name] * value for name, value in normalized.items()))


@dataclass(frozen=True)
class EKFMetrics:
    """Denoising quality of one filtered series (see each metric's function for its formula)."""

    smoothness_improvement: float
    lag_bars: int
    signal_correlation: float
    same_direction_ratio: float
    noise_reduction: float
    trend_correlation: float
    overall_score: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_denoiser(
    prices: np.ndarray,
    filtered: np.ndarray,
    *,
    max_lag: int = DEFAULT_MAX_LAG,
    trend_window: int = DEFAULT_TREND_WINDOW,
) -> EKFMetrics:
    """All metrics and the overall score of ``filtered`` against the raw series.

    Parameters
    ----------
    prices : np.ndarray, shape (n,)
        The raw series, on the scale the filter ran on (for prices: percent log price,
        :func:`price_to_filter_scale`). Finite.
    filtered : np.ndarray, shape (n,)
        The filter's output on the same rows. Finite.
    max_lag : int
        Largest lag searched by :func:`lag_bars`.
    trend_window : int
        Window of the evaluation-only :func:`centred_trend_proxy`.
    """
    raw, smooth = _check_pair(prices, filtered, ("prices", "filtered"))
    metrics: dict[str, Any] = {
        "smoothness_improvement": smoothness_improvement(raw, smooth),
        "lag_bars": lag_bars(raw, smooth, max_lag),
        "signal_correlation": signal_correlation(raw, smooth),
        "same_direction_ratio": same_direction_ratio(raw, smooth),
        "noise_reduction": noise_reduction(raw, smooth, trend_window),
        "trend_correlation": trend_correlation(raw, smooth, trend_window),
    }
    return EKFMetrics(**metrics, overall_score=overall_score(*metrics.values()))


# --------------------------------------------------------------------------- calibration

#: Default calibration grid: Q from 1e-5 to 1e-1 (half decades) and R at three decades, so
#: Q/R spans 1e-5 .. 10 and each ratio in 1e-4 .. 1e-1 appears more than once.
DEFAULT_GRID_Q: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_GRID_R: tuple[float, ...] = (0.01, 0.1, 1.0)
#: Scores equal to this many decimals are ties (configs with one Q/R ratio differ only by
#: round-off, ~1e-15).
_SCORE_DECIMALS = 9


@dataclass(frozen=True)
class GridPoint:
    """One calibration grid cell: a (Q, R) pair and its metrics on the train split."""

    config: EKFConfig
    train: EKFMetrics

    def to_dict(self) -> dict[str, float | int]:
        return {
            "process_noise": self.config.process_noise,
            "measurement_noise": self.config.measurement_noise,
            "noise_ratio": self.config.noise_ratio,
            **self.train.to_dict(),
        }


@dataclass(frozen=True)
class CalibrationResult:
    """Chosen config (best train score), its train and test metrics, and the whole grid.

    ``grid`` is in grid order (Q ascending, then R ascending); :meth:`ranked_grid` sorts it.
    """

    config: EKFConfig
    train: EKFMetrics
    test: EKFMetrics
    grid: tuple[GridPoint, ...] = field(default_factory=tuple)

    def ranked_grid(self) -> list[GridPoint]:
        """Grid cells by train score, best first; the first is the chosen config.

        Scores equal to 9 decimals tie; a tie goes to the R closest (in log) to the default
        R = 0.1, then to grid order.
        """
        return _rank(self.grid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "train": self.train.to_dict(),
            "test": self.test.to_dict(),
            "grid": [point.to_dict() for point in self.grid],
        }


def _rank(points: Sequence[GridPoint]) -> list[GridPoint]:
    default_r = EKFConfig().measurement_noise
    order = sorted(
        range(len(points)),
        key=lambda i: (
            -round(points[i].train.overall_score, _SCORE_DECIMALS),
            abs(math.log10(points[i].config.measurement_noise / default_r)),
            i,
        ),
    )
    return [points[i] for i in order]


def calibrate_ekf(
    train_prices: np.ndarray,
    test_prices: np.ndarray,
    grid_q: Sequence[float] = DEFAULT_GRID_Q,
    grid_r: Sequence[float] = DEFAULT_GRID_R,
    *,
    max_lag: int = DEFAULT_MAX_LAG,
    trend_window: int = DEFAULT_TREND_WINDOW,
) -> CalibrationResult:
    """Grid-search Q and R on the train prices; report the chosen config on train and test.

    Each series is filtered on its own (the filter starts at its first bar) in percent log
    price and scored with :func:`evaluate_denoiser`. The config with the best *train* score
    wins; the test prices are used only to report that config's metrics. Configs with the
    same Q/R give the same output (module docstring), so scores equal to 9 decimals tie and
    the tie goes to the R closest (in log) to the default R = 0.1, then to grid order.

    Parameters
    ----------
    train_prices, test_prices : np.ndarray, shape (n_train,), (n_test,)
        Close prices (finite, > 0) of the train and test splits.
    grid_q, grid_r : sequences of float
        Candidate process and measurement noises (each > 0).
    max_lag, trend_window : int
        Passed to :func:`evaluate_denoiser`.
    """
    train_scaled = price_to_filter_scale(_as_float_array(train_prices, "train_prices", (1,)))
    test_scaled = price_to_filter_scale(_as_float_array(test_prices, "test_prices", (1,)))
    for name, grid in (("grid_q", grid_q), ("grid_r", grid_r)):
        if len(grid) == 0:
            raise ValueError(f"{name} is empty")
    points = []
    for i, process_noise in enumerate(grid_q):
        for j, measurement_noise in enumerate(grid_r):
            try:
                config = EKFConfig(process_noise=process_noise, measurement_noise=measurement_noise)
            except ValueError as error:
                raise ValueError(f"grid_q[{i}] / grid_r[{j}]: {error}") from error
            metrics = evaluate_denoiser(
                train_scaled,
                ekf_filter(train_scaled, config),
                max_lag=max_lag,
                trend_window=trend_window,
            )
            points.append(GridPoint(config=config, train=metrics))
    chosen = _rank(points)[0]
    test_metrics = evaluate_denoiser(
        test_scaled,
        ekf_filter(test_scaled, chosen.config),
        max_lag=max_lag,
        trend_window=trend_window,
    )
    return CalibrationResult(
        config=chosen.config, train=chosen.train, test=test_metrics, grid=tuple(points)
    )
