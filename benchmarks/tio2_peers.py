"""Peers side by side on TiO2: MACE, the descriptor network and the message-passing potential, same data and budget.

    python benchmarks/tio2_peers.py [--minutes 15] [--threads 2] [--only mace,dn,mp] [--workdir runs/tio2_peers]
        [--seed 0] [--n-train N] [--n-test N] [--md-steps 200] [--peers-python PYTHON]

On the workshop set003 split of the ænet TiO2 set (``tio2:train``, ``tio2:test``), one after the other, each with
the same ``--minutes`` of training and ``--threads`` torch threads, in a fresh process of its own:

- ``mace``: MACE 0.3.16 (a small model: 32x0e + 32x1o, L = 1, correlation 3, two interactions, r_max 5.0 Å, batch
  10, float32; ScaleShiftMACE with the free-atom E0s of the recipes; an exponential moving average of the weights;
  ``benchmarks/tio2_peers_mace.py`` lists the settings), trained by MACE's own training code in the peers' virtual
  environment (``--peers-python``); ml4ms never imports MACE;
- ``dn``: the descriptor network of ``configs/tio2_potential.toml``;
- ``mp``: the message-passing potential of ``configs/tio2_mpnn.toml``.

All three train on the same cells: the training split that the recipes draw from ``tio2:train`` (``valid_fraction``
0.05 with ``--seed``, duplicates on one side; the rest is the validation set), written for MACE to extended XYZ with
the labels under ``REF_energy`` and ``REF_forces``. The budget counts each tool's training loop, which starts after
its preparation (ml4ms: the split, the neighbour lists and the descriptor Jacobians; MACE: reading the files, the
neighbour lists and the statistics) and is cut mid-epoch at the deadline (MACE through
``tio2_peers_mace.Deadline``); the table reports the loop's actual seconds and the whole fit's.

Each model then predicts the test cells (MACE through its ASE calculator) into a file of predictions that this
script scores with one function for all three (:func:`ml4ms.potentials.metrics.evaluate_errors`: energy RMSE/MAE
in meV/atom, force-component RMSE/MAE in eV/Å), and runs ``--md-steps`` NVE steps (1 fs, 300 K, seeded) of the same
96-atom cell (``tio2:test`` cell 0 repeated 2×2×1) through :func:`ml4ms.potentials.run_md` with its ASE calculator
(atom-steps per second). Training throughput is training atoms through the optimiser per second of the training
loop (validation included; ml4ms: over its whole epochs). The table gives each ratio against MACE; the last line is
``SUMMARY {json}``.

Every finished model's results are kept in ``--workdir`` (``KIND.json``, written atomically with the settings they
were measured with): a rerun with the same settings reuses them and runs only what is missing; a model whose run
was killed trains again from the start, so that each one has had one uninterrupted budget.

The peers' virtual environment (benchmark-only; the package never needs it), as on the development machine::

    python3 -m venv /work/venvs/peers
    /work/venvs/peers/bin/python -m pip install torch==2.13.0     # first, pinned as the Makefile does: a CPU build
    /work/venvs/peers/bin/python -m pip install -r benchmarks/requirements-peers.txt

(``torch==2.13.0`` is the CPU build where the index offers one; where the default index gives a CUDA build, install
the CPU wheel from PyTorch's own CPU index.) ``--peers-python`` (default: ``$ML4MS_PEERS_PYTHON``, else
``/work/venvs/peers/bin/python``) names its interpreter.

Quick check of the whole path (about 6 minutes): ``--minutes 1 --n-train 300 --n-test 50 --md-steps 20``. Time on a
quiet machine: on cores shared with other jobs two threads wait on each other (MACE's calls on a 24-atom cell took
1.6-5.6 s with two threads against 0.17 s with one, at a load of 10 on 2 cores), so use ``--threads 1`` there and
take no numbers from it.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = {"mace": "MACE", "dn": "descriptor network", "mp": "message passing"}
RECIPES = {"dn": "tio2_potential", "mp": "tio2_mpnn"}
METRICS = ("energy_rmse_mev_per_atom", "energy_mae_mev_per_atom", "force_rmse_ev_per_ang", "force_mae_ev_per_ang")


def save_predictions(path, energies, forces):
    """Write predicted energies (eV, one per cell) and force arrays (eV/Å) to ``path`` (npz), atomically.

    Examples
    --------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "p.npz")
    >>> save_predictions(p, [-1.0, -2.0], [np.zeros((1, 3)), np.ones((2, 3))])
    >>> e, f = load_predictions(p)
    >>> e.tolist(), [x.shape for x in f], float(f[1].sum())
    ([-1.0, -2.0], [(1, 3), (2, 3)], 6.0)
    """
    from ml4ms.outputs import write_bytes

    buf = io.BytesIO()
    np.savez(buf, energies=np.asarray(energies, dtype=float), counts=[len(f) for f in forces],
             forces=np.concatenate([np.asarray(f, dtype=float).reshape(-1, 3) for f in forces]))
    write_bytes(path, buf.getvalue())


def load_predictions(path):
    """``(energies, list of force arrays)`` written by :func:`save_predictions`."""
    with np.load(path) as data:
        return data["energies"], np.split(data["forces"], np.cumsum(data["counts"])[:-1])


def labelled_for_mace(frames, energies, forces):
    """Copies of ``frames`` without calculators, the labels in ``info["REF_energy"]`` and ``arrays["REF_forces"]``.

    MACE reads its labels from the keys it is given; keys of their own keep ASE's calculator fields out of it.

    Examples
    --------
    >>> from ase.build import bulk
    >>> a = bulk("Cu", cubic=True)
    >>> out = labelled_for_mace([a], [-3.5], [np.ones((4, 3))])
    >>> out[0].info["REF_energy"], out[0].arrays["REF_forces"].shape, out[0].calc is None, "REF_energy" in a.info
    (-3.5, (4, 3), True, False)
    """
    out = []
    for atoms, e, f in zip(frames, energies, forces):
        atoms = atoms.copy()
        atoms.calc = None
        atoms.info["REF_energy"] = float(e)
        atoms.arrays["REF_forces"] = np.asarray(f, dtype=float)
        out.append(atoms)
    return out


def common_split(frames, energies, seed, kinds):
    """``(train_idx, val_idx)`` of ``frames``: the training split of the recipes, the same for all of ``kinds``."""
    from ml4ms.potentials.loop import training_split
    from ml4ms.potentials.options import TrainingOptions
    from ml4ms.potentials.train import read_config

    splits = {}
    for kind in [k for k in kinds if k in RECIPES] or ["dn"]:
        _, kw = read_config(RECIPES[kind])
        kw["seed"] = seed
        _, tr, va = training_split(frames, energies, TrainingOptions(**kw), source="tio2:train")
        splits[kind] = (tr, va)
    first = next(iter(splits.values()))
    if any(len(tr) != len(first[0]) or np.any(tr != first[0]) for tr, _ in splits.values()):
        raise SystemExit(f"the recipes {sorted(RECIPES[k] for k in splits)} draw different training splits: give "
                         "them the same valid_fraction and max_energy_per_atom, or compare them one at a time")
    return first


def md_cell(test):
    """The MD cell of every model: ``tio2:test`` cell 0 (24 atoms) repeated 2×2×1 (96 atoms), without labels."""
    cell = test[0].copy() * (2, 2, 1)
    cell.calc = None
    return cell


def train_ours(args):
    """The worker of ``--worker dn|mp``: train ml4ms's recipe, predict the test cells, run MD; write KIND.run.json."""
    import torch

    torch.set_num_threads(args.threads)
    from ml4ms.datasets import load
    from ml4ms.outputs import write_json
    from ml4ms.potentials import NeuralPotentialCalculator, run_md, save_potential
    from ml4ms.potentials.metrics import labels_of
    from ml4ms.potentials.train import read_config, train_potential

    kind = args.worker
    frames = load("tio2", "train").records[: args.n_train]
    test = load("tio2", "test").records[: args.n_test]
    model, kw = read_config(RECIPES[kind])
    model.set_params(seed=args.seed)
    kw.update(seed=args.seed, threads=args.threads, time_limit=60.0 * args.minutes)
    e, f = labels_of(frames, "tio2:train")
    t0 = time.time()
    model, history = train_potential(model, frames, e, f, progress=False, source="tio2:train", **kw)
    fit_seconds = time.time() - t0
    save_potential(os.path.join(args.workdir, kind), model, {"data": "tio2:train", "config": RECIPES[kind]})
    info = model.training_
    train_idx, _ = common_split(frames, e, args.seed, [kind])
    whole = history[:-1] if info["stopped_by"] == "time_limit" else history  # the last epoch may be cut
    atoms = sum(len(frames[k]) for k in train_idx)
    t0 = time.time()
    energies, forces = model.predict(test)
    eval_seconds = time.time() - t0
    save_predictions(os.path.join(args.workdir, f"{kind}_predictions.npz"), energies, forces)
    md = run_md(md_cell(test), NeuralPotentialCalculator(model), steps=args.md_steps, timestep=1.0, seed=args.seed)
    write_json(os.path.join(args.workdir, f"{kind}.run.json"), {
        "training_seconds": info["training_seconds"], "preparation_seconds": info["preparation_seconds"],
        "fit_seconds": fit_seconds, "epochs": info["epochs"], "n_train": info["n_train"], "n_val": info["n_val"],
        "train_atoms_per_second": atoms * len(whole) / sum(h["seconds"] for h in whole) if whole else None,
        "eval_seconds": eval_seconds, "md": md, "threads": args.threads})


