"""Coulomb matrix and bag of bonds: DScribe agreement, invariances, fitted sizes, errors."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from ml4ms.descriptors import make_descriptor
from ml4ms.descriptors.coulomb import BagOfBonds, CoulombMatrix, coulomb_matrix
from ml4ms.errors import InputError

NAMES = ["CH3CH2OH", "CH3COOH", "H2O", "NH3", "C6H6", "CH3CHO", "HCOOH", "CH3NO2", "C2H6", "CH3OH"]


def molecules():
    rng = np.random.default_rng(0)
    out = []
    for name in NAMES:
        mol = molecule(name)
        mol.positions += rng.normal(scale=0.02, size=mol.positions.shape)  # break exact ties
        out.append(mol)
    return out


def no_norm_ties(mol, gap=1e-8):
    norms = np.sort(np.linalg.norm(coulomb_matrix(mol.numbers, mol.positions), axis=1))
    return len(norms) < 2 or np.min(np.diff(norms) / norms[1:]) > gap


@pytest.mark.parametrize("permutation", ["sorted_l2", "eigenspectrum"])
def test_agrees_with_dscribe(permutation):
    dscribe = pytest.importorskip("dscribe.descriptors")
    mols = [m for m in molecules() if permutation == "eigenspectrum" or no_norm_ties(m)]
    assert len(mols) >= 8
    ours = CoulombMatrix(permutation=permutation).fit(mols)
    assert ours.n_atoms_max_ == max(len(m) for m in mols)
    theirs = dscribe.CoulombMatrix(n_atoms_max=ours.n_atoms_max_, permutation=permutation)
    X, Y = ours.transform(mols), theirs.create(mols)
    assert X.shape == Y.shape
    np.testing.assert_allclose(X, Y, rtol=1e-6, atol=1e-9)


def test_coulomb_invariances():
    mol = molecules()[0]
    for permutation in ("sorted_l2", "eigenspectrum"):
        model = CoulombMatrix(permutation=permutation, n_atoms_max=12).fit([mol])
        X = model.transform([mol])
        moved = mol.copy()
        moved.rotate(50, (0.3, 1, -2))
        moved.positions += [4.0, -1.0, 2.0]
        perm = np.random.default_rng(1).permutation(len(mol))
        for other in (moved, mol[perm]):
            np.testing.assert_allclose(model.transform([other]), X, rtol=1e-9, atol=1e-9)
        assert model.n_features_out_ == (144 if permutation == "sorted_l2" else 12)


def test_coulomb_values_and_padding():
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.5]])
    X = CoulombMatrix(n_atoms_max=3).fit([h2]).transform([h2])
    np.testing.assert_allclose(X[0], [0.5, 2, 0, 2, 0.5, 0, 0, 0, 0])
    E = CoulombMatrix(n_atoms_max=3, permutation="eigenspectrum").fit([h2]).transform([h2])
    np.testing.assert_allclose(E[0], [2.5, -1.5, 0.0])


def test_coulomb_errors():
    mols = molecules()
    small = CoulombMatrix().fit([molecule("H2O")])
    with pytest.raises(InputError, match="n_atoms_max"):
        small.transform([molecule("H2O2")])  # more atoms than seen in fit
    with pytest.raises(InputError, match="element C"):
        small.transform([molecule("CO")])
    with pytest.raises(InputError, match="periodic"):
        CoulombMatrix(species=["Cu"], n_atoms_max=4).fit(mols).transform([bulk("Cu")])
    with pytest.raises(InputError, match="permutation"):
        CoulombMatrix(permutation="random").fit(mols)


def test_bag_of_bonds_water_by_hand():
    water = molecule("H2O")
    bob = make_descriptor("bag_of_bonds").fit([water])
    assert bob.species_ == [1, 8]
    assert bob.self_bag_sizes_ == [2, 1] and bob.pair_bag_sizes_ == [1, 2, 0]
    d = water.get_all_distances()
    o = int(np.flatnonzero(water.numbers == 8)[0])
    h = np.flatnonzero(water.numbers == 1)
    expected = np.concatenate([[0.5, 0.5], [0.5 * 8 ** 2.4], [1.0 / d[h[0], h[1]]],
                               np.sort(8.0 / d[o, h])[::-1]])
    np.testing.assert_allclose(bob.transform([water])[0], expected, rtol=1e-12)
    assert list(bob.get_feature_names_out()) == ["bob[H]0", "bob[H]1", "bob[O]0", "bob[H-H]0", "bob[H-O]0",
                                                 "bob[H-O]1"]


def test_bag_of_bonds_invariances_and_sizes():
    mols = molecules()
    bob = BagOfBonds().fit(mols)
    counts = {z: max(int((m.numbers == z).sum()) for m in mols) for z in bob.species_}
    assert bob.self_bag_sizes_ == [counts[z] for z in bob.species_]
    X = bob.transform(mols)
    assert X.shape == (len(mols), bob.n_features_out_)
    mol = mols[1]
    moved = mol.copy()
    moved.rotate(120, (1, 1, 0))
    perm = np.random.default_rng(2).permutation(len(mol))
    for other in (moved, mol[perm]):
        np.testing.assert_allclose(bob.transform([other])[0], X[1], rtol=1e-9, atol=1e-12)
    # the sum of each pair bag is the sum of the matching Coulomb-matrix entries
    M = coulomb_matrix(mol.numbers, mol.positions)
    np.testing.assert_allclose(X[1].sum(), np.triu(M).sum(), rtol=1e-12)


def test_bag_of_bonds_errors():
    bob = BagOfBonds().fit([molecule("H2O")])
    with pytest.raises(InputError, match="bag H"):
        bob.transform([Atoms("OH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])])
    with pytest.raises(InputError, match="element N"):
        bob.transform([molecule("NH3")])
    with pytest.raises(InputError, match="periodic"):
        BagOfBonds(species=["Cu"]).fit([Atoms("Cu")]).transform([bulk("Cu")])
