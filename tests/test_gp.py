"""Gaussian-process regression: likelihood, mean, predictive std, calibration, the CLI."""

import json

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from ml4ms.errors import InputError
from ml4ms.models import make_regressor
from ml4ms.models.gp import GaussianProcessRegressor, alpha_floor
from ml4ms.models.kernel import KernelRidge, kernel_matrix
from ml4ms.serialize import load_model, save_model


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small eigendecompositions: threaded BLAS only adds overhead on a busy machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@parametrize_with_checks([GaussianProcessRegressor(alpha=1e-3, gamma=0.5), GaussianProcessRegressor(),
                          GaussianProcessRegressor(kernel="polynomial", zeta=3)])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _data(n=60, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.sin(X[:, 0]) + X[:, 1] ** 2 + noise * rng.normal(size=n)


def _direct_lml(K, y, alpha):
    """log N(y | 0, s (K + αI)) with s = yᵀ(K + αI)⁻¹y / n, by Cholesky."""
    n = len(y)
    A = K + alpha * np.eye(n)
    s = y @ np.linalg.solve(A, y) / n
    L = np.linalg.cholesky(s * A)
    z = np.linalg.solve(L, y)
    return -0.5 * z @ z - np.log(np.diag(L)).sum() - 0.5 * n * np.log(2 * np.pi), s


@pytest.mark.parametrize("kernel, gamma", [("gaussian", 0.3), ("laplacian", 0.2), ("linear", None),
                                           ("polynomial", None)])
def test_lml_matches_direct_cholesky(kernel, gamma):
    X, y = _data(50, noise=0.1)
    m = GaussianProcessRegressor(kernel=kernel, gamma=gamma or 1.0, alpha=0.05, zeta=3, scale=False).fit(X, y)
    K = kernel_matrix(X, X, kernel, gamma=gamma or 1.0, zeta=3)
    lml, s = _direct_lml(K, y - y.mean(), 0.05)
    assert np.isclose(m.log_marginal_likelihood_, lml, rtol=1e-9, atol=1e-8)
    assert np.isclose(m.amplitude_, s, rtol=1e-9)
    assert (m.gamma_ is None) == (gamma is None)


def test_search_picks_maximum_and_amplitude_is_the_profile_maximum():
    X, y = _data(60, noise=0.1)
    alphas, gammas = [1e-4, 1e-2, 1.0], [0.05, 0.3, 3.0]
    m = GaussianProcessRegressor(alpha=alphas, gamma=gammas, scale=False).fit(X, y)
    assert len(m.search_results_) == 9
    best = max(m.search_results_, key=lambda r: r["log_marginal_likelihood"][0])
    assert m.best_params_ == {"alpha": best["alpha"], "gamma": best["gamma"]}
    K = kernel_matrix(X, X, "gaussian", gamma=m.gamma_)
    lml, s = _direct_lml(K, y - y.mean(), m.alpha_)
    assert np.isclose(m.log_marginal_likelihood_, lml)
    # a different amplitude lowers the likelihood
    n, A = len(y), K + m.alpha_ * np.eye(len(y))
    for factor in (0.8, 1.25):
        L = np.linalg.cholesky(factor * s * A)
        z = np.linalg.solve(L, y - y.mean())
        assert -0.5 * z @ z - np.log(np.diag(L)).sum() - 0.5 * n * np.log(2 * np.pi) < lml


def test_noise_ratios_below_the_numerical_floor_are_not_chosen():
    X, y = _data(100, noise=0.01)
    # a nearly constant kernel: max eigenvalue ~ n, eigenvalues resolved to ~ n ε only
    m = GaussianProcessRegressor(gamma=1e-4, alpha=[1e-16, 1e-14, 1e-6], scale=False).fit(X, y)
    w = np.linalg.eigvalsh(kernel_matrix(X, X, "gaussian", gamma=1e-4))
    assert alpha_floor(w) > 1e-14
    lml = [r["log_marginal_likelihood"][0] for r in m.search_results_]
    assert np.isnan(lml[0]) and np.isnan(lml[1]) and np.isfinite(lml[2])
    assert m.alpha_ == 1e-6
    only_small = GaussianProcessRegressor(gamma=1e-4, alpha=[1e-16, 1e-14], scale=False).fit(X, y)
    assert only_small.alpha_ == 1e-14  # none resolved: the largest is used


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "polynomial"])
def test_mean_equals_kernel_ridge(kernel):
    X, y = _data(70, noise=0.05)
    gp = GaussianProcessRegressor(kernel=kernel, alpha=1e-3, gamma=0.2).fit(X, y)
    krr = KernelRidge(kernel=kernel, alpha=1e-3, gamma=0.2).fit(X, y)
    Z = _data(20, seed=1)[0]
    np.testing.assert_allclose(gp.predict(Z), krr.predict(Z), rtol=1e-7, atol=1e-9)


