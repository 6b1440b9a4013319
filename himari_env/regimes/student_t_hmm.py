"""Hidden Markov model with multivariate Student-t emissions (a hmmlearn ``BaseHMM``).

Emission of state k: a d-variate Student-t with location ``means_[k]`` (d,), a **diagonal**
scale matrix ``diag(scales_[k])`` (d,) and degrees of freedom ``dofs_[k]``. (The covariance
of a state is ``scales_[k] * dofs_[k] / (dofs_[k] - 2)``; the single latent weight per
observation couples the features' tails even though the scale matrix is diagonal.)

Fitting:

- unsupervised :meth:`StudentTHMM.fit` (hmmlearn's EM with this module's E and M steps;
  the E step adds the latent scale weights ``u = (nu + d) / (nu + mahalanobis^2)``; the M
  step updates means and scales in closed form and each state's dof by a bounded 1-D root
  solve, so every step maximizes the expected complete-data log-likelihood and the data
  log-likelihood in ``monitor_.history`` never decreases);
- supervised :meth:`StudentTHMM.fit_supervised` from regime labels (emission parameters per
  regime by EM for one Student-t, transitions and start probabilities from label counts with
  additive smoothing).

Inference for anything an observation sees is the causal forward filter only:
:meth:`StudentTHMM.filter_proba` (batch) and :class:`ForwardFilter` (bar by bar) give
P(state_t | x_1..x_t). hmmlearn's inherited ``predict``, ``predict_proba``, ``decode`` and
``score_samples`` run forward-backward or Viterbi over the whole sequence and therefore see
the future: they are never used for observations.

Persistence: :meth:`StudentTHMM.save` writes ``<stem>.json`` (scalars, names) and
``<stem>.npz`` (arrays); :meth:`StudentTHMM.load` reads them with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hmmlearn import _hmmc
from hmmlearn.base import BaseHMM
from hmmlearn.hmm import GaussianHMM
from scipy import optimize, special
from sklearn import cluster
from sklearn.utils import check_random_state

FORMAT_NAME = "himari.student_t_hmm"
FORMAT_VERSION = 1
DEFAULT_DOF_BOUNDS: tuple[float, float] = (2.1, 200.0)


# ------------------------------------------------------------------ validation helpers


def _as_observations(X: np.ndarray, n_features: int | None = None, name: str = "X") -> np.ndarray:
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {values.shape}")
    if n_features is not None and values.shape[1] != n_features:
        raise ValueError(f"{name} has {values.shape[1]} features, the model has {n_features}")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} has a non-finite value at row {row} ({int(bad.sum())} such rows); "
            "slice off warm-up rows before fitting or filtering"
        )
    return values


def _as_regime_ids(regime_ids: np.ndarray, n_samples: int, n_states: int) -> np.ndarray:
    ids = np.asarray(regime_ids)
    if ids.ndim != 1:
        raise ValueError(f"regime_ids must be 1-D, got shape {ids.shape}")
    if len(ids) != n_samples:
        raise ValueError(f"regime_ids has {len(ids)} rows but X has {n_samples}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"regime_ids must be integers, got dtype {ids.dtype}")
    unknown = (ids < 0) | (ids >= n_states)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise ValueError(
            f"unknown regime id {ids[row]} at row {row}: expected 0..{n_states - 1} "
            "(slice off warm-up rows labeled -1)"
        )
    return ids.astype(np.int64)


# ------------------------------------------------------------------ Student-t pieces


def student_t_log_density(
    X: np.ndarray, means: np.ndarray, scales: np.ndarray, dofs: np.ndarray
) -> np.ndarray:
    """Log density of diagonal-scale multivariate Student-t emissions.

    Parameters
    ----------
    X : np.ndarray, shape (n, d)
    means, scales : np.ndarray, shape (k, d)
        Locations and diagonal scale entries (variances of the underlying Gaussian).
    dofs : np.ndarray, shape (k,)

    Returns
    -------
    np.ndarray, shape (n, k)
    """
    d = X.shape[1]
    mahalanobis = _mahalanobis_sq(X, means, scales)
    norm = (
        special.gammaln(0.5 * (dofs + d))
        - special.gammaln(0.5 * dofs)
        - 0.5 * d * np.log(dofs * np.pi)
        - 0.5 * np.log(scales).sum(axis=1)
    )
    return norm[None, :] - 0.5 * (dofs + d)[None, :] * np.log1p(mahalanobis / dofs[None, :])


def _mahalanobis_sq(X: np.ndarray, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances, shape (n, k)."""
    diff = X[:, None, :] - means[None, :, :]
    return np.einsum("nkd,nkd->nk", diff, diff / scales[None, :, :])


