"""``ml4ms fit | predict | evaluate | cv | learning-curve | demo``."""

import os

from ..errors import InputError
from ..metrics import METRICS
from ..models import REGRESSORS
from .options import (MODEL_DEVICE, _number, add_chunk, add_device, add_input, add_old_name, add_output, add_quiet,
                      add_scheduler, checked_device, folder_kind, non_negative_int, positive_int)

#: an integer >= 2 (folds: one fold is no cross-validation)
at_least_two = _number(int, lambda v: v >= 2, "an integer >= 2")


def _recipe_args(p, targets_required=False):
    p.add_argument("--target", action="append", dest="targets", metavar="KEY",
                   required=targets_required, help="property to learn (repeat for several)")
    add_input(p, "--config", metavar="FILE.toml",
              help="recipe: descriptor, model, target transform, CV; a TOML file or the name of a bundled "
                   "recipe (nomad2018, qm7, ...)")
    p.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                   help="override a recipe value, VALUE in TOML syntax, after the other flags "
                        "(e.g. model.alpha=0.1, descriptor.r_cut=4.0, cv.n_splits=3); repeat for several")
    p.add_argument("--descriptor", metavar="NAME", help="override the recipe's descriptor")
    p.add_argument("--model", metavar="NAME", help=f"override the recipe's model ({', '.join(REGRESSORS)})")
    p.add_argument("--transform", choices=["none", "log1p"], help="target transform")
    p.add_argument("--per-atom", action="store_true", default=None, help="learn the target per atom")
    p.add_argument("--baseline", metavar="KEY", help="learn target minus this baseline property (delta-learning)")
    add_quiet(p)


def add_parsers(sub):
    p = sub.add_parser("fit", help="fit a model on structures or a table and save it")
    add_input(p, "data", help="NAME:SPLIT (bundled), a structure file, or a CSV table")
    _recipe_args(p)
    add_output(p, "-o", "--output", required=True, metavar="MODEL", folder="model", what="the model",
               help="model folder to write (JSON + arrays)")
    p.add_argument("--chunk", type=positive_int, default=1000, metavar="N",
                   help="structures per chunk of a streamed fit (models ridge and bayesian_ridge: their features "
                        "are reduced to sufficient statistics chunk by chunk, never held for all structures; "
                        "default 1000)")
    add_scheduler(p)
    p.set_defaults(func=run_fit)

    p = sub.add_parser("predict", help="predict with a saved model; writes a CSV")
    add_input(p, "model", help="model folder written by 'ml4ms fit'")
    add_input(p, "data", help="structures or rows to predict: NAME:SPLIT (bundled), a structure file or ASE database "
                              "(read chunk by chunk), a quoted pattern such as 'data/*.xyz', or a CSV table")
    add_output(p, "-o", "--output", required=True, metavar="CSV", suffixes=(".csv",), what="the predictions",
               help="predictions (and their std, for models with uncertainty) as CSV")
    add_output(p, "--contributions", metavar="OUT.csv", dest="per_atom_output", suffixes=(".csv", ".extxyz", ".xyz"),
               what="the per-atom contributions",
               help="also write the per-atom contributions (sum-of-local models): CSV, or extxyz for .xyz/.extxyz")
    add_old_name(p, "--per-atom", "per_atom_output")
    add_chunk(p, 1000)
    add_device(p, "predict on", MODEL_DEVICE)
    add_scheduler(p)
    add_quiet(p)
    p.set_defaults(func=run_predict)

    p = sub.add_parser("evaluate", help="metrics of a saved model against labelled data, and a parity plot")
    add_input(p, "model", help="model folder written by 'ml4ms fit'")
    add_input(p, "data", help="labelled structures or rows: NAME:SPLIT (bundled), a structure file or a CSV table")
    add_output(p, "--json", metavar="OUT", suffixes=(".json",), what="the metrics", help="write the metrics as JSON")
    add_output(p, "--plot", metavar="PNG", suffixes=(".png",), what="the parity plot",
               help="parity plot file (default: parity.png, or next to --json)")
    add_device(p, "predict on", MODEL_DEVICE)
    add_scheduler(p)
    add_quiet(p)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("cv", help="grouped K-fold cross-validation (mean ± std) and a learning curve")
    add_input(p, "data", help="labelled structures or rows: NAME:SPLIT (bundled), a structure file or a CSV table")
    _recipe_args(p)
    p.add_argument("--n-splits", type=at_least_two, metavar="K", help="folds (default: the recipe's [cv] n_splits)")
    p.add_argument("--seeds", type=non_negative_int, nargs="+", metavar="SEED",
                   help="shuffling seeds; the CV is repeated for each (default: the recipe's [cv] seeds)")
    p.add_argument("--metric", default=None, choices=sorted(METRICS),
                   help="learning-curve metric (default rmsle with log1p, else rmse)")
    add_output(p, "--json", metavar="OUT", suffixes=(".json",), what="the CV results",
               help="write the scores, folds and learning curve as JSON")
    add_output(p, "--plot", metavar="PNG", suffixes=(".png",), what="the learning-curve plot",
               help="learning-curve file (default: learning_curve.png, or next to --json)")
    p.add_argument("--no-learning-curve", action="store_true", help="cross-validate only (faster)")
    add_scheduler(p)
    p.set_defaults(func=run_cv)

    p = sub.add_parser("demo", help="the main job: NOMAD 2018 CV, fit, test predictions, report")
    add_output(p, "-o", "--output", dest="out", default="runs/demo", metavar="DIR", folder="files",
               what="the report", help="folder for the report, model and predictions (default runs/demo)")
    add_old_name(p, "--out", "out")
    p.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    add_quiet(p)
    p.set_defaults(func=run_demo)


