"""Tests of ml4ms.sisso: units, feature spaces, SIS + l0, classification, estimators, CLI."""

import itertools
import json
import math

import numpy as np
import pytest
from sklearn.base import clone

from ml4ms.datasets import load
from ml4ms.errors import InputError
from ml4ms.sisso import (FeatureSpace, SISSOClassifier, SISSORegressor, evaluate, l0_regression, overlap,
                         parse_unit, screen, to_latex)
from ml4ms.sisso.solver import regression_scorer
from ml4ms.sisso.units import format_unit, unit_power

PRL_NAMES = ["IP_A", "IP_B", "EA_A", "EA_B", "r_s_A", "r_p_A", "r_d_A", "r_s_B", "r_p_B", "r_d_B"]


def _octet_rows(names=PRL_NAMES):
    data = load("octet")
    energy = {"IP_A": "IP_A_eV", "IP_B": "IP_B_eV", "EA_A": "EA_A_eV", "EA_B": "EA_B_eV"}
    rows = [{n: r[energy.get(n, n + "_ang")] for n in names} for r in data.records]
    units = {n: ("eV" if n in energy else "angstrom") for n in names}
    return rows, units, data


@pytest.fixture(scope="module")
def prl_model():
    rows, units, data = _octet_rows()
    model = SISSORegressor(feature_names=PRL_NAMES, units=units, space="prl2015", n_sis=26, max_dim=3)
    return model.fit(rows, data.targets["dE_RS_minus_ZB_eV_per_atom"]), rows, data


# ---------------------------------------------------------------- units and expressions
def test_units_parse_and_propagate():
    assert parse_unit("eV/angstrom^2") == {"eV": 1, "angstrom": -2}
    assert parse_unit("Å") == {"angstrom": 1}
    assert parse_unit("") == {} and parse_unit("1") == {}
    assert format_unit(unit_power(parse_unit("eV*angstrom"), -0.5)) == "angstrom^-1/2 eV^-1/2"
    with pytest.raises(InputError):
        parse_unit("eV$")


def test_expressions_evaluate_and_latex():
    data = {"a": np.array([1.0, 4.0]), "b": np.array([2.0, 1.0])}
    np.testing.assert_allclose(evaluate("sqrt(a) * exp(-b**2) / cbrt(b)", data),
                               np.sqrt(data["a"]) * np.exp(-data["b"] ** 2) / np.cbrt(data["b"]))
    assert to_latex("(a + b) / c**2") == "\\frac{a + b}{c^{2}}"
    with pytest.raises(InputError):
        evaluate("__import__('os')", data)
    with pytest.raises(InputError):
        evaluate("a + zz", data)


# ---------------------------------------------------------------- feature spaces
def test_dimensional_analysis_rung1():
    rng = np.random.default_rng(1)
    X = rng.uniform(1, 2, size=(12, 3))
    units = [parse_unit("eV"), parse_unit("eV"), parse_unit("angstrom")]
    space = FeatureSpace.generic(X, ["e1", "e2", "r"], units, operators=["+", "|-|", "*", "/", "exp", "^2"], rung=1)
    exprs = {space.describe(k)[0]: space.describe(k)[1] for k in space.all_keys()}
    # sums only of like units, exp only of dimensionless features (none here)
    assert "e1 + e2" in exprs and "abs(e1 - e2)" in exprs
    assert not any("+" in e and "r" in e for e in exprs)
    assert not any(e.startswith("exp") for e in exprs)
    assert exprs["e1 / r"] == {"eV": 1, "angstrom": -1}
    assert exprs["r**2"] == {"angstrom": 2}
    # 3 primaries + 3 squares + (+, |-|) on 1 like pair + 3 products + 6 quotients
    assert space.count() == 3 + 3 + 2 + 3 + 6 == len(exprs)
    # values agree with re-evaluating the formula strings
    table = {"e1": X[:, 0], "e2": X[:, 1], "r": X[:, 2]}
    for key in space.all_keys():
        np.testing.assert_allclose(space.values_of([key])[:, 0], evaluate(space.describe(key)[0], table))


