"""Base classes of all descriptors: scikit-learn transformers over structures.

A descriptor takes a list of records (``ase.Atoms``; some descriptors also
accept formula strings or table rows) and returns a 2-D float array of fixed
shape. Two kinds:

* :class:`GlobalDescriptor` — one row per structure. A subclass writes
  ``_featurize(record) -> 1-D array`` and ``_n_features()``.
* :class:`LocalDescriptor` — one row per atom. A subclass writes
  ``_featurize_atoms(atoms) -> (n_atoms, n_features)`` and ``_n_features()``.
  :meth:`LocalDescriptor.transform_local` returns the per-atom rows and the
  owning structure index; :meth:`~LocalDescriptor.transform` reduces them to
  one row per structure with ``reduce`` ("mean", "sum" or "species_mean":
  per-species means concatenated), or returns per-atom rows if ``reduce`` is
  ``None``.

Species are either given (``species=[...]``: symbols or atomic numbers) or
learned in ``fit``; a species unseen at ``fit`` is an :class:`InputError` at
``transform``. Work is chunked with a tqdm progress bar for long inputs and
can run on ``n_jobs`` processes or a Dask cluster (:mod:`ml4ms.parallel`), preserving order.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError
from ..structures import is_atoms, item_of

#: Show a progress bar when transforming at least this many records.
PROGRESS_MIN = 200


def as_records(X):
    """Turn a single structure or any sequence of records into a list."""
    if is_atoms(X) or isinstance(X, (str, dict)):
        return [X]
    return list(X)


def species_numbers(species):
    """Sorted unique atomic numbers from symbols or numbers.

    Examples
    --------
    >>> species_numbers(["O", "Ti", 8])
    [8, 22]
    """
    from ase.data import atomic_numbers

    out = set()
    for s in species:
        if isinstance(s, str):
            if s not in atomic_numbers:
                raise InputError(f"unknown element symbol '{s}'", hint="use chemical symbols such as 'Ti'")
            out.add(atomic_numbers[s])
        else:
            out.add(int(s))
    return sorted(out)


def check_known_species(numbers, allowed, index, given=False):
    """Raise the one-line error for elements of a record outside the descriptor's species.

    ``given``: the species were fixed by the ``species`` parameter (else they
    were learned from the structures of ``fit``).

    Examples
    --------
    >>> check_known_species([8, 22], [8, 13], 4, given=True)
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: structure 4: element Ti is not among the descriptor's species (Al, O), fixed by its species parameter; add it to species, or remove the structure
    """
    from ase.data import chemical_symbols

    unknown = set(int(z) for z in np.unique(numbers)) - set(allowed)
    if unknown:
        names = ", ".join(chemical_symbols[z] for z in sorted(unknown))
        known = ", ".join(sorted(chemical_symbols[z] for z in allowed))
        if given:
            raise InputError(
                f"element {names} is not among the descriptor's species ({known}), fixed by its species parameter",
                index=index, hint="add it to species, or remove the structure")
        raise InputError(
            f"element {names} was not seen in training (known: {known})",
            index=index,
            hint="retrain with this element, or remove the structure",
        )


def check_finite_params(descriptor):
    """Raise :class:`InputError` for a parameter of ``descriptor`` that is or holds NaN or infinity.

    Every descriptor runs it when it is fitted, before any work.

    Examples
    --------
    >>> from ml4ms.descriptors.soap import SOAP
    >>> check_finite_params(SOAP(r_cut=float("inf")))
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: SOAP r_cut must be finite (no nan or inf), got inf
    """
    from ..config import FINITE, check_value

    for name, value in descriptor.get_params(deep=False).items():
        check_value(value, FINITE, f"{type(descriptor).__name__} {name}")


class BaseDescriptor(TransformerMixin, BaseEstimator):
    """Shared machinery: species, validation, chunking, progress, n_jobs."""

    #: whether the descriptor depends on the set of species
    _uses_species = True

    def _learn_species(self, records):
        if not self._uses_species:
            return []
        if getattr(self, "species", None) is not None:
            return species_numbers(self.species)
        found = set()
        for r in records:
            if is_atoms(r):
                found.update(int(z) for z in np.unique(r.numbers))
        if not found:
            raise InputError("no structures to learn the species from", hint="pass species=[...] or fit on structures")
        return sorted(found)

    def _check_species(self, records):
        if not self._uses_species:
            return
        allowed = set(self.species_)
        for i, r in enumerate(records):
            if not is_atoms(r):
                raise InputError(
                    f"{type(self).__name__} needs ase.Atoms, got {type(r).__name__}", index=i
                )
            check_known_species(r.numbers, allowed, i, given=getattr(self, "species", None) is not None)

    def fit(self, X, y=None):
        """Learn the species (unless given) and the output size; returns self."""
        check_finite_params(self)
        records = as_records(X)
        self.species_ = self._learn_species(records)
        self._fit_extra(records)
        self.n_features_out_ = int(self._n_features())
        return self

    def _fit_extra(self, records):
        """Hook for subclasses that learn more than the species."""

    def learned_from_data(self):
        """What ``fit`` learns from the data rather than from the parameters; empty when nothing.

        A descriptor that learns nothing gives the same features whatever it
        was fitted on, so features computed part by part (``ml4ms featurize``
        into a folder of shards) equal those computed at once.

        Examples
        --------
        >>> from ml4ms.descriptors.soap import SOAP
        >>> SOAP().learned_from_data(), SOAP(species=["O", "Ti"]).learned_from_data()
        (['species'], [])
        """
        if self._uses_species and getattr(self, "species", None) is None:
            return ["species"]
        return []

    def _n_features(self):
        raise NotImplementedError

    def _map(self, func, records, desc):
        """Apply ``func`` to every record, in order, maybe in parallel (:class:`ml4ms.parallel.Executor`).

        Fewer than ``2 * PROGRESS_MIN`` records run in this process; more run
        on ``n_jobs`` local processes, or on the Dask cluster chosen by
        :func:`ml4ms.parallel.use_scheduler` or ``$ML4MS_SCHEDULER``.
        """
        from ..parallel import Executor

        show = bool(getattr(self, "progress", True)) and len(records) >= PROGRESS_MIN
        executor = Executor(n_jobs=getattr(self, "n_jobs", 1) or 1)
        return executor.map(Indexed(func), list(enumerate(records)), progress=show, desc=desc,
                            serial_below=2 * PROGRESS_MIN)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_features_out_")
        name = type(self).__name__.lower()
        return np.asarray([f"{name}{k}" for k in range(self.n_features_out_)], dtype=object)


class Indexed:
    """``func`` of an ``(index, record)`` pair; an error that names no record names this one.

    Examples
    --------
    >>> Indexed(len)((3, "abc"))
    3
    """

    def __init__(self, func):
        self.func = func

    def __call__(self, pair):
        index, record = pair
        try:
            return self.func(record)
        except InputError as exc:
            raise exc.at(index, item_of(record)) from None


class GlobalDescriptor(BaseDescriptor):
    """One fixed-length row per structure."""

    def _featurize(self, record):
        raise NotImplementedError

    def transform(self, X):
        """Features of every record, shape (n_records, ``n_features_out_``)."""
        check_is_fitted(self, "n_features_out_")
        records = as_records(X)
        self._check_species(records)
        rows = self._map(self._featurize, records, type(self).__name__)
        out = np.zeros((len(records), self.n_features_out_))
        for i, row in enumerate(rows):
            out[i] = row
        return out


def batches_of(records, max_atoms):
    """Consecutive groups of records with at most ``max_atoms`` atoms each (one record at least).

    Examples
    --------
    >>> from ase import Atoms
    >>> [len(g) for g in batches_of([Atoms("H2"), Atoms("H2"), Atoms("H3")], 4)]
    [2, 1]
    """
    groups, current, size = [], [], 0
    for r in records:
        if current and size + len(r) > max_atoms:
            groups.append(current)
            current, size = [], 0
        current.append(r)
        size += len(r)
    if current:
        groups.append(current)
    return groups


class LocalDescriptor(BaseDescriptor):
    """One fixed-length row per atom, reduced per structure by ``reduce``.

    A subclass writes ``_featurize_atoms(atoms)``, or ``_featurize_batch(frames)``
    (a list of per-structure blocks) and sets ``_batch_atoms`` to featurize
    small structures together.
    """

    #: structures are grouped up to this many atoms per ``_featurize_batch`` call
    _batch_atoms = 1

    def _featurize_atoms(self, atoms):
        raise NotImplementedError

    def _featurize_batch(self, frames):
        return [self._featurize_atoms(atoms) for atoms in frames]

    def transform_local(self, X):
        """Per-atom features and the index of the structure that owns each row.

        Returns
        -------
        features : ndarray, shape (n_atoms_total, ``n_features_out_``)
        structure_index : ndarray of int, shape (n_atoms_total,)
        """
        check_is_fitted(self, "n_features_out_")
        records = as_records(X)
        self._check_species(records)
        groups = batches_of(records, self._batch_atoms)
        parts = self._map(self._featurize_batch, groups, type(self).__name__)
        blocks = [np.asarray(b).reshape(-1, self.n_features_out_) for part in parts for b in part]
        sizes = [len(b) for b in blocks]
        features = np.concatenate(blocks) if blocks else np.zeros((0, self.n_features_out_))
        index = np.repeat(np.arange(len(records)), sizes)
        return features, index

    def transform(self, X):
        """Per-structure features (``reduce`` set) or per-atom rows (``reduce=None``)."""
        features, index = self.transform_local(X)
        reduce = getattr(self, "reduce", "mean")
        if reduce is None:
            return features
        records = as_records(X)
        n = len(records)
        if reduce in ("mean", "sum"):
            out = np.zeros((n, features.shape[1]))
            np.add.at(out, index, features)
            if reduce == "mean":
                out /= np.maximum(np.bincount(index, minlength=n), 1)[:, None]
            return out
        if reduce == "species_mean":
            numbers = np.concatenate([r.numbers for r in records])
            out = np.zeros((n, len(self.species_), features.shape[1]))
            counts = np.zeros((n, len(self.species_)))
            for k, z in enumerate(self.species_):
                mask = numbers == z
                np.add.at(out[:, k], index[mask], features[mask])
                np.add.at(counts[:, k], index[mask], 1.0)
            out /= np.maximum(counts, 1)[:, :, None]
            return out.reshape(n, -1)
        raise InputError(f"unknown reduce '{reduce}'", hint="use 'mean', 'sum', 'species_mean' or None")
