"""Honest evaluation: group-aware splits, repeated cross-validation, learning curves.

Duplicates (see :mod:`ml4ms.duplicates`) must never sit on both sides of a
split, or test errors come out too small. Every splitter here therefore takes
``groups`` (one label per sample; samples with equal labels stay together);
:func:`ml4ms.duplicates.groups_for` gives them for structures (duplicate
groups) and table rows (one group per row). Results are reported as mean ±
standard deviation over all folds and seeds. The folds of a cross-validation
and the points of a learning curve are fitted one task each on the executor
of :mod:`ml4ms.parallel` (``n_jobs`` local processes, or the Dask cluster
when one is chosen): every task fits a clone of the estimator on its own
training set, and the scores come back in the same order on every executor.

>>> import numpy as np
>>> splitter = GroupedKFold(n_splits=2, random_state=0)
>>> for train, test in splitter.split(np.zeros(4), groups=[0, 0, 1, 2]):
...     print(test.tolist())
[0, 1]
[2, 3]
"""

import numbers
from functools import partial

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import BaseCrossValidator

from .config import Rule, check_value, integer, is_number, list_of
from .errors import InputError
from .metrics import METRIC_DOMAINS, check_metric, get_metric, regression_metrics, undefined_reason

#: the seeds of repeated splits: each one an independent repeat, so at least one and no repeats
SEEDS = list_of(integer(0), min_length=1, unique=True)
#: a training-set size: a fraction of the training pool, or a whole number of samples
TRAIN_SIZE = Rule("a fraction in (0, 1] or a whole number > 1",
                  lambda v: is_number(v) and (0 < v <= 1 or (v > 1 and float(v).is_integer())))
#: the sizes of a learning curve
TRAIN_SIZES = list_of(TRAIN_SIZE, min_length=1, unique=True)


def _groups_array(groups, n=None):
    if groups is None:
        raise InputError(
            "groups are required for a group-aware split",
            hint="pass ml4ms.duplicates.groups_for(records), or numpy.arange(n) for independent samples",
        )
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise InputError(f"groups must be 1-D, got shape {groups.shape}")
    if n is not None and len(groups) != n:
        raise InputError(f"{len(groups)} groups for {n} samples", hint="give one group label per sample")
    return groups


def _n_samples(X):
    if X is None:
        return None
    if hasattr(X, "shape"):
        return X.shape[0]
    return len(X)


