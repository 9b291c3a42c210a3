"""The potential half of the shared test kit: every kind of potential passes the same physics checks.

A kind is registered once in :data:`POTENTIAL_KINDS` (a factory of a fitted model from a few structures); every
check runs over every kind. The checks need no training: an initialized potential (reference energies,
standardisation, random weights) is a smooth function of the positions like a trained one, so the physics holds or
fails alike, and a check costs well under a second.

- forces are minus the gradient of the energy (central differences);
- the stress is the strain derivative of the energy over the volume (central differences of a strained cell);
- energy invariance and force covariance under rotation, translation and permutation of atoms;
- a supercell has k times the energy, and the same forces on each image of an atom;
- the model file round-trips to identical numbers;
- the TorchScript export gives the model's energy, forces and stress;
- the ASE calculator and ``predict`` over a batch give ``compute``'s numbers.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ml4ms.datasets import load
from ml4ms.potentials import (Committee, MessagePassingPotential, NeuralPotential, NeuralPotentialCalculator,
                              load_potential, save_potential)

SMALL_CHEBYSHEV = {"radial_order": 4, "angular_order": 2, "radial_cutoff": 4.5, "angular_cutoff": 3.5}
SMALL_ACSF = {"r_cut": 4.5, "g2": [[0.5, 0.0], [2.0, 1.5]], "g4": [[0.05, 1.0, 1.0], [0.05, 2.0, -1.0]]}


def _energies(frames, step=0.1):
    return [-9.0 * len(a) + step * k for k, a in enumerate(frames)]


def _potential(frames, seed=0, **params):
    return NeuralPotential(hidden=(6, 5), seed=seed, **params).initialize(frames, _energies(frames))


def _message_passing(frames, **params):
    # a wider energy spread (a larger energy scale): random message-passing weights vary smoothly with the
    # geometry, and the forces of the rattled cells would otherwise be below the force check's floor
    return MessagePassingPotential(r_cut=4.0, features=8, interactions=2, radial_basis=5, **params).initialize(
        frames, _energies(frames, step=2.0))


#: kind -> (factory of a fitted model from structures, what it cannot do: {check: reason})
POTENTIAL_KINDS = {
    "chebyshev": (lambda frames: _potential(frames, descriptor_params=SMALL_CHEBYSHEV), {}),
    "chebyshev, float32, cell average and linear term": (
        lambda frames: _potential(frames, descriptor_params=SMALL_CHEBYSHEV, dtype="float32", cell_mean=True,
                                  linear=True), {}),
    "acsf": (lambda frames: _potential(frames, descriptor="acsf", descriptor_params=SMALL_ACSF),
             {"export": "ACSF is not scriptable (its three-body blocks are planned in numpy): export refuses it"}),
    "committee": (lambda frames: Committee([_potential(frames, seed=s, descriptor_params=SMALL_CHEBYSHEV)
                                            for s in (0, 1)]), {}),
    "message passing": (_message_passing, {}),
    "message passing, float32": (lambda frames: _message_passing(frames, dtype="float32", seed=1), {}),
}

#: tolerances by precision: (energy/forces, finite differences)
TOLERANCE = {"float64": 1e-9, "float32": 2e-4}


@pytest.fixture(scope="module")
def frames():
    """Small TiO2 cells (some O-deficient), rattled so that forces are not zero by symmetry."""
    rng = np.random.default_rng(0)
    out = []
    for atoms in [a for a in load("tio2", "test").records if len(a) <= 12][:4]:
        atoms = atoms.copy()
        atoms.calc = None
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        out.append(atoms)
    return out


@pytest.fixture(scope="module", params=list(POTENTIAL_KINDS))
def kind(request, frames):
    from ml4ms.batch import single_thread

    factory, cannot = POTENTIAL_KINDS[request.param]
    with single_thread():
        yield request.param, factory(frames), cannot


def _compute(model, atoms, stress=False):
    """``(energy, forces, stress)`` of a potential or a committee (its mean)."""
    if isinstance(model, Committee):
        r = model.compute(atoms, stress=stress)
        return r["energy"], r["forces"], r.get("stress")
    return model.compute(atoms, stress=stress)


def _tol(model):
    return TOLERANCE[(model[0] if isinstance(model, Committee) else model).dtype]


def _skip_unless(kind, check):
    name, _, cannot = kind
    if check in cannot:
        pytest.skip(f"{name}: {cannot[check]}")


def test_every_kind_is_registered_once():
    assert len(POTENTIAL_KINDS) == len(set(POTENTIAL_KINDS)) >= 4


def test_forces_are_minus_the_energy_gradient(kind, frames):
    _, model, _ = kind
    atoms = frames[1]
    _, forces, _ = _compute(model, atoms)
    assert np.abs(forces).max() > 1e-3  # something to compare
    h = 1e-3 if _tol(model) > 1e-6 else 1e-5
    for a, x in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[a, x] += sign * h
            energies.append(_compute(model, moved)[0])
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert abs(fd - forces[a, x]) < 1e3 * _tol(model) * max(1.0, abs(fd)), (a, x, fd, forces[a, x])


def test_stress_is_the_strain_derivative(kind, frames):
    _, model, _ = kind
    atoms = frames[0]
    _, _, stress = _compute(model, atoms, stress=True)
    d = 1e-3 if _tol(model) > 1e-6 else 1e-5
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                eps = np.eye(3)
                eps[a, b] += sign * d  # ASE's convention: cell -> cell @ (1 + eps)
                strained = atoms.copy()
                strained.set_cell(atoms.cell @ eps, scale_atoms=True)
                energies.append(_compute(model, strained)[0])
            numeric[a, b] = (energies[0] - energies[1]) / (2 * d * atoms.get_volume())
    numeric = 0.5 * (numeric + numeric.T)
    voigt = numeric[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    assert np.abs(stress).max() > 1e-5
    np.testing.assert_allclose(stress, voigt, atol=1e3 * _tol(model) * max(1e-3, np.abs(voigt).max()))


def test_rotation_translation_and_permutation(kind, frames):
    _, model, _ = kind
    atoms = frames[2]
    e0, f0, _ = _compute(model, atoms)
    axis = np.array([1.0, 2.0, -0.5])
    rotated = atoms.copy()
    rotated.rotate(37.0, axis, rotate_cell=True)
    e1, f1, _ = _compute(model, rotated)
    R = Rotation.from_rotvec(np.deg2rad(37.0) * axis / np.linalg.norm(axis))
    tol = _tol(model)
    assert abs(e1 - e0) < tol * max(1.0, abs(e0))
    np.testing.assert_allclose(f1, R.apply(f0), atol=10 * tol)
    moved = atoms.copy()
    moved.translate([0.3, -1.1, 2.0])
    order = np.random.default_rng(3).permutation(len(atoms))
    e2, f2, _ = _compute(model, moved[order])
    assert abs(e2 - e0) < tol * max(1.0, abs(e0))
    np.testing.assert_allclose(f2, f0[order], atol=10 * tol)


def test_a_supercell_has_k_times_the_energy(kind, frames):
    _, model, _ = kind
    atoms = frames[3]
    e0, f0, _ = _compute(model, atoms)
    big = atoms * (2, 1, 1)
    e1, f1, _ = _compute(model, big)
    assert abs(e1 - 2 * e0) < 10 * _tol(model) * max(1.0, abs(e0))
    np.testing.assert_allclose(f1, np.concatenate([f0, f0]), atol=10 * _tol(model))


def test_model_files_round_trip(kind, frames, tmp_path):
    _, model, _ = kind
    save_potential(tmp_path / "m", model)
    loaded = load_potential(tmp_path / "m")
    for atoms in frames:
        a, b = _compute(model, atoms, stress=True), _compute(loaded, atoms, stress=True)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])


def test_export_gives_the_model_s_numbers(kind, frames, tmp_path):
    import torch
    from ase.neighborlist import neighbor_list

    from ml4ms.potentials.export import export_torchscript

    from ml4ms.errors import InputError

    _, model, cannot = kind
    if "export" in cannot:  # refused in one line, nothing written
        with pytest.raises(InputError, match="cannot be exported") as info:
            export_torchscript(model, tmp_path / "m.pt")
        assert "\n" not in str(info.value) and not (tmp_path / "m.pt").exists()
        return
    export_torchscript(model, tmp_path / "m.pt")
    module = torch.jit.load(str(tmp_path / "m.pt"))
    atoms = frames[1]
    i, j, S = neighbor_list("ijS", atoms, module.cutoff)
    e, f, virial = module(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell.array),
                          torch.tensor(i), torch.tensor(j), torch.tensor(S))
    e0, f0, s0 = _compute(model, atoms, stress=True)
    tol = _tol(model)
    assert abs(float(e) - e0) < tol * max(1.0, abs(e0))
    np.testing.assert_allclose(f.detach().double().numpy(), f0, atol=10 * tol)
    w = -virial.detach().double().numpy() / atoms.get_volume()
    w = 0.5 * (w + w.T)
    np.testing.assert_allclose(w[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], s0, atol=10 * tol)


def test_calculator_and_batches_give_compute_s_numbers(kind, frames):
    _, model, _ = kind
    committee = model if isinstance(model, Committee) else Committee([model])
    energies, forces = committee.predict(frames)
    for k, atoms in enumerate(frames):
        e, f, s = _compute(model, atoms, stress=True)
        assert abs(energies[k] - e) < _tol(model) * max(1.0, abs(e))
        np.testing.assert_allclose(forces[k], f, atol=10 * _tol(model))
        moved = atoms.copy()
        moved.calc = NeuralPotentialCalculator(model)
        assert abs(moved.get_potential_energy() - e) < _tol(model) * max(1.0, abs(e))
        np.testing.assert_allclose(moved.get_forces(), f, atol=10 * _tol(model))
        np.testing.assert_allclose(moved.get_stress(), s, atol=10 * _tol(model))
