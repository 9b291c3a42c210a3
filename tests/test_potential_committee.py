"""``ml4ms.potentials.committee.Committee``: members sharing elements and cutoff, mean and spread."""

import numpy as np
import pytest
from ase.build import bulk

from ml4ms.errors import InputError
from ml4ms.potentials import NeuralPotential, NeuralPotentialCalculator, load_potential, save_potential
from ml4ms.potentials.committee import Committee, as_committee

SETTINGS = {"radial_order": 2, "angular_order": 1}


def _member(seed, cells, **settings):
    model = NeuralPotential(hidden=(4,), seed=seed, descriptor_params={**SETTINGS, **settings})
    return model.initialize(cells, [-40.0 - 0.1 * k for k in range(len(cells))])


@pytest.fixture(scope="module")
def cells():
    return [bulk("MgO", "rocksalt", a=4.1 + 0.05 * k, cubic=True) for k in range(3)]


@pytest.fixture(scope="module")
def committee(cells):
    return Committee([_member(seed, cells) for seed in (0, 1, 2)])


def test_mean_and_spread_are_those_of_the_members(committee, cells):
    atoms = cells[1].copy()
    atoms.rattle(0.05, seed=1)
    runs = [m.compute(atoms, stress=True) for m in committee]
    r = committee.compute(atoms, stress=True)
    for k, name in enumerate(("energy", "forces", "stress")):
        values = np.array([run[k] for run in runs])
        np.testing.assert_allclose(r[name], values.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r[name + "_std"], values.std(axis=0), rtol=1e-12, atol=1e-12)
    assert r["energy_std"] > 0
    energies, forces, spread = committee.predict(cells, return_std=True)
    np.testing.assert_allclose(energies[1], committee.compute(cells[1])["energy"], rtol=1e-12)
    np.testing.assert_allclose(spread / [len(a) for a in cells], committee.energy_spread(cells), rtol=1e-12)
    assert len(forces) == 3 and forces[0].shape == (len(cells[0]), 3)


def test_calculator_reports_the_spread(committee, cells):
    atoms = cells[0].copy()
    atoms.calc = NeuralPotentialCalculator(committee)
    atoms.get_stress()
    assert {"energy_std", "forces_std", "stress_std"} <= set(atoms.calc.results)
    assert abs(atoms.get_potential_energy() - committee.compute(atoms)["energy"]) < 1e-10


def test_members_must_share_elements_and_cutoff(cells):
    with pytest.raises(InputError, match="at least one"):
        Committee([])
    other = _member(0, [bulk("NaCl", "rocksalt", a=5.6, cubic=True)])
    with pytest.raises(InputError, match="different elements"):
        Committee([_member(0, cells), other])
    with pytest.raises(InputError, match="different cutoffs"):
        Committee([_member(0, cells), _member(1, cells, radial_cutoff=4.0)])
    with pytest.raises(InputError, match="not fitted"):
        Committee([_member(0, cells), NeuralPotential()])


def test_one_potential_is_a_committee_of_one_and_files_round_trip(committee, cells, tmp_path):
    single = as_committee(committee[0])
    assert len(single) == 1 and single.compute(cells[0])["energy_std"] == 0.0
    assert as_committee(committee) is committee
    save_potential(tmp_path / "c", committee)
    loaded = load_potential(tmp_path / "c")
    assert isinstance(loaded, Committee) and len(loaded) == 3
    assert loaded.compute(cells[2])["energy"] == committee.compute(cells[2])["energy"]
