"""Peak memory of per-atom descriptors for all 165,229 atoms of the TiO2 set.

    python benchmarks/descriptors_memory.py [soap|acsf|chebyshev]

Loads the bundled set, computes the per-atom rows (the descriptors work in
chunks internally) and prints the output size and the process's peak resident
memory (``ru_maxrss``), which includes Python, NumPy, torch and the 7815 loaded
structures. The target of issue #4 is a peak under 4 GB. The last line is
``SUMMARY {json}`` with the same numbers.
"""

import json
import resource
import sys
import time


def main(name="soap"):
    from ml4ms.datasets import load
    from ml4ms.descriptors import make_descriptor

    params = {
        "soap": {"r_cut": 5.0, "n_max": 8, "l_max": 6, "species": ["O", "Ti"]},
        "acsf": {"r_cut": 6.0, "species": ["O", "Ti"]},
        "chebyshev": {"species": ["O", "Ti"]},
    }[name]
    frames = load("tio2").records
    n_atoms = sum(len(a) for a in frames)
    descriptor = make_descriptor(name, reduce=None, progress=False, **params).fit(frames[:1])
    t0 = time.perf_counter()
    features, index = descriptor.transform_local(frames)
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB
    print(f"descriptor={name} atoms={n_atoms} features={features.shape[1]} "
          f"output_gb={features.nbytes / 1e9:.2f} seconds={seconds:.1f} peak_rss_gb={peak_gb:.2f}")
    assert features.shape[0] == n_atoms == len(index)
    print("SUMMARY " + json.dumps({"descriptor": name, "atoms": n_atoms, "features": int(features.shape[1]),
                                   "output_gb": round(features.nbytes / 1e9, 2), "seconds": round(seconds, 1),
                                   "peak_rss_gb": round(peak_gb, 2)}))
    return peak_gb


if __name__ == "__main__":
    main(*sys.argv[1:2])
