"""Composition features: element fractions and statistics of elemental properties.

For a composition with atomic fractions ``x_e`` (summing to 1) and an
elemental property ``p_e`` (from :mod:`ml4ms.descriptors.elements`), the
features are

* the fraction of each species of a fixed list (``species``, or learned in
  ``fit``), and
* for each property: the fraction-weighted ``mean`` Σ x_e p_e, the
  fraction-weighted standard deviation ``std`` sqrt(Σ x_e (p_e − mean)²),
  and the ``min`` and ``max`` over the elements present.

A record can be an :class:`ase.Atoms`, a formula string (``"Al2O3"``,
``"Ca(OH)2"``, ``"Al0.5Ga1.5O3"``) or a ``dict`` row with a formula column
(``formula_key``, default ``"formula"``). Only the composition is used, so a
structure and its formula give the same features, and a supercell the same as
its cell.
"""

import re

import numpy as np

from ..errors import InputError
from ..structures import is_atoms
from .base import GlobalDescriptor, as_records, check_known_species
from .elements import PROPERTIES, Z_MAX, property_table

#: Statistics computed for every property, in feature order.
STATS = ("mean", "std", "min", "max")

_TOKEN = re.compile(r"\s*(?:([A-Z][a-z]?)|(\d+(?:\.\d*)?|\.\d+)|([(\[])|([)\]]))")


def parse_formula(formula, index=None):
    """Element counts of a chemical formula, parentheses and decimals allowed.

    Parameters
    ----------
    formula : str
        E.g. ``"Al2O3"``, ``"Ca(OH)2"``, ``"Al0.5Ga1.5O3"``.
    index : int, optional
        Record index, for error messages.

    Returns
    -------
    dict of str -> float
        Element symbol -> amount (in order of first appearance).

    Raises
    ------
    InputError
        For an empty or malformed formula or an unknown element symbol.

    Examples
    --------
    >>> parse_formula("Ca(OH)2")
    {'Ca': 1.0, 'O': 2.0, 'H': 2.0}
    >>> parse_formula("Al0.5Ga1.5O3")
    {'Al': 0.5, 'Ga': 1.5, 'O': 3.0}
    """
    from ase.data import atomic_numbers

    text = str(formula)
    stack = [{}]
    pos = 0
    last = None  # what a following number multiplies: ("el", symbol) or ("group", dict)

    def bad(why):
        return InputError(
            f"cannot parse formula '{text}' ({why})",
            index=index,
            hint="write formulas like 'Al2O3' or 'Ca(OH)2' with capitalised symbols",
        )

    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise bad(f"unexpected '{text[pos]}' at position {pos}")
        pos = m.end()
        symbol, number, opening, closing = m.groups()
        if symbol:
            if symbol not in atomic_numbers or symbol == "X":
                raise InputError(
                    f"unknown element '{symbol}' in formula '{text}'",
                    index=index,
                    hint="use chemical symbols such as 'Al', 'Ga', 'O' (case matters)",
                )
            stack[-1][symbol] = stack[-1].get(symbol, 0.0) + 1.0
            last = ("el", symbol)
        elif number:
            if last is None:
                raise bad("a number must follow an element or a bracket")
            amount = float(number)
            if last[0] == "el":
                stack[-1][last[1]] += amount - 1.0
            else:
                for sym, v in last[1].items():
                    stack[-1][sym] = stack[-1].get(sym, 0.0) + v * (amount - 1.0)
            last = None
        elif opening:
            stack.append({})
            last = None
        else:
            if len(stack) == 1:
                raise bad("unbalanced brackets")
            group = stack.pop()
            for sym, v in group.items():
                stack[-1][sym] = stack[-1].get(sym, 0.0) + v
            last = ("group", group)
    if len(stack) != 1:
        raise bad("unbalanced brackets")
    counts = {s: v for s, v in stack[0].items() if v != 0}
    if not counts or any(v < 0 for v in counts.values()):
        raise bad("no elements" if not counts else "negative amount")
    return counts


def composition(record, formula_key="formula", index=None):
    """Atomic numbers and amounts of one record (Atoms, formula string or dict row).

    Returns
    -------
    numbers : ndarray of int
    amounts : ndarray of float
        Positive, in the units of the record (atoms or formula units).
    """
    from ase.data import atomic_numbers

    if is_atoms(record):
        if len(record) == 0:
            raise InputError("empty structure (no atoms)", index=index, hint="remove it from the data")
        numbers, amounts = np.unique(record.numbers, return_counts=True)
        return numbers.astype(np.int64), amounts.astype(float)
    if isinstance(record, dict):
        if formula_key not in record:
            have = ", ".join(sorted(map(str, record))[:12])
            raise InputError(
                f"row has no '{formula_key}' column",
                index=index,
                hint=f"set formula_key to the formula column (columns: {have})",
            )
        record = record[formula_key]
    if not isinstance(record, str):
        raise InputError(
            f"CompositionFeatures needs ase.Atoms, formula strings or dict rows, got {type(record).__name__}",
            index=index,
        )
    counts = parse_formula(record, index=index)
    numbers = np.array([atomic_numbers[s] for s in counts], dtype=np.int64)
    amounts = np.array(list(counts.values()), dtype=float)
    order = np.argsort(numbers)
    return numbers[order], amounts[order]


