"""The structure-level model: descriptor -> target transform -> one regressor per target."""

import inspect

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..descriptors.base import as_records
from ..errors import InputError
from ..transforms import TargetTransform


def _accepts(method, name):
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def with_blocks(regressor, descriptor):
    """``regressor`` given the named column blocks of a fitted ``descriptor`` (``ConcatDescriptor.blocks_``) when it
    takes blocks and has none: so that a recipe's ensemble members can name their parts (``block = "structures"``)
    although the parts' widths are known only once the descriptor is fitted.

    Examples
    --------
    >>> from ml4ms.descriptors.concat import ConcatDescriptor
    >>> from ml4ms.models.ensemble import EnsembleRegressor
    >>> from ase.build import bulk
    >>> d = ConcatDescriptor(parts=[{"name": "composition"}, {"name": "structures"}], progress=False)
    >>> d = d.fit([bulk("Cu")])
    >>> [b[0] for b in with_blocks(EnsembleRegressor(), d).blocks]
    ['composition', 'structures']
    """
    blocks = getattr(descriptor, "blocks_", None)
    params = regressor.get_params(deep=False)
    if blocks is None or "blocks" not in params or params["blocks"] is not None:
        return regressor
    return clone(regressor).set_params(blocks=[list(b) for b in blocks])


