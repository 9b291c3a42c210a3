import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml4ms.errors import InputError
from ml4ms.models.kernel import KernelRidge, group_loo_residuals, kernel_matrix


@parametrize_with_checks([KernelRidge(alpha=1e-3, gamma=0.5), KernelRidge()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.sin(X[:, 0]) + X[:, 1] ** 2


@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_group_loo_matches_refitting(kernel):
    X, y = _data()
    groups = np.arange(len(X))
    groups[[5, 6, 7]] = 5
    groups[20] = 19
    K = kernel_matrix(X, X, kernel, gamma=0.3)
    w, V = np.linalg.eigh(K)
    yc = y - y.mean()
    e = group_loo_residuals(w, V, yc, 1e-2, groups)
    for g in np.unique(groups):
        test = groups == g
        train = ~test
        coef = np.linalg.solve(K[np.ix_(train, train)] + 1e-2 * np.eye(train.sum()), yc[train])
        np.testing.assert_allclose(yc[test] - K[np.ix_(test, train)] @ coef, e[test], atol=1e-8)


def test_search_picks_grid_point_with_lowest_loo():
    X, y = _data(80)
    m = KernelRidge(kernel="gaussian", alpha=[1e-6, 1e-3, 1.0], gamma=[0.01, 0.3, 10.0]).fit(X, y)
    best = min(m.cv_results_, key=lambda r: r["loo_rmse"][0])
    assert m.best_params_ == {"alpha": best["alpha"], "gamma": best["gamma"]}
    assert len(m.cv_results_) == 9


def test_multi_output_equals_separate_fits():
    X, y = _data(70)
    Y = np.c_[y, np.abs(X[:, 2])]
    joint = KernelRidge().fit(X, Y)
    for j in range(2):
        single = KernelRidge().fit(X, Y[:, j])
        np.testing.assert_allclose(joint.predict(X[:5])[:, j], single.predict(X[:5]), rtol=1e-8)


def test_fixed_hyperparameters_match_closed_form():
    X, y = _data(40)
    m = KernelRidge(kernel="laplacian", alpha=0.1, gamma=0.2, scale=False).fit(X, y)
    K = kernel_matrix(X, X, "laplacian", gamma=0.2)
    coef = np.linalg.solve(K + 0.1 * np.eye(len(X)), y - y.mean())
    np.testing.assert_allclose(m.predict(X), K @ coef + y.mean(), atol=1e-8)


def test_translation_of_features_does_not_matter():
    X, y = _data(50)
    a = KernelRidge().fit(X, y).predict(X[:7])
    b = KernelRidge().fit(X + 100.0, y).predict(X[:7] + 100.0)
    np.testing.assert_allclose(a, b, atol=1e-8)


def test_in_pipeline_and_gridsearch():
    X, y = _data(60)
    pipe = make_pipeline(StandardScaler(), KernelRidge(gamma=0.5))
    search = GridSearchCV(pipe, {"kernelridge__alpha": [1e-3, 1e-1]}, cv=3).fit(X, y)
    assert search.best_estimator_.predict(X).shape == (60,)


def test_bad_parameters():
    X, y = _data(20)
    with pytest.raises(InputError, match="unknown kernel"):
        KernelRidge(kernel="cosine").fit(X, y)
    with pytest.raises(InputError, match="alpha"):
        KernelRidge(alpha=[0.0]).fit(X, y)


def test_features_constant_up_to_rounding_are_not_amplified():
    X, y = _data(40)
    X = np.c_[X, np.full(40, 0.1 + 0.2)]  # a constant column with float noise from the sum
    X[::2, 3] = 0.3  # 0.1 + 0.2 != 0.3 in floating point
    m = KernelRidge(kernel="gaussian").fit(X, y)
    Z = X[:3].copy()
    Z[:, 3] = 0.3 + 1e-13
    np.testing.assert_allclose(m.predict(Z), m.predict(X[:3]), atol=1e-6)


def test_auto_width_does_not_depend_on_row_order():
    from ml4ms.models.kernel import median_distance

    X = np.random.default_rng(0).normal(size=(700, 4))
    perm = np.random.default_rng(1).permutation(len(X))
    for kernel in ("gaussian", "laplacian"):
        assert median_distance(X, kernel) == median_distance(X[perm], kernel)


@pytest.mark.parametrize("alpha", [[], float("nan"), float("inf"), [1e-3, 0.0], -1.0, "small"])
def test_bad_alpha_grids_are_refused_before_fitting(alpha):
    X, y = _data(20)
    with pytest.raises(InputError, match=r"^alpha must be a finite number > 0 or a non-empty list of them, got"):
        KernelRidge(alpha=alpha).fit(X, y)


@pytest.mark.parametrize("gamma", [[], float("nan"), float("inf"), 0.0])
def test_bad_gamma_grids_are_refused_before_fitting(gamma):
    X, y = _data(20)
    with pytest.raises(InputError, match=r"^gamma must be a finite number > 0 or a non-empty list of them, got"):
        KernelRidge(kernel="gaussian", gamma=gamma).fit(X, y)


def test_a_grid_needs_two_distinct_groups_to_choose_on():
    X, y = _data(6)
    with pytest.raises(InputError, match=r"cannot choose alpha \(9 candidates\) and gamma \(7 candidates\) by "
                                         r"grouped leave-one-out from 1 sample; give at least 2 distinct "
                                         r"structures, or one value of alpha and gamma"):
        KernelRidge().fit(X[:1], y[:1])
    with pytest.raises(InputError, match=r"from 6 samples that are one structure"):
        KernelRidge(alpha=[1e-3, 1e-2], gamma=0.1).fit(X, y, groups=np.zeros(6, dtype=int))
    one = KernelRidge(alpha=1e-3, gamma=0.1).fit(X, y, groups=np.zeros(6, dtype=int))  # nothing to choose
    assert one.best_params_ == {"alpha": 1e-3, "gamma": 0.1}
    assert KernelRidge(kernel="linear", alpha=1e-3).fit(X[:1], y[:1]).best_params_["gamma"] is None
