"""SISSORegressor and SISSOClassifier: scikit-learn estimators over primary features.

``X`` is a table of primary features: a 2-D array (with ``feature_names``), a
pandas DataFrame, or a list of dict rows (as in ``ml4ms.datasets.load("octet")``).
Fitted models are plain data: formula strings, coefficient lists and floats,
re-evaluated on new data by :func:`ml4ms.sisso.expressions.evaluate`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.uniform(1, 2, size=(40, 3))
>>> y = 3 * X[:, 0] * X[:, 1] - 1
>>> model = SISSORegressor(feature_names=["a", "b", "c"], operators=["*", "+"], rung=1, n_sis=5, max_dim=1)
>>> model.fit(X, y).models_[0]["features"]
['a * b']
>>> float(np.round(model.models_[0]["rmse"], 10))
0.0
"""

import time

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError
from .classify import l0_classification, overlap_1d_scores
from .expressions import evaluate, to_latex
from .features import FeatureSpace, canonical_operator
from .solver import feature_hashes, fit_linear, l0_regression, regression_scorer, screen
from .units import format_unit, parse_unit

_SPACES = ("generic", "prl2015")


def _columns_of(X, feature_names, source="X"):
    """dict name -> 1-D float array, and the number of rows."""
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):  # DataFrame
        table = {str(c): X[c].to_numpy() for c in X.columns}
    elif isinstance(X, (list, tuple)) and X and isinstance(X[0], dict):
        keys = list(X[0])
        table = {}
        for k in keys:
            col = [row.get(k) for row in X]
            if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in col):
                table[str(k)] = np.asarray(col, dtype=float)
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2:
            raise InputError(f"{source} must be a 2-D table of primary features, got shape {arr.shape}")
        names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise InputError(f"{source} has {arr.shape[1]} columns but {len(names)} feature_names were given")
        table = {str(n): arr[:, i] for i, n in enumerate(names)}
    return table


class _SISSOBase(BaseEstimator):
    def __init__(self, *, feature_names=None, units=None, derived=None, operators=("+", "-", "*", "/"),
                 rung=1, n_sis=20, max_dim=3, space="generic", radius_unit="angstrom",
                 allow_transcendental_units=False, max_abs_value=1e50, min_abs_value=0.0,
                 batch_size=4096, cache_gb=2.0, verbose=False):
        self.feature_names = feature_names
        self.units = units
        self.derived = derived
        self.operators = operators
        self.rung = rung
        self.n_sis = n_sis
        self.max_dim = max_dim
        self.space = space
        self.radius_unit = radius_unit
        self.allow_transcendental_units = allow_transcendental_units
        self.max_abs_value = max_abs_value
        self.min_abs_value = min_abs_value
        self.batch_size = batch_size
        self.cache_gb = cache_gb
        self.verbose = verbose

    # ------------------------------------------------------------------ inputs
    def _table(self, X):
        table = _columns_of(X, self.feature_names)
        for name, expr in (self.derived or {}).items():
            table[str(name)] = evaluate(expr, table)
        return table

    def _primary(self, X):
        table = self._table(X)
        if self.feature_names is not None:
            names = [str(n) for n in self.feature_names] + [str(n) for n in (self.derived or {})]
            names = list(dict.fromkeys(names))
        else:
            names = list(table)
        missing = [n for n in names if n not in table]
        if missing:
            raise InputError(f"primary feature '{missing[0]}' is not a numeric column of X",
                             hint="check feature_names")
        matrix = np.column_stack([np.asarray(table[n], dtype=float) for n in names])
        if not np.all(np.isfinite(matrix)):
            row, col = (int(k) for k in np.argwhere(~np.isfinite(matrix))[0])
            name, derived = names[col], self.derived or {}
            if name in derived:
                raise InputError(f"derived feature {name} = {derived[name]} is {matrix[row, col]}", index=row,
                                 item="row", hint="change its formula in [derived] (a division by zero?) or drop "
                                                  "the row")
            raise InputError(f"primary feature {name} is {matrix[row, col]}", index=row, item="row",
                             hint="fix or drop the row")
        units = self.units or {}
        if isinstance(units, (list, tuple)):
            if len(units) != len(names):
                raise InputError(f"{len(units)} units for {len(names)} primary features")
            units = dict(zip(names, units))
        unit_dicts = [parse_unit(units.get(n, "")) for n in names]
        return matrix, names, unit_dicts

    def _check_params(self):
        if self.space not in _SPACES:
            raise InputError(f"space must be one of {_SPACES}, got '{self.space}'")
        if int(self.max_dim) < 1 or int(self.n_sis) < 1:
            raise InputError("max_dim and n_sis must be at least 1")
        for op in self.operators:
            canonical_operator(op)

    def _build_space(self, matrix, names, unit_dicts):
        if self.space == "prl2015":
            return FeatureSpace.prl2015(matrix, names, unit_dicts, radius_unit=self.radius_unit,
                                        batch_size=self.batch_size)
        return FeatureSpace.generic(matrix, names, unit_dicts, operators=list(self.operators), rung=int(self.rung),
                                    batch_size=self.batch_size, max_abs_value=self.max_abs_value,
                                    min_abs_value=self.min_abs_value,
                                    allow_transcendental_units=self.allow_transcendental_units,
                                    cache_gb=self.cache_gb)

    def _describe(self, space, keys):
        out = [space.describe(k) for k in keys]
        return [o[0] for o in out], [format_unit(o[1]) for o in out]

    def descriptor(self, X, dim=None):
        """Values of the selected features of the ``dim``-D model on ``X``, shape (n, dim)."""
        check_is_fitted(self, "models_")
        model = self._model(dim)
        table = self._table(X)
        return np.column_stack([evaluate(f, table) for f in model["features"]])

    def _model(self, dim):
        dim = len(self.models_) if dim is None else int(dim)
        if not 1 <= dim <= len(self.models_):
            raise InputError(f"dim must be between 1 and {len(self.models_)}, got {dim}")
        return self.models_[dim - 1]

    def _log(self, text):
        if self.verbose:
            print(text, flush=True)