def write_mace_inputs(workdir, frames, energies, forces, train_idx, val_idx, test):
    """The extended XYZ files MACE reads: ``train``, ``valid`` (labelled), ``test_cells`` and ``md_cell``."""
    from ml4ms.outputs import write_structures

    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    paths = {name: os.path.join(data, f"{name}.extxyz") for name in ("train", "valid", "test_cells", "md_cell")}
    for name, idx in (("train", train_idx), ("valid", val_idx)):
        write_structures(paths[name], labelled_for_mace([frames[k] for k in idx], energies[idx],
                                                        [forces[k] for k in idx]))
    cells = [a.copy() for a in test]
    for a in cells:
        a.calc = None
    write_structures(paths["test_cells"], cells)
    write_structures(paths["md_cell"], [md_cell(test)])
    return paths


def _call(kind, command, log, threads):
    """Run one worker command, its output appended to ``log``; exit with the log's end if it fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), HERE]),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, "a") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode != 0:
        with open(log) as handle:
            tail = handle.read()[-1500:]
        raise SystemExit(f"{kind} failed (exit {done.returncode}); the end of {log}:\n{tail}")


def run_kind(kind, args, mace_inputs, e0s):
    """Train, predict and run MD for one kind in fresh processes; its run record (a dict)."""
    from ml4ms.serialize import read_json

    log = os.path.join(args.workdir, f"{kind}.log")
    common = ["--threads", str(args.threads), "--seed", str(args.seed)]
    if kind != "mace":
        command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--workdir", args.workdir,
                   "--minutes", str(args.minutes), "--md-steps", str(args.md_steps)] + common
        command += [x for name in ("n_train", "n_test") if getattr(args, name) is not None
                    for x in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]
        _call(kind, command, log, args.threads)
        return read_json(os.path.join(args.workdir, f"{kind}.run.json"))
    import shutil

    work = os.path.join(args.workdir, "mace")
    shutil.rmtree(work, ignore_errors=True)  # a killed run's checkpoints must not be loaded as this run's
    script = os.path.join(HERE, "tio2_peers_mace.py")
    out = os.path.join(args.workdir, "mace.train.json")
    _call(kind, [args.peers_python, script, "train", "--train", mace_inputs["train"], "--valid", mace_inputs["valid"],
                 "--work-dir", work, "--minutes", str(args.minutes), "--e0s", e0s, "--out", out] + common,
          log, args.threads)
    run = read_json(out)
    out = os.path.join(args.workdir, "mace.eval.json")
    _call(kind, [args.peers_python, script, "evaluate", "--model", run["model"], "--test", mace_inputs["test_cells"],
                 "--md-cell", mace_inputs["md_cell"], "--md-steps", str(args.md_steps),
                 "--predictions", os.path.join(args.workdir, "mace_predictions.npz"), "--out", out] + common,
          log, args.threads)
    run.update(read_json(out))
    return run


def _imports_mace(python):
    """Whether the interpreter ``python`` exists and imports mace."""
    try:
        return subprocess.run([python, "-c", "import mace"], capture_output=True).returncode == 0
    except OSError:
        return False


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def report(results, test_size):
    """Print the table and the ratios against MACE; the summary (a dict)."""
    print(f"\n{test_size} test cells; energies in meV/atom, forces in eV/Å; training seconds: the budgeted loop "
          "(the whole fit)")
    print(f"{'model':<19} {'train s':>13} {'epochs':>7} {'atoms/s':>8} {'E RMSE':>7} {'E MAE':>7} {'F RMSE':>7} "
          f"{'F MAE':>7} {'MD atom-steps/s':>16}")
    summary = {}
    for kind, r in results.items():
        speed = r["train_atoms_per_second"]
        print(f"{KINDS[kind]:<19} {r['training_seconds']:>6.0f} ({r['fit_seconds']:>4.0f}) {r['epochs']:>7.4g} "
              f"{speed or float('nan'):>8.0f} " + " ".join(f"{r['errors'][m]:>7.4g}" for m in METRICS)
              + f" {r['md']['atom_steps_per_second']:>16.0f}")
        summary[kind] = {**{m: round(r["errors"][m], 4) for m in METRICS},
                         "training_seconds": round(r["training_seconds"], 1), "fit_seconds": round(r["fit_seconds"], 1),
                         "epochs": round(r["epochs"], 3), "train_atoms_per_second": speed and round(speed, 1),
                         "md_atom_steps_per_second": round(r["md"]["atom_steps_per_second"], 1)}
    if "mace" in results:
        base = summary["mace"]
        pairs = (("energy_rmse_mev_per_atom", "E RMSE"), ("force_rmse_ev_per_ang", "F RMSE"),
                 ("md_atom_steps_per_second", "MD"), ("train_atoms_per_second", "training atoms/s"))
        for kind in (k for k in results if k != "mace"):
            ratios = {key: _ratio(summary[kind][key], base[key]) for key, _ in pairs}
            summary[kind]["vs_mace"] = ratios
            print(f"{KINDS[kind]} / MACE: " + ", ".join(f"{label} {ratios[key]}" for key, label in pairs))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget of each model (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each model (default 2)")
    parser.add_argument("--only", default="mace,dn,mp", help="which of mace, dn, mp to run (default: all three)")
    parser.add_argument("--workdir", default="runs/tio2_peers", help="models, predictions, logs and results")
    parser.add_argument("--seed", type=int, default=0, help="the split, the initial weights, the shuffles, MD")
    parser.add_argument("--n-train", type=int, help="only the first N cells of tio2:train (quick checks)")
    parser.add_argument("--n-test", type=int, help="only the first N cells of tio2:test (quick checks)")
    parser.add_argument("--md-steps", type=int, default=200, help="NVE steps of the 96-atom cell (default 200)")
    parser.add_argument("--peers-python", default=os.environ.get("ML4MS_PEERS_PYTHON", "/work/venvs/peers/bin/python"),
                        help="the Python of the virtual environment with mace-torch (benchmarks/requirements-peers.txt)")
    parser.add_argument("--worker", choices=sorted(RECIPES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--only: a comma-separated list of {', '.join(KINDS)} (got {args.only!r})")
    if args.minutes <= 0 or args.threads < 1 or args.md_steps < 1:
        parser.error("--minutes, --threads and --md-steps must be positive")
    args.workdir = os.path.abspath(args.workdir)
    if args.worker:
        return train_ours(args)
    if "mace" in kinds and not _imports_mace(args.peers_python):
        parser.error(f"--peers-python {args.peers_python} cannot import mace: make the peers' virtual environment "
                     "(benchmarks/tio2_peers.py's docstring) or leave mace out with --only dn,mp")

    from ase.data import atomic_numbers

    from ml4ms.datasets import load
    from ml4ms.outputs import write_json
    from ml4ms.potentials.metrics import evaluate_errors, labels_of
    from ml4ms.potentials.train import read_config
    from ml4ms.serialize import read_json

    os.makedirs(args.workdir, exist_ok=True)
    frames = load("tio2", "train").records[: args.n_train]
    test = load("tio2", "test").records[: args.n_test]
    e, f = labels_of(frames, "tio2:train")
    e_test, f_test = labels_of(test, "tio2:test")
    train_idx, val_idx = common_split(frames, e, args.seed, kinds)
    settings = {"minutes": args.minutes, "threads": args.threads, "seed": args.seed, "n_train": len(frames),
                "n_test": len(test), "md_steps": args.md_steps}
    print(f"tio2:train {len(frames)} cells: {len(train_idx)} to train on, {len(val_idx)} to validate; "
          f"tio2:test {len(test)} cells; {args.minutes:g} min and {args.threads} threads each; in {args.workdir}",
          flush=True)
    results = {}
    for kind in kinds:
        path = os.path.join(args.workdir, f"{kind}.json")
        kept = read_json(path) if os.path.exists(path) else None
        if kept is not None and kept["settings"] == settings:
            print(f"{KINDS[kind]}: from the earlier run in {path}", flush=True)
            results[kind] = kept["run"]
            continue
        print(f"{KINDS[kind]}: training for {args.minutes:g} min (log: {args.workdir}/{kind}.log) ...", flush=True)
        mace_inputs = e0s = None
        if kind == "mace":
            mace_inputs = write_mace_inputs(args.workdir, frames, e, f, train_idx, val_idx, test)
            _, kw = read_config(RECIPES["dn"])
            e0s = str({atomic_numbers[s]: v for s, v in kw["atomic_energies"].items()})
        run = run_kind(kind, args, mace_inputs, e0s)
        run["errors"] = evaluate_errors(None, test, e_test, f_test,
                                        predictions=load_predictions(os.path.join(args.workdir,
                                                                                  f"{kind}_predictions.npz")))
        write_json(path, {"settings": settings, "run": run})
        results[kind] = run
        print(f"{KINDS[kind]}: {run['training_seconds']:.0f} s of training, test E RMSE "
              f"{run['errors']['energy_rmse_mev_per_atom']:.2f} meV/atom, F RMSE "
              f"{run['errors']['force_rmse_ev_per_ang']:.3f} eV/Å", flush=True)
    summary = report(results, len(test))
    print("SUMMARY " + json.dumps({**settings, "n_train_split": len(train_idx), "n_val": len(val_idx), **summary}))


if __name__ == "__main__":
    main()
