"""Bundled datasets and the one way to turn a data argument into records.

Four real datasets ship inside the package (``datasets/data/*``, each with its
README: source, citation, units, known issues), so ml4ms works offline.

>>> from ml4ms.datasets import load
>>> data = load("octet")
>>> len(data), data.targets["dE_RS_minus_ZB_eV_per_atom"].shape
(82, (82,))

:func:`load_data` accepts what the CLI accepts: ``NAME`` or ``NAME:SPLIT`` for a
bundled dataset, a CSV table, or any ASE-readable structure file.
"""

import csv
import functools
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import InputError
from ..structures import get_property, read_structures

_DATA = "data"


@dataclass(frozen=True)
class DatasetCard:
    """What ``ml4ms datasets`` prints about a bundled dataset."""

    name: str
    folder: str
    description: str
    splits: dict  # split -> number of records
    targets: dict  # key -> unit
    citation: str
    default_split: str


#: name -> :class:`DatasetCard` of every bundled dataset (what ``ml4ms datasets`` prints)
CARDS = {
    "nomad2018": DatasetCard(
        name="nomad2018",
        folder="nomad2018_tco",
        description="NOMAD 2018 Kaggle transparent conducting oxides (Al,Ga,In)2O3, periodic, 10-80 atoms; "
        "unrelaxed geometries, relaxed labels; test labels withheld",
        splits={"train": 2400, "test": 600},
        targets={"formation_energy_ev_natom": "eV/atom", "bandgap_energy_ev": "eV"},
        citation="Sutton et al., npj Comput. Mater. 5, 111 (2019)",
        default_split="train",
    ),
    "octet": DatasetCard(
        name="octet",
        folder="octet_binaries",
        description="82 octet AB binaries, rocksalt vs zincblende: table of atomic primary features "
        "(split 'table') and the 164 two-atom RS/ZB cells (split 'structures')",
        splits={"table": 82, "structures": 164},
        targets={"dE_RS_minus_ZB_eV_per_atom": "eV/atom", "energy_per_atom": "eV/atom (structures)"},
        citation="Ghiringhelli et al., Phys. Rev. Lett. 114, 105503 (2015)",
        default_split="table",
    ),
    "qm7": DatasetCard(
        name="qm7",
        folder="qm7",
        description="QM7 (QML-tutorial version): 7101 organic molecules, 4-23 atoms (H C N O S); "
        "PBE0 and DFTB3 atomization energies",
        splits={"all": 7101},
        targets={"atomization_energy_pbe0_eV": "eV", "atomization_energy_dftb3_eV": "eV"},
        citation="Rupp et al., Phys. Rev. Lett. 108, 058301 (2012); Montavon et al., NIPS 2012",
        default_split="all",
    ),
    "tio2": DatasetCard(
        name="tio2",
        folder="tio2_aenet",
        description="aenet TiO2 reference set: 7815 periodic cells, 6-95 atoms, DFT energies and forces; "
        "splits from the workshop set003 split file",
        splits={"all": 7815, "train": 6937, "test": 770, "not_used": 108},
        targets={"energy": "eV", "energy_per_atom": "eV/atom", "forces": "eV/Å (per atom)"},
        citation="Artrith & Urban, Comput. Mater. Sci. 114, 135 (2016)",
        default_split="all",
    ),
}

#: free-atom reference energies (eV) of the TiO2 set, from the dataset README
TIO2_ATOMIC_ENERGIES = {"O": -432.503149303, "Ti": -1604.604515075}


@dataclass
class Dataset:
    """Records (``ase.Atoms`` or table rows) with their scalar targets.

    Attributes
    ----------
    name, split : str
        Where the records came from (``split`` is ``None`` for files).
    records : list
        What models learn from: ``ase.Atoms`` or ``dict`` rows.
    targets : dict of str -> ndarray
        Scalar labels present on every record, in record order.
    source : str
        Human-readable origin, used in error messages (``"nomad2018:train"``).
    structures : list of ase.Atoms, optional
        Structures that go with a table (the octet RS/ZB cells).
    """

    name: str
    split: str
    records: list
    targets: dict = field(default_factory=dict)
    source: str = ""
    structures: list = None

    def __len__(self):
        return len(self.records)

    def __iter__(self):  # ``structures, targets = load(...)``
        return iter((self.records, self.targets))


def data_path(name, filename=""):
    """Path of a bundled dataset's folder (or a file inside it)."""
    card = _card(name)
    base = resources.files(__name__).joinpath(_DATA, card.folder)
    return os.fspath(base.joinpath(filename)) if filename else os.fspath(base)


