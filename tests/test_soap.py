"""SOAP power spectrum: DScribe agreement, physics, gradients, API."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from sklearn.base import clone

from ml4ms.errors import InputError
from ml4ms.descriptors import make_descriptor
from ml4ms.descriptors.soap import SOAP, solid_harmonics


def rutile(rattle=0.05, seed=1):
    from ase.spacegroup import crystal

    atoms = crystal(
        ["Ti", "O"], basis=[(0, 0, 0), (0.3, 0.3, 0)], spacegroup=136, cellpar=[4.6, 4.6, 2.95, 90, 90, 90]
    )
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def ethanol(seed=2):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return atoms


def rel_err(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


# ---------------------------------------------------------------- DScribe
dscribe = pytest.importorskip("dscribe.descriptors")


@pytest.mark.parametrize("which", ["molecule", "crystal", "small_cell"])
@pytest.mark.parametrize("cutoff", [None, "poly", "pow"])
def test_agrees_with_dscribe(which, cutoff):
    atoms = {"molecule": ethanol(), "crystal": rutile(), "small_cell": bulk("Cu", "fcc", a=3.6)}[which]
    species = sorted(set(atoms.numbers))
    kw = dict(r_cut=4.0, n_max=5, l_max=4, sigma=0.6)
    weighting, ours = None, {"cutoff_function": None}
    if cutoff == "poly":
        weighting = {"function": "poly", "r0": 4.0, "c": 1, "m": 2}
        ours = {"cutoff_function": "poly", "cutoff_exponent": 2}
    elif cutoff == "pow":
        weighting = {"function": "pow", "r0": 1.5, "c": 1, "d": 1, "m": 3}
        ours = {"cutoff_function": None, "radial_scaling": {"r0": 1.5, "c": 1, "d": 1, "m": 3}}
    ref = dscribe.SOAP(species=species, periodic=which != "molecule", weighting=weighting, **kw).create(atoms)
    out = SOAP(species=species, reduce=None, **kw, **ours).fit([atoms]).transform([atoms])
    assert out.shape == ref.shape
    assert rel_err(out, ref) < 1e-6


def test_mean_matches_dscribe_outer_average_and_lmax_nmax_edge():
    frames = [rutile(seed=s) for s in range(3)]
    kw = dict(r_cut=3.5, n_max=1, l_max=0, sigma=0.5)
    ref = dscribe.SOAP(species=["O", "Ti"], periodic=True, average="outer", **kw).create(frames)
    out = SOAP(species=["Ti", "O"], cutoff_function=None, **kw).fit(frames).transform(frames)
    assert out.shape == ref.shape == (3, 3)
    assert rel_err(out, ref) < 1e-6


# ---------------------------------------------------------------- physics
def test_small_cell_equals_big_supercell():
    # cell edge 2.5 Å << r_cut 5 Å: many images of every atom are neighbours
    small = bulk("Cu", "fcc", a=3.6, cubic=False)
    big = small * (3, 3, 3)
    big.rattle(0.0)
    soap = SOAP(r_cut=5.0, n_max=3, l_max=3, reduce=None).fit([small])
    ref = np.tile(soap.transform([small]), (27, 1))
    assert rel_err(soap.transform([big]), ref) < 1e-9


@pytest.mark.parametrize("cutoff_function", ["poly", "cosine"])
def test_continuous_when_neighbour_crosses_cutoff(cutoff_function):
    soap = SOAP(r_cut=3.0, n_max=3, l_max=2, sigma=0.5, cutoff_function=cutoff_function, reduce=None)
    soap.fit([Atoms("HO")])

    def feats(d):
        return soap.transform([Atoms("HOH", positions=[[0, 0, 0], [0.97, 0, 0], [0, d, 0]])])

    inside, outside = feats(3.0 - 1e-6), feats(3.0 + 1e-6)
    assert np.max(np.abs(inside - outside)) < 1e-9 * np.max(np.abs(inside))
    # and the third atom does contribute just inside a larger distance
    assert np.max(np.abs(feats(2.5) - outside)) > 1e-6 * np.max(np.abs(inside))


def test_hard_cutoff_is_dscribe_like():
    soap = SOAP(r_cut=3.0, n_max=2, l_max=1, cutoff_function=None).fit([Atoms("H")])
    assert soap.neighbor_cutoff() == pytest.approx(3.0 + np.sqrt(2 * np.log(1000.0)))


def test_spherical_harmonics_normalised():
    D = np.random.default_rng(0).normal(size=(50, 3))
    Y = solid_harmonics(D, 6)
    r = np.linalg.norm(D, axis=1)
    for l in range(7):
        total = np.sum(Y[:, l * l : (l + 1) ** 2] ** 2, axis=1) / r ** (2 * l)
        np.testing.assert_allclose(total, (2 * l + 1) / (4 * np.pi), rtol=1e-12)


# ---------------------------------------------------------------- gradients
def finite_difference(soap, atoms, h=1e-5):
    n = len(atoms)
    out = np.zeros((n, soap.n_features_out_, n, 3))
    for j in range(n):
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[j, a] += h
            minus.positions[j, a] -= h
            out[:, :, j, a] = (soap.transform([plus]) - soap.transform([minus])) / (2 * h)
    return out


@pytest.mark.parametrize("which", ["molecule", "crystal"])
def test_gradients_match_finite_differences(which):
    atoms = ethanol() if which == "molecule" else rutile()
    soap = SOAP(r_cut=3.5, n_max=3, l_max=3, sigma=0.5, radial_scaling={"m": 2, "r0": 2.0}, reduce=None)
    soap.fit([atoms])
    grad, grad_eps = soap.gradients(atoms, strain=True)
    assert grad.shape == (len(atoms), soap.n_features_out_, len(atoms), 3)
    assert rel_err(grad, finite_difference(soap, atoms)) < 1e-6
    # strain: positions and cell deformed by (I + eps)
    h = 1e-5
    fd = np.zeros_like(grad_eps)
    for a in range(3):
        for b in range(3):
            vals = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[a, b] = sign * h
                moved = atoms.copy()
                moved.positions = atoms.positions @ (np.eye(3) + eps).T
                if atoms.pbc.any():
                    moved.set_cell(atoms.cell.array @ (np.eye(3) + eps).T, scale_atoms=False)
                vals.append(soap.transform([moved]))
            fd[:, :, a, b] = (vals[0] - vals[1]) / (2 * h)
    assert rel_err(grad_eps, fd) < 1e-6


def test_gradients_small_periodic_cell_and_autograd():
    atoms = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)
    atoms.rattle(0.05, seed=4)
    soap = SOAP(r_cut=4.0, n_max=3, l_max=2, sigma=0.6, cutoff_function="cosine", reduce=None).fit([atoms])
    grad = soap.gradients(atoms)
    assert rel_err(grad, finite_difference(soap, atoms)) < 1e-6
    assert rel_err(grad, soap.gradients(atoms, method="autograd")) < 1e-10
    # translation invariance: derivatives sum to zero over the moved atoms
    assert np.max(np.abs(grad.sum(axis=2))) < 1e-10 * np.max(np.abs(grad))


# ---------------------------------------------------------------- API
def test_api_species_reduce_and_errors():
    frames = [rutile(seed=s) for s in range(2)]
    soap = make_descriptor("soap", r_cut=3.0, n_max=2, l_max=2)
    assert soap.fit(frames) is soap
    assert soap.species_ == [8, 22]
    S, N, L = 2, 2, 2
    assert soap.n_features_out_ == (S * N) * (S * N + 1) // 2 * (L + 1)
    assert soap.transform(frames).shape == (2, soap.n_features_out_)
    assert len(soap.get_feature_names_out()) == soap.n_features_out_
    assert soap.get_feature_names_out()[0] == "soap_O_O_l0_n0_n0"
    per_atom, index = soap.transform_local(frames)
    assert rel_err(soap.transform(frames)[1], per_atom[index == 1].mean(axis=0)) < 1e-12
    summed = clone(soap).set_params(reduce="sum").fit(frames).transform(frames)
    assert rel_err(summed[0], per_atom[index == 0].sum(axis=0)) < 1e-12
    by_species = clone(soap).set_params(reduce="species_mean").fit(frames).transform(frames)
    assert by_species.shape == (2, 2 * soap.n_features_out_)
    with pytest.raises(InputError, match="Cu"):
        soap.transform([bulk("Cu")])
    with pytest.raises(InputError, match="Cu"):
        soap.gradients(bulk("Cu"))
    for bad in [dict(r_cut=0.5), dict(n_max=0), dict(l_max=30), dict(sigma=-1), dict(cutoff_function="step"),
                dict(n_max="8"), dict(radial_scaling={"p": 1})]:
        with pytest.raises(InputError):
            SOAP(**bad).fit(frames)


def test_parallel_equals_serial_and_empty_structure():
    frames = [rutile(seed=s) for s in range(4)] + [Atoms(cell=[3, 3, 3], pbc=True)]
    soap = SOAP(r_cut=3.0, n_max=2, l_max=2, species=["O", "Ti"])
    serial = soap.fit(frames).transform(frames)
    assert np.all(serial[-1] == 0)
    import ml4ms.descriptors.soap as module

    old, module.BATCH_ELEMENTS = module.BATCH_ELEMENTS, 1  # force one structure per batch
    try:
        parallel = clone(soap).set_params(n_jobs=2).fit(frames).transform(frames)
        local, index = soap.transform_local(frames)
    finally:
        module.BATCH_ELEMENTS = old
    assert rel_err(parallel, serial) < 1e-12
    assert local.shape[0] == sum(len(a) for a in frames) and index.max() == 3


@pytest.mark.parametrize("periodic", [False, True])
def test_gradients_match_dscribe_numerical_derivatives(periodic):
    atoms = rutile() if periodic else ethanol()
    species = sorted(set(atoms.get_chemical_symbols()))
    kw = dict(r_cut=3.5, n_max=3, l_max=2, sigma=0.6)
    weighting = {"function": "poly", "r0": 3.5, "c": 1, "m": 2}
    theirs = dscribe.SOAP(species=species, periodic=periodic, weighting=weighting, **kw)
    # DScribe layout (centre, atom, xyz, feature); attach=True moves the centre with its atom
    ref = theirs.derivatives(atoms, method="numerical", attach=True, return_descriptor=False)
    ours = SOAP(species=species, reduce=None, **kw).fit([atoms]).gradients(atoms)
    assert rel_err(ours, ref.transpose(0, 3, 1, 2)) < 1e-6


@pytest.mark.parametrize("name, params", [("soap", {"r_cut": float("inf")}), ("composition", {"n_jobs": float("nan")}),
                                          ("columns", {"columns": ["a"], "n_jobs": float("inf")}),
                                          ("ngrams", {"scale": float("nan")}),
                                          ("local_kernel", {"descriptor": {"name": "soap", "r_cut": float("inf")}}),
                                          ("concat", {"parts": [{"name": "soap", "sigma": float("inf")}]})])
def test_every_descriptor_refuses_non_finite_parameters_before_work(name, params):
    with pytest.raises(InputError, match=r"must be finite \(no nan or inf\), got"):
        make_descriptor(name, **params).fit([bulk("Si")])


def test_a_singular_basis_says_what_helps():
    with pytest.raises(InputError, match=r"r_cut spreads the basis widths over too many orders of magnitude; "
                                         r"lower r_cut .* or l_max"):
        SOAP(r_cut=1000.0).fit([bulk("Si")])
    with pytest.raises(InputError, match=r"the 16 radial functions are too close together within r_cut; "
                                         r"lower n_max or raise r_cut"):
        SOAP(r_cut=3.0, n_max=16).fit([bulk("Si")])
