"""A calibrated committee: uncertainty for any regressor by subsampling.

F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, *Fast and accurate
uncertainty estimation in chemical machine learning*, J. Chem. Theory Comput.
15, 906 (2019). ``n_models`` clones of a regressor are fitted on random
subsamples of the training set (groups kept whole); the prediction is the
committee mean ``ȳ`` and the uncertainty comes from the spread ``s``
(standard deviation of the members, ``ddof=1``).

Calibration
-----------
Members trained on overlapping subsamples are correlated, so the raw spread
is usually too small; it is rescaled by one factor per output fitted by
maximum likelihood on out-of-subsample data, as in the paper. The
statistical model is the paper's: the members' predictions at ``x`` are
draws from ``N(μ, σ²)`` and the truth is ``y ~ N(μ, α²σ²)``. For each
training sample ``j`` let ``H_j`` be the ``m_j`` members that did **not** see
it (``m_j ≥ 2`` needed), ``ȳ_j`` and ``s_j²`` their mean and variance.
Then ``t_j = (y_j − ȳ_j)² / s_j²`` follows ``(α² + 1/m_j) · F(1, m_j − 1)``,
and ``α²`` maximises ``Σ_j log p(t_j | α²)`` (a 1-D bounded search,
``α² ≥ 0``). For a fixed committee size ``m ≥ 4`` the moment estimate of the
same model is the closed form of Musil et al.,
``α² = −1/m + (m − 3)/(m − 1) · ⟨t⟩``; the likelihood form also uses the
many samples left out by only 2 or 3 members, which the default subsample
of 0.8 produces. For a new point the full committee of ``M = n_models`` gives
``y − ȳ ~ N(0, (α² + 1/M) σ²)``, so the reported standard deviation is
``std_scale_ · s`` with ``std_scale_ = sqrt(α² + 1/M)``.

The members are fitted one task each on the executor of :mod:`ml4ms.parallel`
(on the Dask cluster when one is chosen, else in this process); their
subsamples are drawn here first, so the committee is the same either way.
"""

import inspect
import warnings
from functools import partial

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from ..config import boolean, integer, named, number
from ..errors import InputError
from . import regressor_class

#: the fewest calibration samples (left out by >= 2 members) needed to fit the scale
MIN_CALIBRATION = 5


def _accepts(method, name):
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def subsample_groups(groups, fraction, rng):
    """A random subset of samples holding about ``fraction`` of them, groups kept whole.

    Examples
    --------
    >>> idx = subsample_groups(np.array([0, 0, 1, 1, 2, 2]), 0.5, np.random.RandomState(0))
    >>> len(idx), len(set(np.array([0, 0, 1, 1, 2, 2])[idx]))
    (4, 2)
    """
    labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(labels))
    target = fraction * len(groups)
    cum = np.cumsum(counts[order])
    n_groups = int(np.searchsorted(cum, target - 1e-9) + 1)
    n_groups = min(max(n_groups, 1), len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    keep[order[:n_groups]] = True
    return np.flatnonzero(keep[inverse])


def fit_alpha_squared(t, m):
    """Maximum-likelihood ``α²`` from ``t_j ~ (α² + 1/m_j) F(1, m_j − 1)``.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Squared held-out errors over the held-out members' variance.
    m : ndarray of int, shape (n,)
        Number of held-out members of each sample (``>= 2``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = np.full(4000, 6); s2 = rng.chisquare(5, 4000) / 5
    >>> t = (4.0 + 1 / 6) * rng.chisquare(1, 4000) / s2
    >>> 3.5 < fit_alpha_squared(t, m) < 4.5
    True
    """
    from scipy.optimize import minimize_scalar
    from scipy.stats import f as f_dist

    t = np.asarray(t, dtype=float)
    m = np.asarray(m, dtype=float)

    def nll(log_a2):
        c = np.exp(log_a2) + 1.0 / m
        return -np.sum(f_dist.logpdf(t / c, 1, m - 1) - np.log(c))

    # the 1/m term bounds c from below, so the likelihood is flat for tiny α²: search log α² in a wide range
    res = minimize_scalar(nll, bounds=(np.log(1e-8), np.log(1e8)), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x)) if res.x > np.log(1e-8) + 1e-3 else 0.0


