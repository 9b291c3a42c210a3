"""Linear models from sufficient statistics (ml4ms.models.linear) and the streamed fit of a structure model."""

import ase.io
import numpy as np
import pytest
from sklearn import linear_model
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml4ms.cli import main
from ml4ms.datasets import load
from ml4ms.descriptors.local_kernel import LocalKernelFeatures
from ml4ms.errors import InputError
from ml4ms.models import make_regressor
from ml4ms.models.linear import (BayesianRidge, Ridge, add_statistics, bayesian_ridge_solution, linear_statistics,
                                 ridge_solution)
from ml4ms.models.structure import StructureRegressor
from ml4ms.serialize import load_model, save_model

TARGET = "atomization_energy_pbe0_eV"
#: a small sparse GP of the QM7 recipe's kind; conditioned so that rounding moves the weights by < 1e-10
SMALL_KERNEL = {"descriptor": {"name": "soap", "r_cut": 4.0, "n_max": 4, "l_max": 3}, "n_active": 60,
                "progress": False}


def _rel(a, b):
    """Relative difference of two arrays in the 2-norm."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def _data(n, m, k=None, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m)) * np.logspace(0, -2, m) + offset
    w = rng.normal(size=(m,) if k is None else (m, k))
    return X, X @ w + 0.05 * rng.normal(size=(n,) if k is None else (n, k)) + 3.0


@pytest.fixture(scope="module")
def qm7():
    """200 QM7 molecules and their atomization energies (eV)."""
    records = load("qm7", "all").records[:200]
    return records, np.array([r.info[TARGET] for r in records])


@parametrize_with_checks([Ridge(), BayesianRidge()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_added_statistics_equal_those_of_the_whole():
    X, y = _data(50, 4, k=2, offset=100.0)
    whole = linear_statistics(X, y)
    parts = linear_statistics(X[:0], y[:0])  # the empty chunk is neutral
    for a, b in ((0, 7), (7, 8), (8, 31), (31, 50)):
        parts = add_statistics(parts, linear_statistics(X[a:b], y[a:b]))
    assert parts.n == 50
    for got, want in zip(parts[1:], whole[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    raw_xx, raw_xy, raw_yy = whole.raw()
    np.testing.assert_allclose(raw_xx, X.T @ X, rtol=1e-12)
    np.testing.assert_allclose(raw_xy, X.T @ y, rtol=1e-12)
    np.testing.assert_allclose(raw_yy, (y * y).sum(0), rtol=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_from_statistics_is_sklearns_ridge(fit_intercept):
    X, y = _data(80, 6, k=2)
    stats = add_statistics(linear_statistics(X[:30], y[:30]), linear_statistics(X[30:], y[30:]))
    coef, intercept = ridge_solution(stats, alpha=0.3, fit_intercept=fit_intercept)
    ref = linear_model.Ridge(alpha=0.3, fit_intercept=fit_intercept).fit(X, y)
    assert _rel(coef.T, ref.coef_) < 1e-10
    np.testing.assert_allclose(intercept, ref.intercept_, rtol=1e-10, atol=1e-12)
    ours = Ridge(alpha=0.3, fit_intercept=fit_intercept).fit(X, y[:, 0])
    ref1 = linear_model.Ridge(alpha=0.3, fit_intercept=fit_intercept).fit(X, y[:, 0])
    assert ours.coef_.shape == ref1.coef_.shape and _rel(ours.predict(X), ref1.predict(X)) < 1e-12


@pytest.mark.parametrize("n,m,fit_intercept", [(120, 8, True), (15, 30, True), (120, 8, False)])
def test_bayesian_ridge_is_sklearns(n, m, fit_intercept):
    X, y = _data(n, m, offset=2.0 if fit_intercept else 0.0)
    ref = linear_model.BayesianRidge(compute_score=True, fit_intercept=fit_intercept).fit(X, y)
    ours = BayesianRidge(compute_score=True, fit_intercept=fit_intercept).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_
    assert _rel(ours.coef_, ref.coef_) < 1e-8
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-8, abs=1e-12)
    assert ours.lambda_ == pytest.approx(ref.lambda_, rel=1e-8)
    # with fewer samples than features the fit interpolates: the noise precision comes from a residual sum of
    # squares ~1e-6 of yᵀy, which the statistics give only by a difference (sklearn sums the residuals)
    assert ours.alpha_ == pytest.approx(ref.alpha_, rel=1e-8 if n > m else 1e-6)
    assert _rel(ours.sigma_, ref.sigma_) < 1e-8
    assert _rel(ours.scores_, ref.scores_) < 1e-8
    Xt = _data(10, m, offset=2.0, seed=1)[0]
    for got, want in zip(ours.predict(Xt, return_std=True), ref.predict(Xt, return_std=True)):
        assert _rel(got, want) < 1e-8


def test_bad_parameters_are_one_line_input_errors():
    X, y = _data(20, 2)
    with pytest.raises(InputError, match="BayesianRidge tol must be a number > 0, got 0"):
        BayesianRidge(tol=0).fit(X, y)
    with pytest.raises(InputError, match="Ridge alpha must be a number >= 0"):
        Ridge(alpha=-1.0).fit(X, y)
    with pytest.raises(InputError, match="one target at a time"):
        bayesian_ridge_solution(linear_statistics(X, np.c_[y, y]))


def _sparse_gp(regressor):
    return StructureRegressor(descriptor=LocalKernelFeatures(**SMALL_KERNEL), regressor=regressor)


def test_streamed_sparse_gp_is_the_in_memory_one(qm7):
    """Chunk by chunk, the fit equals sklearn's BayesianRidge on the whole feature matrix, at any chunk size."""
    records, y = qm7
    train, test = records[:160], records[160:]
    streamed = [_sparse_gp(BayesianRidge()).fit_streamed(train, y[:160], chunk=c) for c in (160, 50, 7)]
    features = streamed[0].descriptor_.transform(train)
    ref = linear_model.BayesianRidge().fit(features, y[:160])
    Ft = streamed[0].descriptor_.transform(test)
    want_mean, want_std = ref.predict(Ft, return_std=True)
    for model in streamed:
        est = model.estimators_[0]
        assert _rel(est.coef_, ref.coef_) < 1e-8
        assert est.intercept_ == pytest.approx(ref.intercept_, rel=1e-8)
        assert est.alpha_ == pytest.approx(ref.alpha_, rel=1e-8) and est.lambda_ == pytest.approx(ref.lambda_, rel=1e-8)
        mean, std = model.predict(test, return_std=True)
        assert _rel(mean, want_mean) < 1e-8 and _rel(std, want_std) < 1e-8
    # the in-memory path of the structure model (the same solver on the whole matrix) agrees too
    in_memory = _sparse_gp(BayesianRidge()).fit(train, y[:160])
    assert _rel(in_memory.predict(test), want_mean) < 1e-8
    # per-atom contributions of the streamed model still add up to its predictions
    parts = streamed[1].predict_local(test)
    np.testing.assert_allclose([p.sum() for p in parts], streamed[1].predict(test), rtol=1e-10)


