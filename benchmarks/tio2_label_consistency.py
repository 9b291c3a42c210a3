"""Are the TiO2 energies consistent with their forces? A check of the labels, per chemical formula.

For every pair of structures of the ænet TiO2 set (tio2:train + tio2:test)
with the same cell, the same atoms in the same order, and every atom moved by
at most --max-step Å (minimum image) from one to the other, the energy
difference should equal the work of the forces along the straight path,
approximated by the trapezoid rule:

    E_2 - E_1  ≈  -1/2 Σ_a (F_1a + F_2a) · (r_2a - r_1a).

The error of the trapezoid rule is third order in the step, so with steps of a
few hundredths of an Å the residual measures how well the DFT energies and
forces agree: an SCF run that landed in another electronic state, or an
energy from another setting, would show as a residual far above the rest. It
prints, per formula, the number of such pairs and the median, 90th percentile
and largest |residual| (meV/atom), next to the median |E_2 - E_1|.

    python benchmarks/tio2_label_consistency.py [--max-step 0.06] [--json OUT]
"""

import argparse
from collections import defaultdict


def pair_residuals(frames, max_step):
    """Per formula, rows (residual, energy difference) in meV/atom of the near pairs of ``frames``."""
    import numpy as np

    groups = defaultdict(list)
    for k, a in enumerate(frames):
        groups[(a.get_chemical_formula(), tuple(np.round(a.cell.array.ravel(), 4)), tuple(a.numbers))].append(k)
    out = defaultdict(list)
    for (formula, _, _), members in groups.items():
        if len(members) < 2:
            continue
        cell = frames[members[0]].cell.array
        inverse = np.linalg.inv(cell)
        pos = [frames[k].positions for k in members]
        forces = [frames[k].get_forces() for k in members]
        energy = [frames[k].get_potential_energy() for k in members]
        n = len(pos[0])
        for u in range(len(members)):
            for v in range(u + 1, len(members)):
                frac = (pos[v] - pos[u]) @ inverse
                step = (frac - np.round(frac)) @ cell
                largest = np.abs(step).max()
                if largest > max_step or largest < 1e-6:
                    continue
                work = -0.5 * np.sum((forces[u] + forces[v]) * step)
                de = energy[v] - energy[u]
                out[formula].append((1000 * (de - work) / n, 1000 * de / n))
    return {f: np.array(rows) for f, rows in out.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-step", type=float, default=0.06, help="largest atomic step of a pair (Å)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import numpy as np

    from ml4ms.datasets import load
    from ml4ms.outputs import write_json

    frames = load("tio2", "train").records + load("tio2", "test").records
    rows = pair_residuals(frames, args.max_step)
    results = {}
    print(f"{'formula':8s} {'pairs':>6s} {'median':>8s} {'p90':>8s} {'max':>8s}   |residual| (meV/atom);"
          f" median |dE| (meV/atom)")
    for formula in sorted(rows, key=lambda f: -len(rows[f])):
        r = np.abs(rows[formula])
        results[formula] = {"pairs": int(len(r)), "median": float(np.median(r[:, 0])),
                            "p90": float(np.percentile(r[:, 0], 90)), "max": float(r[:, 0].max()),
                            "median_energy_difference": float(np.median(r[:, 1]))}
        x = results[formula]
        print(f"{formula:8s} {x['pairs']:6d} {x['median']:8.3f} {x['p90']:8.3f} {x['max']:8.3f}   "
              f"{x['median_energy_difference']:.2f}")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