def test_std_small_near_data_and_prior_far_away():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(40, 1))
    y = np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=40)
    m = GaussianProcessRegressor(scale=False).fit(X, y)
    _, at_train = m.predict(X, return_std=True)
    _, far = m.predict(np.array([[50.0], [-80.0]]), return_std=True)
    prior = np.sqrt(m.amplitude_ * (1.0 + m.alpha_))
    np.testing.assert_allclose(far, prior, rtol=1e-8)
    assert np.all(at_train < 0.3 * prior)
    assert np.all(at_train >= m.noise_std_ * (1 - 1e-9))  # a new observation keeps the noise
    # the std grows monotonically away from the data
    _, path = m.predict(np.linspace(2.0, 6.0, 9)[:, None], return_std=True)
    assert np.all(np.diff(path) > -1e-12)


def test_std_matches_direct_posterior_covariance():
    X, y = _data(40, noise=0.1)
    m = GaussianProcessRegressor(kernel="laplacian", alpha=0.01, gamma=0.3, scale=False).fit(X, y)
    Z = _data(6, seed=2)[0]
    K = kernel_matrix(X, X, "laplacian", gamma=0.3)
    Ks = kernel_matrix(Z, X, "laplacian", gamma=0.3)
    var = m.amplitude_ * (1.0 + 0.01 - np.einsum("ij,ji->i", Ks, np.linalg.solve(K + 0.01 * np.eye(40), Ks.T)))
    np.testing.assert_allclose(m.predict(Z, return_std=True)[1], np.sqrt(var), rtol=1e-7)


@pytest.mark.parametrize("seed", [0, 1])
def test_calibrated_on_noisy_function_and_noise_recovered(seed):
    rng = np.random.default_rng(seed)
    noise = 0.2

    def f(x):
        return np.sin(3 * x[:, 0]) + 0.5 * x[:, 1]

    X = rng.uniform(-1.5, 1.5, size=(200, 2))
    y = f(X) + noise * rng.normal(size=200)
    m = GaussianProcessRegressor().fit(X, y)
    assert 0.8 * noise < m.noise_std_ < 1.2 * noise
    Z = rng.uniform(-1.5, 1.5, size=(3000, 2))
    yz = f(Z) + noise * rng.normal(size=3000)
    mean, std = m.predict(Z, return_std=True)
    z = np.abs(yz - mean) / std
    assert abs(np.mean(z <= 1) - 0.683) < 0.05
    assert abs(np.mean(z <= 2) - 0.954) < 0.035


def test_permuting_training_rows_changes_nothing():
    X, y = _data(80, noise=0.1)
    perm = np.random.default_rng(3).permutation(80)
    a = GaussianProcessRegressor().fit(X, y)
    b = GaussianProcessRegressor().fit(X[perm], y[perm])
    Z = _data(10, seed=4)[0]
    for u, v in zip(a.predict(Z, return_std=True), b.predict(Z, return_std=True)):
        np.testing.assert_allclose(u, v, rtol=1e-7, atol=1e-10)
    assert a.alpha_ == b.alpha_ and np.isclose(a.gamma_, b.gamma_, rtol=1e-12)


def test_multi_output_equals_separate_fits():
    X, y = _data(70, noise=0.05)
    Y = np.c_[y, 10 * np.abs(X[:, 2]), np.cos(X[:, 1])]
    joint = GaussianProcessRegressor().fit(X, Y)
    Z = _data(5, seed=5)[0]
    mean, std = joint.predict(Z, return_std=True)
    assert mean.shape == std.shape == (5, 3)
    for j in range(3):
        single = GaussianProcessRegressor().fit(X, Y[:, j])
        assert single.gamma_ == joint.gamma_[j] and single.alpha_ == joint.alpha_[j]
        mu, sd = single.predict(Z, return_std=True)
        np.testing.assert_allclose(mean[:, j], mu, rtol=1e-8)
        np.testing.assert_allclose(std[:, j], sd, rtol=1e-8)