def test_removes_constant_nonfinite_and_duplicate_features():
    X = np.column_stack([np.linspace(1, 2, 8), np.linspace(1, 2, 8), np.full(8, 3.0), np.linspace(-1, 1, 8)])
    space = FeatureSpace.generic(X, ["a", "b", "c", "d"], [{}] * 4, operators=["log", "-"], rung=1)
    exprs = [space.describe(k)[0] for k in space.all_keys()]
    assert "b" not in exprs and "c" not in exprs  # duplicate of a, constant
    assert "log(d)" not in exprs  # log of negative values is not finite
    assert "log(a)" in exprs and "a - d" in exprs


def test_prl2015_space_has_3391_features():
    rows, units, _ = _octet_rows()
    X = np.array([[r[n] for n in PRL_NAMES] for r in rows])
    space = FeatureSpace.prl2015(X, PRL_NAMES, [parse_unit(units[n]) for n in PRL_NAMES])
    assert space.count() == 10 + 12 + 30 + 63 + 52 * 63 == 3391


def test_streaming_screen_matches_unbatched():
    rng = np.random.default_rng(2)
    X = rng.uniform(0.5, 2.0, size=(25, 5))
    y = X[:, 0] * X[:, 1] / (X[:, 2] + X[:, 3]) + 0.01 * rng.normal(size=25)
    args = dict(operators=["+", "-", "*", "/", "sqrt"], rung=2)
    names = list("abcde")
    small = FeatureSpace.generic(X, names, [{}] * 5, batch_size=97, cache_gb=0.0, **args)
    big = FeatureSpace.generic(X, names, [{}] * 5, batch_size=10**7, **args)
    score = regression_scorer(y)
    _, k_small, s_small = screen(small, score, 15)
    _, k_big, s_big = screen(big, score, 15)
    np.testing.assert_allclose(s_small, s_big)
    assert small.count() == big.count() > 5000
    assert [small.describe(k)[0] for k in k_small] == [big.describe(k)[0] for k in k_big]
    # the planted formula ranks first
    assert np.isclose(s_small[0], np.max(s_small))
    # brute force: best |corr| over all features equals the best screened score
    vals = np.concatenate([v for v, _ in big.iter_batches()], axis=1)
    corr = np.abs(np.corrcoef(np.column_stack([y, vals]).T)[0, 1:])
    assert np.isclose(np.nanmax(corr), s_big[0])


# ---------------------------------------------------------------- l0
def test_batched_l0_matches_loop():
    rng = np.random.default_rng(3)
    F = rng.normal(size=(30, 9))
    y = rng.normal(size=30)
    for dim in (1, 2, 3):
        got = l0_regression(F, y, dim)
        best = min(
            (np.sqrt(np.mean((np.column_stack([F[:, c], np.ones(30)]) @ np.linalg.lstsq(
                np.column_stack([F[:, c], np.ones(30)]), y, rcond=None)[0] - y) ** 2)), c)
            for c in itertools.combinations(range(9), dim))
        assert got["columns"] == list(best[1])
        assert math.isclose(got["rmse"], best[0], rel_tol=1e-9)


# ---------------------------------------------------------------- PRL 2015 reproduction
def test_prl2015_reproduction(prl_model):
    model, _, _ = prl_model
    published = [0.1372, 0.1002, 0.0764]
    assert model.n_features_ == 3391
    for m, rmse in zip(model.models_, published):
        assert abs(m["rmse"] - rmse) < 1e-3
    assert model.models_[0]["features"] == ["(IP_A + IP_B) / r_p_A**2"]
    assert model.models_[1]["features"] == ["abs(IP_B - EA_B) / r_p_A**2", "abs(r_s_A - r_p_B) / exp(r_s_A)"]
    assert model.models_[2]["features"][2] == "abs(r_s_B - r_p_B) / (r_d_A + r_p_B)**2"
    assert [round(m["max_ae"], 3) for m in model.models_] == [0.422, 0.280, 0.222]


