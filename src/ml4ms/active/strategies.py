"""Pool-based acquisition: scores of the candidates, and the batch chosen from them.

Pure functions of arrays, seeded where they draw: the loop (:mod:`ml4ms.active.loop`)
passes them the model's predictions on the candidates and keeps the result.

Scores (larger is better):

* ``uncertainty``: the model's standard deviation ``σ(x)`` (a GP's predictive
  std, a committee's calibrated spread): label where the model knows least.
* ``ei``: expected improvement over the best label so far ``y*`` (Jones,
  Schonlau and Welch, J. Glob. Optim. 13, 455 (1998)); for a minimum, with
  ``I = y* − ξ − μ`` and ``z = I/σ``, ``EI = I Φ(z) + σ φ(z)``.
* ``ucb``: the upper confidence bound ``μ + κσ`` when maximising, the lower one
  ``−(μ − κσ)`` when minimising (Srinivas et al., ICML 2010).
* ``random``: seeded uniform draws (the baseline).
* ``fps``: no model: farthest-point sampling in descriptor space that goes on
  from the structures labelled so far (:func:`farthest_from`); the batch is
  the greedy sequence itself, so the scores are not used.

:func:`choose_batch` takes the best-scored candidates; with ``diversity`` it
runs farthest-point sampling (:func:`ml4ms.selection.farthest_point_sampling`)
in descriptor space over a shortlist of the best-scored, so that one batch
does not spend its labels on near copies.

Examples
--------
>>> mean, std = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.1, 0.1])
>>> acquisition_scores("uncertainty", mean, std).tolist()
[0.5, 0.1, 0.1]
>>> int(np.argmax(acquisition_scores("ei", mean, std, best=-0.5)))
2
>>> choose_batch(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist()
[1, 3]
"""

import numpy as np
from scipy.special import ndtr

from ..errors import InputError

#: the strategies of the pool, by name
STRATEGIES = ("uncertainty", "ei", "ucb", "random", "fps")
#: what "goal" may say for ei and ucb
GOALS = ("minimize", "maximize")


def expected_improvement(mean, std, best, goal="minimize", xi=0.0):
    """Expected improvement of each candidate over ``best``.

    Parameters
    ----------
    mean, std : ndarray, shape (n,)
        The model's predictive mean and standard deviation (``std >= 0``).
    best : float
        The best label so far (the lowest when minimising).
    goal : {"minimize", "maximize"}
    xi : float, default 0
        Improvements smaller than ``xi`` (in the target's unit) do not count:
        larger values explore more.

    Returns
    -------
    ndarray, shape (n,)
        ``E[max(0, improvement)]``; where ``std`` is 0 the improvement itself.

    Examples
    --------
    >>> expected_improvement(np.array([0.0, 0.0]), np.array([0.0, 1.0]), best=0.0).round(4).tolist()
    [0.0, 0.3989]
    >>> expected_improvement(np.array([2.0]), np.array([0.0]), best=1.0, goal="maximize").tolist()
    [1.0]
    """
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    gain = (best - xi - mean) if goal == "minimize" else (mean - best - xi)
    safe = np.where(std > 0, std, 1.0)
    z = gain / safe
    ei = gain * ndtr(z) + std * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return np.where(std > 0, np.maximum(ei, 0.0), np.maximum(gain, 0.0))


def confidence_bound(mean, std, goal="minimize", kappa=2.0):
    """The optimistic bound of each candidate as a score: ``μ + κσ`` (maximise), ``κσ − μ`` (minimise).

    Examples
    --------
    >>> confidence_bound(np.array([1.0, 0.0]), np.array([0.0, 0.4]), kappa=2.0).tolist()
    [-1.0, 0.8]
    """
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    return mean + kappa * std if goal == "maximize" else kappa * std - mean


def acquisition_scores(name, mean=None, std=None, best=None, goal="minimize", xi=0.0, kappa=2.0, seed=0):
    """The score of every candidate under the strategy ``name`` (:data:`STRATEGIES`); larger is better.

    ``mean`` and ``std`` are the model's predictions on the candidates; ``best``
    the best label so far (``ei``); ``seed`` the draws of ``random`` (which
    needs only ``len(mean)``, or ``mean`` an int: the number of candidates).

    Examples
    --------
    >>> acquisition_scores("random", 3, seed=1).round(3).tolist()
    [0.512, 0.95, 0.144]
    """
    if name == "random":
        n = mean if isinstance(mean, (int, np.integer)) else len(mean)
        return np.random.default_rng(seed).random(n)
    if std is None or not np.all(np.isfinite(std)):
        raise InputError(f"strategy '{name}' needs the model's standard deviations, and some are missing or not "
                         "finite", hint="use a model with an uncertainty (gp, committee, ensemble, bayesian_ridge)")
    if name == "uncertainty":
        return np.asarray(std, dtype=float).copy()
    if name == "ei":
        return expected_improvement(mean, std, best, goal=goal, xi=xi)
    if name == "ucb":
        return confidence_bound(mean, std, goal=goal, kappa=kappa)
    raise InputError(f"unknown strategy '{name}'", hint=f"choose one of {', '.join(STRATEGIES)}")


