import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell, molecule
from ase.spacegroup import crystal

from ml4ms.batch import AtomsBatch, collate
from ml4ms.errors import InputError
from ml4ms.graphs import KNNGraph, RadiusGraph, VoronoiGraph, knn_edges, radius_edges, voronoi_edges

GRAPHS = {"radius": RadiusGraph(3.2), "knn": KNNGraph(5), "voronoi": VoronoiGraph(),
          "voronoi-topology": VoronoiGraph(weights=None)}


def neighbourhoods(atoms, edges):
    """Per atom, the sorted (neighbour Z, distance, weights...) rows, as a sorted list of tuples."""
    w = edges.weights if edges.weights is not None else np.zeros((edges.n_edges, 0))
    rows = np.column_stack([atoms.numbers[edges.j], edges.distances, w]).round(6) + 0.0
    return sorted(tuple(map(tuple, sorted(map(tuple, rows[edges.i == a])))) for a in range(len(atoms)))


def by_atom(edges, atom):
    """(neighbour, distance, weights) of one atom's edges."""
    mask = edges.i == atom
    return edges.j[mask], edges.distances[mask], None if edges.weights is None else edges.weights[mask]


def edge_set(edges, relabel=None):
    relabel = np.arange(max(edges.i.max(initial=0), edges.j.max(initial=0)) + 1) if relabel is None else relabel
    return {(int(relabel[a]), int(relabel[b]), *map(int, s)) for a, b, s in zip(edges.i, edges.j, edges.shifts)}


def perovskite(a=3.9):
    return crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], spacegroup=221,
                   cellpar=[a, a, a, 90, 90, 90])


# ---- invariances -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
def test_a_supercell_gives_the_same_neighbourhoods(name, crystals):
    graph = GRAPHS[name]
    for atoms in crystals:
        for P in ([[2, 0, 0], [0, 1, 0], [0, 0, 3]], [[1, 1, 0], [0, 1, 1], [1, 0, 1]]):
            big = make_supercell(atoms, P)
            det = round(abs(np.linalg.det(P)))
            assert neighbourhoods(big, graph.edges(big)) == sorted(neighbourhoods(atoms, graph.edges(atoms)) * det)


@pytest.mark.parametrize("name", GRAPHS)
def test_symmetric_cells_with_ties_give_the_same_neighbourhoods_in_the_conventional_cell(name):
    graph = GRAPHS[name] if name != "knn" else KNNGraph(7)  # 6 Cl tie, then 12 Mg: 18 of 19 tied
    primitive = bulk("MgO", "rocksalt", a=4.21)
    cubic = bulk("MgO", "rocksalt", a=4.21, cubic=True)
    assert neighbourhoods(cubic, graph.edges(cubic)) == sorted(neighbourhoods(primitive, graph.edges(primitive)) * 4)


@pytest.mark.parametrize("name", GRAPHS)
def test_rotation_and_translation_change_nothing(name, structures):
    graph = GRAPHS[name]
    for atoms in structures:
        moved = atoms.copy()
        moved.rotate(37.0, (1, -2, 0.5), rotate_cell=True)
        moved.translate([0.3, -1.7, 2.2])
        a, b = graph.edges(atoms), graph.edges(moved)
        assert edge_set(a) == edge_set(b)
        np.testing.assert_allclose(a.distances, b.distances, atol=1e-9)
        if a.weights is not None:
            np.testing.assert_allclose(a.weights, b.weights, atol=1e-9)


@pytest.mark.parametrize("name", GRAPHS)
def test_permuting_the_atoms_permutes_the_edges(name, structures):
    graph = GRAPHS[name]
    for atoms in structures:
        perm = np.random.default_rng(3).permutation(len(atoms))
        new_index = np.argsort(perm)  # old atom a is new atom new_index[a]
        a, b = graph.edges(atoms), graph.edges(atoms[perm])
        assert edge_set(b) == edge_set(a, relabel=new_index)
        assert neighbourhoods(atoms, a) == neighbourhoods(atoms[perm], b)


@pytest.mark.parametrize("name", ["radius", "voronoi", "voronoi-topology"])
def test_edges_come_in_pairs_with_opposite_shifts_and_equal_weights(name, structures):
    for atoms in structures:
        e = GRAPHS[name].edges(atoms)
        assert (e.n_edges or not atoms.pbc.any()) and np.all(np.diff(e.i) >= 0)
        forward = {(a, b, *s): k for k, (a, b, s) in enumerate(zip(e.i, e.j, e.shifts.tolist()))}
        for (a, b, *s), k in forward.items():
            back = forward[(b, a, *(-x for x in s))]
            if e.weights is not None:
                np.testing.assert_allclose(e.weights[back], e.weights[k], rtol=1e-9)


