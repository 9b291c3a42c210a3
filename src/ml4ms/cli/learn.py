"""``ml4ms fit | predict | evaluate | cv | learning-curve | demo``."""

import os

from ..errors import InputError


def _recipe_args(p, targets_required=False):
    p.add_argument("--target", action="append", dest="targets", metavar="KEY",
                   required=targets_required, help="property to learn (repeat for several)")
    p.add_argument("--config", metavar="FILE.toml", help="recipe: descriptor, model, target transform, CV")
    p.add_argument("--descriptor", metavar="NAME", help="override the recipe's descriptor")
    p.add_argument("--model", metavar="NAME", help="override the recipe's model (krr, committee, ridge, lasso)")
    p.add_argument("--transform", choices=["none", "log1p"], help="target transform")
    p.add_argument("--per-atom", action="store_true", default=None, help="learn the target per atom")
    p.add_argument("--baseline", metavar="KEY", help="learn target minus this baseline property (delta-learning)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_parsers(sub):
    p = sub.add_parser("fit", help="fit a model on structures or a table and save it")
    p.add_argument("data", help="NAME:SPLIT (bundled), a structure file, or a CSV table")
    _recipe_args(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="model folder to write (JSON + arrays)")
    p.set_defaults(func=run_fit)

    p = sub.add_parser("predict", help="predict with a saved model; writes a CSV")
    p.add_argument("model", help="model folder written by 'ml4ms fit'")
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True, metavar="CSV")
    p.add_argument("--per-atom", metavar="OUT.csv", dest="per_atom_output",
                   help="also write per-atom contributions (sum-of-local models): CSV, or extxyz for .xyz/.extxyz")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_predict)

    p = sub.add_parser("evaluate", help="metrics of a saved model against labelled data, and a parity plot")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    p.add_argument("--plot", metavar="PNG", help="parity plot file (default: parity.png, or next to --json)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("cv", help="grouped K-fold cross-validation (mean ± std) and a learning curve")
    p.add_argument("data")
    _recipe_args(p)
    p.add_argument("--n-splits", type=int, metavar="K")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED")
    p.add_argument("--metric", default=None, help="learning-curve metric (default rmsle with log1p, else rmse)")
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--plot", metavar="PNG", help="learning-curve file (default: learning_curve.png, or next to --json)")
    p.add_argument("--no-learning-curve", action="store_true")
    p.set_defaults(func=run_cv)

    p = sub.add_parser("demo", help="the main job: NOMAD 2018 CV, fit, test predictions, report")
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_demo)


def _recipe(args):
    from ..recipe import apply_overrides, read_recipe

    recipe = read_recipe(args.config)
    return apply_overrides(
        recipe,
        targets=args.targets,
        descriptor=args.descriptor,
        model=args.model,
        transform=args.transform,
        per_atom=args.per_atom,
        baseline=args.baseline,
    )


def _output_check(path, what="output"):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {what} here", source=path, hint="choose a writable folder")


def _beside(json_path, default, suffix):
    if json_path:
        return os.path.splitext(json_path)[0] + suffix
    return default


def run_fit(args):
    from ..datasets import load_data
    from ..serialize import save_model
    from ..workflow import fit

    _output_check(args.output, "the model")
    recipe = _recipe(args)
    data = load_data(args.data)
    model, meta = fit(recipe, data, progress=not args.quiet)
    save_model(args.output, model, meta)
    hp = "; ".join(f"{t}: {h}" for t, h in zip(meta["targets"], _per_target(meta["hyperparameters"], meta["targets"])))
    print(f"fitted {', '.join(meta['targets'])} on {meta['n_train']} records of {data.source}")
    if hp:
        print(f"hyperparameters: {hp}")
    print(f"model written to {args.output}")


def _per_target(chosen, targets):
    """Hyperparameters per target from the fitted estimators' best_params_."""
    if len(chosen) == 1 and chosen[0] and isinstance(chosen[0].get("alpha"), list):
        return [{k: v[j] for k, v in chosen[0].items()} for j in range(len(targets))]
    return [c for c in chosen] if len(chosen) == len(targets) else [chosen[0]] * len(targets)


def _load(path):
    from ..serialize import load_model

    return load_model(path)


def run_predict(args):
    from ..datasets import load_data
    from ..outputs import write_csv
    from ..workflow import predict

    model, meta = _load(args.model)
    data = load_data(args.data)
    rows = predict(model, meta, data, progress=not args.quiet)
    per_atom = getattr(args, "per_atom_output", None)
    atom_rows = _per_atom_rows(model, meta, data, not args.quiet) if per_atom else None
    write_csv(args.output, rows)
    print(f"{len(rows)} predictions of {', '.join(meta['targets'])} written to {args.output}")
    if per_atom:
        _write_per_atom(per_atom, atom_rows, data, meta["targets"])
        print(f"{len(atom_rows)} per-atom contributions written to {per_atom}")


