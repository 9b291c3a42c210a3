"""Graphs of structures for message passing: radius, k-nearest-neighbour and Voronoi edges.

A graph of an :class:`ase.Atoms` is a list of directed edges ``i → j`` from
atom ``i`` to the periodic image ``r_j + S·cell`` of atom ``j``, returned as
plain numpy arrays in an :class:`Edges`: ``i, j, shifts`` (int64, sorted by
``i``), the edge vectors and, where the construction has them, per-edge
weights. Molecules (``pbc`` all False) and periodic cells of any size work
the same way; cells smaller than the cutoff get edges to their own images.

Three constructions, each a pure function with a small settings class around
it (the class's ``edges(atoms)`` is what :func:`ml4ms.batch.collate` calls
with ``graph=``):

- :func:`radius_edges` / :class:`RadiusGraph`: every image closer than a
  cutoff (the neighbour list of :func:`ml4ms.batch.neighbor_list`);
- :func:`knn_edges` / :class:`KNNGraph`: the ``k`` nearest images of every
  atom, ties at the ``k``-th distance included;
- :func:`voronoi_edges` / :class:`VoronoiGraph`: one edge per face shared by
  two Voronoi cells, with the face area and the solid angle it subtends as
  optional weights, or topology only (Jørgensen, Jacobsen et al., Phys. Rev.
  B 100, 104114, 2019).

Bad input (no atoms, NaN positions, a periodic cell of zero volume, overlapping
atoms, ``k < 1``, ``cutoff <= 0``, an unknown weight) is an
:class:`~ml4ms.errors.InputError`.
"""

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from .batch import neighbor_list
from .errors import InputError
from .structures import check_structure

#: the per-edge weights :func:`voronoi_edges` can give
VORONOI_WEIGHTS = ("area", "solid_angle")


class Edges(NamedTuple):
    """Directed edges ``i → j`` of a structure's graph, as numpy arrays.

    Attributes
    ----------
    i, j : ndarray of int64 (n_edges,)
        Centre and neighbour atoms, sorted by ``i``.
    shifts : ndarray of int64 (n_edges, 3)
        Cell shift S of the neighbour image.
    vectors : ndarray (n_edges, 3)
        ``r_j + S·cell − r_i`` in Å.
    weights : ndarray (n_edges, n_weights) or None
        Per-edge weights, one column per name in ``weight_names``; None when
        the graph has none.
    weight_names : tuple of str
        The names of the weight columns.
    """

    i: np.ndarray
    j: np.ndarray
    shifts: np.ndarray
    vectors: np.ndarray
    weights: object = None
    weight_names: tuple = ()

    @property
    def distances(self):
        """Edge lengths in Å."""
        return np.linalg.norm(self.vectors, axis=1)

    @property
    def n_edges(self):
        """The number of edges."""
        return int(self.i.shape[0])


def edge_vectors(atoms, i, j, shifts):
    """The vectors ``r_j + S·cell − r_i`` (Å) of edges ``i → j`` with cell shifts ``S``.

    Examples
    --------
    >>> from ase.build import bulk
    >>> edge_vectors(bulk("Cu", "sc", a=2.0), [0], [0], [[1, 0, 0]]).tolist()
    [[2.0, 0.0, 0.0]]
    """
    pos = np.asarray(atoms.positions, dtype=float)
    shifts = np.asarray(shifts, dtype=float).reshape(-1, 3)
    return pos[np.asarray(j, dtype=np.int64)] + shifts @ np.asarray(atoms.cell.array, dtype=float) \
        - pos[np.asarray(i, dtype=np.int64)]


