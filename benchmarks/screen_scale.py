"""Screening at scale: N generated NOMAD-like crystals through a model and a two-stage funnel, in bounded memory.

    python benchmarks/screen_scale.py [--counts 20000 100000] [--model PATH] [--demo] [--chunk 1000]
                                      [--seed 0] [--where EXPR ...] [--json out.json]

The candidates are generated on the fly, deterministically: structure ``i``
takes a crystal of the bundled NOMAD 2018 training set (chosen with the seed
``[seed, i]``), substitutes each cation by Al, Ga or In with probability 0.3,
strains the cell by up to 2 % per component and rattles the atoms by 0.03 Å;
its Kaggle columns (cation fractions, cell lengths and angles) follow, the
space group is the parent's. Nothing is written to disk but the survivors: the
generator is a part (:mod:`ml4ms.datasets.sources`) that ``ml4ms.screening.stream``
reads chunk by chunk, so a run of 1,000,000 needs no input files.

The model is the NOMAD headline (``ml4ms fit nomad2018:train --config nomad2018``,
minutes to fit; ``--model PATH`` fits it there once and reuses it afterwards) or,
with ``--demo``, composition features with Bayesian ridge (seconds). The funnel:

1. ``bandgap_energy_ev > 2 and bandgap_energy_ev_std < 0.2``
2. ``formation_energy_ev_natom < 0.1``

survivors ranked by formation energy (``--where`` replaces the stages: the demo
model's band-gap std is 0.4-0.8 eV, so nothing passes its first stage). Each count runs in a child process on one
thread (one core) while this process samples the resident memory of the child
and its descendants every 0.1 s (psutil, else /proc). Reported per count: peak
RSS, screening time, structures/s and structures/s per core, and the pass count
of each stage; memory should not grow with the count. Ends with one line
``SUMMARY {json}``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHERE = ["bandgap_energy_ev > 2 and bandgap_energy_ev_std < 0.2", "formation_energy_ev_natom < 0.1"]
CATIONS = ("Al", "Ga", "In")
#: the Kaggle columns a generated structure recomputes (the rest come from its parent)
LABELS = ("formation_energy_ev_natom", "bandgap_energy_ev")


class PerturbedNomad:
    """``count`` structures generated from the NOMAD 2018 training crystals, ``read(start, stop)`` on demand."""

    def __init__(self, count, seed=0):
        self.count, self.seed = int(count), int(seed)
        self.label = f"perturbed-nomad2018(count={self.count}, seed={self.seed})"
        self._parents = None

    def __len__(self):
        return self.count

    def identity(self):
        return [self.label]

    def read(self, start, stop):
        if self._parents is None:
            from ml4ms.datasets import load

            self._parents = load("nomad2018", "train").records
        return [self.structure(i) for i in range(start, stop)]

    def structure(self, i):
        import numpy as np
        from ase.data import atomic_numbers

        rng = np.random.default_rng([self.seed, i])
        atoms = self._parents[int(rng.integers(len(self._parents)))].copy()
        for key in LABELS:
            atoms.info.pop(key, None)
        numbers = atoms.numbers.copy()
        cations = np.flatnonzero(numbers != atomic_numbers["O"])
        swap = cations[rng.random(len(cations)) < 0.3]
        numbers[swap] = [atomic_numbers[CATIONS[k]] for k in rng.integers(3, size=len(swap))]
        atoms.numbers = numbers
        strain = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        counts = {z: int(np.sum(numbers[cations] == atomic_numbers[z])) for z in CATIONS}
        for z in CATIONS:
            atoms.info[f"percent_atom_{z.lower()}"] = counts[z] / len(cations)
        for k, value in enumerate(atoms.cell.cellpar()):
            name = f"lattice_vector_{k + 1}_ang" if k < 3 else f"lattice_angle_{('alpha', 'beta', 'gamma')[k - 3]}_degree"
            atoms.info[name] = float(value)
        atoms.info["id"] = i
        return atoms


def _fit(model, demo):
    cmd = [sys.executable, "-m", "ml4ms", "fit", "nomad2018:train", "--quiet", "-o", model]
    cmd += ["--config", "nomad2018_demo", "--descriptor", "composition", "--model", "bayesian_ridge"] if demo else \
        ["--config", "nomad2018"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
    return time.perf_counter() - start


def _tree_rss(pid):
    """Resident memory (bytes) of ``pid`` and its descendants."""
    try:
        import psutil

        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total
    except ImportError:
        with open(f"/proc/{pid}/status") as handle:  # the child alone (it starts no processes when serial)
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS"))
    except Exception:  # the process just ended
        return 0


def child(args):
    """Screen ``args.count`` generated structures; print one JSON line of results."""
    from ml4ms.screening import stream
    from ml4ms.serialize import load_model
    from ml4ms.threads import limit_threads

    limit_threads(1)
    model, meta = load_model(args.model)
    part = PerturbedNomad(args.count, args.seed)
    part.read(0, 0)  # loads the parent crystals before the clock starts
    out = os.path.join(args.out, "survivors.csv")
    start = time.perf_counter()
    summary = stream(model, meta, [part], out, filters=args.where or WHERE, chunk=args.chunk, rank_by=meta["targets"][0],
                     progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "n_records": summary["n_records"], "stages": summary["stages"],
                      "survivors_bytes": os.path.getsize(out)}), flush=True)


def measure(count, model, chunk, seed, folder, where):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--count", str(count), "--model", model,
           "--chunk", str(chunk), "--seed", str(seed), "--out", folder] + [a for w in where for a in ("--where", w)]
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"screening {count} structures failed: {err.strip()[-800:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(count=count, peak_rss_mb=round(peak / 2**20, 1), per_s=round(count / result["seconds"], 1))
    result["per_s_per_core"] = result["per_s"]  # one process, one thread
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--model", metavar="PATH", help="a model folder to use; fitted there first if missing")
    parser.add_argument("--demo", action="store_true", help="composition + Bayesian ridge instead of the headline")
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--where", action="append", metavar="EXPR",
                        help="the funnel's stages instead of the default two (repeat for each)")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    folder = tempfile.mkdtemp(prefix="ml4ms-screen-scale-")
    try:
        model = args.model or os.path.join(folder, "model")
        fit_s = None
        if not os.path.exists(os.path.join(model, "model.json")):
            print(f"fitting the {'demo' if args.demo else 'headline'} model into {model} ...", flush=True)
            fit_s = round(_fit(model, args.demo), 1)
        results = []
        for count in args.counts:
            run = os.path.join(folder, f"run-{count}")
            os.makedirs(run)
            results.append(measure(count, model, args.chunk, args.seed, run, args.where or WHERE))
            r = results[-1]
            print(f"{count} structures: {r['seconds']:.1f} s, {r['per_s']} structures/s (one core), peak RSS "
                  f"{r['peak_rss_mb']} MB; " + "; ".join(f"stage {k}: {p} passed" for k, (_, p) in
                                                        enumerate(r["stages"], 1)), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rate = results[-1]["per_s_per_core"]
    summary = {"model": "demo" if args.demo else "headline", "chunk": args.chunk, "fit_s": fit_s,
               "where": args.where or WHERE,
               "counts": [r["count"] for r in results], "peak_rss_mb": [r["peak_rss_mb"] for r in results],
               "per_s_per_core": [r["per_s_per_core"] for r in results],
               "passed": [[p for _, p in r["stages"]] for r in results],
               "hours_for_1M_one_core": round(1e6 / rate / 3600, 2)}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results, "summary": summary}, handle, indent=1)
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "src"))
    main()
