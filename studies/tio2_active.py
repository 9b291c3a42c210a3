"""Which structures should be labelled next? Novelty against random choice, on the TiO2 training set as a pool.

Pool-based active learning with the bundled data: a model (the committee
recipe's network, ``configs/tio2_committee.toml``, one member, the learning
rate decayed to 1e-5 over ``--epochs``, no second stage) is trained on a
random ``--initial`` of ``tio2:train``; the rest of ``tio2:train`` is the pool
of candidates, whose labels are hidden until chosen. ``--add`` candidates are
then chosen

* ``random``: at random;
* ``novelty``: by ``ml4ms potential select`` (:func:`ml4ms.potentials.novelty.novel_structures`:
  greedy, each choice joining the reference environments);
* ``top``: the ``--add`` most novel, without that update (to see what the
  greedy update adds);
* ``spread``: the ``--add`` of largest energy spread per atom of a committee
  of two (the initial model and a second one, seed + 100, trained on the same
  initial set; query by committee, ``ml4ms potential select --by spread``);

and a new model (same seed, same epochs) is trained on the initial
structures plus the chosen ones. With ``--fine-tune E`` the initial model is
also continued on them for E epochs (``warm_start``, ``ml4ms potential fit
--init``; learning rate from ``--fine-tune-lr`` down to 1e-5), to see whether
a cheap continuation reaches what training anew does. All models are scored on ``tio2:test``:
energy and force RMSE, and the energy RMSE of the 5 % of test cells most
novel to the initial model (38 of 770: the edge of the data) and of the other
95 %. The atoms of the training set and of the added cells are printed too.
Each seed draws its own initial set.

    python studies/tio2_active.py [--initial 1000] [--add 500] [--epochs 400] [--seeds 0 1] [--jobs 2]
                                  [--strategies random novelty top spread] [--fine-tune E [--fine-tune-lr LR]]

Findings: docs/studies/tio2-potential.md, "Choosing the structures to label next".
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the sibling study studies/tio2_family.py (its recipe()), also when imported from elsewhere


def train(frames, seed, epochs, init=None, learning_rate=None):
    """The recipe's network trained on ``frames`` with one thread (continuing the model at ``init``); the model."""
    from tio2_family import recipe

    from ml4ms.batch import single_thread
    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.train import read_config, train_potential

    with single_thread():
        model, kw = read_config(doc=recipe())
        for key in ("members", "jobs", "threads", "epochs", "patience", "lr_decay", "seed", "stage_two_start",
                    "stage_two_energy_weight", "stage_two_force_weight"):
            kw.pop(key, None)
        model.set_params(seed=seed)
        if init:
            model = load_potential(init)
            model = as_committee(model)[0]
            kw.update(warm_start=True, learning_rate=learning_rate)
        model, _ = train_potential(model, frames, epochs=epochs, patience=epochs, seed=seed, progress=False,
                                   source="tio2:train", lr_decay=(1e-5 / kw["learning_rate"]) ** (1.0 / epochs), **kw)
    return model


def scores(model, test, energies, forces, edge):
    """Test energy RMSE (all, the edge cells, the rest; meV/atom) and force RMSE (eV/Å)."""
    import numpy as np

    from ml4ms.potentials.committee import as_committee

    with_threads = as_committee(model).predict(test)
    n = np.array([len(a) for a in test])
    err = 1000 * (with_threads[0] - energies) / n
    rest = np.setdiff1d(np.arange(len(test)), edge)
    force = np.concatenate([(p - f).ravel() for p, f in zip(with_threads[1], forces)])
    return {"energy": float(np.sqrt(np.mean(err ** 2))), "edge": float(np.sqrt(np.mean(err[edge] ** 2))),
            "rest": float(np.sqrt(np.mean(err[rest] ** 2))), "force": float(np.sqrt(np.mean(force ** 2)))}


def initial_run(seed, n_initial, epochs, folder, members=1):
    """Draw the initial set, train ``members`` models on it and save them; returns (initial indices, path, seconds)."""
    import numpy as np

    from ml4ms.datasets import load
    from ml4ms.potentials import save_potential

    t0 = time.time()
    pool = load("tio2", "train").records
    initial = np.sort(np.random.default_rng(seed).choice(len(pool), n_initial, replace=False))
    models = [train([pool[k] for k in initial], seed + 100 * m, epochs) for m in range(members)]
    path = os.path.join(folder, f"initial{seed}")
    save_potential(path, models if members > 1 else models[0])
    return initial, path, time.time() - t0


