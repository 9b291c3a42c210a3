"""Kernel ridge regression with hyperparameters chosen by exact grouped leave-out.

For KRR the leave-one-out residuals have a closed form: with the hat matrix
``H = K (K + αI)^-1`` and training residuals ``r = (I - H) y``, the residuals of
the samples of a group ``G`` left out together are ``(I - H)_GG^-1 r_G``
(the block form of the Sherman–Morrison–Woodbury identity; see e.g.
Rasmussen & Williams, *Gaussian Processes for Machine Learning*, §5.4.2).
One eigendecomposition of ``K`` per kernel width gives the exact
leave-one-group-out error for every ``α`` at once, so a grid search costs
about as much as a single fit, and duplicates (passed as ``groups``) are
always left out together — an honest score, not an inflated one.
"""

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import check_value, list_of, number, one_of, string
from ..errors import InputError

KERNELS = ("laplacian", "gaussian", "linear", "polynomial")

#: the rule of a searched hyperparameter: one value, or a non-empty list of candidates, each finite and > 0
GRID = one_of(number("> 0"), list_of(number("> 0"), min_length=1))._replace(
    what="a finite number > 0 or a non-empty list of them")
#: the rules of the parameters of the kernel models, for recipes (:func:`ml4ms.config.named`)
KERNEL_PARAM_RULES = {"kernel": string(*KERNELS), "alpha": GRID,
                      "gamma": one_of(GRID, string("auto"))._replace(what=f"'auto' or {GRID.what}")}

#: multiples of 1 / median distance tried when ``gamma="auto"``
AUTO_GAMMA_FACTORS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: default regularisation grid
DEFAULT_ALPHAS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def kernel_matrix(X, Y, kernel="laplacian", gamma=1.0, zeta=2):
    """Kernel between the rows of ``X`` and ``Y``.

    ``laplacian``: exp(-γ ‖x - y‖₁); ``gaussian``: exp(-γ ‖x - y‖²);
    ``linear``: x·y; ``polynomial``: (x·y / (‖x‖ ‖y‖))^ζ (normalised dot product,
    the usual SOAP kernel).

    Examples
    --------
    >>> kernel_matrix(np.zeros((1, 2)), np.ones((1, 2)), "laplacian", gamma=0.5)
    array([[0.36787944]])
    """
    return kernel_from_base(kernel_base(X, Y, kernel), kernel, gamma=gamma, zeta=zeta)