def test_streamed_ridge_and_several_targets(qm7):
    records, y = qm7
    Y = np.c_[y, 0.5 * y + np.array([len(r) for r in records])]
    model = _sparse_gp(Ridge(alpha=1e-3)).fit_streamed(records, Y, chunk=33)
    F = model.descriptor_.transform(records)
    ref = linear_model.Ridge(alpha=1e-3).fit(F, Y)
    assert model.n_targets_ == 2 and len(model.estimators_) == 2
    assert _rel(np.vstack([e.coef_ for e in model.estimators_]), ref.coef_) < 1e-8
    assert _rel(model.predict(records), ref.predict(F)) < 1e-8


def test_streamed_model_file_loads_and_predicts(qm7, tmp_path):
    records, y = qm7
    model = _sparse_gp(make_regressor("bayesian_ridge")).fit_streamed(records[:100], y[:100], chunk=40)
    save_model(tmp_path / "m", model, {"targets": [TARGET]})
    loaded, _ = load_model(tmp_path / "m")
    for got, want in zip(loaded.predict(records[100:], return_std=True), model.predict(records[100:], return_std=True)):
        np.testing.assert_array_equal(got, want)


def test_a_regressor_without_statistics_is_refused(qm7):
    records, y = qm7
    with pytest.raises(InputError, match="cannot be fitted from streamed statistics"):
        _sparse_gp(linear_model.Lasso()).fit_streamed(records[:10], y[:10])


def test_fit_command_streams_in_chunks(qm7, tmp_path, capsys):
    records, _ = qm7
    data = tmp_path / "qm7.extxyz"
    ase.io.write(data, records[:120], format="extxyz")
    small = ["--set", "descriptor.n_active=60", "--set", "descriptor.descriptor.r_cut=4.0",
             "--set", "descriptor.descriptor.n_max=4", "--set", "descriptor.descriptor.l_max=3"]
    for chunk in ("25", "1000"):
        assert main(["fit", str(data), "--config", "qm7", *small, "--chunk", chunk, "-o", str(tmp_path / chunk),
                     "--quiet"]) == 0
        assert f"streamed in chunks of {chunk}" in capsys.readouterr().out
    for name in ("25", "1000"):
        assert main(["predict", str(tmp_path / name), str(data), "-o", str(tmp_path / f"{name}.csv"), "--quiet"]) == 0
    a, b = (np.genfromtxt(tmp_path / f"{n}.csv", delimiter=",", names=True) for n in ("25", "1000"))
    assert _rel(a[TARGET], b[TARGET]) < 1e-8 and _rel(a[f"{TARGET}_std"], b[f"{TARGET}_std"]) < 1e-8
    assert main(["fit", str(data), "--config", "qm7", "--chunk", "0", "-o", str(tmp_path / "bad")]) == 2
    assert "--chunk" in capsys.readouterr().err and not (tmp_path / "bad").exists()
