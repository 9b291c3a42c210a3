"""The fit / predict / evaluate / cv commands end to end, and every kind of bad input."""

import csv
import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ml4ms.cli import main

RECIPE = """
targets = ["y"]
[descriptor]
name = "composition"
[model]
name = "krr"
kernel = "gaussian"
[cv]
n_splits = 3
seeds = [0, 1]
[learning_curve]
train_sizes = [0.5, 1.0]
"""


def _structures(n=36, seed=0, elements=("Mg", "Ca", "Sr")):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        cation = elements[k % len(elements)]
        a = 4.2 + 0.4 * (k % len(elements)) + 0.05 * rng.normal()
        atoms = bulk(f"{cation}O", "rocksalt", a=a, cubic=(k % 2 == 0))
        atoms.info["id"] = 100 + k
        atoms.info["y"] = float(a**3 / 4 + 0.01 * rng.normal())
        out.append(atoms)
    return out


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "train.extxyz"
    ase.io.write(data, _structures(), format="extxyz")
    config = tmp_path / "recipe.toml"
    config.write_text(RECIPE)
    return tmp_path, str(data), str(config)


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code, err):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("ml4ms: error:"), err
    assert "Traceback" not in err


def test_fit_predict_evaluate_round_trip(files, capsys):
    tmp, data, config = files
    code, out, _ = _run(capsys, "fit", data, "--config", config, "-o", tmp / "model", "--quiet")
    assert code == 0 and "model written" in out
    code, _, _ = _run(capsys, "predict", tmp / "model", data, "-o", tmp / "p.csv", "--quiet")
    assert code == 0
    rows = list(csv.DictReader(open(tmp / "p.csv")))
    assert len(rows) == 36 and list(rows[0]) == ["index", "id", "y"]
    assert rows[3]["id"] == "103"
    code, out, _ = _run(capsys, "evaluate", tmp / "model", data, "--json", tmp / "m.json", "--quiet")
    assert code == 0
    metrics = json.load(open(tmp / "m.json"))
    assert set(metrics["metrics"]["y"]) >= {"mae", "rmse", "rmsle", "max_error", "r2"}
    assert metrics["metrics"]["y"]["r2"] > 0.9
    assert (tmp / "m_parity.png").stat().st_size > 1000


def test_flags_override_recipe_and_several_targets(files, capsys):
    tmp, _, config = files
    structures = _structures()
    for a in structures:
        a.info["z"] = 2.0 * a.info["y"]
    ase.io.write(tmp / "two.extxyz", structures, format="extxyz")
    code, _, _ = _run(capsys, "fit", tmp / "two.extxyz", "--config", config, "--target", "y", "--target", "z",
                      "--transform", "log1p", "-o", tmp / "m2", "--quiet")
    assert code == 0
    _run(capsys, "predict", tmp / "m2", tmp / "two.extxyz", "-o", tmp / "p2.csv", "--quiet")
    rows = list(csv.DictReader(open(tmp / "p2.csv")))
    assert list(rows[0]) == ["index", "id", "y", "z"]
    meta = json.load(open(tmp / "m2" / "model.json"))["metadata"]
    assert meta["recipe"]["target"]["transform"] == "log1p" and meta["targets"] == ["y", "z"]


def test_cv_reports_mean_and_std_and_learning_curve(files, capsys):
    tmp, data, config = files
    code, out, _ = _run(capsys, "cv", data, "--config", config, "--json", tmp / "cv.json", "--quiet")
    assert code == 0 and "±" in out
    result = json.load(open(tmp / "cv.json"))
    assert result["n_splits"] == 3 and result["seeds"] == [0, 1]
    assert len(result["folds"]) == 6
    summary = result["summary"]["y"]["mae"]
    maes = [row["mae"] for row in result["folds"]]
    assert np.isclose(summary["mean"], np.mean(maes)) and np.isclose(summary["std"], np.std(maes, ddof=1))
    assert (tmp / "cv_learning_curve.png").stat().st_size > 1000
    assert len(result["learning_curve"]["train_size"]) == 2


def test_csv_table_with_formula(tmp_path, capsys):
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    lines = ["formula,y"]
    for k in range(30):
        x = k % 6 + 1
        lines.append(f"Al{x}O{7 - x},{x + 0.01 * rng.normal()}")
    table.write_text("\n".join(lines) + "\n")
    code, _, _ = _run(capsys, "fit", table, "--target", "y", "-o", tmp_path / "m", "--quiet")
    assert code == 0
    code, _, _ = _run(capsys, "predict", tmp_path / "m", table, "-o", tmp_path / "p.csv", "--quiet")
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert code == 0 and abs(float(rows[0]["y"]) - 1.0) < 0.2


