"""Structures as rows of numbers: the input of models that read structures themselves (graph networks).

Every model of a recipe sees a feature matrix: committees subsample its rows, stacked ensembles give their
members column ranges of it, cross-validation indexes it. A graph network needs the structure, not a description
of it. :class:`StructureRows` writes each structure, without loss, as one fixed-width row of floats,

    ``[MARK, n_atoms, pbc (3), cell (9), Z (max_atoms), positions (3 max_atoms)]``

(zeros after the last atom), and :func:`rows_to_structures` reads the structures back. So a model that takes
structures (:class:`~ml4ms.models.mpnn.MPNNRegressor`) works wherever a model on features works, with no
special case: alone, as the member of a committee, or as a member of an ensemble that sees the ``structures``
block of a :class:`~ml4ms.descriptors.concat.ConcatDescriptor`. ``MARK`` lets such a model tell these rows from
any other features it is given by mistake.

The width is fixed when the descriptor is fitted (committees and ensembles check that it stays the same):
``max_atoms``, by default :data:`DEFAULT_MAX_ATOMS` or the largest structure seen in ``fit`` if that is larger,
so that predictions for structures larger than the training ones work. A structure larger still at
``transform`` is an :class:`~ml4ms.errors.InputError` that says to refit with a larger ``max_atoms``.
"""

import numpy as np

from ..errors import InputError
from ..structures import check_structure, is_atoms
from .base import GlobalDescriptor, as_records

#: the first value of every row (an unlikely feature value, and small: kits compare rows to a share of their
#: largest value), to recognise structure rows
MARK = -1729.0
#: the columns before the atoms: mark, n_atoms, pbc (3), cell (9)
HEADER = 14
#: the fewest atoms a row holds when ``max_atoms`` is not given (3.3 kB a structure)
DEFAULT_MAX_ATOMS = 200


def structure_row(atoms, max_atoms):
    """One structure as a row of ``HEADER + 4 * max_atoms`` floats (see the module notes).

    Examples
    --------
    >>> from ase.build import molecule
    >>> row = structure_row(molecule("H2O"), 4)
    >>> row.shape, int(row[1]), row[HEADER:HEADER + 4].tolist()
    ((30,), 3, [8.0, 1.0, 1.0, 0.0])
    """
    n = len(atoms)
    if n > max_atoms:
        raise InputError(f"the structure has {n} atoms, more than the {max_atoms} the model was fitted for",
                         hint="refit with a larger max_atoms ([descriptor] name = \"structures\", max_atoms = ...)")
    row = np.zeros(HEADER + 4 * max_atoms)
    row[0], row[1] = MARK, n
    row[2:5] = np.asarray(atoms.pbc, dtype=float)
    row[5:14] = np.asarray(atoms.cell.array, dtype=float).ravel()
    row[HEADER:HEADER + n] = atoms.numbers
    row[HEADER + max_atoms:HEADER + max_atoms + 3 * n] = np.asarray(atoms.positions, dtype=float).ravel()
    return row


def rows_to_structures(X):
    """The structures of rows written by :func:`structure_row` (or :class:`StructureRows`).

    Raises
    ------
    InputError
        ``X`` is not a 2-D array of such rows (e.g. an ensemble member given the wrong columns).

    Examples
    --------
    >>> from ase.build import bulk
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> b = rows_to_structures(structure_row(a, 3)[None])[0]
    >>> b.get_chemical_formula(), bool(np.array_equal(b.positions, a.positions)), b.pbc.tolist()
    ('MgO', True, [True, True, True])
    """
    from ase import Atoms

    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] < HEADER + 4 or (X.shape[1] - HEADER) % 4 or np.any(X[:, 0] != MARK):
        raise InputError("the model takes structures, but its input columns are not the rows of the 'structures' "
                         "descriptor", hint="give it the block of [descriptor] name = \"structures\" "
                                            "(in an ensemble: the member's columns or block)")
    width = (X.shape[1] - HEADER) // 4
    out = []
    for row in X:
        n = int(row[1])
        out.append(Atoms(numbers=row[HEADER:HEADER + n].astype(int),
                         positions=row[HEADER + width:HEADER + width + 3 * n].reshape(n, 3),
                         cell=row[5:14].reshape(3, 3), pbc=row[2:5].astype(bool)))
    return out


def as_structures(X):
    """``X`` as a list of :class:`ase.Atoms`: structures as they are, or the rows of :class:`StructureRows`."""
    if is_atoms(X):
        return [X]
    if isinstance(X, (list, tuple)) and all(is_atoms(a) for a in X):
        return list(X)
    return rows_to_structures(X)


class StructureRows(GlobalDescriptor):
    """Every structure as one row of numbers, read back by the models that take structures (see the module notes).

    Parameters
    ----------
    max_atoms : int, optional
        The most atoms a row holds; default: the largest structure given to ``fit``, at least
        :data:`DEFAULT_MAX_ATOMS`.
    n_jobs : int, default 1
    progress : bool, default True

    Attributes
    ----------
    species_ : list of int
        The elements seen in ``fit``; another element at ``transform`` is an :class:`~ml4ms.errors.InputError`.
    max_atoms_ : int
    n_features_out_ : int
        ``14 + 4 * max_atoms_``.

    Examples
    --------
    >>> from ase.build import bulk, molecule
    >>> X = StructureRows(max_atoms=3).fit_transform([molecule("H2O"), bulk("Si")])
    >>> X.shape, [a.get_chemical_formula() for a in rows_to_structures(X)]
    ((2, 26), ['H2O', 'Si2'])
    """

    def __init__(self, *, max_atoms=None, n_jobs=1, progress=True):
        self.max_atoms = max_atoms
        self.n_jobs = n_jobs
        self.progress = progress

    def fit(self, X, y=None):
        """Check the structures and fix the row width; returns self."""
        records = as_records(X)
        self._check(records)
        largest = max((len(a) for a in records), default=1)
        if self.max_atoms is not None and (not isinstance(self.max_atoms, (int, np.integer))
                                           or isinstance(self.max_atoms, bool) or self.max_atoms < 1):
            raise InputError(f"max_atoms must be a positive integer, got {self.max_atoms!r}",
                             hint="give the most atoms a structure may have, or leave it out")
        self.max_atoms_ = int(self.max_atoms if self.max_atoms is not None else max(largest, DEFAULT_MAX_ATOMS))
        return super().fit(records)

    @staticmethod
    def _check(records):
        for i, r in enumerate(records):
            if not is_atoms(r):
                raise InputError(f"the 'structures' descriptor needs structures, got {type(r).__name__}", index=i,
                                 hint="give structure files (extxyz, ...), not a table")
            check_structure(r, index=i)

    def _n_features(self):
        return HEADER + 4 * self.max_atoms_

    def _featurize(self, record):
        return structure_row(record, self.max_atoms_)

    def transform(self, X):
        """One row per structure, shape (n, ``n_features_out_``)."""
        records = as_records(X)
        self._check(records)
        return super().transform(records)