def test_save_load_round_trip(tmp_path):
    X, y = _data(40, noise=0.1)
    for target in (y, np.c_[y, -2 * y + X[:, 2]]):
        m = GaussianProcessRegressor(kernel="laplacian").fit(X, target, groups=np.arange(40) // 2)
        save_model(tmp_path / "m", m)
        loaded, _ = load_model(tmp_path / "m")
        for u, v in zip(m.predict(X[:5], return_std=True), loaded.predict(X[:5], return_std=True)):
            np.testing.assert_array_equal(u, v)


def test_registry_pipeline_and_gridsearch():
    X, y = _data(60)
    assert isinstance(make_regressor("gp", kernel="laplacian"), GaussianProcessRegressor)
    pipe = make_pipeline(StandardScaler(), GaussianProcessRegressor(gamma=0.5))
    search = GridSearchCV(pipe, {"gaussianprocessregressor__alpha": [1e-3, 1e-1]}, cv=3).fit(X, y)
    assert search.best_estimator_.predict(X).shape == (60,)


def test_bad_parameters():
    X, y = _data(20)
    with pytest.raises(InputError, match="unknown kernel"):
        GaussianProcessRegressor(kernel="cosine").fit(X, y)
    with pytest.raises(InputError, match="alpha"):
        GaussianProcessRegressor(alpha=[1e-3, 0.0]).fit(X, y)
    with pytest.raises(InputError, match="gamma"):
        GaussianProcessRegressor(gamma="median").fit(X, y)


RECIPE = """
targets = ["y"]
[descriptor]
name = "composition"
[model]
name = "gp"
kernel = "gaussian"
"""


def test_cli_fit_evaluate_reports_calibration(tmp_path, capsys):
    import ase.io

    from ml4ms.cli import main
    from test_cli_learn import _structures

    ase.io.write(tmp_path / "train.extxyz", _structures(), format="extxyz")
    ase.io.write(tmp_path / "test.extxyz", _structures(n=30, seed=1), format="extxyz")
    (tmp_path / "gp.toml").write_text(RECIPE)
    assert main(["fit", str(tmp_path / "train.extxyz"), "--config", str(tmp_path / "gp.toml"),
                 "-o", str(tmp_path / "model"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "model"), str(tmp_path / "test.extxyz"),
                 "--json", str(tmp_path / "m.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "within ±1σ" in out
    result = json.load(open(tmp_path / "m.json"))
    cal = result["calibration"]["y"]
    assert set(cal) >= {"within_1sigma", "within_2sigma", "nll"} and cal["n"] == 30
    assert np.isfinite(cal["nll"]) and 0 < cal["within_2sigma"] <= 1
    assert result["metrics"]["y"]["r2"] > 0.9
    assert (tmp_path / "m_calibration.png").stat().st_size > 1000
    meta = json.load(open(tmp_path / "model" / "model.json"))["metadata"]
    assert meta["has_uncertainty"] and meta["hyperparameters"][0]["alpha"][0] > 0
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "test.extxyz"),
                 "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    header = open(tmp_path / "p.csv").readline().strip().split(",")
    assert header == ["index", "id", "y", "y_std"]


def test_bad_grids_and_nothing_to_choose_on_are_refused():
    X = np.linspace(0, 1, 8)[:, None]
    y = np.sin(X[:, 0])
    with pytest.raises(InputError, match=r"^alpha must be a finite number > 0 or a non-empty list of them, got \[\]"):
        GaussianProcessRegressor(alpha=[]).fit(X, y)
    with pytest.raises(InputError, match=r"^gamma must be .*, got inf"):
        GaussianProcessRegressor(gamma=float("inf")).fit(X, y)
    with pytest.raises(InputError, match=r"cannot choose alpha \(45 candidates\) and gamma \(7 candidates\) by the "
                                         r"marginal likelihood from 8 samples that are one structure"):
        GaussianProcessRegressor().fit(X, y, groups=np.zeros(8, dtype=int))