class CompositionFeatures(GlobalDescriptor):
    """Element fractions plus mean/std/min/max of elemental properties.

    Parameters
    ----------
    species : list, optional
        Elements whose fractions are features (symbols or numbers), in this
        order after sorting by Z; learned from the training records if not
        given. An element outside the list is an error at ``transform``.
    properties : list of str, optional
        Elemental properties to aggregate (default: all of
        :data:`ml4ms.descriptors.elements.PROPERTIES`).
    stats : list of str, default ("mean", "std", "min", "max")
        Statistics of each property, a subset of those four.
    fractions : bool, default True
        Include the element fractions.
    formula_key : str, default "formula"
        Column holding the formula when records are dict rows.
    n_jobs, progress
        As for every descriptor (parsing is cheap; the default is fine).

    Attributes
    ----------
    species_ : list of int
    feature_names_ : list of str
        ``frac_Al``, ..., ``mean_electronegativity``, ``std_...``, ...
    n_features_out_ : int

    Examples
    --------
    >>> cf = CompositionFeatures(properties=["electronegativity"]).fit(["Al2O3", "Ga2O3"])
    >>> cf.feature_names_[:4]
    ['frac_O', 'frac_Al', 'frac_Ga', 'mean_electronegativity']
    >>> cf.transform(["AlGaO3"]).round(3)
    array([[0.6  , 0.2  , 0.2  , 2.748, 0.85 , 1.61 , 3.44 ]])
    """

    def __init__(
        self,
        *,
        species=None,
        properties=None,
        stats=STATS,
        fractions=True,
        formula_key="formula",
        n_jobs=1,
        progress=True,
    ):
        self.species = species
        self.properties = properties
        self.stats = stats
        self.fractions = fractions
        self.formula_key = formula_key
        self.n_jobs = n_jobs
        self.progress = progress

    # -- species ---------------------------------------------------------------
    def _compositions(self, records):
        return [composition(r, self.formula_key, index=k) for k, r in enumerate(records)]

    def _learn_species(self, records):
        from .base import species_numbers

        if self.species is not None:
            return species_numbers(self.species)
        found = set()
        for numbers, _ in self._compositions(records):
            found.update(int(z) for z in numbers)
        if not found:
            raise InputError("no records to learn the species from", hint="pass species=[...]")
        return sorted(found)

    def _check_species(self, records, comps=None):
        comps = self._compositions(records) if comps is None else comps
        for k, (numbers, _) in enumerate(comps):
            check_known_species(numbers, self.species_, k, given=self.species is not None)
        return comps

    def _fit_extra(self, records):
        from ase.data import chemical_symbols

        props = list(PROPERTIES if self.properties is None else self.properties)
        table = property_table(props)  # raises InputError on unknown names
        stats = list(self.stats)
        bad = [s for s in stats if s not in STATS]
        if bad:
            raise InputError(f"unknown statistic '{bad[0]}'", hint=f"choose from: {', '.join(STATS)}")
        if not props or not stats:
            if not self.fractions:
                raise InputError("CompositionFeatures has no features", hint="give properties and stats")
        too_big = [z for z in self.species_ if z > Z_MAX]
        if too_big:
            raise InputError(
                f"element {chemical_symbols[too_big[0]]} (Z={too_big[0]}) is beyond the property table (Z <= {Z_MAX})",
                hint="remove it from the data",
            )
        values = table[self.species_]
        missing = np.argwhere(np.isnan(values))
        if len(missing):
            z, p = self.species_[missing[0][0]], props[missing[0][1]]
            raise InputError(
                f"element {chemical_symbols[z]} has no value for property '{p}'",
                hint="leave that property out: properties=[...]",
            )
        self.properties_ = props
        self.stats_ = stats
        self.values_ = values  # (n_species, n_properties)
        names = [f"frac_{chemical_symbols[z]}" for z in self.species_] if self.fractions else []
        names += [f"{s}_{p}" for p in props for s in stats]
        self.feature_names_ = names

    def _n_features(self):
        return len(self.feature_names_)

    # -- features --------------------------------------------------------------
    def _fraction_matrix(self, comps):
        col = {z: k for k, z in enumerate(self.species_)}
        F = np.zeros((len(comps), len(self.species_)))
        for r, (numbers, amounts) in enumerate(comps):
            for z, a in zip(numbers.tolist(), amounts.tolist()):
                F[r, col[z]] += a
        return F / F.sum(axis=1, keepdims=True)

    def _features(self, F):
        P = np.asarray(self.values_, dtype=float)
        blocks = [F] if self.fractions else []
        mean = F @ P
        present = F[:, :, None] > 0
        stat = {}
        for s in self.stats_:
            if s == "mean":
                stat[s] = mean
            elif s == "std":
                dev = P[None, :, :] - mean[:, None, :]
                stat[s] = np.sqrt(np.einsum("rs,rsp->rp", F, dev * dev))
            elif s == "min":
                stat[s] = np.where(present, P[None], np.inf).min(axis=1)
            else:
                stat[s] = np.where(present, P[None], -np.inf).max(axis=1)
        if self.stats_:
            blocks.append(np.stack([stat[s] for s in self.stats_], axis=2).reshape(len(F), -1))
        return np.hstack(blocks) if blocks else np.zeros((len(F), 0))

    def transform(self, X):
        """Composition features, shape (n_records, ``n_features_out_``)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        records = as_records(X)
        comps = self._check_species(records)
        return self._features(self._fraction_matrix(comps))

    def _featurize(self, record):
        return self.transform([record])[0]

    def get_feature_names_out(self, input_features=None):
        """The feature names (``frac_<El>``, ``<stat>_<property>``)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        return np.asarray(self.feature_names_, dtype=object)
