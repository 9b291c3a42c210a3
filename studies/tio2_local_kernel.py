"""Per-atom (sum-of-local) SOAP kernel on TiO2 energies: tio2:train -> tio2:test, time and memory.

A sparse GP of the total energy with the sum-of-local-environments kernel
(:class:`ml4ms.descriptors.local_kernel.LocalKernelFeatures`, FPS-chosen active
environments, Bayesian ridge on the Nyström features), trained on energies only.
Run under ``/usr/bin/time -v`` for the peak memory::

    OMP_NUM_THREADS=1 /usr/bin/time -v python studies/tio2_local_kernel.py --n-active 2000

Findings: docs/studies/tio2-potential.md, "Kernel and electrostatic corrections".
"""

import argparse
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-active", type=int, default=2000, help="active environments (FPS)")
    args = parser.parse_args(argv)

    from sklearn.linear_model import BayesianRidge

    from ml4ms.datasets import load
    from ml4ms.descriptors.local_kernel import LocalKernelFeatures
    from ml4ms.models.structure import StructureRegressor

    train, test = load("tio2", "train"), load("tio2", "test")
    t0 = time.perf_counter()
    model = StructureRegressor(
        descriptor=LocalKernelFeatures(descriptor={"name": "soap", "r_cut": 5.0, "n_max": 6, "l_max": 4},
                                       n_active=args.n_active, zeta=2, reduce="sum"),
        regressor=BayesianRidge()).fit(train.records, train.targets["energy"])
    t1 = time.perf_counter()
    pred = model.predict(test.records)
    t2 = time.perf_counter()
    n = np.array([len(r) for r in test.records])
    err = (pred - test.targets["energy"]) / n
    print(f"n_active {args.n_active}: fit {t1 - t0:.0f} s ({sum(len(r) for r in train.records)} atoms), "
          f"predict {t2 - t1:.0f} s; test energy per atom MAE {1000 * np.mean(np.abs(err)):.2f} meV, "
          f"RMSE {1000 * np.sqrt(np.mean(err ** 2)):.2f} meV")
    parts = model.predict_local(test.records[:50])
    print("per-atom contributions sum to the predictions:", bool(np.allclose([p.sum() for p in parts], pred[:50])))


if __name__ == "__main__":
    main()
