"""ACSF: DScribe agreement, physics invariances, cutoff continuity, gradients."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.spacegroup import crystal

from ml4ms.batch import neighbor_list
from ml4ms.descriptors import make_descriptor
from ml4ms.descriptors import acsf as acsf_module
from ml4ms.descriptors.acsf import ACSF
from ml4ms.errors import InputError

G2 = [(0.003214, 0.0), (0.071421, 0.0), (0.5, 1.5), (1.428426, 2.0)]
G3 = [1.0, 2.5]
G4 = [(0.000357, 1.0, -1.0), (0.028569, 1.0, -1.0), (0.000357, 1.0, 1.0), (0.028569, 2.0, 1.0),
      (0.01, 4.0, 1.0)]
G5 = [(0.01, 1.0, 1.0), (0.05, 2.0, -1.0)]


def rutile(rattle=0.05, seed=0):
    """6-atom rutile TiO2 (c = 2.96 Å, smaller than the cutoffs), rattled."""
    atoms = crystal(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                    cellpar=[4.594, 4.594, 2.959, 90, 90, 90])
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def triclinic(seed=1):
    rng = np.random.default_rng(seed)
    cell = np.array([[4.0, 0.3, 0.2], [0.8, 3.7, -0.4], [0.5, -0.6, 4.4]])
    frac = rng.random((5, 3))
    return Atoms(["Ti", "O", "O", "Ti", "O"], scaled_positions=frac, cell=cell, pbc=True)


def pairs_set(i, j, S):
    return set(map(tuple, np.c_[i, j, S].tolist()))


@pytest.mark.parametrize("make", [rutile, triclinic])
def test_neighbor_list_matches_ase(make):
    from ase.neighborlist import neighbor_list as ase_nl

    atoms = make()
    atoms.positions += [7.3, -11.2, 5.1]  # outside the cell: wrapping must be undone
    for cutoff in (2.5, 6.0):
        i, j, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        assert np.all(np.diff(i) >= 0)
        assert pairs_set(i, j, S) == pairs_set(*ase_nl("ijS", atoms, cutoff))
    slab = make()
    slab.pbc = [True, False, True]
    assert pairs_set(*neighbor_list(slab.positions, slab.cell.array, slab.pbc, 5.0)) == \
        pairs_set(*ase_nl("ijS", slab, 5.0))


def dscribe_acsf(**kw):
    dscribe = pytest.importorskip("dscribe.descriptors")
    return dscribe.ACSF(species=["O", "Ti"], **kw)


@pytest.mark.parametrize("use_table", [True, False])
def test_agrees_with_dscribe_periodic(monkeypatch, use_table):
    if not use_table:
        monkeypatch.setattr(acsf_module, "_TABLE_MAX", 0)
    frames = [rutile(seed=s) for s in range(2)] + [triclinic()]
    ours = ACSF(r_cut=5.0, g2_params=G2, g3_params=G3, g4_params=G4, g5_params=G5, species=["O", "Ti"],
                reduce=None).fit(frames)
    theirs = dscribe_acsf(r_cut=5.0, g2_params=G2, g3_params=G3, g4_params=G4, g5_params=G5, periodic=True)
    assert ours.n_features_out_ == theirs.get_number_of_features()
    X = ours.transform(frames)
    Y = np.concatenate(theirs.create(frames))
    assert np.abs(Y).max() > 1.0
    np.testing.assert_allclose(X, Y, rtol=1e-6, atol=1e-12)


def test_agrees_with_dscribe_molecule():
    mol = molecule("CH3CH2OH")
    ours = ACSF(r_cut=4.0, g2_params=G2, g4_params=G4, species=["C", "H", "O"], reduce=None).fit([mol])
    theirs = pytest.importorskip("dscribe.descriptors").ACSF(
        species=["C", "H", "O"], r_cut=4.0, g2_params=G2, g4_params=G4)
    np.testing.assert_allclose(ours.transform([mol]), theirs.create(mol), rtol=1e-6, atol=1e-12)


def default_model(species=("O", "Ti")):
    return ACSF(r_cut=4.5, g2_params=G2[:2], g4_params=G4[:3], species=list(species), reduce=None)


def test_supercell_and_small_cell():
    atoms = rutile()
    assert atoms.cell.lengths().min() < 4.5  # cell smaller than the cutoff
    model = default_model().fit([atoms])
    X = model.transform([atoms])
    big = model.transform([atoms.repeat((2, 2, 2))])
    np.testing.assert_allclose(big, np.tile(X, (8, 1)), rtol=1e-9, atol=1e-12)


def test_continuity_at_cutoff():
    model = ACSF(r_cut=3.0, g2_params=G2, g4_params=G4, g5_params=G5, species=["H"], reduce=None).fit(
        [Atoms("H")])

    def trimer(d):  # third atom at distance d from atom 0
        return Atoms("H3", positions=[[0, 0, 0], [1.1, 0, 0], [0, d, 0]])

    inside, outside = model.transform([trimer(3.0 - 1e-7)]), model.transform([trimer(3.0 + 1e-7)])
    assert np.abs(inside - outside).max() < 1e-10
    assert np.abs(model.transform([trimer(2.5)]) - outside).max() > 1e-3  # the neighbour matters inside


def test_unknown_species_and_bad_params():
    model = default_model().fit([rutile()])
    with pytest.raises(InputError, match="element Na"):
        model.transform([Atoms("NaO", positions=[[0, 0, 0], [0, 0, 2]])])
    with pytest.raises(InputError):
        ACSF(r_cut=-1.0).fit([rutile()])
    with pytest.raises(InputError):
        ACSF(g4_params=[(0.1, 1.0)]).fit([rutile()])


def test_defaults_layout_and_sklearn_contract():
    from sklearn.base import clone

    model = make_descriptor("acsf")
    assert isinstance(model, ACSF)
    model.fit([rutile()])
    # Behler–Parrinello TiO2 set: 2 x (G1 + 8 G2) + 3 x 18 G4
    assert model.n_features_out_ == 2 * 9 + 3 * 18
    names = model.get_feature_names_out()
    assert len(names) == model.n_features_out_ and names[0] == "G1[O]" and names[-1].startswith("G4[Ti-Ti]")
    X = model.transform([rutile(), triclinic()])
    assert X.shape == (2, 72)  # reduce="mean": one row per structure
    assert clone(model).get_params() == model.get_params()


def test_float32_option():
    atoms = rutile()
    X64 = default_model().fit([atoms]).transform([atoms])
    X32 = default_model().set_params(dtype="float32").fit([atoms]).transform([atoms])
    np.testing.assert_allclose(X32, X64, rtol=1e-5, atol=1e-6)


def test_mixed_batch_equals_separate_calls():
    frames = [rutile(), molecule("H2O"), triclinic(), Atoms("O", cell=3.0 * np.eye(3), pbc=True), rutile(seed=4)]
    model = ACSF(r_cut=5.0, g2_params=G2[:2], g4_params=G4, species=["H", "O", "Ti"], reduce=None).fit(frames)
    X, index = model.transform_local(frames)
    assert list(np.bincount(index)) == [len(a) for a in frames]
    np.testing.assert_allclose(X, np.concatenate([model.transform_local([a])[0] for a in frames]),
                               rtol=1e-12, atol=1e-13)