def _solve_dof(mean_elog_minus_u: float, bounds: tuple[float, float]) -> float:
    """Maximize the expected complete-data log-likelihood in nu on ``bounds``.

    The stationarity condition ``log(nu/2) - digamma(nu/2) + 1 + c = 0`` has a left side
    that decreases in nu, so the bounded maximizer is the root or the nearer bound.
    """

    def condition(nu: float) -> float:
        return float(np.log(0.5 * nu) - special.digamma(0.5 * nu) + 1.0 + mean_elog_minus_u)

    lo, hi = bounds
    if condition(lo) <= 0.0:
        return lo
    if condition(hi) >= 0.0:
        return hi
    return float(optimize.brentq(condition, lo, hi, xtol=1e-10, rtol=1e-12))


def fit_student_t(
    X: np.ndarray,
    *,
    dof_init: float = 10.0,
    dof_bounds: tuple[float, float] = DEFAULT_DOF_BOUNDS,
    min_scale: float = 1e-6,
    n_iter: int = 50,
    tol: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray, float]:
    """EM fit of one diagonal-scale multivariate Student-t.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), finite
    dof_init : float
    dof_bounds : (float, float)
    min_scale : float
        Floor on every scale entry.
    n_iter, tol : int, float
        Iteration cap and stop rule on the mean log-likelihood gain.

    Returns
    -------
    mean : np.ndarray (d,), scale : np.ndarray (d,), dof : float
    """
    X = _as_observations(X)
    n, d = X.shape
    if n < 2:
        raise ValueError(f"fitting a Student-t needs >= 2 rows, got {n}")
    mean = X.mean(axis=0)
    scale = np.maximum(X.var(axis=0), min_scale)
    dof = float(np.clip(dof_init, *dof_bounds))
    previous = -np.inf
    for _ in range(n_iter):
        mahalanobis = _mahalanobis_sq(X, mean[None, :], scale[None, :])[:, 0]
        u = (dof + d) / (dof + mahalanobis)
        log_lik = student_t_log_density(X, mean[None, :], scale[None, :], np.array([dof]))
        current = float(log_lik.mean())
        if current - previous < tol:
            break
        previous = current
        elog_tau = np.log(u) + special.digamma(0.5 * (dof + d)) - np.log(0.5 * (dof + d))
        mean = (u[:, None] * X).sum(axis=0) / u.sum()
        scale = np.maximum((u[:, None] * (X - mean) ** 2).sum(axis=0) / n, min_scale)
        dof = _solve_dof(float((elog_tau - u).mean()), dof_bounds)
    return mean, scale, dof


# ------------------------------------------------------------------ label counts


