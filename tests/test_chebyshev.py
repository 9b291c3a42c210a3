"""Chebyshev (ænet AUC) descriptor: formula, physics invariances, size, gradients."""

import numpy as np
import pytest
from ase import Atoms
from ase.spacegroup import crystal

from ml4ms.descriptors import make_descriptor
from ml4ms.batch import neighbor_list
from ml4ms.descriptors.chebyshev import Chebyshev, type_weights
from ml4ms.errors import InputError

PARAMS = dict(radial_cutoff=4.5, radial_order=8, angular_cutoff=3.5, angular_order=4)


def rutile(rattle=0.05, seed=0):
    atoms = crystal(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                    cellpar=[4.594, 4.594, 2.959, 90, 90, 90])
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def triclinic(seed=1, symbols=("Ti", "O", "O", "Ti", "O")):
    rng = np.random.default_rng(seed)
    cell = np.array([[4.0, 0.3, 0.2], [0.8, 3.7, -0.4], [0.5, -0.6, 4.4]])
    return Atoms(list(symbols), scaled_positions=rng.random((len(symbols), 3)), cell=cell, pbc=True)


def reference(atoms, species, radial_cutoff, radial_order, angular_cutoff, angular_order):
    """Plain loops over neighbours and neighbour pairs, numpy Chebyshev polynomials."""
    from numpy.polynomial.chebyshev import chebvander

    w = dict(zip(species, type_weights(len(species))))

    def fc(r, rc):
        return 0.5 * (np.cos(np.pi * r / rc) + 1.0) if r < rc else 0.0

    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, max(radial_cutoff, angular_cutoff))
    rows = []
    for a in range(len(atoms)):
        sel = np.flatnonzero(i == a)
        D = atoms.positions[j[sel]] + S[sel] @ atoms.cell.array - atoms.positions[a]
        r = np.linalg.norm(D, axis=1)
        s = np.array([w[z] for z in atoms.numbers[j[sel]]])
        rad, radw = np.zeros(radial_order + 1), np.zeros(radial_order + 1)
        ang, angw = np.zeros(angular_order + 1), np.zeros(angular_order + 1)
        for p in range(len(r)):
            t = chebvander(2 * r[p] / radial_cutoff - 1, radial_order) * fc(r[p], radial_cutoff)
            rad += t[0]
            radw += s[p] * t[0]
            for q in range(p + 1, len(r)):  # unordered pairs p < q
                cos = D[p] @ D[q] / (r[p] * r[q])
                t = chebvander(cos, angular_order)[0] * fc(r[p], angular_cutoff) * fc(r[q], angular_cutoff)
                ang += t
                angw += s[p] * s[q] * t
        rows.append(np.concatenate([rad, ang, radw, angw] if len(species) > 1 else [rad, ang]))
    return np.array(rows)


def test_matches_loop_reference():
    for atoms in (triclinic(), rutile()):
        model = Chebyshev(**PARAMS, reduce=None).fit([atoms])
        np.testing.assert_allclose(model.transform([atoms]), reference(atoms, [8, 22], **PARAMS),
                                   rtol=1e-10, atol=1e-10)
    mono = Atoms("Cu4", scaled_positions=np.random.default_rng(3).random((4, 3)), cell=3.2 * np.eye(3), pbc=True)
    model = Chebyshev(**PARAMS, reduce=None).fit([mono])
    np.testing.assert_allclose(model.transform([mono]), reference(mono, [29], **PARAMS), rtol=1e-10, atol=1e-10)


def test_type_weights_and_size_independent_of_species():
    assert type_weights(1) == [0.0]
    assert type_weights(5) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    two = Chebyshev(**PARAMS).fit([rutile()])
    four = Chebyshev(**PARAMS).fit([triclinic(symbols=("Ti", "O", "Al", "Ga", "O"))])
    assert two.n_features_out_ == four.n_features_out_ == 2 * (9 + 5)
    one = Chebyshev(**PARAMS).fit([Atoms("Cu", cell=3 * np.eye(3), pbc=True)])
    assert one.n_features_out_ == 9 + 5
    default = make_descriptor("chebyshev").fit([rutile()])
    assert default.n_features_out_ == 38 and len(default.get_feature_names_out()) == 38


