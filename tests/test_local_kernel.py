"""Sparse sum-of-local-environment kernels (ml4ms.descriptors.local_kernel) and per-atom contributions."""

import csv

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from sklearn.linear_model import BayesianRidge, Ridge

from ml4ms.cli import main
from ml4ms.descriptors import make_descriptor
from ml4ms.descriptors.local_kernel import LocalKernelFeatures, inverse_sqrt, share_out
from ml4ms.descriptors.soap import SOAP
from ml4ms.errors import InputError
from ml4ms.models.kernel import KernelRidge
from ml4ms.models.structure import StructureRegressor
from ml4ms.serialize import load_model, save_model

SOAP_PARAMS = {"name": "soap", "r_cut": 3.5, "n_max": 3, "l_max": 2}
NAMES = ["H2O", "CH4", "NH3", "CH3OH", "C2H6", "C2H4", "HCN", "H2CO", "CH3CN", "CH3CH2OH", "CH3COOH", "HCOOH",
         "CH3CHO", "C2H2", "N2H4", "H2O2"]


def _molecules(seed=0, names=NAMES):
    """Small molecules, randomly distorted, with a made-up extensive target."""
    rng = np.random.default_rng(seed)
    out = []
    for k, name in enumerate(names):
        m = molecule(name)
        m.positions += 0.05 * rng.normal(size=m.positions.shape)
        m.info["id"] = k
        d = m.get_all_distances()[np.triu_indices(len(m), 1)]
        m.info["y"] = float(np.sum(np.exp(-d)) - 0.3 * np.sum(m.numbers == 1) + 0.1 * rng.normal())
        m.info["base"] = float(0.5 * len(m))
        out.append(m)
    return out


def _explicit(features, kernel, species, zeta=2, gamma=None, per_species=True):
    """Environment kernel between two (rows, species) sets, written out directly."""
    (Xa, Xb), (za, zb) = features, species
    if kernel == "polynomial":
        na = Xa / np.linalg.norm(Xa, axis=1)[:, None]
        nb = Xb / np.linalg.norm(Xb, axis=1)[:, None]
        k = (na @ nb.T) ** zeta
    else:
        k = np.exp(-gamma * ((Xa[:, None, :] - Xb[None, :, :]) ** 2).sum(-1))
    if per_species:
        k = k * (za[:, None] == zb[None, :])
    return k


def _membership(index, n):
    L = np.zeros((n, len(index)))
    L[index, np.arange(len(index))] = 1.0
    return L


@pytest.mark.parametrize("kernel,reduce,per_species", [
    ("polynomial", "sum", True), ("polynomial", "mean", False), ("gaussian", "sum", False), ("gaussian", "mean", True),
])
def test_all_environments_give_the_full_structure_kernel_and_full_krr(kernel, reduce, per_species):
    mols = _molecules()
    train, test = mols[:11], mols[11:]
    f = LocalKernelFeatures(descriptor=SOAP_PARAMS, kernel=kernel, zeta=2, gamma="auto", reduce=reduce,
                            selection="all", per_species=per_species).fit(train)
    F, Ft = f.transform(train), f.transform(test)
    soap = SOAP(**{k: v for k, v in SOAP_PARAMS.items() if k != "name"}).fit(train)
    Xa, ia = soap.transform_local(train)
    Xb, ib = soap.transform_local(test)
    za = np.concatenate([m.numbers for m in train])
    zb = np.concatenate([m.numbers for m in test])
    kaa = _explicit((Xa, Xa), kernel, (za, za), gamma=f.gamma_, per_species=per_species)
    kba = _explicit((Xb, Xa), kernel, (zb, za), gamma=f.gamma_, per_species=per_species)
    La, Lb = _membership(ia, len(train)), _membership(ib, len(test))
    if reduce == "mean":
        La /= La.sum(1, keepdims=True)
        Lb /= Lb.sum(1, keepdims=True)
    K, Kt = La @ kaa @ La.T, Lb @ kba @ La.T  # K(A, B) = sum_a sum_b k(x_a, x_b) (/ |A||B| for the mean)
    assert F.shape == (len(train), len(za))
    np.testing.assert_allclose(F @ F.T, K, atol=1e-6 * np.abs(K).max())
    np.testing.assert_allclose(Ft @ F.T, Kt, atol=1e-6 * np.abs(K).max())
    # a linear ridge on the features is full KRR with the explicit structure kernel
    y = np.array([m.info["y"] for m in train])
    alpha = 1e-3 * np.abs(K).max()
    ridge = KernelRidge(kernel="linear", scale=False, alpha=alpha).fit(F, y)
    dual = np.linalg.solve(K + alpha * np.eye(len(K)), y - y.mean())
    np.testing.assert_allclose(ridge.predict(Ft), Kt @ dual + y.mean(), rtol=1e-6, atol=1e-6)


