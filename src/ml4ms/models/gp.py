"""Gaussian-process regression with hyperparameters chosen by the marginal likelihood.

The model (Rasmussen & Williams, *Gaussian Processes for Machine Learning*,
2006, ch. 2 and §5.4.1): the centred targets are ``y = f + ε`` with
``f ~ GP(0, σ_f² k)`` and ``ε ~ N(0, σ_n² I)``. With the noise written as a
ratio ``α = σ_n² / σ_f²`` the covariance of the training targets is
``σ_f² (K + αI)``, so the posterior mean ``k_*ᵀ (K + αI)^-1 y`` is exactly
kernel ridge regression with regularisation ``α``.

Hyperparameters
---------------
For fixed ``γ`` and ``α`` the log marginal likelihood

``log p(y) = -yᵀ(K + αI)^-1 y / (2σ_f²) - ½ log|K + αI| - (n/2) log σ_f² - (n/2) log 2π``

is maximised over the amplitude by ``σ_f² = yᵀ(K + αI)^-1 y / n`` (profile
likelihood), which leaves

``log p(y) = -(n/2) (1 + log(2π σ_f²)) - ½ Σ_i log(w_i + α)``.

With the eigendecomposition ``K = V diag(w) Vᵀ`` both terms are sums over
the eigenvalues (``yᵀ(K + αI)^-1 y = Σ_i (Vᵀy)_i² / (w_i + α)``), so one
eigendecomposition per kernel width gives the likelihood of every noise
ratio and every output column at once; each column gets its own ``γ``,
``α`` and ``σ_f²``.

Predictive distribution
-----------------------
For a new point ``x`` the reported standard deviation is that of a **new
observation** ``y(x)`` (noise included):

``σ²(x) = σ_f² (k(x, x) + α - k_*ᵀ (K + αI)^-1 k_*)``,

so it tends to ``sqrt(σ_f² (k(x, x) + α))`` (the prior plus noise) far from the
data and to about ``σ_n`` at the training points; errors of test labels
against the mean are calibrated by it if the model is right.
"""

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import InputError
from .kernel import (KERNEL_PARAM_RULES, KERNELS, candidates, check_search, feature_scaling, kernel_base,
                     kernel_from_base, kernel_widths)

#: default grid of noise-to-signal variance ratios ``α`` (10^-10 ... 10, quarter decades: each
#: costs O(n) once the kernel is diagonalised, so a fine grid is almost free)
DEFAULT_NOISE_RATIOS = tuple(float(10.0**e) for e in np.arange(-10.0, 1.01, 0.25))

#: smallest profiled signal variance (targets constant after centring)
_TINY = 1e-300


def log_marginal_likelihood(eigvals, proj_y, alphas):
    """Profile log marginal likelihood for several noise ratios from one eigendecomposition.

    Parameters
    ----------
    eigvals : ndarray, shape (n,)
        Eigenvalues ``w`` of the training kernel (clipped at 0).
    proj_y : ndarray, shape (n,) or (n, k)
        ``Vᵀy`` for the centred targets.
    alphas : sequence of float, length m
        Noise-to-signal variance ratios ``α``.

    Returns
    -------
    lml : ndarray, shape (m, k)
        ``log p(y)`` with the signal variance at its maximum.
    amplitude : ndarray, shape (m, k)
        That maximum, ``σ_f² = yᵀ(K + αI)^-1 y / n``.

    Examples
    --------
    >>> lml, amp = log_marginal_likelihood(np.array([0.0, 0.0]), np.array([1.0, 1.0]), [1.0])
    >>> float(amp[0, 0]), round(float(lml[0, 0]), 6)  # y ~ N(0, I): -log(2π) - 1
    (1.0, -2.837877)
    """
    w = np.asarray(eigvals, dtype=float)
    p2 = np.asarray(proj_y, dtype=float).reshape(len(w), -1) ** 2
    a = np.asarray(alphas, dtype=float)
    inv = 1.0 / (w[:, None] + a[None, :])  # (n, m)
    n = len(w)
    amplitude = np.maximum((inv.T @ p2) / n, _TINY)  # (m, k)
    logdet = np.sum(np.log(w[:, None] + a[None, :]), axis=0)  # (m,)
    lml = -0.5 * n * (1.0 + np.log(2.0 * np.pi * amplitude)) - 0.5 * logdet[:, None]
    return lml, amplitude


