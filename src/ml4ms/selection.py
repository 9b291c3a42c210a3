"""Choosing representative samples or features: farthest-point sampling and CUR.

Both are greedy: at every step the candidate that scores highest is taken and
the scores are updated. The two functions :func:`farthest_point_sampling` and
:func:`cur_selection` hold the maths and treat the **columns** of a matrix as
candidates; the classes :class:`FPS` and :class:`CUR` pick samples (rows of
``X``) or features (columns of ``X``) with one argument, ``kind``, by passing
``X.T`` or ``X`` to them.

* **FPS** (farthest-point sampling): start from one point, then repeatedly take
  the point farthest from all points chosen so far (the min-max criterion).
  The distance at which each point was taken (``hausdorff_``) decreases
  monotonically and tells how well the selection covers the data.
* **CUR**: M. W. Mahoney and P. Drineas, *CUR matrix decompositions for
  improved data analysis*, PNAS 106, 697 (2009); used for descriptor and
  reference-environment selection by G. Imbalzano, A. Anelli, D. Giofré,
  S. Klees, J. Behler and M. Ceriotti, J. Chem. Phys. 148, 241730 (2018).
  The leverage score of column ``j`` is ``π_j = (1/k) Σ_{i<k} v_ij²`` with
  ``v_i`` the top-``k`` right singular vectors. We use the deterministic
  greedy variant: take the column with the largest leverage, then
  orthogonalise every column against it
  (``A ← A − a_c (a_cᵀ A) / |a_c|²``), recompute the leverages of the
  remainder and repeat. When the remainder has no variance left (more columns
  requested than the rank of ``A``), the rest are taken in order of their
  leverage in the original matrix.

Examples
--------
>>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0]])
>>> farthest_point_sampling(X.T, 3).tolist()
[0, 2, 3]
>>> FPS(n_to_select=2, kind="feature").fit(X).selected_idx_.tolist()
[0, 1]
"""

import numbers

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from .errors import InputError

KINDS = ("sample", "feature")
#: show a progress bar when selecting at least this many candidates
PROGRESS_MIN = 200


def _progress(n, show, desc):
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=desc, disable=not (show and n >= PROGRESS_MIN), leave=False)


def _as_matrix(A):
    A = np.asarray(A, dtype=float)
    if A.ndim != 2:
        raise InputError(f"selection needs a 2-D array, got {A.ndim}-D")
    if not np.all(np.isfinite(A)):
        raise InputError("selection input contains NaN or inf", hint="fix or drop those rows/columns")
    return A


def _check_n(n, n_candidates):
    if n is None:
        return n_candidates
    if isinstance(n, (numbers.Real, np.floating)) and not isinstance(n, (numbers.Integral, np.integer, bool)):
        if not 0 < n <= 1:
            raise InputError(f"a fraction to select must be in (0, 1], got {n}")
        return max(1, int(round(n * n_candidates)))
    n = int(n)
    if not 1 <= n <= n_candidates:
        raise InputError(f"cannot select {n} of {n_candidates} candidates",
                         hint=f"choose a number between 1 and {n_candidates}")
    return n


def farthest_point_sampling(A, n, *, start=0, metric="euclidean", return_distances=False, progress=False):
    """Farthest-point sampling of the columns of ``A``.

    Parameters
    ----------
    A : array-like, shape (n_dims, n_candidates)
        Candidates are the **columns** (pass ``X.T`` to choose rows of ``X``).
    n : int
        Number of columns to select.
    start : int, default 0
        Index of the first column.
    metric : str, default "euclidean"
        Any metric of :func:`scipy.spatial.distance.cdist`.
    return_distances : bool, default False
        Also return, for each selected column, its distance to the closest
        column selected before it (``inf`` for the first).
    progress : bool, default False
        Progress bar for long selections.

    Returns
    -------
    idx : ndarray of int, shape (n,)
    distances : ndarray, shape (n,)
        Only with ``return_distances``.

    Every column is chosen at most once; among columns at the same distance
    (duplicates) the first unchosen one is taken.

    Examples
    --------
    >>> A = np.array([[0.0, 1.0, 10.0, 4.0]])
    >>> farthest_point_sampling(A, 3, return_distances=True)
    (array([0, 2, 3]), array([inf, 10.,  4.]))
    >>> farthest_point_sampling(np.zeros((2, 4)), 3).tolist()
    [0, 1, 2]
    """
    P = _as_matrix(A).T  # one point per row
    n = _check_n(n, len(P))
    if not 0 <= int(start) < len(P):
        raise InputError(f"start index {start} is outside 0..{len(P) - 1}")
    idx = np.empty(n, dtype=int)
    dist = np.empty(n)
    idx[0], dist[0] = int(start), np.inf
    nearest = cdist(P[idx[:1]], P, metric)[0]  # distance of every point to the selection
    nearest[idx[0]] = -1.0  # never pick a point twice: ties (duplicates at distance 0) go to the first unchosen
    with _progress(n, progress, "FPS") as bar:
        bar.update(1)
        for k in range(1, n):
            j = int(np.argmax(nearest))
            idx[k], dist[k] = j, nearest[j]
            np.minimum(nearest, cdist(P[j:j + 1], P, metric)[0], out=nearest)
            nearest[idx[: k + 1]] = -1.0  # never pick a point twice (duplicates have distance 0)
            bar.update(1)
    return (idx, dist) if return_distances else idx