def test_sparse_features_approximate_the_kernel_and_keep_a_fixed_width():
    mols = _molecules()
    full = LocalKernelFeatures(descriptor=SOAP_PARAMS, selection="all").fit(mols)
    K = full.transform(mols) @ full.transform(mols).T
    errors = []
    for selection in ("fps", "cur"):
        f = LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=40, selection=selection).fit(mols)
        F = f.transform(mols)
        assert F.shape == (len(mols), 40) and f.n_features_out_ == 40
        assert np.bincount(f.active_species_).sum() == 40 and set(f.active_species_) == {1, 6, 7, 8}
        errors.append(np.abs(F @ F.T - K).max() / np.abs(K).max())
        # the projected-process approximation never exceeds the true kernel on the diagonal
        assert np.all(np.diag(F @ F.T) <= np.diag(K) * (1 + 1e-8))
    assert max(errors) < 0.1, errors
    assert f.transform(mols[:1]).shape == (1, 40)  # width fixed even for a tiny input


def test_species_offset_adds_a_constant_per_element():
    mols = _molecules()
    plain = LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=20).fit(mols)
    offset = LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=20, species_offset=3.0).fit(mols)
    F, G = plain.transform(mols), offset.transform(mols)
    counts = np.array([[np.sum(m.numbers == z) for z in offset.species_] for m in mols])
    assert G.shape == (len(mols), 20 + 4) and offset.n_features_out_ == 24
    np.testing.assert_allclose(G, np.hstack([F, 3.0 * counts]), atol=1e-10)
    # kernel: + 9 * sum over same-element atom pairs
    np.testing.assert_allclose(G @ G.T, F @ F.T + 9.0 * counts @ counts.T, rtol=1e-10)
    rows, index = offset.transform_local(mols)
    np.testing.assert_allclose(np.array([rows[index == i].sum(0) for i in range(len(mols))]), G, atol=1e-10)


def test_per_atom_rows_sum_to_the_structure_row():
    mols = _molecules()
    f = LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=25, selection="cur").fit(mols)
    rows, index = f.transform_local(mols)
    summed = np.zeros((len(mols), rows.shape[1]))
    np.add.at(summed, index, rows)
    np.testing.assert_allclose(summed, f.transform(mols), atol=1e-10)
    assert len(rows) == sum(len(m) for m in mols)


def _model(regressor, **kwargs):
    return StructureRegressor(descriptor=LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=30), regressor=regressor,
                              **kwargs)


@pytest.mark.parametrize("regressor,baseline", [
    (KernelRidge(kernel="linear", scale=False, alpha=[1e-4, 1e-2, 1.0]), None),
    (KernelRidge(kernel="linear", scale=True, alpha=1e-2), "base"),
    (Ridge(alpha=1e-3), None),
    (BayesianRidge(), "base"),
])
def test_per_atom_contributions_sum_to_the_prediction(regressor, baseline):
    mols = _molecules()
    y = np.array([m.info["y"] for m in mols])
    model = _model(regressor, baseline=baseline).fit(mols[:12], y[:12])
    parts = model.predict_local(mols)
    pred = model.predict(mols)
    assert [len(p) for p in parts] == [len(m) for m in mols]
    np.testing.assert_allclose([p.sum() for p in parts], pred, rtol=1e-8, atol=1e-8)
    # two targets at once
    Y = np.c_[y, 2 * y + 1]
    model2 = _model(regressor).fit(mols[:12], Y[:12])
    parts2 = model2.predict_local(mols[12:])
    np.testing.assert_allclose(np.array([p.sum(axis=0) for p in parts2]), model2.predict(mols[12:]), atol=1e-8)


def test_per_atom_contributions_of_summed_soap_with_a_linear_model():
    mols = _molecules()
    y = np.array([m.info["y"] for m in mols])
    soap = make_descriptor("soap", **{k: v for k, v in SOAP_PARAMS.items() if k != "name"}, reduce="sum")
    model = StructureRegressor(descriptor=soap, regressor=Ridge(alpha=1e-2)).fit(mols, y)
    parts = model.predict_local(mols)
    np.testing.assert_allclose([p.sum() for p in parts], model.predict(mols), rtol=1e-8, atol=1e-8)


def test_per_atom_contributions_refuse_models_that_are_not_sums_of_atoms():
    mols = _molecules()
    y = np.array([m.info["y"] for m in mols]) + 10.0
    with pytest.raises(InputError, match="log1p"):
        _model(Ridge(), target_transform="log1p").fit(mols, y).predict_local(mols)
    with pytest.raises(InputError, match="per_atom"):
        _model(Ridge(), per_atom=True).fit(mols, y).predict_local(mols)
    with pytest.raises(InputError, match="linear regressor"):
        _model(KernelRidge(kernel="gaussian", gamma=1e-3, alpha=1e-3)).fit(mols, y).predict_local(mols)
    mean = StructureRegressor(descriptor=LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=30, reduce="mean"),
                              regressor=Ridge())
    with pytest.raises(InputError, match="summed over atoms"):
        mean.fit(mols, y).predict_local(mols)


