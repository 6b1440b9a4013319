"""H1: extreme value theory (peaks over threshold + Generalized Pareto) tail risk.

Losses are loss magnitudes of a *unit* position over one bar (fractions of equity):
``loss = -r`` for a long, ``loss = +r`` for a short, keeping only bars that lost
(``loss > 0``). The threshold ``u`` is the ``threshold_quantile`` (95th percentile) of those
losses; the exceedances ``y = loss - u`` for ``loss > u`` are fitted with a Generalized Pareto
distribution ``GPD(xi, sigma)`` by maximum likelihood with the location fixed at 0
(``scipy.stats.genpareto.fit(y, floc=0)``).

Standard POT formulas (McNeil, Frey & Embrechts, *Quantitative Risk Management*, eq. 7.18-7.19),
with ``zeta = n_exceedances / n_observations`` the probability that one bar's loss exceeds
``u`` (``n_observations`` counts *every* bar, gains included) and ``p = 1 - level``:

* ``VaR = u + sigma / xi * ((p / zeta) ** (-xi) - 1)`` (``u + sigma * ln(zeta / p)`` as xi -> 0),
* ``ES = VaR / (1 - xi) + (sigma - xi * u) / (1 - xi)``, finite only for ``xi < 1``.

Heavy tails (``xi >= 1``: a small coin, a crash window) have no finite GPD expected
shortfall. :func:`finite_es_tail` then keeps the fit and attaches the *empirical* expected
shortfall of the sample at the budget's level (the mean loss at or beyond the empirical
VaR), with an :class:`EVTTailWarning` that says so; :func:`tail_es` returns it for that level.

Both need ``p < zeta`` (the level lies beyond the threshold). The position cap of H1 is
``|position| <= es_budget / ES``: the expected shortfall of the sized position stays within
the budget (a fraction of equity per bar).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: Below this |xi| the exponential-tail limit of the POT formulas is used.
_XI_ZERO = 1e-9


class EVTFitError(ValueError):
    """The tail cannot be fitted or a tail measure is undefined (too few exceedances,
    degenerate data, a level inside the threshold, ES with xi >= 1 and no empirical fallback)."""


class EVTTailWarning(UserWarning):
    """A fitted tail is too heavy for a finite GPD expected shortfall; the empirical one is used."""


@dataclass(frozen=True)
class TailFit:
    """A fitted POT tail of one side (long or short) of a unit position.

    Attributes
    ----------
    threshold : float
        ``u``, loss fraction per bar (e.g. 0.016 = 1.6 %).
    xi : float
        GPD shape (dimensionless; > 0 heavy tail).
    sigma : float
        GPD scale, loss fraction per bar.
    n_exceedances : int
        Losses strictly above ``u``.
    n_observations : int
        All bars of the sample (gains, zeros and losses).
    empirical_es, empirical_level : float or None
        Set only for a tail with ``xi >= 1`` (see :func:`finite_es_tail`): the sample's
        empirical expected shortfall (loss fraction per bar) at ``empirical_level``.
    """

    threshold: float
    xi: float
    sigma: float
    n_exceedances: int
    n_observations: int
    empirical_es: float | None = None
    empirical_level: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise EVTFitError(f"TailFit.threshold must be finite and >= 0, got {self.threshold!r}")
        if not math.isfinite(self.xi):
            raise EVTFitError(f"TailFit.xi must be finite, got {self.xi!r}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise EVTFitError(f"TailFit.sigma must be finite and > 0, got {self.sigma!r}")
        if not 0 < self.n_exceedances <= self.n_observations:
            raise EVTFitError(
                f"TailFit needs 0 < n_exceedances ({self.n_exceedances}) <= n_observations "
                f"({self.n_observations})"
            )
        if (self.empirical_es is None) != (self.empirical_level is None):
            raise EVTFitError("TailFit.empirical_es and empirical_level are set together or not at all")
        if self.empirical_es is not None and not (math.isfinite(self.empirical_es) and self.empirical_es > 0):
            raise EVTFitError(f"TailFit.empirical_es must be finite and > 0, got {self.empirical_es!r}")

    @property
    def exceedance_probability(self) -> float:
        """``zeta``: the probability that one bar's loss exceeds the threshold."""
        return self.n_exceedances / self.n_observations