def test_predict_reevaluates_formulas_and_state_is_plain(prl_model):
    model, rows, data = prl_model
    y = data.targets["dE_RS_minus_ZB_eV_per_atom"]
    for m in model.models_:
        pred = model.predict(rows, dim=m["dim"])
        assert math.isclose(float(np.sqrt(np.mean((pred - y) ** 2))), m["rmse"], rel_tol=1e-9)
    # a 2-D array with feature_names gives the same predictions
    X = np.array([[r[n] for n in PRL_NAMES] for r in rows])
    np.testing.assert_allclose(model.predict(X[:5]), model.predict(rows[:5]))
    state = {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}
    json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in state.items()})
    assert clone(model).get_params()["space"] == "prl2015"
    with pytest.raises(InputError):
        model.predict([{n: 1.0 for n in PRL_NAMES if n != "IP_B"}])


def test_multitask_recovers_shared_feature():
    rng = np.random.default_rng(4)
    X = rng.uniform(1, 3, size=(40, 3))
    tasks = np.repeat(["t1", "t2"], 20)
    feat = X[:, 0] / X[:, 1]
    y = np.where(tasks == "t1", 2.0 * feat + 1.0, -1.0 * feat + 0.5)
    model = SISSORegressor(feature_names=["a", "b", "c"], operators=["*", "/"], rung=1, n_sis=5, max_dim=1)
    model.fit(X, y, tasks=tasks)
    assert model.models_[0]["features"] == ["a / b"]
    np.testing.assert_allclose(np.ravel(model.models_[0]["coefficients"]), [2.0, -1.0], atol=1e-9)
    np.testing.assert_allclose(model.predict(X, tasks=tasks), y, atol=1e-9)


def test_bad_input_raises_input_error():
    with pytest.raises(InputError):
        SISSORegressor(operators=["+", "nope"]).fit(np.ones((5, 2)) + np.arange(5)[:, None], np.arange(5.0))
    with pytest.raises(InputError):
        SISSORegressor(feature_names=["a"]).fit(np.ones((4, 2)), np.arange(4.0))
    with pytest.raises(InputError):
        SISSORegressor(rung=4).fit(np.arange(8.0).reshape(4, 2), np.arange(4.0))


# ---------------------------------------------------------------- classification
def test_overlap_2d_counts_points_in_other_hull():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], dtype=float)
    shifted = square + [2.0, 0.0]
    D = np.vstack([square, shifted])
    labels = np.array([0] * 5 + [1] * 5)
    assert overlap(D, labels)[:2] == (0, 0.0)
    D2 = np.vstack([square, square * 0.3 + [0.8, 0.2]])  # second class partly inside the first square
    count, size, inside = overlap(D2, labels)
    assert count >= 3 and 0 < size < 1
    assert inside[5:].sum() >= 3


def test_classifier_octet_zero_overlap_2d():
    names = ["r_s_A", "r_p_A", "r_d_A", "r_s_B", "r_p_B", "r_d_B", "IP_A", "IP_B", "EA_A", "EA_B"]
    rows, units, data = _octet_rows(names)
    labels = [r["lowest_energy_structure"] for r in data.records]
    derived = {"r_sigma": "abs(r_p_A + r_s_A - r_p_B - r_s_B)", "r_pi": "abs(r_p_A - r_s_A) + abs(r_p_B - r_s_B)"}
    units.update(r_sigma="angstrom", r_pi="angstrom")
    model = SISSOClassifier(feature_names=names, units=units, derived=derived, operators=["+", "-", "|-|"],
                            rung=1, n_sis=20, max_dim=2).fit(rows, labels)
    assert model.models_[0]["overlap"] > 0
    assert model.models_[1]["overlap"] == 0
    assert np.mean(model.predict(rows) == np.asarray(labels)) == 1.0  # zero overlap -> separable


# ---------------------------------------------------------------- CLI
def test_cli_prl2015_json_and_plots(tmp_path):
    """The bundled config, by name."""
    from ml4ms.cli import main

    out = tmp_path / "out.json"
    code = main(["sisso", "--config", "octet_prl2015", "--json", str(out), "--out", str(tmp_path / "run"),
                 "--cv-repeats", "2", "--quiet"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n_features"] == 3391 and result["seconds"] > 0
    dims = result["dimensions"]
    assert [d["dim"] for d in dims] == [1, 2, 3]
    for d, rmse in zip(dims, [0.1372, 0.1002, 0.0764]):
        assert abs(d["rmse"] - rmse) < 1e-3
        assert {"formula", "coefficients", "intercept", "max_ae", "cv_rmse_mean", "cv_rmse_std"} <= set(d)
        assert d["cv_rmse_mean"] > d["rmse"]
    assert (tmp_path / "run" / "parity.png").stat().st_size > 1000
    assert (tmp_path / "run" / "map.png").stat().st_size > 1000


def test_cli_bad_config_exits_2(tmp_path, capsys):
    from ml4ms.cli import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data]\npath = "octet"\ntarget = "dE_RS_minus_ZB_eV_per_atom"\n'
                   '[features]\na = { column = "IP_A_eV", unit = "eV" }\n[sisso]\noperators = ["%"]\n')
    assert main(["sisso", "--config", str(cfg)]) == 2
    assert "unknown operator" in capsys.readouterr().err