def _fit(est, X, y, groups):
    if _accepts(est.fit, "groups"):
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def _tuned(base, X, y, groups):
    """Fit ``base`` on everything; return a clone restricted to the hyperparameters it chose."""
    best = getattr(_fit(clone(base), X, y, groups), "best_params_", None)
    if not isinstance(best, dict):
        return base, None
    own = base.get_params(deep=False)
    fixed = {}
    for key, value in best.items():
        if key not in own:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        values = sorted(set(v for v in values if v is not None))
        if values:
            fixed[key] = values[0] if len(values) == 1 else values  # one value per output: search only those
    return clone(base).set_params(**fixed), {k: v for k, v in best.items()}


def _fit_member(base, X, y, groups, calibrate, idx):
    """One member: a clone of ``base`` fitted on the subsample ``idx``, and (with ``calibrate``) its predictions
    of the samples it did not see, NaN elsewhere, shape (n, n_outputs)."""
    est = _fit(clone(base), X[idx], y[idx], groups[idx])
    if not calibrate:
        return est, None
    n = len(X)
    out = np.setdiff1d(np.arange(n), idx)
    pred = np.full(np.shape(np.reshape(y, (n, -1))), np.nan)
    if len(out):
        pred[out] = np.asarray(est.predict(X[out]), dtype=float).reshape(len(out), -1)
    return est, pred


class CommitteeRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Committee of regressors on random subsamples, with a calibrated spread as uncertainty.

    Parameters
    ----------
    regressor : estimator or dict, default None
        The member model; a dict ``{"name": "krr", ...}`` is built with
        :func:`ml4ms.models.make_regressor` (recipe syntax). Default:
        :class:`~ml4ms.models.kernel.KernelRidge`. If its ``fit`` takes
        ``groups``, each member gets the groups of its subsample.
    n_models : int, default 8
    subsample : float, default 0.8
        Fraction of the training samples (whole groups) each member sees.
    random_state : int, RandomState or None
    calibrate : bool, default True
        Rescale the spread by maximum likelihood on the out-of-subsample
        samples (see the module docstring); otherwise ``std_scale_ = 1``.
    tune_once : bool, default True
        Fit the regressor once on all samples and, if it chose
        hyperparameters (``best_params_``), give the members only the chosen
        values, so the members do not repeat the search (about
        ``n_models`` times cheaper for :class:`~ml4ms.models.kernel.KernelRidge`).
        With ``False`` every member searches on its own subsample.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members.
    alpha_squared_ : ndarray, shape (n_outputs,)
        The fitted ``α²`` per output (``nan`` where not calibrated).
    std_scale_ : ndarray, shape (n_outputs,)
        Factor applied to the members' standard deviation.
    n_calibration_ : int
        Samples used to fit the scale.
    member_params_ : dict or None
        The hyperparameters chosen on all samples (with ``tune_once``).

    Examples
    --------
    >>> from ml4ms.models.kernel import KernelRidge
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(120, 1)); y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=120)
    >>> model = CommitteeRegressor(regressor=KernelRidge(kernel="gaussian", alpha=1e-2, gamma=1.0),
    ...                            random_state=0).fit(X, y)
    >>> mean, std = model.predict(X[:3], return_std=True)
    >>> mean.shape, bool(np.all(std > 0))
    ((3,), True)
    """

    #: in a recipe the member is a table of its own, checked as [model] is
    _param_rules = {"regressor": named(regressor_class), "n_models": integer(2), "subsample": number("(0, 1)"),
                    "calibrate": boolean(), "tune_once": boolean()}

    def __init__(self, *, regressor=None, n_models=8, subsample=0.8, random_state=None, calibrate=True,
                 tune_once=True):
        self.regressor = regressor
        self.n_models = n_models
        self.subsample = subsample
        self.random_state = random_state
        self.calibrate = calibrate
        self.tune_once = tune_once

    def _base(self):
        if self.regressor is None:
            from .kernel import KernelRidge

            return KernelRidge()
        if isinstance(self.regressor, dict):
            from . import make_regressor

            spec = dict(self.regressor)
            name = spec.pop("name", None)
            if not name:
                raise InputError("the committee's regressor needs a 'name'",
                                 hint="e.g. regressor = {name = \"krr\", kernel = \"laplacian\"}")
            if name == "committee":
                raise InputError("a committee cannot be made of committees")
            return make_regressor(name, **spec)
        return clone(self.regressor)

    @property
    def _per_output_search(self):
        """Fit all targets at once when the members do (read by StructureRegressor)."""
        try:
            return bool(getattr(self._base(), "_per_output_search", False))
        except InputError:
            return False

    def fit(self, X, y, groups=None):
        """Fit ``n_models`` members on subsamples and the calibration scale.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        groups : array-like, optional
            Samples with one label are always in or out of a subsample
            together (e.g. duplicate structures).
        """
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        n_models = int(self.n_models)
        if n_models < 2:
            raise InputError(f"a committee needs n_models >= 2, got {self.n_models}")
        if not 0 < float(self.subsample) < 1:
            raise InputError(f"subsample must be in (0, 1), got {self.subsample}",
                             hint="each member must leave some samples out")
        n = len(X)
        groups = np.arange(n) if groups is None else np.asarray(groups)
        if len(groups) != n:
            raise InputError(f"{n} samples but {len(groups)} group labels")
        rng = check_random_state(self.random_state)
        base = self._base()
        self.member_params_ = None
        if self.tune_once:
            base, self.member_params_ = _tuned(base, X, y, groups)
        from ..parallel import map_ordered

        y2 = np.asarray(y, dtype=float).reshape(n, -1)
        draws = [subsample_groups(groups, float(self.subsample), rng) for _ in range(n_models)]
        members = map_ordered(partial(_fit_member, base, X, y, groups, bool(self.calibrate)), draws)
        self.estimators_ = [est for est, _ in members]
        held_out_pred = [pred for _, pred in members]  # (n, n_outputs) with NaN where the member saw the sample
        n_out = y2.shape[1]
        self.alpha_squared_ = np.full(n_out, np.nan)
        self.std_scale_ = np.ones(n_out)
        self.n_calibration_ = 0
        if self.calibrate:
            self._calibrate(np.stack(held_out_pred), y2, n_models)
        return self

    def _calibrate(self, P, y2, n_models):
        m = np.sum(np.isfinite(P[:, :, 0]), axis=0)
        use = m >= 2
        self.n_calibration_ = int(use.sum())
        if self.n_calibration_ < MIN_CALIBRATION:
            warnings.warn(
                f"only {self.n_calibration_} samples were left out by 2 or more members: the committee "
                "spread is not calibrated (use more samples, more models or a smaller subsample)",
                stacklevel=3,
            )
            return
        P = P[:, use]
        mean = np.nanmean(P, axis=0)
        var = np.nanvar(P, axis=0, ddof=1)
        for j in range(y2.shape[1]):
            ok = var[:, j] > 1e-300
            if ok.sum() < MIN_CALIBRATION:
                continue
            t = (y2[use, j][ok] - mean[ok, j]) ** 2 / var[ok, j]
            a2 = fit_alpha_squared(t, m[use][ok])
            self.alpha_squared_[j] = a2
            self.std_scale_[j] = np.sqrt(a2 + 1.0 / n_models)

    def predict_members(self, X):
        """Predictions of every member, shape (n_models, n_samples[, n_outputs])."""
        check_is_fitted(self, "estimators_")
        X = validate_data(self, X, reset=False)
        return np.stack([np.asarray(e.predict(X), dtype=float) for e in self.estimators_])

    def predict(self, X, return_std=False):
        """Committee mean, and with ``return_std`` the calibrated standard deviation."""
        P = self.predict_members(X)
        mean = P.mean(axis=0)
        if not return_std:
            return mean
        std = P.std(axis=0, ddof=1)
        scale = self.std_scale_ if std.ndim == 2 else self.std_scale_[0]
        return mean, std * scale