def _edges(atoms, i, j, shifts, order_by=None, weights=None, weight_names=()):
    """:class:`Edges` of the pairs, sorted by ``i``, then ``order_by`` (or distance), ``j`` and shift."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    vectors = edge_vectors(atoms, i, j, shifts)
    second = np.linalg.norm(vectors, axis=1) if order_by is None else order_by
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, second, i))
    if weights is not None:
        weights = np.asarray(weights, dtype=float).reshape(len(i), len(weight_names))[order]
    return Edges(i[order], j[order], shifts[order], vectors[order], weights, tuple(weight_names))


def _check_number(value, name, integer=False, minimum=None, positive=False):
    """``value`` as a float (or int), or an InputError naming ``name``."""
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if not ok or isinstance(value, (bool, np.bool_)) or not math.isfinite(float(value)):
        raise InputError(f"{name} must be {kind}, not {value!r}", hint=f"give {name} as {kind}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} = {value} is below {minimum}", hint=f"use {name} >= {minimum}")
    if positive and value <= 0:
        raise InputError(f"{name} = {value} is not positive", hint=f"use {name} > 0")
    return int(value) if integer else float(value)


def radius_edges(atoms, cutoff):
    """Edges to every image closer than ``cutoff`` Å (periodic images included).

    The pairs of :func:`ml4ms.batch.neighbor_list`: both directions of every
    pair, an atom's own images in cells smaller than the cutoff, never the
    atom itself.

    Parameters
    ----------
    atoms : ase.Atoms
    cutoff : float
        Å, positive.

    Returns
    -------
    Edges
        No weights.

    Examples
    --------
    >>> from ase.build import bulk
    >>> e = radius_edges(bulk("Cu", "fcc", a=3.6), 3.0)
    >>> e.n_edges, round(float(e.distances.max()), 4)
    (12, 2.5456)
    """
    cutoff = _check_number(cutoff, "cutoff", positive=True)
    check_structure(atoms)
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    return _edges(atoms, i, j, S)


def _first_search_radius(atoms, k):
    """A radius that holds about ``k`` + 1 neighbours of an atom at the structure's density."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        volume_per_atom = abs(np.linalg.det(atoms.cell.array)) / len(atoms)
    else:  # molecules, slabs and wires: the bounding box (at least 1 Å thick) sets the density
        extent = np.ptp(atoms.positions, axis=0) if len(atoms) > 1 else np.zeros(3)
        volume_per_atom = float(np.prod(np.maximum(extent, 1.0))) / len(atoms)
    return 1.2 * (3.0 * (k + 1) * volume_per_atom / (4.0 * math.pi)) ** (1.0 / 3.0)


def knn_edges(atoms, k, max_cutoff=None, tol=1e-6, symmetric=False):
    """Edges from every atom to its ``k`` nearest images, periodic images included, ties included.

    Ties: every image no farther than the ``k``-th nearest distance plus
    ``tol`` Å is kept, so an atom may get more than ``k`` edges (the 12
    nearest neighbours of fcc for ``k = 11``). This makes the graph
    independent of the order in which atoms and images happen to be listed,
    and so the same for a cell and any of its supercells. An atom with fewer
    than ``k`` images in reach (a molecule of fewer than ``k + 1`` atoms, or
    ``max_cutoff``) gets them all.

    Parameters
    ----------
    atoms : ase.Atoms
    k : int
        At least 1.
    max_cutoff : float, optional
        Å; images this far or farther are never neighbours. Default: no limit.
    tol : float, default 1e-6
        Å; distances within ``tol`` of the ``k``-th count as tied.
    symmetric : bool, default False
        Also add ``j → i`` (shift −S) for every ``i → j`` (shift S), so the
        graph is undirected (the union of both kNN relations).

    Returns
    -------
    Edges
        No weights; sorted by ``i``, then distance.

    Examples
    --------
    >>> from ase.build import bulk
    >>> e = knn_edges(bulk("Cu", "fcc", a=3.6), 11)  # 12 tied at a/sqrt(2)
    >>> e.n_edges, round(float(e.distances.max()), 4)
    (12, 2.5456)
    """
    k = _check_number(k, "k", integer=True, minimum=1)
    tol = _check_number(tol, "tol", minimum=0.0)
    limit = math.inf if max_cutoff is None else _check_number(max_cutoff, "max_cutoff", positive=True)
    check_structure(atoms)
    n = len(atoms)
    everything = math.inf if np.any(atoms.pbc) else float(np.linalg.norm(np.ptp(atoms.positions, axis=0)))
    radius = min(_first_search_radius(atoms, k), limit)
    while True:
        i, j, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, radius)
        d = np.linalg.norm(edge_vectors(atoms, i, j, S), axis=1)
        order = np.lexsort((d, i))
        i, j, S, d = i[order], j[order], S[order], d[order]
        counts = np.bincount(i, minlength=n)
        starts = np.cumsum(counts) - counts
        d_k = np.full(n, np.inf)
        d_k[counts >= k] = d[(starts + k - 1)[counts >= k]]
        complete = radius >= limit or radius > everything or bool(np.all(d_k + tol < radius))
        if complete:
            break
        radius = min(max(1.5 * radius, float(np.max(d_k[np.isfinite(d_k)], initial=0.0)) + 2 * tol),
                     limit, everything * (1 + 1e-9) + 1e-6)
    keep = d <= d_k[i] + tol
    i, j, S = i[keep], j[keep], S[keep]
    if symmetric:
        both = np.unique(np.column_stack([np.r_[i, j], np.r_[j, i], np.r_[S, -S]]), axis=0)
        i, j, S = both[:, 0], both[:, 1], both[:, 2:]
    return _edges(atoms, i, j, S)


