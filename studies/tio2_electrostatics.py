"""Is the TiO2 committee's energy error long-range electrostatics? (a check before building a charge model)

The O-deficient TiO2 cells carry the committee's largest errors. Their extra
electrons redistribute charge across the cell, which a local model sees only
through its cell-wide inputs, and fourth-generation potentials (charge
equilibration plus Ewald sums) exist for this. Before building one, this
script asks whether the committee's per-atom energy residuals
r_s = (E_s − Ê_s) / N_s correlate with an electrostatic energy of the cell:

* fixed formal charges (Ti +4, O −2; the O-deficient cells are then charged,
  and the Ewald sum includes the uniform neutralising background), and
* charge equilibration (Qeq, Rappé & Goddard 1991) with point charges:
  q minimises Σ_i (χ_i q_i + ½ J_i q_i²) + ½ qᵀ A q subject to Σ q = 0,
  where A is the Ewald matrix; the grid is over χ_Ti − χ_O and J_Ti, J_O (eV).

For each, a line r = c·e + b is fitted to the training residuals and the
corrected test energy RMSE is printed, with the Pearson correlation of r and
e within the O14Ti8 and O30Ti16 families (training cells, test cells, and the
test cells without the family's largest test error). A Qeq
setting whose charges take the wrong sign (Ti negative) on any test cell is
skipped. The Ewald matrix is the textbook one (Gaussian splitting α, real
space to 10 Å, reciprocal terms to a relative size of 1e-7); the script checks
it on rock salt against the Madelung constant first.

    python studies/tio2_electrostatics.py [--model models/tio2]   (about 6 min)

Findings: docs/studies/tio2-potential.md, "Kernel and electrostatic corrections".
"""

import argparse
import itertools
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
COULOMB = 14.399645  # e²/(4πε0) in eV·Å


def ewald_matrix(atoms, alpha=0.3, cutoff=10.0, tol=1e-7):
    """Ewald interaction matrix A (eV per e², n×n) of a periodic cell: E = ½ qᵀAq, background included."""
    from ase.neighborlist import neighbor_list
    from scipy.special import erfc

    n, volume = len(atoms), atoms.get_volume()
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    A = np.zeros((n, n))
    np.add.at(A, (i, j), erfc(alpha * d) / d)
    reciprocal = 2 * np.pi * np.linalg.inv(atoms.cell.array).T
    kmax = 2 * alpha * np.sqrt(-np.log(tol))
    reach = [int(np.ceil(kmax / np.linalg.norm(b))) + 1 for b in reciprocal]
    g = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in reach], indexing="ij"), -1).reshape(-1, 3)
    half = (g[:, 0] > 0) | ((g[:, 0] == 0) & (g[:, 1] > 0)) | ((g[:, 0] == 0) & (g[:, 1] == 0) & (g[:, 2] > 0))
    k = g[half] @ reciprocal
    k2 = (k ** 2).sum(1)
    k, k2 = k[k2 <= kmax ** 2], k2[k2 <= kmax ** 2]
    weight = 8 * np.pi / volume * np.exp(-k2 / (4 * alpha ** 2)) / k2
    phase = atoms.positions @ k.T
    c, s = np.cos(phase), np.sin(phase)
    A += (c * weight) @ c.T + (s * weight) @ s.T
    A[np.diag_indices(n)] -= 2 * alpha / np.sqrt(np.pi)
    A -= np.pi / (volume * alpha ** 2)
    return COULOMB * A


def qeq(A, is_ti, dchi, j_ti, j_o):
    """Charge-equilibrated energy (eV) and charges, χ_O = 0 and χ_Ti = ``dchi``."""
    n = len(is_ti)
    chi = np.where(is_ti, dchi, 0.0)
    H = A + np.diag(np.where(is_ti, j_ti, j_o))
    M = np.zeros((n + 1, n + 1))
    M[:n, :n], M[:n, n], M[n, :n] = H, 1.0, 1.0
    q = np.linalg.solve(M, np.concatenate([-chi, [0.0]]))[:n]
    return chi @ q + 0.5 * q @ H @ q, q


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.path.join(HERE, "..", "models", "tio2"))
    args = p.parse_args(argv)

    import torch
    from ase.build import bulk

    from ml4ms.datasets import load
    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.metrics import labels_of

    torch.set_num_threads(2)
    rocksalt = bulk("NaCl", "rocksalt", a=5.64)
    q = np.array([1.0, -1.0])
    madelung = -0.5 * q @ ewald_matrix(rocksalt) @ q * (5.64 / 2) / COULOMB
    print(f"check: rock-salt Madelung constant {madelung:.5f} (exact 1.74756)")

    committee = load_potential(args.model)
    data = {}
    for name in ("train", "test"):
        t0 = time.perf_counter()
        frames = load("tio2", name).records
        energies, _ = labels_of(frames, "tio2:" + name)
        n = np.array([len(a) for a in frames])
        residual = (energies - as_committee(committee).predict(frames, forces=False)) / n * 1000  # meV/atom
        matrices = [ewald_matrix(a) for a in frames]
        data[name] = dict(r=residual, A=matrices, ti=[a.numbers == 22 for a in frames],
                          formula=np.array([a.get_chemical_formula() for a in frames]))
        print(f"{name}: {len(frames)} cells, committee RMSE {np.sqrt(np.mean(residual ** 2)):.3f} meV/atom "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    def report(label, energy):
        e = {name: np.array([energy(A, ti) / len(ti) for A, ti in zip(d["A"], d["ti"])]) for name, d in data.items()}
        train, test = data["train"], data["test"]
        slope, intercept = np.polyfit(e["train"], train["r"], 1)
        corrected = test["r"] - (slope * e["test"] + intercept)
        parts = [f"{label:28s} test RMSE {np.sqrt(np.mean(corrected ** 2)):.3f}"]
        for family in ("O14Ti8", "O30Ti16"):
            a, b = train["formula"] == family, test["formula"] == family
            worst = np.flatnonzero(b)[np.argmax(np.abs(test["r"][b]))]
            c = b.copy()
            c[worst] = False
            parts.append(f"{family} r(train) {np.corrcoef(e['train'][a], train['r'][a])[0, 1]:+.2f} "
                         f"r(test) {np.corrcoef(e['test'][b], test['r'][b])[0, 1]:+.2f}, "
                         f"{np.corrcoef(e['test'][c], test['r'][c])[0, 1]:+.2f} without cell {worst}")
        print(" | ".join(parts), flush=True)

    print("residual = c * electrostatic energy per atom + b, fitted on the training cells:")
    report("formal charges (+4, -2)", lambda A, ti: 0.5 * np.where(ti, 4.0, -2.0) @ A @ np.where(ti, 4.0, -2.0))
    for dchi, j_ti, j_o in itertools.product([-2.0, -4.0, -6.0], [8.0, 14.0, 20.0], [8.0, 14.0, 20.0]):
        try:
            cells = zip(data["test"]["A"], data["test"]["ti"])
            if any(qeq(A, ti, dchi, j_ti, j_o)[1][ti].min() <= 0 for A, ti in cells):
                continue
        except np.linalg.LinAlgError:
            continue
        report(f"Qeq dchi {dchi:+.0f} J {j_ti:.0f}/{j_o:.0f}", lambda A, ti: qeq(A, ti, dchi, j_ti, j_o)[0])


if __name__ == "__main__":
    main()
