"""Ridge and Bayesian ridge regression from sufficient statistics, so that a fit can be streamed.

A linear model with an intercept needs of its data only the *sufficient
statistics* ``n``, ``Σx``, ``Σy``, ``XᵀX``, ``Xᵀy`` and ``yᵀy``. They are kept
here in the equivalent centred form (:class:`LinearStatistics`): the means
``x̄ = Σx / n``, ``ȳ = Σy / n`` and the scatter matrices

    S_xx = Σ (x - x̄)(x - x̄)ᵀ = XᵀX - n x̄ x̄ᵀ,   S_xy = Σ (x - x̄)(y - ȳ),   S_yy = Σ (y - ȳ)²,

which the raw sums give by those identities but without their cancellation
(features of a sum kernel grow with the number of atoms: their mean is large
next to their spread). Three pure functions do the work:

* :func:`linear_statistics` reduces a chunk ``(X, y)`` to its statistics;
* :func:`add_statistics` adds the statistics of two chunks (the pairwise
  update of Chan, Golub and LeVeque, *Am. Stat.* 37, 242 (1983)):
  with ``n = n_a + n_b`` and ``d = x̄_b - x̄_a``, ``x̄ = x̄_a + d n_b / n`` and
  ``S = S_a + S_b + (n_a n_b / n) d dᵀ`` (the same for ``S_xy`` and ``S_yy``);
* :func:`ridge_solution` and :func:`bayesian_ridge_solution` solve from them.

So a fit over chunks of data (on the workers of :mod:`ml4ms.parallel`)
holds one ``M x M`` matrix, never the ``N x M`` design matrix, and gives the
fit of the whole matrix up to rounding.

Ridge
-----
With an intercept (scikit-learn's ``Ridge``): ``w = (S_xx + α I)⁻¹ S_xy`` and
``b = ȳ - x̄ᵀ w``; without one the raw sums ``XᵀX`` and ``Xᵀy`` take their place.

Bayesian ridge (evidence maximisation)
--------------------------------------
The model of scikit-learn's ``BayesianRidge`` (MacKay, *Neural Comput.* 4,
415 (1992); Tipping, *JMLR* 1, 211 (2001), appendix A; Bishop, *Pattern
Recognition and Machine Learning*, 2006, §3.5): ``y = Xw + b + ε`` with
noise precision ``α`` (``ε ~ N(0, α⁻¹)``), prior ``w ~ N(0, λ⁻¹ I)``, Gamma
hyperpriors ``(α₁, α₂)``, ``(λ₁, λ₂)`` on ``α`` and ``λ``, and the intercept
fitted by centring. Everything it needs is a function of the eigendecomposition
of the centred scatter ``S_xx = V diag(e) Vᵀ``, ``p = Vᵀ S_xy`` and ``S_yy``:

* posterior mean (PRML 3.53–3.54): ``w = (λ/α I + S_xx)⁻¹ S_xy = V q`` with
  ``q_i = p_i / (e_i + λ/α)``;
* residual sum of squares without the data:
  ``‖y_c - X_c w‖² = S_yy - 2 wᵀS_xy + wᵀ S_xx w = S_yy - Σ_i (2 q_i p_i - e_i q_i²)``;
* effective number of parameters (PRML 3.91): ``γ = Σ_i α e_i / (λ + α e_i)``;
* the fixed-point updates of MacKay (PRML 3.92, 3.95, with the Gamma
  hyperpriors as in Tipping's appendix A):
  ``λ ← (γ + 2λ₁) / (‖w‖² + 2λ₂)``, ``α ← (n - γ + 2α₁) / (‖y_c - X_c w‖² + 2α₂)``,
  from ``α = 1 / Var(y)``, ``λ = 1`` until the weights change by less than
  ``tol`` (sum of absolute changes);
* posterior covariance (PRML 3.54): ``Σ = V diag(1 / (α e_i + λ)) Vᵀ``, and
  the predictive standard deviation ``sqrt((x - x̄)ᵀ Σ (x - x̄) + 1/α)``;
* log marginal likelihood (PRML 3.86, plus the log Gamma hyperpriors):
  ``M/2 log λ + n/2 log α - α/2 ‖y_c - X_c w‖² - λ/2 ‖w‖² - ½ Σ_i log(λ + α e_i) - n/2 log 2π``.

These are scikit-learn's iterations (it diagonalises the design matrix by an
SVD; here ``S_xx`` is), so the two fits agree to rounding.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(40, 3)); y = X @ [1.0, -2.0, 0.5] + 3.0
>>> halves = [linear_statistics(X[:25], y[:25]), linear_statistics(X[25:], y[25:])]
>>> coef, intercept = ridge_solution(add_statistics(*halves), alpha=1e-8)
>>> np.round(coef[:, 0], 6).tolist(), round(float(intercept[0]), 6)
([1.0, -2.0, 0.5], 3.0)
"""

