"""Bond-topology n-grams: counts of labelled paths in a cation–anion bond graph.

This is the representation of the winning entry of the NOMAD 2018 Kaggle
competition on transparent conducting oxides (Sutton et al., npj Comput.
Mater. 5, 111, 2019, Table 1, where the approach is described; the radii and
scale factors of ``scale="nomad2018"`` are those of the winner's public
competition notebook).

The graph
---------
Nodes are the atoms of the cell. A cation ``i`` and an anion ``j`` are bonded
when ``d_ij < f · (R_i + R_j)`` with ``R`` an ionic radius (Shannon, Acta
Cryst. A32, 751, 1976; one value per element, see :data:`SHANNON_RADII`) and
``f`` a scale factor. Only cation–anion edges exist (anions are the species in
``anions``, every other element is a cation), so the graph is bipartite.
Periodic images are real, distinct nodes: the graph is the infinite periodic
graph, built with :func:`ml4ms.neighbors.neighbor_pairs`, so cells smaller than
the bond cutoff work and an atom may bond to several images of one atom. Each
node is labelled by its element and its coordination number (number of
edges), written ``Al[6]``.

The features
------------
An *n-gram* is the sequence of node labels along a simple path of ``n`` nodes
(``n - 1`` bonds): 1-grams are nodes (``Al[6]``), 2-grams bonds
(``O[4]-Al[6]``), 3-grams ``M-O-M`` and ``O-M-O`` pairs of bonds, 4-grams
``M-O-M-O`` chains. A path and its reverse are the same path; it is named by
the smaller of its two label sequences, comparing ``(Z, CN)`` node by node
(so ``O[4]-Al[6]``, not ``Al[6]-O[4]``). Paths are counted once
per translation class, i.e. per cell, so the raw counts of a 2×2×2 supercell
are 8 times those of the cell. ``normalize`` turns them into densities:
``"volume"`` (default, the winner's choice) divides by the cell volume in Å³,
``"atom"`` by the number of atoms, ``None`` keeps counts per cell.

The vocabulary (the list of n-gram names, which fixes the feature order) is
learned in ``fit``. At ``transform`` time, n-grams absent from the vocabulary
are dropped (their feature would have been zero in every training structure);
:meth:`BondTopologyNGrams.unseen_ngrams` reports what would be dropped.
"""

import numpy as np

from ..errors import InputError
from ..neighbors import neighbor_pairs
from ..structures import is_atoms
from .base import GlobalDescriptor, as_records, check_finite_params

#: Shannon (1976) ionic radii in Å, one value per element: the usual oxidation
#: state, octahedral (VI) coordination unless noted. O uses 1.35 Å (II-fold),
#: as in the NOMAD 2018 winning model; Al 0.535, Ga 0.62, In 0.80 are VI.
SHANNON_RADII = {
    # anions
    "O": 1.35,  # O2-, CN II (VI: 1.40)
    "F": 1.33,  # F-, VI
    "Cl": 1.81,  # Cl-, VI
    "Br": 1.96,  # Br-, VI
    "I": 2.20,  # I-, VI
    "S": 1.84,  # S2-, VI
    "Se": 1.98,  # Se2-, VI
    "Te": 2.21,  # Te2-, VI
    "N": 1.46,  # N3-, IV
    # cations (VI unless noted)
    "Li": 0.76,
    "Na": 1.02,
    "K": 1.38,
    "Rb": 1.52,
    "Cs": 1.67,
    "Be": 0.45,
    "Mg": 0.72,
    "Ca": 1.00,
    "Sr": 1.18,
    "Ba": 1.35,
    "B": 0.27,
    "Al": 0.535,
    "Ga": 0.62,
    "In": 0.80,
    "Tl": 0.885,  # Tl3+
    "Sc": 0.745,
    "Y": 0.90,
    "La": 1.032,
    "Ce": 0.87,  # Ce4+
    "Si": 0.40,
    "Ge": 0.53,
    "Sn": 0.69,  # Sn4+
    "Pb": 1.19,  # Pb2+
    "Ti": 0.605,  # Ti4+
    "Zr": 0.72,
    "Hf": 0.71,
    "V": 0.54,  # V5+
    "Nb": 0.64,  # Nb5+
    "Ta": 0.64,  # Ta5+
    "Cr": 0.615,  # Cr3+
    "Mo": 0.59,  # Mo6+
    "W": 0.60,  # W6+
    "Mn": 0.83,  # Mn2+ high spin
    "Fe": 0.645,  # Fe3+ high spin
    "Co": 0.745,  # Co2+ high spin
    "Ni": 0.69,  # Ni2+
    "Cu": 0.73,  # Cu2+
    "Ag": 1.15,  # Ag+
    "Zn": 0.74,
    "Cd": 0.95,
    "Sb": 0.60,  # Sb5+
    "Bi": 1.03,  # Bi3+
}