class StructureRegressor(RegressorMixin, BaseEstimator):
    """Predict scalar properties of structures (or table rows).

    The descriptor is fitted once and its features feed one clone of
    ``regressor`` per target, each with its own hyperparameter search; every
    target is learned through the same :class:`~ml4ms.transforms.TargetTransform`.

    Parameters
    ----------
    descriptor : transformer
        An ml4ms descriptor (list of records -> 2-D array).
    regressor : estimator
        A scikit-learn regressor on the features; if its ``fit`` takes
        ``groups``, duplicate groups are passed through.
    target_transform : {"none", "log1p"}
    per_atom : bool
    baseline : str, optional
        Key of a baseline property for Δ-learning.

    Examples
    --------
    >>> from ml4ms.descriptors.columns import ColumnFeatures
    >>> from ml4ms.models.kernel import KernelRidge
    >>> rows = [{"x": float(x)} for x in range(20)]
    >>> y = np.array([r["x"] ** 2 for r in rows])
    >>> model = StructureRegressor(descriptor=ColumnFeatures(columns=["x"]),
    ...                            regressor=KernelRidge(kernel="gaussian")).fit(rows, y)
    >>> round(float(model.predict([{"x": 3.0}])[0]), 1)
    9.0
    """

    def __init__(self, *, descriptor=None, regressor=None, target_transform="none", per_atom=False, baseline=None):
        self.descriptor = descriptor
        self.regressor = regressor
        self.target_transform = target_transform
        self.per_atom = per_atom
        self.baseline = baseline

    @property
    def transform_(self):
        return TargetTransform(function=self.target_transform, per_atom=self.per_atom, baseline=self.baseline)

    def fit(self, X, y, groups=None):
        """Fit the descriptor and one regressor per column of ``y``."""
        records = as_records(X)
        if self.descriptor is None or self.regressor is None:
            raise InputError("StructureRegressor needs a descriptor and a regressor")
        self.descriptor_ = clone(self.descriptor).fit(records)
        features = self.descriptor_.transform(records)
        return self.fit_features(features, y, records, groups=groups)

    def fit_streamed(self, X, y, chunk=1000, n_jobs=1, progress=False):
        """Fit as :meth:`fit` does, without ever holding the features of all structures.

        The descriptor is fitted on all of ``X`` (for ``local_kernel``: the
        active environments, chosen among at most ``max_candidates``, so its
        memory does not grow with ``len(X)``). Then the structures are cut into
        chunks of ``chunk``; each chunk's features are reduced to their
        sufficient statistics (:func:`~ml4ms.models.linear.linear_statistics`)
        on the executor's workers (:mod:`ml4ms.parallel`: this process,
        ``n_jobs`` local processes or the chosen Dask cluster); they are added
        in input order and solved
        (:meth:`~ml4ms.models.linear.BayesianRidge.fit_statistics`). Memory:
        ``O(M² + chunk x M)`` for ``M`` features instead of ``O(N x M)``; the
        result is the in-memory fit's up to rounding, on every executor.

        Parameters
        ----------
        X : list of structures or rows
        y : array-like, shape (n,) or (n, n_targets)
        chunk : int, default 1000
            Structures per chunk (per task).
        n_jobs : int, default 1
            Local processes when no Dask scheduler is chosen.
        progress : bool, default False
            A progress bar over the chunks.

        Returns
        -------
        self

        Examples
        --------
        >>> from ml4ms.descriptors.columns import ColumnFeatures
        >>> from ml4ms.models.linear import BayesianRidge
        >>> rows = [{"x": float(x), "y": 2.0 * x + 1.0} for x in range(50)]
        >>> model = StructureRegressor(descriptor=ColumnFeatures(columns=["x"]), regressor=BayesianRidge())
        >>> model = model.fit_streamed(rows, [r["y"] for r in rows], chunk=16)  # 4 chunks
        >>> round(float(model.predict([{"x": 100.0}])[0]), 3)
        201.0

        Needs a regressor that fits from statistics (a ``fit_statistics``
        method: ``ridge`` and ``bayesian_ridge``).
        """
        from ..parallel import Executor
        from .linear import add_statistics

        if not callable(getattr(self.regressor, "fit_statistics", None)):
            raise InputError(f"{type(self.regressor).__name__} cannot be fitted from streamed statistics",
                             hint="use model ridge or bayesian_ridge, or fit in memory")
        records = as_records(X)
        Z = self._learned(y, records)
        self.descriptor_ = clone(self.descriptor).fit(records)
        if "progress" in self.descriptor_.get_params():
            self.descriptor_.set_params(progress=False)
        size = int(chunk)
        items = [(a, records[a:a + size], Z[a:a + size]) for a in range(0, len(records), size)]
        executor = Executor(n_jobs=n_jobs, chunk=1)  # one chunk of structures per task
        total = None
        for stats in executor.imap(ChunkStatistics(self.descriptor_), items, progress=progress and len(items) > 1,
                                   desc="statistics"):
            total = stats if total is None else add_statistics(total, stats)  # in input order on every executor
        self.joint_ = False
        self.estimators_ = [clone(self.regressor).fit_statistics(total.target(j)) for j in range(Z.shape[1])]
        return self

    def _learned(self, y, records):
        """The learned quantities (n, n_targets) of raw targets ``y``; sets ``_single_`` and ``n_targets_``."""
        y = np.asarray(y, dtype=float)
        self._single_ = y.ndim == 1
        y = y.reshape(len(y), -1)
        if len(y) != len(records):
            raise InputError(f"{len(records)} structures but {len(y)} target values")
        self.n_targets_ = y.shape[1]
        transform = self.transform_
        return np.column_stack([transform.forward(y[:, j], records) for j in range(y.shape[1])])

    def fit_features(self, features, y, records, groups=None):
        """Fit the regressors on precomputed features of a fitted descriptor.

        Used by cross-validation to compute the features once.
        """
        if len(np.asarray(y)) != len(features):
            raise InputError(f"{len(features)} structures but {len(y)} target values")
        Z = self._learned(y, records)
        # regressors that search hyperparameters per output in one pass get all targets at once
        self.joint_ = bool(getattr(self.regressor, "_per_output_search", False))
        columns = [Z] if self.joint_ else [Z[:, j] for j in range(Z.shape[1])]
        regressor = with_blocks(self.regressor, getattr(self, "descriptor_", None))
        self.estimators_ = []
        for z in columns:
            est = clone(regressor)
            if groups is not None and _accepts(est.fit, "groups"):
                est.fit(features, z, groups=groups)
            else:
                est.fit(features, z)
            self.estimators_.append(est)
        return self

    def predict(self, X, return_std=False):
        """Predictions in the targets' own units, shape (n,) or (n, n_targets).

        With ``return_std=True`` also returns standard deviations (NaN where
        the regressor has no uncertainty).
        """
        check_is_fitted(self, "estimators_")
        records = as_records(X)
        return self.predict_features(self.descriptor_.transform(records), records, return_std=return_std)

    def predict_features(self, features, records, return_std=False):
        """Predictions from precomputed features (see :meth:`fit_features`)."""
        check_is_fitted(self, "estimators_")
        transform = self.transform_
        zs, ss = [], []
        for est in self.estimators_:
            if return_std and _accepts(est.predict, "return_std"):
                z, s = est.predict(features, return_std=True)
            else:
                z = est.predict(features)
                s = np.full(np.shape(z), np.nan)
            zs.append(np.asarray(z).reshape(len(features), -1))
            ss.append(np.asarray(s).reshape(len(features), -1))
        Z, S = np.hstack(zs), np.hstack(ss)
        pred = np.empty_like(Z)
        std = np.empty_like(S)
        for j in range(Z.shape[1]):
            pred[:, j], std[:, j] = transform.inverse(Z[:, j], records, std=S[:, j])
        if self._single_:
            pred, std = pred[:, 0], std[:, 0]
        return (pred, std) if return_std else pred

    def predict_local(self, X):
        """Per-atom contributions that add up to :meth:`predict`, one array per structure.

        Needs a sum-of-local model: a descriptor with ``reduce="sum"`` and a
        ``transform_local`` method (SOAP, ``local_kernel``, ...) and a linear
        regressor (``coef_``/``intercept_``, or :class:`~ml4ms.models.kernel.KernelRidge`
        with ``kernel="linear"``). The intercept and a Δ-learning baseline are
        split evenly over the atoms of a structure.

        Returns
        -------
        list of ndarray
            Shape (n_atoms,) per structure, or (n_atoms, n_targets) for several targets.
        """
        check_is_fitted(self, "estimators_")
        if self.target_transform != "none" or self.per_atom:
            raise InputError(
                "per-atom contributions need a model of the raw target (or target minus a baseline)",
                hint="refit without transform 'log1p' and without per_atom",
            )
        if getattr(self.descriptor_, "reduce", None) != "sum" or not hasattr(self.descriptor_, "transform_local"):
            raise InputError(
                "per-atom contributions need a per-atom descriptor summed over atoms",
                hint="use soap or local_kernel with reduce = \"sum\"",
            )
        weights = [_linear_weights(est, self.descriptor_.n_features_out_) for est in self.estimators_]
        W = np.hstack([w for w, _ in weights])
        b = np.concatenate([c for _, c in weights])
        records = as_records(X)
        rows, index = self.descriptor_.transform_local(records)
        n = len(records)
        sizes = np.bincount(index, minlength=n).astype(float)
        contrib = rows @ W + b[None, :] / np.maximum(sizes[index], 1.0)[:, None]
        if self.baseline:
            base = self.transform_.inverse(np.zeros(n), records)  # the baseline of each structure
            contrib += (base / np.maximum(sizes, 1.0))[index][:, None]
        parts = np.split(contrib, np.cumsum(sizes.astype(int))[:-1])
        return [p[:, 0] if self._single_ else p for p in parts]

    @property
    def has_uncertainty(self):
        """Whether :meth:`predict` can return a standard deviation."""
        check_is_fitted(self, "estimators_")
        return all(_accepts(e.predict, "return_std") for e in self.estimators_)