from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ..config import boolean, check_value, integer, number, or_none
from ..errors import InputError

_EPS = np.finfo(np.float64).eps


class LinearStatistics(NamedTuple):
    """Sufficient statistics of ``(X, y)`` for linear models, centred (see the module docstring).

    ``y`` always has ``k`` columns (one for a 1-D target).
    """

    n: int
    x_mean: np.ndarray  # (M,)
    y_mean: np.ndarray  # (k,)
    xx: np.ndarray  # (M, M)  Σ (x - x̄)(x - x̄)ᵀ
    xy: np.ndarray  # (M, k)  Σ (x - x̄)(y - ȳ)ᵀ
    yy: np.ndarray  # (k,)    Σ (y - ȳ)²

    def target(self, j):
        """The statistics of target column ``j`` alone."""
        return self._replace(y_mean=self.y_mean[j:j + 1], xy=self.xy[:, j:j + 1], yy=self.yy[j:j + 1])

    def raw(self):
        """``(XᵀX, XᵀY, diag(YᵀY))``: the uncentred sums (for a model without intercept)."""
        n = self.n
        return (self.xx + n * np.outer(self.x_mean, self.x_mean), self.xy + n * np.outer(self.x_mean, self.y_mean),
                self.yy + n * self.y_mean ** 2)


