"""Can a kernel model of the TiO2 committee's training residuals correct its test errors? (Δ-learning on the NN)

The shipped committee fits its training cells to about 1.5 meV/atom and its
test cells to 2.4. This fits what the committee gets wrong on its training
cells, r_s = E_s − Ê_s, with a sparse sum kernel over atomic environments
(subset of regressors):

    δE_s = Σ_{a in s} Σ_m α_m k(x_a, x_m),   k(x, x') = exp(−|x − x'|² / 2ℓ²),

where x_a is an atom's network input (the standardised descriptor; with
``--inputs all`` also its cell average; with ``--inputs cell`` the cell
average alone, which makes it a kernel model of whole cells) of committee
member 0, and the x_m
are ``--references`` environments per element chosen by farthest-point
sampling (only same-element pairs interact). α minimises the squared
per-atom residuals plus λ αᵀK_mm α. For every (ℓ, λ) of the grid it prints
the error of the corrected committee on held-out training cells (a random
10 % split, duplicates kept together, α fitted on the rest) and on the test
cells (α fitted on all training cells). The held-out cells were in the
networks' training, so their residuals are in-sample, like those the kernel
is fitted to: the held-out score is how a user would choose (ℓ, λ), and the
test column shows whether that choice carries over. The kernel is fitted to
energies only; ``--forces`` then scores the held-out choice with the forces
it implies (autograd through the inputs), which nothing fitted. With
``--inputs cell`` the forces are linear in α through dx̄/dr alone, and
``--fit-forces W ...`` fits the correction to the committee's training force
residuals as well, with weight W on their mean square against the energies'.

    python studies/tio2_residual_kernel.py [--model models/tio2] [--inputs descriptor|all|cell]
                                           [--references 2000] [--lengths 6 8 12 16] [--lambdas 3e-5 1e-4 3e-4]
                                           [--forces] [--fit-forces W ...]

Findings: docs/studies/tio2-potential.md, "Kernel and electrostatic corrections".
"""

import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def inputs_of(model, frames, columns):
    """Network inputs (n_atoms, F), element index and structure index of every atom of ``frames``."""
    import numpy as np
    import torch

    from ml4ms.descriptors.base import batches_of

    params = model.torch_parameters(requires_grad=False)
    H, S, T, offset = [], [], [], 0
    for group in batches_of(list(frames), 3000):
        t = model.tensors(group)
        structure = t.structure
        with torch.no_grad():
            h = model.network_inputs(model.features(t), t.species_index, params, structure)
        H.append(h.double().numpy()[:, columns])
        S.append(t.species_index.numpy())
        T.append(structure.numpy() + offset)
        offset += len(group)
    return np.concatenate(H), np.concatenate(S), np.concatenate(T)


def design(H, S, T, n_structures, references, length):
    """Per-structure sums of the kernel between its atoms and the references (n_structures, Σ n_m)."""
    import numpy as np
    from scipy.spatial.distance import cdist

    blocks = []
    for s, R in enumerate(references):
        block = np.zeros((n_structures, len(R)))
        rows = S == s
        np.add.at(block, T[rows], np.exp(-cdist(H[rows], R, "sqeuclidean") / (2 * length ** 2)))
        blocks.append(block)
    return np.hstack(blocks)


def reference_kernel(references, length):
    """Block-diagonal K_mm (no kernel between elements)."""
    import numpy as np
    from scipy.linalg import block_diag
    from scipy.spatial.distance import cdist

    return block_diag(*[np.exp(-cdist(R, R, "sqeuclidean") / (2 * length ** 2)) for R in references])


def solve(A, y, K, lam):
    """α of the regularised least squares |Aα − y|² + λ αᵀKα."""
    import numpy as np

    G = A.T @ A + lam * K + 1e-10 * np.eye(len(K))
    return np.linalg.solve(G, A.T @ y)


def correction_forces(model, frames, references, alpha, length, columns):
    """Energies (n_frames,) and forces (list of (n_atoms, 3)) of the correction, by autograd through the inputs."""
    import numpy as np
    import torch

    from ml4ms.descriptors.base import batches_of

    params = model.torch_parameters(requires_grad=False)
    refs = [torch.as_tensor(R, dtype=torch.float64) for R in references]
    sizes = np.cumsum([0] + [len(R) for R in references])
    weights = [torch.as_tensor(alpha[sizes[s]:sizes[s + 1]], dtype=torch.float64) for s in range(len(references))]
    energies, forces = [], []
    for group in batches_of(list(frames), 2000):
        t = dict(model.tensors(group))
        t = t.replace(positions=t.positions.detach().clone().requires_grad_(True))
        structure = t.structure
        x = model.network_inputs(model.features(t), t.species_index, params, structure).double()[:, columns]
        atomic = torch.zeros(x.shape[0], dtype=torch.float64)
        for s, (R, a) in enumerate(zip(refs, weights)):
            idx = torch.nonzero(t.species_index == s).squeeze(1)
            atomic = atomic.index_put((idx,), torch.exp(-torch.cdist(x[idx], R) ** 2 / (2 * length ** 2)) @ a)
        total = torch.zeros(len(group), dtype=torch.float64).index_add(0, structure, atomic)
        f = -torch.autograd.grad(total.sum(), t.positions)[0].double().numpy()
        energies.extend(total.detach().numpy().tolist())
        forces.extend(t.split(f))
    return np.asarray(energies), forces