def face_area_and_solid_angle(centre, vertices, neighbour):
    """Area (Å²) of a convex Voronoi face and the solid angle (sr) it subtends from ``centre``.

    Parameters
    ----------
    centre, neighbour : array (3,)
        The two sites the face lies between (it is in their bisector plane).
    vertices : array (n_vertices, 3)
        The face's corners, in any order (repeated corners are harmless).

    Returns
    -------
    area, solid_angle : float

    Examples
    --------
    >>> square = [[1, -1, -1], [1, 1, -1], [1, -1, 1], [1, 1, 1]]  # a cube face seen from its centre
    >>> area, omega = face_area_and_solid_angle([0, 0, 0], square, [2, 0, 0])
    >>> area, round(omega / (4 * np.pi / 6), 12)
    (4.0, 1.0)
    """
    vertices = np.asarray(vertices, dtype=float).reshape(-1, 3)
    area, omega = _faces(np.asarray(centre, dtype=float).reshape(1, 3),
                         np.asarray(neighbour, dtype=float).reshape(1, 3), vertices,
                         np.zeros(len(vertices), np.int64))
    return float(area[0]), float(omega[0])


def _dot(u, v):
    """Row-wise dot products of two (n, 3) arrays."""
    return np.einsum("kx,kx->k", u, v)


def _faces(centres, neighbours, vertices, face):
    """Areas and solid angles of many convex faces at once.

    Face ``f`` lies between ``centres[f]`` and ``neighbours[f]``; its corners
    are the rows of ``vertices`` with ``face == f``, in any order. They are
    put in order by their angle around the face's mean corner, and the face is
    cut into triangles (mean corner, corner, next corner) whose areas and
    solid angles (Van Oosterom and Strackee) add up.
    """
    n_faces = len(centres)
    count = np.bincount(face, minlength=n_faces)
    middle = np.stack([np.bincount(face, vertices[:, x], n_faces) for x in range(3)], axis=1) / count[:, None]
    normal = neighbours - centres
    normal /= np.linalg.norm(normal, axis=1)[:, None]
    e1 = np.cross(normal, np.eye(3)[np.argmin(np.abs(normal), axis=1)])
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = np.cross(normal, e1)
    rel = vertices - middle[face]
    angle = np.arctan2(_dot(rel, e2[face]), _dot(rel, e1[face]))
    order = np.lexsort((angle, face))
    face, ring = face[order], vertices[order]
    first = np.cumsum(count) - count
    following = np.arange(len(face)) + 1
    following[first + count - 1] = first  # the last corner of a face closes it with the first
    a = middle[face] - centres[face]
    b = ring - centres[face]
    c = ring[following] - centres[face]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    la, lb, lc = (np.linalg.norm(v, axis=1) for v in (a, b, c))
    triple = np.abs(_dot(a, np.cross(b, c)))
    omega = 2.0 * np.arctan2(triple, la * lb * lc + _dot(a, b) * lc + _dot(a, c) * lb + _dot(b, c) * la)
    return np.bincount(face, area, n_faces), np.bincount(face, omega, n_faces)


def _check_weights(weights):
    """``weights`` as a tuple of names from :data:`VORONOI_WEIGHTS` (empty for topology only)."""
    if weights is None:
        return ()
    names = (weights,) if isinstance(weights, str) else tuple(weights)
    for name in names:
        if name not in VORONOI_WEIGHTS:
            raise InputError(f"unknown Voronoi weight {name!r}",
                             hint=f"use {' and/or '.join(map(repr, VORONOI_WEIGHTS))}, or weights=None")
    if len(set(names)) < len(names):
        raise InputError(f"Voronoi weights {names} repeat a name", hint="name each weight once")
    return names


def _voronoi(points):
    from scipy.spatial import Voronoi

    return Voronoi(points)