def fit_gpd(exceedances: ArrayLike) -> tuple[float, float]:
    """Maximum-likelihood GPD fit with location 0.

    Parameters
    ----------
    exceedances : array (m,)
        Amounts above a threshold, all finite and >= 0.

    Returns
    -------
    (xi, sigma) : shape and scale (scale in the units of ``exceedances``).
    """
    values = np.asarray(exceedances, dtype=np.float64)
    if values.ndim != 1:
        raise EVTFitError(f"exceedances must be 1-D, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise EVTFitError(f"exceedances must be finite and >= 0; index {int(bad[0])} is {values[bad[0]]!r}")
    if values.size < 2 or float(np.ptp(values)) == 0.0:
        raise EVTFitError(f"cannot fit a GPD to {values.size} exceedances without spread")
    xi, _, sigma = stats.genpareto.fit(values, floc=0)
    if not (math.isfinite(xi) and math.isfinite(sigma) and sigma > 0):
        raise EVTFitError(f"GPD fit failed: xi={xi!r}, sigma={sigma!r}")
    return float(xi), float(sigma)


def fit_tail(
    returns: ArrayLike,
    *,
    side: str = "long",
    threshold_quantile: float = 0.95,
    min_exceedances: int = 30,
) -> TailFit:
    """Fit the POT tail of a unit position's one-bar losses.

    Parameters
    ----------
    returns : array (n,)
        Simple one-bar returns (fractions), all finite.
    side : "long" or "short"
        Whose losses: ``-r`` (long) or ``+r`` (short).
    threshold_quantile : float
        Quantile of the losses (bars with ``loss > 0``) used as threshold ``u``.
    min_exceedances : int
        Fewer exceedances than this raise :class:`EVTFitError`.
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1:
        raise EVTFitError(f"returns must be 1-D, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise EVTFitError(f"returns[{int(bad[0])}] is not finite ({values[bad[0]]!r})")
    if side not in ("long", "short"):
        raise EVTFitError(f"side must be 'long' or 'short', got {side!r}")
    if not 0.0 < threshold_quantile < 1.0:
        raise EVTFitError(f"threshold_quantile must be in (0, 1), got {threshold_quantile!r}")
    losses = -values if side == "long" else values
    losses = losses[losses > 0.0]
    if losses.size == 0:
        raise EVTFitError(f"no {side} losses among {values.size} returns: the tail cannot be fitted")
    threshold = float(np.quantile(losses, threshold_quantile))
    exceedances = losses[losses > threshold] - threshold
    if exceedances.size < min_exceedances:
        raise EVTFitError(
            f"only {exceedances.size} {side} losses exceed the {threshold_quantile} quantile "
            f"{threshold:.6g} of {losses.size} losses; need >= {min_exceedances} (use more data)"
        )
    xi, sigma = fit_gpd(exceedances)
    return TailFit(
        threshold=threshold,
        xi=xi,
        sigma=sigma,
        n_exceedances=int(exceedances.size),
        n_observations=int(values.size),
    )


def tail_var(fit: TailFit, level: float = 0.99) -> float:
    """POT value at risk of a unit position at ``level`` (loss fraction per bar)."""
    tail_probability = _tail_probability(fit, level)
    ratio = tail_probability / fit.exceedance_probability
    if abs(fit.xi) < _XI_ZERO:
        return fit.threshold - fit.sigma * math.log(ratio)
    return fit.threshold + fit.sigma / fit.xi * (ratio ** (-fit.xi) - 1.0)


def tail_es(fit: TailFit, level: float = 0.99) -> float:
    """POT expected shortfall of a unit position at ``level`` (loss fraction per bar).

    For ``xi >= 1`` (the GPD mean, hence ES, is infinite) it returns the empirical ES attached
    by :func:`finite_es_tail` at that level, and raises :class:`EVTFitError` otherwise.
    """
    if fit.xi >= 1.0:
        if fit.empirical_es is not None and fit.empirical_level == level:
            return fit.empirical_es
        raise EVTFitError(f"expected shortfall is infinite for xi={fit.xi:.4g} >= 1")
    value_at_risk = tail_var(fit, level)
    return (value_at_risk + fit.sigma - fit.xi * fit.threshold) / (1.0 - fit.xi)


def empirical_es(returns: ArrayLike, *, side: str = "long", level: float = 0.99) -> float:
    """Empirical expected shortfall of a unit position: the mean one-bar loss at or beyond the
    empirical ``level`` quantile of the losses (``-r`` long, ``+r`` short) over every bar."""
    values = np.asarray(returns, dtype=np.float64)
    if side not in ("long", "short"):
        raise EVTFitError(f"side must be 'long' or 'short', got {side!r}")
    if not 0.0 < level < 1.0:
        raise EVTFitError(f"level must be in (0, 1), got {level!r}")
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise EVTFitError("empirical ES needs a non-empty series of finite returns")
    losses = -values if side == "long" else values
    value_at_risk = float(np.quantile(losses, level))
    return float(np.mean(losses[losses >= value_at_risk]))


def finite_es_tail(fit: TailFit, returns: ArrayLike, *, side: str, level: float) -> TailFit:
    """``fit`` itself when its expected shortfall is finite (``xi < 1``); otherwise ``fit``
    with the empirical ES of ``returns`` at ``level`` attached, and an :class:`EVTTailWarning`."""
    if fit.xi < 1.0:
        return fit
    es = empirical_es(returns, side=side, level=level)
    if not es > 0.0:
        raise EVTFitError(f"the {side} tail has xi={fit.xi:.4g} >= 1 and no positive empirical ES")
    warnings.warn(
        f"EVT {side} tail: GPD shape xi={fit.xi:.4g} >= 1 has an infinite expected shortfall; the RSS "
        f"layer uses the empirical ES{100 * level:g} of the {np.asarray(returns).size} fitted returns "
        f"({es:.4%} a bar) instead",
        EVTTailWarning,
        stacklevel=2,
    )
    return dataclasses.replace(fit, empirical_es=es, empirical_level=level)


def evt_position_cap(unit_es: float, es_budget: float) -> float:
    """Largest ``|position|`` whose expected shortfall ``|position| * unit_es`` fits ``es_budget``.

    ``inf`` when ``unit_es <= 0`` (no loss tail to budget).
    """
    if unit_es <= 0.0:
        return math.inf
    return es_budget / unit_es


def _tail_probability(fit: TailFit, level: float) -> float:
    if not 0.0 < level < 1.0:
        raise EVTFitError(f"level must be in (0, 1), got {level!r}")
    tail_probability = 1.0 - level
    if tail_probability >= fit.exceedance_probability:
        raise EVTFitError(
            f"level {level} is not beyond the threshold: 1 - level = {tail_probability:.4g} >= "
            f"zeta = {fit.exceedance_probability:.4g} (lower threshold_quantile or raise level)"
        )
    return tail_probability


@dataclass(frozen=True)
class EVTParams:
    """H1 settings and fitted tails.

    Attributes
    ----------
    threshold_quantile : float
        Quantile of losses used as POT threshold (design log: 95th percentile).
    level : float
        Confidence level of VaR/ES (0.99).
    es_budget : float
        Largest expected shortfall at ``level`` allowed for the sized position, fraction of
        equity per bar (0.05 = 5 %).
    min_exceedances : int
        Minimum exceedances for a fit.
    long_tail, short_tail : TailFit or None
        Fitted on train (None until :func:`~himari_env.risk.calibration.calibrate_risk`).
    """

    threshold_quantile: float = 0.95
    level: float = 0.99
    es_budget: float = 0.05
    min_exceedances: int = 30
    long_tail: TailFit | None = None
    short_tail: TailFit | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold_quantile < 1.0:
            raise ValueError(f"evt.threshold_quantile must be in (0, 1), got {self.threshold_quantile!r}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"evt.level must be in (0, 1), got {self.level!r}")
        if not (math.isfinite(self.es_budget) and self.es_budget > 0):
            raise ValueError(f"evt.es_budget must be a positive fraction of equity, got {self.es_budget!r}")
        if self.min_exceedances < 2:
            raise ValueError(f"evt.min_exceedances must be >= 2, got {self.min_exceedances!r}")

    @property
    def is_fitted(self) -> bool:
        return self.long_tail is not None and self.short_tail is not None

    def unit_es(self, direction: float) -> float:
        """ES at ``level`` of a unit position in ``direction`` (> 0 long, < 0 short)."""
        long_es, short_es = self._unit_es_pair
        return long_es if direction > 0 else short_es

    @functools.cached_property
    def _unit_es_pair(self) -> tuple[float, float]:
        # Cached: read on every sized step; the params are frozen.
        if self.long_tail is None or self.short_tail is None:
            raise ValueError("EVT tails are not fitted; calibrate the RiskConfig first")
        return tail_es(self.long_tail, self.level), tail_es(self.short_tail, self.level)
