"""Is the TiO2 energy error a locality limit? Energy-only potentials with longer cutoffs or a cell-average input.

Trains, for a fixed number of epochs on energies only (fast, on precomputed
features), per-element networks on

- ``local``: the recipe's Chebyshev descriptor (radial Rc 6 / order 16, angular Rc 4 / order 8);
- ``local-8A``: a longer reach (radial Rc 8 / order 20, angular Rc 5 / order 8);
- ``cell-mean``: the recipe's descriptor plus its cell average (``NeuralPotential(cell_mean=True)``);

and prints the test energy RMSE over all cells and per chemical formula of
the cell. If the O-deficient cells' errors fall with the cell average but not
with the longer cutoff, what the local model misses is cell-wide, not a few
Å further out. Energies only, so absolute errors are far above those of the
force-trained recipe; the comparison is what counts.

    python studies/tio2_locality.py [--epochs 150] [--variants local local-8A cell-mean] [--json OUT]

Findings: docs/studies/tio2-potential.md, "Cell-wide inputs".
"""

import argparse
import time

VARIANTS = {
    "local": ({"radial_cutoff": 6.0, "radial_order": 16, "angular_cutoff": 4.0, "angular_order": 8}, False),
    "local-8A": ({"radial_cutoff": 8.0, "radial_order": 20, "angular_cutoff": 5.0, "angular_order": 8}, False),
    "cell-mean": ({"radial_cutoff": 6.0, "radial_order": 16, "angular_cutoff": 4.0, "angular_order": 8}, True),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import numpy as np

    from ml4ms.datasets import TIO2_ATOMIC_ENERGIES, load
    from ml4ms.outputs import write_json
    from ml4ms.potentials import NeuralPotential
    from ml4ms.potentials.metrics import errors_by_formula, evaluate_errors, labels_of
    from ml4ms.potentials.train import train_potential

    train, test = load("tio2", "train").records, load("tio2", "test").records
    e_train, f_train = labels_of(train, "tio2:train")
    e_test, f_test = labels_of(test, "tio2:test")
    results = {}
    for name in args.variants:
        params, cell_mean = VARIANTS[name]
        t0 = time.time()
        model = NeuralPotential(descriptor_params=params, hidden=(64, 64), cell_mean=cell_mean, seed=args.seed)
        decay = (1e-5 / 2e-3) ** (1.0 / args.epochs)
        model, _ = train_potential(model, train, e_train, f_train, epochs=args.epochs, batch_size=32,
                                   learning_rate=2e-3, lr_decay=decay, min_learning_rate=1e-5, force_weight=0.0,
                                   valid_fraction=0.1, patience=args.epochs, seed=args.seed,
                                   max_energy_per_atom=1.0, atomic_energies=TIO2_ATOMIC_ENERGIES,
                                   precompute=True, threads=args.threads, progress=False, source="tio2:train")
        pred = model.predict(test)
        total = evaluate_errors(None, test, e_test, f_test, predictions=pred)
        groups = errors_by_formula(test, e_test, f_test, pred)
        results[name] = {"energy_rmse_mev_per_atom": total["energy_rmse_mev_per_atom"],
                         "energy_mae_mev_per_atom": total["energy_mae_mev_per_atom"],
                         "by_formula": {k: v["energy_rmse_mev_per_atom"] for k, v in groups.items()},
                         "seconds": time.time() - t0}
        print(f"{name:10s} test energy RMSE {total['energy_rmse_mev_per_atom']:6.2f} meV/atom "
              f"(MAE {total['energy_mae_mev_per_atom']:.2f}), {time.time() - t0:.0f} s", flush=True)
    names = sorted({k for r in results.values() for k in r["by_formula"]})
    print("\ntest energy RMSE (meV/atom) per formula")
    print(f"{'formula':10s} " + " ".join(f"{n:>10s}" for n in results))
    for f in names:
        print(f"{f:10s} " + " ".join(f"{r['by_formula'].get(f, np.nan):10.2f}" for r in results.values()))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