def leverage_scores(A, k=1):
    """Leverage of each column of ``A``: mean squared entry of the top-``k`` right singular vectors.

    Computed from the eigenvectors of the smaller of ``AᵀA`` and ``AAᵀ``.

    Examples
    --------
    >>> leverage_scores(np.array([[3.0, 0.0, 1.0], [0.0, 1.0, 0.0]])).round(3)
    array([0.9, 0. , 0.1])
    """
    from scipy.linalg import eigh

    A = _as_matrix(A)
    m, c = A.shape
    k = max(1, min(int(k), m, c))
    if c <= m:
        w, V = eigh(A.T @ A, subset_by_index=[c - k, c - 1])
    else:
        w, U = eigh(A @ A.T, subset_by_index=[m - k, m - 1])
        s = np.sqrt(np.clip(w, 0.0, None))
        V = (A.T @ U) / np.where(s > 0, s, 1.0)
        V[:, s <= 0] = 0.0
    return np.mean(V**2, axis=1)


def cur_selection(A, n, *, k=1, orthogonalize=True, return_scores=False, progress=False):
    """Greedy CUR selection of the columns of ``A`` by leverage score.

    Parameters
    ----------
    A : array-like, shape (n_dims, n_candidates)
        Candidates are the **columns** (pass ``X.T`` to choose rows of ``X``).
    n : int
        Number of columns to select.
    k : int, default 1
        Number of singular vectors in the leverage score.
    orthogonalize : bool, default True
        Orthogonalise the remaining columns against each chosen one and
        recompute the leverages (the greedy scheme of Imbalzano et al. 2018);
        if False, take the ``n`` largest leverages of ``A`` at once.
    return_scores : bool, default False
        Also return the leverage each column had when it was chosen.
    progress : bool, default False

    Returns
    -------
    idx : ndarray of int, shape (n,)
    scores : ndarray, shape (n,)
        Only with ``return_scores``.

    Examples
    --------
    >>> A = np.array([[3.0, 0.0, 2.9], [0.0, 1.0, 0.1]])
    >>> cur_selection(A, 2).tolist()
    [0, 1]
    """
    A = _as_matrix(A)
    m, c = A.shape
    n = _check_n(n, c)
    k = max(1, min(int(k), m, c))
    first = leverage_scores(A, k)
    if not orthogonalize:
        idx = np.argsort(-first, kind="stable")[:n]
        return (idx, first[idx]) if return_scores else idx
    # Orthogonalising the columns, A <- (I - a aᵀ/|a|²) A, is a rank-1 update of the smaller
    # Gram matrix, so each step costs O(min(m, c)²) plus a few Lanczos iterations.
    tall = c <= m
    G = A.T @ A if tall else A @ A.T
    R = None if tall else A.copy()
    total = float(np.trace(G)) or 1.0
    chosen = np.zeros(c, dtype=bool)
    idx, scores = [], []
    v0 = None
    with _progress(n, progress, "CUR") as bar:
        while len(idx) < n:
            if float(np.trace(G)) <= 1e-12 * total:  # nothing left: fall back on the original leverages
                rest = np.flatnonzero(~chosen)
                rest = rest[np.argsort(-first[rest], kind="stable")][: n - len(idx)]
                idx.extend(int(j) for j in rest)
                scores.extend([0.0] * len(rest))
                bar.update(len(rest))
                break
            w, V = _top_eigenvectors(G, k, v0)
            v0 = V[:, -1]
            if not tall:  # right singular vectors from the left ones: v = Rᵀu / s
                s = np.sqrt(np.clip(w, 0.0, None))
                V = (R.T @ V) / np.where(s > 0, s, 1.0)
                V[:, s <= 0] = 0.0
            pi = np.mean(V**2, axis=1)
            pi[chosen] = -1.0
            j = int(np.argmax(pi))
            idx.append(j)
            scores.append(float(pi[j]))
            chosen[j] = True
            if tall:
                g = G[:, j].copy()
                if g[j] > 0:
                    G -= np.outer(g, g) / g[j]
                G[j, :] = 0.0
                G[:, j] = 0.0
            else:
                a = R[:, j].copy()
                norm2 = float(a @ a)
                if norm2 > 0:
                    R -= np.outer(a, (a @ R) / norm2)
                    Ga = G @ a / norm2
                    G += np.outer(a, a) * float(a @ Ga) / norm2 - np.outer(a, Ga) - np.outer(Ga, a)
                R[:, j] = 0.0
            bar.update(1)
    idx = np.asarray(idx, dtype=int)
    return (idx, np.asarray(scores)) if return_scores else idx