def test_symmetric_knn_holds_both_directions(crystals):
    plain, both = knn_edges(crystals[2], 3), knn_edges(crystals[2], 3, symmetric=True)
    pairs = edge_set(both)
    assert edge_set(plain) < pairs  # kNN alone is directed
    assert all((b, a, -x, -y, -z) in pairs for a, b, x, y, z in pairs)


# ---- small cells and exact geometry ------------------------------------------------------------------------


def test_cells_smaller_than_the_cutoff_link_to_their_own_images():
    sc = bulk("Po", "sc", a=2.0)
    e = radius_edges(sc, 3.0)  # 6 at 2 Å, 12 at 2.83 Å
    assert e.n_edges == 18 and set(e.j) == {0}
    np.testing.assert_allclose(np.sort(e.distances), [2.0] * 6 + [2 * math.sqrt(2)] * 12)


@pytest.mark.parametrize("k, n_edges", [(1, 12), (11, 12), (12, 12), (13, 18), (18, 18)])
def test_knn_of_one_atom_fcc_includes_every_tie(k, n_edges):
    a = 3.6
    e = knn_edges(bulk("Cu", "fcc", a=a), k)
    assert e.n_edges == n_edges
    np.testing.assert_allclose(e.distances[:12], a / math.sqrt(2))
    assert np.all(np.diff(e.distances) >= 0)


def test_knn_stops_at_max_cutoff_and_molecules_give_what_they_have():
    assert knn_edges(bulk("Cu", "fcc", a=3.6), 40, max_cutoff=3.0).n_edges == 12
    assert knn_edges(molecule("CH4"), 10).n_edges == 20  # every atom to the 4 others


def test_fcc_cells_are_rhombic_dodecahedra():
    a = 3.6
    e = voronoi_edges(bulk("Cu", "fcc", a=a))
    assert e.n_edges == 12
    np.testing.assert_allclose(e.weights[:, 0], a * a / (4 * math.sqrt(2)))  # 12 faces hold a^3/4
    np.testing.assert_allclose(e.weights[:, 1], 4 * math.pi / 12)
    np.testing.assert_allclose(e.distances, a / math.sqrt(2))


def test_bcc_cells_are_truncated_octahedra():
    a = 2.87
    e = voronoi_edges(bulk("Fe", "bcc", a=a))
    edge = a * math.sqrt(2) / 4
    first = np.isclose(e.distances, a * math.sqrt(3) / 2)  # 8 hexagons to the nearest neighbours
    second = np.isclose(e.distances, a)  # 6 squares to the next
    assert e.n_edges == 14 and first.sum() == 8 and second.sum() == 6
    np.testing.assert_allclose(e.weights[first, 0], 3 * math.sqrt(3) / 2 * edge ** 2)
    np.testing.assert_allclose(e.weights[second, 0], edge ** 2)
    np.testing.assert_allclose(e.weights[:, 1].sum(), 4 * math.pi)
    np.testing.assert_allclose((e.weights[:, 0] * e.distances / 6).sum(), a ** 3 / 2)


@pytest.mark.parametrize("cubic", [False, True])
def test_rocksalt_sites_form_a_simple_cubic_lattice_of_cubes(cubic):
    # Na and Cl together: a simple cubic lattice of spacing a/2, so every cell is a cube of edge a/2
    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=cubic)
    e = voronoi_edges(atoms)
    assert np.all(np.bincount(e.i) == 6)
    assert np.all(atoms.numbers[e.i] != atoms.numbers[e.j])
    np.testing.assert_allclose(e.distances, a / 2)
    np.testing.assert_allclose(e.weights[:, 0], (a / 2) ** 2)
    np.testing.assert_allclose(e.weights[:, 1], 4 * math.pi / 6)


