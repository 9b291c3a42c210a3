"""Tests of the bond-topology n-gram descriptor (ml4ms.descriptors.ngrams)."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list
from ase.spacegroup import crystal
from sklearn.base import clone

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.descriptors.ngrams import SHANNON_RADII, BondTopologyNGrams, nomad2018_scale
from ml4ms.errors import InputError


@pytest.fixture(scope="module")
def nomad():
    """A few NOMAD train structures of every space group (small cells first)."""
    records = load("nomad2018", "train").records
    picked, seen = [], {}
    for atoms in sorted(records[:400], key=len):
        sg = int(atoms.info["spacegroup"])
        if seen.get(sg, 0) < 2:
            seen[sg] = seen.get(sg, 0) + 1
            picked.append(atoms)
    return picked


def corundum():
    return crystal(
        ["Al", "O"],
        basis=[(0, 0, 0.352), (0.306, 0, 0.25)],
        spacegroup=167,
        cellpar=[4.76, 4.76, 12.99, 90, 90, 120],
    )


def counts(ng, atoms):
    return dict(zip(ng.vocabulary_, ng.transform([atoms])[0]))


def test_rocksalt_hand_counted():
    # Mg and O both octahedral. Per cell: 6 bonds; a centre of degree 6 has
    # C(6,2) = 15 pairs of bonds; a bond has 5 x 5 continuations on each side.
    mgo = bulk("MgO", "rocksalt", a=4.21)
    ng = BondTopologyNGrams(normalize=None).fit([mgo])
    assert counts(ng, mgo) == {
        "Mg[6]": 1,
        "O[6]": 1,
        "O[6]-Mg[6]": 6,
        "Mg[6]-O[6]-Mg[6]": 15,
        "O[6]-Mg[6]-O[6]": 15,
        "O[6]-Mg[6]-O[6]-Mg[6]": 150,
    }


def test_corundum_hand_counted():
    # Al2O3 hexagonal cell: 12 Al (CN 6), 18 O (CN 4); 72 bonds;
    # Al-O-Al: 18 x C(4,2) = 108; O-Al-O: 12 x C(6,2) = 180; 4-paths 72 x 5 x 3.
    al2o3 = corundum()
    assert len(al2o3) == 30
    ng = BondTopologyNGrams(normalize=None).fit([al2o3])
    assert counts(ng, al2o3) == {
        "Al[6]": 12,
        "O[4]": 18,
        "O[4]-Al[6]": 72,
        "Al[6]-O[4]-Al[6]": 108,
        "O[4]-Al[6]-O[4]": 180,
        "O[4]-Al[6]-O[4]-Al[6]": 1080,
    }
    ng = BondTopologyNGrams(normalize=None, ngram_range=(2, 3)).fit([al2o3])
    assert ng.vocabulary_ == ["O[4]-Al[6]", "Al[6]-O[4]-Al[6]", "O[4]-Al[6]-O[4]"]


def reference_counts(atoms, f, anions=("O",)):
    """Slow, independent n-gram counts: depth-first search over (atom, image) nodes."""
    radius = {atomic_numbers[s]: r for s, r in SHANNON_RADII.items()}
    anion = {atomic_numbers[s] for s in anions}
    z = atoms.numbers
    cutoff = f * 2 * max(radius[int(x)] for x in set(z))
    i, j, d, S = neighbor_list("ijdS", atoms, cutoff)
    adj = {a: [] for a in range(len(atoms))}
    for a, b, dist, s in zip(i, j, d, S):
        if (z[a] in anion) != (z[b] in anion) and dist < f * (radius[z[a]] + radius[z[b]]):
            adj[a].append((b, tuple(s)))
    cn = {a: len(adj[a]) for a in adj}
    label = {a: f"{atoms[a].symbol}[{cn[a]}]" for a in adj}
    key = {a: (z[a], cn[a]) for a in adj}
    out = {}

    def visit(path):
        atoms_on = [p[0] for p in path]
        if len(path) > 1:
            fwd = [key[a] for a in atoms_on]
            names = [label[a] for a in atoms_on]
            if fwd[::-1] < fwd:
                names = names[::-1]
            name = "-".join(names)
            out[name] = out.get(name, 0) + 0.5  # each path is found from both ends
        if len(path) == 4:
            return
        a, image = path[-1]
        for b, s in adj[a]:
            node = (b, tuple(np.add(image, s)))
            if node not in path:
                visit(path + [node])

    for a in adj:
        out[label[a]] = out.get(label[a], 0) + 1
        visit([(a, (0, 0, 0))])
    return out


@pytest.mark.parametrize("which", [0, 3, 6, 9])
def test_matches_brute_force_on_nomad(nomad, which):
    atoms = nomad[which]
    f = nomad2018_scale(atoms)
    ng = BondTopologyNGrams(normalize=None, scale="nomad2018").fit([atoms])
    got = {k: v for k, v in counts(ng, atoms).items() if v}
    assert got == reference_counts(atoms, f)


def test_cell_smaller_than_cutoff_matches_brute_force():
    # f = 2 puts the 8 third-shell O (3.65 Å) inside the 4.14 Å cutoff; the
    # primitive cell vectors are 2.98 Å, so atoms bond to many images of one atom
    mgo = bulk("MgO", "rocksalt", a=4.21)
    ng = BondTopologyNGrams(normalize=None, scale=2.0).fit([mgo])
    got = counts(ng, mgo)
    assert got["O[14]-Mg[14]"] == 14
    assert got == reference_counts(mgo, 2.0)


def test_invariances(nomad):
    atoms = nomad[5]
    ng = BondTopologyNGrams(scale="nomad2018").fit(nomad)
    x0 = ng.transform([atoms])[0]
    assert x0.sum() > 0

    moved = atoms.copy()
    moved.rotate(37, (1, 2, 3), rotate_cell=True)
    moved.translate([0.3, -1.2, 2.5])
    moved.wrap()
    perm = atoms[np.random.default_rng(0).permutation(len(atoms))]
    big = atoms * (2, 2, 2)
    X = ng.transform([moved, perm, big])
    np.testing.assert_allclose(X, np.tile(x0, (3, 1)), rtol=1e-12, atol=1e-15)

    per_atom = BondTopologyNGrams(scale="nomad2018", normalize="atom").fit(nomad)
    np.testing.assert_allclose(per_atom.transform([big])[0], per_atom.transform([atoms])[0], rtol=1e-12)
    raw = BondTopologyNGrams(scale="nomad2018", normalize=None).fit(nomad)
    np.testing.assert_allclose(raw.transform([big])[0], 8 * raw.transform([atoms])[0])


def test_volume_normalisation_and_integer_counts(nomad):
    raw = BondTopologyNGrams(scale="nomad2018", normalize=None).fit(nomad)
    dens = BondTopologyNGrams(scale="nomad2018").fit(nomad)
    R, D = raw.transform(nomad), dens.transform(nomad)
    volumes = np.array([a.cell.volume for a in nomad])
    np.testing.assert_allclose(D, R / volumes[:, None])
    np.testing.assert_array_equal(R, np.round(R))
    # 1-grams count every atom once; 2-grams: bonds = half the coordination sum
    one = [k for k, name in enumerate(raw.vocabulary_) if "-" not in name]
    np.testing.assert_array_equal(R[:, one].sum(axis=1), [len(a) for a in nomad])


def test_nomad2018_scale_rules():
    cell = Atoms("O", cell=[3, 3, 3], pbc=True)
    for sg, f in [(12, 1.4), (33, 1.4), (167, 1.5), (206, 1.5), (194, 1.3)]:
        cell.info["spacegroup"] = sg
        assert nomad2018_scale(cell) == f
    fcc = bulk("Cu", "fcc", a=4.0)  # primitive fcc: gamma = 60 exactly
    fcc.info["spacegroup"] = 227
    assert nomad2018_scale(fcc) == 1.5
    fcc.set_cell(fcc.cell.cellpar()[:3].tolist() + [60, 60, 59], scale_atoms=True)
    assert nomad2018_scale(fcc) == 1.4
    with pytest.raises(InputError, match="spacegroup"):
        nomad2018_scale(Atoms("O", cell=[3, 3, 3], pbc=True))


def test_scale_changes_the_graph():
    al2o3 = corundum()
    short = BondTopologyNGrams(normalize=None, scale=1.0).fit([al2o3])
    # 1.0 x (0.535 + 1.35) = 1.885 Å keeps only the 3 short Al-O bonds (1.86 Å)
    assert counts(short, al2o3)["O[2]-Al[3]"] == 36


def test_unseen_ngrams_dropped_and_reported():
    ng = BondTopologyNGrams(normalize=None).fit([bulk("MgO", "rocksalt", a=4.21)])
    stretched = bulk("MgO", "rocksalt", a=4.21) * (2, 2, 2)
    del stretched[1]  # an O vacancy: six Mg[5] appear
    x = ng.transform([stretched])[0]
    unseen = ng.unseen_ngrams([stretched])
    assert unseen["Mg[5]"] == 6 and all(name not in ng.vocabulary_ for name in unseen)
    full = BondTopologyNGrams(normalize=None).fit([stretched])
    total_full = sum(full.transform([stretched])[0])
    assert x.sum() + sum(unseen.values()) == pytest.approx(total_full)


def test_errors():
    mgo = bulk("MgO", "rocksalt", a=4.21)
    ng = BondTopologyNGrams().fit([mgo])
    with pytest.raises(InputError, match="Ca"):
        ng.transform([bulk("CaO", "rocksalt", a=4.8)])
    with pytest.raises(InputError, match="ionic radius for element Xe"):
        BondTopologyNGrams().fit([Atoms("XeO", positions=[[0, 0, 0], [2, 0, 0]], cell=[5, 5, 5], pbc=True)])
    with pytest.raises(InputError, match="spacegroup"):
        BondTopologyNGrams(scale="nomad2018").fit([mgo])
    with pytest.raises(InputError, match="periodic"):
        BondTopologyNGrams(ionic_radii={"H": 0.3}).fit([molecule("H2O")])
    with pytest.raises(InputError, match="ase.Atoms"):
        BondTopologyNGrams().fit(["Al2O3"])
    with pytest.raises(InputError, match="ngram_range"):
        BondTopologyNGrams(ngram_range=(0, 5)).fit([mgo])
    with pytest.raises(InputError, match="scale"):
        BondTopologyNGrams(scale="big").fit([mgo])


def test_molecule_and_custom_radii():
    water = molecule("H2O")
    ng = BondTopologyNGrams(normalize="atom", ionic_radii={"H": 0.3}).fit([water])
    got = counts(ng, water)
    assert got["H[1]-O[2]"] == pytest.approx(2 / 3)
    assert got["H[1]-O[2]-H[1]"] == pytest.approx(1 / 3)
    assert ng.radii_ == {"H": 0.3, "O": 1.35}


def test_sklearn_contract(nomad):
    ng = make_descriptor("ngrams", scale="nomad2018")
    assert isinstance(ng, BondTopologyNGrams)
    c = clone(ng).set_params(normalize="atom")
    assert c.get_params()["normalize"] == "atom" and ng.normalize == "volume"
    X = ng.fit_transform(nomad)
    np.testing.assert_allclose(X, ng.fit(nomad).transform(nomad))
    assert X.shape == (len(nomad), ng.n_features_out_)
    assert list(ng.get_feature_names_out()) == ng.vocabulary_
    state = {k: v for k, v in vars(ng).items() if k.endswith("_")}
    json.dumps(state)  # fitted state is plain data
    first = nomad[0].copy()
    ng.transform([first])
    assert np.array_equal(first.positions, nomad[0].positions)  # input not modified


def test_model_file_round_trip(nomad, tmp_path):
    from ml4ms.serialize import load_model, save_model

    ng = BondTopologyNGrams(scale="nomad2018", ionic_radii={"In": 0.81}).fit(nomad)
    save_model(tmp_path / "m", ng, {})
    back, _ = load_model(tmp_path / "m")
    np.testing.assert_array_equal(back.transform(nomad), ng.transform(nomad))
    assert back.vocabulary_ == ng.vocabulary_ and back.radii_["In"] == 0.81