class SISSORegressor(RegressorMixin, _SISSOBase):
    """SISSO regression: SIS on the residual, then exhaustive l0 for dimensions 1..max_dim.

    Parameters
    ----------
    feature_names : list of str, optional
        Primary features (columns of ``X``); all numeric columns if None.
    units : dict or list, optional
        Unit string of each primary feature (``"eV"``, ``"angstrom"``, ``""``).
    derived : dict, optional
        Extra primary features as formulas of the others, e.g.
        ``{"r_sigma": "abs(r_p_A + r_s_A - r_p_B - r_s_B)"}`` (units via ``units``).
    operators : sequence of str
        Subset of ``+ - * / |-| exp exp(-x) log sqrt cbrt ^-1 ^2 ^3 ^6 abs sin cos``.
    rung : int
        Number of operator applications (0-3).
    n_sis : int
        Features kept by each SIS step.
    max_dim : int
        Largest descriptor dimension.
    space : {"generic", "prl2015"}
        ``"prl2015"``: the explicit feature space of Ghiringhelli et al. (2015).
    radius_unit : str
        Unit that marks the radii in ``space="prl2015"``.
    allow_transcendental_units : bool
        Allow exp/log/sin/cos of dimensional features.
    max_abs_value, min_abs_value : float
        Features whose largest absolute value is outside this range are dropped.
    batch_size : int
        Features evaluated per batch when streaming.
    cache_gb : float
        Keep the streamed rung in memory up to this size (else regenerate per SIS step).
    verbose : bool

    Attributes
    ----------
    models_ : list of dict
        One per dimension: ``dim``, ``features`` (formula strings), ``latex``,
        ``units``, ``coefficients``, ``intercept``, ``rmse``, ``max_ae``
        (coefficients/intercept are per task when fitted with ``tasks``).
    n_features_ : int
        Size of the feature space.
    sis_features_ : list of str
        Formulas of all features kept by SIS.
    primary_names_ : list of str
    tasks_ : list or None
    coef_, intercept_ : the ``max_dim`` model's coefficients and intercept.
    formula_ : str
        The ``max_dim`` model as text.
    fit_seconds_ : float
    """

    def fit(self, X, y, tasks=None):
        """Fit the models of dimensions 1..max_dim; ``tasks`` gives one label per row (multi-task)."""
        self._check_params()
        start = time.perf_counter()
        matrix, names, unit_dicts = self._primary(X)
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(matrix):
            raise InputError(f"y has {len(y)} values but X has {len(matrix)} rows")
        if not np.all(np.isfinite(y)):
            raise InputError("y contains NaN or inf", index=int(np.flatnonzero(~np.isfinite(y))[0]))
        task_arr = None if tasks is None else np.asarray(tasks)
        space = self._build_space(matrix, names, unit_dicts)
        residual = y.copy()
        sel_vals, sel_keys, hashes, models = [], [], [], []
        for dim in range(1, int(self.max_dim) + 1):
            vals, keys, _ = screen(space, regression_scorer(residual, task_arr), int(self.n_sis), exclude=hashes)
            sel_vals.append(vals)
            sel_keys.extend(keys)
            hashes.extend(feature_hashes(vals))
            F = np.concatenate(sel_vals, axis=1)
            if F.shape[1] < dim:
                break
            best = l0_regression(F, y, dim, task_arr)  # on normalised columns: same errors
            chosen = [sel_keys[c] for c in best["columns"]]
            fit = fit_linear(space.values_of(chosen), y, task_arr)
            residual = y - fit["prediction"]
            feats, units = self._describe(space, chosen)
            coefs = fit["coefficients"].tolist()
            intercepts = fit["intercepts"].tolist()
            models.append({
                "dim": dim,
                "features": feats,
                "latex": [to_latex(f) for f in feats],
                "units": units,
                "coefficients": coefs[0] if task_arr is None else coefs,
                "intercept": intercepts[0] if task_arr is None else intercepts,
                "rmse": fit["rmse"],
                "max_ae": fit["max_ae"],
            })
            self._log(f"dim {dim}: rmse {fit['rmse']:.4f}  {feats}")
        self.models_ = models
        self.n_features_ = int(space.count())
        self.sis_features_ = self._describe(space, sel_keys)[0]
        self.primary_names_ = names
        self.tasks_ = None if task_arr is None else np.unique(task_arr).tolist()
        self.coef_ = np.asarray(models[-1]["coefficients"], dtype=float)
        self.intercept_ = np.asarray(models[-1]["intercept"], dtype=float)
        self.formula_ = self.formula()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def formula(self, dim=None, digits=6):
        """The model of dimension ``dim`` as text (first task when multi-task)."""
        model = self._model(dim) if hasattr(self, "models_") else None
        if model is None:
            check_is_fitted(self, "models_")
        coefs = np.atleast_2d(model["coefficients"])[0]
        icpt = np.atleast_1d(model["intercept"])[0]
        terms = [f"{'-' if c < 0 else '+'} {abs(c):.{digits}g} * [{f}]" for c, f in zip(coefs, model["features"])]
        return f"{icpt:.{digits}g} " + " ".join(terms)

    def predict(self, X, dim=None, tasks=None):
        """Prediction of the ``dim``-D model (default: the largest)."""
        check_is_fitted(self, "models_")
        model = self._model(dim)
        D = self.descriptor(X, dim)
        if self.tasks_ is None:
            return D @ np.asarray(model["coefficients"]) + model["intercept"]
        if tasks is None:
            raise InputError("this model was fitted with tasks; give tasks= to predict")
        tasks = np.asarray(tasks)
        out = np.empty(len(D))
        for t, coef, icpt in zip(self.tasks_, model["coefficients"], model["intercept"]):
            sel = tasks == t
            out[sel] = D[sel] @ np.asarray(coef) + icpt
        unknown = ~np.isin(tasks, self.tasks_)
        if unknown.any():
            raise InputError(f"unknown task '{tasks[unknown][0]}'", index=int(np.flatnonzero(unknown)[0]))
        return out