def farthest_from(candidates, labelled, n, chunk=2048):
    """Farthest-point sampling of ``n`` rows of ``candidates`` that goes on from the rows of ``labelled``.

    Each pick is the candidate farthest (Euclidean) from everything labelled or
    picked before it; ties go to the first. Distances to the labelled set are
    computed in chunks of ``chunk`` candidates (as matrix products).

    Examples
    --------
    >>> farthest_from(np.array([[0.0], [1.0], [3.0], [9.0]]), np.array([[10.0]]), 2).tolist()
    [0, 2]
    """
    C = np.asarray(candidates, dtype=float)
    L = np.asarray(labelled, dtype=float).reshape(-1, C.shape[1])
    n = min(int(n), len(C))
    c2 = np.einsum("ij,ij->i", C, C)
    nearest = np.full(len(C), np.inf)
    if len(L):
        l2 = np.einsum("ij,ij->i", L, L)
        for lo in range(0, len(C), chunk):
            d2 = c2[lo:lo + chunk, None] + l2[None, :] - 2.0 * C[lo:lo + chunk] @ L.T
            nearest[lo:lo + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    picked = np.empty(n, dtype=int)
    for k in range(n):
        j = int(np.argmax(nearest))
        picked[k] = j
        nearest[j] = -1.0
        d = np.sqrt(np.maximum(c2 + c2[j] - 2.0 * (C @ C[j]), 0.0))
        np.minimum(nearest, d, out=nearest, where=nearest >= 0)
    return picked


def ranked(scores, seed=0):
    """Candidate indices from the best score to the worst; ties in a seeded random order.

    Examples
    --------
    >>> ranked(np.array([1.0, 3.0, 2.0])).tolist()
    [1, 2, 0]
    """
    scores = np.asarray(scores, dtype=float)
    tie_break = np.random.default_rng(seed).random(len(scores))
    return np.lexsort((tie_break, -scores))


def choose_batch(scores, n, features=None, diversity=False, shortlist=4.0, seed=0):
    """The ``n`` candidates to label: the best-scored, or a diverse set among the best.

    Parameters
    ----------
    scores : ndarray, shape (n_candidates,)
        From :func:`acquisition_scores` (larger is better).
    n : int
        How many to choose (fewer when there are fewer candidates).
    features : ndarray, shape (n_candidates, n_features), optional
        The candidates in descriptor space; needed with ``diversity``.
    diversity : bool, default False
        Run farthest-point sampling over the ``ceil(shortlist * n)``
        best-scored candidates, starting from the best. A candidate that
        duplicates one already chosen (distance 0) is never taken: the
        shortlist grows instead, and if the whole pool holds fewer than ``n``
        distinct candidates, fewer are returned.
    shortlist : float, default 4
        The shortlist, in units of ``n`` (>= 1).
    seed : int
        Order of tied scores.

    Returns
    -------
    ndarray of int
        Indices into ``scores``, in the order chosen, all distinct.

    Examples
    --------
    >>> X = np.array([[0.0], [0.0], [1.0], [5.0]])
    >>> choose_batch(np.array([0.9, 0.8, 0.7, 0.1]), 2, X, diversity=True, shortlist=1.5).tolist()
    [0, 2]
    """
    from ..selection import farthest_point_sampling

    order = ranked(scores, seed)
    n = min(int(n), len(order))
    if n <= 0:
        return np.zeros(0, dtype=int)
    if not diversity:
        return order[:n]
    X = np.asarray(features, dtype=float)
    size = max(n, int(np.ceil(float(shortlist) * n)))
    while True:
        short = order[:size]
        picked, dist = farthest_point_sampling(X[short].T, min(n, len(short)), return_distances=True)
        distinct = dist > 0
        if distinct.all() or size >= len(order):
            return short[picked[distinct]]
        size = min(len(order), 2 * size)
