"""Find duplicate structures, so that they never end up on both sides of a split.

Criterion. Two structures are *duplicates* when their atoms can be paired,
species by species, so that every atom's *environment* (its sorted distances
to the atoms of each species; for periodic cells those below ``cutoff``,
periodic images included; for molecules all of them) agrees with its
partner's within ``tol`` Å, distance by distance. For periodic cells the
cube root of the volume per atom must also agree within ``tol`` and the
reduced compositions must be equal (molecules: the full compositions). The
smallest ``tol`` for which such a pairing exists is the *deviation*
(a bottleneck matching, :func:`structure_deviation`). Distances beyond the
cutoff are read as the cutoff, so a distance that crosses the cutoff by less
than ``tol`` does not matter.

Invariances. Distances do not change under rotation, translation, atom
order or the choice of cell vectors. A supercell repeats every environment
``k`` times, and environments are compared as multisets with weight
``1/n_atoms`` each, so a supercell matches its primitive cell. Mirror images
have equal distances, so enantiomers are reported as duplicates: a
rotation-invariant model cannot tell them apart either. Moving every atom by
at most ``tol / 2`` changes the deviation by at most ``tol``.

Search. Every structure gets a cheap :class:`Fingerprint`: for each species
pair the pooled sorted distances, read as a quantile function over mass per
atom. Structures are bucketed by composition; inside a bucket the quantile
functions are sampled at fixed masses into vectors whose Chebyshev distance
is a lower bound of the deviation, candidate pairs come from a k-d tree
radius query, and only candidates are matched atom by atom. Periodic
distances come from :func:`ml4ms.neighbors.neighbor_pairs`. The fingerprints
(one task per structure), the environments of the candidates and their
matching (one task per pair) run on the executor of :mod:`ml4ms.parallel`:
``n_jobs`` local processes, or the Dask cluster when one is chosen (fewer
than 400 of them run in this process, where sending them would cost more
than it saves); the pairs are the same on every executor.

Limits. Environments within a cutoff are not a complete invariant: two
different structures can share them (rare; for models built on such
environments they are duplicates in effect). Species with more than 1500
atoms (after supercell replication) skip the atom pairing and are judged by
the pooled distances alone.
"""

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from .errors import InputError
from .structures import is_atoms

#: default tolerance on distances (Å)
DEFAULT_TOL = 1e-3
#: default cutoff radius for periodic cells (Å)
DEFAULT_CUTOFF = 5.0
#: number of samples of each quantile function in the search vectors
_SAMPLES = 12
#: molecules with more atoms than this use ``cutoff`` instead of all pairs
_MAX_ALL_PAIRS = 400


@dataclass
class Fingerprint:
    """Invariant fingerprint of one structure (see the module docstring).

    Attributes
    ----------
    key : tuple
        Bucket key: ``("periodic", pbc, reduced composition)`` or
        ``("molecule", composition)``; only fingerprints with equal keys are
        compared.
    n_atoms : int
    length : float
        Cube root of the volume per atom (Å) for fully periodic cells, else 0.
    fill : float
        Value of the quantile function beyond the last distance: the cutoff
        for periodic cells, ``inf`` for molecules (all pairs).
    distances : dict
        ``(Z_a, Z_b) -> sorted distances`` from atoms of ``Z_a`` to atoms of
        ``Z_b`` (``Z_a <= Z_b``; for ``Z_a == Z_b`` each pair counts twice).
    """

    key: tuple
    n_atoms: int
    length: float
    fill: float
    distances: dict = field(repr=False)


def _composition(numbers):
    species, counts = np.unique(numbers, return_counts=True)
    return [int(z) for z in species], [int(c) for c in counts]


def _periodic_distances(atoms, cutoff):
    """(i, j, d) of all pairs with 0 < |r_j + T - r_i| < cutoff, images included."""
    from .neighbors import neighbor_pairs

    cell = np.asarray(atoms.get_cell(), dtype=float)
    volume = abs(np.linalg.det(cell))
    if not np.isfinite(volume) or volume < 1e-9:
        raise InputError("periodic cell has zero volume", hint="give a full-rank cell or set pbc=False")
    i, j, D, _ = neighbor_pairs(atoms, cutoff, shifts_needed=False)
    return i, j, np.sqrt(np.einsum("ij,ij->i", D, D))