#: Scale factor f of the NOMAD 2018 winner by space group; 227 depends on γ.
NOMAD2018_SCALE = {12: 1.4, 33: 1.4, 167: 1.5, 206: 1.5, 194: 1.3}

# labels are packed into int64 codes: 14 bits per node (Z < 128, CN < 128)
_BITS = 14
_NODE = 1 << _BITS


def nomad2018_scale(atoms):
    """The NOMAD 2018 winner's bond scale factor f for one structure.

    f = 1.4 (space groups 12, 33), 1.5 (167, 206), 1.3 (194); for 227, 1.4 if
    the cell angle γ < 60° else 1.5. Reads ``atoms.info['spacegroup']``.

    Examples
    --------
    >>> from ase import Atoms
    >>> nomad2018_scale(Atoms("O", cell=[3, 3, 3], pbc=True, info={"spacegroup": 194}))
    1.3
    """
    sg = atoms.info.get("spacegroup")
    if sg is None:
        raise InputError(
            "scale='nomad2018' needs atoms.info['spacegroup']", hint="set it, or give a number as scale"
        )
    sg = int(sg)
    if sg == 227:
        gamma = atoms.cell.cellpar()[5]
        return 1.4 if gamma < 60.0 else 1.5
    if sg not in NOMAD2018_SCALE:
        raise InputError(
            f"scale='nomad2018' knows space groups 12, 33, 167, 194, 206, 227, not {sg}",
            hint="give a number as scale",
        )
    return NOMAD2018_SCALE[sg]


def _expand(src_nodes, first_out, degree):
    """For each entry of ``src_nodes``, the indices of the edges leaving it.

    Returns (owner, edge): ``owner[k]`` indexes ``src_nodes``, ``edge[k]`` is an
    edge index into the source-sorted edge list.
    """
    counts = degree[src_nodes]
    owner = np.repeat(np.arange(len(src_nodes)), counts)
    offsets = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, first_out[src_nodes][owner] + offsets


