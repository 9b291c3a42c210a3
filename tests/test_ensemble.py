"""EnsembleRegressor: stacking weights, members on column blocks, calibrated std, files, CLI."""

import csv
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml4ms.errors import InputError
from ml4ms.models.ensemble import (EnsembleRegressor, fit_variance_model, krr_loo_predictions,
                                   nnls_weights)
from ml4ms.models.kernel import KernelRidge

KRR = {"name": "krr", "kernel": "gaussian", "alpha": [1e-3, 1e-2], "gamma": [0.3, 1.0]}


@parametrize_with_checks([
    EnsembleRegressor(members=[{"regressor": KernelRidge(kernel="gaussian", alpha=1e-2, gamma=0.05)},
                               {"regressor": Ridge(alpha=1e-3)}, {"regressor": Ridge(), "columns": [0, 1]}]),
])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _blocks(n=150, seed=0):
    """Columns 0-1 carry the signal, columns 2-4 are noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 5))
    y = np.sin(1.5 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.05 * rng.normal(size=n)
    return X, y


def test_stacking_ignores_a_noise_member():
    X, y = _blocks()
    model = EnsembleRegressor(members=[{"columns": [0, 2], "regressor": KRR},
                                       {"columns": [2], "regressor": KRR}]).fit(X, y)
    w = model.weights_[:, 0]
    assert np.all(model.weights_ >= 0)
    assert w[0] > 0.9 and w[1] < 0.05
    good, noise, ens = model.oof_rmse_[:, 0]
    assert good < 0.3 * noise and ens <= good * 1.02


def test_prediction_is_the_weighted_sum_of_independently_fitted_members():
    X, y = _blocks()
    Y = np.column_stack([y, np.cos(X[:, 1]) + X[:, 3]])
    members = [{"columns": [0, 2], "regressor": KRR}, {"columns": [[1, 2], [3, 5]], "regressor": KRR},
               {"regressor": Ridge(alpha=1.0)}]
    model = EnsembleRegressor(members=members).fit(X, Y)
    Xt = _blocks(20, seed=1)[0]
    expected = model.intercept_.copy()
    for m, cols in enumerate(([0, 1], [1, 3, 4], [0, 1, 2, 3, 4])):
        alone = _fit_alone(members[m]["regressor"], X[:, cols], Y)
        expected = expected + alone.predict(Xt[:, cols]) * model.weights_[m]
    np.testing.assert_allclose(model.predict(Xt), expected, rtol=1e-10, atol=1e-12)
    assert model.predict(Xt).shape == (20, 2) and model.weights_.shape == (3, 2)


def _fit_alone(spec, X, Y):
    from ml4ms.models import make_regressor

    est = make_regressor(**spec) if isinstance(spec, dict) else clone(spec)
    return est.fit(X, Y)


def test_mean_combination_has_equal_weights_and_one_d_targets_stay_one_d():
    X, y = _blocks()
    model = EnsembleRegressor(combine="mean", members=[{"columns": [0, 2], "regressor": KRR},
                                                       {"regressor": KRR}]).fit(X, y)
    np.testing.assert_array_equal(model.weights_, 0.5)
    np.testing.assert_array_equal(model.intercept_, 0.0)
    mean, std = model.predict(X[:4], return_std=True)
    assert mean.shape == std.shape == (4,)
    np.testing.assert_allclose(mean, model.predict_members(X[:4])[:, :, 0].mean(axis=1))


def test_krr_loo_predictions_match_refitting_without_each_group():
    from ml4ms.models.kernel import kernel_matrix

    X, y = _blocks(40)
    groups = np.arange(40) // 2  # pairs left out together
    est = KernelRidge(kernel="gaussian", alpha=1e-2, gamma=0.5).fit(X, y)
    loo = krr_loo_predictions(est, y, groups)[:, 0]
    K = kernel_matrix(est.X_fit_, est.X_fit_, "gaussian", gamma=0.5)
    yc = y - est.y_mean_[0]
    for g in (0, 7, 19):
        out = groups == g
        dual = np.linalg.solve(K[np.ix_(~out, ~out)] + 1e-2 * np.eye((~out).sum()), yc[~out])
        np.testing.assert_allclose(loo[out], K[np.ix_(out, ~out)] @ dual + est.y_mean_[0], rtol=1e-6, atol=1e-8)


def test_kfold_and_loo_out_of_sample_predictions_both_give_sensible_weights():
    X, y = _blocks()
    groups = np.arange(len(y)) // 3
    members = [{"columns": [0, 2], "regressor": KRR}, {"columns": [2], "regressor": KRR}]
    for oof in ("auto", "kfold"):
        model = EnsembleRegressor(members=members, oof=oof).fit(X, y, groups=groups)
        assert model.weights_[0, 0] > 0.9 and model.weights_[1, 0] < 0.05


def test_std_is_calibrated_on_held_out_heteroscedastic_data():
    from ml4ms.uncertainty import calibration_metrics

    rng = np.random.default_rng(3)
    X = rng.uniform(-3, 3, size=(600, 2))
    noise = 0.05 + 0.3 * (X[:, 0] > 1)
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] + noise * rng.normal(size=600)
    members = [{"regressor": {"name": "krr", "kernel": "gaussian", "alpha": [1e-2, 1e-1], "gamma": [0.2, 0.5]}},
               {"columns": [0, 1], "regressor": {"name": "krr", "kernel": "laplacian"}},
               {"regressor": {"name": "krr", "kernel": "laplacian", "alpha": [1e-2, 1e-1]}}]
    model = EnsembleRegressor(members=members).fit(X[:400], y[:400])
    mean, std = model.predict(X[400:], return_std=True)
    cal = calibration_metrics(y[400:], mean, std)
    assert 0.55 < cal["within_1sigma"] < 0.85 and cal["within_2sigma"] > 0.85
    assert np.all(std > 0) and model.noise_var_[0] > 0


def test_variance_model_without_spread_is_the_mean_square():
    r = np.array([0.1, -0.2, 0.3])
    s0, c = fit_variance_model(r, np.zeros(3))
    assert s0 == pytest.approx(np.mean(r**2)) and c == 0.0


def test_nnls_falls_back_to_the_mean_when_nothing_helps():
    y = np.array([1.0, -1.0, 1.0, -1.0])
    P = np.column_stack([-y, -2 * y])
    w, b = nnls_weights(P, y)
    np.testing.assert_allclose(w, 0.5)


def test_named_blocks():
    X, y = _blocks(60)
    model = EnsembleRegressor(blocks=[["signal", 0, 2], ["noise", 2, 5]],
                              members=[{"block": "signal", "regressor": KRR}, {"block": 1, "regressor": KRR}]).fit(X, y)
    assert [c.tolist() for c in model.columns_] == [[0, 1], [2, 3, 4]]
    chosen = model.member_params_
    assert chosen["weight"] == model.weights_.T.tolist() and chosen["alpha"][0][0] in KRR["alpha"]


@pytest.mark.parametrize("kwargs, match", [
    ({"members": [{"colums": [0, 1]}]}, "unknown key"),
    ({"members": [{"columns": [7, 9]}]}, "no columns"),
    ({"members": [{"columns": "0:2"}]}, "columns must be"),
    ({"members": [{"block": "soap"}]}, "needs the ensemble's blocks"),
    ({"members": [{"regressor": {"kernel": "gaussian"}}]}, "needs a 'name'"),
    ({"members": [{"regressor": {"name": "ensemble"}}]}, "cannot contain"),
    ({"members": []}, "non-empty"),
    ({"combine": "median"}, "unknown combine"),
])
def test_bad_parameters(kwargs, match):
    X, y = _blocks(30)
    with pytest.raises(InputError, match=match):
        EnsembleRegressor(**kwargs).fit(X, y)


def test_round_trip_through_a_model_file(tmp_path):
    from ml4ms.descriptors.columns import ColumnFeatures
    from ml4ms.models.structure import StructureRegressor
    from ml4ms.serialize import load_model, save_model

    X, y = _blocks(80)
    rows = [{f"c{j}": float(v) for j, v in enumerate(x)} for x in X]
    Y = np.column_stack([np.exp(y), 1 + X[:, 2] ** 2])
    model = StructureRegressor(
        descriptor=ColumnFeatures(columns=[f"c{j}" for j in range(5)]), target_transform="log1p",
        regressor=EnsembleRegressor(members=[{"columns": [0, 2], "regressor": KRR}, {"regressor": Ridge()}]),
    ).fit(rows, Y)
    save_model(tmp_path / "m", model, {"targets": ["a", "b"]})
    loaded, _ = load_model(tmp_path / "m")
    p0, s0 = model.predict(rows, return_std=True)
    p1, s1 = loaded.predict(rows, return_std=True)
    np.testing.assert_array_equal(p0, p1)
    np.testing.assert_array_equal(s0, s1)
    assert loaded.has_uncertainty


def test_recipe_with_an_ensemble_through_the_cli(tmp_path, capsys):
    import ase.io

    from ml4ms.cli import main
    from ml4ms.datasets import load
    from ml4ms.descriptors import make_descriptor

    records = load("nomad2018", "train").records[:90]
    ase.io.write(tmp_path / "train.extxyz", records[:70], format="extxyz")
    ase.io.write(tmp_path / "new.extxyz", records[70:], format="extxyz")
    parts = [{"name": "composition"},
             {"name": "columns", "columns": ["spacegroup", "lattice_vector_1_ang", "lattice_angle_gamma_degree"]},
             {"name": "soap", "r_cut": 4.0, "n_max": 2, "l_max": 1},
             {"name": "ngrams", "scale": "nomad2018", "ngram_range": [1, 2]}]
    concat = make_descriptor("concat", parts=parts, progress=False).fit(records[:70])
    (_, _, comp), (_, _, cols), (_, _, soap), (_, ng, _) = concat.blocks_
    part_toml = ",\n  ".join(
        "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in p.items()) + " }" for p in parts)
    recipe = f"""