def _recipe(args):
    from ..config import parse_assignments
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
        n_splits=getattr(args, "n_splits", None),
        seeds=getattr(args, "seeds", None),
        train_sizes=getattr(args, "sizes", None),
        values=parse_assignments(args.set),
    )


def _check_metric(metric, recipe, data):
    """Refuse, before any work, labels the recipe cannot learn and a metric they do not allow (rmsle of y <= -1)."""
    from ..metrics import check_metric
    from ..workflow import _targets, read_labels

    check_metric(metric, read_labels(recipe, data), _targets(recipe, data), source=data.source)


def _beside(json_path, default, suffix):
    if json_path:
        return os.path.splitext(json_path)[0] + suffix
    return default


def run_fit(args):
    from ..datasets import load_data
    from ..serialize import save_model
    from ..workflow import fit

    recipe = _recipe(args)
    data = load_data(args.data)
    model, meta = fit(recipe, data, progress=not args.quiet, chunk=args.chunk)
    save_model(args.output, model, meta)
    hp = "; ".join(f"{t}: {h}" for t, h in zip(meta["targets"], _per_target(meta["hyperparameters"], meta["targets"])))
    streamed = f", streamed in chunks of {meta['streamed_chunk']}" if "streamed_chunk" in meta else ""
    print(f"fitted {', '.join(meta['targets'])} on {meta['n_train']} records of {data.source}{streamed}")
    if hp:
        print(f"hyperparameters: {hp}")
    print(f"model written to {args.output}")


def _per_target(chosen, targets):
    """Hyperparameters per target from the fitted estimators' best_params_."""
    if len(chosen) == 1 and chosen[0] and isinstance(chosen[0].get("alpha"), list):
        return [{k: v[j] for k, v in chosen[0].items()} for j in range(len(targets))]
    return [c for c in chosen] if len(chosen) == len(targets) else [chosen[0]] * len(targets)


def _load(path, device=None):
    """A property model folder; a potential (or committee) is refused in one line naming its commands.

    ``device`` (``--device``, checked) moves its graph models there; without it, a device the file names that
    this machine lacks is refused in one line.
    """
    from ..batch import torch_device
    from ..errors import ModelFileError
    from ..models.devices import model_devices, set_device
    from ..serialize import load_model

    if os.path.isdir(path) and folder_kind(path) == "potential":  # before load_model, whose format it is not
        raise InputError("is an interatomic potential, not a property model", source=path,
                         hint="use 'ml4ms potential eval', 'ml4ms md' or the ASE calculator with it")
    model, meta = load_model(path)
    targets = meta.get("targets")
    if not (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)):
        raise ModelFileError(f"{path}: the model file names no targets (metadata 'targets'); the file was edited, "
                             "refit the model")
    if device is not None:
        return set_device(model, device), meta
    for kept in model_devices(model):
        try:
            torch_device(kept, "its device")
        except InputError as exc:
            raise InputError(f"the model computes on '{kept}' (the device it was trained on), which this machine "
                             "lacks", source=path, hint="give --device cpu (or another device)") from exc
    return model, meta