def choose(strategy, committee, pool, candidates, count, seed):
    """Indices (into ``pool``) of ``count`` candidates chosen by ``strategy`` (novelty: the first member's)."""
    import numpy as np

    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.novelty import novel_structures

    model = committee[0]
    frames = [pool[k] for k in candidates]
    if strategy == "spread":
        picked = np.argsort(-as_committee(committee).energy_spread(frames), kind="stable")[:count]
    elif strategy == "random":
        picked = np.random.default_rng(1000 + seed).choice(len(candidates), count, replace=False)
    elif strategy == "novelty":
        picked = novel_structures(model, frames, count)[0]
    else:
        picked = np.argsort(-model.novelty(frames), kind="stable")[:count]
    assert len(picked) == count, f"{strategy}: {len(picked)} of {count} chosen"
    return candidates[np.asarray(picked)]


def final_run(seed, indices, epochs, init=None, learning_rate=None):
    """Train on ``indices`` of the pool (continuing the model at ``init``); returns (model, seconds)."""
    from ml4ms.datasets import load

    t0 = time.time()
    pool = load("tio2", "train").records
    return train([pool[k] for k in indices], seed, epochs, init, learning_rate), time.time() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--initial", type=int, default=1000, help="random initial training structures")
    parser.add_argument("--add", type=int, default=500, help="candidates chosen from the rest of tio2:train")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--strategies", nargs="+", choices=["random", "novelty", "top", "spread"],
                        default=["random", "novelty"])
    parser.add_argument("--fine-tune", type=int, default=0, metavar="E",
                        help="also continue the initial model on the grown set for E epochs")
    parser.add_argument("--fine-tune-lr", type=float, default=5e-4, metavar="LR")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from joblib import Parallel, delayed

    from ml4ms.datasets import load
    from ml4ms.potentials import load_potential
    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.metrics import labels_of

    torch.set_num_threads(2)
    pool = load("tio2", "train").records
    test = load("tio2", "test").records
    energies, forces = labels_of(test, "tio2:test")
    atoms = np.array([len(a) for a in pool])
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.time()
        members = 2 if "spread" in args.strategies else 1
        first = Parallel(n_jobs=args.jobs)(delayed(initial_run)(s, args.initial, args.epochs, folder, members)
                                           for s in args.seeds)
        print(f"initial models ({members} per seed): {args.initial} structures, {args.epochs} epochs, "
              f"{', '.join(f'{t:.0f}' for _, _, t in first)} s", flush=True)
        rows, runs = [], []
        for seed, (initial, path, _) in zip(args.seeds, first):
            committee = load_potential(path)
            committee = as_committee(committee)
            model = committee[0]
            edge = np.argsort(-model.novelty(test), kind="stable")[:round(0.05 * len(test))]
            rows.append((seed, "initial", len(initial), int(atoms[initial].sum()), 0,
                         scores(model, test, energies, forces, edge)))
            candidates = np.setdiff1d(np.arange(len(pool)), initial)
            for strategy in args.strategies:
                t1 = time.time()
                chosen = choose(strategy, committee, pool, candidates, args.add, seed)
                runs.append((seed, strategy, np.concatenate([initial, chosen]), edge, time.time() - t1, None))
                if args.fine_tune:
                    runs.append((seed, strategy + ", continued", runs[-1][2], edge, runs[-1][4], path))
        trained = Parallel(n_jobs=args.jobs)(
            delayed(final_run)(seed, idx, args.fine_tune if init else args.epochs, init, args.fine_tune_lr)
            for seed, _, idx, _, _, init in runs)
        for (seed, strategy, idx, edge, t_choice, _), (model, t_train) in zip(runs, trained):
            rows.append((seed, f"+ {args.add} {strategy}", len(idx), int(atoms[idx].sum()),
                         int(atoms[idx[-args.add:]].sum()), scores(model, test, energies, forces, edge)))
            print(f"seed {seed} {strategy}: chosen in {t_choice:.0f} s, trained in {t_train:.0f} s", flush=True)
    print(f"\ntio2:test (770 cells); 'edge': the 5 % most novel to the initial model; {time.time() - t0:.0f} s in all")
    print(f"{'seed':>4s} {'training set':22s} {'cells':>6s} {'atoms':>7s} {'added':>7s} {'energy':>8s} {'edge':>8s} "
          f"{'rest':>8s} {'force':>8s}   (atoms in all and in the added cells; meV/atom, eV/Å)")
    for seed, name, n, n_atoms, added, s in rows:
        print(f"{seed:4d} {name:22s} {n:6d} {n_atoms:7d} {added:7d} {s['energy']:8.3f} {s['edge']:8.3f} "
              f"{s['rest']:8.3f} {s['force']:8.4f}")
    names = sorted({r[1] for r in rows}, key=[r[1] for r in rows].index)
    print("mean ± std over the seeds:")
    for name in names:
        part = np.array([[r[5][k] for k in ("energy", "edge", "rest", "force")] for r in rows if r[1] == name])
        print(f"     {name:22s} " + " ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(part.mean(0), part.std(0))))


if __name__ == "__main__":
    main()