def _check_int(value, name, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_n_splits(n_splits, groups, name="n_splits", source=None):
    """Raise :class:`~ml4ms.errors.InputError` unless ``n_splits`` folds can be made of whole groups.

    ``name`` is how the caller's user sets the number (an option, a recipe key); ``source`` names the data.

    Examples
    --------
    >>> check_n_splits(3, [0, 0, 1], name="--n-splits", source="a.xyz")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: a.xyz: cannot make 3 folds from 2 groups (duplicate structures are one group); lower --n-splits to at most 2
    """
    n_groups = len(np.unique(np.asarray(groups)))
    if n_splits > n_groups:
        raise InputError(f"cannot make {n_splits} folds from {n_groups} groups (duplicate structures are one group)",
                         source=source, hint=f"lower {name} to at most {n_groups}")


def _assign_folds(groups, n_splits, rng):
    """Fold index of every sample: groups go whole to the currently lightest fold."""
    check_n_splits(n_splits, groups)
    labels, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.arange(len(labels))
    if rng is not None:
        order = rng.permutation(len(labels))
    # largest groups first (stable, so equal sizes keep the shuffled order)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(n_splits)
    group_fold = np.empty(len(labels), dtype=np.int64)
    for g in order:
        fold = int(np.argmin(load))
        group_fold[g] = fold
        load[fold] += sizes[g]
    return group_fold[inverse.ravel()]


class GroupedKFold(BaseCrossValidator):
    """K-fold cross-validation that never splits a group; shuffled by default.

    Groups are shuffled (with ``random_state``), then handed out largest first
    to the fold with the fewest samples, so folds have nearly equal sizes.

    Parameters
    ----------
    n_splits : int, default 5
    shuffle : bool, default True
        Shuffle the groups before assigning them to folds.
    random_state : int, numpy Generator or None
        Seed of the shuffle.

    Examples
    --------
    >>> import numpy as np
    >>> cv = GroupedKFold(n_splits=3, random_state=1)
    >>> groups = [0, 0, 1, 2, 3, 4]
    >>> [len(test) for _, test in cv.split(np.zeros(6), groups=groups)]
    [2, 2, 2]
    """

    def __init__(self, n_splits=5, *, shuffle=True, random_state=None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return _check_int(self.n_splits, "n_splits", 2)

    def split(self, X, y=None, groups=None):
        """Yield ``(train_indices, test_indices)`` for every fold."""
        n_splits = self.get_n_splits()
        groups = _groups_array(groups, _n_samples(X))
        rng = np.random.default_rng(self.random_state) if self.shuffle else None
        fold = _assign_folds(groups, n_splits, rng)
        index = np.arange(len(groups))
        for k in range(n_splits):
            yield index[fold != k], index[fold == k]


class RepeatedGroupedKFold(BaseCrossValidator):
    """:class:`GroupedKFold` repeated ``n_repeats`` times with different shuffles.

    Parameters
    ----------
    n_splits : int, default 5
    n_repeats : int, default 3
    random_state : int or None
        Seeds the shuffles of all repeats (independent child seeds).

    Examples
    --------
    >>> import numpy as np
    >>> cv = RepeatedGroupedKFold(n_splits=2, n_repeats=3, random_state=0)
    >>> cv.get_n_splits(), len(list(cv.split(np.zeros(6), groups=np.arange(6))))
    (6, 6)
    """

    def __init__(self, n_splits=5, *, n_repeats=3, random_state=None):
        self.n_splits = n_splits
        self.n_repeats = n_repeats
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return _check_int(self.n_splits, "n_splits", 2) * _check_int(self.n_repeats, "n_repeats", 1)

    def split(self, X, y=None, groups=None):
        """Yield ``(train_indices, test_indices)``: ``n_splits`` folds per repeat."""
        self.get_n_splits()
        base = np.random.SeedSequence(None if self.random_state is None else int(self.random_state))
        for repeat, child in enumerate(base.spawn(int(self.n_repeats))):
            cv = GroupedKFold(self.n_splits, shuffle=True, random_state=np.random.default_rng(child))
            yield from cv.split(X, y, groups)


class RepeatedGroupShuffleSplit(BaseCrossValidator):
    """Repeated random train/test splits of whole groups (:func:`group_train_test_split`).

    Parameters
    ----------
    n_repeats : int, default 5
    test_fraction : float, default 0.2
        About this fraction of the samples goes to test, in whole groups.
    random_state : int or None
        Seeds all repeats (independent child seeds).

    Examples
    --------
    >>> import numpy as np
    >>> cv = RepeatedGroupShuffleSplit(n_repeats=3, test_fraction=0.25, random_state=0)
    >>> [len(test) for _, test in cv.split(np.zeros(8), groups=[0, 0, 1, 2, 3, 4, 5, 6])]
    [2, 2, 2]
    """

    def __init__(self, n_repeats=5, *, test_fraction=0.2, random_state=None):
        self.n_repeats = n_repeats
        self.test_fraction = test_fraction
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return _check_int(self.n_repeats, "n_repeats", 1)

    def split(self, X, y=None, groups=None):
        """Yield ``(train_indices, test_indices)`` once per repeat."""
        if groups is None:
            raise InputError("groups are required", hint="use ml4ms.duplicates.groups_for(records)")
        base = np.random.SeedSequence(None if self.random_state is None else int(self.random_state))
        for child in base.spawn(self.get_n_splits()):
            yield group_train_test_split(groups, self.test_fraction, random_state=np.random.default_rng(child))


def group_train_test_split(groups, test_fraction=0.2, random_state=None):
    """Random train/test split of whole groups, about ``test_fraction`` of the samples in test.

    Returns
    -------
    train, test : ndarray of int
        Sorted sample indices.

    Examples
    --------
    >>> train, test = group_train_test_split([0, 0, 1, 2, 3, 4, 5, 6, 7, 8], 0.3, random_state=0)
    >>> len(test), len(train)
    (3, 7)
    """
    groups = _groups_array(groups)
    if not (isinstance(test_fraction, numbers.Real) and 0 < test_fraction < 1):
        raise InputError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    labels, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(labels) < 2:
        raise InputError(f"cannot split {len(groups)} samples that are {len(labels)} group (duplicates count once) "
                         "into a training and a test set", hint="give at least 2 distinct structures")
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(labels))
    target = test_fraction * len(groups)
    cumulative = np.cumsum(sizes[order])
    n_test_groups = int(np.searchsorted(cumulative, target - 1e-9)) + 1
    # take the count closest to the target, at least one group, leaving one for train
    if n_test_groups > 1 and abs(cumulative[n_test_groups - 2] - target) <= abs(cumulative[n_test_groups - 1] - target):
        n_test_groups -= 1
    n_test_groups = min(max(n_test_groups, 1), len(labels) - 1)
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[order[:n_test_groups]] = True
    mask = in_test[inverse.ravel()]
    index = np.arange(len(groups))
    return index[~mask], index[mask]


def _take(X, index):
    """Rows ``index`` of an array, a sparse matrix, a DataFrame or a list of records."""
    if hasattr(X, "iloc"):
        return X.iloc[index]
    if hasattr(X, "shape") and hasattr(X, "__getitem__"):
        return X[index]
    return [X[i] for i in index]


def _as_2d(y):
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        return y[:, None], True
    if y.ndim != 2:
        raise InputError(f"y must have shape (n,) or (n, n_targets), got {y.shape}")
    return y, False


def _target_names(target_names, k):
    if target_names is None:
        return ["y"] if k == 1 else [f"y{i}" for i in range(k)]
    names = [target_names] if isinstance(target_names, str) else list(target_names)
    if len(names) != k:
        raise InputError(f"{len(names)} target names for {k} targets")
    return names


def _fit_predict(estimator, X, y, one_column, split):
    """Predictions for ``split = (train, test)`` of a clone of ``estimator`` fitted on ``train``: one task."""
    train, test = split
    model = clone(estimator)
    y_train = y[train, 0] if one_column else y[train]
    model.fit(_take(X, train), y_train)
    pred = np.asarray(model.predict(_take(X, test)), dtype=float)
    return pred.reshape(len(test), -1)


def _fit_splits(estimator, X, y, one_column, splits, n_jobs, progress, desc):
    """:func:`_fit_predict` of every ``(train, test)`` split, on the executor, in order."""
    from .parallel import map_ordered

    return map_ordered(partial(_fit_predict, estimator, X, y, one_column), splits, n_jobs=n_jobs,
                       progress=progress, desc=desc)


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std}