def linear_statistics(X, y):
    """The :class:`LinearStatistics` of one chunk: ``X`` (n, M), ``y`` (n,) or (n, k).

    Examples
    --------
    >>> s = linear_statistics(np.array([[1.0], [3.0]]), np.array([0.0, 4.0]))
    >>> s.n, s.x_mean.tolist(), s.xx.tolist(), s.xy.tolist(), s.yy.tolist()
    (2, [2.0], [[2.0]], [[4.0]], [8.0])
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(y, dtype=float)
    Y = Y.reshape(len(X), -1 if len(X) else (Y.shape[1] if Y.ndim == 2 else 1))
    if len(X) == 0:
        return LinearStatistics(0, np.zeros(X.shape[1]), np.zeros(Y.shape[1]), np.zeros((X.shape[1],) * 2),
                                np.zeros((X.shape[1], Y.shape[1])), np.zeros(Y.shape[1]))
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - x_mean, Y - y_mean
    return LinearStatistics(len(X), x_mean, y_mean, Xc.T @ Xc, Xc.T @ Yc, np.einsum("ij,ij->j", Yc, Yc))


def add_statistics(a, b):
    """The statistics of two chunks together (Chan, Golub and LeVeque's pairwise update).

    Examples
    --------
    >>> X = np.arange(10.0).reshape(5, 2) ** 1.5; y = np.arange(5.0) ** 2
    >>> whole, parts = linear_statistics(X, y), add_statistics(linear_statistics(X[:2], y[:2]),
    ...                                                        linear_statistics(X[2:], y[2:]))
    >>> all(np.allclose(u, v) for u, v in zip(whole, parts))
    True
    """
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    dx, dy = b.x_mean - a.x_mean, b.y_mean - a.y_mean
    w = a.n * b.n / n
    return LinearStatistics(n, a.x_mean + dx * (b.n / n), a.y_mean + dy * (b.n / n), a.xx + b.xx + w * np.outer(dx, dx),
                            a.xy + b.xy + w * np.outer(dx, dy), a.yy + b.yy + w * dy ** 2)


def _system(stats, fit_intercept):
    """``(A, B, c, x_offset, y_offset)``: the normal equations' matrix and right side, ``Σ y²`` and the offsets."""
    if fit_intercept:
        return stats.xx, stats.xy, stats.yy, stats.x_mean, stats.y_mean
    xx, xy, yy = stats.raw()
    return xx, xy, yy, np.zeros_like(stats.x_mean), np.zeros_like(stats.y_mean)


def ridge_solution(stats, alpha=1.0, fit_intercept=True):
    """Ridge weights and intercepts from statistics: ``w = (S_xx + α I)⁻¹ S_xy``, ``b = ȳ - x̄ᵀ w``.

    Returns
    -------
    coef : ndarray, shape (M, k)
    intercept : ndarray, shape (k,)

    Examples
    --------
    >>> s = linear_statistics(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))
    >>> coef, b = ridge_solution(s, alpha=0.0)
    >>> float(coef[0, 0]), float(b[0])
    (2.0, 1.0)
    """
    from scipy.linalg import solve

    A, B, _, x_offset, y_offset = _system(stats, fit_intercept)
    coef = solve(A + float(alpha) * np.eye(len(A)), B, assume_a="sym")
    return coef, y_offset - x_offset @ coef


def bayesian_ridge_solution(stats, *, max_iter=300, tol=1e-3, alpha_1=1e-6, alpha_2=1e-6, lambda_1=1e-6,
                            lambda_2=1e-6, alpha_init=None, lambda_init=None, compute_score=False, fit_intercept=True):
    """Bayesian ridge by evidence maximisation from the statistics of one target (formulas: module docstring).

    Parameters as scikit-learn's ``BayesianRidge``.

    Returns
    -------
    dict
        ``coef`` (M,), ``intercept``, ``alpha`` (noise precision), ``lambda``
        (weight precision), ``sigma`` (posterior covariance, M x M),
        ``x_offset`` (M,), ``n_iter``, ``scores`` (log marginal likelihood per
        iteration, empty unless ``compute_score``).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(200, 2)); y = X @ [2.0, -1.0] + 0.1 * rng.normal(size=200)
    >>> fit = bayesian_ridge_solution(linear_statistics(X, y))
    >>> np.round(fit["coef"], 1).tolist(), round(1 / float(np.sqrt(fit["alpha"])), 2)
    ([2.0, -1.0], 0.1)
    """
    from scipy.linalg import eigh

    if stats.xy.shape[1] != 1:
        raise InputError(f"a Bayesian ridge fits one target at a time, got {stats.xy.shape[1]}")
    A, B, c, x_offset, y_offset = _system(stats, fit_intercept)
    n, p_raw, c = stats.n, B[:, 0], float(c[0])
    e, V = eigh(A)
    e = np.clip(e, 0.0, None)
    p = V.T @ p_raw
    alpha = 1.0 / (float(stats.yy[0]) / n + _EPS) if alpha_init is None else float(alpha_init)
    lam = 1.0 if lambda_init is None else float(lambda_init)

    def posterior_mean(alpha, lam):
        q = p / (e + lam / alpha)
        return V @ q, max(c - float(np.sum(2.0 * q * p - e * q * q)), 0.0)

    def score(alpha, lam, coef, sse):
        return (lambda_1 * np.log(lam) - lambda_2 * lam + alpha_1 * np.log(alpha) - alpha_2 * alpha
                + 0.5 * (len(e) * np.log(lam) + n * np.log(alpha) - alpha * sse - lam * np.sum(coef ** 2)
                         - np.sum(np.log(lam + alpha * e)) - n * np.log(2.0 * np.pi)))

    scores, coef_old = [], None
    for iteration in range(int(max_iter)):
        coef, sse = posterior_mean(alpha, lam)
        if compute_score:
            scores.append(score(alpha, lam, coef, sse))
        gamma = float(np.sum(alpha * e / (lam + alpha * e)))
        lam = (gamma + 2.0 * lambda_1) / (float(np.sum(coef ** 2)) + 2.0 * lambda_2)
        alpha = (n - gamma + 2.0 * alpha_1) / (sse + 2.0 * alpha_2)
        if iteration != 0 and np.sum(np.abs(coef_old - coef)) < tol:
            break
        coef_old = coef
    coef, sse = posterior_mean(alpha, lam)
    if compute_score:
        scores.append(score(alpha, lam, coef, sse))
    return {"coef": coef, "intercept": float(y_offset[0] - x_offset @ coef), "alpha": float(alpha),
            "lambda": float(lam), "sigma": (V / (alpha * e + lam)) @ V.T, "x_offset": x_offset,
            "n_iter": iteration + 1, "scores": np.asarray(scores, dtype=float)}


def _check_rules(estimator):
    """Hold every parameter of ``estimator`` to its class's ``_param_rules``."""
    for name, rule in estimator._param_rules.items():
        check_value(getattr(estimator, name), rule, f"{type(estimator).__name__} {name}")


class _StatisticsRegressor(RegressorMixin, BaseEstimator):
    """A linear model fitted from :class:`LinearStatistics`: ``fit`` reduces ``(X, y)`` to them first.

    :meth:`fit_statistics` is what a streamed fit calls
    (:meth:`ml4ms.models.structure.StructureRegressor.fit_streamed`).
    """

    def fit(self, X, y):
        """Fit on features ``X`` (n, M) and targets ``y``; returns self."""
        X, y = validate_data(self, X, y, y_numeric=True, multi_output=self._multi_output)
        if not self._multi_output:
            y = column_or_1d(y, warn=True)
        self._check_params()
        return self._fit_statistics(linear_statistics(X, y), np.ndim(y) == 1)

    def fit_statistics(self, stats):
        """Fit from the statistics of the training data (one target column per model); returns self."""
        self._check_params()
        self.n_features_in_ = len(stats.x_mean)
        return self._fit_statistics(stats, stats.xy.shape[1] == 1)

    def _check_params(self):
        _check_rules(self)

    def _linear(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        return X, X @ np.asarray(self.coef_).T + self.intercept_


class Ridge(MultiOutputMixin, _StatisticsRegressor):
    """Ridge regression with an intercept, solved from sufficient statistics (:func:`ridge_solution`).

    The model of scikit-learn's ``Ridge`` (its Cholesky solver): the same
    coefficients up to rounding.

    Parameters
    ----------
    alpha : float, default 1.0
        Regularisation strength, ``≥ 0``.
    fit_intercept : bool, default True

    Attributes
    ----------
    coef_ : ndarray, shape (M,) or (k, M)
    intercept_ : float or ndarray, shape (k,)

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = 2.0 * X[:, 0] + 1.0
    >>> model = Ridge(alpha=1e-10).fit(X, y)
    >>> round(float(model.coef_[0]), 6), round(float(model.intercept_), 6)
    (2.0, 1.0)
    """

    _multi_output = True
    _param_rules = {"alpha": number(">= 0"), "fit_intercept": boolean()}

    def __init__(self, *, alpha=1.0, fit_intercept=True):
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _fit_statistics(self, stats, single):
        coef, intercept = ridge_solution(stats, self.alpha, self.fit_intercept)
        self.coef_ = coef[:, 0] if single else coef.T
        self.intercept_ = float(intercept[0]) if single else intercept
        return self

    def predict(self, X):
        """Predictions ``X w + b``."""
        return self._linear(X)[1]


class BayesianRidge(_StatisticsRegressor):
    """Bayesian ridge regression (evidence maximisation) from sufficient statistics.

    The model, iterations and intercept handling of scikit-learn's
    ``BayesianRidge`` (formulas and sources: the module docstring), run on
    the eigendecomposition of the centred ``XᵀX``: the same coefficients,
    precisions and predictive standard deviation up to rounding, from data
    that can be streamed (:func:`bayesian_ridge_solution`).

    Parameters
    ----------
    max_iter : int, default 300
        Most evidence iterations.
    tol : float, default 1e-3
        Stop when the weights change by less (sum of absolute changes).
    alpha_1, alpha_2 : float, default 1e-6
        Shape and rate of the Gamma prior on the noise precision.
    lambda_1, lambda_2 : float, default 1e-6
        Shape and rate of the Gamma prior on the weight precision.
    alpha_init : float, optional
        Initial noise precision (default ``1 / Var(y)``).
    lambda_init : float, optional
        Initial weight precision (default 1).
    compute_score : bool, default False
        Keep the log marginal likelihood of every iteration in ``scores_``.
    fit_intercept : bool, default True

    Attributes
    ----------
    coef_ : ndarray, shape (M,)
    intercept_ : float
    alpha_, lambda_ : float
        Noise and weight precisions chosen by the evidence.
    sigma_ : ndarray, shape (M, M)
        Posterior covariance of the weights.
    X_offset_ : ndarray, shape (M,)
        Feature means (zeros without intercept).
    n_iter_ : int
    scores_ : ndarray
        Log marginal likelihood per iteration (with ``compute_score``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = X @ [1.0, 2.0] + 0.1 * rng.normal(size=100)
    >>> mean, std = BayesianRidge().fit(X, y).predict(np.zeros((1, 2)), return_std=True)
    >>> bool(abs(mean[0]) < 0.05), bool(0.08 < std[0] < 0.13)
    (True, True)
    """

    _multi_output = False
    _param_rules = {"max_iter": integer(1), "tol": number("> 0"), "alpha_1": number(">= 0"),
                    "alpha_2": number(">= 0"), "lambda_1": number(">= 0"), "lambda_2": number(">= 0"),
                    "alpha_init": or_none(number("> 0")), "lambda_init": or_none(number("> 0")),
                    "compute_score": boolean(), "fit_intercept": boolean()}

    def __init__(self, *, max_iter=300, tol=1e-3, alpha_1=1e-6, alpha_2=1e-6, lambda_1=1e-6, lambda_2=1e-6,
                 alpha_init=None, lambda_init=None, compute_score=False, fit_intercept=True):
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_1 = alpha_1
        self.alpha_2 = alpha_2
        self.lambda_1 = lambda_1
        self.lambda_2 = lambda_2
        self.alpha_init = alpha_init
        self.lambda_init = lambda_init
        self.compute_score = compute_score
        self.fit_intercept = fit_intercept

    def _fit_statistics(self, stats, single):
        fit = bayesian_ridge_solution(stats, **self.get_params())
        self.coef_, self.intercept_ = fit["coef"], fit["intercept"]
        self.alpha_, self.lambda_, self.sigma_ = fit["alpha"], fit["lambda"], fit["sigma"]
        self.X_offset_, self.n_iter_, self.scores_ = fit["x_offset"], fit["n_iter"], fit["scores"]
        return self

    def predict(self, X, return_std=False):
        """Posterior mean, and with ``return_std`` the standard deviation of a new observation (noise included)."""
        X, mean = self._linear(X)
        if not return_std:
            return mean
        Xc = X - self.X_offset_
        return mean, np.sqrt(np.einsum("ij,ij->i", Xc @ self.sigma_, Xc) + 1.0 / self.alpha_)


__all__ = ["BayesianRidge", "LinearStatistics", "Ridge", "add_statistics", "bayesian_ridge_solution",
           "linear_statistics", "ridge_solution"]
