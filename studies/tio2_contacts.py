"""Are the TiO2 potential's worst test cells compressed? Their shortest contacts against the training cells'.

A potential that under-predicts compressed cells is usually given a short-range
repulsion baseline (ZBL-type core repulsion). That only helps cells with
unusually short contacts. For each test cell given, this prints the shortest
Ti–Ti, Ti–O and O–O distance (periodic images included) and the share of the
``tio2:train`` cells with a shorter one. The default cells are the shipped
committee's five largest energy errors (docs/studies/tio2-potential.md, "Where the error is").

    python studies/tio2_contacts.py [--cells 560 63 64 65 730]
"""

import argparse

import numpy as np

PAIRS = {"Ti-Ti": (22, 22), "Ti-O": (22, 8), "O-O": (8, 8)}


def shortest_contacts(atoms, cutoff=3.5):
    """The shortest distance (Å) of each species pair of :data:`PAIRS` in ``atoms`` (inf: none within ``cutoff``)."""
    from ml4ms.neighbors import ase_neighbor_pairs

    i, j, D, _ = ase_neighbor_pairs(atoms, cutoff)
    d = np.linalg.norm(D, axis=1)
    z = atoms.numbers
    return {p: d[(z[i] == zi) & (z[j] == zj)].min(initial=np.inf) for p, (zi, zj) in PAIRS.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[560, 63, 64, 65, 730],
                        help="indices into tio2:test")
    args = parser.parse_args(argv)

    from ml4ms.datasets import load

    test = load("tio2", "test").records
    bad = [k for k in args.cells if not 0 <= k < len(test)]
    if bad:
        parser.error(f"--cells {' '.join(map(str, bad))}: tio2:test has cells 0 to {len(test) - 1}")
    train = [shortest_contacts(a) for a in load("tio2", "train").records]
    print("shortest distance (Å) of each pair, and the share of the training cells with a shorter one")
    print(f"{'test cell':>9}  {'formula':8}" + "".join(f"  {p:>6} {'shorter':>7}" for p in PAIRS))
    for k in args.cells:
        s = shortest_contacts(test[k])
        shares = {p: np.mean([t[p] < s[p] for t in train]) for p in PAIRS}
        print(f"{k:9d}  {test[k].get_chemical_formula():8}" + "".join(f"  {s[p]:6.2f} {shares[p]:7.2%}" for p in PAIRS))

if __name__ == "__main__":
    main()