def path_counts(numbers, i, j, shifts, n_max=4, n_min=1):
    """Counts of labelled simple paths of n_min..n_max nodes in a periodic graph.

    Parameters
    ----------
    numbers : ndarray of int, shape (n_atoms,)
        Atomic numbers (part of the node labels).
    i, j : ndarray of int, shape (n_edges,)
        Directed edges; every bond must be listed in both directions.
    shifts : ndarray of int, shape (n_edges, 3)
        Cell shift of the image of ``j`` (zeros for molecules).
    n_max, n_min : int
        Longest and shortest paths, in nodes (1 to 4).

    Returns
    -------
    dict
        ``((z, cn), ...) -> count``: label tuples (the smaller of the two
        directions) to the number of paths per cell.

    Examples
    --------
    >>> # a ring of 2 atoms per cell: O-Mg-O-Mg-... along x
    >>> c = path_counts(np.array([12, 8]), np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]),
    ...                 np.array([[0, 0, 0], [-1, 0, 0], [0, 0, 0], [1, 0, 0]]), n_max=3)
    >>> c[((8, 2), (12, 2))], c[((8, 2), (12, 2), (8, 2))]
    (2, 1)
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    n = len(numbers)
    order = np.argsort(i, kind="stable")
    i, j, shifts = i[order], j[order], shifts[order]
    degree = np.bincount(i, minlength=n)
    if np.any(degree >= 128) or np.any(numbers >= 128):
        raise InputError("coordination number or atomic number too large for n-gram labels")
    first_out = np.concatenate([[0], np.cumsum(degree)[:-1]])
    label = numbers * 128 + degree
    out = {}

    def add(codes_fwd, codes_rev, n_nodes, divide):
        codes = np.minimum(codes_fwd, codes_rev)
        uniq, cnt = np.unique(codes, return_counts=True)
        for code, c in zip(uniq.tolist(), cnt.tolist()):
            labels = []
            for k in range(n_nodes - 1, -1, -1):
                v = (code >> (_BITS * k)) & (_NODE - 1)
                labels.append((v // 128, v % 128))
            out[tuple(labels)] = c // divide

    if n_min <= 1 and n_max >= 1:
        add(label, label, 1, 1)
    if n_max < 2 or len(i) == 0:
        return out
    li, lj = label[i], label[j]
    if n_min <= 2:
        add((li << _BITS) | lj, (lj << _BITS) | li, 2, 2)
    if n_max < 3:
        return out
    # paths a -e1-> b -e2-> c, not backtracking: c is not a (same atom, same image)
    e1, e2 = _expand(j, first_out, degree)
    s12 = shifts[e1] + shifts[e2]
    keep = ~((j[e2] == i[e1]) & ~s12.any(axis=1))
    e1, e2, s12 = e1[keep], e2[keep], s12[keep]
    la, lb, lc = label[i[e1]], label[j[e1]], label[j[e2]]
    if n_min <= 3:
        add((la << 2 * _BITS) | (lb << _BITS) | lc, (lc << 2 * _BITS) | (lb << _BITS) | la, 3, 2)
    if n_max < 4:
        return out
    # extend by c -e3-> d with d not b and d not a
    k, e3 = _expand(j[e2], first_out, degree)
    s23 = shifts[e2][k] + shifts[e3]
    s123 = s12[k] + shifts[e3]
    d = j[e3]
    keep = ~((d == j[e1][k]) & ~s23.any(axis=1)) & ~((d == i[e1][k]) & ~s123.any(axis=1))
    k, d = k[keep], d[keep]
    la, lb, lc, ld = la[k], lb[k], lc[k], label[d]
    fwd = (la << 3 * _BITS) | (lb << 2 * _BITS) | (lc << _BITS) | ld
    rev = (ld << 3 * _BITS) | (lc << 2 * _BITS) | (lb << _BITS) | la
    add(fwd, rev, 4, 2)
    return out


def ngram_name(labels):
    """Name of an n-gram from its ``(z, cn)`` labels, e.g. ``'O[4]-Al[6]'``."""
    from ase.data import chemical_symbols

    return "-".join(f"{chemical_symbols[z]}[{cn}]" for z, cn in labels)


class BondTopologyNGrams(GlobalDescriptor):
    """Counts of element/coordination-labelled paths in the cation–anion bond graph.

    A cation and an anion are bonded when their distance is below
    ``f × (R_cation + R_anion)`` (ionic radii). Each atom is labelled by its
    element and coordination number; the features are the numbers of simple
    paths of 1 to 4 nodes (``Al[6]``, ``O[4]-Al[6]``, ``Al[6]-O[4]-Ga[4]``,
    ``O[4]-Al[6]-O[4]-In[6]`` ...) per cell, divided by the cell volume. See
    the module docstring for the exact definitions.

    Parameters
    ----------
    ngram_range : tuple of int, default (1, 4)
        Smallest and largest n (nodes per path), within 1..4. 1-grams are atom
        counts by element and coordination; ``(2, 4)`` gives bonds, bond pairs
        and bond triples only.
    scale : float or "nomad2018", default 1.4
        The factor f. ``"nomad2018"`` uses the NOMAD 2018 winner's space-group
        dependent values (:func:`nomad2018_scale`; needs
        ``atoms.info['spacegroup']``).
    ionic_radii : dict, optional
        Element symbol -> radius (Å), merged over :data:`SHANNON_RADII`.
    anions : list of str, default ("O",)
        Anion species; every other element is a cation.
    normalize : {"volume", "atom", None}, default "volume"
        Divide counts per cell by the cell volume (Å³; periodic structures
        only), by the number of atoms, or not at all.
    species : list, optional
        Allowed elements; learned in ``fit`` if not given.
    n_jobs : int, default 1
        Processes for ``transform``.
    progress : bool, default True
        Progress bar for long inputs.

    Attributes
    ----------
    species_ : list of int
    radii_ : dict of str -> float
        Radius used for each species.
    vocabulary_ : list of str
        N-gram names in feature order (sorted by n, then name).
    n_features_out_ : int

    Examples
    --------
    >>> from ase.build import bulk
    >>> ng = BondTopologyNGrams(normalize=None).fit([bulk("MgO", "rocksalt", a=4.21)])
    >>> ng.vocabulary_
    ['Mg[6]', 'O[6]', 'O[6]-Mg[6]', 'Mg[6]-O[6]-Mg[6]', 'O[6]-Mg[6]-O[6]', 'O[6]-Mg[6]-O[6]-Mg[6]']
    >>> ng.transform([bulk("MgO", "rocksalt", a=4.21)])
    array([[  1.,   1.,   6.,  15.,  15., 150.]])
    """

    def __init__(
        self,
        *,
        ngram_range=(1, 4),
        scale=1.4,
        ionic_radii=None,
        anions=("O",),
        normalize="volume",
        species=None,
        n_jobs=1,
        progress=True,
    ):
        self.ngram_range = ngram_range
        self.scale = scale
        self.ionic_radii = ionic_radii
        self.anions = anions
        self.normalize = normalize
        self.species = species
        self.n_jobs = n_jobs
        self.progress = progress

    # -- parameters -----------------------------------------------------------
    def _check_params(self):
        try:
            n_min, n_max = (int(v) for v in self.ngram_range)
        except (TypeError, ValueError):
            raise InputError("ngram_range must be two integers (min, max)", hint="e.g. (1, 4)") from None
        if not 1 <= n_min <= n_max <= 4:
            raise InputError(f"ngram_range {tuple(self.ngram_range)} is outside 1..4", hint="e.g. (1, 4)")
        if isinstance(self.scale, str):
            if self.scale != "nomad2018":
                raise InputError(f"unknown scale '{self.scale}'", hint="give a number or 'nomad2018'")
        elif not (np.isfinite(float(self.scale)) and float(self.scale) > 0):
            raise InputError(f"scale must be positive, got {self.scale}")
        if self.normalize not in ("volume", "atom", None):
            raise InputError(f"unknown normalize '{self.normalize}'", hint="use 'volume', 'atom' or None")
        return n_min, n_max

    def _radii(self):
        from ase.data import chemical_symbols

        table = dict(SHANNON_RADII)
        table.update(self.ionic_radii or {})
        radii = {}
        for z in self.species_:
            sym = chemical_symbols[z]
            if sym not in table:
                raise InputError(
                    f"no ionic radius for element {sym}",
                    hint=f"pass ionic_radii={{'{sym}': radius_in_Å}}",
                )
            radii[sym] = float(table[sym])
        return radii

    # -- graph and counts ------------------------------------------------------
    def _counts(self, atoms):
        """Raw n-gram counts per cell of one structure: dict name -> count."""
        from ase.data import atomic_numbers

        n_min, n_max = self._check_params()
        numbers = atoms.numbers
        radius = np.zeros(128)
        anion = np.zeros(128, dtype=bool)
        for sym, r in self.radii_.items():
            radius[atomic_numbers[sym]] = r
        for sym in self.anions_:
            anion[atomic_numbers[sym]] = True
        f = nomad2018_scale(atoms) if self.scale == "nomad2018" else float(self.scale)
        present = np.unique(numbers)
        cat = present[~anion[present]]
        an = present[anion[present]]
        if len(cat) and len(an) and n_max >= 2:
            cutoff = f * (radius[cat].max() + radius[an].max())
            i, j, D, S = neighbor_pairs(atoms, cutoff)
            zi, zj = numbers[i], numbers[j]
            d = np.linalg.norm(D, axis=1)
            keep = (anion[zi] != anion[zj]) & (d < f * (radius[zi] + radius[zj]))
            i, j, S = i[keep], j[keep], S[keep]
        else:
            i = j = np.zeros(0, dtype=np.int64)
            S = np.zeros((0, 3), dtype=np.int64)
        raw = path_counts(numbers, i, j, S, n_max=n_max, n_min=n_min)
        return {ngram_name(k): v for k, v in raw.items()}

    def _norm(self, atoms, index=None):
        if self.normalize is None:
            return 1.0
        if self.normalize == "atom":
            return float(len(atoms))
        if not atoms.pbc.all():
            raise InputError(
                "normalize='volume' needs a periodic cell (pbc all True)",
                index=index,
                hint="use normalize='atom' for molecules or slabs",
            )
        return float(abs(atoms.cell.volume))

    def _records(self, X):
        records = as_records(X)
        for k, r in enumerate(records):
            if not is_atoms(r):
                raise InputError(
                    f"BondTopologyNGrams needs ase.Atoms, got {type(r).__name__}",
                    index=k,
                    hint="n-grams need atomic positions",
                )
        return records

    def fit(self, X, y=None):
        """Learn the species, the radii and the n-gram vocabulary; returns self."""
        self._fit_counts(self._records(X))
        return self

    def learned_from_data(self):
        return super().learned_from_data() + ["n-gram vocabulary"]

    def _fit_counts(self, records):
        check_finite_params(self)
        n_min, _ = self._check_params()
        self.species_ = self._learn_species(records)
        self.anions_ = sorted(set(self.anions or ()))
        self.radii_ = self._radii()
        self._check_species(records)
        for k, atoms in enumerate(records):
            self._norm(atoms, k)  # normalize='volume' needs periodic cells
        counts = self._map(self._counts, records, "BondTopologyNGrams")
        names = set()
        for c in counts:
            names.update(c)
        self.vocabulary_ = sorted(names, key=lambda s: (s.count("-"), s))
        self.n_features_out_ = len(self.vocabulary_)
        return counts

    def _n_features(self):
        return len(self.vocabulary_)

    def _rows(self, records, counts):
        index = {name: k for k, name in enumerate(self.vocabulary_)}
        out = np.zeros((len(records), len(index)))
        for r, (atoms, c) in enumerate(zip(records, counts)):
            norm = self._norm(atoms, r)
            for name, v in c.items():
                k = index.get(name)
                if k is not None:  # n-grams unseen in fit are dropped
                    out[r, k] = v / norm
        return out

    def transform(self, X):
        """N-gram densities, shape (n_structures, ``n_features_out_``)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "vocabulary_")
        records = self._records(X)
        self._check_species(records)
        counts = self._map(self._counts, records, "BondTopologyNGrams")
        return self._rows(records, counts)

    def fit_transform(self, X, y=None):
        """Fit and transform in one pass over the structures."""
        records = self._records(X)
        counts = self._fit_counts(records)
        return self._rows(records, counts)

    def _featurize(self, record):
        return self._rows([record], [self._counts(record)])[0]  # one record; transform is faster

    def unseen_ngrams(self, X):
        """N-grams of ``X`` that are not in the vocabulary (dropped by ``transform``).

        Returns
        -------
        dict of str -> int
            Name -> total raw count per cell, summed over the structures.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "vocabulary_")
        records = self._records(X)
        self._check_species(records)
        known = set(self.vocabulary_)
        total = {}
        for c in self._map(self._counts, records, "BondTopologyNGrams"):
            for name, v in c.items():
                if name not in known:
                    total[name] = total.get(name, 0) + v
        return total

    def get_feature_names_out(self, input_features=None):
        """The n-gram names, in feature order."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "vocabulary_")
        return np.asarray(self.vocabulary_, dtype=object)
