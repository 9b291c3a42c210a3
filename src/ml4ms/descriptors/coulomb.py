r"""Coulomb matrix and bag of bonds, for molecules.

Coulomb matrix (Rupp, Tkatchenko, Müller, von Lilienfeld, PRL 108, 058301
(2012)):

.. math::

    M_{ii} = \tfrac12 Z_i^{2.4}, \qquad M_{ij} = \frac{Z_i Z_j}{|\mathbf r_i - \mathbf r_j|}

(Å, so the off-diagonal unit is e²/Å as in DScribe). Made permutation
invariant either by sorting rows and columns by descending row L2 norm
(``"sorted_l2"``, flattened ``n_atoms_max²`` values) or by its eigenvalues
sorted by descending absolute value (``"eigenspectrum"``, ``n_atoms_max``
values); zero-padded. Values equal ``dscribe.descriptors.CoulombMatrix``.

Bag of bonds (Hansen et al., J. Phys. Chem. Lett. 6, 2326 (2015)): the same
entries grouped into bags, one per element (the diagonal terms) and one per
element pair (the off-diagonal terms Z_a Z_b / r), each sorted in descending
order and zero-padded to the largest bag seen in ``fit``.
"""

import numpy as np

from ..errors import InputError
from .base import GlobalDescriptor

PERMUTATIONS = ("sorted_l2", "eigenspectrum")


