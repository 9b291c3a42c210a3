"""Memory and time of the QM7 sparse GP fitted in memory against streamed from sufficient statistics.

The recipe ``configs/qm7.toml`` (SOAP ``local_kernel`` features on 4000 active environments, Bayesian ridge)
is fitted on the first N molecules of the shuffled QM7 set (the protocol of ``benchmarks/qm7.py``: seed 0,
the last 1000 molecules are the test set) in one of two ways, one per process so that each has its own peak:

* ``memory``: the features of all N molecules as one N x M matrix, then scikit-learn's ``BayesianRidge``
  on it (the fit before streaming);
* ``streamed``: :meth:`ml4ms.models.structure.StructureRegressor.fit_streamed`, ``--chunk`` molecules at a
  time reduced to sufficient statistics (``ml4ms.models.linear``), never the N x M matrix.

Each run prints its wall time (descriptor fit, features and solve together), the peak resident memory of
the process (``ru_maxrss``) and the resident memory before the fit (data loaded), then the time and peak
memory of its two phases (the descriptor fit, the same in both; the features and the solve), and saves the
model to ``--out``/MODE. ``--compare`` then loads both models and prints how far apart their weights and their
predictions on 300 test molecules are.

Usage::

    python benchmarks/qm7_streamed.py --mode memory --n 2000 --out runs/streamed
    python benchmarks/qm7_streamed.py --mode streamed --n 2000 --chunk 500 --out runs/streamed
    python benchmarks/qm7_streamed.py --compare --out runs/streamed

``--small`` uses a small SOAP and 200 active environments (to check the script in seconds).
"""

import argparse
import os
import resource
import threading
import time

import numpy as np

TARGET = "atomization_energy_pbe0_eV"
N_TEST = 1000
SMALL = {"descriptor.n_active": 200, "descriptor.descriptor.r_cut": 4.0, "descriptor.descriptor.n_max": 4,
         "descriptor.descriptor.l_max": 3}


def _rss_mb():
    """The resident memory of this process now, MB (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Phases:
    """Peak resident memory and wall time per phase, the memory sampled every 20 ms by a thread."""

    def __init__(self):
        self.peak, self.start, self.rows = _rss_mb(), time.perf_counter(), []
        self.base = self.peak
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def mark(self, name):
        """End the phase ``name`` (the first call ends the phase since the start)."""
        now, peak = time.perf_counter(), max(self.peak, _rss_mb())
        self.rows.append(f"{name} {now - self.start:.1f} s, peak {peak:.0f} MB (+{peak - self.base:.0f} MB)")
        self.start, self.peak = now, _rss_mb()
        self.base = self.peak

    def close(self):
        self._stop.set()
        return "; ".join(self.rows)


def _split(n, seed=0):
    from ml4ms.datasets import load

    records = load("qm7", "all").records
    order = np.random.default_rng(seed).permutation(len(records))
    return [records[i] for i in order[:n]], [records[i] for i in order[-N_TEST:]]


def _model(small):
    from ml4ms.recipe import apply_overrides, build_model, read_recipe

    recipe = read_recipe("qm7")
    if small:
        recipe = apply_overrides(recipe, values=SMALL)
    model = build_model(recipe)
    model.descriptor.set_params(progress=False)
    return model


def fit(mode, n, chunk, small, out):
    from sklearn.base import clone

    from ml4ms.serialize import save_model

    train, _ = _split(n)
    y = np.array([r.info[TARGET] for r in train])
    model = _model(small)
    before = _rss_mb()
    start = time.perf_counter()
    phases = Phases()
    if mode == "streamed":
        from ml4ms.models import structure

        first = structure.ChunkStatistics.__call__

        def call(self, item):  # the descriptor is fitted when the first chunk starts (serial executor)
            if item[0] == 0:
                phases.mark("descriptor fit")
            return first(self, item)

        structure.ChunkStatistics.__call__ = call
        model.fit_streamed(train, y, chunk=chunk)
        shape = f"statistics of {model.descriptor_.n_features_out_} features in chunks of {chunk}"
    else:
        from sklearn.linear_model import BayesianRidge

        model.descriptor_ = clone(model.descriptor).fit(train)
        phases.mark("descriptor fit")
        features = model.descriptor_.transform(train)
        shape = f"features {features.shape[0]} x {features.shape[1]}"
        model.set_params(regressor=BayesianRidge(max_iter=300))
        model.fit_features(features, y, train)
    seconds = time.perf_counter() - start
    phases.mark("features and solve")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    est = model.estimators_[0]
    print(f"{mode}: N = {n}, {shape}: {seconds:.1f} s, peak RSS {peak:.0f} MB (before the fit {before:.0f} MB); "
          f"alpha {float(est.alpha_):.6g}, lambda {float(est.lambda_):.6g}, {est.n_iter_} iterations")
    print(f"  phases: {phases.close()}")
    save_model(os.path.join(out, mode), model, {"targets": [TARGET]})


def compare(out):
    from ml4ms.serialize import load_model

    (a, _), (b, _) = load_model(os.path.join(out, "memory")), load_model(os.path.join(out, "streamed"))
    _, test = _split(0)
    test = test[:300]
    wa, wb = a.estimators_[0].coef_, b.estimators_[0].coef_
    pa, sa = a.predict(test, return_std=True)
    pb, sb = b.predict(test, return_std=True)
    rel = [float(np.linalg.norm(u - v) / np.linalg.norm(u)) for u, v in ((wa, wb), (pa, pb), (sa, sb))]
    err = [float(np.mean(np.abs(p - np.array([r.info[TARGET] for r in test])))) / 0.0433641039 for p in (pa, pb)]
    print(f"relative difference (2-norm): weights {rel[0]:.2e}, predictions {rel[1]:.2e}, std {rel[2]:.2e}; "
          f"test MAE on 300 molecules {err[0]:.4f} / {err[1]:.4f} kcal/mol")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["memory", "streamed"])
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--out", default="runs/qm7_streamed")
    args = parser.parse_args(argv)
    if args.compare:
        compare(args.out)
    elif args.mode:
        fit(args.mode, args.n, args.chunk, args.small, args.out)
    else:
        parser.error("give --mode or --compare")


if __name__ == "__main__":
    main()
