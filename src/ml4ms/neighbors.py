"""One neighbour-list function for molecules and periodic crystals.

Wraps :func:`ase.neighborlist.neighbor_list`, which includes periodic images,
so cells smaller than the cutoff are handled correctly.
"""

import numpy as np


def neighbor_pairs(atoms, cutoff, self_interaction=False):
    """All ordered pairs (i, j) with |r_j + S·cell − r_i| < cutoff.

    Parameters
    ----------
    atoms : ase.Atoms
        Molecule (no pbc) or crystal; cells smaller than ``cutoff`` are fine.
    cutoff : float
        Cutoff radius in Å.
    self_interaction : bool, default False
        Keep the pair (i, i) with zero shift. Pairs of an atom with its own
        periodic images are always kept.

    Returns
    -------
    i, j : ndarray of int, shape (n_pairs,)
        Centre and neighbour indices; every pair appears in both orders.
    D : ndarray of float, shape (n_pairs, 3)
        Vectors from atom i to the image of atom j, in Å.
    S : ndarray of int, shape (n_pairs, 3)
        Cell shifts of the neighbour image.

    Examples
    --------
    >>> from ase.build import bulk
    >>> i, j, D, S = neighbor_pairs(bulk("Cu", "fcc", a=3.6), 3.0)
    >>> len(i)  # 12 nearest neighbours, all periodic images of atom 0
    12
    """
    from ase.neighborlist import neighbor_list

    i, j, D, S = neighbor_list("ijDS", atoms, float(cutoff), self_interaction=self_interaction)
    return i.astype(np.int64), j.astype(np.int64), D, S.astype(np.int64)
