"""Regression metrics, per target column.

Every metric takes ``y_true`` and ``y_pred`` of shape ``(n,)`` or ``(n, k)``
and returns a float for 1-D input, else an array of ``k`` values (one per
column; columns are never averaged silently).

>>> regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])["mae"]
0.6666666666666666
"""

import numpy as np

from .errors import InputError


def _check(y_true, y_pred):
    try:
        t = np.asarray(y_true, dtype=float)
        p = np.asarray(y_pred, dtype=float)
    except (TypeError, ValueError):
        raise InputError("targets and predictions must be numbers") from None
    if t.ndim == 2 and p.ndim == 1 and t.shape[1] == 1:
        p = p[:, None]
    if p.ndim == 2 and t.ndim == 1 and p.shape[1] == 1:
        t = t[:, None]
    if t.shape != p.shape or t.ndim not in (1, 2):
        raise InputError(
            f"shape of y_true {t.shape} does not match y_pred {p.shape}",
            hint="give arrays of shape (n,) or (n, n_targets)",
        )
    if t.shape[0] == 0:
        raise InputError("no samples to score")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise InputError("targets or predictions contain NaN or inf", hint="check the model output")
    return t, p


def _out(values, ndim):
    values = np.asarray(values, dtype=float)
    return float(values) if ndim == 1 else values


def mae(y_true, y_pred):
    """Mean absolute error.

    >>> mae([[0, 1], [2, 3]], [[1, 1], [2, 5]])
    array([0.5, 1. ])
    """
    t, p = _check(y_true, y_pred)
    return _out(np.mean(np.abs(p - t), axis=0), t.ndim)


def rmse(y_true, y_pred):
    """Root mean squared error.

    >>> rmse([0.0, 0.0], [3.0, 4.0])
    3.5355339059327378
    """
    t, p = _check(y_true, y_pred)
    return _out(np.sqrt(np.mean((p - t) ** 2, axis=0)), t.ndim)


def rmsle(y_true, y_pred):
    """Root mean squared log error, the NOMAD 2018 Kaggle metric.

    ``sqrt(mean((log1p(max(pred, 0)) - log1p(true))**2))``: predictions are
    clipped at 0 first, as in the competition (Sutton et al. 2019).

    >>> round(rmsle([0.0, 1.0], [-0.5, np.e - 1]), 6)
    0.216978
    """
    t, p = _check(y_true, y_pred)
    if (t <= -1).any():
        raise InputError("rmsle needs targets > -1", hint="use rmse or mae for this target")
    diff = np.log1p(np.clip(p, 0, None)) - np.log1p(t)
    return _out(np.sqrt(np.mean(diff**2, axis=0)), t.ndim)


def max_error(y_true, y_pred):
    """Largest absolute error.

    >>> max_error([1, 2, 3], [1, 2.5, 2])
    1.0
    """
    t, p = _check(y_true, y_pred)
    return _out(np.max(np.abs(p - t), axis=0), t.ndim)


def r2(y_true, y_pred):
    """Coefficient of determination, 1 - SS_res / SS_tot.

    A constant target gives 1.0 for a perfect prediction and 0.0 otherwise
    (as scikit-learn's ``r2_score``).

    >>> r2([1, 2, 3], [1, 2, 3])
    1.0
    """
    t, p = _check(y_true, y_pred)
    ss_res = np.sum((t - p) ** 2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - ss_res / ss_tot
    score = np.where(ss_tot > 0, score, np.where(ss_res == 0, 1.0, 0.0))
    return _out(score, t.ndim)


#: name -> metric function; lower is better except for ``r2``
METRICS = {"mae": mae, "rmse": rmse, "rmsle": rmsle, "max_error": max_error, "r2": r2}

#: metrics where larger values are better
GREATER_IS_BETTER = frozenset({"r2"})


def get_metric(name):
    """The metric function called ``name`` (one of :data:`METRICS`)."""
    if callable(name):
        return name
    if name not in METRICS:
        raise InputError(f"unknown metric '{name}'", hint=f"choose from {', '.join(METRICS)}")
    return METRICS[name]


#: relative variance below which labels count as all equal: var(y) <= R2_RTOL * mean(y²). Labels read from
#: text carry 6 to 10 significant digits and the mean itself is rounded (~1e-16 relative), so a spread of
#: less than 1e-8 of the labels' size is rounding, not data.
R2_RTOL = 1e-16


def _has_spread(y):
    """True for at least 2 labels whose variance is more than rounding (:data:`R2_RTOL`)."""
    y = np.asarray(y, dtype=float).ravel()
    return len(y) >= 2 and float(np.var(y)) > R2_RTOL * float(np.mean(y**2))


#: metrics defined only for some targets: name -> (test of the targets, what it needs)
METRIC_DOMAINS = {
    "rmsle": (lambda y: bool(np.all(y > -1)), "rmsle needs targets > -1 (log1p)"),
    "r2": (_has_spread, "r2 needs at least 2 labels that differ by more than rounding"),
}


def undefined_reason(name, y_true):
    """Why metric ``name`` cannot be computed for targets ``y_true``, or None if it can.

    Examples
    --------
    >>> undefined_reason("rmsle", [-2.0, 0.5])
    'rmsle needs targets > -1 (log1p)'
    >>> undefined_reason("r2", [3.4387] * 6)
    'r2 needs at least 2 labels that differ by more than rounding'
    >>> undefined_reason("mae", [-2.0, 0.5]) is None
    True
    """
    if name in METRIC_DOMAINS and not METRIC_DOMAINS[name][0](np.asarray(y_true, dtype=float)):
        return METRIC_DOMAINS[name][1]
    return None


def check_metric(name, y_true, target_names=None, source=None):
    """Raise :class:`~ml4ms.errors.InputError` before a run whose metric cannot be computed for a target."""
    y = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    names = list(target_names or [f"target {j}" for j in range(y.shape[1])])
    for j in range(y.shape[1]):
        reason = undefined_reason(name, y[:, j])
        if reason:
            raise InputError(f"metric {name} cannot be computed for {names[j]}: {reason}", source=source,
                             hint="choose --metric mae or rmse")


def regression_metrics(y_true, y_pred, metrics=("mae", "rmse", "rmsle", "max_error", "r2")):
    """Several metrics at once.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, k)
    metrics : sequence of str
        Names from :data:`METRICS`. A metric is skipped (left out of the
        result) where it is undefined (:data:`METRIC_DOMAINS`): ``rmsle``
        when a target is <= -1, ``r2`` for fewer than 2 labels or labels
        without spread.

    Returns
    -------
    dict
        ``name -> float`` (1-D input) or ``name -> ndarray (k,)``.

    Examples
    --------
    >>> scores = regression_metrics([0.1, 0.2, 0.4], [0.1, 0.3, 0.3])
    >>> sorted(scores)
    ['mae', 'max_error', 'r2', 'rmse', 'rmsle']
    >>> round(scores["rmse"], 4)
    0.0816
    """
    t, p = _check(y_true, y_pred)
    if t.ndim == 2 and np.asarray(y_true).ndim == 1:
        t, p = t[:, 0], p[:, 0]
    out = {}
    for name in metrics:
        if undefined_reason(name, t) is None:
            out[name] = get_metric(name)(t, p)
    return out


__all__ = ["GREATER_IS_BETTER", "METRICS", "METRIC_DOMAINS", "R2_RTOL", "check_metric", "get_metric", "mae",
           "max_error", "r2", "regression_metrics", "rmse", "rmsle", "undefined_reason"]
