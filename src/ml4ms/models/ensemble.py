"""Stacked ensembles of regressors, each seeing its own block of feature columns.

A :class:`~ml4ms.descriptors.concat.ConcatDescriptor` puts several
descriptors side by side; :class:`EnsembleRegressor` gives every *member* a
block of those columns and its own regressor (e.g. a Laplacian kernel on
bond-topology n-grams, a Gaussian kernel on SOAP, a kernel on lattice
columns) and combines their predictions per output,

    ŷ(x) = b + Σ_m w_m ŷ_m(x),

with weights fitted by **stacking** (Wolpert, Neural Networks 5, 241, 1992;
Breiman, Machine Learning 24, 49, 1996): non-negative least squares of the
targets on the members' out-of-sample predictions, on centred values, the
intercept ``b`` absorbing the means. Out-of-sample predictions come from
grouped K-fold (duplicate groups never split) or, for
:class:`~ml4ms.models.kernel.KernelRidge` members, from its exact
leave-one-group-out formula at the chosen hyperparameters, which costs one
eigendecomposition instead of K refits.

Uncertainty
-----------
The same out-of-sample predictions calibrate a standard deviation. Let
``d(x)`` be the disagreement of the members (the standard deviation of their
predictions around their plain mean). The model is
``y − ŷ(x) ~ N(0, s₀² + c² d(x)²)`` with ``s₀², c² ≥ 0`` per output fitted by
maximum likelihood on the out-of-sample residuals of the stacked
prediction: a floor for the error all members share and a part that grows
where they disagree (with one member ``c = 0``: a constant σ).
"""

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import ANY, named, tables_of
from ..errors import InputError
from . import regressor_class

#: the keys of a member (in a recipe, a ``[[model.members]]`` table)
MEMBER = {"regressor": named(regressor_class), "columns": ANY, "block": ANY, "label": ANY}


def _accepts_groups(est):
    import inspect

    try:
        return "groups" in inspect.signature(est.fit).parameters
    except (TypeError, ValueError):
        return False


def _fit(est, X, y, groups):
    if _accepts_groups(est):
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def _multi_output(est):
    try:
        return bool(est.__sklearn_tags__().target_tags.multi_output)
    except AttributeError:
        return False


def _build(spec, where):
    """A regressor from an estimator or a recipe-style ``{"name": ..., **params}`` dict."""
    if spec is None:
        from .kernel import KernelRidge

        return KernelRidge()
    if isinstance(spec, dict):
        from . import make_regressor

        spec = dict(spec)
        name = spec.pop("name", None)
        if not name:
            raise InputError(f"{where}: the regressor needs a 'name'",
                             hint='e.g. regressor = {name = "krr", kernel = "laplacian"}')
        if name == "ensemble":
            raise InputError(f"{where}: an ensemble cannot contain an ensemble")
        return make_regressor(name, **spec)
    if not hasattr(spec, "fit"):
        raise InputError(f"{where}: regressor must be a dict or an estimator, not {type(spec).__name__}")
    return clone(spec)


def nnls_weights(P, y):
    """Stacking weights: non-negative least squares on centred predictions.

    Parameters
    ----------
    P : ndarray, shape (n_samples, n_members)
        Out-of-sample predictions of the members.
    y : ndarray, shape (n_samples,)

    Returns
    -------
    weights : ndarray, shape (n_members,)
        Non-negative.
    intercept : float
        ``mean(y) − weights · mean(P)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=200)
    >>> P = np.column_stack([y + 0.1 * rng.normal(size=200), rng.normal(size=200)])
    >>> w, b = nnls_weights(P, y)
    >>> bool(w[0] > 0.9 and w[1] < 0.05)
    True
    """
    from scipy.optimize import nnls

    P = np.asarray(P, dtype=float)
    y = np.asarray(y, dtype=float)
    pm, ym = P.mean(axis=0), y.mean()
    w, _ = nnls(P - pm, y - ym)
    if not np.any(w > 0):  # no member explains anything: fall back to the plain mean
        w = np.full(P.shape[1], 1.0 / P.shape[1])
    return w, float(ym - w @ pm)