def _periodic_sites(atoms):
    """The atoms (shift 0, rows 0..n-1) and all images whose faces can touch their Voronoi cells.

    An atom's cell computed from every site within ``rho`` of it is exact when
    it lies inside the ball of radius ``rho / 2`` (a farther site's bisector
    plane cannot reach it); ``rho`` grows until that holds for every atom.

    Returns
    -------
    atom : ndarray of int (n_sites,)
    shift : ndarray of int (n_sites, 3)
    vor : scipy.spatial.Voronoi
    """
    n = len(atoms)
    pos, cell = np.asarray(atoms.positions, dtype=float), np.asarray(atoms.cell.array, dtype=float)
    rho = 3.0 * (3.0 * abs(np.linalg.det(cell)) / n / (4.0 * math.pi)) ** (1.0 / 3.0)
    while True:
        i, j, S = neighbor_list(pos, cell, atoms.pbc, rho)
        rows = np.concatenate([np.c_[np.arange(n), np.zeros((n, 3), np.int64)], np.c_[j, S]])
        _, first = np.unique(rows, axis=0, return_index=True)
        rows = rows[np.sort(first)]
        atom, shift = rows[:, 0], rows[:, 1:]
        vor = _voronoi(pos[atom] + shift @ cell)
        if all(_cell_within(vor, a, rho / 2.0) for a in range(n)):
            return atom, shift, vor
        rho *= 1.5


def _cell_within(vor, site, radius):
    """Whether the Voronoi cell of ``site`` is bounded and inside the ball of ``radius`` around it."""
    region = vor.regions[vor.point_region[site]]
    if not region or -1 in region:
        return False
    reach = np.linalg.norm(vor.vertices[region] - vor.points[site], axis=1).max()
    return bool(reach <= radius * (1 + 1e-9))


def _molecule_sites(atoms):
    """The atoms and their Voronoi diagram; None when no face can be finite (fewer than 5 atoms, or flat)."""
    pos = np.asarray(atoms.positions, dtype=float)
    if len(pos) < 5 or np.linalg.matrix_rank(pos - pos.mean(axis=0), tol=1e-6) < 3:
        return None
    return np.arange(len(pos)), np.zeros((len(pos), 3), np.int64), _voronoi(pos)


