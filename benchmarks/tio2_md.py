"""MD checks of trained TiO2 potentials, side by side: NVE energy drift, NVT at 1500 K, closest pair, speed.

    python benchmarks/tio2_md.py [--model mp=models/tio2_mpnn] [--model dn=models/tio2] [--ps 10] [--threads 1]
        [--json out.json]

For each potential folder (``LABEL=DIR``; default: the shipped message-passing potential and the shipped
descriptor-network committee), on the 96-atom cell of ``benchmarks/tio2_peers.py`` (``tio2:test`` cell 0 repeated
2×2×1), through :func:`ml4ms.potentials.run_md` and the potential's ASE calculator:

- ``--ps`` of NVE (velocity Verlet, 1 fs, velocities drawn at 300 K): the drift of the total energy
  (meV/atom/ps, the slope of a straight-line fit) and its fluctuation. Goal of issue 33: |drift| < 1 meV/atom/ps.
- ``--ps`` of NVT at 1500 K (Langevin, friction 0.01/fs, 1 fs): the mean temperature and the closest pair of atoms
  over the frames written every 10 steps (Å). Goal: no pair closer than 0.8 Å (the shortest Ti–O bond in the data
  is about 1.7 Å; O–O pairs below 1.2 Å would be a molecule the data never shows).
- atom-steps per second of each run, one thread unless ``--threads``.

The last line is ``SUMMARY {json}`` with one entry per label.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def closest_pairs(frames, cutoff=3.0):
    """The shortest interatomic distance (Å, periodic) of each frame; ``cutoff`` when no pair is closer.

    Examples
    --------
    >>> from ase import Atoms
    >>> a = Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.2]], cell=[10, 10, 10], pbc=True)
    >>> [round(d, 3) for d in closest_pairs([a])]
    [1.2]
    """
    from ml4ms.neighbors import ase_neighbor_pairs

    out = []
    for atoms in frames:
        D = ase_neighbor_pairs(atoms, cutoff)[2]
        out.append(float(np.linalg.norm(D, axis=1).min(initial=cutoff)))
    return out


def check(label, folder, cell, steps, seed, threads):
    """NVE and NVT runs of one potential (a dict of measurements)."""
    import torch
    from ase.io import read

    from ml4ms.potentials import NeuralPotentialCalculator, load_potential, run_md

    torch.set_num_threads(threads)
    model = load_potential(folder)
    out = {"model": folder}
    nve = run_md(cell.copy(), NeuralPotentialCalculator(model), ensemble="nve", temperature=300.0, steps=steps,
                 timestep=1.0, seed=seed)
    out["nve"] = {key: nve[key] for key in ("energy_drift_mev_per_atom_per_ps", "energy_fluctuation_mev_per_atom",
                                            "mean_temperature_k", "atom_steps_per_second")}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nvt.extxyz")
        nvt = run_md(cell.copy(), NeuralPotentialCalculator(model), ensemble="nvt", temperature=1500.0,
                     steps=steps, timestep=1.0, friction=0.01, seed=seed, trajectory=path, interval=10)
        closest = closest_pairs(read(path, index=":"))
    out["nvt"] = {"mean_temperature_k": nvt["mean_temperature_k"], "temperature_std_k": nvt["temperature_std_k"],
                  "closest_pair_ang": min(closest), "frames": len(closest),
                  "atom_steps_per_second": nvt["atom_steps_per_second"]}
    print(f"{label} ({folder}): NVE drift {out['nve']['energy_drift_mev_per_atom_per_ps']:+.4f} meV/atom/ps, "
          f"fluctuation {out['nve']['energy_fluctuation_mev_per_atom']:.3f} meV/atom, "
          f"{out['nve']['atom_steps_per_second']:.0f} atom-steps/s; NVT 1500 K: mean "
          f"{out['nvt']['mean_temperature_k']:.0f} K, closest pair {out['nvt']['closest_pair_ang']:.3f} Å over "
          f"{len(closest)} frames, {out['nvt']['atom_steps_per_second']:.0f} atom-steps/s", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", metavar="LABEL=DIR",
                        help="a potential folder to check (repeatable; default mp=models/tio2_mpnn, dn=models/tio2)")
    parser.add_argument("--ps", type=float, default=10.0, help="length of each run (ps, 1 fs steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args(argv)

    import sys

    sys.path.insert(0, HERE)
    from tio2_peers import md_cell

    from ml4ms.datasets import load
    from ml4ms.outputs import write_json

    root = os.path.dirname(HERE)
    pairs = args.model or [f"mp={os.path.join(root, 'models', 'tio2_mpnn')}", f"dn={os.path.join(root, 'models', 'tio2')}"]
    cell = md_cell(load("tio2", "test").records)
    steps = int(round(args.ps * 1000))
    print(f"{len(cell)} atoms, {steps} steps of 1 fs per run, {args.threads} thread(s)", flush=True)
    results = {}
    t0 = time.time()
    for pair in pairs:
        label, _, folder = pair.partition("=")
        results[label] = check(label, folder, cell, steps, args.seed, args.threads)
    if args.json:
        write_json(args.json, results)
    summary = {label: {"nve_drift_mev_per_atom_per_ps": round(r["nve"]["energy_drift_mev_per_atom_per_ps"], 4),
                       "nvt_closest_pair_ang": round(r["nvt"]["closest_pair_ang"], 3),
                       "nvt_mean_temperature_k": round(r["nvt"]["mean_temperature_k"], 1),
                       "atom_steps_per_second": round(float(np.mean([r["nve"]["atom_steps_per_second"],
                                                                     r["nvt"]["atom_steps_per_second"]])))}
               for label, r in results.items()}
    summary["seconds"] = round(time.time() - t0)
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