def test_invariances_supercell_small_cell():
    atoms = triclinic()
    model = Chebyshev(**PARAMS, reduce=None).fit([atoms])
    X = model.transform([atoms])
    rotated = atoms.copy()
    rotated.rotate(71, (1, -2, 0.5), rotate_cell=True)
    rotated.positions += [3.0, -2.0, 0.7]
    np.testing.assert_allclose(model.transform([rotated]), X, rtol=1e-9, atol=1e-11)
    perm = np.array([4, 2, 0, 3, 1])
    np.testing.assert_allclose(model.transform([atoms[perm]]), X[perm], rtol=1e-9, atol=1e-11)
    small = rutile()
    assert small.cell.lengths().min() < PARAMS["angular_cutoff"]
    Xs = model.transform([small])
    np.testing.assert_allclose(model.transform([small.repeat((2, 2, 2))]), np.tile(Xs, (8, 1)),
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("rc", [PARAMS["radial_cutoff"], PARAMS["angular_cutoff"]])
def test_continuity_at_both_cutoffs(rc):
    model = Chebyshev(**PARAMS, reduce=None).fit([Atoms("OTi")])

    def trimer(d):
        return Atoms("OTiO", positions=[[0, 0, 0], [1.9, 0, 0], [0.2, d, 0.1]])

    # crossing the cutoff changes the features by O(δ) (other terms move too), not by a jump
    inside, outside = model.transform([trimer(rc - 1e-8)]), model.transform([trimer(rc + 1e-8)])
    assert np.abs(inside - outside).max() < 1e-6
    assert np.abs(model.transform([trimer(rc - 0.5)]) - outside).max() > 1e-3


def test_unknown_species_and_bad_params():
    model = Chebyshev(**PARAMS).fit([rutile()])
    with pytest.raises(InputError, match="element Fe"):
        model.transform([Atoms("FeO", positions=[[0, 0, 0], [0, 0, 2]])])
    with pytest.raises(InputError):
        Chebyshev(radial_order=2.5).fit([rutile()])
    with pytest.raises(InputError):
        Chebyshev(angular_cutoff=0).fit([rutile()])


def test_gradients_match_finite_differences():
    atoms = triclinic()
    model = Chebyshev(**PARAMS, reduce=None).fit([atoms])
    X, dX, dS = model.gradients(atoms, strain=True)
    assert dX.shape == (5, 28, 5, 3) and dS.shape == (5, 28, 3, 3)
    h = 1e-5
    for b, x in [(0, 0), (2, 1), (4, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[b, x] += h
        minus.positions[b, x] -= h
        fd = (model.transform([plus]) - model.transform([minus])) / (2 * h)
        np.testing.assert_allclose(dX[:, :, b, x], fd, rtol=1e-5, atol=1e-7)
    for comp in [(0, 0), (1, 2), (2, 0)]:
        vals = []
        for sign in (1, -1):
            eps = np.eye(3)
            eps[comp] += sign * h
            deformed = atoms.copy()
            deformed.set_cell(atoms.cell.array @ eps, scale_atoms=True)
            vals.append(model.transform([deformed]))
        np.testing.assert_allclose(dS[:, :, comp[0], comp[1]], (vals[0] - vals[1]) / (2 * h), rtol=1e-5, atol=1e-7)
    assert np.abs(dX).max() > 0.1
    np.testing.assert_allclose(dX.sum(2), 0.0, atol=1e-10)


def test_batched_core_equals_per_structure():
    """Two structures in one call (per-atom cells) give the same rows as separate calls (one 3x3 cell)."""
    import torch

    from ml4ms.batch import AtomsBatch, collate
    from ml4ms.descriptors.chebyshev import chebyshev_features

    frames = [triclinic(), rutile()]
    kw = dict(PARAMS, weights=type_weights(2))
    parts = [collate([atoms], 4.5, [8, 22]) for atoms in frames]
    singles = [chebyshev_features(t.positions, t.species_index, t.cell[0], t.i, t.j, t.shifts, **kw) for t in parts]
    for cat in (AtomsBatch.concat(parts), collate(frames, 4.5, [8, 22])):
        batched = chebyshev_features(cat.positions, cat.species_index, cat.cell, cat.i, cat.j, cat.shifts, **kw)
        np.testing.assert_allclose(batched.numpy(), torch.cat(singles).numpy(), rtol=1e-12, atol=1e-12)


def test_reverse_mode_forces_and_virial_match_jacobians():
    """What a potential does: E = Σ w·X, forces and virial by one backward pass."""
    import torch

    from ml4ms.batch import collate

    atoms = triclinic()
    model = Chebyshev(**PARAMS, reduce=None).fit([atoms])
    X, dX, dS = model.gradients(atoms, strain=True)
    w = np.random.default_rng(0).normal(size=X.shape[1])
    t = collate([atoms], 4.5, model.species_)
    pos = t.positions.clone().requires_grad_(True)
    eps = torch.zeros(3, 3, dtype=pos.dtype, requires_grad=True)
    energy = (model._core(t)(pos, eps) @ torch.as_tensor(w)).sum()
    f_pos, f_eps = torch.autograd.grad(energy, (pos, eps))
    np.testing.assert_allclose(f_pos.numpy(), np.einsum("f,afbx->bx", w, dX), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(f_eps.numpy(), np.einsum("f,afxy->xy", w, dS), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_species", [1, 2, 3])
def test_analytic_pair_gradients_match_autograd(n_species):
    import torch

    from ml4ms.batch import collate, pair_vectors
    from ml4ms.descriptors.chebyshev import chebyshev_features, chebyshev_pair_gradients

    numbers = [8, 22, 12][:n_species]
    rng = np.random.default_rng(n_species)
    atoms = Atoms(numbers=rng.choice(numbers, 9), positions=rng.uniform(0, 5.5, (9, 3)), cell=[5.5, 5.6, 5.4],
                  pbc=True)
    species = sorted(set(int(z) for z in atoms.numbers))
    t = collate([atoms], 4.5, species)
    kw = dict(radial_cutoff=4.5, radial_order=7, angular_cutoff=3.5, angular_order=4,
              weights=type_weights(len(species)) if len(species) > 1 else None)
    D = pair_vectors(t.positions, t.cell, t.i, t.j, t.shifts).detach().requires_grad_(True)
    X = chebyshev_features(t.positions, t.species_index, t.cell, t.i, t.j, t.shifts, vectors=D, **kw)
    ref = torch.stack([torch.autograd.grad(X[:, f].sum(), D, retain_graph=True)[0] for f in range(X.shape[1])], 1)
    G = chebyshev_pair_gradients(D.detach(), t.species_index, t.i, t.j, len(atoms), **kw)
    assert G.shape == ref.shape and float(ref.abs().max()) > 0.1
    np.testing.assert_allclose(G.numpy(), ref.numpy(), atol=1e-10)
