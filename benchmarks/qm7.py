"""QM7 headline benchmark (issue 5): test MAE of kernel models against training-set size.

Protocol: the 7101 bundled molecules are shuffled with a fixed seed
(``numpy.random.default_rng(seed).permutation``); the last 1000 are the test
set, the first N the training set, for N in ``--sizes``. Hyperparameters are
chosen on the training set only, by the exact grouped leave-one-out of
:class:`ml4ms.models.kernel.KernelRidge` (duplicate molecules, found by
:func:`ml4ms.duplicates.groups_for`, are left out together). Each descriptor
is computed once for all molecules (it learns only species and bag sizes,
never a label). Δ-learning fits PBE0 − DFTB3 and adds DFTB3 back
(``[target] baseline``); its MAE is on PBE0 like the direct models'.

Models (``--models``):

* ``cm``: sorted Coulomb matrix + Laplacian KRR (Rupp et al. 2012);
* ``bob``: bag of bonds + Laplacian KRR (Hansen et al. 2015);
* ``soap``: SOAP summed over the atoms of a molecule (r_cut 4 Å, n_max 6,
  l_max 4) + Gaussian KRR (the earlier QM7 recipes, kept here for comparison);
* ``local``: the sparse sum-of-local-environments SOAP kernel
  (:class:`ml4ms.descriptors.local_kernel.LocalKernelFeatures`: projected-process
  features on active environments chosen by FPS per element) + Bayesian ridge
  (hyperparameters by marginal likelihood), the recipes ``configs/qm7.toml``
  and ``configs/qm7_delta.toml``. Its active environments are chosen from the
  training molecules of each run only (``fit`` per training set).

CM and BoB use raw (unstandardised) features, as in the papers.

Usage::

    python benchmarks/qm7.py [--sizes 1000 2000] [--seeds 0 1] [--models cm bob soap local]
                             [--kinds direct delta] [--json out.json]

Prints MAE in eV and kcal/mol (1 kcal/mol = 0.0433641039 eV), mean ± std over seeds, and for
models with a predictive std (``local``: Bayesian ridge, the sparse GP) its calibration on the
test molecules: fractions of errors within ±1σ and ±2σ and the Gaussian NLL.
The last line is ``SUMMARY {json}``: per model, target kind and N, the MAE (kcal/mol, mean ± std over
seeds) and, where there is one, the calibration (mean over seeds).
On 2 shared cores one N = 6000 fit takes 6-10 min (a 6000 x 6000 eigendecomposition per
gamma); a ``local`` fit at N = 6000 (descriptor fit on the training molecules, features of the
training and test molecules, Bayesian ridge) takes 5-7 min with a peak of 3.7 GB. The defaults (all
models, N up to 6000, one seed) take over an hour.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

KCAL = 0.0433641039  # eV per kcal/mol
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, os.pardir, "configs")
TARGET = "atomization_energy_pbe0_eV"
BASELINE = "atomization_energy_dftb3_eV"
N_TEST = 1000

_LAPLACIAN = {"name": "krr", "kernel": "laplacian", "scale": False, "alpha": [1e-12, 1e-10, 1e-8]}
#: recipes (TOML layout) of the models that have no file in configs/
MODELS = {
    "cm": {
        "descriptor": {"name": "coulomb_matrix"},
        "model": {**_LAPLACIAN, "gamma": [3e-5, 6e-5, 1.2e-4]},
    },
    "bob": {
        "descriptor": {"name": "bag_of_bonds"},
        "model": {**_LAPLACIAN, "gamma": [1.5e-5, 3e-5, 6e-5, 1.2e-4]},
    },
    "soap": {
        "descriptor": {"name": "soap", "r_cut": 4.0, "n_max": 6, "l_max": 4, "reduce": "sum"},
        "model": {"name": "krr", "kernel": "gaussian", "scale": False, "gamma": [2.5e-9, 5e-9, 1e-8, 2e-8],
                  "alpha": [1e-13, 1e-12, 1e-11, 1e-10, 1e-9]},
    },
    "local": "qm7",  # configs/qm7.toml and configs/qm7_delta.toml
}
#: descriptors that learn from the structures more than their species (active environments): fitted on the
#: training molecules of every run instead of once on all
PER_RUN_DESCRIPTORS = ("local_kernel",)


def recipe_for(model, kind):
    """The :class:`~ml4ms.recipe.Recipe` of a model name and ``"direct"`` or ``"delta"``."""
    from ml4ms.recipe import read_recipe, recipe_from_dict

    spec = MODELS[model]
    if isinstance(spec, str):
        name = spec if kind == "direct" else f"{spec}_delta"
        recipe = read_recipe(os.path.join(CONFIGS, f"{name}.toml"))
    else:
        recipe = recipe_from_dict({**spec, "targets": [TARGET],
                                   "target": {"baseline": BASELINE if kind == "delta" else ""}})
    if recipe.targets != [TARGET] or (recipe.baseline == BASELINE) != (kind == "delta"):
        raise SystemExit(f"recipe of {model}/{kind} does not learn {TARGET} ({kind})")
    return recipe


def run(sizes, seeds, models, kinds, progress=False):
    from sklearn.base import clone

    from ml4ms.datasets import load
    from ml4ms.duplicates import groups_for
    from ml4ms.recipe import build_model
    from ml4ms.uncertainty import calibration_metrics

    data = load("qm7")
    records = data.records
    y = np.array([r.info[TARGET] for r in records])
    groups = groups_for(records, progress=progress)
    if max(sizes) > len(records) - N_TEST:
        raise SystemExit(f"largest size {max(sizes)} exceeds {len(records) - N_TEST}")
    features = {}
    results = []
    for model in models:
        for kind in kinds:
            recipe = recipe_for(model, kind)
            estimator = build_model(recipe, records)
            key = repr(sorted(recipe.descriptor.items()))
            per_run = recipe.descriptor["name"] in PER_RUN_DESCRIPTORS
            if key not in features and not per_run:
                t0 = time.perf_counter()
                desc = clone(estimator.descriptor).set_params(progress=progress)
                features[key] = (desc, desc.fit_transform(records), time.perf_counter() - t0)
                print(f"# {model}: descriptor {features[key][1].shape} in {features[key][2]:.1f} s", flush=True)
            for n in sizes:
                maes, params, times, calibration = [], [], [], []
                for seed in seeds:
                    perm = np.random.default_rng(seed).permutation(len(records))
                    train, test = perm[:n], perm[-N_TEST:]
                    t0 = time.perf_counter()
                    if per_run:
                        desc = clone(estimator.descriptor).set_params(progress=progress)
                        desc.fit([records[i] for i in train])
                        F = np.zeros((len(records), desc.n_features_out_))
                        both = np.concatenate([train, test])
                        F[both] = desc.transform([records[i] for i in both])
                    else:
                        desc, F, _ = features[key]
                    est = clone(estimator)
                    est.descriptor_ = desc
                    est.fit_features(F[train], y[train], [records[i] for i in train], groups=groups[train])
                    pred, std = est.predict_features(F[test], [records[i] for i in test], return_std=True)
                    times.append(time.perf_counter() - t0)
                    maes.append(float(np.mean(np.abs(np.ravel(pred) - y[test]))))
                    params.append(_chosen(est.estimators_[0]))
                    if np.all(np.isfinite(std)) and np.all(np.ravel(std) > 0):
                        calibration.append(calibration_metrics(y[test], np.ravel(pred), np.ravel(std)))
                row = {
                    "model": model, "kind": kind, "n_train": n, "seeds": list(seeds),
                    "mae_eV": maes, "mae_kcalmol": [m / KCAL for m in maes],
                    "mae_kcalmol_mean": float(np.mean(maes) / KCAL),
                    "mae_kcalmol_std": float(np.std(maes, ddof=1) / KCAL) if len(maes) > 1 else 0.0,
                    "hyperparameters": params, "fit_predict_s": times,
                    "recipe": recipe.to_dict(),
                }
                if calibration:  # models with a predictive std (Bayesian ridge: the sparse GP)
                    row["calibration"] = calibration
                results.append(row)
                print(f"{model:>5} {kind:>6} N={n:>5}: MAE {np.mean(maes):.4f} eV = "
                      f"{row['mae_kcalmol_mean']:.2f} ± {row['mae_kcalmol_std']:.2f} kcal/mol "
                      f"({np.mean(times):.0f} s per fit) {params}", flush=True)
                if calibration:
                    cal = {k: [c[k] for c in calibration] for k in ("within_1sigma", "within_2sigma", "nll")}
                    print("      calibration: " + ", ".join(
                        f"{k} {np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}"
                        for k, v in cal.items()) + " (ideal 0.683, 0.954; NLL in eV units)", flush=True)
    return results


def _chosen(regressor):
    """The hyperparameters a fitted regressor chose (grid search or marginal likelihood)."""
    if hasattr(regressor, "best_params_"):
        return regressor.best_params_
    return {k: float(getattr(regressor, k)) for k in ("alpha_", "lambda_") if hasattr(regressor, k)}


def table(results, sizes):
    lines = ["| model | target | " + " | ".join(f"N={n}" for n in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    seen = []
    for r in results:
        if (r["model"], r["kind"]) not in seen:
            seen.append((r["model"], r["kind"]))
    for model, kind in seen:
        cells = []
        for n in sizes:
            row = next((r for r in results if (r["model"], r["kind"], r["n_train"]) == (model, kind, n)), None)
            if row is None:
                cells.append("—")
            elif len(row["seeds"]) > 1:
                cells.append(f"{row['mae_kcalmol_mean']:.2f} ± {row['mae_kcalmol_std']:.2f}")
            else:
                cells.append(f"{row['mae_kcalmol_mean']:.2f}")
        target = "PBE0" if kind == "direct" else "PBE0 − DFTB3"
        spec = next(r for r in results if r["model"] == model)["recipe"]
        kernel = spec["model"].get("kernel") or spec["model"]["name"]
        lines.append(f"| {model} + {kernel} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 6000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", default=["cm", "bob", "soap", "local"], choices=sorted(MODELS))
    parser.add_argument("--kinds", nargs="+", default=["direct", "delta"], choices=["direct", "delta"])
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args.sizes, args.seeds, args.models, args.kinds, progress=args.progress)
    print(f"\ntest MAE (kcal/mol) on the last {N_TEST} of the shuffled set, mean ± std over seeds {args.seeds}:")
    print(table(results, args.sizes))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        from ml4ms.outputs import write_json

        write_json(args.json, {"protocol": {"n_test": N_TEST, "sizes": args.sizes, "seeds": args.seeds,
                                            "kcal_per_mol_eV": KCAL},
                               "results": results, "argv": sys.argv[1:]})
    print("SUMMARY " + json.dumps(summary(results)))
    return 0


def summary(results):
    """One entry per run: ``"model/kind/N"`` -> MAE mean and std (kcal/mol), calibration means where there is one."""
    out = {}
    for r in results:
        entry = {"mae_kcalmol": round(r["mae_kcalmol_mean"], 3), "std": round(r["mae_kcalmol_std"], 3)}
        if r.get("calibration"):
            entry.update({key: round(float(np.mean([c[key] for c in r["calibration"]])), 3)
                          for key in ("within_1sigma", "within_2sigma", "nll")})
        out[f"{r['model']}/{r['kind']}/{r['n_train']}"] = entry
    return out


if __name__ == "__main__":
    sys.exit(main())
