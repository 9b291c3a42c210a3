"""Shared test fixtures: small real structures, built fresh for every test.

The shared test kit (``tests/test_descriptor_kit.py``) runs its property
checks on these; every structure is small (at most 6 atoms), deterministic
(fixed rattle seeds) and has no exact symmetry left, so that a check
exercises generic positions and sorting ties cannot hide a difference.
"""

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.spacegroup import crystal


def rattled(atoms, seed):
    """``atoms`` itself, every position moved at random (0.02 Å standard deviation, seeded).

    Parameters
    ----------
    atoms : ase.Atoms
    seed : int

    Returns
    -------
    ase.Atoms
    """
    atoms.rattle(0.02, seed=seed)
    return atoms


def rutile_cell():
    """Rutile-like TiO2: 6 atoms, tetragonal, c = 2.96 Å (shorter than most cutoffs), rattled.

    Returns
    -------
    ase.Atoms
    """
    return rattled(crystal(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                           cellpar=[4.594, 4.594, 2.959, 90, 90, 90]), seed=1)


def rocksalt_cell():
    """Rocksalt MgO, the 2-atom primitive (fcc) cell, rattled.

    Returns
    -------
    ase.Atoms
    """
    return rattled(bulk("MgO", "rocksalt", a=4.21), seed=2)


def triclinic_cell():
    """The rutile-like cell under a general (non-symmetric) deformation: a triclinic TiO2 cell.

    Returns
    -------
    ase.Atoms
        All cell lengths and angles differ.
    """
    atoms = rutile_cell()
    deformation = np.array([[1.02, 0.07, -0.04], [0.03, 0.97, 0.06], [-0.05, 0.08, 1.04]])
    atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    return rattled(atoms, seed=3)


def water_molecule():
    """A water molecule (not periodic, no cell), rattled so the two H differ.

    Returns
    -------
    ase.Atoms
    """
    return rattled(molecule("H2O"), seed=4)


@pytest.fixture
def crystals():
    """The periodic cells: rutile-like TiO2, rocksalt MgO and a triclinic TiO2 cell.

    Returns
    -------
    list of ase.Atoms
    """
    return [rutile_cell(), rocksalt_cell(), triclinic_cell()]


@pytest.fixture
def structures():
    """Crystals and a molecule side by side: rutile-like TiO2, rocksalt MgO, water, triclinic TiO2.

    Returns
    -------
    list of ase.Atoms
        Elements H, O, Mg, Ti; 6, 2, 3 and 6 atoms.
    """
    return [rutile_cell(), rocksalt_cell(), water_molecule(), triclinic_cell()]


@pytest.fixture
def molecules():
    """Small molecules only (for descriptors of molecules): water, ammonia and methanol (3, 4, 6 atoms).

    Returns
    -------
    list of ase.Atoms
    """
    return [water_molecule(), rattled(molecule("NH3"), seed=5), rattled(molecule("CH3OH"), seed=6)]


@pytest.fixture
def rows():
    """Table rows as a CSV reader gives them: numbers (some as text) and a formula column.

    Returns
    -------
    list of dict
    """
    return [{"formula": "TiO2", "a": 1.5, "b": "2.0"}, {"formula": "MgO", "a": -0.5, "b": 3},
            {"formula": "H2O", "a": 0.0, "b": "1e-3"}, {"formula": "Ti2O3", "a": 7, "b": 0.25}]


@pytest.fixture(scope="session")
def uncertain_model(tmp_path_factory):
    """The folder of a small NOMAD 2018 model with an uncertainty (Bayesian ridge on composition, 400 structures)."""
    import ase.io

    from ml4ms.cli import main
    from ml4ms.datasets import load

    folder = tmp_path_factory.mktemp("uncertain_model")
    ase.io.write(folder / "train.extxyz", load("nomad2018", "train").records[:400], format="extxyz")
    assert main(["fit", str(folder / "train.extxyz"), "--config", "nomad2018_demo", "--descriptor", "composition",
                 "--model", "bayesian_ridge", "-o", str(folder / "m"), "--quiet"]) == 0
    return str(folder / "m")


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a whole test module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    tensors, and on a shared machine extra threads only spin-wait."""
    from ml4ms.batch import single_thread

    with single_thread():
        yield