def coulomb_matrix(numbers, positions):
    """Unsorted Coulomb matrix (n, n) of one molecule.

    Examples
    --------
    >>> coulomb_matrix([1, 1], [[0, 0, 0], [0, 0, 0.5]])
    array([[0.5, 2. ],
           [2. , 0.5]])
    """
    Z = np.asarray(numbers, dtype=float)
    R = np.asarray(positions, dtype=float)
    d = np.sqrt(((R[:, None, :] - R[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, 1.0)
    M = np.outer(Z, Z) / d
    np.fill_diagonal(M, 0.5 * Z ** 2.4)
    return M


def _check_molecule(atoms, name):
    if atoms.pbc.any():
        raise InputError(f"{name} is for molecules, but the structure is periodic",
                         hint="use SOAP, ACSF or Chebyshev for crystals, or set pbc=False")


class CoulombMatrix(GlobalDescriptor):
    """Sorted Coulomb matrix or its eigenvalue spectrum, one row per molecule.

    Parameters
    ----------
    n_atoms_max : int, optional
        Size of the padded matrix; the largest molecule seen in ``fit`` if
        ``None``. A larger molecule at ``transform`` is an error.
    permutation : {"sorted_l2", "eigenspectrum"}, default "sorted_l2"
    species : list of str or int, optional
        Allowed elements; learned in ``fit`` if ``None``.
    n_jobs : int, default 1
    progress : bool, default True

    Examples
    --------
    >>> from ase.build import molecule
    >>> cm = CoulombMatrix(permutation="eigenspectrum").fit([molecule("H2O")])
    >>> cm.transform([molecule("H2O")]).shape
    (1, 3)
    """

    def __init__(self, *, n_atoms_max=None, permutation="sorted_l2", species=None, n_jobs=1, progress=True):
        self.n_atoms_max = n_atoms_max
        self.permutation = permutation
        self.species = species
        self.n_jobs = n_jobs
        self.progress = progress

    def learned_from_data(self):
        return super().learned_from_data() + (["n_atoms_max"] if self.n_atoms_max is None else [])

    def _fit_extra(self, records):
        if self.permutation not in PERMUTATIONS:
            raise InputError(f"unknown permutation '{self.permutation}'", hint=f"use one of {', '.join(PERMUTATIONS)}")
        if self.n_atoms_max is None:
            sizes = [len(r) for r in records if hasattr(r, "numbers")]
            if not sizes:
                raise InputError("no molecules to learn n_atoms_max from", hint="pass n_atoms_max or fit on molecules")
            self.n_atoms_max_ = int(max(sizes))
        else:
            if isinstance(self.n_atoms_max, bool) or not isinstance(self.n_atoms_max, (int, np.integer)) \
                    or self.n_atoms_max < 1:
                raise InputError(f"n_atoms_max must be a positive integer, got {self.n_atoms_max!r}")
            self.n_atoms_max_ = int(self.n_atoms_max)

    def _n_features(self):
        n = self.n_atoms_max_
        return n if self.permutation == "eigenspectrum" else n * n

    def _featurize(self, atoms):
        _check_molecule(atoms, "CoulombMatrix")
        n, n_max = len(atoms), self.n_atoms_max_
        if n > n_max:
            raise InputError(f"molecule has {n} atoms, more than n_atoms_max={n_max}",
                             hint="refit on data that includes it or raise n_atoms_max")
        M = coulomb_matrix(atoms.numbers, atoms.positions)
        if self.permutation == "eigenspectrum":
            values = np.linalg.eigvalsh(M)
            values = values[np.argsort(-np.abs(values), kind="stable")]
            out = np.zeros(n_max)
            out[:n] = values
            return out
        order = np.argsort(-np.linalg.norm(M, axis=1), kind="stable")
        out = np.zeros((n_max, n_max))
        out[:n, :n] = M[np.ix_(order, order)]
        return out.reshape(-1)


class BagOfBonds(GlobalDescriptor):
    """Bag of bonds: Coulomb-matrix entries grouped by element pair, sorted in each bag.

    Bags, in order: for every species *a* (sorted by atomic number) the bag
    of its diagonal terms 0.5 Z_a^2.4 (size: the largest count of *a* in a
    molecule seen in ``fit``); then for every pair a ≤ b the bag of
    Z_a Z_b / r over the atom pairs of those elements (size n_a n_b, or
    n_a (n_a − 1) / 2 for a = b, maximised over ``fit``). Each bag is sorted
    in descending order and zero-padded.

    Parameters
    ----------
    species : list of str or int, optional
        Learned in ``fit`` if ``None``.
    n_jobs : int, default 1
    progress : bool, default True

    Examples
    --------
    >>> from ase.build import molecule
    >>> bob = BagOfBonds().fit([molecule("H2O")])
    >>> bob.transform([molecule("H2O")]).shape  # bags H, O, H-H, H-O
    (1, 6)
    """

    def __init__(self, *, species=None, n_jobs=1, progress=True):
        self.species = species
        self.n_jobs = n_jobs
        self.progress = progress

    def learned_from_data(self):
        return super().learned_from_data() + ["bag sizes"]

    def _fit_extra(self, records):
        species = list(self.species_)
        counts = np.zeros((len(records), len(species)), dtype=np.int64)
        index = {z: k for k, z in enumerate(species)}
        for r, atoms in enumerate(records):
            if not hasattr(atoms, "numbers"):
                raise InputError("BagOfBonds needs ase.Atoms", index=r)
            for z in atoms.numbers:
                if int(z) in index:
                    counts[r, index[int(z)]] += 1
        top = counts.max(0) if len(records) else np.zeros(len(species), np.int64)
        self.self_bag_sizes_ = [int(v) for v in top]
        self.pair_bags_ = []
        self.pair_bag_sizes_ = []
        for a in range(len(species)):
            for b in range(a, len(species)):
                if a == b:
                    size = int((counts[:, a] * (counts[:, a] - 1) // 2).max()) if len(records) else 0
                else:
                    size = int((counts[:, a] * counts[:, b]).max()) if len(records) else 0
                self.pair_bags_.append([int(species[a]), int(species[b])])
                self.pair_bag_sizes_.append(size)

    def _n_features(self):
        return int(sum(self.self_bag_sizes_) + sum(self.pair_bag_sizes_))

    def _featurize(self, atoms):
        _check_molecule(atoms, "BagOfBonds")
        Z = atoms.numbers
        M = coulomb_matrix(Z, atoms.positions)
        out = []

        def put(values, size, label):
            if len(values) > size:
                raise InputError(f"bag {label} holds {len(values)} entries, more than the {size} seen in fit",
                                 hint="refit on data that includes this molecule")
            bag = np.zeros(size)
            bag[:len(values)] = np.sort(values)[::-1]
            out.append(bag)

        from ase.data import chemical_symbols

        for z, size in zip(self.species_, self.self_bag_sizes_):
            put(np.diag(M)[Z == z], size, chemical_symbols[z])
        iu, ju = np.triu_indices(len(Z), 1)
        zi, zj = Z[iu], Z[ju]
        lo, hi = np.minimum(zi, zj), np.maximum(zi, zj)
        values = M[iu, ju]
        for (a, b), size in zip(self.pair_bags_, self.pair_bag_sizes_):
            put(values[(lo == a) & (hi == b)], size, f"{chemical_symbols[a]}-{chemical_symbols[b]}")
        return np.concatenate(out) if out else np.zeros(0)

    def get_feature_names_out(self, input_features=None):
        from ase.data import chemical_symbols
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        names = []
        for z, size in zip(self.species_, self.self_bag_sizes_):
            names += [f"bob[{chemical_symbols[z]}]{k}" for k in range(size)]
        for (a, b), size in zip(self.pair_bags_, self.pair_bag_sizes_):
            names += [f"bob[{chemical_symbols[a]}-{chemical_symbols[b]}]{k}" for k in range(size)]
        return np.asarray(names, dtype=object)
