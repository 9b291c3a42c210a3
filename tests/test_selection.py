"""Farthest-point sampling and CUR: against brute force, on constructed matrices, and the estimator API."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ml4ms.errors import InputError
from ml4ms.selection import CUR, FPS, cur_selection, farthest_point_sampling, leverage_scores


def _brute_force_fps(P, n, start):
    """Reference: at each step, recompute every point's distance to the whole selection."""
    chosen = [start]
    for _ in range(n - 1):
        d = cdist(P, P[chosen]).min(axis=1)
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fps_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(150, 4)) * [1.0, 2.0, 0.5, 3.0]
    idx, dist = farthest_point_sampling(P.T, 25, start=seed, return_distances=True)
    assert idx.tolist() == _brute_force_fps(P, 25, seed)
    # each point was the farthest one from the points chosen before it
    for k in range(1, 25):
        assert dist[k] == pytest.approx(cdist(P[idx[k:k + 1]], P[idx[:k]]).min())
    assert np.all(np.diff(dist[1:]) <= 1e-12)  # the covering radius never grows
    assert len(set(idx.tolist())) == 25


def test_fps_metric_and_duplicates():
    P = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    idx = farthest_point_sampling(P.T, 5, metric="cityblock")
    assert sorted(idx.tolist()) == [0, 1, 2, 3, 4]  # duplicates are taken, never a point twice
    assert idx[:3].tolist() == [0, 2, 3]


def test_fps_random_start_is_reproducible():
    X = np.random.default_rng(3).normal(size=(100, 3))
    a = FPS(n_to_select=10, start="random", random_state=7).fit(X).selected_idx_
    b = FPS(n_to_select=10, start="random", random_state=7).fit(X).selected_idx_
    c = FPS(n_to_select=10, start="random", random_state=8).fit(X).selected_idx_
    assert a.tolist() == b.tolist()
    assert a[0] != c[0]


def test_fps_features_and_transform():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    X[:, 3] = X[:, 0] + 1e-3 * rng.normal(size=40)  # near-copy of feature 0
    sel = FPS(n_to_select=5, kind="feature").fit(X)
    assert sel.selected_idx_[0] == 0 and 3 not in sel.selected_idx_.tolist()
    assert np.array_equal(sel.transform(X), X[:, sel.selected_idx_])
    assert sel.get_support().sum() == 5 and sel.get_support().shape == (6,)
    assert FPS(n_to_select=0.5, kind="feature").fit(X).n_selected_ == 3


def test_cur_picks_largest_leverage_first():
    rng = np.random.default_rng(1)
    # rank-1 dominant direction carried mostly by column 4, plus weak noise
    u = rng.normal(size=50)
    X = 0.01 * rng.normal(size=(50, 8))
    X += np.outer(u, [0.1, 0.2, 0.05, 0.3, 2.0, 0.1, 0.0, 0.4])
    pi = leverage_scores(X, k=1)
    assert int(np.argmax(pi)) == 4
    assert cur_selection(X, 3)[0] == 4
    assert CUR(n_to_select=3, kind="feature").fit(X).selected_idx_[0] == 4
    # samples: the row with the largest weight on the dominant direction comes first
    assert CUR(n_to_select=1).fit(X).selected_idx_[0] == int(np.argmax(leverage_scores(X.T)))
    assert int(np.argmax(np.abs(u))) == CUR(n_to_select=1).fit(X).selected_idx_[0]


def test_cur_orthogonalisation_avoids_redundant_columns():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 60))
    X = np.column_stack([3 * a, 2.9 * a + 0.01 * b, b])  # column 1 repeats column 0
    assert cur_selection(X, 2).tolist() == [0, 2]
    assert cur_selection(X, 2, orthogonalize=False).tolist() == [0, 1]


def _naive_cur(A, n, k):
    """Reference: full SVD of the explicitly orthogonalised matrix at every step."""
    A = A.copy()
    out = []
    for _ in range(n):
        _, _, vt = np.linalg.svd(A, full_matrices=False)
        pi = np.mean(vt[:k] ** 2, axis=0)
        pi[out] = -1
        j = int(np.argmax(pi))
        out.append(j)
        a = A[:, j].copy()
        A -= np.outer(a, a @ A) / (a @ a)
    return out


@pytest.mark.parametrize("shape, k", [((20, 400), 1), ((340, 310), 1), ((310, 340), 2), ((60, 40), 3)])
def test_cur_fast_updates_match_naive_reference(shape, k):
    rng = np.random.default_rng(sum(shape))
    A = rng.normal(size=shape) * rng.uniform(0.2, 3.0, size=shape[1])
    assert cur_selection(A, 8, k=k).tolist() == _naive_cur(A, 8, k)


def test_cur_more_than_rank_falls_back():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 2)) @ rng.normal(size=(2, 6))  # rank 2
    idx = cur_selection(X, 6)
    assert sorted(idx.tolist()) == list(range(6))


def test_leverage_scores_both_shapes_agree():
    X = np.random.default_rng(5).normal(size=(7, 20))
    wide = leverage_scores(X, k=3)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    assert np.allclose(wide, np.mean(vt[:3] ** 2, axis=0))
    tall = leverage_scores(X.T, k=3)
    u, _, _ = np.linalg.svd(X, full_matrices=False)
    assert np.allclose(tall, np.mean(u[:, :3] ** 2, axis=1))


def test_bad_input():
    X = np.ones((5, 2))
    with pytest.raises(InputError, match="cannot select 6 of 5"):
        FPS(n_to_select=6).fit(X)
    with pytest.raises(InputError, match="kind"):
        CUR(n_to_select=1, kind="rows").fit(X)
    with pytest.raises(InputError, match="does not transform"):
        FPS(n_to_select=2).fit(X).transform(X)
    with pytest.raises(InputError, match="NaN"):
        farthest_point_sampling(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(InputError, match="fraction"):
        FPS(n_to_select=1.5).fit(X)


def test_fps_never_repeats_an_index_among_duplicates():
    X = np.zeros((6, 3))  # six identical samples: every distance is 0
    assert farthest_point_sampling(X.T, 3).tolist() == [0, 1, 2]
    assert farthest_point_sampling(X.T, 6, start=4).tolist() == [4, 0, 1, 2, 3, 5]
    X[3] = 1.0
    assert farthest_point_sampling(X.T, 3).tolist() == [0, 3, 1]