def cell_force_normal_equations(model, frames, residual_forces, references, length, columns):
    """``(G, b, n)`` of the correction's forces for ``--inputs cell``: G = Σ g gᵀ, b = Σ g r over all force
    components, g the components' rows of the design (forces are linear in α), r the committee's force residuals.

    Every atom's kernel input is then its cell's average x̄_s, so a force row needs only dx̄_s/dr: one backward
    pass per input column and batch.
    """
    import numpy as np
    import torch

    from ml4ms.descriptors.base import batches_of

    params = model.torch_parameters(requires_grad=False)
    species = list(model.species_)
    size = sum(len(R) for R in references)
    G, b, count, start = np.zeros((size, size)), np.zeros(size), 0, 0
    for group in batches_of(list(frames), 2000):
        t = dict(model.tensors(group))
        t = t.replace(positions=t.positions.detach().clone().requires_grad_(True))
        structure = t.structure.numpy()
        first = np.searchsorted(structure, np.arange(len(group)))
        x = model.network_inputs(model.features(t), t.species_index, params,
                                 torch.from_numpy(structure))[torch.from_numpy(first), columns]
        J = np.stack([torch.autograd.grad(x[:, c].sum(), t.positions, retain_graph=True)[0].double().numpy()
                      for c in range(x.shape[1])])  # (n_inputs, n_atoms, 3)
        xs = x.detach().double().numpy()
        r = np.concatenate([np.asarray(f, dtype=float) for f in residual_forces[start:start + len(group)]])
        rows = []
        for k, atoms in enumerate(group):
            a = np.flatnonzero(structure == k)
            counts = [int(np.sum(atoms.numbers == z)) for z in species]
            W = np.concatenate([counts[e] * np.exp(-((xs[k] - R) ** 2).sum(1) / (2 * length ** 2))[:, None]
                                * (xs[k] - R) / length ** 2 for e, R in enumerate(references)])  # (M, n_inputs)
            rows.append(np.einsum("cad,mc->adm", J[:, a, :], W).reshape(-1, size))  # (3 n_atoms, M)
        rows = np.vstack(rows)  # the batch's force components, in the order of r
        G += rows.T @ rows
        b += rows.T @ r.ravel()
        count += rows.shape[0]
        start += len(group)
    return G, b, count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(HERE, "..", "models", "tio2"))
    parser.add_argument("--inputs", choices=["descriptor", "all", "cell"], default="descriptor",
                        help="the standardised descriptor, all network inputs (with the cell average), or the "
                             "cell average alone")
    parser.add_argument("--references", type=int, default=2000, help="environments per element")
    parser.add_argument("--lengths", type=float, nargs="+", default=[6.0, 8.0, 12.0, 16.0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forces", action="store_true",
                        help="for the held-out choice, also the test errors with the correction's forces")
    parser.add_argument("--fit-forces", type=float, nargs="+", metavar="W",
                        help="(--inputs cell) also fit the correction to the committee's training force "
                             "residuals, with these weights of the mean squared force residual ((eV/atom)² per "
                             "(eV/Å)²) against the energies'; at the held-out (length, lambda)")
    args = parser.parse_args(argv)

    import numpy as np

    from ml4ms.datasets import load
    from ml4ms.duplicates import duplicate_groups
    from ml4ms.model_selection import group_train_test_split
    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.metrics import labels_of
    from ml4ms.selection import farthest_point_sampling

    committee = load_potential(args.model)
    train, test = load("tio2", "train").records, load("tio2", "test").records
    f = committee[0].n_features_
    if args.inputs != "descriptor" and not committee[0].cell_mean:
        raise SystemExit(f"--inputs {args.inputs} needs a committee with cell_mean")
    columns = {"descriptor": slice(0, f), "all": slice(0, 2 * f), "cell": slice(f, 2 * f)}[args.inputs]
    data = {}
    for name, frames in (("train", train), ("test", test)):
        energies, _ = labels_of(frames, "tio2:" + name)
        n = np.array([len(a) for a in frames])
        residual = (energies - as_committee(committee).predict(frames)[0]) / n  # eV/atom
        data[name] = (*inputs_of(committee[0], frames, columns), n, residual)
    H, S, T, n, y = data["train"]
    references = [H[S == s][farthest_point_sampling(H[S == s].T, min(args.references, int(np.sum(S == s))))]
                  for s in range(len(committee[0].species_))]
    fit, held = group_train_test_split(duplicate_groups(train, progress=False), 0.1, random_state=args.seed)
    Ht, St, Tt, nt, yt = data["test"]
    rmse = lambda e: 1000 * np.sqrt(np.mean(e ** 2))  # noqa: E731  (meV/atom)
    print(f"{args.model}: energy RMSE {rmse(y):.3f} meV/atom on the training cells, {rmse(y[held]):.3f} on the "
          f"held-out 10 %, {rmse(yt):.3f} on the test cells; kernel on {columns.stop - columns.start} inputs, "
          f"{' + '.join(str(len(r)) for r in references)} reference environments")
    print(f"{'length':>7s} {'lambda':>8s} {'held-out':>9s} {'test':>7s}   test cells 560, 63, 64, 65 (meV/atom)")
    rows = []
    for length in args.lengths:
        A = design(H, S, T, len(train), references, length) / n[:, None]
        At = design(Ht, St, Tt, len(test), references, length) / nt[:, None]
        K = reference_kernel(references, length)
        for lam in args.lambdas:
            e_held = y[held] - A[held] @ solve(A[fit], y[fit], K, lam)
            e_test = yt - At @ solve(A, y, K, lam)
            rows.append((rmse(e_held), rmse(e_test), length, lam))
            print(f"{length:7.1f} {lam:8.0e} {rmse(e_held):9.3f} {rmse(e_test):7.3f}   "
                  + " ".join(f"{-1000 * e_test[k]:+6.1f}" for k in (560, 63, 64, 65)))
    best = min(rows)
    print(f"chosen on the held-out cells: length {best[2]:g}, lambda {best[3]:g}: test {best[1]:.3f} meV/atom "
          f"(best on the test cells: {min(r[1] for r in rows):.3f}; uncorrected {rmse(yt):.3f})")
    if args.forces:
        length, lam = best[2], best[3]
        alpha = solve(design(H, S, T, len(train), references, length) / n[:, None], y,
                      reference_kernel(references, length), lam)
        energies, reference_forces = labels_of(test, "tio2:test")
        predicted, predicted_forces = as_committee(committee).predict(test)
        delta, delta_forces = correction_forces(committee[0], test, references, alpha, length, columns)
        flat = lambda fs: np.concatenate([f.ravel() for f in fs])  # noqa: E731
        before = flat(predicted_forces) - flat(reference_forces)
        after = before + flat(delta_forces)
        print(f"with its forces: test energy RMSE {rmse((predicted + delta - energies) / nt):.3f} meV/atom; force "
              f"RMSE {np.sqrt(np.mean(before ** 2)):.4f} -> {np.sqrt(np.mean(after ** 2)):.4f} eV/Å, MAE "
              f"{np.mean(np.abs(before)):.4f} -> {np.mean(np.abs(after)):.4f}; the correction's own forces "
              f"{np.sqrt(np.mean(flat(delta_forces) ** 2)):.4f} eV/Å RMS")
    if args.fit_forces:
        if args.inputs != "cell":
            raise SystemExit("--fit-forces needs --inputs cell")
        length, lam = best[2], best[3]
        _, train_forces = labels_of(train, "tio2:train")
        residual_forces = [ref - pred for ref, pred in zip(train_forces, as_committee(committee).predict(train)[1])]
        GF, bF, count = cell_force_normal_equations(committee[0], train, residual_forces, references, length,
                                                    columns)
        A = design(H, S, T, len(train), references, length) / n[:, None]
        K = reference_kernel(references, length)
        energies, reference_forces = labels_of(test, "tio2:test")
        predicted, predicted_forces = as_committee(committee).predict(test)
        flat = lambda fs: np.concatenate([f.ravel() for f in fs])  # noqa: E731
        before = flat(predicted_forces) - flat(reference_forces)
        print(f"fitted to energies and forces at length {length:g}, lambda {lam:g} (uncorrected: test force RMSE "
              f"{np.sqrt(np.mean(before ** 2)):.4f} eV/Å, MAE {np.mean(np.abs(before)):.4f}):")
        for w in args.fit_forces:
            scale = w * len(train) / count  # mean over structures against mean over force components
            alpha = np.linalg.solve(A.T @ A + scale * GF + lam * K + 1e-10 * np.eye(len(K)), A.T @ y + scale * bF)
            delta, delta_forces = correction_forces(committee[0], test, references, alpha, length, columns)
            after = before + flat(delta_forces)
            print(f"  force weight {w:g}: test energy RMSE {rmse((predicted + delta - energies) / nt):.3f} meV/atom, "
                  f"force RMSE {np.sqrt(np.mean(after ** 2)):.4f} eV/Å, MAE {np.mean(np.abs(after)):.4f}")


if __name__ == "__main__":
    main()