def label_transition_probabilities(
    regime_ids: np.ndarray, n_states: int, *, smoothing: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Start and transition probabilities from a label sequence with additive smoothing.

    Parameters
    ----------
    regime_ids : np.ndarray, shape (n,), int in 0..n_states-1
    n_states : int
    smoothing : float
        Pseudo-count added to every start and transition count (>= 0).

    Returns
    -------
    startprob : np.ndarray, shape (n_states,)
        Smoothed label frequencies (the filter may start anywhere in a series, so it starts
        from the marginal distribution rather than the first row's label).
    transmat : np.ndarray, shape (n_states, n_states)
        Row i: smoothed counts of (label[t-1] = i, label[t] = j), normalized.
    """
    if smoothing < 0 or not np.isfinite(smoothing):
        raise ValueError(f"smoothing must be a finite pseudo-count >= 0, got {smoothing}")
    ids = _as_regime_ids(regime_ids, len(np.asarray(regime_ids)), n_states)
    label_counts = np.bincount(ids, minlength=n_states).astype(np.float64) + smoothing
    pair_index = ids[:-1] * n_states + ids[1:]
    pair_counts = np.bincount(pair_index, minlength=n_states * n_states).astype(np.float64)
    transition_counts = pair_counts.reshape(n_states, n_states) + smoothing
    empty = transition_counts.sum(axis=1) == 0
    if empty.any():
        raise ValueError(
            f"no transition out of regime {int(np.flatnonzero(empty)[0])} in the labels and "
            "smoothing=0: its transition row is undefined"
        )
    return label_counts / label_counts.sum(), transition_counts / transition_counts.sum(
        axis=1, keepdims=True
    )


def _check_every_state_present(ids: np.ndarray, n_states: int, min_rows: int) -> None:
    counts = np.bincount(ids, minlength=n_states)
    short = np.flatnonzero(counts < min_rows)
    if short.size:
        k = int(short[0])
        raise ValueError(
            f"regime {k} has {counts[k]} labeled rows; fitting its emissions needs >= {min_rows}"
        )


# ------------------------------------------------------------------ forward filter


def forward_filter(
    log_likelihood: np.ndarray, startprob: np.ndarray, transmat: np.ndarray
) -> np.ndarray:
    """Causal filtered state probabilities P(state_t | x_1..x_t).

    Parameters
    ----------
    log_likelihood : np.ndarray, shape (n, k)
        Emission log densities log p(x_t | state), e.g. ``model._compute_log_likelihood(X)``.
    startprob : np.ndarray, shape (k,)
    transmat : np.ndarray, shape (k, k)

    Returns
    -------
    np.ndarray, shape (n, k); each row sums to 1.

    Notes
    -----
    One pass of the normalized (scaled) forward recursion ``alpha_t ∝ (alpha_{t-1} A) *
    p(x_t | .)``; the per-row shift of the log densities cancels in the normalization. The
    recursion runs in hmmlearn's compiled ``forward_scaling``; should a row underflow (all
    states impossible under the predicted distribution) it falls back to the log-space
    recursion of :class:`ForwardFilter`.
    """
    return forward_filter_with_evidence(log_likelihood, startprob, transmat)[0]


def forward_filter_with_evidence(
    log_likelihood: np.ndarray, startprob: np.ndarray, transmat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`forward_filter` plus the one-step predictive log-likelihoods.

    Returns
    -------
    proba : np.ndarray, shape (n, k)
        P(state_t | x_1..x_t).
    step_log_likelihood : np.ndarray, shape (n,)
        log p(x_t | x_1..x_{t-1}) in nats (row 0: log p(x_0)); their sum is the sequence
        log-likelihood, and their mean over a split is a causal, out-of-sample score.
    """
    log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
    startprob = np.asarray(startprob, dtype=np.float64)
    transmat = np.asarray(transmat, dtype=np.float64)
    if log_likelihood.ndim != 2 or log_likelihood.shape[1] != len(startprob):
        raise ValueError(
            f"log_likelihood must have shape (n, {len(startprob)}), got {log_likelihood.shape}"
        )
    invalid = np.isnan(log_likelihood) | np.isposinf(log_likelihood)
    if invalid.any():
        row = int(np.flatnonzero(invalid.any(axis=1))[0])
        raise ValueError(f"log_likelihood is NaN or +inf at row {row}")
    if len(log_likelihood) == 0:
        return np.empty((0, len(startprob))), np.empty(0)
    row_max = log_likelihood.max(axis=1)
    if np.isneginf(row_max).any():
        return _forward_filter_log(log_likelihood, startprob, transmat)
    frame_prob = np.exp(log_likelihood - row_max[:, None])
    try:
        _, filtered, scaling = _hmmc.forward_scaling(startprob, transmat, frame_prob)
    except ValueError:  # underflow: use the log-space recursion
        return _forward_filter_log(log_likelihood, startprob, transmat)
    return np.asarray(filtered), row_max - np.log(np.asarray(scaling))


def _forward_filter_log(
    log_likelihood: np.ndarray, startprob: np.ndarray, transmat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Per-bar Python loop: the recursion is sequential; the compiled path above is the fast one.
    step = ForwardFilter(startprob, transmat)
    proba = np.empty_like(log_likelihood)
    evidence = np.empty(len(log_likelihood))
    for t, row in enumerate(log_likelihood):
        proba[t] = step.update_log_likelihood(row)
        evidence[t] = step.last_step_log_likelihood
    return proba, evidence


class ForwardFilter:
    """Bar-by-bar forward filter in log space: P(state_t | x_1..x_t) after each update.

    Parameters
    ----------
    startprob : np.ndarray, shape (k,)
    transmat : np.ndarray, shape (k, k)
    model : hmmlearn BaseHMM, optional
        Needed only by :meth:`update` (which evaluates ``model._compute_log_likelihood``).

    Notes
    -----
    Agrees with :func:`forward_filter` to ~1e-15 (tested at 1e-10): the two are
    independent implementations of the same recursion.
    """

    def __init__(
        self, startprob: np.ndarray, transmat: np.ndarray, model: BaseHMM | None = None
    ) -> None:
        with np.errstate(divide="ignore"):
            self._log_start = np.log(np.asarray(startprob, dtype=np.float64))
            self._log_trans = np.log(np.asarray(transmat, dtype=np.float64))
        self.n_states = len(self._log_start)
        if self._log_trans.shape != (self.n_states, self.n_states):
            raise ValueError(
                f"transmat must have shape ({self.n_states}, {self.n_states}), got "
                f"{self._log_trans.shape}"
            )
        self.model = model
        self._log_alpha: np.ndarray | None = None
        self.n_updates = 0
        #: log p(x_t | x_1..x_{t-1}) of the latest update (nats).
        self.last_step_log_likelihood = float("nan")

    @classmethod
    def from_model(cls, model: BaseHMM) -> ForwardFilter:
        """A filter using ``model.startprob_``, ``model.transmat_`` and its emissions."""
        return cls(model.startprob_, model.transmat_, model)

    def reset(self) -> None:
        self._log_alpha = None
        self.n_updates = 0
        self.last_step_log_likelihood = float("nan")

    @property
    def proba(self) -> np.ndarray:
        """Current filtered probabilities, shape (k,) (the start distribution before data)."""
        log_alpha = self._log_start if self._log_alpha is None else self._log_alpha
        return np.exp(log_alpha)

    def update(self, x: np.ndarray) -> np.ndarray:
        """Consume observation ``x`` (n_features,) and return P(state_t | x_1..x_t) (k,)."""
        if self.model is None:
            raise ValueError("ForwardFilter.update needs a model; use from_model(model)")
        row = np.asarray(x, dtype=np.float64)
        if row.ndim != 1 or not np.isfinite(row).all():
            raise ValueError(
                f"observation at update {self.n_updates} must be a finite 1-D row, got {row}"
            )
        return self.update_log_likelihood(self.model._compute_log_likelihood(row[None, :])[0])

    def update_log_likelihood(self, log_likelihood_row: np.ndarray) -> np.ndarray:
        """Consume one row of emission log densities (k,) and return the filtered row."""
        log_b = np.asarray(log_likelihood_row, dtype=np.float64)
        if log_b.shape != (self.n_states,):
            raise ValueError(f"expected {self.n_states} log densities, got shape {log_b.shape}")
        if self._log_alpha is None:
            log_alpha = self._log_start + log_b
        else:
            log_alpha = (
                special.logsumexp(self._log_alpha[:, None] + self._log_trans, axis=0) + log_b
            )
        total = special.logsumexp(log_alpha)
        if not np.isfinite(total):
            raise ValueError(
                f"every state has zero probability at update {self.n_updates}: the "
                "observation is impossible under the model"
            )
        self._log_alpha = log_alpha - total
        self.last_step_log_likelihood = float(total)
        self.n_updates += 1
        return np.exp(self._log_alpha)


# ------------------------------------------------------------------ the model


class StudentTHMM(BaseHMM):
    """Hidden Markov model with diagonal-scale multivariate Student-t emissions.

    Parameters
    ----------
    n_components : int
        Number of hidden states (4 for the HIMARI regimes).
    dof_bounds : (float, float)
        Bounds of the per-state degrees of freedom (default 2.1 .. 200: finite variance).
    dof_init : float
        Initial degrees of freedom when ``'d'`` is in ``init_params``.
    min_scale : float
        Floor on each scale entry (guards degenerate states).
    startprob_prior, transmat_prior, algorithm, random_state, n_iter, tol, verbose,
    implementation
        As in :class:`hmmlearn.base.BaseHMM`.
    params, init_params : str
        Any of ``s`` start, ``t`` transitions, ``m`` means, ``c`` scales, ``d`` dofs.

    Attributes
    ----------
    means_ : np.ndarray, shape (n_components, n_features)
    scales_ : np.ndarray, shape (n_components, n_features)
        Diagonal of each state's scale matrix.
    dofs_ : np.ndarray, shape (n_components,)
    startprob_, transmat_, monitor_
        As in hmmlearn.
    feature_names_ : tuple[str, ...] or None
    """

    def __init__(
        self,
        n_components: int = 4,
        *,
        dof_bounds: tuple[float, float] = DEFAULT_DOF_BOUNDS,
        dof_init: float = 10.0,
        min_scale: float = 1e-6,
        startprob_prior: float = 1.0,
        transmat_prior: float = 1.0,
        algorithm: str = "viterbi",
        random_state: int | np.random.RandomState | None = None,
        n_iter: int = 50,
        tol: float = 1e-4,
        verbose: bool = False,
        params: str = "stmcd",
        init_params: str = "stmcd",
        implementation: str = "log",
    ) -> None:
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
        )
        self.dof_bounds = dof_bounds
        self.dof_init = dof_init
        self.min_scale = min_scale
        self.feature_names_: tuple[str, ...] | None = None

    # ---- hmmlearn extension points

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        k, d = self.n_components, self.n_features
        return {"s": k - 1, "t": k * (k - 1), "m": k * d, "c": k * d, "d": k}

    def _init(self, X: np.ndarray, lengths: np.ndarray | None = None) -> None:
        self._check_options()
        super()._init(X, lengths)
        if self._needs_init("m", "means_"):
            kmeans = cluster.KMeans(
                n_clusters=self.n_components, random_state=self.random_state, n_init=10
            )
            kmeans.fit(X)
            self.means_ = kmeans.cluster_centers_
        if self._needs_init("c", "scales_"):
            variance = np.maximum(X.var(axis=0), self.min_scale)
            self.scales_ = np.tile(variance, (self.n_components, 1))
        if self._needs_init("d", "dofs_"):
            self.dofs_ = np.full(self.n_components, float(np.clip(self.dof_init, *self.dof_bounds)))

    def _dof_bounds(self) -> tuple[float, float]:
        lo, hi = self.dof_bounds
        return float(lo), float(hi)

    def _check_options(self) -> None:
        lo, hi = self.dof_bounds
        if not 0 < lo <= hi:
            raise ValueError(f"dof_bounds must satisfy 0 < low <= high, got {self.dof_bounds}")
        if not self.min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {self.min_scale}")

    def _check(self) -> None:
        super()._check()
        self._check_options()
        self.means_ = np.asarray(self.means_, dtype=np.float64)
        self.scales_ = np.asarray(self.scales_, dtype=np.float64)
        self.dofs_ = np.asarray(self.dofs_, dtype=np.float64)
        k = self.n_components
        if self.means_.ndim != 2 or self.means_.shape[0] != k:
            raise ValueError(f"means_ must have shape ({k}, n_features), got {self.means_.shape}")
        self.n_features = self.means_.shape[1]
        if self.scales_.shape != self.means_.shape:
            raise ValueError(
                f"scales_ must have shape {self.means_.shape}, got {self.scales_.shape}"
            )
        if not (self.scales_ > 0).all():
            raise ValueError("scales_ must be > 0")
        if self.dofs_.shape != (k,):
            raise ValueError(f"dofs_ must have shape ({k},), got {self.dofs_.shape}")
        if not (self.dofs_ > 0).all():
            raise ValueError(f"dofs_ must be > 0, got {self.dofs_}")

    def _compute_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        return student_t_log_density(X, self.means_, self.scales_, self.dofs_)

    def _generate_sample_from_state(
        self, state: int, random_state: np.random.RandomState
    ) -> np.ndarray:
        random_state = check_random_state(random_state)
        dof = self.dofs_[state]
        weight = random_state.chisquare(dof) / dof
        z = random_state.standard_normal(self.n_features)
        return self.means_[state] + np.sqrt(self.scales_[state] / weight) * z

    def _initialize_sufficient_statistics(self) -> dict:
        stats = super()._initialize_sufficient_statistics()
        k, d = self.n_components, self.n_features
        stats["post"] = np.zeros(k)
        stats["post_u"] = np.zeros(k)
        stats["obs_u"] = np.zeros((k, d))
        stats["sqdev_u"] = np.zeros((k, d))  # sum of gamma * u * (x - current mean)^2
        stats["elog_tau_minus_u"] = np.zeros(k)
        return stats

    def _accumulate_sufficient_statistics(
        self,
        stats: dict,
        X: np.ndarray,
        lattice: np.ndarray,
        posteriors: np.ndarray,
        fwdlattice: np.ndarray,
        bwdlattice: np.ndarray,
    ) -> None:
        super()._accumulate_sufficient_statistics(
            stats=stats,
            X=X,
            lattice=lattice,
            posteriors=posteriors,
            fwdlattice=fwdlattice,
            bwdlattice=bwdlattice,
        )
        if not any(p in self.params for p in "mcd"):
            return
        d = self.n_features
        mahalanobis = _mahalanobis_sq(X, self.means_, self.scales_)
        u = (self.dofs_ + d)[None, :] / (self.dofs_[None, :] + mahalanobis)
        weights = posteriors * u
        stats["post"] += posteriors.sum(axis=0)
        stats["post_u"] += weights.sum(axis=0)
        stats["obs_u"] += weights.T @ X
        diff = X[:, None, :] - self.means_[None, :, :]
        stats["sqdev_u"] += np.einsum("nk,nkd->kd", weights, diff * diff)
        half = 0.5 * (self.dofs_ + d)
        elog_tau = np.log(u) + (special.digamma(half) - np.log(half))[None, :]
        stats["elog_tau_minus_u"] += (posteriors * (elog_tau - u)).sum(axis=0)

    def _do_mstep(self, stats: dict) -> None:
        super()._do_mstep(stats)
        occupied = stats["post"] > 1e-10  # states with no posterior mass keep their values
        if not occupied.any():
            return
        old_means = self.means_.copy()
        means = old_means.copy()
        if "m" in self.params:
            means[occupied] = stats["obs_u"][occupied] / stats["post_u"][occupied, None]
        if "c" in self.params:
            # sum w (x - new)^2 = sum w (x - old)^2 - W (new - old)^2
            shift = means - old_means
            sqdev = stats["sqdev_u"] - stats["post_u"][:, None] * shift * shift
            scales = self.scales_.copy()
            scales[occupied] = np.maximum(
                sqdev[occupied] / stats["post"][occupied, None], self.min_scale
            )
            self.scales_ = scales
        self.means_ = means
        if "d" in self.params:
            dofs = self.dofs_.copy()
            for k in np.flatnonzero(occupied):
                c = stats["elog_tau_minus_u"][k] / stats["post"][k]
                dofs[k] = _solve_dof(float(c), self._dof_bounds())
            self.dofs_ = dofs

    # ---- supervised fit, causal inference, persistence

    def fit_supervised(
        self,
        X: np.ndarray,
        regime_ids: np.ndarray,
        *,
        smoothing: float = 1.0,
        n_em_iter: int = 50,
        feature_names: Sequence[str] | None = None,
    ) -> StudentTHMM:
        """Fit from labels: per-regime Student-t emissions, label-count transitions.

        Parameters
        ----------
        X : np.ndarray, shape (n, n_features), finite
        regime_ids : np.ndarray, shape (n,), int in 0..n_components-1 (consecutive rows)
        smoothing : float
            Additive pseudo-count for start and transition counts.
        n_em_iter : int
            EM iterations of each regime's Student-t fit.
        feature_names : sequence of str, optional
            Stored in ``feature_names_`` and saved.

        Returns
        -------
        self
        """
        self._check_options()
        X = _as_observations(X)
        ids = _as_regime_ids(regime_ids, len(X), self.n_components)
        n_features = X.shape[1]
        if feature_names is not None and len(feature_names) != n_features:
            raise ValueError(f"{len(feature_names)} feature_names for {n_features} features")
        _check_every_state_present(ids, self.n_components, min_rows=n_features + 1)
        self.startprob_, self.transmat_ = label_transition_probabilities(
            ids, self.n_components, smoothing=smoothing
        )
        fits = [
            fit_student_t(
                X[ids == k],
                dof_init=self.dof_init,
                dof_bounds=self._dof_bounds(),
                min_scale=self.min_scale,
                n_iter=n_em_iter,
            )
            for k in range(self.n_components)
        ]
        self.n_features = n_features
        self.means_ = np.array([f[0] for f in fits])
        self.scales_ = np.array([f[1] for f in fits])
        self.dofs_ = np.array([f[2] for f in fits])
        self.feature_names_ = None if feature_names is None else tuple(feature_names)
        self._check()
        return self

    def filter_proba(self, X: np.ndarray) -> np.ndarray:
        """Causal P(state_t | x_1..x_t) for every row, shape (n, n_components).

        Row t depends on rows 0..t only (unlike ``predict_proba``, which smooths with the
        future rows).
        """
        self._check()
        X = _as_observations(X, self.n_features)
        return forward_filter(self._compute_log_likelihood(X), self.startprob_, self.transmat_)

    def save(self, path_stem: str | Path) -> tuple[Path, Path]:
        """Write ``<stem>.json`` (scalars) and ``<stem>.npz`` (arrays); return both paths."""
        self._check()
        stem = Path(path_stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "n_components": int(self.n_components),
            "n_features": int(self.n_features),
            "dof_bounds": [float(b) for b in self.dof_bounds],
            "dof_init": float(self.dof_init),
            "min_scale": float(self.min_scale),
            "feature_names": None if self.feature_names_ is None else list(self.feature_names_),
            "arrays": npz_path.name,
        }
        json_path.write_text(json.dumps(header, indent=2) + "\n")
        np.savez(
            npz_path,
            startprob=self.startprob_,
            transmat=self.transmat_,
            means=self.means_,
            scales=self.scales_,
            dofs=self.dofs_,
        )
        return json_path, npz_path

    @classmethod
    def load(cls, path_stem: str | Path) -> StudentTHMM:
        """Read a model written by :meth:`save` (no pickle)."""
        stem = Path(path_stem)
        json_path = stem.with_suffix(".json")
        header = json.loads(json_path.read_text())
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{json_path} is not a {FORMAT_NAME} v{FORMAT_VERSION} file "
                f"(format={header.get('format')!r}, version={header.get('version')!r})"
            )
        model = cls(
            header["n_components"],
            dof_bounds=tuple(header["dof_bounds"]),
            dof_init=header["dof_init"],
            min_scale=header["min_scale"],
            init_params="",
        )
        with np.load(json_path.parent / header["arrays"], allow_pickle=False) as arrays:
            model.startprob_ = arrays["startprob"]
            model.transmat_ = arrays["transmat"]
            model.means_ = arrays["means"]
            model.scales_ = arrays["scales"]
            model.dofs_ = arrays["dofs"]
        model.n_features = header["n_features"]
        names = header.get("feature_names")
        model.feature_names_ = None if names is None else tuple(names)
        model._check()
        return model