def _per_atom_rows(model, meta, data, progress):
    from ..workflow import predict_local

    return predict_local(model, meta, data, progress=progress)


def _write_per_atom(path, rows, data, targets):
    """Per-atom rows as CSV, or as extxyz with one per-atom array per target."""
    from ..outputs import write_csv

    if not path.lower().endswith((".xyz", ".extxyz")):
        write_csv(path, rows)
        return
    import numpy as np
    from ..outputs import write_structures

    frames, k = [], 0
    for atoms in data.records:
        frame = atoms.copy()
        for t in targets:
            frame.arrays[f"{t}_atomic"] = np.array([rows[k + a][t] for a in range(len(atoms))])
        k += len(atoms)
        frames.append(frame)
    write_structures(path, frames)


def run_evaluate(args):
    from ..datasets import load_data, target_unit
    from ..outputs import write_json
    from ..plots import parity_plot
    from ..workflow import evaluate

    model, meta = _load(args.model)
    data = load_data(args.data)
    result = evaluate(model, meta, data, progress=not args.quiet)
    plot = args.plot or _beside(args.json, "parity.png", "_parity.png")
    units = [target_unit(t, data.name) for t in result["targets"]]
    parity_plot(result["y_true"], result["y_pred"], result["targets"], plot, units=units,
                title=f"{args.model} on {data.source}")
    out = {k: v for k, v in result.items() if k not in ("y_true", "y_pred", "y_std")}
    out["parity_plot"] = plot
    if "calibration" in result:
        from ..uncertainty import calibration_plot

        cal_plot = _beside(args.json, "calibration.png", "_calibration.png")
        calibration_plot(result["y_true"], result["y_pred"], result["y_std"], cal_plot, names=result["targets"],
                         title=f"{args.model} on {data.source}")
        out["calibration_plot"] = cal_plot
    if args.json:
        write_json(args.json, out)
    _print_metrics(result["metrics"])
    print(f"parity plot: {plot}")
    for t, c in result.get("calibration", {}).items():
        print(f"calibration {t}: {c['within_1sigma']:.3f} within ±1σ (0.683 ideal), "
              f"{c['within_2sigma']:.3f} within ±2σ (0.954), NLL {c['nll']:.4g}")
    if "calibration" in result:
        print(f"calibration plot: {out['calibration_plot']}")


def _print_metrics(metrics):
    names = list(next(iter(metrics.values())))
    width = max(len(t) for t in metrics)
    print(f"{'target':<{width}}  " + "  ".join(f"{m:>10}" for m in names))
    for t, vals in metrics.items():
        print(f"{t:<{width}}  " + "  ".join(f"{vals[m]:>10.5g}" for m in names))


def _print_summary(summary, metrics=("mae", "rmse", "rmsle", "r2")):
    width = max(len(t) for t in summary)
    shown = [m for m in metrics if all(m in v for v in summary.values())]
    print(f"{'target':<{width}}  " + "  ".join(f"{m + ' (mean ± std)':>24}" for m in shown))
    for t, vals in summary.items():
        print(f"{t:<{width}}  " + "  ".join(f"{vals[m]['mean']:>12.5g} ± {vals[m]['std']:<9.3g}" for m in shown))


def run_cv(args):
    from ..datasets import load_data, target_unit
    from ..outputs import write_json
    from ..plots import learning_curve_plot
    from ..workflow import cross_validate, learning_curve, prepare_features

    recipe = _recipe(args)
    data = load_data(args.data)
    prepared = prepare_features(recipe, data, progress=not args.quiet)
    result = cross_validate(recipe, data, n_splits=args.n_splits, seeds=args.seeds, progress=not args.quiet,
                            prepared=prepared)
    print(
        f"grouped {result['n_splits']}-fold CV on {data.source} ({result['n_structures']} records, "
        f"{result['n_duplicate_groups']} kept with a duplicate), seeds {result['seeds']}:"
    )
    _print_summary(result["summary"])
    out = {k: v for k, v in result.items() if k not in ("predictions", "y_true")}
    if not args.no_learning_curve:
        metric = args.metric or ("rmsle" if recipe.transform == "log1p" else "rmse")
        curve = learning_curve(recipe, data, seeds=args.seeds, metric=metric, progress=not args.quiet,
                               prepared=prepared)
        plot = args.plot or _beside(args.json, "learning_curve.png", "_learning_curve.png")
        learning_curve_plot(curve, plot, metric=metric.upper(), title=f"learning curve, {data.source}",
                            units={t: target_unit(t, data.name) for t in curve["targets"]})
        out["learning_curve"] = curve
        out["learning_curve_plot"] = plot
        print(f"learning curve: {plot}")
    if args.json:
        write_json(args.json, out)


def run_demo(args):
    from ..demo import run

    run(args.out, quick=args.quick, progress=not args.quiet)