def fit_variance_model(residuals, spread):
    """Maximum-likelihood ``(s0², c²)`` of ``r ~ N(0, s0² + c² d²)``.

    Parameters
    ----------
    residuals : ndarray, shape (n,)
        Out-of-sample errors ``y − ŷ``.
    spread : ndarray, shape (n,)
        Member disagreement ``d`` at the same samples.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = rng.uniform(0, 2, 5000); r = rng.normal(size=5000) * np.sqrt(0.25 + 4 * d ** 2)
    >>> s0, c = fit_variance_model(r, d)
    >>> bool(abs(s0 - 0.25) < 0.1 and abs(c - 4) < 0.4)
    True
    """
    from scipy.optimize import minimize

    r2 = np.asarray(residuals, dtype=float) ** 2
    d2 = np.asarray(spread, dtype=float) ** 2
    scale = max(float(np.mean(r2)), 1e-300)
    if not np.any(d2 > 0):
        return scale, 0.0
    dscale = float(np.mean(d2))

    def nll(p):
        s0, c = np.exp(p)
        var = scale * s0 + scale / dscale * c * d2
        return 0.5 * np.sum(np.log(var) + r2 / var)

    best = None
    for start in ([0.0, -8.0], [-1.0, 0.0], [-8.0, 0.0]):  # pure floor, mixed, pure spread
        res = minimize(nll, np.array(start), method="L-BFGS-B", bounds=[(-30, 10), (-30, 10)])
        if best is None or res.fun < best.fun:
            best = res
    s0, c = np.exp(best.x)
    s0 = s0 if best.x[0] > -29 else 0.0
    c = c if best.x[1] > -29 else 0.0
    return float(scale * s0), float(scale / dscale * c)


def krr_loo_predictions(est, y, groups):
    """Exact leave-one-group-out predictions of a fitted :class:`~ml4ms.models.kernel.KernelRidge`.

    Uses the hyperparameters it chose (``alpha_``, ``gamma_``) and its stored
    training features; one eigendecomposition per distinct ``gamma``.

    Returns
    -------
    ndarray, shape (n_samples, n_outputs)
    """
    from scipy.linalg import eigh

    from .kernel import group_loo_residuals, kernel_base, kernel_from_base

    y2 = np.asarray(y, dtype=float).reshape(len(y), -1)
    yc = y2 - np.asarray(est.y_mean_).reshape(1, -1)
    base = kernel_base(est.X_fit_, est.X_fit_, est.kernel)
    out = np.empty_like(y2)
    gammas = list(est.gamma_)
    for gamma in dict.fromkeys(gammas):
        K = kernel_from_base(base, est.kernel, gamma=gamma, zeta=est.zeta)
        w, V = eigh(K, driver="evd", overwrite_a=True)
        w = np.clip(w, 0.0, None)
        V2 = V * V
        for j in [j for j, g in enumerate(gammas) if g == gamma]:
            e = group_loo_residuals(w, V, yc[:, j], est.alpha_[j], groups, eigvecs_squared=V2)
            out[:, j] = y2[:, j] - e
    return out


class EnsembleRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Members on blocks of columns, combined by stacking (NNLS) or averaging, with a calibrated std.

    Parameters
    ----------
    members : list of dict, optional
        One dict per member with keys

        * ``regressor``: an estimator or a recipe-style dict
          (``{name = "krr", kernel = "laplacian"}``); default
          :class:`~ml4ms.models.kernel.KernelRidge`.
        * ``columns`` (optional): which feature columns the member sees:
          ``[start, stop]`` (a Python slice; negative values count from the
          end), ``[start]`` (to the last column), or a list of such pairs.
        * ``block`` (optional, instead of ``columns``): the name or index of
          an entry of ``blocks``.
        * ``label`` (optional): a name for reports.

        A member without ``columns`` or ``block`` sees all columns. Default:
        one :class:`~ml4ms.models.kernel.KernelRidge` on all columns.
    blocks : list of [name, start, stop], optional
        Named column ranges (e.g. ``ConcatDescriptor.blocks_``) for members
        that give ``block``.
    combine : {"stack", "mean"}, default "stack"
        Non-negative least-squares weights on out-of-sample predictions, or
        equal weights.
    oof : {"auto", "kfold"}, default "auto"
        How out-of-sample predictions are made: ``"auto"`` uses the exact
        grouped leave-one-out of :class:`~ml4ms.models.kernel.KernelRidge`
        members and grouped K-fold for the others; ``"kfold"`` uses K-fold
        for all.
    n_splits : int, default 5
        Folds of the grouped K-fold.
    random_state : int, default 0
        Seed of the fold assignment.

    Attributes
    ----------
    estimators_ : list of list of estimators
        Per member, one fitted regressor (all outputs at once) or one per output.
    columns_ : list of ndarray of int
        Columns each member sees.
    weights_ : ndarray, shape (n_members, n_outputs)
    intercept_ : ndarray, shape (n_outputs,)
    n_outputs_ : int
        Number of target columns (0 for a 1-D ``y``).
    labels_ : list of str
    oof_rmse_ : ndarray, shape (n_members + 1, n_outputs)
        Out-of-sample RMSE of every member and (last row) of the ensemble.
    noise_var_, spread_var_ : ndarray, shape (n_outputs,)
        ``s0²`` and ``c²`` of the variance model.
    member_params_ : dict
        ``{"weight": ..., "alpha": ..., "gamma": ...}``, each a list over
        outputs of a list over members (the weight and the hyperparameters
        the member chose; None where it has none).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(100, 2)); y = np.sin(2 * X[:, 0]) + 0.3 * X[:, 1]
    >>> model = EnsembleRegressor(members=[
    ...     {"columns": [0, 1], "regressor": {"name": "krr", "kernel": "gaussian"}},
    ...     {"regressor": {"name": "krr", "kernel": "laplacian"}}]).fit(X, y)
    >>> mean, std = model.predict(X[:3], return_std=True)
    >>> mean.shape, bool(np.all(model.weights_ >= 0)), bool(np.all(std > 0))
    ((3,), True, True)
    """

    #: StructureRegressor fits one instance on all targets
    _per_output_search = True
    _param_rules = {"members": tables_of(MEMBER)}

    def __init__(self, *, members=None, blocks=None, combine="stack", oof="auto", n_splits=5, random_state=0):
        self.members = members
        self.blocks = blocks
        self.combine = combine
        self.oof = oof
        self.n_splits = n_splits
        self.random_state = random_state

    # ----------------------------------------------------------------- set-up
    def _member_specs(self):
        members = self.members if self.members is not None else [{}]
        if not isinstance(members, (list, tuple)) or not members:
            raise InputError("ensemble members must be a non-empty list of dicts",
                             hint='e.g. members = [{columns = [0, 44], regressor = {name = "krr"}}]')
        for k, m in enumerate(members):
            if not isinstance(m, dict):
                raise InputError(f"ensemble member {k} must be a dict, not {type(m).__name__}")
            unknown = set(m) - set(MEMBER)
            if unknown:
                raise InputError(f"ensemble member {k}: unknown key(s) {', '.join(sorted(unknown))}",
                                 hint=f"use {', '.join(MEMBER)}")
        return list(members)

    def _columns(self, spec, k, n_features):
        where = f"ensemble member {k}"
        if "block" in spec and "columns" in spec:
            raise InputError(f"{where}: give columns or block, not both")
        if "block" in spec:
            if not self.blocks:
                raise InputError(f"{where}: block '{spec['block']}' needs the ensemble's blocks",
                                 hint="name a part of a concat [descriptor] (a recipe hands the parts over as blocks), "
                                      "give blocks = [[name, start, stop], ...], or columns = [start, stop]")
            names = [b[0] for b in self.blocks]
            key = spec["block"]
            if isinstance(key, str):
                if names.count(key) != 1:
                    raise InputError(f"{where}: block '{key}' is not one of the blocks ({', '.join(names)})")
                key = names.index(key)
            if not 0 <= int(key) < len(self.blocks):
                raise InputError(f"{where}: block index {key} out of range")
            ranges = [list(self.blocks[int(key)][1:3])]
        elif "columns" in spec:
            cols = spec["columns"]
            if not isinstance(cols, (list, tuple)) or not cols:
                raise InputError(f"{where}: columns must be [start, stop], [start] or a list of them")
            ranges = cols if isinstance(cols[0], (list, tuple)) else [cols]
        else:
            return np.arange(n_features)
        idx = []
        for r in ranges:
            if not 1 <= len(r) <= 2 or not all(isinstance(v, (int, np.integer)) for v in r):
                raise InputError(f"{where}: bad column range {r!r}", hint="use [start, stop] with integers")
            start, stop = r[0], (r[1] if len(r) == 2 else None)
            idx.append(np.arange(n_features)[slice(start, stop)])
        idx = np.unique(np.concatenate(idx))
        if len(idx) == 0:
            raise InputError(f"{where}: no columns selected out of {n_features}",
                             hint="check the column ranges against the descriptor's width")
        return idx

    # -------------------------------------------------------------------- fit
    def _fit_member(self, base, X, y2, groups):
        """Fitted estimators of one member: one on all outputs, or one per output."""
        if y2.shape[1] == 1 or _multi_output(base):
            return [_fit(clone(base), X, y2 if y2.shape[1] > 1 else y2[:, 0], groups)]
        return [_fit(clone(base), X, y2[:, j], groups) for j in range(y2.shape[1])]

    @staticmethod
    def _predict_member(ests, X, n_out):
        if len(ests) == 1:
            return np.asarray(ests[0].predict(X), dtype=float).reshape(len(X), n_out)
        return np.column_stack([np.asarray(e.predict(X), dtype=float).ravel() for e in ests])

    def _oof(self, base, ests, X, y2, groups):
        from .kernel import KernelRidge

        n_out = y2.shape[1]
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            return None  # nothing is out of sample
        if self.oof == "auto" and len(ests) == 1 and type(ests[0]) is KernelRidge:
            return krr_loo_predictions(ests[0], y2 if n_out > 1 else y2[:, 0], groups)
        from ..model_selection import GroupedKFold

        n_splits = min(int(self.n_splits), n_groups)
        if n_splits < 2:
            return None
        out = np.empty_like(y2)
        cv = GroupedKFold(n_splits, shuffle=True, random_state=self.random_state)
        for train, test in cv.split(X, groups=groups):
            fold = self._fit_member(base, X[train], y2[train], groups[train])
            out[test] = self._predict_member(fold, X[test], n_out)
        return out

    def fit(self, X, y, groups=None):
        """Fit every member on all samples, then the weights and the variance model.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        groups : array-like, optional
            Samples with one label are always left out together (duplicates).
        """
        if self.combine not in ("stack", "mean"):
            raise InputError(f"unknown combine '{self.combine}'", hint="use 'stack' or 'mean'")
        if self.oof not in ("auto", "kfold"):
            raise InputError(f"unknown oof '{self.oof}'", hint="use 'auto' or 'kfold'")
        specs = self._member_specs()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        n = len(X)
        y2 = np.asarray(y, dtype=float).reshape(n, -1)
        n_out = y2.shape[1]
        self.n_outputs_ = 0 if np.ndim(y) == 1 else n_out  # 0: 1-D targets, 1-D predictions
        groups = np.arange(n) if groups is None else np.asarray(groups)
        if len(groups) != n:
            raise InputError(f"{n} samples but {len(groups)} group labels")
        self.columns_ = [self._columns(s, k, X.shape[1]) for k, s in enumerate(specs)]
        self.labels_ = [str(s.get("label", f"member{k}")) for k, s in enumerate(specs)]
        self.estimators_, oof = [], []
        for k, (spec, cols) in enumerate(zip(specs, self.columns_)):
            base = _build(spec.get("regressor"), f"ensemble member {k}")
            Xm = X[:, cols]
            ests = self._fit_member(base, Xm, y2, groups)
            self.estimators_.append(ests)
            oof.append(self._oof(base, ests, Xm, y2, groups))
        M = len(specs)
        self.weights_ = np.full((M, n_out), 1.0 / M)
        self.intercept_ = np.zeros(n_out)
        self.noise_var_ = np.full(n_out, np.nan)
        self.spread_var_ = np.full(n_out, np.nan)
        self.oof_rmse_ = np.full((M + 1, n_out), np.nan)
        if any(o is None for o in oof):
            self.member_params_ = self._chosen(n_out)
            return self  # too few groups for out-of-sample predictions: plain mean, no calibration
        P = np.stack(oof, axis=1)  # (n, M, n_out)
        for j in range(n_out):
            if self.combine == "stack":
                self.weights_[:, j], self.intercept_[j] = nnls_weights(P[:, :, j], y2[:, j])
            pred = P[:, :, j] @ self.weights_[:, j] + self.intercept_[j]
            self.oof_rmse_[:M, j] = np.sqrt(np.mean((P[:, :, j] - y2[:, [j]]) ** 2, axis=0))
            self.oof_rmse_[M, j] = np.sqrt(np.mean((pred - y2[:, j]) ** 2))
            self.noise_var_[j], self.spread_var_[j] = fit_variance_model(y2[:, j] - pred, P[:, :, j].std(axis=1))
        self.member_params_ = self._chosen(n_out)
        return self

    def _chosen(self, n_out):
        """Per output: every member's weight and chosen ``alpha``/``gamma`` (None where it has none)."""
        out = {"weight": self.weights_.T.tolist(), "alpha": [[None] * len(self.estimators_) for _ in range(n_out)]}
        out["gamma"] = [list(row) for row in out["alpha"]]
        for m, ests in enumerate(self.estimators_):
            for j in range(n_out):
                best = getattr(ests[0] if len(ests) == 1 else ests[j], "best_params_", None)
                if not isinstance(best, dict):
                    continue
                for key in ("alpha", "gamma"):
                    value = best.get(key)
                    if isinstance(value, (list, tuple)) and len(ests) == 1:
                        value = value[j] if j < len(value) else None
                    out[key][j][m] = None if value is None else float(value)
        return out

    # ---------------------------------------------------------------- predict
    def predict_members(self, X):
        """Predictions of every member, shape (n_samples, n_members, n_outputs)."""
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False)
        n_out = len(self.intercept_)
        return np.stack([self._predict_member(ests, X[:, cols], n_out)
                         for ests, cols in zip(self.estimators_, self.columns_)], axis=1)

    def predict(self, X, return_std=False):
        """Weighted sum of the members, and with ``return_std`` the calibrated standard deviation."""
        P = self.predict_members(X)
        pred = np.einsum("nmj,mj->nj", P, self.weights_) + self.intercept_
        single = self.n_outputs_ == 0
        if return_std:
            var = self.noise_var_ + self.spread_var_ * P.std(axis=1) ** 2
            std = np.sqrt(np.where(np.isfinite(var), var, np.nan))
            return (pred[:, 0], std[:, 0]) if single else (pred, std)
        return pred[:, 0] if single else pred