def test_perovskite_faces_by_hand():
    # SrTiO3, Sr at the corner, Ti at the centre, O at the face centres (in units of a):
    # Ti: 6 O at 1/2, a cube of edge 1/2 (volume 1/8), faces 1/4.
    # Sr: 12 O at sqrt(2)/2, the rhombic dodecahedron of an fcc lattice of constant 1 (volume 1/4),
    #     faces 3V/(12 r) = 1/(4 sqrt 2), r = sqrt(2)/4; Ti and Sr only touch it at corners.
    # O: the rest, (1 - 1/8 - 1/4)/3 = 5/24 each: 2 Ti faces (1/4), 4 Sr faces (1/(4 sqrt 2)) and
    #    8 O faces at sqrt(2)/2, whose area follows from the volume: 5/24 - 2/24 - 4/48 = 8 * f * r / 3
    #    with r = sqrt(2)/4, so f = 1/(8 sqrt 2).
    a = 3.905
    atoms = perovskite(a)
    e = voronoi_edges(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    face = {("Ti", "O"): 1 / 4, ("Sr", "O"): 1 / (4 * math.sqrt(2)), ("O", "O"): 1 / (8 * math.sqrt(2))}
    face.update({(b, c): f for (c, b), f in face.items()})
    expected_faces = {"Sr": {"O": 12}, "Ti": {"O": 6}, "O": {"Ti": 2, "Sr": 4, "O": 8}}
    expected_volume = {"Sr": 1 / 4, "Ti": 1 / 8, "O": 5 / 24}
    for atom in range(len(atoms)):
        j, d, w = by_atom(e, atom)
        names, counts = np.unique(symbols[j], return_counts=True)
        assert dict(zip(names, counts.tolist())) == expected_faces[symbols[atom]]
        np.testing.assert_allclose(w[:, 0], [face[symbols[atom], symbols[b]] * a * a for b in j])
        np.testing.assert_allclose((w[:, 0] * d / 6).sum(), expected_volume[symbols[atom]] * a ** 3)
        np.testing.assert_allclose(w[:, 1].sum(), 4 * math.pi)
    np.testing.assert_allclose(e.weights[symbols[e.i] == "Ti", 1], 4 * math.pi / 6)
    np.testing.assert_allclose(e.weights[symbols[e.i] == "Sr", 1], 4 * math.pi / 12)


def test_solid_angles_sum_to_4pi_and_cells_fill_the_cell(crystals):
    for atoms in crystals + [make_supercell(perovskite(), [[1, 1, 0], [0, 1, 0], [0, 0, 2]])]:
        every = voronoi_edges(atoms, min_area=0.0)
        np.testing.assert_allclose(np.bincount(every.i, every.weights[:, 1]), 4 * math.pi, rtol=1e-12)
        np.testing.assert_allclose((every.weights[:, 0] * every.distances / 6).sum(), atoms.get_volume(),
                                   rtol=1e-12)
        e = voronoi_edges(atoms)  # without the faces below 1e-6 of a cell's surface (some rattled cells have one)
        np.testing.assert_allclose(np.bincount(e.i, e.weights[:, 1]), 4 * math.pi, rtol=1e-6)


def test_zero_area_contacts_are_no_faces():
    # simple cubic: cells meet 12 neighbours at an edge and 8 at a corner only
    loose = voronoi_edges(bulk("Po", "sc", a=2.0), min_area=0.0)
    strict = voronoi_edges(bulk("Po", "sc", a=2.0))
    assert strict.n_edges == 6 and loose.n_edges >= 6
    assert np.all(np.sort(loose.weights[:, 0])[:-6] < 1e-9)


def test_weights_come_in_the_order_asked_for():
    fe = bulk("Fe", "bcc", a=2.87)
    both = voronoi_edges(fe)
    swapped = voronoi_edges(fe, weights=("solid_angle", "area"))
    assert swapped.weight_names == ("solid_angle", "area")
    np.testing.assert_allclose(swapped.weights, both.weights[:, ::-1])
    topology = voronoi_edges(fe, weights=None)
    assert topology.weights is None and topology.weight_names == ()
    assert edge_set(topology) == edge_set(both)


# ---- molecules ---------------------------------------------------------------------------------------------


def test_methane_in_every_mode():
    ch4 = molecule("CH4")
    bond = np.linalg.norm(ch4.positions[1] - ch4.positions[0])
    carbon_hydrogen = {(0, h, 0, 0, 0) for h in range(1, 5)} | {(h, 0, 0, 0, 0) for h in range(1, 5)}
    assert edge_set(radius_edges(ch4, 1.2)) == carbon_hydrogen
    assert edge_set(knn_edges(ch4, 1)) == carbon_hydrogen  # the 4 C-H bonds tie
    # finite faces only: the carbon cell is a regular tetrahedron of inradius bond/2, whose faces are
    # the C-H faces (area 6 sqrt(3) r^2, solid angle pi); the H-H faces reach infinity
    e = voronoi_edges(ch4)
    assert edge_set(e) == carbon_hydrogen
    np.testing.assert_allclose(e.weights[:, 0], 6 * math.sqrt(3) * (bond / 2) ** 2)
    np.testing.assert_allclose(e.weights[:, 1], math.pi)
    topology = voronoi_edges(ch4, weights=None)
    assert topology.weights is None and edge_set(topology) == carbon_hydrogen


def test_water_in_every_mode():
    water = molecule("H2O")
    assert edge_set(radius_edges(water, 1.2)) == {(0, 1, 0, 0, 0), (0, 2, 0, 0, 0), (1, 0, 0, 0, 0),
                                                   (2, 0, 0, 0, 0)}
    assert knn_edges(water, 1).n_edges == 4  # O to both H (tied), each H to O
    for weights in (VoronoiGraph().weights, None):  # flat: every face reaches infinity
        e = voronoi_edges(water, weights=weights)
        assert e.n_edges == 0 and e.shifts.shape == (0, 3)


# ---- bad input ---------------------------------------------------------------------------------------------


def _nan_atoms():
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.positions[0, 1] = np.nan
    return atoms


BAD = [
    (lambda: radius_edges(Atoms(), 3.0), "empty structure"),
    (lambda: knn_edges(_nan_atoms(), 3), "NaN"),
    (lambda: voronoi_edges(Atoms("Cu", cell=[[1, 0, 0], [0, 1, 0], [1, 1, 0]], pbc=True)), "zero volume"),
    (lambda: knn_edges(bulk("Cu"), 0), "k = 0 is below 1"),
    (lambda: KNNGraph(2.5), "k must be a whole number"),
    (lambda: radius_edges(bulk("Cu"), 0.0), "cutoff = 0.0 is not positive"),
    (lambda: RadiusGraph(-1), "not positive"),
    (lambda: VoronoiGraph(weights=("area", "volume")), "unknown Voronoi weight 'volume'"),
    (lambda: voronoi_edges(bulk("Cu"), weights="angle"), "unknown Voronoi weight"),
    (lambda: voronoi_edges(Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[3, 3, 3], pbc=[1, 1, 0])),
     "pbc"),
    (lambda: collate([bulk("Cu")], None, [29]), "cutoff or a graph"),
]