def test_bad_parameters_are_one_line_input_errors():
    mols = _molecules()[:3]
    with pytest.raises(InputError, match="per-atom descriptor"):
        LocalKernelFeatures(descriptor={"name": "coulomb_matrix"}).fit(mols)
    with pytest.raises(InputError, match="unknown local kernel"):
        LocalKernelFeatures(descriptor=SOAP_PARAMS, kernel="rbf").fit(mols)
    with pytest.raises(InputError, match="selection"):
        LocalKernelFeatures(descriptor=SOAP_PARAMS, selection="random").fit(mols)
    with pytest.raises(InputError, match="needs ase.Atoms"):
        LocalKernelFeatures(descriptor=SOAP_PARAMS).fit([{"a": 1.0}])
    f = LocalKernelFeatures(descriptor=SOAP_PARAMS, n_active=5).fit(mols)
    with pytest.raises(InputError, match="not seen in training"):
        f.transform([molecule("SO2")])


def test_helpers():
    assert share_out([1000, 10, 500], 300).tolist() == [145, 10, 145]
    assert share_out([3, 4], 100).tolist() == [3, 4]
    K = np.array([[2.0, 1.0], [1.0, 2.0]])
    P = inverse_sqrt(K)
    np.testing.assert_allclose(P @ P.T, np.linalg.inv(K), rtol=1e-8)
    dup = np.ones((3, 3))  # three identical environments: rank 1, width kept
    P = inverse_sqrt(dup)
    assert P.shape == (3, 3) and np.count_nonzero(np.abs(P).sum(0) > 0) == 1


@pytest.mark.parametrize("regressor", [KernelRidge(kernel="linear", scale=False, alpha=[1e-3, 1e-1]), Ridge()])
def test_serialization_round_trip(tmp_path, regressor):
    mols = _molecules()
    y = np.array([m.info["y"] for m in mols])
    model = _model(regressor).fit(mols[:12], y[:12])
    save_model(tmp_path / "m", model, {"targets": ["y"]})
    loaded, meta = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(mols[12:]), model.predict(mols[12:]), rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(loaded.predict_local(mols[12:])),
                               np.concatenate(model.predict_local(mols[12:])), rtol=1e-12)
    assert make_descriptor("local_kernel", descriptor=SOAP_PARAMS).get_params()["kernel"] == "polynomial"


RECIPE = """
targets = ["y"]
[descriptor]
name = "local_kernel"
n_active = 30
zeta = 2
[descriptor.descriptor]
name = "soap"
r_cut = 3.5
n_max = 3
l_max = 2
[model]
name = "krr"
kernel = "linear"
scale = false
alpha = [1e-4, 1e-2, 1.0]
[target]
transform = "{transform}"
"""


def test_cli_fit_predict_per_atom(tmp_path, capsys):
    mols = _molecules()
    data = tmp_path / "mols.extxyz"
    ase.io.write(data, mols, format="extxyz")
    config = tmp_path / "recipe.toml"
    config.write_text(RECIPE.format(transform="none"))
    assert main(["fit", str(data), "--config", str(config), "-o", str(tmp_path / "m"), "--quiet"]) == 0
    out, atoms = tmp_path / "pred.csv", tmp_path / "atoms.csv"
    assert main(["predict", str(tmp_path / "m"), str(data), "-o", str(out), "--contributions", str(atoms),
                 "--quiet"]) == 0
    pred = [float(r["y"]) for r in csv.DictReader(open(out))]
    rows = list(csv.DictReader(open(atoms)))
    assert len(rows) == sum(len(m) for m in mols)
    assert {"structure", "id", "atom", "element", "pos_x", "pos_y", "pos_z", "y"} <= set(rows[0])
    np.testing.assert_allclose(float(rows[1]["pos_y"]), mols[0].positions[1, 1])
    sums = np.zeros(len(mols))
    for r in rows:
        sums[int(r["structure"])] += float(r["y"])
    np.testing.assert_allclose(sums, pred, rtol=1e-8, atol=1e-8)
    assert rows[0]["element"] == mols[0].get_chemical_symbols()[0]
    xyz = tmp_path / "atoms.extxyz"
    assert main(["predict", str(tmp_path / "m"), str(data), "-o", str(out), "--contributions", str(xyz), "--quiet"]) == 0
    frames = ase.io.read(xyz, ":")
    np.testing.assert_allclose([f.arrays["y_atomic"].sum() for f in frames], pred, rtol=1e-8, atol=1e-8)
    capsys.readouterr()
    # a log1p model has no per-atom contributions: one clear line, exit code 2
    config.write_text(RECIPE.format(transform="log1p"))
    for m in mols:
        m.info["y"] = abs(m.info["y"])
    ase.io.write(data, mols, format="extxyz")
    assert main(["fit", str(data), "--config", str(config), "-o", str(tmp_path / "m2"), "--quiet"]) == 0
    code = main(["predict", str(tmp_path / "m2"), str(data), "-o", str(out), "--contributions", str(atoms), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "log1p" in err[0], err