class ChunkStatistics:
    """The sufficient statistics of one chunk ``(start, records, learned targets)``; picklable, so a worker runs it.

    An error naming a record is renumbered from the chunk's start.
    """

    def __init__(self, descriptor):
        self.descriptor = descriptor

    def __call__(self, item):
        from .linear import linear_statistics

        start, records, Z = item
        try:
            return linear_statistics(self.descriptor.transform(records), Z)
        except InputError as exc:
            raise exc.shifted(start) from None


def _linear_weights(est, n_features):
    """``(W, b)`` with ``predict(X) = X @ W + b`` of a fitted linear regressor, W (n_features, k)."""
    if hasattr(est, "coef_") and hasattr(est, "intercept_"):
        W = np.asarray(est.coef_, dtype=float)
        W = W.reshape(-1, n_features).T if W.ndim > 1 else W.reshape(n_features, 1)
        return W, np.atleast_1d(np.asarray(est.intercept_, dtype=float)).ravel()
    if getattr(est, "kernel", None) == "linear" and hasattr(est, "dual_coef_") and hasattr(est, "X_fit_"):
        dual = np.asarray(est.dual_coef_, dtype=float).reshape(len(est.X_fit_), -1)
        W = (est.X_fit_.T @ dual) / np.asarray(est.x_scale_)[:, None]
        b = np.asarray(est.y_mean_, dtype=float).ravel() - np.asarray(est.x_mean_) @ W
        return W, b
    raise InputError(
        f"per-atom contributions need a linear regressor, not {type(est).__name__}"
        + (f" with kernel '{est.kernel}'" if hasattr(est, "kernel") else ""),
        hint="use model ridge, bayesian_ridge or krr with kernel = \"linear\"",
    )
