"""Quick comparison of TiO2 potential variants: energy+force training on a subset, scored on tio2:test.

A full run of the recipe takes an hour; this trains each variant of
``configs/tio2_committee.toml``'s model on the same random subset of
``tio2:train`` (``--n`` structures) for a fixed number of epochs, with the
learning rate decayed to 1e-5 by the end, and scores it on all 770 test
structures. Every variant runs with each of the ``--seeds`` (weights,
validation split, shuffles; the subset is the same for all); the table gives
mean ± std over seeds and the ratio to the first variant. With fewer
structures the errors are far above the full recipe's; the comparison is
what counts, and a variant that wins here still has to win a full run.

Variants (``--variants``):

- ``base``: the recipe's model without its linear term (Chebyshev radial Rc 6 / order 16, angular Rc 4 / order 8,
  cell average, 2×64 tanh), i.e. the recipe before it had the linear term;
- ``linear``: plus a term linear in the network inputs (``NeuralPotential(linear=True)``; the recipe with 2×64
  networks);
- ``wide``: ``base`` with 2×128 networks;
- ``wide_linear`` (the recipe's network), ``deep_linear``, ``wider_linear``, ``deep_wide_linear``:
  ``linear`` with 2×128, 3×64, 2×256 or 3×128 networks.
- ``rc8_linear``: ``wide_linear`` with the radial cutoff at 8 Å instead of 6 (ænet's set001 range; the angular
  cutoff stays 4 Å, so the feature count stays 52).
- ``rc8_order21_linear``: ``rc8_linear`` with radial order 21, for about the short-range resolution of order 16
  over 6 Å (62 features).
- ``ema``, ``stage_two``, ``ema_stage_two``: ``wide_linear`` trained with a moving average of the weights
  (``ema_decay = 0.999``), with the force weight lowered to 0.02 for the last 15 % of the epochs
  (``stage_two_start = 0.85``), or both.
The variants that needed options since removed from the package (radially resolved and species-pair angular
terms, a second radial expansion, SiLU, a steeper energy loss, learned cell-wide inputs) are gone from this
script, and so is ``species_mean`` (one cell average per element), a subclass of the potential from before it
became a torch module; their results stay in docs/studies/tio2-potential.md ("Options removed", "Cell-wide
inputs").

Every variant sets its own network size and training options, so it does not change when the recipe's does.

``--n 6937`` trains on all of ``tio2:train``.

    python studies/tio2_variants.py [--n 1200] [--epochs 300] [--seeds 0 1] [--jobs 2] [--variants base linear]

Findings: docs/studies/tio2-potential.md, "Protocols" (the screen) and the sections on each variant.
"""

import argparse
import os
import time

VARIANTS = {
    "base": ({}, {"hidden": [64, 64], "linear": False}),
    "linear": ({}, {"hidden": [64, 64], "linear": True}),
    "wide": ({}, {"hidden": [128, 128], "linear": False}),
    "wide_linear": ({}, {"hidden": [128, 128], "linear": True}),
    "rc8_linear": ({"radial_cutoff": 8.0}, {"hidden": [128, 128], "linear": True}),  # ænet set001's radial range
    "rc8_order21_linear": ({"radial_cutoff": 8.0, "radial_order": 21}, {"hidden": [128, 128], "linear": True}),
    "deep_linear": ({}, {"hidden": [64, 64, 64], "linear": True}),
    "wider_linear": ({}, {"hidden": [256, 256], "linear": True}),
    "deep_wide_linear": ({}, {"hidden": [128, 128, 128], "linear": True}),
    # training variants of wide_linear: a moving average of the weights, a second loss stage
    "ema": ({}, {"hidden": [128, 128], "linear": True}, {"ema_decay": 0.999}),
    "stage_two": ({}, {"hidden": [128, 128], "linear": True},
                  {"stage_two_start": 0.85, "stage_two_force_weight": 0.02}),
    "ema_stage_two": ({}, {"hidden": [128, 128], "linear": True},
                      {"ema_decay": 0.999, "stage_two_start": 0.85, "stage_two_force_weight": 0.02}),
}


def run_variant(name, seed, n, epochs):
    """Train one variant with one seed on the subset; test errors and seconds."""
    import numpy as np

    from ml4ms.batch import single_thread
    from ml4ms.datasets import load
    from ml4ms.potentials.metrics import evaluate_errors, labels_of
    from ml4ms.potentials.train import read_config, train_potential

    t0 = time.time()
    with single_thread():
        model, kw = read_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                                             "tio2_committee.toml"))
        descriptor, extra, training = (VARIANTS[name] + ({},))[:3]
        model.set_params(seed=seed, descriptor_params=dict(model.descriptor_params, **descriptor), **extra)
        for key in ("members", "jobs", "threads", "epochs", "patience", "lr_decay", "seed", "ema_decay",
                    "stage_two_start", "stage_two_energy_weight", "stage_two_force_weight"):
            kw.pop(key, None)
        kw.update(training)
        train = load("tio2", "train").records
        subset = [train[k] for k in np.sort(np.random.default_rng(0).choice(len(train), n, replace=False))]
        model, _ = train_potential(model, subset, epochs=epochs, patience=epochs, seed=seed, progress=False,
                                   lr_decay=(1e-5 / kw["learning_rate"]) ** (1.0 / epochs), source="tio2:train",
                                   **kw)
        test = load("tio2", "test").records
        errors = evaluate_errors(model, test, *labels_of(test, "tio2:test"))
    return {"energy_rmse_mev_per_atom": errors["energy_rmse_mev_per_atom"],
            "force_rmse_ev_per_ang": errors["force_rmse_ev_per_ang"], "seconds": time.time() - t0}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["base", "linear", "wide_linear"], choices=list(VARIANTS))
    parser.add_argument("--n", type=int, default=1200, help="training structures (random subset of tio2:train)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    from joblib import Parallel, delayed

    from ml4ms.outputs import write_json

    runs = [(v, s) for v in args.variants for s in args.seeds]
    out = Parallel(n_jobs=args.jobs)(delayed(run_variant)(v, s, args.n, args.epochs) for v, s in runs)
    results = {}
    for (v, s), r in zip(runs, out):
        results.setdefault(v, {})[str(s)] = r
    print(f"{args.n} training structures, {args.epochs} epochs, seeds {args.seeds}; test set: 770 structures")
    print(f"{'variant':10s} {'energy RMSE (meV/atom)':>24s} {'ratio':>6s} {'force RMSE (eV/Å)':>20s} {'ratio':>6s} "
          f"{'s/run':>6s}")
    first = None
    for v, per_seed in results.items():
        e = np.array([r["energy_rmse_mev_per_atom"] for r in per_seed.values()])
        f = np.array([r["force_rmse_ev_per_ang"] for r in per_seed.values()])
        t = np.mean([r["seconds"] for r in per_seed.values()])
        first = first or (e.mean(), f.mean())
        print(f"{v:10s} {e.mean():15.2f} ± {e.std():5.2f} {e.mean() / first[0]:6.2f} {f.mean():12.3f} ± {f.std():.3f} "
              f"{f.mean() / first[1]:6.2f} {t:6.0f}")
    if args.json:
        write_json(args.json, {"n": args.n, "epochs": args.epochs, "seeds": args.seeds, "results": results})


if __name__ == "__main__":
    main()
