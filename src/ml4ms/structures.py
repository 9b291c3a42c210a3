"""Structures: reading, validation and access to labels.

A *record* is what ml4ms learns from: an :class:`ase.Atoms` (with its
``info``, ``arrays`` and attached calculator results) or, for tabular data, a
``dict`` row of a CSV table. The functions here give both one interface.
"""

import math
import os

import numpy as np

from .errors import InputError

#: columns of a table row that give its number of atoms
ATOM_COUNT_KEYS = ("n_atoms", "natoms", "number_of_total_atoms")

#: Atoms closer than this (Å) are reported as overlapping.
MIN_DISTANCE = 0.5


def read_structures(path, index=":"):
    """Read structures from any ASE-readable file (extxyz, gzipped too).

    Parameters
    ----------
    path : str or path-like
        The file.
    index : str or int, default ":"
        ASE index expression; ``":"`` reads all frames.

    Returns
    -------
    list of ase.Atoms

    Raises
    ------
    InputError
        If the file is missing, unreadable or holds no structure.
    """
    import ase.io

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("file not found", source=path, hint="check the path")
    try:
        if path.endswith(".gz"):
            # ASE seeks inside gzip streams, which is quadratic in the number of
            # frames (minutes for 8k frames): decompress into memory once.
            import gzip
            import io

            with gzip.open(path, "rt") as handle:
                text = handle.read()
            inner = path[:-3]
            fmt = "extxyz" if inner.endswith((".xyz", ".extxyz")) else None
            if fmt is None:
                from ase.io.formats import filetype

                fmt = filetype(inner, read=False)
            frames = ase.io.read(io.StringIO(text), index=index, format=fmt)
        else:
            frames = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many types for garbage input
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InputError(
            f"cannot read structures ({reason})",
            source=path,
            hint="give an ASE-readable file such as extxyz, or NAME:SPLIT for a bundled dataset",
        ) from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise InputError("the file holds no structure", source=path, hint="check the file")
    return frames


def is_atoms(record):
    """True if ``record`` is an :class:`ase.Atoms`."""
    from ase import Atoms

    return isinstance(record, Atoms)


def n_atoms(record):
    """Number of atoms of a record (1 for a table row without structure)."""
    if is_atoms(record):
        return len(record)
    if isinstance(record, dict):
        for key in ATOM_COUNT_KEYS:
            if key in record:
                return int(record[key])
    return 1


def get_property(record, key):
    """Value of property ``key`` of one record, or ``None`` if absent.

    Looks in ``atoms.info``, then in ``atoms.arrays``, then in the attached
    calculator's results (``energy``, ``forces``, ``stress``, ...). For a dict
    row, looks up the column. The special key ``energy_per_atom`` falls back
    to ``energy / len(atoms)``.

    Examples
    --------
    >>> from ase import Atoms
    >>> get_property(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]],
    ...                    info={"e": -1.0}), "e")
    -1.0
    """
    if isinstance(record, dict):
        return record.get(key)
    if key in record.info:
        return record.info[key]
    if key in record.arrays:
        return record.arrays[key]
    calc = record.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    if key == "energy_per_atom":
        energy = get_property(record, "energy")
        if energy is not None and len(record):
            return float(energy) / len(record)
    return None


def item_of(record):
    """What a record is called in messages: ``"row"`` for a table row (a dict), else ``"structure"``."""
    return "row" if isinstance(record, dict) else "structure"


def available_keys(record):
    """Names of the scalar properties a record carries (for error hints)."""
    if isinstance(record, dict):
        return sorted(record)
    keys = set(record.info)
    if record.calc is not None:
        keys |= set(getattr(record.calc, "results", {}))
    return sorted(keys)


def get_targets(records, keys, source=None, what="target"):
    """Scalar targets of every record as a float array of shape (n, len(keys)).

    ``what`` names the values in messages (``"baseline"`` for a Δ-learning baseline).

    Raises
    ------
    InputError
        If a key is missing from a record or a value is not a finite number.

    Examples
    --------
    >>> get_targets([{"e": 1.0, "n": 2}], ["b"], source="t.csv", what="baseline")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: t.csv: row 0: baseline key 'b' is missing; choose one of the keys it has: e, n
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    y = np.empty((len(records), len(keys)))
    for i, record in enumerate(records):
        for j, key in enumerate(keys):
            value = get_property(record, key)
            if value is None:
                have = ", ".join(available_keys(record)[:12])
                raise InputError(
                    f"{what} key '{key}' is missing",
                    source=source,
                    index=i,
                    item=item_of(record),
                    hint=f"choose one of the keys it has: {have}",
                )
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"{what} '{key}' is not a number ({value!r})",
                    source=source,
                    index=i,
                    item=item_of(record),
                    hint=f"{what}s must be scalar numbers",
                ) from None
            if not math.isfinite(value):
                raise InputError(
                    f"{what} '{key}' is {value}",
                    source=source,
                    index=i,
                    item=item_of(record),
                    hint="remove the structure or fix its label",
                )
            y[i, j] = value
    return y


def check_structure(atoms, source=None, index=None, min_distance=MIN_DISTANCE):
    """Check one structure for the problems that give silent wrong answers.

    Checks: no atoms, non-finite positions or cell, a periodic cell with zero
    volume, and atoms closer than ``min_distance`` Å (periodic images
    included). A cell smaller than a descriptor's cutoff is *not* an error:
    neighbour lists include periodic images.

    Raises
    ------
    InputError
        Naming the source, the index and what to do.
    """
    if len(atoms) == 0:
        raise InputError("empty structure (no atoms)", source, index, "remove it from the data")
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        raise InputError("positions contain NaN or inf", source, index, "fix or remove the structure")
    pbc = atoms.get_pbc()
    cell = np.asarray(atoms.get_cell())
    if not np.all(np.isfinite(cell)):
        raise InputError("cell contains NaN or inf", source, index, "fix the cell")
    if pbc.any():
        vectors = cell[pbc]
        if len(vectors) < int(pbc.sum()) or np.linalg.matrix_rank(vectors, tol=1e-6) < int(pbc.sum()):
            raise InputError(
                "periodic cell has zero volume (degenerate lattice vectors)",
                source,
                index,
                "give a full-rank cell or set pbc=False",
            )
    if len(atoms) > 1 or pbc.any():
        from .neighbors import ase_neighbor_pairs, neighbor_pairs

        # ours is ~15x faster on the small cells of training data; ASE's binned search scales to large ones
        pairs = neighbor_pairs if len(atoms) <= 2000 else ase_neighbor_pairs
        i, j, D, _ = pairs(atoms, min_distance)
        d = np.linalg.norm(D, axis=1)
        if len(d):
            k = int(np.argmin(d))
            raise InputError(
                f"atoms {i[k]} and {j[k]} overlap ({d[k]:.3f} Å apart, minimum {min_distance} Å)",
                source,
                index,
                "check the coordinates' units (Å) and remove duplicated atoms",
            )


def check_structures(structures, source=None, min_distance=MIN_DISTANCE):
    """Run :func:`check_structure` on every structure; returns them unchanged.

    Examples
    --------
    >>> from ase import Atoms
    >>> check_structures([Atoms()], source="x.xyz")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: x.xyz: structure 0: empty structure (no atoms); remove it from the data
    """
    for i, atoms in enumerate(structures):
        if is_atoms(atoms):
            check_structure(atoms, source=source, index=i, min_distance=min_distance)
    return structures


def record_id(record, default=None):
    """The ``id`` of a record (``info['id']`` or a column ``id``), else ``default``."""
    value = get_property(record, "id")
    return default if value is None else value
