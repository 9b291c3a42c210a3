"""Sure independence screening (SIS) and exhaustive l0 regression, vectorised.

* :func:`screen` streams through a :class:`~ml4ms.sisso.features.FeatureSpace`
  and keeps the ``k`` best-scoring distinct features (duplicates up to an affine
  map are dropped; the earliest, i.e. the simplest, is kept).
* :func:`l0_regression` solves every least-squares problem over all
  combinations of ``dim`` candidate features at once (batched normal
  equations), with one model per task, then re-checks the best few with
  ``lstsq``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> F = rng.normal(size=(30, 6)); y = 2 * F[:, 1] - F[:, 4] + 0.5
>>> l0_regression(F, y, 2)["columns"]
[1, 4]
"""

import itertools
import math

import numpy as np


def _standardized_hash(vals):
    """Keys equal for columns that are affine images of each other (sign included)."""
    with np.errstate(all="ignore"):
        z = vals - vals.mean(axis=0)
        z /= np.sqrt((z * z).sum(axis=0))
    first = z[np.argmax(np.abs(z) > 1e-6, axis=0), np.arange(z.shape[1])]
    z *= np.where(first < 0, -1.0, 1.0)
    z = np.round(z, 7) + 0.0
    return [col.tobytes() for col in z.T]


def regression_scorer(residual, tasks=None):
    """Score = the absolute Pearson correlation with the residual (RMS over tasks).

    With one task the returned function expects centred unit-norm columns (as
    yielded by :meth:`FeatureSpace.iter_batches`) and is a single matrix-vector
    product.
    """
    groups = _task_groups(len(residual), tasks)
    if tasks is None:
        r = residual - residual.mean()
        r = r / (np.linalg.norm(r) or 1.0)
        return lambda z: np.abs(r @ z)
    parts = []
    for idx in groups:
        r = residual[idx] - residual[idx].mean()
        parts.append((idx, r / (np.linalg.norm(r) or 1.0)))

    def score(vals):
        total = np.zeros(vals.shape[1])
        for idx, r in parts:
            v = vals[idx]
            v = v - v.mean(axis=0)
            norm = np.sqrt(np.einsum("ij,ij->j", v, v))
            with np.errstate(all="ignore"):
                c = np.abs(r @ v) / norm
            total += np.where(np.isfinite(c), c, 0.0) ** 2
        return np.sqrt(total / len(parts))

    return score


def _task_groups(n, tasks):
    if tasks is None:
        return [np.arange(n)]
    tasks = np.asarray(tasks)
    return [np.flatnonzero(tasks == t) for t in np.unique(tasks)]


def screen(space, score_fn, k, exclude=()):
    """Stream through ``space``; return the ``k`` best distinct features.

    Parameters
    ----------
    space : FeatureSpace
    score_fn : callable
        ``(n_samples, b)`` values -> ``(b,)`` scores, higher is better.
    k : int
    exclude : iterable of bytes
        Hashes (see :func:`feature_hashes`) of features not to return again.

    Returns
    -------
    values : ndarray (n_samples, <=k)
        The kept features as yielded by the space (centred, unit norm).
    keys : ndarray (<=k, 3)
    scores : ndarray (<=k,)
    """
    exclude = set(exclude)
    n = space.values.shape[0]
    pool_v = np.empty((n, 0))
    pool_k = np.empty((0, 3), dtype=np.int64)
    pool_s = np.empty(0)
    for vals, keys in space.iter_batches():
        s = score_fn(vals)
        if len(pool_s) >= k:
            cand = np.flatnonzero(s >= pool_s[-1])  # pool sorted, last = k-th best
        else:
            cand = np.arange(len(s))
        if len(cand) > 4 * k + len(exclude):
            top = np.argpartition(-s[cand], 4 * k + len(exclude) - 1)[: 4 * k + len(exclude)]
            cand = np.sort(cand[top])
        if len(cand) == 0:
            continue
        all_v = np.concatenate([pool_v, vals[:, cand]], axis=1)
        all_k = np.concatenate([pool_k, keys[cand]], axis=0)
        all_s = np.concatenate([pool_s, s[cand]])
        # best score first; ties (duplicates): simplest formula, then the smallest key,
        # so that the result does not depend on the batch size
        cplx = space.key_complexity(all_k)
        order = np.lexsort((all_k[:, 2], all_k[:, 1], all_k[:, 0], cplx, -np.round(all_s, 10)))
        hashes = _standardized_hash(all_v[:, order])
        chosen, seen = [], set(exclude)
        for pos, h in zip(order, hashes):
            if h in seen:
                continue
            seen.add(h)
            chosen.append(pos)
            if len(chosen) == k:
                break
        chosen = np.array(chosen, dtype=int)
        pool_v, pool_k, pool_s = all_v[:, chosen], all_k[chosen], all_s[chosen]
    return pool_v, pool_k, pool_s


