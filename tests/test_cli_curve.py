"""``ml4ms learning-curve``: JSON shape, FPS curve, cutoff diagnostic, bad input."""

import json

import numpy as np
import pytest
from ase.io import write

import ml4ms.cli as cli
from ml4ms.cli.curve import fps_selection
from ml4ms.datasets import load

TARGET = "atomization_energy_pbe0_eV"


@pytest.fixture(scope="module")
def qm7_subset(tmp_path_factory):
    records = load("qm7").records
    idx = np.random.default_rng(0).permutation(len(records))[:240]
    subset = [records[i] for i in idx]
    path = tmp_path_factory.mktemp("qm7") / "qm7_240.extxyz"
    write(path, subset, format="extxyz")
    return str(path)


def _config(tmp_path, text):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return str(path)


CM = """
[descriptor]
name = "coulomb_matrix"
[model]
name = "krr"
kernel = "laplacian"
scale = false
alpha = [1e-8, 1e-4]
gamma = [1e-4, 1e-3]
"""

SOAP = """
[descriptor]
name = "soap"
r_cut = 3.0
n_max = 2
l_max = 2
reduce = "sum"
[model]
name = "krr"
kernel = "linear"          # linear kernel on summed SOAP = a sum of atomic energies
alpha = [1e-6, 1e-3, 1.0]
"""


def test_learning_curve_random_and_fps(qm7_subset, tmp_path, capsys):
    out, png = tmp_path / "curve.json", tmp_path / "curve.png"
    rc = cli.main(["learning-curve", qm7_subset, "--target", TARGET, "--config", _config(tmp_path, CM),
                   "--sizes", "40", "80", "160", "--seeds", "0", "1", "--compare-fps", "--quiet",
                   "--json", str(out), "-o", str(png)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result["curves"]) == {"random", "fps"}
    assert result["metric"] == "mae" and result["seeds"] == [0, 1]
    for curve in result["curves"].values():
        assert curve["train_size"] == [40, 80, 160]
        stats = curve["targets"][TARGET]
        assert len(stats["mean"]) == len(stats["std"]) == 3
        assert np.asarray(stats["scores"]).shape == (3, 2)
        assert all(np.isfinite(stats["mean"])) and all(s >= 0 for s in stats["std"])
    # more data helps: the random curve falls from 40 to 160 molecules (CM error at 40 is several eV... ~1 eV)
    random = result["curves"]["random"]["targets"][TARGET]["mean"]
    assert random[-1] < random[0]
    # far better than predicting the mean (std of the PBE0 energies is ~9.7 eV, MAE of the mean ~7 eV)
    assert random[-1] < 2.0
    assert png.stat().st_size > 1000
    assert "cutoff" not in result
    printed = capsys.readouterr().out
    assert "FPS" in printed and "random" in printed


def test_cutoff_diagnostic(qm7_subset, tmp_path):
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    rc = cli.main(["learning-curve", qm7_subset, "--target", TARGET, "--config", _config(tmp_path, SOAP),
                   "--sizes", "60", "120", "--seeds", "0", "--cutoffs", "1.5", "3.0", "--cutoff-key", "r_cut",
                   "--quiet", "--json", str(out), "-o", str(png)])
    assert rc == 0
    result = json.loads(out.read_text())
    cut = result["cutoff"]
    assert cut["key"] == "r_cut" and cut["values"] == [1.5, 3.0] and cut["train_size"] == 120
    mean = cut["targets"][TARGET]["mean"]
    assert len(mean) == 2 and all(np.isfinite(mean))
    # locality: a 1.5 Å environment sees only bonded neighbours; 3 Å describes the molecule better
    assert mean[1] < mean[0]
    assert result["cutoff_plot"] == str(tmp_path / "c_cutoff.png")
    assert (tmp_path / "c_cutoff.png").stat().st_size > 1000


@pytest.mark.parametrize("extra, needle", [
    (["--cutoffs", "2", "3"], "no parameter 'r_cut'"),       # CM has no cutoff
    (["--sizes", "5000"], "qm7_240.extxyz: train size 5000 exceeds the training pool of 192 samples (seed 0: 240 "
                          "samples less a test set of 48); give train sizes (--sizes) up to 192"),
    (["--sizes", "1.5"], "--sizes must be a non-empty list of distinct values, each a fraction in (0, 1] or a whole "
                         "number > 1, got [1.5]"),
    (["--sizes", "0.5", "0.5"], "--sizes must be a non-empty list of distinct values"),
    (["--seeds", "0", "0"], "--seeds must be a non-empty list of distinct values"),
    (["--sizes", "1", "192"], "train sizes [1.0, 192.0] are all 192 samples of the pool of 192 (seed 0); give each "
                              "training-set size once"),
    (["--cutoff-size", "2.5", "--cutoffs", "2"], "--cutoff-size must be a fraction in (0, 1] or a whole number > 1"),
    (["--cutoff-size", "20"], "--cutoff-size is the training-set size of --cutoffs"),
    (["--test-fraction", "1.5"], "--test-fraction: must be a number between 0 and 1"),
])
def test_bad_input_exit_2(qm7_subset, tmp_path, capsys, extra, needle):
    rc = cli.main(["learning-curve", qm7_subset, "--target", TARGET, "--config", _config(tmp_path, CM),
                   "--seeds", "0", "--quiet", "--json", str(tmp_path / "x.json"), *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("ml4ms: error:") and needle in err
    assert not (tmp_path / "x.json").exists()


def test_bad_data_and_target_exit_2(qm7_subset, tmp_path, capsys):
    assert cli.main(["learning-curve", str(tmp_path / "missing.xyz"), "--target", TARGET]) == 2
    assert cli.main(["learning-curve", qm7_subset, "--target", "no_such_key", "--quiet",
                     "--config", _config(tmp_path, CM)]) == 2
    assert capsys.readouterr().err.count("ml4ms: error:") == 2


def test_fps_selection_nested_and_from_pool():
    X = np.random.default_rng(1).normal(size=(50, 3))
    pool = np.arange(10, 50)
    select = fps_selection(X)
    rng = np.random.default_rng(0)
    small, large = select(pool, 5, rng), select(pool, 12, rng)
    assert len(set(large.tolist())) == 12 and np.isin(large, pool).all()
    assert large[:5].tolist() == small.tolist()
    # FPS spreads out: its 12 points cover the pool better than the first 12 pool members
    from scipy.spatial.distance import cdist

    Xs = (X[pool] - X[pool].mean(0)) / X[pool].std(0)
    pos = {p: k for k, p in enumerate(pool)}
    cover = cdist(Xs, Xs[[pos[i] for i in large]]).min(1).max()
    naive = cdist(Xs, Xs[:12]).min(1).max()
    assert cover < naive
