"""Training and MD speed of the TiO2 potential, this tree against a reference commit, side by side.

    python benchmarks/tio2_speed.py [--ref 95a9de1] [--repeats 3] [--json out.json]

Runs each measurement in a fresh process, alternating this tree and the reference (a temporary ``git worktree`` of
``--ref``), ``--repeats`` times, and reports medians and their ratio (this / reference):

- ``epoch_precompute``: seconds per epoch of the recipe's network (``tio2_potential``: 2×128 float32 with cell average
  and linear term) on 300 training cells, with precomputed descriptor Jacobians, one thread (median over epochs 2-25);
- ``epoch_direct``: the same through autograd of the descriptor (``precompute = false``, 6 epochs);
- ``md``: atom-steps per second of 300 NVE steps of the 24-atom cell ``tio2:test@0`` with each tree's
  ``models/tio2`` committee, one thread;
- the peak memory (maximum resident set) of each of those processes.

The final validation RMSE of the two training runs must agree (printed), so the speed is that of the same numbers.
The issue "Potentials rebuilt as torch modules" asks that neither training nor MD become slower. Ends with one
``SUMMARY {json}`` line.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from statistics import median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EPOCHS = r"""
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from ml4ms.datasets import load
from ml4ms.potentials.train import read_config, train_potential
try:
    from ml4ms.potentials.metrics import labels_of
except ImportError:
    from ml4ms.potentials.train import labels_of
precompute = sys.argv[1] == "1"
frames = load("tio2", "train").records[:300]
model, kw = read_config(sys.argv[2])
e, f = labels_of(frames)
kw.update(epochs=25 if precompute else 6, patience=100, precompute=precompute, threads=1, progress=False,
          valid_fraction=0.1)
kw.pop("time_limit", None)
_, hist = train_potential(model, frames, e, f, **kw)
import resource
print(json.dumps({"seconds": float(np.median([h["seconds"] for h in hist[1:]])), "rmse": hist[-1]["val_energy_rmse"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

MD = r"""
import json, sys, torch
torch.set_num_threads(1)
from ml4ms.datasets import load
from ml4ms.potentials import NeuralPotentialCalculator, load_potential, run_md
atoms = load("tio2", "test").records[0].copy()
atoms.calc = None
r = run_md(atoms, NeuralPotentialCalculator(load_potential(sys.argv[1])), steps=300, timestep=1.0, seed=0)
import resource
print(json.dumps({"atom_steps_per_second": r["atom_steps_per_second"],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(tree, script, *args):
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="95a9de1", help="the reference commit (default: before the torch modules)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    ref = tempfile.mkdtemp(prefix="ml4ms-ref-")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", ref, args.ref], check=True,
                   capture_output=True)
    results = {"ref": args.ref, "this": {}, "reference": {}}
    try:
        for _ in range(args.repeats):
            for side, tree in (("this", ROOT), ("reference", ref)):
                runs = results[side]
                recipe = os.path.join(tree, "configs", "tio2_potential.toml")
                for name, script, extra in (("epoch_precompute", EPOCHS, ["1", recipe]),
                                            ("epoch_direct", EPOCHS, ["0", recipe]),
                                            ("md", MD, [os.path.join(tree, "models", "tio2")])):
                    runs.setdefault(name, []).append(_run(tree, script, *extra))
                print(f"{side}: " + ", ".join(f"{k} {v[-1]}" for k, v in runs.items()), flush=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", ref], capture_output=True)
        shutil.rmtree(ref, ignore_errors=True)
    summary = {"ref": args.ref}
    print(f"\n{'measure':<18} {'this':>10} {'reference':>10} {'this/ref':>9}")
    for name, key in (("epoch_precompute", "seconds"), ("epoch_direct", "seconds"), ("md", "atom_steps_per_second")):
        a = median(r[key] for r in results["this"][name])
        b = median(r[key] for r in results["reference"][name])
        print(f"{name:<18} {a:>10.4g} {b:>10.4g} {a / b:>9.3f}")
        summary[f"{name}_ratio"] = round(a / b, 3)
    for name in ("epoch_precompute", "epoch_direct", "md"):  # the peak memory of each process (MB)
        a = median(r["peak_mb"] for r in results["this"][name])
        b = median(r["peak_mb"] for r in results["reference"][name])
        print(f"{name + ' peak MB':<18} {a:>10.4g} {b:>10.4g} {a / b:>9.3f}")
        summary[f"{name}_peak_ratio"] = round(a / b, 3)
    for name in ("epoch_precompute", "epoch_direct"):
        same = {r["rmse"] for r in results["this"][name]} == {r["rmse"] for r in results["reference"][name]}
        print(f"{name}: final validation RMSE {'identical' if same else 'DIFFERENT'} "
              f"({results['this'][name][0]['rmse']:.6f} meV/atom)")
        summary[f"{name}_same_numbers"] = same
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