def cross_validate(estimator, X, y, groups, n_splits=5, seeds=(0, 1, 2),
                   metrics=("mae", "rmse", "rmsle", "max_error", "r2"), target_names=None, progress=True,
                   n_jobs=1):
    """Group-aware k-fold cross-validation repeated over seeds.

    Parameters
    ----------
    estimator : scikit-learn estimator
        Cloned for every fold (``fit(X, y)``, ``predict(X)``).
    X : array-like or list of records
    y : array-like of shape (n,) or (n, k)
    groups : array-like of shape (n,)
        Samples with equal labels stay in one fold (duplicates!); see
        :func:`ml4ms.duplicates.groups_for`.
    n_splits : int, default 5
    seeds : sequence of int
        One shuffled :class:`GroupedKFold` per seed.
    metrics : sequence of str
        Names from :data:`ml4ms.metrics.METRICS`. A metric that cannot be
        computed for a target (``rmsle`` where any of its values is <= -1) is
        left out for that target and named in ``omitted``.
    target_names : sequence of str, optional
    progress : bool, default True
    n_jobs : int, default 1
        Folds fitted at once on local processes; a chosen Dask cluster
        (:mod:`ml4ms.parallel`) fits them instead. The results do not depend
        on it.

    Returns
    -------
    dict
        ``folds``: one row per (seed, fold, target) with the metrics (a
        metric undefined on a fold's test labels, ``r2`` without spread,
        is left out of its row);
        ``summary``: ``{target: {metric: {"mean", "std"}}}`` over the folds
        and seeds where it is defined (std with ddof=1); ``predictions``: out-of-fold predictions,
        shape (n_seeds, n, k); ``omitted``: ``{target: {metric: reason}}``;
        ``n_splits``, ``seeds``, ``targets``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyRegressor
    >>> X, y = np.zeros((6, 1)), np.array([0.0, 0, 0, 1, 1, 1])
    >>> out = cross_validate(DummyRegressor(), X, y, groups=np.arange(6), n_splits=2,
    ...                      seeds=(0,), metrics=("mae",), progress=False)
    >>> out["summary"]["y"]["mae"]["mean"] > 0
    True
    """
    y2, one_column = _as_2d(y)
    n, k = y2.shape
    n_x = _n_samples(X)
    if n_x != n:
        raise InputError(f"X has {n_x} samples but y has {n}")
    groups = _groups_array(groups, n)
    names = _target_names(target_names, k)
    for name in metrics:
        get_metric(name)
    omitted = {t: {m: undefined_reason(m, y2[:, j]) for m in metrics if undefined_reason(m, y2[:, j])}
               for j, t in enumerate(names)}
    seeds = check_value([seeds] if isinstance(seeds, numbers.Integral) else list(seeds), SEEDS, "seeds")
    rows = []
    predictions = np.full((len(seeds), n, k), np.nan)
    folds = [(s, seed, fold, split) for s, seed in enumerate(seeds)
             for fold, split in enumerate(GroupedKFold(n_splits, shuffle=True, random_state=seed).split(X, y2, groups))]
    fitted = _fit_splits(estimator, X, y2, one_column, [split for *_, split in folds], n_jobs, progress,
                         "cross-validation")
    for (s, seed, fold, (train, test)), pred in zip(folds, fitted):
        if pred.shape[1] != k:
            raise InputError(f"the estimator predicts {pred.shape[1]} targets, y has {k}")
        predictions[s, test] = pred
        for t, name in enumerate(names):
            scores = regression_metrics(y2[test, t], pred[:, t],
                                        metrics=[m for m in metrics if m not in omitted[name]])
            rows.append({"seed": seed, "fold": fold, "target": name, "n_train": len(train),
                         "n_test": len(test), **{m: float(v) for m, v in scores.items()}})
    summary = {}
    for name in names:
        mine = [r for r in rows if r["target"] == name]
        summary[name] = {}
        for m in metrics:
            scores = [r[m] for r in mine if m in r]  # r2 is undefined on a test fold without spread
            if scores:
                summary[name][m] = _mean_std(scores)
            elif m not in omitted[name]:
                omitted[name][m] = f"{METRIC_DOMAINS[m][1]}, and no test fold has them"
    return {"folds": rows, "summary": summary, "predictions": predictions, "n_splits": int(n_splits),
            "seeds": seeds, "targets": names, "metrics": list(metrics),
            "omitted": {t: r for t, r in omitted.items() if r}}


