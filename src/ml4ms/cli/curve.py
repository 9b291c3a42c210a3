"""``ml4ms learning-curve``: error against training-set size and against descriptor cutoff.

The descriptor is computed once (:func:`ml4ms.workflow.prepare_features`);
every point of a curve refits only the model head, with its hyperparameters
searched on its own training set (the grouped leave-out of the model). With
``--compare-fps`` the same sizes are also drawn by farthest-point sampling
(:func:`ml4ms.selection.farthest_point_sampling`) of the training pool in
descriptor space, and both curves share one log-log plot. With ``--cutoffs``
the descriptor is recomputed for each cutoff radius and the test error at one
training-set size is plotted against the radius (the locality diagnostic).
"""

import os

import numpy as np

from ..errors import InputError, from_source
from ..metrics import METRICS
from .options import (add_input, add_output, add_scheduler, check_output, fraction, non_negative_int,
                      positive_float)


def add_parsers(sub):
    from .learn import _recipe_args

    p = sub.add_parser(
        "learning-curve",
        help="test error vs training-set size (random and FPS training sets) and vs descriptor cutoff",
    )
    add_input(p, "data", help="NAME:SPLIT (bundled), a structure file, or a CSV table")
    _recipe_args(p)
    p.add_argument("--sizes", type=positive_float, nargs="+", metavar="N",
                   help="training-set sizes: fractions (<= 1) of the training pool or numbers (> 1) "
                        "(default: the recipe's [learning_curve] train_sizes)")
    p.add_argument("--seeds", type=non_negative_int, nargs="+", metavar="SEED",
                   help="test-set draws (default: the recipe's)")
    p.add_argument("--test-fraction", type=fraction, default=0.2, metavar="F",
                   help="fraction held out as test set, whole duplicate groups at a time (default 0.2)")
    p.add_argument("--metric", default=None, choices=sorted(METRICS),
                   help="error metric (default: mae; rmsle with --transform log1p)")
    p.add_argument("--compare-fps", action="store_true",
                   help="also draw training sets by farthest-point sampling in descriptor space")
    p.add_argument("--cutoffs", type=positive_float, nargs="+", metavar="R",
                   help="descriptor cutoff radii for the locality diagnostic (refits the descriptor per radius)")
    p.add_argument("--cutoff-key", default="r_cut", metavar="PARAM",
                   help="descriptor parameter that --cutoffs sets (default r_cut)")
    p.add_argument("--cutoff-size", type=positive_float, metavar="N",
                   help="training-set size of the cutoff diagnostic (default: the largest of --sizes)")
    add_output(p, "--json", metavar="OUT", suffixes=(".json",), what="the curves", help="write the curves as JSON")
    add_output(p, "-o", "--output", metavar="PNG", suffixes=(".png",), what="the learning-curve plot",
                   help="learning-curve plot (default: learning_curve.png, or next to --json); "
                        "the cutoff plot goes next to it with the suffix _cutoff")
    add_scheduler(p)
    p.set_defaults(func=run_learning_curve)


