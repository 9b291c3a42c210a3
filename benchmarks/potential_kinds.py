"""Training and MD throughput of the kinds of potential on TiO2, side by side, from their bundled recipes.

    python benchmarks/potential_kinds.py [--cells 500] [--epochs 3] [--threads 1] [--json out.json]

For each recipe (``tio2_mpnn``: the message-passing potential; ``tio2_potential``: the descriptor network, with and
without its precomputed descriptor Jacobians), in a fresh process:

- ``train_atoms_per_second``: training atoms (the training split of the first ``--cells`` cells of ``tio2:train``)
  over the median seconds of an epoch after the first (energies and forces, the recipe's batch size and force
  weight); ``precompute_seconds``: the Jacobians' one-off time where the recipe has them;
- ``md_atom_steps_per_second``: 200 NVE steps of a 96-atom cell (``tio2:test`` cell 0, 24 atoms, repeated 2×2×1)
  with the ASE calculator; the weights are the initialised ones (the speed does not depend on their values).

torch runs on ``--threads`` threads. Ends with one ``SUMMARY {json}`` line.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN = r"""
import json, sys, time, numpy as np, torch
threads, cells, epochs, recipe, precompute = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
torch.set_num_threads(threads)
from ml4ms.datasets import load
from ml4ms.potentials import NeuralPotentialCalculator, run_md
from ml4ms.potentials.metrics import labels_of
from ml4ms.potentials.train import read_config, train_potential
frames = load("tio2", "train").records[:cells]
model, kw = read_config(recipe)
if precompute != "default":
    kw["precompute"] = precompute == "1"
e, f = labels_of(frames)
kw.update(epochs=epochs, patience=1000, threads=threads, progress=False, valid_fraction=0.1, novelty_references=0)
kw.pop("time_limit", None)
trained, hist = train_potential(model, frames, e, f, **kw)
n_train = trained.training_["n_train"]
seconds = float(np.median([h["seconds"] for h in hist[1:]]))
# the training split's atoms (the run's own split, drawn again)
from ml4ms.potentials.loop import training_split
from ml4ms.potentials.options import TrainingOptions
keep, tr, va = training_split(frames, np.asarray(e), TrainingOptions(**{k: v for k, v in kw.items() if k != "progress"}))
atoms_train = int(sum(len(frames[k]) for k in tr))
cell = load("tio2", "test").records[0].copy() * (2, 2, 1)
cell.calc = None
md = run_md(cell, NeuralPotentialCalculator(trained), steps=200, timestep=1.0, seed=0)
print(json.dumps({"recipe": recipe, "precompute": precompute, "n_train": n_train, "train_atoms": atoms_train,
                  "epoch_seconds": seconds, "train_atoms_per_second": atoms_train / seconds,
                  "precompute_seconds": trained.training_["precompute_seconds"],
                  "md_atoms": len(cell), "md_atom_steps_per_second": md["atom_steps_per_second"],
                  "val_energy_rmse": hist[-1]["val_energy_rmse"], "val_force_rmse": hist[-1]["val_force_rmse"]}))
"""


def run(threads, cells, epochs, recipe, precompute):
    """One recipe's measurements in a fresh process (a dict)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    done = subprocess.run([sys.executable, "-c", RUN, str(threads), str(cells), str(epochs), recipe, precompute],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{recipe}: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    rows = []
    for recipe, precompute in (("tio2_mpnn", "default"), ("tio2_potential", "1"), ("tio2_potential", "0")):
        rows.append(run(args.threads, args.cells, args.epochs, recipe, precompute))
        r = rows[-1]
        print(f"{recipe:<15} precompute={precompute:<8} epoch {r['epoch_seconds']:.2f} s "
              f"({r['train_atoms']} atoms: {r['train_atoms_per_second']:.0f} atoms/s"
              + (f", Jacobians {r['precompute_seconds']:.1f} s" if r["precompute_seconds"] else "")
              + f"); MD {r['md_atom_steps_per_second']:.0f} atom-steps/s on {r['md_atoms']} atoms", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    print("SUMMARY " + json.dumps(rows))


if __name__ == "__main__":
    main()