def format_summary(result, digits=4):
    """Readable ``target  metric  mean ± std`` lines of a :func:`cross_validate` result.

    Examples
    --------
    >>> print(format_summary({"summary": {"y": {"mae": {"mean": 0.5, "std": 0.1}}}}))
    y  mae  0.5000 ± 0.1000
    """
    lines = []
    for target, scores in result["summary"].items():
        for metric, value in scores.items():
            lines.append(f"{target}  {metric}  {value['mean']:.{digits}f} ± {value['std']:.{digits}f}")
    return "\n".join(lines)


def learning_curve(estimator, X, y, groups, train_sizes=(0.1, 0.2, 0.4, 0.7, 1.0), seeds=(0, 1, 2),
                   test_fraction=0.2, metric="rmse", selection="random", target_names=None, progress=True,
                   n_jobs=1):
    """Test error against training-set size, with group-aware test sets.

    For every seed, whole groups are drawn into a test set of about
    ``test_fraction`` of the samples; the rest is the training pool. Training
    sets of growing size are nested subsets of the pool (taken in one random
    order per seed), so the curve is smooth.

    Parameters
    ----------
    estimator : scikit-learn estimator
    X, y, groups
        As in :func:`cross_validate`.
    train_sizes : sequence of float or int
        Fractions (<= 1.0) of the training pool, or whole numbers of samples
        (> 1), each once (:data:`TRAIN_SIZES`).
    seeds : sequence of int
    test_fraction : float, default 0.2
    metric : str, default "rmse"
    selection : "random" or callable
        A callable ``selection(pool_indices, n, rng) -> indices`` picks the
        training subset (e.g. farthest-point sampling); it must return ``n``
        indices from ``pool_indices``. It is called in this process, point
        by point, before any fit.
    target_names : sequence of str, optional
    progress : bool, default True
    n_jobs : int, default 1
        Points fitted at once on local processes; a chosen Dask cluster
        (:mod:`ml4ms.parallel`) fits them instead. The results do not depend
        on it.

    Returns
    -------
    dict
        ``train_sizes``: (n_sizes,) mean number of training samples;
        ``scores``: ``{target: (n_sizes, n_seeds) array}``; ``mean`` and
        ``std`` (ddof=1): ``{target: (n_sizes,) array}``; ``n_test``; ``metric``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.arange(40.0)[:, None]; y = 2 * X[:, 0]
    >>> out = learning_curve(LinearRegression(), X, y, np.arange(40), train_sizes=(0.5, 1.0),
    ...                      seeds=(0,), progress=False)
    >>> out["train_sizes"].tolist(), bool(out["mean"]["y"].max() < 1e-9)
    ([16.0, 32.0], True)
    """
    y2, one_column = _as_2d(y)
    n, k = y2.shape
    if _n_samples(X) != n:
        raise InputError(f"X has {_n_samples(X)} samples but y has {n}")
    groups = _groups_array(groups, n)
    names = _target_names(target_names, k)
    score = get_metric(metric)
    if isinstance(metric, str):
        check_metric(metric, y2, names)
    if not (selection == "random" or callable(selection)):
        raise InputError(f"unknown selection {selection!r}", hint="use 'random' or a callable")
    sizes_spec = check_value(list(train_sizes), TRAIN_SIZES, "train_sizes")
    seeds = check_value([seeds] if isinstance(seeds, numbers.Integral) else list(seeds), SEEDS, "seeds")
    # every split first (cheap), so that a size too large for a pool is refused before any fit
    splits = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pool, test = group_train_test_split(groups, test_fraction, random_state=rng)
        too_big = [size for size in sizes_spec if size > len(pool)]
        if too_big:
            raise InputError(
                f"train size {too_big[0]:g} exceeds the training pool of {len(pool)} samples "
                f"(seed {seed}: {n} samples less a test set of {len(test)})",
                hint=f"give train sizes (--sizes) up to {len(pool)}, or fractions (<= 1) of the pool")
        resolved = [max(int(round(size * len(pool))) if size <= 1 else int(size), 1) for size in sizes_spec]
        twice = sorted({m for m in resolved if resolved.count(m) > 1})
        if twice:
            raise InputError(f"train sizes {[s for s, m in zip(sizes_spec, resolved) if m == twice[0]]} are all "
                             f"{twice[0]} samples of the pool of {len(pool)} (seed {seed})",
                             hint="give each training-set size once (--sizes)")
        splits.append((rng, pool, test, resolved))
    scores = np.full((len(names), len(sizes_spec), len(seeds)), np.nan)
    used = np.zeros((len(sizes_spec), len(seeds)))
    n_test = []
    points = []  # (size, seed, (train, test)): the training sets are drawn here, in order, before any fit
    for s, (rng, pool, test, resolved) in enumerate(splits):
        n_test.append(len(test))
        order = rng.permutation(pool)
        for a, m in enumerate(resolved):
            if selection == "random":
                train = order[:m]
            else:
                train = np.asarray(selection(pool, m, rng), dtype=np.int64)
                if len(train) != m or not np.isin(train, pool).all():
                    raise InputError("selection must return n indices from the training pool")
            points.append((a, s, (train, test)))
            used[a, s] = m
    fitted = _fit_splits(estimator, X, y2, one_column, [split for *_, split in points], n_jobs, progress,
                         "learning curve")
    for (a, s, (_, test)), pred in zip(points, fitted):
        for t in range(len(names)):
            scores[t, a, s] = score(y2[test, t], pred[:, t])
    ddof = 1 if len(seeds) > 1 else 0
    return {
        "train_sizes": used.mean(axis=1),
        "scores": {name: scores[t] for t, name in enumerate(names)},
        "mean": {name: scores[t].mean(axis=1) for t, name in enumerate(names)},
        "std": {name: scores[t].std(axis=1, ddof=ddof) for t, name in enumerate(names)},
        "n_test": n_test,
        "metric": metric if isinstance(metric, str) else getattr(metric, "__name__", "metric"),
        "targets": names,
    }


__all__ = [
    "GroupedKFold",
    "RepeatedGroupShuffleSplit",
    "SEEDS",
    "TRAIN_SIZES",
    "RepeatedGroupedKFold",
    "check_n_splits",
    "cross_validate",
    "format_summary",
    "group_train_test_split",
    "learning_curve",
]
