"""Is the shipped TiO2 committee's worst error a property of the data or of the shared model? One family alone.

The shipped committee's largest test errors are a few O14Ti8 cells of one fixed
cell (5.934 × 9.297 × 4.649 Å; test cells 63–65), on which all three members
are off in the same direction. This trains the recipe's model
(``configs/tio2_committee.toml``: descriptor, network, loss weights, moving
average; the learning rate decayed to 1e-5 over ``--epochs``, no second stage)
on that family's training cells only, and scores it on the family's test
cells, next to the shipped committee and its members on the same cells. If
models that see only the family predict its test cells without the members'
shared offset, the offset comes from fitting the family together with the
rest of the data, not from the family's labels. ``--train formula`` trains on
every O14Ti8 training cell instead (all cell shapes, compressed cells
included), to see whether the other cells of the same composition bring the
offset back; ``--max-force F`` leaves out the training cells with a force
component above F eV/Å (the compressed cells). (The volume per atom as one
more input, a scratch subclass of the potential from before it became a
torch module, is gone; its result stays in the study.) ``--set
section.key=value`` (repeatable) changes one setting of the recipe
(``model.cell_mean=false``, ``descriptor.angular_cutoff=5.0``,
``training.force_weight=1.0``; the value is read as TOML).

``--edge`` trains nothing: it prints the committee's energy error on the
family's training and test cells, and for the family's highest test cells
their energy above the family's lowest cell and their nearest training cells
(RMS displacement per atom, minimum image; the family's cells share one atom
order), to see whether the worst cells lie where the training data are sparse.

    python studies/tio2_family.py [--epochs 1000] [--seeds 0 1 2] [--jobs 2] [--model models/tio2]
                                  [--train family|formula] [--max-force F]
                                  [--set SECTION.KEY=VALUE ...] [--edge]

Findings: docs/studies/tio2-potential.md, "Where the error is" and "Protocols" (the O14Ti8 protocol).
"""

import argparse
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CELL = (5.934, 9.297, 4.649)  # Å, the cell lengths of the family
FORMULA = "O14Ti8"


def family(records, any_cell=False):
    """Indices of the family's cells among ``records`` (``any_cell``: every cell of the formula)."""
    import numpy as np

    return [k for k, a in enumerate(records) if a.get_chemical_formula() == FORMULA
            and (any_cell or np.allclose(a.cell.lengths(), CELL, atol=0.01))]


def errors_per_cell(model, frames):
    """Energy errors (meV/atom) of ``model`` (one potential or a list: their mean) on ``frames``."""
    import numpy as np

    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.metrics import labels_of

    energies, _ = labels_of(frames, "tio2:test")
    predicted = as_committee(model).predict(frames, forces=False)
    return 1000 * (predicted - energies) / np.array([len(a) for a in frames])


def edge(committee, train, test, top=6, nearest=3):
    """Print where the family's highest test cells lie among its training cells (``--edge``)."""
    import numpy as np

    from ml4ms.potentials.checks import _min_image
    from ml4ms.potentials.metrics import labels_of

    it, ie = family(train), family(test)
    cells_train, cells_test = [train[k] for k in it], [test[k] for k in ie]
    e_train, e_test = (labels_of(c, "tio2")[0] / np.array([len(a) for a in c]) for c in (cells_train, cells_test))
    lowest = min(e_train.min(), e_test.min())
    err_train, err_test = errors_per_cell(committee, cells_train), errors_per_cell(committee, cells_test)
    print(f"{FORMULA} cells {' × '.join(map(str, CELL))} Å, committee energy RMSE: training cells "
          f"{np.sqrt(np.mean(err_train ** 2)):.2f}, test cells {np.sqrt(np.mean(err_test ** 2)):.2f} meV/atom; "
          f"training cells up to {1000 * (e_train.max() - lowest):.0f} meV/atom above the family's lowest")
    print(f"{'test cell':>9s} {'E - lowest':>11s} {'error':>7s}   nearest training cells (RMS Å, E - lowest, error)")
    for q in np.argsort(e_test)[-top:]:
        a = cells_test[q]
        rms = np.array([np.sqrt((_min_image(b.positions - a.positions, a) ** 2).sum(1).mean()) for b in cells_train])
        near = "  ".join(f"{it[k]} ({rms[k]:.3f}, {1000 * (e_train[k] - lowest):.0f}, {err_train[k]:+.1f})"
                         for k in np.argsort(rms)[:nearest])
        print(f"{ie[q]:9d} {1000 * (e_test[q] - lowest):11.0f} {err_test[q]:+7.1f}   {near}")