# ----------------------------------------------------------------- library-level helpers
def fps_selection(features, metric="euclidean", scale=True):
    """A ``selection(pool, n, rng)`` callable for :func:`ml4ms.model_selection.learning_curve`.

    Picks ``n`` samples of the pool by farthest-point sampling of their
    feature rows (standardised over the pool when ``scale``), starting from a
    random pool member drawn once per pool, so the sets of growing size are
    nested (an FPS ordering's prefix is the FPS selection of that size).

    Examples
    --------
    >>> F = np.array([[0.0], [1.0], [10.0], [4.0], [9.5]])
    >>> select, rng = fps_selection(F), np.random.default_rng(0)
    >>> select(np.arange(5), 3, rng).tolist()  # starts at 4 (drawn), then the farthest: 0, then 3
    [4, 0, 3]
    >>> select(np.arange(5), 4, rng).tolist()  # nested: same pool, same start
    [4, 0, 3, 1]
    """
    from ..selection import farthest_point_sampling

    features = np.asarray(features, dtype=float)
    cache = {}

    def select(pool, n, rng):
        pool = np.asarray(pool, dtype=np.int64)
        key = pool.tobytes()
        order = cache.get(key)
        if order is None or len(order) < n:
            P = features[pool]
            if scale:
                std = P.std(axis=0)
                P = (P - P.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
            start = int(rng.integers(len(pool))) if order is None else int(order[0])
            order = farthest_point_sampling(P.T, n, start=start, metric=metric)
            cache[key] = order
        return pool[order[:n]]

    return select


def _head_metric(recipe):
    """FPS metric and scaling that match the recipe's kernel: L1 for laplacian, scaled unless scale = false."""
    model = recipe.model or {}
    metric = "cityblock" if model.get("kernel") == "laplacian" else "euclidean"
    return metric, bool(model.get("scale", True))


def _curve(prepared, recipe, targets, sizes, seeds, test_fraction, metric, selection, progress):
    from .. import model_selection

    head = prepared.head(recipe.baseline)
    out = model_selection.learning_curve(
        head, np.arange(len(prepared.y)), prepared.y, prepared.groups, train_sizes=sizes, seeds=seeds,
        test_fraction=test_fraction, metric=metric, selection=selection, target_names=targets, progress=progress,
    )
    return {
        "train_size": [int(round(n)) for n in out["train_sizes"]],
        "n_test": [int(n) for n in out["n_test"]],
        "targets": {t: {"mean": out["mean"][t].tolist(), "std": out["std"][t].tolist(),
                        "scores": out["scores"][t].tolist()} for t in targets},
    }


def learning_curves(recipe, data, sizes=None, seeds=None, test_fraction=0.2, metric="mae", compare_fps=False,
                    cutoffs=None, cutoff_key="r_cut", cutoff_size=None, progress=True):
    """Learning curves of a recipe: random (and FPS) training sets, and the cutoff diagnostic.

    Returns
    -------
    dict
        ``curves``: ``{"random": curve, "fps": curve}`` with ``curve =
        {"train_size", "n_test", "targets": {t: {"mean", "std", "scores"}}}``;
        with ``cutoffs`` also ``cutoff = {"key", "values", "train_size",
        "targets": {t: {"mean", "std"}}}``.
    """
    import copy

    from ..recipe import build_model, default_descriptor
    from ..workflow import _targets, prepare_features

    targets = _targets(recipe, data)
    sizes = list(sizes or recipe.learning_curve["train_sizes"])
    seeds = list(seeds if seeds is not None else recipe.cv["seeds"])
    if not 0.0 < float(test_fraction) < 1.0:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    if cutoffs:
        # check the cutoff parameter before any long computation
        params = build_model(recipe, data.records).descriptor.get_params()
        if cutoff_key not in params:
            raise InputError(f"the descriptor has no parameter '{cutoff_key}' for --cutoffs",
                             hint="use a descriptor with a cutoff (e.g. soap, acsf) or set --cutoff-key")
        if any(not r > 0 for r in cutoffs):
            raise InputError("cutoff radii must be > 0")
    prepared = prepare_features(recipe, data, progress=progress)
    result = {
        "data": data.source,
        "targets": targets,
        "metric": metric,
        "seeds": seeds,
        "test_fraction": float(test_fraction),
        "n_structures": len(prepared.y),
        "recipe": recipe.to_dict(),
        "curves": {},
    }
    with from_source(data.source):  # a training set too small or too large for the data names the data
        result["curves"]["random"] = _curve(prepared, recipe, targets, sizes, seeds, test_fraction, metric,
                                            "random", progress)
        if compare_fps:
            dist, scale = _head_metric(recipe)
            select = fps_selection(prepared.features, metric=dist, scale=scale)
            result["curves"]["fps"] = _curve(prepared, recipe, targets, sizes, seeds, test_fraction, metric,
                                             select, progress)
        if cutoffs:
            size = cutoff_size if cutoff_size is not None else max(sizes)
            rows = []
            for r in cutoffs:
                rec = copy.deepcopy(recipe)
                base = dict(rec.descriptor or default_descriptor(data.records))
                base[cutoff_key] = float(r)
                rec.descriptor = base
                prep = prepare_features(rec, data, progress=progress)
                rows.append(_curve(prep, rec, targets, [size], seeds, test_fraction, metric, "random", progress))
            result["cutoff"] = {
                "key": cutoff_key,
                "values": [float(r) for r in cutoffs],
                "train_size": rows[0]["train_size"][0],
                "targets": {t: {"mean": [row["targets"][t]["mean"][0] for row in rows],
                                "std": [row["targets"][t]["std"][0] for row in rows]} for t in targets},
            }
    return result


def cutoff_plot(cutoff, path, metric="MAE", title=None, units=None):
    """Test error against descriptor cutoff radius, mean ± std over seeds, one panel per target.

    ``units``: the unit of each target (dict by name, or list); a missing one is shown as ``unit unknown``.
    Returns the saved (and closed) matplotlib figure.
    """
    from ..plots import _title, axis_label, metric_unit, pyplot, save_figure, unit_of

    plt = pyplot()
    names = list(cutoff["targets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), squeeze=False, layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)
    for j, name in enumerate(names):
        ax = axes[0][j]
        ax.errorbar(cutoff["values"], cutoff["targets"][name]["mean"], yerr=cutoff["targets"][name]["std"],
                    marker="o", capsize=3)
        ax.set_xlabel(f"descriptor {cutoff['key']} (Å)")
        ax.set_ylabel(axis_label(f"test {metric}", metric_unit(metric, unit_of(units, j, name))))
        ax.set_title(f"{name}, {cutoff['train_size']} training structures", fontsize=9)
        ax.grid(True, alpha=0.3)
    _title(fig, title)
    save_figure(fig, path)
    plt.close(fig)
    return fig


# ----------------------------------------------------------------- command
def run_learning_curve(args):
    from ..config import check_value
    from ..datasets import load_data, target_unit
    from ..model_selection import TRAIN_SIZE
    from ..outputs import write_json
    from ..plots import learning_curve_plot
    from .learn import _beside, _check_metric, _recipe

    recipe = _recipe(args)
    plot = args.output or _beside(args.json, "learning_curve.png", "_learning_curve.png")
    check_output(plot, "-o", what="the learning-curve plot")
    if args.cutoffs and not args.cutoff_key:
        raise InputError("--cutoffs needs --cutoff-key")
    if args.cutoff_size is not None:
        check_value(args.cutoff_size, TRAIN_SIZE, "--cutoff-size")
        if not args.cutoffs:
            raise InputError("--cutoff-size is the training-set size of --cutoffs", hint="add --cutoffs or drop it")
    data = load_data(args.data)
    metric = args.metric or ("rmsle" if recipe.transform == "log1p" else "mae")
    _check_metric(metric, recipe, data)
    result = learning_curves(recipe, data, test_fraction=args.test_fraction,
                             metric=metric, compare_fps=args.compare_fps, cutoffs=args.cutoffs,
                             cutoff_key=args.cutoff_key, cutoff_size=args.cutoff_size, progress=not args.quiet)
    labels = {"random": "random", "fps": "FPS"}
    units = {t: target_unit(t, data.name) for t in result["targets"]}
    learning_curve_plot({"curves": {labels[k]: c for k, c in result["curves"].items()}}, plot,
                        metric=metric.upper(), title=f"learning curve, {data.source}", units=units)
    result["plot"] = plot
    for t in result["targets"]:
        print(f"{t} (test {metric}, mean ± std over seeds {result['seeds']}):")
        header = f"{'N':>8}  " + "  ".join(f"{labels[k]:>22}" for k in result["curves"])
        print(header)
        sizes = result["curves"]["random"]["train_size"]
        for i, n in enumerate(sizes):
            cells = [f"{c['targets'][t]['mean'][i]:>11.5g} ± {c['targets'][t]['std'][i]:<8.3g}"
                     for c in result["curves"].values()]
            print(f"{n:>8}  " + "  ".join(cells))
    print(f"learning curve: {plot}")
    if "cutoff" in result:
        cut = result["cutoff"]
        cplot = os.path.splitext(plot)[0] + "_cutoff.png"
        cutoff_plot(cut, cplot, metric=metric.upper(), title=f"locality, {data.source}", units=units)
        result["cutoff_plot"] = cplot
        for t in result["targets"]:
            print(f"{t} at N = {cut['train_size']}: " + ", ".join(
                f"{cut['key']}={r:g}: {m:.5g} ± {s:.3g}"
                for r, m, s in zip(cut["values"], cut["targets"][t]["mean"], cut["targets"][t]["std"])))
        print(f"cutoff plot: {cplot}")
    if args.json:
        write_json(args.json, result)
