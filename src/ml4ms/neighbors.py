"""One neighbour-list function for molecules and periodic crystals.

:func:`neighbor_pairs` handles periodic images, so cells smaller than the
cutoff are correct; :func:`ase_neighbor_pairs` is the reference it is tested
against (ASE's binned search, better for very large cells).
"""

import math
import os
import warnings

import numpy as np

#: bytes the neighbour list and its first uses hold per pair (indices, vectors, shifts, distances, masks)
BYTES_PER_PAIR = 120


def available_memory():
    """Bytes of memory available to this process (``MemAvailable``, else the physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 << 30


def estimated_pairs(atoms, cutoff):
    """About how many ordered pairs :func:`neighbor_pairs` finds: the atoms times their neighbours.

    Periodic cells: the density of the cell over a sphere of radius ``cutoff``;
    molecules: every pair at most.

    Examples
    --------
    >>> from ase.build import bulk
    >>> round(estimated_pairs(bulk("Cu", "fcc", a=3.6), 3.0))  # 12 true
    10
    """
    n = len(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if n == 0:
        return 0.0
    if not pbc.any():
        return float(n * (n - 1))
    cell = np.asarray(atoms.cell.array, dtype=float)
    volume = abs(np.linalg.det(cell)) if pbc.all() else 0.0
    if volume < 1e-9:  # slabs and wires: bound the sphere by the periodic directions only
        area = np.prod([np.linalg.norm(cell[k]) for k in range(3) if pbc[k]]) or 1.0
        return float(n * n * (2 * cutoff) ** int((~pbc).sum()) * math.pi * cutoff ** int(pbc.sum()) / area)
    return float(n * n / volume * 4.0 / 3.0 * math.pi * cutoff ** 3)


def check_neighbor_memory(atoms, cutoff):
    """Refuse a cutoff whose neighbour list would not fit in memory; warn above a quarter of it."""
    from .errors import InputError

    need = estimated_pairs(atoms, cutoff) * BYTES_PER_PAIR
    have = available_memory()
    what = (f"a cutoff of {cutoff:g} Å gives about {estimated_pairs(atoms, cutoff):.3g} neighbour pairs "
            f"({need / 2**30:.3g} GiB) in a structure of {len(atoms)} atoms"
            + (f" ({atoms.get_chemical_formula()})" if np.any(atoms.numbers > 0) else ""))
    if need > have:
        raise InputError(f"{what}, more than the {have / 2**30:.3g} GiB of memory available",
                         hint="lower the cutoff")
    if need > have / 4:
        warnings.warn(f"{what}, a large part of the {have / 2**30:.3g} GiB available", stacklevel=3)


def ase_neighbor_pairs(atoms, cutoff):
    """The pairs of :func:`neighbor_pairs` from :func:`ase.neighborlist.neighbor_list`."""
    from ase.neighborlist import neighbor_list

    i, j, D, S = neighbor_list("ijDS", atoms, float(cutoff))
    return i.astype(np.int64), j.astype(np.int64), D, S.astype(np.int64)


def _close(centres, points, cutoff):
    """Index pairs (a, b) with |points[b] - centres[a]| < cutoff, by blocks of BLAS distances."""
    out_a, out_b = [], []
    p2 = np.einsum("ij,ij->i", points, points)
    block = max(1, 4_000_000 // max(len(points), 1))
    for start in range(0, len(centres), block):
        c = centres[start : start + block]
        d2 = np.einsum("ij,ij->i", c, c)[:, None] + p2[None, :] - 2.0 * (c @ points.T)
        # generous margin for round-off; the caller filters exactly
        a, b = np.nonzero(d2 < cutoff * cutoff * (1 + 1e-9) + 1e-9)
        out_a.append(a + start)
        out_b.append(b)
    return np.concatenate(out_a), np.concatenate(out_b)


def neighbor_pairs(atoms, cutoff, shifts_needed=True):
    """All ordered pairs (i, j) with ‖r_j + S·cell − r_i‖ < cutoff, periodic images included.

    Positions are wrapped into the cell and the periodic images that can lie
    within ``cutoff`` of the cell are generated (their number follows from the
    spacing of the lattice planes, so cells smaller than the cutoff work); all
    centre-image distances are then computed in blocks with one matrix product.
    Every pair appears in both orders; an atom's pairs with its own periodic
    images are included, the zero-shift self pair is not. Gives exactly the
    pairs of :func:`ase.neighborlist.neighbor_list` (see the tests) about ten
    times faster on the small cells of training data, and falls back to it for
    degenerate cells.

    Parameters
    ----------
    atoms : ase.Atoms
    cutoff : float
        Cutoff radius in Å.
    shifts_needed : bool, default True
        Return the integer cell shifts; if False, S is None (a little faster).

    Returns
    -------
    i, j : ndarray of int
        Centre and neighbour indices.
    D : ndarray, shape (n_pairs, 3)
        Vectors from atom i to the image of atom j, in Å.
    S : ndarray of int, shape (n_pairs, 3), or None
        Cell shifts of the neighbour image (None if ``shifts_needed`` is False).

    Examples
    --------
    >>> from ase.build import bulk
    >>> len(neighbor_pairs(bulk("Cu", "fcc", a=3.6), 3.0)[0])  # 12 images of atom 0
    12
    """
    pos = np.asarray(atoms.positions, dtype=float)
    n = len(pos)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=float)
    cutoff = float(cutoff)
    check_neighbor_memory(atoms, cutoff)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    if not pbc.any():
        i, j = _close(pos, pos, cutoff)
        D = pos[j] - pos[i]
        keep = (np.einsum("ij,ij->i", D, D) < cutoff * cutoff) & (i != j)
        return i[keep], j[keep], D[keep], np.zeros((int(keep.sum()), 3), np.int64)
    if abs(np.linalg.det(cell)) < 1e-9:
        return ase_neighbor_pairs(atoms, cutoff)
    inv = np.linalg.inv(cell)
    frac = pos @ inv
    offset = np.where(pbc, -np.floor(frac), 0.0).astype(np.int64)  # wraps into the cell
    frac_w = frac + offset
    pos_w = pos + offset @ cell
    reach = np.where(pbc, cutoff * np.linalg.norm(inv, axis=0), 0.0)  # cutoff / plane spacing
    ranges = [
        np.arange(-int(np.ceil(reach[k])), int(np.ceil(reach[k])) + 1) if pbc[k] else np.zeros(1, np.int64)
        for k in range(3)
    ]
    shifts = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    img_frac = frac_w[None, :, :] + shifts[:, None, :]  # (n_shifts, n, 3)
    lo, hi = np.where(pbc, -reach, -np.inf), np.where(pbc, 1.0 + reach, np.inf)
    keep = np.all((img_frac >= lo - 1e-9) & (img_frac <= hi + 1e-9), axis=2)
    s_idx, atom = np.nonzero(keep)
    img_shift = shifts[s_idx] + offset[atom]  # integer shift of each image from the input position
    img_pos = pos[atom] + img_shift.astype(float) @ cell
    i, k = _close(pos_w, img_pos, cutoff)
    D = img_pos[k] - pos_w[i]
    d2 = np.einsum("ij,ij->i", D, D)
    # an atom's own periodic images are at least one lattice vector away: only the
    # unshifted copy of itself has D == 0
    good = (d2 < cutoff * cutoff) & ((i != atom[k]) | (d2 > 0.0))
    i, k, D = i[good], k[good], D[good]
    j = atom[k]
    if not shifts_needed:
        return i, j, D, None
    return i, j, D, img_shift[k] - offset[i]