def _pairs(atoms, cutoff):
    """Bucket key, volume length, fill value and all ordered pairs (i, j, d)."""
    numbers = atoms.get_atomic_numbers()
    n = len(numbers)
    if n == 0:
        raise InputError("empty structure (no atoms)", hint="remove it from the data")
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        raise InputError("positions contain NaN or inf", hint="fix or remove the structure")
    pbc = tuple(bool(p) for p in atoms.get_pbc())
    species, counts = _composition(numbers)
    length = 0.0
    if any(pbc):
        divisor = math.gcd(*counts)
        key = ("periodic", pbc, tuple(zip(species, [c // divisor for c in counts])))
        if all(pbc):
            i, j, d = _periodic_distances(atoms, cutoff)
            length = (abs(np.linalg.det(np.asarray(atoms.get_cell()))) / n) ** (1 / 3)
        else:
            from .neighbors import neighbor_pairs

            i, j, vectors, _ = neighbor_pairs(atoms, cutoff)
            d = np.linalg.norm(vectors, axis=1)
        fill = float(cutoff)
    else:
        key = ("molecule", tuple(zip(species, counts)))
        if n <= _MAX_ALL_PAIRS:
            i, j = np.nonzero(~np.eye(n, dtype=bool))
            d = np.linalg.norm(pos[j] - pos[i], axis=1)
            fill = math.inf
        else:
            from .neighbors import neighbor_pairs

            i, j, vectors, _ = neighbor_pairs(atoms, cutoff)
            d = np.linalg.norm(vectors, axis=1)
            fill = float(cutoff)
    return key, float(length), fill, numbers, species, (i, j, d)


def _fingerprint(atoms, cutoff):
    key, length, fill, numbers, species, (i, j, d) = _pairs(atoms, cutoff)
    zi, zj = numbers[i], numbers[j]
    keep = zi <= zj
    zi, zj, d = zi[keep], zj[keep], d[keep]
    distances = {}
    for a_index, a in enumerate(species):
        for b in species[a_index:]:
            distances[(a, b)] = np.sort(d[(zi == a) & (zj == b)])
    return Fingerprint(key=key, n_atoms=len(numbers), length=length, fill=fill, distances=distances)


@dataclass
class _Environments:
    """Per-atom environments: ``rows[(a, b)]`` is (n_a, k) sorted distances to b, padded with fill."""

    key: tuple
    n_atoms: int
    length: float
    fill: float
    rows: dict


def _environments(atoms, cutoff):
    key, length, fill, numbers, species, (i, j, d) = _pairs(atoms, cutoff)
    rows = {}
    for a in species:
        centers = np.flatnonzero(numbers == a)
        local = np.full(len(numbers), -1)
        local[centers] = np.arange(len(centers))
        for b in species:
            sel = (numbers[i] == a) & (numbers[j] == b)
            ci, cd = local[i[sel]], d[sel]
            order = np.lexsort((cd, ci))
            ci, cd = ci[order], cd[order]
            count = np.bincount(ci, minlength=len(centers))
            width = int(count.max()) if len(count) else 0
            block = np.full((len(centers), width), fill)
            if len(ci):
                start = np.concatenate([[0], np.cumsum(count)[:-1]])
                block[ci, np.arange(len(ci)) - start[ci]] = cd
            rows[(a, b)] = block
    return _Environments(key=key, n_atoms=len(numbers), length=length, fill=fill, rows=rows)


def _pad(block, width, fill):
    if block.shape[1] == width:
        return block
    out = np.full((block.shape[0], width), fill)
    out[:, : block.shape[1]] = block
    return out


def _bottleneck(cost, limit):
    """Smallest t such that a perfect matching uses only costs <= t (inf if > limit)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    def feasible(t):
        match = maximum_bipartite_matching(csr_matrix(cost <= t), perm_type="column")
        return bool((match >= 0).all())

    if not feasible(limit):
        return math.inf
    values = np.unique(cost[cost <= limit])
    lo, hi = 0, len(values) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if feasible(values[mid]):
            hi = mid
        else:
            lo = mid + 1
    return float(values[lo])


#: atoms per species above which environments are not matched (pooled check only)
_MAX_MATCH = 1500


def _environment_deviation(ea, eb, limit):
    """Bottleneck distance of the per-atom environments (inf if above ``limit``)."""
    if ea.key != eb.key:
        return math.inf
    worst = abs(ea.length - eb.length)
    if worst > limit:
        return math.inf
    na, nb = ea.n_atoms, eb.n_atoms
    lcm = na * nb // math.gcd(na, nb)
    rep_a, rep_b = lcm // na, lcm // nb
    centers = sorted({a for a, _ in ea.rows})
    for a in centers:
        blocks_a, blocks_b = [], []
        for (c, b) in ea.rows:
            if c != a:
                continue
            xa, xb = ea.rows[(a, b)], eb.rows[(a, b)]
            width = max(xa.shape[1], xb.shape[1])
            blocks_a.append(_pad(xa, width, ea.fill))
            blocks_b.append(_pad(xb, width, eb.fill))
        xa = np.repeat(np.hstack(blocks_a), rep_a, axis=0)
        xb = np.repeat(np.hstack(blocks_b), rep_b, axis=0)
        if len(xa) != len(xb):
            return math.inf
        if len(xa) > _MAX_MATCH or xa.shape[1] == 0:
            continue
        cost = np.empty((len(xa), len(xb)))
        step = max(1, int(2e7 // (len(xb) * xa.shape[1])))  # bound the memory of the difference block
        for start in range(0, len(xa), step):
            block = xa[start : start + step, None, :]
            with np.errstate(invalid="ignore"):
                diff = np.abs(block - xb[None, :, :])
            diff[block == xb[None, :, :]] = 0.0  # equal infinities count as equal
            cost[start : start + step] = diff.max(axis=2)
        worst = max(worst, _bottleneck(cost, limit))
        if worst > limit:
            return math.inf
    return worst


def structure_deviation(atoms_a, atoms_b, cutoff=DEFAULT_CUTOFF):
    """Deviation (Å) of two structures: 0 for identical ones, ``inf`` if not comparable.

    The bottleneck distance between the per-atom environments (for every
    atom the sorted distances to each species, within ``cutoff`` for
    periodic cells): the smallest ``t`` such that the atoms of the two
    structures can be paired, species by species, with all environment
    distances of paired atoms within ``t``. For periodic cells the
    difference of the volume-per-atom lengths counts too. A supercell has the
    same environments as its cell (each repeated), so it has deviation 0.

    Examples
    --------
    >>> from ase.build import bulk
    >>> structure_deviation(bulk("Cu", "fcc", a=3.6), bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)), cutoff=3.0) < 1e-12
    True
    """
    ea = _environments(atoms_a, float(cutoff))
    eb = _environments(atoms_b, float(cutoff))
    return _environment_deviation(ea, eb, math.inf)


def _check_records(structures, name="structures"):
    structures = list(structures)
    for index, record in enumerate(structures):
        if not is_atoms(record):
            raise InputError(
                f"{name} must be ase.Atoms, got {type(record).__name__}",
                index=index,
                hint="duplicate detection needs structures; table rows have no geometry",
            )
    return structures


#: inputs shorter than this show no progress bar
_PROGRESS_MIN = 200
#: fewer structures (pairs) than this are fingerprinted (matched) in this process, whatever the executor
_SERIAL_BELOW = 400


def _pair_deviation(limit, pair):
    """:func:`_environment_deviation` of ``pair = (environments_a, environments_b)``."""
    return _environment_deviation(*pair, limit)


def fingerprints(structures, cutoff=DEFAULT_CUTOFF, progress=False, n_jobs=1):
    """Invariant fingerprints of structures.

    Parameters
    ----------
    structures : list of ase.Atoms
    cutoff : float, default 5.0
        Radius (Å) of the distances kept for periodic cells; molecules keep
        all their distances.
    progress : bool, default False
        Show a progress bar for long inputs.
    n_jobs : int, default 1
        Local processes (:class:`ml4ms.parallel.Executor`); a chosen Dask
        cluster runs them instead.

    Returns
    -------
    list of Fingerprint

    Examples
    --------
    >>> from ase.build import bulk
    >>> fp = fingerprints([bulk("NaCl", "rocksalt", a=5.64)], cutoff=3.0)[0]
    >>> fp.key
    ('periodic', (True, True, True), ((11, 1), (17, 1)))
    >>> fp.distances[(11, 17)]  # 6 Cl neighbours of Na at a/2
    array([2.82, 2.82, 2.82, 2.82, 2.82, 2.82])
    """
    if not (isinstance(cutoff, (int, float)) and cutoff > 0):
        raise InputError(f"cutoff must be a positive number of Å, got {cutoff!r}")
    from .descriptors.base import Indexed
    from .parallel import map_ordered

    structures = _check_records(structures)
    return map_ordered(Indexed(partial(_fingerprint, cutoff=float(cutoff))), list(enumerate(structures)),
                       n_jobs=n_jobs, progress=progress and len(structures) >= _PROGRESS_MIN, desc="fingerprints",
                       serial_below=_SERIAL_BELOW)


def deviation(fp_a, fp_b):
    """Deviation (Å) of two fingerprints, a lower bound of :func:`structure_deviation`.

    The maximum over species pairs of the sup-distance of the two quantile
    functions of pooled distances (each weighted by ``1/n_atoms``, read as
    ``fill`` beyond the last one), and of the difference of the
    volume-per-atom lengths; ``inf`` if the compositions differ.

    Examples
    --------
    >>> from ase import Atoms
    >>> a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    >>> b = Atoms("H2", positions=[[1, 1, 1], [1.75, 1, 1]])
    >>> round(deviation(*fingerprints([a, b])), 6)
    0.01
    """
    if fp_a.key != fp_b.key:
        return math.inf
    worst = abs(fp_a.length - fp_b.length)
    na, nb = fp_a.n_atoms, fp_b.n_atoms
    lcm = na * nb // math.gcd(na, nb)
    step_a, step_b = lcm // na, lcm // nb
    for pair, da in fp_a.distances.items():
        db = fp_b.distances[pair]
        end = max(len(da) * step_a, len(db) * step_b)
        if end == 0:
            continue
        starts = np.union1d(np.arange(len(da) + 1) * step_a, np.arange(len(db) + 1) * step_b)
        starts = starts[starts < end]
        qa = np.append(da, fp_a.fill)[np.minimum(starts // step_a, len(da))]
        qb = np.append(db, fp_b.fill)[np.minimum(starts // step_b, len(db))]
        with np.errstate(invalid="ignore"):
            diff = np.abs(qa - qb)
        if np.isnan(diff).any():
            return math.inf
        worst = max(worst, float(diff.max()))
    return worst


def _search_vectors(fps):
    """Fixed-length vectors (one bucket) whose Chebyshev distance <= deviation."""
    pairs = list(fps[0].distances)
    columns = [np.array([fp.length for fp in fps])[:, None]]
    for pair in pairs:
        mass = max(len(fp.distances[pair]) / fp.n_atoms for fp in fps)
        if mass == 0:
            continue
        finite = [fp.distances[pair][-1] for fp in fps if len(fp.distances[pair])]
        big = (max(finite) if finite else 0.0) + 1e3
        # sample masses off the breakpoints j/n (irrational offset)
        u = mass * (np.arange(_SAMPLES) + 0.5 + 0.0123456789 * math.sqrt(2)) / (_SAMPLES + 0.1)
        block = np.empty((len(fps), _SAMPLES))
        for row, fp in enumerate(fps):
            d = fp.distances[pair]
            index = np.floor(u * fp.n_atoms).astype(np.int64)
            values = np.full(_SAMPLES, min(fp.fill, big))
            inside = index < len(d)
            values[inside] = d[index[inside]]
            block[row] = values
        columns.append(block)
    return np.hstack(columns)


def _buckets(fps):
    groups = {}
    for index, fp in enumerate(fps):
        groups.setdefault(fp.key, []).append(index)
    return groups


def _check_tol(tol):
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise InputError(f"tol must be a non-negative number of Å, got {tol!r}")
    return float(tol)


def find_duplicates(structures, others=None, tol=DEFAULT_TOL, cutoff=DEFAULT_CUTOFF,
                    progress=True, return_deviation=False, n_jobs=1):
    """Pairs of duplicate structures (see the module docstring for the criterion).

    Parameters
    ----------
    structures : list of ase.Atoms
    others : list of ase.Atoms, optional
        If given, report pairs ``(i, j)`` with ``structures[i]`` a duplicate
        of ``others[j]`` (e.g. train vs test) instead of pairs inside
        ``structures``.
    tol : float, default 1e-3
        Largest allowed deviation (Å) of distances and volume-per-atom lengths.
    cutoff : float, default 5.0
        Radius (Å) of the distances compared for periodic cells.
    progress : bool, default True
        Progress bar while fingerprinting long inputs.
    return_deviation : bool, default False
        Also return the deviation (Å) of every pair.
    n_jobs : int, default 1
        Local processes for the fingerprints and the matching of candidate
        pairs; a chosen Dask cluster (:mod:`ml4ms.parallel`) runs them
        instead. The pairs are the same on every executor.

    Returns
    -------
    pairs : list of (int, int)
        Sorted; inside one set ``i < j``.
    deviations : list of float
        Only with ``return_deviation=True``.

    Examples
    --------
    >>> from ase.build import bulk
    >>> cells = [bulk("Si", "diamond", a=5.43), bulk("Si", "diamond", a=5.43, cubic=True),
    ...          bulk("Si", "diamond", a=5.50)]
    >>> find_duplicates(cells, cutoff=4.0)
    [(0, 1)]
    """
    from scipy.spatial import cKDTree

    from .parallel import Executor

    tol = _check_tol(tol)
    structures = _check_records(structures)
    n_first = len(structures)
    combined = structures
    if others is not None:
        combined = structures + _check_records(others, name="others")
    executor = Executor(n_jobs=n_jobs)
    fps = fingerprints(combined, cutoff=cutoff, progress=progress, n_jobs=n_jobs)
    radius = tol * (1 + 1e-9) + 1e-12
    close = []  # candidate pairs whose fingerprints agree: matched atom by atom below
    for members in _buckets(fps).values():
        members = np.asarray(members)
        if others is None:
            if len(members) < 2:
                continue
            vectors = _search_vectors([fps[m] for m in members])
            candidates = cKDTree(vectors).query_pairs(radius, p=np.inf, output_type="ndarray")
            candidates = [(members[a], members[b]) for a, b in candidates]
        else:
            left = members[members < n_first]
            right = members[members >= n_first]
            if len(left) == 0 or len(right) == 0:
                continue
            vectors = _search_vectors([fps[m] for m in members])
            is_left = members < n_first
            hits = cKDTree(vectors[is_left]).query_ball_tree(cKDTree(vectors[~is_left]), radius, p=np.inf)
            candidates = [(left[a], right[b]) for a, row in enumerate(hits) for b in row]
        for a, b in candidates:
            a, b = int(min(a, b)), int(max(a, b))
            if deviation(fps[a], fps[b]) <= tol:
                close.append((a, b))
    close.sort()
    needed = sorted({m for pair in close for m in pair})
    show = progress and len(close) >= _PROGRESS_MIN
    computed = executor.map(partial(_environments, cutoff=float(cutoff)), [combined[m] for m in needed],
                            progress=show, desc="environments", serial_below=_SERIAL_BELOW)
    environments = dict(zip(needed, computed))
    deviations = executor.map(partial(_pair_deviation, tol), [(environments[a], environments[b]) for a, b in close],
                              progress=show, desc="matching", serial_below=_SERIAL_BELOW)
    found = {(a, b - n_first if others is not None else b): dev
             for (a, b), dev in zip(close, deviations) if dev <= tol}
    pairs = sorted(found)
    if return_deviation:
        return pairs, [found[p] for p in pairs]
    return pairs


def duplicate_groups(structures, pairs=None, **kwargs):
    """Group label of every structure: duplicates (transitively) share a label.

    Parameters
    ----------
    structures : list of ase.Atoms, or int
        The structures (or just their number when ``pairs`` is given).
    pairs : list of (int, int), optional
        Duplicate pairs; found with :func:`find_duplicates` (``**kwargs``
        passed on) when not given.

    Returns
    -------
    ndarray of int, shape (n,)
        Labels ``0..n_groups-1``, numbered in order of first appearance.

    Examples
    --------
    >>> duplicate_groups(5, pairs=[(0, 3), (3, 4)])
    array([0, 1, 2, 0, 0])
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = structures if isinstance(structures, (int, np.integer)) else len(structures)
    if pairs is None:
        if isinstance(structures, (int, np.integer)):
            raise InputError("give the structures or the pairs", hint="duplicate_groups(structures)")
        pairs = find_duplicates(structures, **kwargs)
    pairs = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise InputError(f"pair index out of range for {n} structures")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # renumber in order of first appearance
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def groups_for(records, **kwargs):
    """Groups for group-aware splitting: duplicate groups of structures, else one group per row.

    Parameters
    ----------
    records : list of ase.Atoms or dict rows
    **kwargs
        Passed to :func:`find_duplicates` (``tol``, ``cutoff``, ``progress``).

    Returns
    -------
    ndarray of int, shape (n,)

    Examples
    --------
    >>> groups_for([{"a": 1}, {"a": 1}])
    array([0, 1])
    """
    records = list(records)
    if records and all(is_atoms(r) for r in records):
        return duplicate_groups(records, **kwargs)
    return np.arange(len(records))


__all__ = [
    "DEFAULT_CUTOFF",
    "DEFAULT_TOL",
    "Fingerprint",
    "deviation",
    "duplicate_groups",
    "find_duplicates",
    "fingerprints",
    "groups_for",
    "structure_deviation",
]