def gaussian_hmm_from_labels(
    X: np.ndarray,
    regime_ids: np.ndarray,
    *,
    n_components: int = 4,
    smoothing: float = 1.0,
    min_covar: float = 1e-6,
) -> GaussianHMM:
    """The Gaussian baseline fitted the same supervised way as :class:`StudentTHMM`.

    Start and transition probabilities as in :func:`label_transition_probabilities`;
    per-regime sample means and diagonal variances (floored at ``min_covar``). Filter it
    with ``forward_filter(model._compute_log_likelihood(X), model.startprob_,
    model.transmat_)``.
    """
    X = _as_observations(X)
    ids = _as_regime_ids(regime_ids, len(X), n_components)
    _check_every_state_present(ids, n_components, min_rows=2)
    startprob, transmat = label_transition_probabilities(ids, n_components, smoothing=smoothing)
    model = GaussianHMM(
        n_components=n_components, covariance_type="diag", min_covar=min_covar, init_params=""
    )
    model.n_features = X.shape[1]
    model.startprob_ = startprob
    model.transmat_ = transmat
    model.means_ = np.array([X[ids == k].mean(axis=0) for k in range(n_components)])
    model.covars_ = np.array(
        [np.maximum(X[ids == k].var(axis=0), min_covar) for k in range(n_components)]
    )
    model._check()
    return model


__all__ = [
    "DEFAULT_DOF_BOUNDS",
    "ForwardFilter",
    "StudentTHMM",
    "fit_student_t",
    "forward_filter",
    "forward_filter_with_evidence",
    "gaussian_hmm_from_labels",
    "label_transition_probabilities",
    "student_t_log_density",
]