def readme(name):
    """The README of a bundled dataset (source, units, known issues)."""
    with open(data_path(name, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def _card(name):
    if name not in CARDS:
        raise InputError(f"unknown dataset '{name}'", hint=f"choose one of: {', '.join(CARDS)}")
    return CARDS[name]


def read_table(path):
    """Read a CSV file into a list of dict rows, numbers converted to float/int.

    Raises
    ------
    InputError
        If the file is missing, empty or not a CSV table, or its header names a column twice.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("file not found", source=path, hint="check the path")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"not a CSV table ({exc})", source=path, hint="give a comma-separated text file") from None
    repeated = [name for k, name in enumerate(header) if name in header[:k]]
    if repeated:
        raise InputError(f"column '{repeated[0]}' appears {header.count(repeated[0])} times in the header",
                         source=path, hint="give every column its own name")
    if not rows or not rows[0]:
        raise InputError("the table has no rows", source=path, hint="check the file")
    for i, row in enumerate(rows):
        if None in row or any(v is None for v in row.values()):
            raise InputError("the row has a different number of columns than the header", source=path, index=i,
                             item="row", hint="fix or remove the row")
        for key, value in row.items():
            row[key] = _number(value)
    return rows


def _number(text):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


@functools.lru_cache(maxsize=None)
def _read_cached(path):
    return tuple(read_structures(path))


def _copies(frames):
    return [atoms.copy() for atoms in frames]


def _copy_with_calc(atoms):
    from ase.calculators.singlepoint import SinglePointCalculator

    new = atoms.copy()
    if atoms.calc is not None:
        new.calc = SinglePointCalculator(new, **{k: np.copy(v) if isinstance(v, np.ndarray) else v
                                                 for k, v in atoms.calc.results.items()})
    return new


def _scalar_targets(records, keys):
    """The keys whose value is a real number on every record (strings and arrays skipped)."""
    import numbers

    out = {}
    for key in keys:
        values = [get_property(r, key) for r in records]
        if all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values):
            out[key] = np.asarray(values, dtype=float)
    return out


def load(name, split=None):
    """Load a bundled dataset.

    Parameters
    ----------
    name : {"nomad2018", "octet", "qm7", "tio2"}
    split : str, optional
        ``nomad2018``: ``train`` (default), ``test`` (no labels).
        ``octet``: ``table`` (default, 82 rows) or ``structures`` (164 cells).
        ``qm7``: ``all``.
        ``tio2``: ``all`` (default), ``train``, ``test``, ``not_used``
        (the ænet workshop set003 split).

    Returns
    -------
    Dataset
        ``records`` are fresh copies: modifying them does not affect later loads.
    """
    card = _card(name)
    split = card.default_split if split is None else split
    if split not in card.splits:
        raise InputError(
            f"dataset '{name}' has no split '{split}'", hint=f"choose one of: {', '.join(card.splits)}"
        )
    source = f"{name}:{split}"
    structures = None
    if name == "nomad2018":
        records = _copies(_read_cached(data_path(name, f"{split}.extxyz.gz")))
    elif name == "qm7":
        records = _copies(_read_cached(data_path(name, "qm7.extxyz.gz")))
    elif name == "octet":
        cells = [_copy_with_calc(a) for a in _read_cached(data_path(name, "octet_structures.extxyz.gz"))]
        if split == "table":
            records = read_table(data_path(name, "octet_binaries.csv"))
            structures = cells
        else:
            records = cells
    elif name == "tio2":
        frames = _read_cached(data_path(name, "tio2_aenet.extxyz.gz"))
        if split == "all":
            chosen = range(len(frames))
        else:
            rows = read_table(data_path(name, "split_aenet_workshop_set003.csv"))
            chosen = [int(r["index"]) for r in rows if r["subset"] == split]
        records = [_copy_with_calc(frames[i]) for i in chosen]
        for i, atoms in zip(chosen, records):
            atoms.info.setdefault("index", i)
    keys = [k for k in card.targets if k != "forces"]
    return Dataset(
        name=name,
        split=split,
        records=records,
        targets=_scalar_targets(records, keys),
        source=source,
        structures=structures,
    )


def load_data(spec):
    """Records from a data argument: ``NAME[:SPLIT]``, a ``.csv`` table, a structure file or an ASE database.

    Everything is read at once; :func:`ml4ms.datasets.sources.open_parts`
    reads files chunk by chunk instead.

    Examples
    --------
    >>> load_data("nomad2018:test").source
    'nomad2018:test'
    """
    spec = os.fspath(spec)
    if not os.path.exists(spec):
        name, _, split = spec.partition(":")
        if name in CARDS:
            return load(name, split or None)
        raise InputError(
            "no such file or bundled dataset",
            source=spec,
            hint=f"give a file path or NAME:SPLIT with NAME one of {', '.join(CARDS)}",
        )
    if spec.lower().endswith(".csv"):
        records = read_table(spec)
        keys = [k for k, v in records[0].items() if isinstance(v, (int, float))]
        return Dataset(name=os.path.basename(spec), split=None, records=records,
                       targets=_scalar_targets(records, keys), source=spec)
    if spec.lower().endswith(".db"):
        from .sources import DatabasePart

        part = DatabasePart(spec)
        records = part.read(0, len(part))
    else:
        records = read_structures(spec)
    keys = sorted(set(records[0].info) | set(getattr(records[0].calc, "results", {}) or {}))
    return Dataset(name=os.path.basename(spec), split=None, records=records,
                   targets=_scalar_targets(records, keys), source=spec)


def list_datasets():
    """The cards of the bundled datasets."""
    return list(CARDS.values())


def target_unit(key, dataset=None):
    """Unit of a target ``key`` from the dataset cards, or None when they do not know it.

    ``dataset``: the name of a bundled dataset (``Dataset.name``) to ask only
    its card; otherwise (a file) every card that lists ``key`` must agree.
    Notes after the unit (``"eV/Å (per atom)"``) are dropped.

    Examples
    --------
    >>> target_unit("bandgap_energy_ev", "nomad2018"), target_unit("energy_per_atom", "train.extxyz")
    ('eV', 'eV/atom')
    >>> target_unit("my_property") is None, target_unit("Z_A", "octet") is None
    (True, True)
    """
    cards = [CARDS[dataset]] if dataset in CARDS else list(CARDS.values())
    units = {card.targets[key].split(" (")[0] for card in cards if key in card.targets}
    return units.pop() if len(units) == 1 else None


__all__ = [
    "CARDS",
    "Dataset",
    "DatasetCard",
    "TIO2_ATOMIC_ENERGIES",
    "data_path",
    "list_datasets",
    "load",
    "load_data",
    "read_table",
    "readme",
    "target_unit",
]