def voronoi_edges(atoms, weights=VORONOI_WEIGHTS, min_area=1e-6):
    """One edge per face shared by two Voronoi cells, with its area and solid angle as optional weights.

    Periodic cells (``pbc`` all True): the tessellation of the atoms and all
    their images (:class:`scipy.spatial.Voronoi` on the atoms plus enough
    images that every atom's cell is exact). Every face of an atom's cell is
    an edge to the image across it, so a cell smaller than the tessellation's
    reach gets edges to its own images, and ``i → j`` (shift S) comes with
    ``j → i`` (shift −S) and the same weights. The solid angles of an atom's
    faces sum to 4π, and its face areas times the face's distance from the
    atom (half the edge length) over 3 sum to its cell volume.

    Molecules (``pbc`` all False): the tessellation of the atoms alone, finite
    faces only. A face that reaches infinity (between two atoms on the
    convex hull) is no edge: its area is infinite and the edge it would make
    may join atoms far apart. A flat molecule, or one of fewer than 5 atoms,
    has only infinite faces, hence no edges. Slabs and wires (``pbc`` mixed)
    are an :class:`~ml4ms.errors.InputError`: make them periodic with vacuum.

    Tiny faces: faces with an area below ``min_area`` times the structure's
    mean cell surface (the sum of an atom's face areas, averaged over the
    atoms) are dropped. Symmetric crystals have cells that touch only at an
    edge or a corner, which Qhull may report as faces of zero area; the
    relative threshold removes them the same way in any supercell.

    Parameters
    ----------
    atoms : ase.Atoms
    weights : sequence of {"area", "solid_angle"}, str or None, default ("area", "solid_angle")
        The weight columns, in this order; None (or ``()``) for topology only:
        edges carry connectivity and nothing else.
    min_area : float, default 1e-6
        Relative area below which a face is no edge (see above).

    Returns
    -------
    Edges
        Sorted by ``i``, then ``j`` and shift; ``weights`` (Å² and sr) or None.

    Examples
    --------
    >>> from ase.build import bulk
    >>> e = voronoi_edges(bulk("Cu", "fcc", a=4.0))  # the rhombic dodecahedron
    >>> e.n_edges, e.weight_names
    (12, ('area', 'solid_angle'))
    >>> round(float(e.weights[:, 0].sum()), 6), round(float(e.weights[:, 1].sum() / np.pi), 6)
    (33.941125, 4.0)
    >>> voronoi_edges(bulk("Cu", "fcc", a=4.0), weights=None).weights is None
    True
    """
    names = _check_weights(weights)
    min_area = _check_number(min_area, "min_area", minimum=0.0)
    check_structure(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        raise InputError(f"Voronoi graphs need a periodic or a finite structure, not pbc={pbc.tolist()}",
                         hint="set pbc=True with vacuum in the open directions, or pbc=False")
    n = len(atoms)
    sites = _periodic_sites(atoms) if pbc.all() else _molecule_sites(atoms)
    i, j, S, corners = [], [], [], []
    if sites is not None:
        atom, shift, vor = sites
        for (p, q), ridge in zip(vor.ridge_points, vor.ridge_vertices):
            if -1 in ridge:
                continue
            for a, b in ((p, q), (q, p)):
                if a < n:  # sites 0..n-1 are the atoms themselves
                    i.append(a)
                    j.append(b)
                    corners.append(ridge)
        points, vertices = vor.points, vor.vertices
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    if len(i):
        face = np.repeat(np.arange(len(i)), [len(c) for c in corners])
        area, omega = _faces(points[i], points[j], vertices[np.concatenate(corners)], face)
        j, S = atom[j], shift[j]
    else:
        area = omega = np.zeros(0)
        S = np.zeros((0, 3), np.int64)
    keep = area >= min_area * np.bincount(i, area, n).mean()  # the mean cell surface
    columns = [{"area": area, "solid_angle": omega}[name][keep] for name in names]
    return _edges(atoms, i[keep], j[keep], S[keep],
                  order_by=np.zeros(int(keep.sum())),
                  weights=np.column_stack(columns) if names else None, weight_names=names)


@dataclasses.dataclass(frozen=True)
class RadiusGraph:
    """Settings of :func:`radius_edges`; ``edges(atoms)`` builds the graph.

    Examples
    --------
    >>> from ase.build import bulk
    >>> RadiusGraph(3.0).edges(bulk("Cu", "fcc", a=3.6)).n_edges
    12
    """

    cutoff: float
    weight_names = ()

    def __post_init__(self):
        object.__setattr__(self, "cutoff", _check_number(self.cutoff, "cutoff", positive=True))

    def edges(self, atoms):
        """The :class:`Edges` of ``atoms``."""
        return radius_edges(atoms, self.cutoff)


@dataclasses.dataclass(frozen=True)
class KNNGraph:
    """Settings of :func:`knn_edges`; ``edges(atoms)`` builds the graph.

    Examples
    --------
    >>> from ase.build import bulk
    >>> KNNGraph(12).edges(bulk("Cu", "fcc", a=3.6)).n_edges
    12
    """

    k: int
    max_cutoff: float = None
    tol: float = 1e-6
    symmetric: bool = False
    weight_names = ()

    def __post_init__(self):
        _check_number(self.k, "k", integer=True, minimum=1)
        _check_number(self.tol, "tol", minimum=0.0)
        if self.max_cutoff is not None:
            _check_number(self.max_cutoff, "max_cutoff", positive=True)

    def edges(self, atoms):
        """The :class:`Edges` of ``atoms``."""
        return knn_edges(atoms, self.k, max_cutoff=self.max_cutoff, tol=self.tol, symmetric=self.symmetric)


@dataclasses.dataclass(frozen=True)
class VoronoiGraph:
    """Settings of :func:`voronoi_edges`; ``edges(atoms)`` builds the graph.

    ``weights=None`` gives the topology-only graph.

    Examples
    --------
    >>> from ase.build import bulk
    >>> g = VoronoiGraph(weights="solid_angle")
    >>> e = g.edges(bulk("Fe", "bcc", a=2.87))  # the truncated octahedron
    >>> e.n_edges, g.weight_names
    (14, ('solid_angle',))
    """

    weights: tuple = VORONOI_WEIGHTS
    min_area: float = 1e-6

    def __post_init__(self):
        object.__setattr__(self, "weights", _check_weights(self.weights))
        object.__setattr__(self, "min_area", _check_number(self.min_area, "min_area", minimum=0.0))

    @property
    def weight_names(self):
        """The names of the weight columns (empty for topology only)."""
        return self.weights

    def edges(self, atoms):
        """The :class:`Edges` of ``atoms``."""
        return voronoi_edges(atoms, weights=self.weights or None, min_area=self.min_area)