@pytest.mark.parametrize("call, words", BAD)
def test_bad_input_is_a_one_line_input_error(call, words):
    with pytest.raises(InputError, match=words) as caught:
        call()
    assert "\n" not in str(caught.value) and caught.value.hint


# ---- batches -----------------------------------------------------------------------------------------------


def test_collate_with_a_graph_carries_its_edges_and_weights(structures):
    graph = VoronoiGraph()
    batch = collate(structures, None, [1, 8, 12, 22], graph=graph)
    parts = [graph.edges(a) for a in structures]
    offsets = np.cumsum([0] + [len(a) for a in structures])
    np.testing.assert_array_equal(batch.i.numpy(), np.concatenate([p.i + o for p, o in zip(parts, offsets)]))
    np.testing.assert_array_equal(batch.shifts.numpy(), np.concatenate([p.shifts for p in parts]))
    np.testing.assert_allclose(batch.edge_weights.numpy(), np.concatenate([p.weights for p in parts]))
    assert batch.cutoff == pytest.approx(max(p.distances.max(initial=0) for p in parts))
    joined = AtomsBatch.concat([collate(structures[:2], None, [1, 8, 12, 22], graph=graph),
                                collate(structures[2:], None, [1, 8, 12, 22], graph=graph)])
    np.testing.assert_array_equal(joined.j.numpy(), batch.j.numpy())
    np.testing.assert_allclose(joined.edge_weights.numpy(), batch.edge_weights.numpy())
    with pytest.raises(InputError, match="edge weights"):
        AtomsBatch.concat([batch, collate(structures, 3.0, [1, 8, 12, 22])])


def test_collate_without_weights_or_graph_keeps_edge_weights_none(structures):
    species = [1, 8, 12, 22]
    plain = collate(structures, 3.2, species)
    radius = collate(structures, 3.2, species, graph=RadiusGraph(3.2))
    assert plain.edge_weights is None and radius.edge_weights is None
    as_set = [{(a, b, *s) for a, b, s in zip(x.i.tolist(), x.j.tolist(), x.shifts.tolist())} for x in (plain, radius)]
    assert as_set[0] == as_set[1] and radius.cutoff == 3.2
    assert collate(structures, None, species, graph=VoronoiGraph(weights=None)).edge_weights is None


def test_collate_names_the_structure_a_graph_refuses(structures):
    with pytest.raises(InputError, match="structure 1: empty structure"):
        collate([structures[0], Atoms()], None, [8, 22], graph=KNNGraph(3))