def alpha_floor(eigvals):
    """Smallest noise ratio whose likelihood the eigendecomposition resolves: ``√n ε max(w)``.

    Each eigenvalue of a symmetric matrix is computed with an absolute error
    of about ``ε max(w)`` (``ε`` the machine epsilon). In
    ``log|K + αI| = Σ log(w_i + α)`` the eigenvalues far below ``α`` each
    contribute an error of about ``ε max(w) / α``; with errors of random sign
    the sum grows like ``√n``, so below the floor the likelihood differences
    between hyperparameters are dominated by rounding and such ratios are
    not compared. A kernel close to a constant (a very small ``gamma``) has
    ``max(w) ≈ n``.

    Examples
    --------
    >>> float(alpha_floor(np.array([0.0, 0.0, 0.0, 1000.0])) / np.finfo(float).eps)
    2000.0
    """
    w = np.asarray(eigvals, dtype=float)
    return float(np.sqrt(len(w)) * np.finfo(float).eps * max(float(np.max(w)), 0.0)) if len(w) else 0.0


def _diag_base(Xs, kernel):
    """``kernel_base(x, x)`` for every row (what :func:`kernel_from_base` needs for ``k(x, x)``)."""
    if kernel in ("laplacian", "gaussian"):
        return np.zeros(len(Xs))
    sq = np.einsum("ij,ij->i", Xs, Xs)
    if kernel == "linear":
        return sq
    return (sq > 0).astype(float)  # normalised dot product of a row with itself (0 for a zero row)


class GaussianProcessRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Gaussian-process regression; ``gamma`` and the noise ratio ``alpha`` maximise the marginal likelihood.

    The targets are centred (constant mean); the signal variance
    ``amplitude_`` is set to its closed-form maximum for every ``(gamma,
    alpha)`` tried (see the module docstring). The posterior mean equals
    :class:`~ml4ms.models.kernel.KernelRidge` with the same kernel, ``gamma``
    and ``alpha``.

    Parameters
    ----------
    kernel : {"laplacian", "gaussian", "linear", "polynomial"}, default "gaussian"
        As :func:`~ml4ms.models.kernel.kernel_matrix`.
    alpha : float or sequence of float, default DEFAULT_NOISE_RATIOS
        Noise-to-signal variance ratio ``σ_n² / σ_f²`` (the KRR
        regularisation). A sequence is searched; values below
        :func:`alpha_floor` of a kernel are skipped for it.
    gamma : float, sequence of float or "auto", default "auto"
        Kernel width (laplacian, gaussian). ``"auto"`` searches
        ``AUTO_GAMMA_FACTORS / median distance`` of the scaled features.
    zeta : float, default 2
        Power of the normalised polynomial kernel.
    scale : bool, default True
        Standardise features (mean 0, unit variance) before the kernel.

    Attributes
    ----------
    gamma_, alpha_, amplitude_, log_marginal_likelihood_ : float or ndarray
        Chosen kernel width (None for linear/polynomial), noise ratio,
        signal variance ``σ_f²`` and the maximised log marginal likelihood
        (of the centred targets); floats for 1-D ``y``, arrays of shape
        (n_outputs,) for 2-D ``y``.
    noise_std_ : float or ndarray
        The chosen noise standard deviation ``σ_n = sqrt(alpha_ * amplitude_)``.
    best_params_ : dict
        ``{"alpha": ..., "gamma": ...}`` (lists for 2-D ``y``), as
        :class:`~ml4ms.models.kernel.KernelRidge` reports it.
    search_results_ : list of dict
        The log marginal likelihood (one per output) of every pair tried;
        NaN for noise ratios below :func:`alpha_floor` of that kernel (not
        resolved numerically, so never chosen unless no ratio is above it,
        then the largest is used).
    dual_coef_, X_fit_, y_mean_, x_mean_, x_scale_ : ndarray
    eigvals_, eigvecs_ : ndarray, shape (n_kernels, n) and (n_kernels, n, n)
        Eigendecomposition of the training kernel of each distinct chosen
        ``gamma`` (for the predictive variance); ``kernel_index_`` maps each
        output to its kernel.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-3, 3, size=(60, 1)); y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=60)
    >>> gp = GaussianProcessRegressor().fit(X, y)
    >>> mean, std = gp.predict(np.array([[0.0], [30.0]]), return_std=True)
    >>> abs(float(mean[0])) < 0.1, bool(std[0] < 0.2 < std[1])
    (True, True)
    """

    #: StructureRegressor fits one instance on all targets (per-output search)
    _per_output_search = True
    _param_rules = KERNEL_PARAM_RULES

    def __init__(self, *, kernel="gaussian", alpha=DEFAULT_NOISE_RATIOS, gamma="auto", zeta=2, scale=True):
        self.kernel = kernel
        self.alpha = alpha
        self.gamma = gamma
        self.zeta = zeta
        self.scale = scale

    def _gammas(self, Xs):
        return kernel_widths(Xs, self.kernel, self.gamma)

    def fit(self, X, y, groups=None):
        """Fit, choosing ``gamma`` and ``alpha`` per output by the log marginal likelihood.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_targets)
        groups : array-like, optional
            Duplicate groups: the likelihood treats every sample as its own
            observation, but with fewer than 2 groups there is nothing to
            choose ``gamma`` and ``alpha`` on, and a grid is refused.
        """
        from scipy.linalg import eigh

        if self.kernel not in KERNELS:
            raise InputError(f"unknown kernel '{self.kernel}'", hint=f"choose one of: {', '.join(KERNELS)}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        alphas = candidates("alpha", self.alpha)
        self.x_mean_, self.x_scale_ = feature_scaling(X, self.scale)
        Xs = (X - self.x_mean_) / self.x_scale_
        y2 = y.reshape(len(y), -1).astype(float)
        self.y_mean_ = y2.mean(axis=0)
        yc = y2 - self.y_mean_
        n_out = yc.shape[1]
        gammas = self._gammas(Xs)
        check_search({"alpha": alphas, "gamma": gammas}, np.arange(len(X)) if groups is None else groups,
                     how="the marginal likelihood")
        base = kernel_base(Xs, Xs, self.kernel)
        best_lml = np.full(n_out, -np.inf)
        best = [None] * n_out  # (gamma index, alpha, amplitude) per output
        kept = {}  # gamma index -> (w, V) for gammas chosen by some output so far
        self.search_results_ = []
        for gi, gamma in enumerate(gammas):
            K = kernel_from_base(base, self.kernel, gamma=gamma, zeta=self.zeta)
            w, V = eigh(K, driver="evd", overwrite_a=True)
            w = np.clip(w, 0.0, None)
            lml, amplitude = log_marginal_likelihood(w, V.T @ yc, alphas)
            # below this noise ratio the rounding of the eigenvalues dominates log|K + αI|
            usable = np.asarray(alphas) >= alpha_floor(w)
            if not usable.any():
                usable[int(np.argmax(alphas))] = True
            lml[~usable] = np.nan
            for ai, alpha in enumerate(alphas):
                self.search_results_.append(
                    {"gamma": gamma, "alpha": alpha, "log_marginal_likelihood": lml[ai].tolist()})
            ranked = np.where(np.isnan(lml), -np.inf, lml)
            top = np.argmax(ranked, axis=0)  # first maximum per output
            for j in range(n_out):
                if ranked[top[j], j] > best_lml[j]:
                    best_lml[j] = lml[top[j], j]
                    best[j] = (gi, alphas[top[j]], float(amplitude[top[j], j]))
            used = {b[0] for b in best}
            kept = {g: kept[g] for g in kept if g in used}
            if gi in used:
                kept[gi] = (w, V)
            del K
        if any(b is None for b in best):
            raise InputError("the log marginal likelihood is not finite for any hyperparameters",
                             hint="check the scale of the features (scale=true) and the targets")
        order = sorted(kept)
        self.eigvals_ = np.stack([kept[g][0] for g in order])
        self.eigvecs_ = np.stack([kept[g][1] for g in order])
        self.kernel_index_ = np.array([order.index(b[0]) for b in best], dtype=int)
        dual = np.empty_like(yc)
        for j, (_, alpha, _) in enumerate(best):
            w, V = self.eigvals_[self.kernel_index_[j]], self.eigvecs_[self.kernel_index_[j]]
            dual[:, j] = V @ ((V.T @ yc[:, j]) / (w + alpha))
        single = y.ndim == 1
        gamma_out = [gammas[b[0]] for b in best]
        alpha_out = [b[1] for b in best]
        amp_out = [b[2] for b in best]

        def shaped(values):
            if values[0] is None:
                return None
            return float(values[0]) if single else np.array(values, dtype=float)

        self.gamma_ = shaped(gamma_out)
        self.alpha_ = shaped(alpha_out)
        self.amplitude_ = shaped(amp_out)
        self.log_marginal_likelihood_ = shaped(list(best_lml))
        self.noise_std_ = shaped([float(np.sqrt(a * s)) for a, s in zip(alpha_out, amp_out)])
        self.best_params_ = (
            {"alpha": alpha_out[0], "gamma": gamma_out[0]} if single
            else {"alpha": alpha_out, "gamma": gamma_out}
        )
        self.dual_coef_ = dual[:, 0] if single else dual
        self.X_fit_ = Xs
        return self

    def _per_output(self, name):
        value = getattr(self, name)
        n_out = len(self.kernel_index_)
        return [None] * n_out if value is None else [float(v) for v in np.atleast_1d(value)]

    def predict(self, X, return_std=False):
        """Posterior mean, and with ``return_std`` the std of a new observation (noise included).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        return_std : bool, default False

        Returns
        -------
        mean : ndarray, shape (n_samples,) or (n_samples, n_targets)
        std : ndarray, same shape, only with ``return_std``
            ``sqrt(σ_f² (k(x, x) + α - k_*ᵀ(K + αI)^-1 k_*))``.
        """
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False)
        Xs = (X - self.x_mean_) / self.x_scale_
        dual = np.asarray(self.dual_coef_).reshape(len(self.X_fit_), -1)
        gammas = self._per_output("gamma_")
        alphas = self._per_output("alpha_")
        amps = self._per_output("amplitude_")
        base = kernel_base(Xs, self.X_fit_, self.kernel)
        kdiag_base = _diag_base(Xs, self.kernel) if return_std else None
        mean = np.empty((len(Xs), dual.shape[1]))
        std = np.empty_like(mean)
        for k in np.unique(self.kernel_index_):
            outputs = np.flatnonzero(self.kernel_index_ == k)
            gamma = gammas[outputs[0]]
            Ks = kernel_from_base(base, self.kernel, gamma=gamma, zeta=self.zeta)
            mean[:, outputs] = Ks @ dual[:, outputs]
            if not return_std:
                continue
            P2 = (Ks @ self.eigvecs_[k]) ** 2  # (m, n): squared projections on the eigenvectors
            kss = kernel_from_base(kdiag_base, self.kernel, gamma=gamma, zeta=self.zeta)
            w = self.eigvals_[k]
            for j in outputs:
                q = P2 @ (1.0 / (w + alphas[j]))
                # k(x,x) - q >= 0 in exact arithmetic; rounding can make it slightly negative
                std[:, j] = np.sqrt(amps[j] * (np.maximum(kss - q, 0.0) + alphas[j]))
        mean += self.y_mean_
        if np.ndim(self.dual_coef_) == 1:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean
