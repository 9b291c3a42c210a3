"""SOAP: ml4ms against DScribe, same structures and settings, one process.

Prints µs/atom (wall clock, best of ``--repeats``) for each library and their
ratio, for the two SOAP settings of issue 4:

* NOMAD 2018 train, SOAP averaged per structure: r_cut 6 Å, n_max 6, l_max 4,
  species Al/Ga/In/O (DScribe ``average="outer"``, ml4ms ``reduce="mean"``);
* TiO2 (ænet set), per-atom SOAP: r_cut 5 Å, n_max 8, l_max 6;

and, for ml4ms only, SOAP position gradients on TiO2 frames next to DScribe's
numerical derivatives on a few frames (DScribe has no analytic derivatives for
periodic systems).

Both sides use sigma = 1 Å and the same smooth polynomial cutoff (ml4ms
``cutoff_function="poly", cutoff_exponent=2`` = DScribe
``weighting={"function": "poly", "r0": r_cut, "c": 1, "m": 2}``), so the
numbers are identical (checked here on the first structures). Both run on one
thread (``torch``/BLAS threads are left as they are; DScribe is single-threaded
with ``n_jobs=1``). Timings on a shared machine vary: compare the ratio, and
rerun with ``--repeats`` > 1 to take the best.

Usage::

    python benchmarks/descriptors_soap.py [--nomad 2400] [--tio2 2000] [--grad 200] [--grad-dscribe 20] [--repeats 1]

The last line is ``SUMMARY {json}``: the ratios (DScribe time / ml4ms time) and their minimum over the two
descriptor settings (the gradients are not in the minimum).
"""

import argparse
import json
import time

import numpy as np


def best_time(func, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


def compare(name, records, ours, theirs, repeats):
    n_atoms = sum(len(a) for a in records)
    ours.transform(records[:2]), theirs(records[:2])  # warm up
    t_theirs, ref = best_time(lambda: theirs(records), repeats)
    t_ours, out = best_time(lambda: ours.transform(records), repeats)
    rel = np.max(np.abs(out - ref)) / np.max(np.abs(ref))
    us_ours, us_theirs = 1e6 * t_ours / n_atoms, 1e6 * t_theirs / n_atoms
    ratio = us_theirs / us_ours
    print(
        f"{name:34s} {len(records):5d} {n_atoms:7d} {us_ours:10.1f} {us_theirs:10.1f} {ratio:7.2f}"
        f"   max rel diff {rel:.1e}"
    )
    return ratio


def main(argv=None, summary=True):
    """Run the comparison; returns {setting: ratio}. ``summary``: end with the ``SUMMARY`` line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nomad", type=int, default=2400, help="NOMAD train structures (2400 = all)")
    parser.add_argument("--tio2", type=int, default=2000, help="TiO2 frames")
    parser.add_argument("--grad", type=int, default=200, help="TiO2 frames for ml4ms gradients (0: skip)")
    parser.add_argument("--grad-dscribe", type=int, default=20, help="TiO2 frames for DScribe numerical gradients")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)

    from dscribe.descriptors import SOAP as DScribeSOAP

    from ml4ms.datasets import load
    from ml4ms.descriptors.soap import SOAP

    print("setting                            structs   atoms   ml4ms_us   dscribe_us   ratio")
    ratios = {}

    nomad = load("nomad2018", "train").records[: args.nomad]
    species = ["Al", "Ga", "In", "O"]
    poly = {"function": "poly", "r0": 6.0, "c": 1.0, "m": 2.0}
    theirs = DScribeSOAP(species=species, r_cut=6.0, n_max=6, l_max=4, sigma=1.0, periodic=True,
                         average="outer", weighting=poly)
    ours = SOAP(species=species, r_cut=6.0, n_max=6, l_max=4, sigma=1.0, reduce="mean", progress=False).fit(nomad)
    ratios["nomad"] = compare("NOMAD mean SOAP rc6 n6 l4", nomad, ours, theirs.create, args.repeats)

    tio2 = load("tio2").records[: args.tio2]
    poly = {"function": "poly", "r0": 5.0, "c": 1.0, "m": 2.0}
    theirs = DScribeSOAP(species=["O", "Ti"], r_cut=5.0, n_max=8, l_max=6, sigma=1.0, periodic=True,
                         weighting=poly)
    ours = SOAP(species=["O", "Ti"], r_cut=5.0, n_max=8, l_max=6, sigma=1.0, reduce=None, progress=False).fit(tio2)

    def theirs_local(records):
        return np.concatenate([np.atleast_2d(theirs.create(a)) for a in records])

    ratios["tio2"] = compare("TiO2 per-atom SOAP rc5 n8 l6", tio2, ours, theirs_local, args.repeats)

    if args.grad:
        frames = load("tio2").records[: args.grad]
        n_atoms = sum(len(a) for a in frames)
        ours.gradients(frames[0])  # warm up (torch.func)
        t0 = time.perf_counter()
        for a in frames:
            ours.gradients(a)
        t_ours = time.perf_counter() - t0
        few = frames[: max(1, min(args.grad_dscribe, len(frames)))]
        n_few = sum(len(a) for a in few)
        # DScribe: numerical derivatives only (its analytic ones raise an error for periodic systems)
        num = DScribeSOAP(species=["O", "Ti"], r_cut=5.0, n_max=8, l_max=6, sigma=1.0, periodic=True,
                          weighting=poly)
        t0 = time.perf_counter()
        # attach=True: the centre moves with its atom, as in ml4ms (layout: centre, atom, xyz, feature)
        theirs_grad = [num.derivatives(a, method="numerical", attach=True, return_descriptor=False) for a in few]
        t_num = time.perf_counter() - t0
        ratios["tio2_gradients"] = t_num / n_few / (t_ours / n_atoms)
        print(
            f"{'TiO2 SOAP gradients (analytic)':34s} {len(frames):5d} {n_atoms:7d} {1e6 * t_ours / n_atoms:10.1f} "
            f"{1e6 * t_num / n_few:10.1f} {ratios['tio2_gradients']:7.2f}"
            f"   dscribe numerical on {len(few)} frames"
        )
        ours_grad = ours.gradients(few[0])
        diff = np.max(np.abs(theirs_grad[0].transpose(0, 3, 1, 2) - ours_grad)) / np.max(np.abs(ours_grad))
        print(f"  gradients vs DScribe numerical (frame 0): max rel diff {diff:.1e}")
    smallest = min(v for k, v in ratios.items() if "grad" not in k)
    print(f"speedup_vs_dscribe_min={smallest:.2f}")
    if summary:
        print("SUMMARY " + json.dumps({"ratios": {k: round(v, 2) for k, v in ratios.items()},
                                       "speedup_vs_dscribe_min": round(smallest, 2)}))
    return ratios


if __name__ == "__main__":
    main()