def model_identity(path):
    """What a streamed job's state remembers of its model: the folder and a hash of its files."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            digest.update(name.encode())
            with open(full, "rb") as handle:
                digest.update(handle.read())
    return [os.path.realpath(path), digest.hexdigest()]


def print_resumed(summary, output):
    """A line saying that a streamed job continued from the chunks of an earlier run."""
    from ..screening import partial_folder

    if summary["resumed"]:
        print(f"continued from {summary['resumed']} of {summary['chunks']} chunks finished earlier "
              f"(in {partial_folder(output)})")


def run_predict(args):
    from ..datasets import load_data
    from ..datasets.sources import open_parts
    from ..screening import stream

    model, meta = _load(args.model, checked_device(args))
    parts = open_parts([args.data])
    per_atom = getattr(args, "per_atom_output", None)
    data = load_data(args.data) if per_atom else None  # per-atom rows are written at once: read whole
    atom_rows = _per_atom_rows(model, meta, data, not args.quiet) if per_atom else None
    summary = stream(model, meta, parts, args.output, chunk=args.chunk, identity=model_identity(args.model),
                     progress=not args.quiet)
    print_resumed(summary, args.output)
    print(f"{summary['n_records']} predictions of {', '.join(meta['targets'])} written to {args.output}")
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

    model, meta = _load(args.model, checked_device(args))
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
    _print_metrics(result["metrics"], result["omitted"])
    print(f"parity plot: {plot}")
    for t, c in result.get("calibration", {}).items():
        print(f"calibration {t}: {c['within_1sigma']:.3f} within ±1σ (0.683 ideal), "
              f"{c['within_2sigma']:.3f} within ±2σ (0.954), NLL {c['nll']:.4g}")
    if "calibration" in result:
        print(f"calibration plot: {out['calibration_plot']}")


def _print_metrics(metrics, omitted):
    names = list(dict.fromkeys(m for vals in metrics.values() for m in vals))
    width = max(len(t) for t in metrics)
    print(f"{'target':<{width}}  " + "  ".join(f"{m:>10}" for m in names))
    for t, vals in metrics.items():
        print(f"{t:<{width}}  " + "  ".join(f"{vals[m]:>10.5g}" if m in vals else f"{'-':>10}" for m in names))
    _print_omitted(omitted)


def _print_omitted(omitted, shown=None):
    """A note for each metric left out of a target because it cannot be computed there: ``{target: {metric: why}}``."""
    for t, reasons in omitted.items():
        for m, why in reasons.items():
            if shown is None or m in shown:
                print(f"  {t}: {m} left out ({why})")


def _print_summary(summary, omitted, metrics=("mae", "rmse", "rmsle", "r2")):
    width = max(len(t) for t in summary)
    shown = [m for m in metrics if any(m in v for v in summary.values())]
    print(f"{'target':<{width}}  " + "  ".join(f"{m + ' (mean ± std)':>24}" for m in shown))
    for t, vals in summary.items():
        print(f"{t:<{width}}  " + "  ".join(f"{vals[m]['mean']:>12.5g} ± {vals[m]['std']:<9.3g}" if m in vals
                                            else f"{'-':>24}" for m in shown))
    _print_omitted(omitted, shown=metrics)


def run_cv(args):
    from ..datasets import load_data, target_unit
    from ..outputs import write_json
    from ..plots import learning_curve_plot
    from ..workflow import cross_validate, learning_curve, prepare_features

    if args.no_learning_curve and (args.plot or args.metric):
        flag = "--plot" if args.plot else "--metric"
        raise InputError(f"{flag} is for the learning curve, and --no-learning-curve skips it",
                         hint=f"drop {flag} or --no-learning-curve")
    recipe = _recipe(args)
    data = load_data(args.data)
    if not args.no_learning_curve:
        _check_metric(args.metric or ("rmsle" if recipe.transform == "log1p" else "rmse"), recipe, data)
    prepared = prepare_features(recipe, data, progress=not args.quiet)
    result = cross_validate(recipe, data, progress=not args.quiet, prepared=prepared)
    print(
        f"grouped {result['n_splits']}-fold CV on {data.source} ({result['n_structures']} records, "
        f"{result['n_duplicate_groups']} kept with a duplicate), seeds {result['seeds']}:"
    )
    _print_summary(result["summary"], result["omitted"])
    out = {k: v for k, v in result.items() if k not in ("predictions", "y_true")}
    if not args.no_learning_curve:
        metric = args.metric or ("rmsle" if recipe.transform == "log1p" else "rmse")
        curve = learning_curve(recipe, data, metric=metric, progress=not args.quiet, prepared=prepared)
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
