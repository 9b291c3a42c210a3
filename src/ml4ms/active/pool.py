"""The candidate pool: structures the loop may choose to label, read from a file or generated.

A candidate is known by its index in the pool, so the pool must be the same on
every run of one database: :func:`fingerprint` is its SHA-256 (elements,
positions, cell, periodicity), kept in the store and compared on a rerun.

Examples
--------
>>> pool = random_alloys(["Cu", "Au"], n=3, repeat=(1, 1, 1), seed=0)
>>> len(pool), len(pool[0]), sorted(set(pool[0].get_chemical_symbols())) <= ["Au", "Cu"]
(3, 4, True)
>>> fingerprint(pool) == fingerprint(random_alloys(["Cu", "Au"], n=3, repeat=(1, 1, 1), seed=0))
True
"""

import hashlib

import numpy as np

from ..errors import InputError

#: lattices of :func:`random_alloys`: those of ``ase.build.bulk`` with a cubic cell of one element
LATTICES = ("fcc", "bcc", "sc")


def lattice_constant(elements, fractions, lattice):
    """Vegard's law: the lattice constant (Å) interpolated between the elements' reference states.

    Examples
    --------
    >>> round(lattice_constant(["Cu", "Au"], [0.5, 0.5], "fcc"), 3)
    3.845
    """
    from ase.data import atomic_numbers, reference_states

    constants = []
    for symbol in elements:
        state = reference_states[atomic_numbers[symbol]] or {}
        if state.get("symmetry") != lattice or "a" not in state:
            raise InputError(f"{symbol} has no {lattice} reference lattice constant in ASE",
                             hint="give the lattice constant as [pool.generate] a = ... (Å)")
        constants.append(state["a"])
    return float(np.dot(fractions, constants))


def random_alloys(elements, n, lattice="fcc", repeat=(2, 2, 1), a=None, rattle=0.05, strain=0.03, seed=0):
    """Random substitutional alloys of ``elements`` on a lattice: rattled, strained cubic supercells.

    Each structure draws a composition uniformly (the fraction of each element
    from a flat Dirichlet distribution), puts the elements on random sites,
    scales the cell to Vegard's law (or ``a``), strains each axis by up to
    ``±strain`` and moves every atom by a Gaussian of ``rattle`` Å.

    Parameters
    ----------
    elements : list of str
    n : int
        Number of structures.
    lattice : {"fcc", "bcc", "sc"}
    repeat : tuple of 3 int
        Repeats of the cubic cell (4, 2 or 1 atoms).
    a : float, optional
        Lattice constant (Å) of all structures; by default Vegard's law of the
        elements' reference lattice constants (:func:`lattice_constant`).
    rattle : float
        Standard deviation of the random displacements (Å).
    strain : float
        Largest relative strain of each cell axis.
    seed : int

    Returns
    -------
    list of ase.Atoms
        ``info["composition"]`` holds the fractions drawn.
    """
    from ase.build import bulk
    from ase.data import atomic_numbers

    rng = np.random.default_rng(seed)
    numbers = np.array([atomic_numbers[s] for s in elements])
    if a is None:  # checked once, before drawing anything
        lattice_constant(elements, np.full(len(elements), 1 / len(elements)), lattice)
    out = []
    for _ in range(int(n)):
        fractions = rng.dirichlet(np.ones(len(elements)))
        cell = bulk(elements[0], lattice, a=1.0, cubic=True).repeat(tuple(int(r) for r in repeat))
        atoms = cell.copy()
        atoms.numbers = numbers[rng.choice(len(elements), size=len(atoms), p=fractions)]
        present = [np.mean(atoms.numbers == z) for z in numbers]
        scale = a if a is not None else lattice_constant(elements, present, lattice)
        factors = scale * (1 + rng.uniform(-strain, strain, size=3))
        atoms.set_cell(atoms.cell.array * factors[:, None], scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, size=atoms.positions.shape)
        atoms.info["composition"] = ",".join(f"{s}:{f:.4f}" for s, f in zip(elements, fractions))
        out.append(atoms)
    return out


def unlabelled(atoms, keep=()):
    """A copy of ``atoms`` without its labels: no calculator, only ``info`` keys that are not numbers.

    What a candidate shows the model and the store, so a replayed label is read
    from the pool only through the oracle. ``keep`` names ``info`` keys that
    describe the structure rather than label it (a space group, the Kaggle
    lattice columns of NOMAD 2018): they stay, numbers or not.

    Examples
    --------
    >>> from ase import Atoms
    >>> unlabelled(Atoms("H", info={"gap": 1.5, "spacegroup": 33, "name": "a"}), keep=["spacegroup"]).info
    {'spacegroup': 33, 'name': 'a'}
    """
    out = atoms.copy()
    out.calc = None
    out.info = {k: v for k, v in atoms.info.items() if isinstance(v, str) or k in keep}
    for key in ("forces", "energies", "stresses", "charges", "magmoms"):
        if key in out.arrays:
            del out.arrays[key]
    return out


def fingerprint(structures):
    """SHA-256 (16 hex digits) of the elements, positions (to 1e-8 Å), cells and periodicity, in order.

    Examples
    --------
    >>> from ase.build import bulk
    >>> fingerprint([bulk("Cu")]) == fingerprint([bulk("Cu", a=3.7)])
    False
    """
    digest = hashlib.sha256()
    for atoms in structures:
        digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
        digest.update(np.round(np.asarray(atoms.positions, dtype=float), 8).tobytes())
        digest.update(np.round(np.asarray(atoms.cell.array, dtype=float), 8).tobytes())
        digest.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return digest.hexdigest()[:16]