def training_cells(train, any_cell=False, max_force=None):
    """The training cells of the family (or formula), without those with a force component above ``max_force``."""
    import numpy as np

    cells = [train[k] for k in family(train, any_cell)]
    return [a for a in cells if max_force is None or np.abs(a.get_forces()).max() <= max_force]


def recipe(changes=()):
    """The committee recipe as a TOML document, with ``section.key=value`` changes (values read as TOML)."""
    from ml4ms.config import assign, parse_assignment, read_toml

    doc, _ = read_toml("tio2_committee")
    for change in changes:
        doc = assign(doc, *parse_assignment(change))
    return doc


def run_seed(seed, epochs, any_cell=False, max_force=None, changes=()):
    """Train on the family's (or the formula's) training cells with one seed; per-cell family test errors, seconds."""
    import numpy as np

    from ml4ms.datasets import load
    from ml4ms.batch import single_thread
    from ml4ms.potentials.train import read_config, train_potential

    t0 = time.time()
    with single_thread():
        model, kw = read_config(doc=recipe(changes))
        for key in ("members", "jobs", "threads", "epochs", "patience", "lr_decay", "seed", "stage_two_start",
                    "stage_two_energy_weight", "stage_two_force_weight", "max_energy_per_atom", "atomic_energies"):
            kw.pop(key, None)
        model.set_params(seed=seed)
        train = load("tio2", "train").records
        test = load("tio2", "test").records
        model, _ = train_potential(model, training_cells(train, any_cell, max_force), epochs=epochs, patience=epochs,
                                   seed=seed, progress=False, source="tio2:train",
                                   lr_decay=(1e-5 / kw["learning_rate"]) ** (1.0 / epochs), **kw)
        err = errors_per_cell(model, [test[k] for k in family(test)])
    return np.asarray(err), time.time() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--model", default=os.path.join(HERE, "..", "models", "tio2"),
                        help="the committee to compare with")
    parser.add_argument("--train", choices=["family", "formula"], default="family",
                        help="train on the family's cells, or on every O14Ti8 training cell")
    parser.add_argument("--max-force", type=float, help="leave out training cells with a larger force (eV/Å)")
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting of the recipe, e.g. training.force_weight=1.0 (repeatable)")
    parser.add_argument("--edge", action="store_true",
                        help="train nothing: where the family's highest test cells lie among its training cells")
    args = parser.parse_args(argv)

    import numpy as np
    from joblib import Parallel, delayed

    from ml4ms.datasets import load
    from ml4ms.potentials import load_potential

    test = load("tio2", "test").records
    if args.edge:
        return edge(load_potential(args.model), load("tio2", "train").records, test)
    idx = family(test)
    cells = [test[k] for k in idx]
    shown = [k for k in (63, 64, 65) if k in idx]
    where = [idx.index(k) for k in shown]
    committee = load_potential(args.model)
    rows = [("committee " + os.path.basename(os.path.normpath(args.model)), errors_per_cell(committee, cells), None)]
    rows += [(f"  member {k}", errors_per_cell(m, cells), None) for k, m in enumerate(committee)]
    any_cell = args.train == "formula"
    out = Parallel(n_jobs=args.jobs)(delayed(run_seed)(s, args.epochs, any_cell, args.max_force, args.changes)
                                      for s in args.seeds)
    label = (f"{FORMULA} only" if any_cell else "family only") + "".join(f" + {c}" for c in args.changes)
    rows += [(f"{label}, seed {s}", e, t) for s, (e, t) in zip(args.seeds, out)]
    rows.append((f"{label}, mean of {len(out)}", np.mean([e for e, _ in out], axis=0), None))
    train = load("tio2", "train").records
    print(f"{FORMULA} cells {' × '.join(map(str, CELL))} Å: {len(family(train))} training, {len(idx)} test; "
          f"{label} models ({len(training_cells(train, any_cell, args.max_force))} training cells"
          f"{'' if args.max_force is None else f', forces <= {args.max_force:g} eV/Å'}): {args.epochs} epochs")
    print(f"{'model':36s} {'test RMSE':>10s}   " + "  ".join(f"cell {k:>3d}" for k in shown) + "   (meV/atom)")
    for name, e, t in rows:
        print(f"{name:36s} {np.sqrt(np.mean(e ** 2)):10.2f}   " + "  ".join(f"{e[w]:+8.1f}" for w in where)
              + (f"   {t:.0f} s" if t else ""))


if __name__ == "__main__":
    main()
