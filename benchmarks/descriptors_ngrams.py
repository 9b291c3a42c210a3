"""Bond-topology n-grams (and composition features) on NOMAD 2018 train: timing and a CV check.

Usage::

    python benchmarks/descriptors_ngrams.py          # timing only (seconds)
    python benchmarks/descriptors_ngrams.py --cv     # + 5-fold KRR CV RMSLE (a minute or two)

Prints the featurisation time of the 2400 training structures on one process
and, with ``--cv``, the 5-fold cross-validated RMSLE of kernel ridge
regression (Laplacian kernel on standardised features, log1p targets,
predictions clipped at 0) for n-grams alone and n-grams + composition. For
reference, the Kaggle winner (n-grams + KRR) scored 0.020 / 0.078 on the test
set (Sutton et al., npj Comput. Mater. 5, 111, 2019); CV on train is a
different split, so only the order of magnitude is comparable. The last line
is ``SUMMARY {json}``: the timings and, with ``--cv``, the RMSLEs.
"""

import argparse
import json
import time

import numpy as np

from ml4ms.datasets import load
from ml4ms.descriptors.ngrams import BondTopologyNGrams

TARGETS = ("formation_energy_ev_natom", "bandgap_energy_ev")


def cv_rmsle(X, targets, alphas, gammas, folds=5, seed=0):
    """5-fold CV RMSLE of a Laplacian KRR for each target, best (alpha, gamma) on the grid.

    The choice is made on the same folds, so the scores are slightly
    optimistic; this is a rough quality check, not a benchmark result.
    Returns {target: (rmsle, alpha, gamma)}.
    """
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics.pairwise import laplacian_kernel
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    logs = {key: np.log1p(y) for key, y in targets.items()}
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(X))
    best = {key: (np.inf, None, None) for key in targets}
    for gamma in gammas:
        kernels = []
        for train, test in splits:
            scaler = StandardScaler().fit(X[train])
            A, B = scaler.transform(X[train]), scaler.transform(X[test])
            g = gamma / A.shape[1]
            kernels.append((laplacian_kernel(A, A, gamma=g), laplacian_kernel(B, A, gamma=g)))
        for key, t in logs.items():
            for alpha in alphas:
                sq = 0.0
                for (train, test), (Ktr, Kte) in zip(splits, kernels):
                    mean = t[train].mean()
                    model = KernelRidge(alpha=alpha, kernel="precomputed").fit(Ktr, t[train] - mean)
                    pred = np.maximum(model.predict(Kte) + mean, 0.0)
                    sq += np.sum((pred - t[test]) ** 2)
                score = np.sqrt(sq / len(t))
                if score < best[key][0]:
                    best[key] = (score, alpha, gamma)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", action="store_true", help="also run the 5-fold KRR check")
    args = parser.parse_args(argv)

    data = load("nomad2018", "train")
    n_atoms = sum(len(a) for a in data.records)
    t0 = time.perf_counter()
    ng = BondTopologyNGrams(scale="nomad2018", progress=False)
    X_ng = ng.fit_transform(data.records)
    t_ng = time.perf_counter() - t0
    print(f"ngrams: {len(data)} structures, {n_atoms} atoms, {X_ng.shape[1]} features: "
          f"{t_ng:.2f} s ({1e6 * t_ng / n_atoms:.0f} us/atom, 1 process)")

    summary = {"structures": len(data), "atoms": n_atoms, "ngram_features": int(X_ng.shape[1]),
               "ngram_seconds": round(t_ng, 2)}
    blocks = {"ngrams": X_ng}
    try:
        from ml4ms.descriptors.composition import CompositionFeatures
    except ImportError:  # composition module not there yet
        CompositionFeatures = None
    if CompositionFeatures is not None:
        t0 = time.perf_counter()
        comp = CompositionFeatures(progress=False)
        X_c = comp.fit_transform(data.records)
        t_c = time.perf_counter() - t0
        print(f"composition: {X_c.shape[1]} features: {t_c:.2f} s")
        blocks["ngrams+composition"] = np.hstack([X_ng, X_c])
        summary["composition_seconds"] = round(t_c, 2)

    if args.cv:
        summary["cv_rmsle"] = run_cv(blocks, data)
    print("SUMMARY " + json.dumps(summary))


def run_cv(blocks, data):
    """The ``--cv`` check of every feature block; {block: {target: RMSLE, "mean": mean}}."""
    out = {}
    alphas = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    gammas = [0.1, 0.3, 1.0, 3.0]
    for name, X in blocks.items():
        t0 = time.perf_counter()
        best = cv_rmsle(X, {key: data.targets[key] for key in TARGETS}, alphas, gammas)
        for key, (score, alpha, gamma) in best.items():
            print(f"{name:20s} {key:27s} 5-fold CV RMSLE {score:.4f} (alpha={alpha:g}, gamma={gamma:g}/n_features)")
        mean = np.mean([b[0] for b in best.values()])
        print(f"{name:20s} mean RMSLE {mean:.4f} ({time.perf_counter() - t0:.0f} s)")
        out[name] = {**{key: round(float(b[0]), 4) for key, b in best.items()}, "mean": round(float(mean), 4)}
    return out


if __name__ == "__main__":
    main()
