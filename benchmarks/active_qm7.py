"""Pool-based active learning on QM7 (issue 30): labels needed against random sampling, with the sparse-SOAP GP.

The 7101 bundled molecules are shuffled with a fixed seed (``--data-seed``, as
in ``benchmarks/qm7.py``) and the first ``--pool`` + ``--test`` of them make the
pool file; the replay oracle reads their PBE0 atomization energies. Each run
goes through :func:`ml4ms.active.run_loop` with a config built here: the loop
holds out ``--test`` molecules of the pool at random (its seed; the same for
every strategy of a seed), labels ``--start`` random ones, then adds
``--batch`` per round up to ``--budget``, refitting the model and scoring it on
the held-out molecules every round.

* The model is the ``local`` recipe of ``configs/qm7.toml`` (projected-process
  features of the sum-of-local-environments SOAP kernel + Bayesian ridge, the
  sparse GP), with ``--n-active`` active environments (4000 in the recipe).
  The loop fits the descriptor on the whole pool file once, without labels
  (active environments by FPS over all its environments); ``benchmarks/qm7.py``
  chooses them from each training set instead.
* Strategies: ``uncertainty`` (the GP's predictive std; FPS diversity over the
  4 × batch most uncertain), ``fps`` (farthest-point sampling in the same
  feature space, going on from the labelled set; no model), ``random``.
  All start from the same random labels. The features are computed once and
  shared by every run (``run_loop(featurized=...)``).

Printed: the test MAE (kcal/mol) against the number of labels, mean ± std over
seeds; the number of labels each strategy needs to reach random sampling's MAE
at the largest size (interpolated on the log-log curve of the seed mean), as a
fraction of that size (goal of the issue: <= 50 %); run times. Writes
``learning_curves.png`` and ``results.json``; the last line is ``SUMMARY {json}``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/active_qm7.py [--pool 6101] [--test 1000] [--start 250] [--batch 250]
        [--budget 4000] [--n-active 4000] [--seeds 0 1 2] [--strategies uncertainty fps random] [-o DIR]

A rerun with the same output folder continues unfinished runs (the label
databases are under ``DIR/dbs``) and reuses the features (``DIR/features_nactive*.pkl``).

Cost on the 2-core machine shared with other jobs (load 3-5): the features of
the 7101 molecules take 2-7 min (mostly SOAP; 5000 molecules with 4000 active
environments took 403 s at load 5). With ``--n-active 2000 --start 500 --batch
500`` a run of 9 rounds to 4000 labels takes 1.2-1.9 min, 12 min for two seeds
and three strategies (peak 2.2 GB). The recipe's 4000 active environments cost
about 4 times as much per round (one fit at 2000 labels 55 s against about 11 s
for a whole round with 2000), and batches of 250 twice the rounds: about 2 h
for three seeds and three strategies.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "atomization_energy_pbe0_eV"
KCAL = 0.0433641039  # eV per kcal/mol
STRATEGIES = ("uncertainty", "fps", "random")


def write_pool(folder, n_pool, n_test, data_seed):
    """The labelled pool file: the first ``n_pool + n_test`` molecules of the shuffled QM7 set."""
    import ase.io

    from ml4ms.datasets import load

    path = os.path.join(folder, f"qm7_pool{n_pool}_test{n_test}_seed{data_seed}.extxyz")
    if not os.path.exists(path):
        records = load("qm7").records
        if n_pool + n_test > len(records):
            raise SystemExit(f"--pool {n_pool} + --test {n_test} exceeds the {len(records)} molecules")
        order = np.random.default_rng(data_seed).permutation(len(records))[:n_pool + n_test]
        ase.io.write(path + ".part", [records[i] for i in order], format="extxyz")
        os.replace(path + ".part", path)
    return path


def config(pool, strategy, seed, args):
    """The active-learning config of one run (the TOML tables as a dict, checked by ``parse_config``)."""
    from ml4ms.active.config import parse_config
    from ml4ms.recipe import read_recipe

    recipe = read_recipe(os.path.join(ROOT, "configs", "qm7.toml"))
    descriptor = dict(recipe.descriptor, n_active=args.n_active)
    doc = {
        "description": f"QM7 active-learning benchmark: {strategy}, seed {seed}",
        "oracle": {"replay": True, "target": TARGET},
        "pool": {"file": pool},
        "start": {"n": args.start, "method": "random"},
        "recipe": {"descriptor": descriptor, "model": recipe.model, "target": {"per_atom": False}},
        "strategy": {"name": strategy, "batch": args.batch},
        "loop": {"budget": args.budget, "seed": seed},
        "evaluation": {"test": args.test},
    }
    return parse_config(doc)


def shared_features(pool, args, out):
    """``(descriptor, features)`` of the pool for every run: computed once, kept in ``out/features_nactive*.pkl``."""
    import pickle

    from ml4ms.active.loop import ActiveLoop

    path = os.path.join(out, f"features_nactive{args.n_active}.pkl")
    if os.path.exists(path):
        with open(path, "rb") as handle:
            return pickle.load(handle), 0.0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # the loop of any strategy on this pool: its store stays empty
        loop = ActiveLoop(config(pool, "random", args.seeds[0], args), os.path.join(tmp, "probe.db"),
                          progress=False, echo=None)
        featurized = loop.featurized()
    seconds = time.perf_counter() - t0
    with open(path + ".part", "wb") as handle:
        pickle.dump(featurized, handle)
    os.replace(path + ".part", path)
    return featurized, seconds


def run(args):
    from ml4ms.active import run_loop
    from ml4ms.active.report import learning_curves, summarize
    from ml4ms.active.store import LabelStore

    pool = write_pool(args.out, args.pool, args.test, args.data_seed)
    featurized, feature_s = shared_features(pool, args, args.out)
    print(f"# features {np.shape(featurized[1])} of the pool file in {feature_s:.0f} s "
          "(0: read from an earlier run)", flush=True)
    os.makedirs(os.path.join(args.out, "dbs"), exist_ok=True)
    curves, seconds = {}, {}
    for seed in args.seeds:
        for strategy in args.strategies:
            db = os.path.join(args.out, "dbs", f"{strategy}_seed{seed}.db")
            t0 = time.perf_counter()
            run_loop(config(pool, strategy, seed, args), db, progress=False, echo=None, featurized=featurized)
            seconds.setdefault(strategy, []).append(time.perf_counter() - t0)
            store = LabelStore(db)
            curve = learning_curves(store)["curves"]["active"]
            rounds = summarize(store)["rounds"]
            curves.setdefault(strategy, []).append({"n": curve["train_size"],
                                                   "mae": [m / KCAL for m in curve["mae"]]})
            print(f"{strategy:>12} seed {seed}: MAE (kcal/mol) " + " ".join(
                f"{n}:{m:.2f}" for n, m in zip(curves[strategy][-1]["n"], curves[strategy][-1]["mae"]))
                + f" ({seconds[strategy][-1]:.0f} s, {rounds} rounds)", flush=True)
    return curves, seconds, feature_s


def labels_to_reach(n, mae, target):
    """Labels at which the curve ``(n, mae)`` first reaches ``target``, interpolated linearly in log-log; None if
    it never does.

    Examples
    --------
    >>> round(labels_to_reach([100, 400], [4.0, 1.0], 2.0))
    200
    """
    n, mae = np.asarray(n, dtype=float), np.asarray(mae, dtype=float)
    if mae[0] <= target:
        return float(n[0])
    for i in range(1, len(n)):
        if mae[i] <= target:
            t = (np.log(target) - np.log(mae[i - 1])) / (np.log(mae[i]) - np.log(mae[i - 1]))
            return float(np.exp(np.log(n[i - 1]) + t * (np.log(n[i]) - np.log(n[i - 1]))))
    return None


def aggregate(curves):
    out = {}
    for strategy, runs in curves.items():
        n = runs[0]["n"]
        if any(r["n"] != n for r in runs):
            raise SystemExit(f"{strategy}: the seeds' rounds differ in size")
        mae = np.array([r["mae"] for r in runs])
        out[strategy] = {"n_labels": n, "mae_mean": mae.mean(axis=0).tolist(),
                         "mae_std": (mae.std(axis=0, ddof=1) if len(runs) > 1 else 0 * mae[0]).tolist(),
                         "mae_per_seed": mae.tolist()}
    return out


def plot(results, path, title):
    from ml4ms.plots import axis_label, pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    names = {"uncertainty": "uncertainty (sparse GP std, FPS diversity)", "fps": "FPS in feature space (no model)",
             "random": "random sampling"}
    for (strategy, r), colour in zip(results.items(), ("C0", "C2", "C1")):
        n, mean, std = np.array(r["n_labels"]), np.array(r["mae_mean"]), np.array(r["mae_std"])
        ax.errorbar(n, mean, yerr=std, fmt="o-", ms=3, capsize=2, color=colour, label=names.get(strategy, strategy))
    if "random" in results:
        ax.axhline(results["random"]["mae_mean"][-1], color="C1", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("labelled molecules")
    ax.set_ylabel(axis_label("test MAE", "kcal/mol"))
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=6101, help="candidate molecules (besides the held-out test)")
    ap.add_argument("--test", type=int, default=1000, help="molecules held out by the loop for the test MAE")
    ap.add_argument("--start", type=int, default=250)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--budget", type=int, default=4000)
    ap.add_argument("--n-active", type=int, default=4000, help="active environments of the sparse GP")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--data-seed", type=int, default=0, help="the shuffle of QM7 that picks the pool file")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("-o", "--out", default=os.path.join(ROOT, "runs", "active_qm7"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    curves, seconds, feature_s = run(args)
    results = aggregate(curves)
    names = list(results)
    n = results[names[0]]["n_labels"]
    print(f"\ntest MAE (kcal/mol) on {args.test} held-out molecules, mean ± std over seeds {args.seeds}:")
    print(f"{'labels':>7} " + " ".join(f"{s:>14}" for s in names)
          + ("  uncertainty / random" if {"uncertainty", "random"} <= set(names) else ""))
    for i, size in enumerate(n):
        cells = [f"{results[s]['mae_mean'][i]:.3f} ± {results[s]['mae_std'][i]:.3f}" for s in names]
        ratio = (f"  {results['uncertainty']['mae_mean'][i] / results['random']['mae_mean'][i]:.3f}"
                 if {"uncertainty", "random"} <= set(names) else "")
        print(f"{size:>7} " + " ".join(f"{c:>14}" for c in cells) + ratio)
    reach = {}
    if "random" in results:
        target = results["random"]["mae_mean"][-1]
        largest = results["random"]["n_labels"][-1]
        for s in names:
            needed = labels_to_reach(results[s]["n_labels"], results[s]["mae_mean"], target)
            reach[s] = None if needed is None else round(needed)
            print(f"{s}: reaches random's MAE at {largest} labels ({target:.3f} kcal/mol) with "
                  + (f"{needed:.0f} labels = {needed / largest:.0%} of them" if needed is not None
                     else f"more than {results[s]['n_labels'][-1]} labels (not reached)"))
        if "uncertainty" in reach:
            ok = reach["uncertainty"] is not None and reach["uncertainty"] <= 0.5 * largest
            print(f"goal (uncertainty needs <= 50 % of {largest}): " + ("met" if ok else "NOT met"))
    total = time.perf_counter() - t0
    print("run time of this call (a finished run is read back in seconds): features " + f"{feature_s:.0f} s, "
          + ", ".join(f"{s} {np.sum(v):.0f} s" for s, v in seconds.items()) + f", total {total:.0f} s")
    png = os.path.join(args.out, "learning_curves.png")
    plot(results, png, f"QM7, pool of {args.pool} (+{args.test} test), sparse SOAP GP ({args.n_active} active "
                       f"environments), seeds {args.seeds}")
    summary = {
        "pool": args.pool, "test": args.test, "start": args.start, "batch": args.batch, "budget": args.budget,
        "n_active": args.n_active, "seeds": args.seeds,
        "mae_kcalmol": {s: {str(k): round(m, 3) for k, m in zip(r["n_labels"], r["mae_mean"])}
                        for s, r in results.items()},
        "labels_to_reach_random_at_budget": reach,
        "fraction_of_budget": {s: (None if v is None else round(v / n[-1], 3)) for s, v in reach.items()},
        "seconds": {"features": round(feature_s, 1), **{s: round(float(np.sum(v)), 1) for s, v in seconds.items()},
                    "total": round(total, 1)},
    }
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"args": vars(args), "results": results, "summary": summary}, handle, indent=1)
    print(f"wrote {png}")
    print("SUMMARY " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "src"))
    sys.exit(main())
