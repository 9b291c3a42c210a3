"""Duplicate detection: invariances, tolerance, and the known duplicates of the bundled data."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell, molecule

from ml4ms.datasets import load
from ml4ms.duplicates import (
    _periodic_distances,
    deviation,
    duplicate_groups,
    find_duplicates,
    fingerprints,
    groups_for,
    structure_deviation,
)
from ml4ms.errors import InputError
from ml4ms.neighbors import ase_neighbor_pairs as neighbor_pairs


def _crystal(seed=0):
    """A low-symmetry periodic cell: rattled, sheared rocksalt supercell."""
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    atoms.set_cell(atoms.cell @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0.02, 0, 1]]), scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _transformed(atoms, kind, seed=1):
    rng = np.random.default_rng(seed)
    out = atoms.copy()
    if kind == "rotate":
        rot = _random_rotation(seed)
        out.set_positions(out.get_positions() @ rot.T)
        if out.pbc.any():
            out.set_cell(np.asarray(out.cell) @ rot.T)
    elif kind == "translate":
        out.translate(rng.normal(size=3) * 3)
    elif kind == "permute":
        out = out[rng.permutation(len(out))]
    elif kind == "supercell":
        out = out.repeat((2, 1, 3))
    elif kind == "cell_vectors":  # same lattice, other basis (unimodular matrix)
        out = make_supercell(out, [[1, 1, 0], [0, 1, 0], [0, 1, 1]], wrap=True)
    elif kind == "nondiagonal_supercell":
        out = make_supercell(out, [[1, 1, 0], [-1, 1, 0], [0, 0, 1]], wrap=True)
    elif kind == "mirror":
        out.set_positions(out.get_positions() * [-1, 1, 1])
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_periodic_distances_match_neighbor_pairs(seed):
    atoms = _crystal(seed)
    atoms.positions += 7.3  # unwrapped positions
    small = bulk("Cu", "fcc", a=3.6)  # cell much smaller than the cutoff
    triclinic = Atoms("Si2", cell=[[3.0, 0, 0], [2.6, 2.5, 0], [0.7, 1.1, 3.3]],
                      scaled_positions=[[0, 0, 0], [0.3, 0.6, 0.2]], pbc=True)
    for structure in (atoms, small, triclinic):
        i, j, d = _periodic_distances(structure, 5.0)
        ri, rj, vectors, _ = neighbor_pairs(structure, 5.0)
        assert len(d) == len(ri)
        np.testing.assert_allclose(np.sort(d), np.sort(np.linalg.norm(vectors, axis=1)), atol=1e-10)
        # same (i, j) pairs with the same multiplicities
        ours = np.lexsort((np.round(d, 8), j, i))
        ref = np.lexsort((np.round(np.linalg.norm(vectors, axis=1), 8), rj, ri))
        np.testing.assert_array_equal(i[ours], ri[ref])
        np.testing.assert_array_equal(j[ours], rj[ref])


@pytest.mark.parametrize(
    "kind", ["rotate", "translate", "permute", "supercell", "cell_vectors", "nondiagonal_supercell"]
)
def test_crystal_invariances(kind):
    atoms = _crystal()
    other = _transformed(atoms, kind)
    assert structure_deviation(atoms, other, cutoff=5.0) < 1e-9
    assert find_duplicates([atoms, other], progress=False) == [(0, 1)]


@pytest.mark.parametrize("kind", ["rotate", "translate", "permute", "mirror"])
def test_molecule_invariances(kind):
    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=3)
    other = _transformed(mol, kind)
    assert structure_deviation(mol, other) < 1e-9
    assert find_duplicates([mol, other], progress=False) == [(0, 1)]


def test_perturbed_structure_is_not_a_duplicate():
    atoms = _crystal()
    moved = atoms.copy()
    moved.positions[3] += [0.02, 0.0, 0.0]  # 0.02 Å > tol
    pairs, deviations = find_duplicates([atoms, moved], tol=1e-3, progress=False, return_deviation=True)
    assert pairs == []
    dev = structure_deviation(atoms, moved)
    assert 1e-3 < dev <= 0.04 + 1e-9  # a move of δ changes distances by at most δ
    # within a looser tolerance it is a duplicate, with the same deviation
    pairs, deviations = find_duplicates([atoms, moved], tol=0.05, progress=False, return_deviation=True)
    assert pairs == [(0, 1)] and deviations[0] == pytest.approx(dev)
    # a strained cell changes the volume per atom
    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.01, scale_atoms=True)
    assert find_duplicates([atoms, strained], progress=False) == []


def test_different_structures_with_same_composition():
    rocksalt = bulk("NaCl", "rocksalt", a=5.64)
    zincblende = bulk("NaCl", "zincblende", a=5.64)
    mol = molecule("CH3CH2OH")
    isomer = molecule("CH3OCH3")  # same formula C2H6O
    assert find_duplicates([rocksalt, zincblende, mol, isomer], progress=False) == []


def test_cross_set_and_groups():
    a = _crystal(0)
    b = _crystal(1)
    c = _transformed(a, "supercell")
    d = _transformed(b, "rotate")
    assert find_duplicates([a, b], others=[d, c, b.copy()], progress=False) == [(0, 1), (1, 0), (1, 2)]
    groups = duplicate_groups([a, b, c, d, molecule("H2O")], progress=False)
    np.testing.assert_array_equal(groups, [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(duplicate_groups(4, pairs=[(2, 3)]), [0, 1, 2, 2])
    np.testing.assert_array_equal(groups_for([{"x": 1}, {"x": 1}, {"x": 2}]), [0, 1, 2])
    np.testing.assert_array_equal(groups_for([a, c]), [0, 0])


def test_fingerprints_are_supercell_invariant_quantiles():
    a = _crystal()
    fa, fb = fingerprints([a, a.repeat((1, 2, 1))], cutoff=4.0)
    assert fa.key == fb.key and fb.n_atoms == 2 * fa.n_atoms
    for pair in fa.distances:
        np.testing.assert_allclose(np.repeat(fa.distances[pair], 2), fb.distances[pair], atol=1e-9)


def test_bad_input():
    with pytest.raises(InputError, match="ase.Atoms"):
        find_duplicates([{"a": 1}])
    with pytest.raises(InputError, match="tol"):
        find_duplicates([bulk("Cu")], tol=-1)
    with pytest.raises(InputError, match="structure 1: empty"):
        fingerprints([bulk("Cu"), Atoms()])


# --- the bundled datasets: the duplicates their READMEs list must be found ---

def _by_key(records, key):
    return {rec.info[key]: index for index, rec in enumerate(records)}


@pytest.mark.slow
def test_nomad_train_and_cross_duplicates():
    train = load("nomad2018", "train").records
    test = load("nomad2018", "test").records
    # one pass over train + test gives the pairs inside train and across
    pairs = find_duplicates(train + test, progress=False)
    n = len(train)
    ids = [(int(train[i].info["id"]), int(train[j].info["id"])) for i, j in pairs if j < n]
    cross = [(int(train[i].info["id"]), int(test[j - n].info["id"])) for i, j in pairs if i < n <= j]
    readme = {(126, 395), (531, 1379), (2319, 2337), (308, 2154), (353, 2075), (1215, 1886), (2333, 2370)}
    assert readme <= set(ids)
    assert (1553, 212) in cross
    # the 7 README pairs have identical geometry (deviation 0); the other pairs are
    # symmetry-equivalent settings or supercells with nearly equal labels
    index = _by_key(train, "id")
    for a, b in readme:
        assert structure_deviation(train[index[a]], train[index[b]]) < 1e-6
    # ... while every other pair found has nearly equal labels (same relaxed structure)
    for a, b in set(ids) - readme:
        ra, rb = train[index[a]], train[index[b]]
        assert abs(ra.info["formation_energy_ev_natom"] - rb.info["formation_energy_ev_natom"]) < 2e-3
        assert abs(ra.info["bandgap_energy_ev"] - rb.info["bandgap_energy_ev"]) < 0.05
    # pooled pair distances alone would call 560/1716 duplicates; their atoms differ
    a, b = train[index[560]], train[index[1716]]
    assert deviation(*fingerprints([a, b])) < 1e-3
    assert structure_deviation(a, b) > 0.1 and (560, 1716) not in ids


def test_qm7_duplicates():
    records = load("qm7").records
    names = [rec.info["source_file"][:-4] for rec in records]
    pairs = {(names[i], names[j]) for i, j in find_duplicates(records, progress=False)}
    readme = {("4727", "4733"), ("4727", "4734"), ("4728", "4735"), ("6595", "6598"),
              ("6921", "6925"), ("6941", "6942"), ("3082", "3083"), ("3060", "3061")}
    assert readme <= pairs
    energy = {name: rec.info["atomization_energy_pbe0_eV"] for name, rec in zip(names, records)}
    # every pair found is a true duplicate: identical PBE0 energies
    assert all(energy[a] == energy[b] for a, b in pairs)


@pytest.mark.slow
def test_tio2_duplicates():
    records = load("tio2").records
    pairs, deviations = find_duplicates(records, progress=False, return_deviation=True)
    found = {(int(records[i].info["structure"][9:]), int(records[j].info["structure"][9:])): dev
             for (i, j), dev in zip(pairs, deviations)}
    readme = {(1062, 1957), (2947, 4632), (6147, 6248), (7412, 7471), (7640, 7754)}
    assert readme <= set(found)
    assert all(found[p] < 1e-6 for p in readme)
    # near duplicates (deviation < 1e-3 Å) have energies per atom within 2e-5 eV
    for i, j in pairs:
        e_i = records[i].get_potential_energy() / len(records[i])
        e_j = records[j].get_potential_energy() / len(records[j])
        assert abs(e_i - e_j) < 2e-5