# ---- bad input: exit 2, one line naming file / structure / what to do, no output file ----------


def _write(tmp, name, structures):
    path = tmp / name
    ase.io.write(path, structures, format="extxyz")
    return path


def test_garbage_file(files, capsys):
    tmp, _, config = files
    bad = tmp / "garbage.extxyz"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a structure file")
    code, _, err = _run(capsys, "fit", bad, "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    assert "garbage.extxyz" in err and not (tmp / "m").exists()


def test_missing_file_and_unknown_dataset(files, capsys):
    tmp, _, config = files
    code, _, err = _run(capsys, "fit", tmp / "nope.xyz", "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    code, _, err = _run(capsys, "cv", "nomad2019:train", "--config", config)
    _one_line_error(code, err)


def test_missing_target_key(files, capsys):
    tmp, data, config = files
    code, _, err = _run(capsys, "fit", data, "--config", config, "--target", "band_gap", "-o", tmp / "m")
    _one_line_error(code, err)
    assert "structure 0" in err and "'band_gap' is missing" in err and "choose one of" in err
    assert not (tmp / "m").exists()


def test_nan_in_target(files, capsys):
    tmp, _, config = files
    s = _structures()
    s[5].info["y"] = float("nan")
    path = _write(tmp, "nan_y.extxyz", s)
    code, _, err = _run(capsys, "fit", path, "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    assert "structure 5" in err and "nan" in err.lower()


def test_inf_in_positions(files, capsys):
    tmp, _, config = files
    s = _structures()
    s[7].positions[0, 1] = np.inf
    path = _write(tmp, "inf_pos.extxyz", s)
    code, _, err = _run(capsys, "fit", path, "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    assert "inf_pos.extxyz: structure 7" in err


def test_unknown_element_at_predict(files, capsys):
    tmp, data, config = files
    assert _run(capsys, "fit", data, "--config", config, "-o", tmp / "model", "--quiet")[0] == 0
    new = _write(tmp, "new.extxyz", _structures(6) + [bulk("BaO", "rocksalt", a=5.5)])
    code, _, err = _run(capsys, "predict", tmp / "model", new, "-o", tmp / "p.csv")
    _one_line_error(code, err)
    assert "structure 6" in err and "Ba" in err and "retrain" in err
    assert not (tmp / "p.csv").exists()


def test_overlapping_atoms(files, capsys):
    tmp, _, config = files
    s = _structures()
    s[2].positions[1] = s[2].positions[0] + [0.1, 0, 0]
    path = _write(tmp, "overlap.extxyz", s)
    code, _, err = _run(capsys, "fit", path, "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    assert "structure 2" in err and "overlap" in err


def test_empty_structure(files, capsys):
    tmp, _, config = files
    s = _structures()
    s[4] = Atoms(info={"y": 1.0, "id": 0})
    path = _write(tmp, "empty.extxyz", s)
    code, _, err = _run(capsys, "fit", path, "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    assert "structure 4" in err and "empty" in err


def test_zero_volume_cell(files, capsys):
    tmp, _, config = files
    s = _structures()
    s[1].set_cell([[4, 0, 0], [0, 4, 0], [4, 4, 0]], scale_atoms=False)
    path = _write(tmp, "flat.extxyz", s)
    code, _, err = _run(capsys, "fit", path, "--config", config, "-o", tmp / "m")
    _one_line_error(code, err)
    assert "structure 1" in err and "zero volume" in err


def test_tampered_model(files, capsys):
    tmp, data, config = files
    _run(capsys, "fit", data, "--config", config, "-o", tmp / "model", "--quiet")
    with open(tmp / "model" / "arrays.npz", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x00\x00")
    code, _, err = _run(capsys, "predict", tmp / "model", data, "-o", tmp / "p.csv")
    _one_line_error(code, err)
    assert "checksum" in err and not (tmp / "p.csv").exists()


def test_bad_config(files, capsys):
    tmp, data, _ = files
    bad = tmp / "bad.toml"
    bad.write_text("[model\nname = 'krr'")
    code, _, err = _run(capsys, "fit", data, "--config", bad, "-o", tmp / "m")
    _one_line_error(code, err)
    bad.write_text("[descriptor]\nname = 'nonsense'\n")
    code, _, err = _run(capsys, "fit", data, "--config", bad, "--target", "y", "-o", tmp / "m")
    _one_line_error(code, err)
    assert "unknown descriptor" in err


@pytest.mark.parametrize("text, needle", [
    ("[modle]\nname = 'krr'\n", "unknown table [modle]"),
    ("[cv]\nn_split = 3\n", "[cv] unknown key 'n_split'"),
    ("[cv]\nn_splits = '5'\n", "[cv] n_splits must be an integer >= 2, got '5' (a string)"),
    ("[target]\nper_atom = 'yes'\n", "[target] per_atom must be true or false"),
    ("[descriptor]\nname = 'composition'\nstat = ['mean']\n", "[descriptor] unknown key 'stat'; did you mean"),
])
def test_bad_recipe_exits_2_before_the_data_is_read(files, capsys, text, needle):
    tmp, _, _ = files
    bad = tmp / "bad.toml"
    bad.write_text(text)
    code, _, err = _run(capsys, "fit", tmp / "missing.extxyz", "--config", bad, "--target", "y", "-o", tmp / "m")
    _one_line_error(code, err)
    assert str(bad) in err and needle in err and "missing" not in err


def test_set_overrides_the_recipe_and_rejects_bad_keys(files, capsys):
    tmp, data, config = files
    code, _, err = _run(capsys, "fit", data, "--config", config, "--set", "model.alpha=0.01",
                        "--set", "model.kernel=laplacian", "--set", "cv.n_splits=4", "-o", tmp / "m", "--quiet")
    assert code == 0, err
    meta = json.load(open(tmp / "m" / "model.json"))["metadata"]
    assert meta["recipe"]["model"] == {"name": "krr", "kernel": "laplacian", "alpha": 0.01}
    assert meta["recipe"]["cv"]["n_splits"] == 4
    for setting, needle in (("model.alpah=0.1", "--set model.alpah: [model] unknown key 'alpah'"),
                            ("cv.n_splits=x", "--set cv.n_splits: [cv] n_splits must be an integer >= 2, got 'x'"),
                            ("alpha", "--set needs KEY=VALUE")):
        code, _, err = _run(capsys, "fit", tmp / "missing.extxyz", "--config", config, "--set", setting,
                            "-o", tmp / "m2")
        _one_line_error(code, err)
        assert needle in err and not (tmp / "m2").exists()


def test_cell_smaller_than_cutoff_works_through_periodic_images(tmp_path, capsys):
    # default recipe for structures: SOAP (r_cut 5 Å) averaged per structure; the rocksalt
    # primitive cells (2 atoms, ~3 Å vectors) are far smaller than the cutoff
    structures = [a for a in _structures(24) if len(a) == 2]
    train = _write(tmp_path, "small.extxyz", structures)
    code, _, err = _run(capsys, "fit", train, "--target", "y", "-o", tmp_path / "m", "--quiet")
    assert code == 0, err
    big = [a.repeat((2, 2, 2)) for a in structures[:3]]
    both = _write(tmp_path, "both.extxyz", structures[:3] + big)
    code, _, err = _run(capsys, "predict", tmp_path / "m", both, "-o", tmp_path / "p.csv", "--quiet")
    assert code == 0, err
    y = [float(r["y"]) for r in csv.DictReader(open(tmp_path / "p.csv"))]
    np.testing.assert_allclose(y[:3], y[3:], rtol=1e-8)


def test_hyperparameters_need_data_to_choose_on(files, capsys):
    tmp, _, config = files
    same = _write(tmp, "same.extxyz", [_structures(1)[0].copy() for _ in range(4)])
    code, _, err = _run(capsys, "fit", same, "--config", config, "-o", tmp / "m", "--quiet")
    _one_line_error(code, err)
    assert f"{same}: cannot choose alpha (9 candidates) and gamma (7 candidates) by grouped leave-one-out from " \
           "4 samples that are one structure" in err
    assert "or one value of alpha and gamma" in err and not (tmp / "m").exists()
    code, _, _ = _run(capsys, "fit", same, "--config", config, "--set", "model.alpha=1e-3", "--set", "model.gamma=0.1",
                      "-o", tmp / "m", "--quiet")
    assert code == 0
    code, out, _ = _run(capsys, "evaluate", tmp / "m", same, "--plot", tmp / "p.png", "--quiet")
    assert code == 0 and " r2" not in out.splitlines()[0]  # the labels are all equal: r2 is undefined
    assert "y: r2 left out (r2 needs at least 2 labels that differ by more than rounding)" in out


@pytest.mark.parametrize("argv, needle", [
    (["--set", "model.alpha=[]"], "--set model.alpha: [model] alpha must be a finite number > 0 or a non-empty list "
                                  "of them, got []"),
    (["--set", "model.alpha=inf"], "alpha must be a finite number > 0"),
    (["--baseline", "y"], "the baseline 'y' is also a target"),
    (["--baseline", "nokey"], "train.extxyz: structure 0: baseline key 'nokey' is missing; choose one of the keys "
                              "it has: id, y"),
    (["--target", "y", "--target", "y"], "--target must be a non-empty list of distinct values"),
])
def test_bad_recipe_values_and_flags_write_no_model(files, capsys, argv, needle):
    tmp, data, config = files
    code, _, err = _run(capsys, "fit", data, "--config", config, *argv, "-o", tmp / "m", "--quiet")
    _one_line_error(code, err)
    assert needle in err and not (tmp / "m").exists()


def test_log1p_names_the_structure_outside_its_domain(files, capsys):
    tmp, _, config = files
    structures = _structures(6)
    structures[4].info["y"] = -3.0
    path = _write(tmp, "neg.extxyz", structures)
    code, _, err = _run(capsys, "cv", path, "--config", config, "--transform", "log1p", "--no-learning-curve",
                        "--quiet")
    _one_line_error(code, err)
    assert f"{path}: structure 4: log1p transform needs values > -1, but y is -3" in err


@pytest.mark.parametrize("argv, needle", [
    (["--n-splits", "1"], "cv: argument --n-splits: must be an integer >= 2, got '1'"),
    (["--n-splits", "40"], "train.extxyz: cannot make 40 folds from 34 groups (duplicate structures are one group); "
                           "lower --n-splits ([cv] n_splits) to at most 34"),
    (["--seeds", "0", "0"], "--seeds must be a non-empty list of distinct values"),
    (["--no-learning-curve", "--plot", "lc.png"], "--plot is for the learning curve, and --no-learning-curve skips it"),
])
def test_cv_refuses_contradictory_options(files, capsys, argv, needle):
    tmp, data, config = files
    code, _, err = _run(capsys, "cv", data, "--config", config, *argv, "--json", tmp / "cv.json", "--quiet")
    _one_line_error(code, err)
    assert needle in err and not (tmp / "cv.json").exists() and not (tmp / "lc.png").exists()


def test_model_help_lists_every_registered_model(capsys):
    from ml4ms.models import REGRESSORS

    for command in ("fit", "cv", "learning-curve"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"override the recipe's model ({', '.join(REGRESSORS)})" in text


def test_a_table_recipe_that_reads_its_answer_or_counts_no_atoms_is_refused(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{k},{k % 3},{2 * k}\n" for k in range(12)))
    base = ["fit", str(table), "--target", "y", "--descriptor", "columns", "-o", str(tmp_path / "m"), "--quiet"]
    for extra, needle in [(["--set", "descriptor.columns=['a','y']"], "the target 'y' is also a feature column"),
                          (["--set", "descriptor.columns=['a','b']", "--per-atom"],
                           "row 0: per-atom targets need the number of atoms"),
                          (["--set", "descriptor.columns=[a,b]"], "columns must be a list of column names, got '[a,b]'"),
                          (["--set", "descriptor.name=composition"], "--descriptor columns and --set "
                                                                     "descriptor.name=composition name two")]:
        code, _, err = _run(capsys, *base, *extra)
        _one_line_error(code, err)
        assert needle in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("folder", ["tio2_mpnn", "tio2"], ids=["one potential", "committee"])
def test_property_commands_refuse_a_potential_naming_its_commands(folder, tmp_path, capsys):
    import os

    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", folder)
    for command in (["predict", shipped, "tio2:test", "-o", str(tmp_path / "p.csv")],
                    ["evaluate", shipped, "tio2:test"]):
        assert main(command + ["--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "is an interatomic potential, not a property model; use 'ml4ms potential eval'" in err
        assert len(err.splitlines()) == 1