GOOD = ('[data]\npath = "octet"\ntarget = "dE_RS_minus_ZB_eV_per_atom"\n'
        '[features]\na = { column = "IP_A_eV", unit = "eV" }\n')


@pytest.mark.parametrize("extra, needle", [
    ('[sisoo]\nrung = 1\n', "unknown table [sisoo]; did you mean 'sisso'?"),
    ('[sisso]\nrungs = 1\n', "[sisso] unknown key 'rungs'; did you mean 'rung'?"),
    ('[cv]\nrepeat = 1\n', "[cv] unknown key 'repeat'"),
    ('[derived]\nb = { formula = "a", units = "eV" }\n', "[derived.b] unknown key 'units'; did you mean 'unit'?"),
    ('[derived]\nb = { unit = "eV" }\n', "[derived.b] needs 'formula'"),
    ('[sisso]\nn_sis = "20"\n', "[sisso] n_sis must be a positive integer, got '20' (a string); fix it in [sisso]"),
    ('[sisso]\nmax_dim = 2.5\n', "[sisso] max_dim must be a positive integer, got 2.5"),
    ('[sisso]\nkind = "regresion"\n', "[sisso] kind must be 'regression' or 'classification'"),
    ('[sisso]\nallow_transcendental_units = "yes"\n', "[sisso] allow_transcendental_units must be true or false, "
                                                        "got 'yes' (a string)"),
    ('[cv]\ntest_fraction = 1.5\n', "[cv] test_fraction must be in (0, 1), got 1.5"),
    ('[cv]\nmethod = "kfold"\n', "[cv] method must be 'leave-out' or 'loo'"),
    ('[sisso]\nrung = 9\n', "[sisso] rung must be 0, 1, 2 or 3, got 9"),
    ('[sisso]\noperators = ["+", "%"]\n', "[sisso] operators: unknown operator '%'; choose from: + -"),
    ('[derived]\nb = { formula = "a", unit = "furlong" }\n', "[derived.b] unit: unknown unit 'furlong'; use the "
                                                           "base units eV, angstrom, amu, e, K, fs"),
])
def test_bad_config_fails_at_read_time_on_one_line(tmp_path, extra, needle):
    from ml4ms.sisso.workflow import read_config

    cfg = tmp_path / "bad.toml"
    cfg.write_text(GOOD + extra)
    with pytest.raises(InputError) as info:
        read_config(cfg)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{cfg}: ") and needle in message


def test_config_tables_and_keys_it_needs(tmp_path):
    from ml4ms.sisso.workflow import parse_config, read_config

    with pytest.raises(InputError, match="missing table .features."):
        parse_config({"data": {"path": "octet", "target": "y"}})
    with pytest.raises(InputError, match="c.toml: .data. needs 'target'"):
        parse_config({"data": {"path": "octet"}, "features": {}}, source="c.toml")
    assert parse_config({"data": {"path": "x", "target": "y"}, "features": {"a": "A"}})["features"] == {
        "a": {"column": "A", "unit": ""}}
    assert read_config("octet_classify")["sisso"]["kind"] == "classification"  # a bundled name


