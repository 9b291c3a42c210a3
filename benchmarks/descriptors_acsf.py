"""ACSF speed: ml4ms vs DScribe in one process, same frames, same 22 functions.

TiO2 frames (bundled ænet set), periodic, r_cut 6 Å, species O/Ti:
G1 + 4 G2 per species (2 × 5 = 10) and 4 G4 per species pair (3 × 4 = 12),
22 features per atom, identical parameters on both sides. Both run on one
thread (torch intra-op threads set to 1, DScribe n_jobs=1); the frames are
processed in alternating chunks so that both see the same machine load.
Prints wall-clock µs/atom for each and their ratio (the headline), the same
in process CPU time (less sensitive to a loaded machine), and the largest
relative difference between the two.

    python benchmarks/descriptors_acsf.py [--frames 2000] [--chunk 50]

The last line is ``SUMMARY {json}`` with the same numbers.
"""

import argparse
import json
import time

import numpy as np

R_CUT = 6.0
G2 = [(0.003214, 0.0), (0.035711, 0.0), (0.071421, 0.0), (0.124987, 0.0)]
G4 = [(0.000357, 1.0, -1.0), (0.028569, 1.0, -1.0), (0.000357, 1.0, 1.0), (0.028569, 2.0, 1.0)]


def main(argv=None, summary=True):
    """Run the comparison; returns the wall-clock ratio. ``summary``: end with the ``SUMMARY`` line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=50)
    args = parser.parse_args(argv)

    import torch
    from dscribe.descriptors import ACSF as DScribeACSF

    from ml4ms.datasets import load
    from ml4ms.descriptors.acsf import ACSF

    torch.set_num_threads(1)
    frames = load("tio2").records[: args.frames]
    n_atoms = sum(len(a) for a in frames)
    ours = ACSF(r_cut=R_CUT, g2_params=G2, g4_params=G4, species=["O", "Ti"], reduce=None,
                progress=False).fit(frames[:1])
    theirs = DScribeACSF(r_cut=R_CUT, g2_params=G2, g4_params=G4, species=["O", "Ti"], periodic=True)
    assert ours.n_features_out_ == theirs.get_number_of_features() == 22
    ours.transform_local(frames[:2])  # warm-up (imports, allocator)
    theirs.create(frames[:2])

    t_ours = t_theirs = c_ours = c_theirs = 0.0
    worst = 0.0
    for start in range(0, len(frames), args.chunk):
        part = frames[start:start + args.chunk]
        t0, c0 = time.perf_counter(), time.process_time()
        X = ours.transform_local(part)[0]
        t1, c1 = time.perf_counter(), time.process_time()
        Y = theirs.create(part, n_jobs=1)
        t2, c2 = time.perf_counter(), time.process_time()
        t_ours += t1 - t0
        t_theirs += t2 - t1
        c_ours += c1 - c0
        c_theirs += c2 - c1
        Y = np.concatenate(Y) if isinstance(Y, list) else np.asarray(Y).reshape(-1, 22)
        worst = max(worst, float(np.max(np.abs(X - Y) / np.maximum(np.abs(Y), 1e-12))))
    us_ours = t_ours / n_atoms * 1e6
    us_theirs = t_theirs / n_atoms * 1e6
    print(f"frames={len(frames)} atoms={n_atoms} features=22 r_cut={R_CUT}")
    print(f"ml4ms_us_per_atom={us_ours:.1f}")
    print(f"dscribe_us_per_atom={us_theirs:.1f}")
    print(f"ml4ms_cpu_us_per_atom={c_ours / n_atoms * 1e6:.1f}")
    print(f"dscribe_cpu_us_per_atom={c_theirs / n_atoms * 1e6:.1f}")
    print(f"cpu_time_ratio={c_theirs / c_ours:.2f}")
    print(f"max_relative_difference={worst:.2e}")
    print(f"speedup_vs_dscribe={us_theirs / us_ours:.2f}")
    if summary:
        print("SUMMARY " + json.dumps({
            "frames": len(frames), "atoms": n_atoms, "ml4ms_us_per_atom": round(us_ours, 1),
            "dscribe_us_per_atom": round(us_theirs, 1), "cpu_time_ratio": round(c_theirs / c_ours, 2),
            "max_relative_difference": float(f"{worst:.2e}"), "speedup_vs_dscribe": round(us_theirs / us_ours, 2)}))
    return us_theirs / us_ours


if __name__ == "__main__":
    main()