def _top_eigenvectors(G, k, v0=None):
    """Top-``k`` eigenpairs of the symmetric PSD matrix ``G`` (ascending order)."""
    from scipy.linalg import eigh

    d = G.shape[0]
    if d <= 300 or k >= d // 4:
        return eigh(G, subset_by_index=[d - k, d - 1])
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    if v0 is None or not np.any(v0):
        v0 = np.random.default_rng(0).normal(size=d)
    try:
        w, V = eigsh(G, k=k, which="LA", v0=v0, tol=1e-10)
    except ArpackNoConvergence:
        return eigh(G, subset_by_index=[d - k, d - 1])
    order = np.argsort(w)
    return w[order], V[:, order]


class _Selector(BaseEstimator):
    """Shared configuration and fitted state of :class:`FPS` and :class:`CUR`."""

    def _candidates(self, X):
        if self.kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}, not '{self.kind}'")
        X = validate_data(self, X, ensure_min_samples=1)
        return X.T if self.kind == "sample" else X

    def _select(self, A):
        raise NotImplementedError

    def fit(self, X, y=None):
        """Select samples (``kind="sample"``) or features (``kind="feature"``) of ``X``; returns self."""
        A = self._candidates(X)
        n = _check_n(self.n_to_select, A.shape[1])
        self.n_candidates_ = A.shape[1]
        self.selected_idx_ = self._select(A, n)
        self.n_selected_ = len(self.selected_idx_)
        return self

    def get_support(self, indices=False):
        """Boolean mask (or the indices, in selection order) of the selected candidates."""
        check_is_fitted(self, "selected_idx_")
        if indices:
            return self.selected_idx_
        mask = np.zeros(self.n_candidates_, dtype=bool)
        mask[self.selected_idx_] = True
        return mask

    def transform(self, X):
        """The selected columns of ``X`` (feature selectors only)."""
        check_is_fitted(self, "selected_idx_")
        if self.kind != "feature":
            raise InputError("a sample selector does not transform",
                             hint="index the rows yourself: X[selector.selected_idx_]")
        X = validate_data(self, X, reset=False)
        return X[:, self.selected_idx_]

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


class FPS(_Selector):
    """Farthest-point sampling of samples or features (see :func:`farthest_point_sampling`).

    Parameters
    ----------
    n_to_select : int, float or None, default None
        How many to select: a number, a fraction in (0, 1], or all (None).
    kind : {"sample", "feature"}, default "sample"
        Select rows (samples) or columns (features) of ``X``.
    start : int or "random", default 0
        First candidate; ``"random"`` draws it with ``random_state``.
    random_state : int, RandomState or None
    metric : str, default "euclidean"
    progress : bool, default True
        Progress bar when selecting 200 or more.

    Attributes
    ----------
    selected_idx_ : ndarray of int
        Indices in selection order.
    hausdorff_ : ndarray
        Distance of each selected candidate to those selected before it.
    n_selected_ : int

    Examples
    --------
    >>> X = np.array([[0.0], [0.2], [1.0], [0.5]])
    >>> FPS(n_to_select=3).fit(X).selected_idx_.tolist()
    [0, 2, 3]
    """

    def __init__(self, *, n_to_select=None, kind="sample", start=0, random_state=None, metric="euclidean",
                 progress=True):
        self.n_to_select = n_to_select
        self.kind = kind
        self.start = start
        self.random_state = random_state
        self.metric = metric
        self.progress = progress

    def _select(self, A, n):
        start = self.start
        if isinstance(start, str):
            if start != "random":
                raise InputError(f"start must be an index or 'random', not '{start}'")
            start = int(check_random_state(self.random_state).randint(A.shape[1]))
        idx, self.hausdorff_ = farthest_point_sampling(A, n, start=start, metric=self.metric,
                                                       return_distances=True, progress=self.progress)
        return idx


class CUR(_Selector):
    """CUR selection of samples or features by leverage score (see :func:`cur_selection`).

    Parameters
    ----------
    n_to_select : int, float or None, default None
        How many to select: a number, a fraction in (0, 1], or all (None).
    kind : {"sample", "feature"}, default "sample"
    k : int, default 1
        Number of singular vectors in the leverage score.
    orthogonalize : bool, default True
        Greedy selection with orthogonalisation (recommended).
    progress : bool, default True

    Attributes
    ----------
    selected_idx_ : ndarray of int
    scores_ : ndarray
        Leverage of each candidate when it was selected.
    n_selected_ : int

    Examples
    --------
    >>> X = np.array([[3.0, 0.0, 2.9], [0.0, 1.0, 0.1]])
    >>> CUR(n_to_select=2, kind="feature").fit(X).selected_idx_.tolist()
    [0, 1]
    """

    def __init__(self, *, n_to_select=None, kind="sample", k=1, orthogonalize=True, progress=True):
        self.n_to_select = n_to_select
        self.kind = kind
        self.k = k
        self.orthogonalize = orthogonalize
        self.progress = progress

    def _select(self, A, n):
        idx, self.scores_ = cur_selection(A, n, k=self.k, orthogonalize=self.orthogonalize,
                                          return_scores=True, progress=self.progress)
        return idx


__all__ = ["CUR", "FPS", "cur_selection", "farthest_point_sampling", "leverage_scores"]