def test_cli_bad_config_is_one_line_without_traceback(tmp_path, capsys):
    from ml4ms.cli import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text(GOOD + '[sisso]\nrung = "2"\n')
    assert main(["sisso", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cfg) in err[0] and "[sisso] rung must be" in err[0] and "Traceback" not in err[0]


def test_rung3_streams_and_finds_planted_formula():
    rng = np.random.default_rng(5)
    X = rng.uniform(1, 2, size=(30, 3))
    a, b, c = X.T
    y = 0.5 * (a + b) * (b + c) * (a * c) - 2.0
    fits = {}
    for rung, cache in [(2, 2.0), (3, 2.0), (3, 0.0)]:
        model = SISSORegressor(feature_names=["a", "b", "c"], operators=["+", "*"], rung=rung, n_sis=5,
                               max_dim=1, cache_gb=cache, batch_size=500).fit(X, y)
        fits[(rung, cache)] = model
    assert fits[(2, 2.0)].models_[0]["rmse"] > 1e-3
    for key in [(3, 2.0), (3, 0.0)]:
        m = fits[key].models_[0]
        assert m["rmse"] < 1e-9
        np.testing.assert_allclose(fits[key].predict(X), y, atol=1e-8)
    assert fits[(3, 2.0)].n_features_ == fits[(3, 0.0)].n_features_ > fits[(2, 2.0)].n_features_


def test_cli_csv_path_relative_to_config(tmp_path):
    import shutil

    from ml4ms.cli import main
    from ml4ms.datasets import data_path

    shutil.copy(data_path("octet", "octet_binaries.csv"), tmp_path / "table.csv")
    feats = "\n".join(f'{n} = {{ column = "{n}_ang", unit = "angstrom" }}' for n in ["r_s_A", "r_p_A", "r_s_B", "r_p_B"])
    (tmp_path / "c.toml").write_text(
        f'[data]\npath = "table.csv"\ntarget = "lowest_energy_structure"\n[features]\n{feats}\n'
        '[sisso]\nkind = "classification"\noperators = ["+", "-", "|-|"]\nrung = 1\nn_sis = 10\nmax_dim = 2\n')
    out = tmp_path / "o.json"
    assert main(["sisso", "--config", str(tmp_path / "c.toml"), "--json", str(out), "--quiet"]) == 0
    dims = json.loads(out.read_text())["dimensions"]
    assert [d["dim"] for d in dims] == [1, 2]
    assert all("overlap" in d and "rmse" not in d for d in dims)
    assert dims[1]["overlap"] <= dims[0]["overlap"]


def test_unknown_units_are_refused_and_the_known_ones_listed():
    with pytest.raises(InputError, match=r"unknown unit 'furlong' in 'eV/furlong'; use the base units eV, angstrom"):
        parse_unit("eV/furlong")
    assert parse_unit("u*kelvin") == {"amu": 1, "K": 1}


@pytest.mark.parametrize("text, argv, needle", [
    ('[derived]\nd = { formula = "a / (a - a)", unit = "" }\n', [],
     "octet:table: row 0: derived feature d = a / (a - a) is -inf; change its formula in [derived]"),
    ('[sisso]\nkind = "classification"\n', [], 'kind = "classification" needs class labels, but [data] target '
                                               "'dE_RS_minus_ZB_eV_per_atom' of octet:table holds real numbers"),
    ("", ["--cv-repeats", "2", "--loo"], "--cv-repeats sets the repeats of leave-out CV; --loo leaves each row out"),
])
def test_cli_bad_runs_exit_2_on_one_line(tmp_path, capsys, text, argv, needle):
    from ml4ms.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD + text)
    assert main(["sisso", "--config", str(cfg), *argv, "--json", str(tmp_path / "o.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and not (tmp_path / "o.json").exists()


def test_configs_that_cannot_work_are_refused_before_the_search(tmp_path, capsys):
    from ml4ms.cli import main

    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n1,2,3\n")
    head = f'[data]\npath = "{table}"\ntarget = "y"\n[features]\na = {{ column = "a", unit = "eV" }}\n'
    for text, needle in [(head + "[sisso]\nmax_dim = 1\n", "1 row: too few to fit descriptors of up to 1 dimensions"),
                         (head + '[sisso]\nradius_unit = "parsec"\n', "[sisso] radius_unit: unknown unit 'parsec'"),
                         (head.replace('target = "y"', 'target = "a"'), "target 'a' is also a column of [features]")]:
        (tmp_path / "c.toml").write_text(text)
        assert main(["sisso", "--config", str(tmp_path / "c.toml"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