def kernel_base(X, Y, kernel):
    """The part of a kernel that does not depend on its hyperparameters.

    Distances (L1 for laplacian, squared L2 for gaussian) or (normalised) dot
    products; :func:`kernel_from_base` turns it into the kernel, so a grid
    search over ``gamma`` computes the distances once.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if kernel == "laplacian":
        return cdist(X, Y, "cityblock")
    if kernel == "gaussian":
        return cdist(X, Y, "sqeuclidean")
    if kernel == "linear":
        return X @ Y.T
    if kernel == "polynomial":
        nx = np.linalg.norm(X, axis=1)
        ny = np.linalg.norm(Y, axis=1)
        nx[nx == 0] = 1.0
        ny[ny == 0] = 1.0
        return (X @ Y.T) / np.outer(nx, ny)
    raise InputError(f"unknown kernel '{kernel}'", hint=f"choose one of: {', '.join(KERNELS)}")


def kernel_from_base(base, kernel, gamma=1.0, zeta=2):
    """The kernel from :func:`kernel_base` and the hyperparameters."""
    if kernel in ("laplacian", "gaussian"):
        return np.exp(-gamma * base)
    if kernel == "linear":
        return base.copy()
    return base**zeta


def median_distance(X, kernel, n_sample=500, seed=0):
    """Median pairwise distance (L1 for laplacian, squared L2 for gaussian) on a subsample.

    The subsample is drawn from the rows in lexicographic order, so the
    result does not depend on the order of the training rows.
    """
    X = np.asarray(X, dtype=float)
    rng = np.random.default_rng(seed)
    if len(X) > n_sample:
        X = X[np.lexsort(X.T[::-1])][np.sort(rng.choice(len(X), n_sample, replace=False))]
    metric = "cityblock" if kernel == "laplacian" else "sqeuclidean"
    d = cdist(X, X, metric)[np.triu_indices(len(X), 1)]
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0


def candidates(name, value):
    """The candidates of the searched hyperparameter ``name``: one number or a sequence, as a list of floats.

    Raises
    ------
    InputError
        Naming ``name``, unless ``value`` passes :data:`GRID` (empty, NaN, infinite or <= 0 values).

    Examples
    --------
    >>> candidates("alpha", 0.1), candidates("alpha", (1e-3, 1e-2))
    ([0.1], [0.001, 0.01])
    >>> candidates("alpha", [])
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: alpha must be a finite number > 0 or a non-empty list of them, got []
    """
    value = list(value) if isinstance(value, (list, tuple, np.ndarray)) else value
    check_value(value, GRID, name)
    return [float(v) for v in np.atleast_1d(value)]


def check_search(grids, groups, how="grouped leave-one-out"):
    """Refuse to choose among several candidates without at least 2 distinct groups to choose on.

    Parameters
    ----------
    grids : dict of str -> list
        The candidates of each hyperparameter (a list of one is fixed, not searched).
    groups : array-like
        Group labels of the training samples (duplicates share one).
    how : str
        How the choice is made, for the message.

    Examples
    --------
    >>> check_search({"alpha": [0.1, 1.0], "gamma": [None]}, [0, 1])
    >>> check_search({"alpha": [0.1, 1.0], "gamma": [None]}, [0, 0, 0])
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: cannot choose alpha (2 candidates) by grouped leave-one-out from 3 samples that are one structure (duplicates count once); give at least 2 distinct structures, or one value of alpha (e.g. model.alpha = 1e-3)
    """
    searched = [name for name, values in grids.items() if len(values) > 1]
    groups = np.asarray(groups)
    if searched and len(np.unique(groups)) < 2:
        example = ", ".join(f"model.{name} = {'1e-3' if name == 'alpha' else '0.1'}" for name in searched)
        data = ("1 sample" if len(groups) == 1
                else f"{len(groups)} samples that are one structure (duplicates count once)")
        raise InputError(
            f"cannot choose {' and '.join(f'{n} ({len(grids[n])} candidates)' for n in searched)} by {how} "
            f"from {data}",
            hint=f"give at least 2 distinct structures, or one value of {' and '.join(searched)} (e.g. {example})")


def kernel_widths(Xs, kernel, gamma):
    """The list of widths ``gamma`` to try: ``[None]`` for dot-product kernels, "auto" a grid around the median distance."""
    if kernel in ("linear", "polynomial"):
        return [None]
    if isinstance(gamma, str):
        if gamma != "auto":
            raise InputError(f"gamma must be a number, a list or 'auto', not '{gamma}'")
        med = median_distance(Xs, kernel)
        return [f / med for f in AUTO_GAMMA_FACTORS]
    return candidates("gamma", gamma)


def feature_scaling(X, scale=True):
    """Column means and scales ``(x_mean, x_scale)``; zeros and ones when ``scale`` is false.

    A feature constant up to rounding has a std of ~1e-16, not 0: dividing by
    it would blow rounding noise up to O(1), so such features are left unscaled.

    Examples
    --------
    >>> feature_scaling(np.array([[1.0, 5.0], [3.0, 5.0]]))
    (array([2., 5.]), array([1., 1.]))
    """
    X = np.asarray(X, dtype=float)
    if not scale:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    return X.mean(axis=0), np.where(constant_features(X), 1.0, X.std(axis=0))


def constant_features(X):
    """Which columns of ``X`` are constant up to rounding: ``std <= 1e-10 * (abs(mean) + 1)``.

    Examples
    --------
    >>> constant_features(np.array([[1.0, 5.0], [3.0, 5.0 + 1e-15]])).tolist()
    [False, True]
    """
    X = np.asarray(X, dtype=float)
    return X.std(axis=0) <= 1e-10 * (np.abs(X.mean(axis=0)) + 1.0)


def group_loo_residuals(eigvals, eigvecs, y, alpha, groups, eigvecs_squared=None):
    """Exact leave-one-group-out residuals of KRR for one ``alpha``.

    Parameters
    ----------
    eigvals, eigvecs : ndarray
        Eigendecomposition of the training kernel.
    y : ndarray, shape (n,) or (n, k)
        Centred targets.
    alpha : float
    groups : ndarray of int, shape (n,)
        Samples with equal labels are left out together.
    eigvecs_squared : ndarray, optional
        ``eigvecs ** 2``, to reuse over several ``alpha``.

    Returns
    -------
    ndarray, same shape as ``y``
        Prediction errors (y - ŷ) of each sample when its group is left out.
    """
    f = eigvals / (eigvals + alpha)
    y2 = y.reshape(len(y), -1)
    r = y2 - eigvecs @ (f[:, None] * (eigvecs.T @ y2))
    h_diag = (eigvecs**2 if eigvecs_squared is None else eigvecs_squared) @ f
    e = r / np.maximum(1.0 - h_diag, 1e-12)[:, None]
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    for g in np.flatnonzero(counts > 1):
        idx = np.flatnonzero(inverse == g)
        block = np.eye(len(idx)) - (eigvecs[idx] * f) @ eigvecs[idx].T
        e[idx] = np.linalg.solve(block, r[idx])
    return e.reshape(y.shape)


class KernelRidge(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Kernel ridge regression; lists of ``alpha``/``gamma`` are searched by exact grouped LOO.

    Parameters
    ----------
    kernel : {"laplacian", "gaussian", "linear", "polynomial"}, default "laplacian"
    alpha : float or sequence of float, default DEFAULT_ALPHAS
        Regularisation. A sequence is searched.
    gamma : float, sequence of float or "auto", default "auto"
        Kernel width (laplacian, gaussian). ``"auto"`` searches
        ``AUTO_GAMMA_FACTORS / median distance`` of the standardised features.
    zeta : float, default 2
        Power of the normalised polynomial kernel.
    scale : bool, default True
        Standardise features (mean 0, unit variance) before the kernel.

    Attributes
    ----------
    best_params_ : dict
        The chosen ``alpha`` and ``gamma`` (lists, one per output, for 2-D ``y``).
    alpha_, gamma_ : list
        The chosen values per output column.
    cv_results_ : list of dict
        Leave-one-group-out RMSE for every pair tried.
    dual_coef_, X_fit_, y_mean_, x_mean_, x_scale_ : ndarray

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(80, 3)); y = np.sin(X[:, 0]) + X[:, 1] ** 2
    >>> model = KernelRidge(kernel="gaussian").fit(X, y)
    >>> float(np.abs(model.predict(X) - y).mean()) < 0.05
    True
    """

    #: StructureRegressor fits one instance on all targets (per-output search)
    _per_output_search = True
    _param_rules = KERNEL_PARAM_RULES

    def __init__(self, *, kernel="laplacian", alpha=DEFAULT_ALPHAS, gamma="auto", zeta=2, scale=True):
        self.kernel = kernel
        self.alpha = alpha
        self.gamma = gamma
        self.zeta = zeta
        self.scale = scale

    def _gammas(self, Xs):
        return kernel_widths(Xs, self.kernel, self.gamma)

    def fit(self, X, y, groups=None):
        """Fit, searching the hyperparameter grid by exact leave-one-group-out.

        Each column of a 2-D ``y`` gets its own ``alpha`` and ``gamma``; the
        eigendecomposition of each kernel is shared between the columns.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_targets)
        groups : array-like of int, optional
            Group labels (e.g. duplicate structures); a group is left out as
            a whole. Default: every sample its own group.
        """
        from scipy.linalg import cho_factor, cho_solve, eigh

        if self.kernel not in KERNELS:
            raise InputError(f"unknown kernel '{self.kernel}'", hint=f"choose one of: {', '.join(KERNELS)}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        self.x_mean_, self.x_scale_ = feature_scaling(X, self.scale)
        Xs = (X - self.x_mean_) / self.x_scale_
        y2 = y.reshape(len(y), -1).astype(float)
        self.y_mean_ = y2.mean(axis=0)
        yc = y2 - self.y_mean_
        groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        alphas = candidates("alpha", self.alpha)
        gammas = self._gammas(Xs)
        check_search({"alpha": alphas, "gamma": gammas}, groups)
        n_out = yc.shape[1]
        dual = np.zeros_like(yc)
        best_gamma = [None] * n_out
        best_alpha = [None] * n_out
        self.cv_results_ = []
        base = kernel_base(Xs, Xs, self.kernel)
        if len(alphas) * len(gammas) == 1:  # nothing to choose: one Cholesky solve
            K = kernel_from_base(base, self.kernel, gamma=gammas[0], zeta=self.zeta)
            K[np.diag_indices_from(K)] += alphas[0]
            dual = cho_solve(cho_factor(K, lower=True), yc)
            best_gamma = [gammas[0]] * n_out
            best_alpha = [alphas[0]] * n_out
        else:
            best_rmse = np.full(n_out, np.inf)
            for gamma in gammas:
                K = kernel_from_base(base, self.kernel, gamma=gamma, zeta=self.zeta)
                w, V = eigh(K, driver="evd", overwrite_a=True)
                w = np.clip(w, 0.0, None)
                Vty = V.T @ yc
                V2 = V * V
                for alpha in alphas:
                    e = group_loo_residuals(w, V, yc, alpha, groups, eigvecs_squared=V2)
                    rmse = np.sqrt(np.mean(e**2, axis=0))
                    self.cv_results_.append({"gamma": gamma, "alpha": alpha, "loo_rmse": rmse.tolist()})
                    better = rmse < best_rmse
                    for j in np.flatnonzero(better):
                        best_rmse[j] = rmse[j]
                        best_gamma[j], best_alpha[j] = gamma, alpha
                        dual[:, j] = V @ (Vty[:, j] / (w + alpha))
                del K, V, V2
        single = y.ndim == 1
        self.dual_coef_ = dual[:, 0] if single else dual
        self.X_fit_ = Xs
        self.gamma_ = best_gamma
        self.alpha_ = best_alpha
        self.best_params_ = (
            {"alpha": best_alpha[0], "gamma": best_gamma[0]} if single
            else {"alpha": best_alpha, "gamma": best_gamma}
        )
        return self

    def predict(self, X):
        """Predictions for the rows of ``X``."""
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False)
        Xs = (X - self.x_mean_) / self.x_scale_
        dual = np.asarray(self.dual_coef_).reshape(len(self.X_fit_), -1)
        out = np.empty((len(Xs), dual.shape[1]))
        base = kernel_base(Xs, self.X_fit_, self.kernel)
        cache = {}
        for j, gamma in enumerate(self.gamma_):
            if gamma not in cache:
                cache[gamma] = kernel_from_base(base, self.kernel, gamma=gamma, zeta=self.zeta)
            out[:, j] = cache[gamma] @ dual[:, j]
        out += self.y_mean_
        return out[:, 0] if np.ndim(self.dual_coef_) == 1 else out
