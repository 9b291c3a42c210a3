"""NOMAD 2018 headline: grouped CV of configs/nomad2018.toml next to the demo recipe, full-fit time, calibration.

    OMP_NUM_THREADS=1 python benchmarks/nomad2018.py [--seeds 0 1] [--n-splits 5] [--skip-demo] [--json out.json]

Both recipes are scored on the same grouped folds (5-fold × seeds 0 and 1; duplicate structures stay in
one fold, as in ``ml4ms cv``); RMSLE per target, mean ± std over all folds. For the ensemble the same fits also
give the plain average of its members (``combine = "mean"``), so stacking and averaging are compared on
identical members. Calibration of the ensemble's std: coverage of ±1σ / ±2σ and the Gaussian NLL of the
out-of-fold predictions, in log1p space (where RMSLE is measured) and in eV. Finally the recipe is fitted on
all 2400 train structures (descriptor included) and timed. The last line is ``SUMMARY {json}``: the mean
RMSLEs per target and of the two, the log1p calibration, and the full fit's seconds and weights.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.base import clone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "nomad2018.toml")


def _ms(values):
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def _fmt(d):
    return f"{d['mean']:.4f} ± {d['std']:.4f}"


def headline_cv(recipe, data, seeds, n_splits):
    from ml4ms.metrics import rmsle
    from ml4ms.model_selection import GroupedKFold
    from ml4ms.uncertainty import calibration_metrics
    from ml4ms.workflow import prepare_features

    t0 = time.time()
    prep = prepare_features(recipe, data, progress=False)
    t_features = time.time() - t0
    y, groups, F, records = prep.y, prep.groups, prep.features, prep.records
    targets = list(recipe.targets)
    k = len(targets)
    scores = {"stack": [], "mean": []}
    calib_log, calib_raw, weights, member_rmse = [], [], [], []
    fold_times = []
    for seed in seeds:
        pred = {c: np.full((len(y), k), np.nan) for c in scores}
        z_pred, z_std, raw_std = (np.full((len(y), k), np.nan) for _ in range(3))
        member_pred = None
        for train, test in GroupedKFold(n_splits, shuffle=True, random_state=seed).split(F, groups=groups):
            t = time.time()
            model = clone(prep.model).fit_features(F[train], y[train], [records[i] for i in train],
                                                   groups=groups[train])
            fold_times.append(time.time() - t)
            rec_test = [records[i] for i in test]
            p, s = model.predict_features(F[test], rec_test, return_std=True)
            pred["stack"][test], raw_std[test] = p, s
            ens = model.estimators_[0]
            zp, zs = ens.predict(F[test], return_std=True)
            z_pred[test], z_std[test] = zp, zs
            members = ens.predict_members(F[test])  # (n_test, n_members, k), log1p space
            if member_pred is None:
                member_pred = np.full((len(y), members.shape[1], k), np.nan)
            member_pred[test] = members
            transform = model.transform_
            pred["mean"][test] = np.column_stack([transform.inverse(members[:, :, j].mean(axis=1), rec_test)
                                                  for j in range(k)])
            weights.append(np.asarray(ens.weights_).tolist())
            for c in scores:
                scores[c].append([rmsle(y[test, j], pred[c][test, j]) for j in range(k)])
        z_true = np.log1p(y)
        calib_log.append({t: calibration_metrics(z_true[:, j], z_pred[:, j], z_std[:, j]) for j, t in enumerate(targets)})
        calib_raw.append({t: calibration_metrics(y[:, j], pred["stack"][:, j], raw_std[:, j])
                          for j, t in enumerate(targets)})
        member_rmse.append(np.sqrt(np.mean((member_pred - z_true[:, None, :]) ** 2, axis=0)).tolist())
    out = {"feature_seconds": t_features, "fold_fit_seconds": _ms(fold_times),
       "labels": [m.get("label", f"member{i}") for i, m in enumerate(prep.model.regressor.members)]}
    for c, rows in scores.items():
        rows = np.asarray(rows)
        out[c] = {t: _ms(rows[:, j]) for j, t in enumerate(targets)}
        out[c]["mean_of_targets"] = _ms(rows.mean(axis=1))
    out["member_rmsle_per_seed"] = member_rmse
    out["weights_per_fold"] = weights
    for name, cal in (("calibration_log1p", calib_log), ("calibration_ev", calib_raw)):
        out[name] = {t: {m: float(np.mean([c[t][m] for c in cal])) for m in ("within_1sigma", "within_2sigma", "nll")}
                     for t in targets}
    return out


def demo_cv(data, seeds, n_splits):
    from ml4ms.recipe import read_recipe
    from ml4ms.workflow import cross_validate

    recipe = read_recipe("nomad2018_demo")
    res = cross_validate(recipe, data, n_splits=n_splits, seeds=seeds, progress=False)
    rows = {t: [r["rmsle"] for r in res["folds"] if r["target"] == t] for t in recipe.targets}
    out = {t: _ms(v) for t, v in rows.items()}
    out["mean_of_targets"] = _ms(np.mean([rows[t] for t in recipe.targets], axis=0))
    return out


def full_fit(recipe, data):
    from ml4ms.workflow import fit

    t = time.time()
    model, meta = fit(recipe, data, progress=False)
    seconds = time.time() - t
    ens = model.estimators_[0]
    return {"seconds": seconds, "weights": np.asarray(ens.weights_).tolist(),
            "oof_rmse": np.asarray(ens.oof_rmse_).tolist(), "hyperparameters": meta["hyperparameters"]}


def main(argv=None):
    from ml4ms.datasets import load
    from ml4ms.recipe import read_recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--n-splits", type=int, default=5)
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--subset", type=int, help="only the first N train structures (smoke test)")
    args = ap.parse_args(argv)

    data = load("nomad2018", "train")
    if args.subset:
        import dataclasses

        data = dataclasses.replace(data, records=data.records[:args.subset],
                                   targets={k: v[:args.subset] for k, v in data.targets.items()})
    recipe = read_recipe(args.config)
    results = {"seeds": args.seeds, "n_splits": args.n_splits, "config": os.path.relpath(args.config, ROOT)}
    t = time.time()
    results["headline"] = headline_cv(recipe, data, args.seeds, args.n_splits)
    results["headline"]["seconds"] = time.time() - t
    h = results["headline"]
    print(f"headline CV ({time.time() - t:.0f} s; features {h['feature_seconds']:.0f} s, "
          f"fit per fold {h['fold_fit_seconds']['mean']:.0f} s)", flush=True)
    for c in ("stack", "mean"):
        print(f"  {c:5s} " + "  ".join(f"{t} {_fmt(v)}" for t, v in h[c].items()), flush=True)
    print("  members' pooled out-of-fold RMSLE (log1p RMSE), seed", args.seeds[0])
    for label, row in zip(h["labels"], h["member_rmsle_per_seed"][0]):
        print(f"    {label:45s} " + " ".join(f"{v:.4f}" for v in row))
    for name in ("calibration_log1p", "calibration_ev"):
        for tname, m in h[name].items():
            print(f"  {name} {tname}: ±1σ {m['within_1sigma']:.3f} ±2σ {m['within_2sigma']:.3f} "
                  f"NLL {m['nll']:.3f}")
    if not args.skip_demo:
        t = time.time()
        results["demo"] = demo_cv(data, args.seeds, args.n_splits)
        results["demo"]["seconds"] = time.time() - t
        print(f"demo CV ({time.time() - t:.0f} s) " + "  ".join(f"{k} {_fmt(v)}" for k, v in results["demo"].items()
                                                                if isinstance(v, dict)), flush=True)
    if not args.skip_fit:
        results["full_fit"] = full_fit(recipe, data)
        print(f"full fit on {len(data.records)} structures: {results['full_fit']['seconds']:.0f} s; "
              f"weights {np.round(results['full_fit']['weights'], 3).tolist()}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print("SUMMARY " + json.dumps(summary(results)))
    return results


def summary(results):
    """The one-line digest of ``results``: mean RMSLEs (4 digits), calibration (3), full-fit seconds and weights."""
    def means(block):
        return {t: round(v["mean"], 4) for t, v in block.items() if isinstance(v, dict) and "mean" in v}

    h = results["headline"]
    out = {"headline_rmsle": means(h["stack"]), "plain_average_rmsle": means(h["mean"]),
           "calibration_log1p": {t: {k: round(v, 3) for k, v in m.items()}
                                 for t, m in h["calibration_log1p"].items()}}
    if "demo" in results:
        out["demo_rmsle"] = means(results["demo"])
    if "full_fit" in results:
        out["full_fit_seconds"] = round(results["full_fit"]["seconds"], 1)
        out["full_fit_weights"] = np.round(results["full_fit"]["weights"], 2).tolist()
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "src"))
    main()