class SISSOClassifier(ClassifierMixin, _SISSOBase):
    """SISSO classification with the domain-overlap loss.

    SIS ranks features by the 1D overlap of the class intervals, counted over
    the samples still in the overlap region of the previous dimension; l0
    picks the combination with the fewest samples inside another class's
    convex hull (ties: smallest overlap length/area). A linear SVM on the
    selected descriptor gives ``predict``. Parameters as in
    :class:`SISSORegressor`.

    Attributes
    ----------
    models_ : list of dict
        Per dimension: ``dim``, ``features``, ``latex``, ``units``, ``overlap``
        (number of samples in the overlap region), ``overlap_size``,
        ``coefficients`` and ``intercept`` of the linear SVM, ``accuracy``.
    classes_ : ndarray
    n_features_, sis_features_, primary_names_, fit_seconds_ : as in SISSORegressor
    """

    def fit(self, X, y):
        """Fit descriptors of dimensions 1..max_dim."""
        from sklearn.svm import SVC, LinearSVC

        self._check_params()
        start = time.perf_counter()
        matrix, names, unit_dicts = self._primary(X)
        y = np.asarray(y).ravel()
        if len(y) != len(matrix):
            raise InputError(f"y has {len(y)} labels but X has {len(matrix)} rows")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise InputError("classification needs at least two classes in y")
        space = self._build_space(matrix, names, unit_dicts)
        unresolved = np.ones(len(y), dtype=bool)
        sel_vals, sel_keys, hashes, models = [], [], [], []
        for dim in range(1, int(self.max_dim) + 1):
            mask = unresolved.copy()

            def score(vals, mask=mask):
                return -overlap_1d_scores(vals, y, mask)

            vals, keys, _ = screen(space, score, int(self.n_sis), exclude=hashes)
            sel_vals.append(vals)
            sel_keys.extend(keys)
            hashes.extend(feature_hashes(vals))
            F = np.concatenate(sel_vals, axis=1)
            if F.shape[1] < dim:
                break
            best = l0_classification(F, y, dim)
            unresolved = best["in_overlap"]
            D = space.values_of([sel_keys[c] for c in best["columns"]])
            mu, sd = D.mean(axis=0), D.std(axis=0)
            sd[sd == 0] = 1.0
            # separable classes (no overlap): near hard margin; otherwise a soft margin
            C = 1e8 if best["overlap"] == 0 else 100.0
            if len(self.classes_) == 2:
                svm = SVC(kernel="linear", C=C).fit((D - mu) / sd, y)
            else:  # one-vs-rest
                svm = LinearSVC(C=min(C, 1e4), intercept_scaling=100.0, max_iter=100000).fit((D - mu) / sd, y)
            coef = svm.coef_ / sd
            icpt = svm.intercept_ - coef @ mu
            feats, units = self._describe(space, [sel_keys[c] for c in best["columns"]])
            models.append({
                "dim": dim,
                "features": feats,
                "latex": [to_latex(f) for f in feats],
                "units": units,
                "overlap": best["overlap"],
                "overlap_size": best["overlap_size"],
                "coefficients": coef.tolist(),
                "intercept": icpt.tolist(),
                "accuracy": float(np.mean(svm.predict((D - mu) / sd) == y)),
            })
            self._log(f"dim {dim}: overlap {best['overlap']}  {feats}")
        self.models_ = models
        self.n_features_ = int(space.count())
        self.sis_features_ = self._describe(space, sel_keys)[0]
        self.primary_names_ = names
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def decision_function(self, X, dim=None):
        """Linear-SVM decision values on the ``dim``-D descriptor."""
        model = self._model(dim)
        D = self.descriptor(X, dim)
        out = D @ np.asarray(model["coefficients"]).T + np.asarray(model["intercept"])
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X, dim=None):
        """Predicted class labels."""
        check_is_fitted(self, "models_")
        d = self.decision_function(X, dim)
        if d.ndim == 1:
            return self.classes_[(d > 0).astype(int)]
        return self.classes_[np.argmax(d, axis=1)]