def feature_hashes(values):
    """Hashes used by :func:`screen` to recognise a feature (up to an affine map)."""
    return _standardized_hash(np.asarray(values, dtype=float))


def combinations_array(m, d, chunk=200000):
    """Yield arrays of shape ``(<=chunk, d)`` with all combinations of ``range(m)``."""
    it = itertools.combinations(range(m), d)
    while True:
        block = np.fromiter(itertools.chain.from_iterable(itertools.islice(it, chunk)), dtype=np.int64)
        if block.size == 0:
            return
        yield block.reshape(-1, d)


def l0_regression(F, y, dim, tasks=None, n_check=20):
    """Best least-squares model on ``dim`` columns of ``F`` (all combinations).

    Returns
    -------
    dict
        ``columns`` (list of int), ``coefficients`` (n_tasks, dim),
        ``intercepts`` (n_tasks,), ``rmse``, ``max_ae``, ``prediction``.
    """
    F = np.asarray(F, dtype=float)
    y = np.asarray(y, dtype=float)
    n, m = F.shape
    groups = _task_groups(n, tasks)
    scale = F.std(axis=0)
    scale[scale == 0] = 1.0
    grams, rhs, yys = [], [], []
    for idx in groups:
        Fc = (F[idx] - F[idx].mean(axis=0)) / scale
        yc = y[idx] - y[idx].mean()
        grams.append(Fc.T @ Fc)
        rhs.append(Fc.T @ yc)
        yys.append(yc @ yc)
    ridge = 1e-10 * n * np.eye(dim)
    best_sse = np.empty(0)
    best_combo = np.empty((0, dim), dtype=np.int64)
    for combos in combinations_array(m, dim):
        sse = np.zeros(len(combos))
        for G, b, yy in zip(grams, rhs, yys):
            Gs = G[combos[:, :, None], combos[:, None, :]] + ridge
            bs = b[combos]
            coef = np.linalg.solve(Gs, bs[:, :, None])[:, :, 0]
            sse += yy - np.einsum("ij,ij->i", bs, coef)
        keep = min(n_check, len(sse))
        top = np.argpartition(sse, keep - 1)[:keep]
        best_sse = np.concatenate([best_sse, sse[top]])
        best_combo = np.concatenate([best_combo, combos[top]])
        if len(best_sse) > n_check:
            top = np.argsort(best_sse)[:n_check]
            best_sse, best_combo = best_sse[top], best_combo[top]
    best = None
    for combo in best_combo[np.argsort(best_sse)]:
        fit = _exact_fit(F[:, combo], y, groups)
        if best is None or fit["rmse"] < best["rmse"] - 1e-12:
            best = dict(fit, columns=[int(c) for c in combo])
    return best


def fit_linear(A, y, tasks=None):
    """Least squares with intercept (one per task) on the columns of ``A``."""
    y = np.asarray(y, dtype=float)
    return _exact_fit(np.asarray(A, dtype=float), y, _task_groups(len(y), tasks))


def _exact_fit(A, y, groups):
    pred = np.empty_like(y)
    coefs, intercepts = [], []
    for idx in groups:
        M = np.column_stack([A[idx], np.ones(len(idx))])
        sol, *_ = np.linalg.lstsq(M, y[idx], rcond=None)
        coefs.append(sol[:-1])
        intercepts.append(sol[-1])
        pred[idx] = M @ sol
    err = pred - y
    return {
        "coefficients": np.array(coefs),
        "intercepts": np.array(intercepts),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "max_ae": float(np.max(np.abs(err))),
        "prediction": pred,
    }


def n_combinations(m, d):
    """Number of combinations (for progress reports)."""
    return math.comb(m, d)