targets = ["formation_energy_ev_natom", "bandgap_energy_ev"]
[descriptor]
name = "concat"
parts = [
  {part_toml}
]
[model]
name = "ensemble"
[[model.members]]
label = "ngrams+composition"
columns = [[0, {comp}], [{ng}]]
regressor = {{ name = "krr", kernel = "laplacian" }}
[[model.members]]
label = "soap"
columns = [{cols}, {soap}]
regressor = {{ name = "krr", kernel = "gaussian" }}
[target]
transform = "log1p"
"""
    (tmp_path / "r.toml").write_text(recipe)
    assert main(["fit", str(tmp_path / "train.extxyz"), "--config", str(tmp_path / "r.toml"),
                 "-o", str(tmp_path / "M"), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "M"), str(tmp_path / "new.extxyz"), "-o", str(tmp_path / "P.csv"),
                 "--quiet"]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(tmp_path / "P.csv")))
    assert len(rows) == 20
    assert {"formation_energy_ev_natom", "bandgap_energy_ev", "bandgap_energy_ev_std"} <= set(rows[0])
    truth = np.array([r.info["bandgap_energy_ev"] for r in records[70:]])
    pred = np.array([float(r["bandgap_energy_ev"]) for r in rows])
    assert np.sqrt(np.mean((np.log1p(pred) - np.log1p(truth)) ** 2)) < 0.5 * np.std(np.log1p(truth))
    assert all(float(r["bandgap_energy_ev_std"]) > 0 for r in rows)


def _toml(v):
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def test_warning_free_fit_on_tiny_data():
    X, y = _blocks(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = EnsembleRegressor(members=[{"regressor": Ridge()}, {"regressor": KRR}]).fit(X, y)
    assert np.all(np.isfinite(model.predict(X)))
