"""``ml4ms select`` and ``ml4ms map``: choose representative structures, and look at the data.

Both compute a per-structure descriptor (``--descriptor NAME --set k=v``, or
the ``[descriptor]`` table of ``--config``; by default SOAP for structures and
composition for tables with a ``formula`` column) and standardise each
feature (mean 0, variance 1; ``--no-scale`` to keep raw values).
"""

import numpy as np

from ..errors import InputError, from_source
from .options import (add_input, add_output, add_quiet, add_scheduler, non_negative_int, positive_float,
                      positive_int)


def _descriptor_args(p):
    from ..descriptors import DESCRIPTORS

    add_input(p, "data", help="NAME:SPLIT (bundled), a structure file, or a CSV table")
    p.add_argument("--descriptor", metavar="NAME", help=f"descriptor name: {', '.join(DESCRIPTORS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="descriptor parameter, VALUE in TOML syntax (e.g. columns=['IP_A_eV','IP_B_eV'])")
    add_input(p, "--config", metavar="FILE.toml", help="take the [descriptor] table of a recipe (file or bundled name)")
    p.add_argument("--no-scale", action="store_true", help="do not standardise the features")
    add_quiet(p)


def add_parsers(sub):
    p = sub.add_parser("select", help="choose N representative structures (or features) by FPS or CUR")
    _descriptor_args(p)
    p.add_argument("-n", "--n", type=positive_int, required=True, metavar="N", help="how many to select")
    p.add_argument("--method", choices=["fps", "cur"], default="fps",
                   help="fps: farthest-point sampling (default); cur: CUR decomposition leverage scores")
    p.add_argument("--features", action="store_true",
                   help="select descriptor features instead of structures (writes index and name)")
    p.add_argument("--seed", type=non_negative_int, metavar="SEED",
                   help="FPS: start from a random structure (default: the first)")
    add_output(p, "-o", "--output", required=True, metavar="TXT", suffixes=(".txt",), what="the selection",
               help="indices in selection order, one per line")
    add_scheduler(p)
    p.set_defaults(func=run_select)

    p = sub.add_parser("map", help="2-D map (PCA or kernel PCA) of the structures, coloured by a property")
    _descriptor_args(p)
    p.add_argument("--color", required=True, metavar="KEY",
                   help="property or label to colour by (records without a value: grey rings, 'no value (n)')")
    p.add_argument("--kernel-pca", action="store_true", help="RBF kernel PCA instead of linear PCA")
    p.add_argument("--gamma", type=positive_float, metavar="G", help="kernel PCA width (default 1 / n_features)")
    add_input(p, "--highlight", metavar="TXT", help="indices (e.g. from 'ml4ms select') to circle on the map")
    add_output(p, "--csv", metavar="CSV", suffixes=(".csv",), what="the coordinates",
               help="also write the 2-D coordinates")
    add_output(p, "--chemiscope", metavar="JSON", suffixes=(".json", ".json.gz"), what="the chemiscope input",
               help="also write a chemiscope input file (.json or .json.gz: structures, map coordinates, properties; "
                    "needs 'pip install chemiscope')")
    add_output(p, "-o", "--output", required=True, metavar="FILE", suffixes=(".png", ".html"), what="the map",
               help="the map: a PNG image, or (.html) one self-contained page to explore offline: hover a point for "
                    "its id and properties, click it to select it and copy its id, wheel to zoom, drag to pan")
    add_scheduler(p)
    p.set_defaults(func=run_map)


def _features(args):
    """Load the data and compute the standardised features; returns ``(data, X, feature_names, spec)``."""
    from ..datasets import load_data
    from ..descriptors import make_descriptor
    from ..models.kernel import feature_scaling
    from ..recipe import default_descriptor
    from ..structures import check_structures
    from .featurize import descriptor_spec

    spec = descriptor_spec(args)
    data = load_data(args.data)
    if not data.records:
        raise InputError("no records", source=data.source)
    check_structures(data.records, source=data.source)
    if not spec.get("name"):
        spec = {**default_descriptor(data.records), **spec}
    descriptor = make_descriptor(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    if "progress" in descriptor.get_params():
        descriptor.set_params(progress=not args.quiet)
    with from_source(data.source):
        X = np.asarray(descriptor.fit_transform(data.records), dtype=float)
        names = [str(n) for n in descriptor.get_feature_names_out()]
    if X.ndim != 2 or len(X) != len(data.records):
        raise InputError(f"descriptor '{spec['name']}' gives per-atom rows; choose a per-structure reduction",
                         hint="e.g. --set reduce=mean")
    if not args.no_scale:
        mean, scale = feature_scaling(X)
        X = (X - mean) / scale
    return data, X, names, spec


def run_select(args):
    from ..outputs import write_text
    from ..selection import CUR, FPS

    if args.seed is not None and args.method != "fps":
        raise InputError("--seed draws the first structure of FPS; CUR is deterministic",
                         hint="drop --seed, or use --method fps")
    data, X, names, spec = _features(args)
    kind = "feature" if args.features else "sample"
    size = X.shape[1] if args.features else X.shape[0]
    what = "features" if args.features else "records"
    if not 1 <= args.n <= size:
        raise InputError(f"cannot select {args.n} of {size} {what}", source=data.source,
                         hint=f"give --n between 1 and {size}")
    if args.method == "fps":
        start = 0 if args.seed is None else "random"
        selector = FPS(n_to_select=args.n, kind=kind, start=start, random_state=args.seed, progress=not args.quiet)
    else:
        selector = CUR(n_to_select=args.n, kind=kind, progress=not args.quiet)
    idx = selector.fit(X).selected_idx_
    if args.features:
        text = "".join(f"{i}\t{names[i]}\n" for i in idx)
    else:
        text = "".join(f"{i}\n" for i in idx)
    write_text(args.output, text)
    print(f"{len(idx)} of {size} {what} of {data.source} selected by {args.method.upper()} "
          f"({spec['name']}, {X.shape[1]} features); indices written to {args.output}")


def _no_value(v):
    """True for a missing colour value: None, an empty string, NaN or an infinite number."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return True
    return isinstance(v, (float, np.floating)) and not np.isfinite(v)


def _colour_values(records, key, source):
    """``(values, None)`` for numbers (NaN where a record has no value) or ``(None, labels)`` (None there)."""
    from ..structures import available_keys, get_property

    values = []
    for i, r in enumerate(records):
        v = get_property(r, key)
        if v is not None and np.ndim(v) != 0:
            raise InputError(f"'{key}' is not a scalar property to colour by", source=source, index=i,
                             hint=f"choose one of: {', '.join(available_keys(r)[:15])}")
        v = v.item() if hasattr(v, "item") else v
        values.append(None if _no_value(v) else v)
    present = [v for v in values if v is not None]
    if not present:
        have = ", ".join(k for k in available_keys(records[0])[:15])
        raise InputError(f"no scalar property '{key}' to colour by", source=source, hint=f"choose one of: {have}")
    try:
        numeric = [float(v) for v in present]
    except (TypeError, ValueError):
        numeric = None
    if numeric is None or isinstance(present[0], (bool, np.bool_)):
        return None, [None if v is None else str(v) for v in values]
    return np.array([np.nan if v is None else float(v) for v in values]), None


def _read_indices(path, n):
    import os

    if not os.path.exists(path):
        raise InputError("file not found", source=path, hint="give the file written by 'ml4ms select'")
    idx = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            field = line.split("#")[0].split()
            if not field:
                continue
            try:
                i = int(field[0])
            except ValueError:
                raise InputError(f"line {line_no} is not an index ({field[0]!r})", source=path) from None
            if not 0 <= i < n:
                raise InputError(f"index {i} on line {line_no} is outside 0..{n - 1}", source=path,
                                 hint="the indices must refer to the same data")
            idx.append(i)
    return np.asarray(idx, dtype=int)


def embed(X, kernel_pca=False, gamma=None):
    """2-D coordinates of the rows of ``X`` by PCA or RBF kernel PCA; returns ``(Z, explained)``.

    ``explained`` is the fraction of variance of the two PCA components (None for kernel PCA).
    A map needs at least 2 rows whose features differ (more than rounding).

    Examples
    --------
    >>> embed(np.ones((3, 2)))
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: nothing to map: the 3 records have the same features; give at least 2 records with different features
    """
    from sklearn.decomposition import PCA, KernelPCA

    from ..models.kernel import constant_features

    n_comp = min(2, X.shape[0], X.shape[1])
    if n_comp < 1:
        raise InputError("nothing to map: no features or no records")
    if len(X) < 2 or constant_features(X).all():
        what = "1 record" if len(X) < 2 else f"the {len(X)} records have the same features"
        raise InputError(f"nothing to map: {what}", hint="give at least 2 records with different features")
    if kernel_pca:
        model = KernelPCA(n_components=min(2, X.shape[0]), kernel="rbf", gamma=gamma, random_state=0)
        Z, explained = model.fit_transform(X), None
    else:
        model = PCA(n_components=n_comp, random_state=0)
        Z = model.fit_transform(X)
        explained = [float(v) for v in model.explained_variance_ratio_]
    if Z.shape[1] < 2:
        Z = np.column_stack([Z, np.zeros(len(Z))])
    return Z[:, :2], explained


def map_plot(Z, path, values=None, labels=None, color_key="", highlight=None, title=None, axis_names=None,
             unit=None):
    """Scatter of 2-D coordinates coloured by numbers (colour bar) or labels (legend); PNG.

    Records without a value (NaN in ``values``, None in ``labels``) are drawn
    as grey hollow markers, ``no value (n)`` in the legend, outside the colour
    scale and the categories. ``unit``: of the numbers, on the colour bar
    (None: ``unit unknown``). Returns the saved (and closed) figure.
    """
    from ..plots import _title, axis_label, pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.6), layout="constrained")
    if values is not None:
        values = np.asarray(values, dtype=float)
        missing = ~np.isfinite(values)
        if not missing.all():
            sc = ax.scatter(Z[~missing, 0], Z[~missing, 1], c=values[~missing], s=10, cmap="viridis", alpha=0.85)
            fig.colorbar(sc, ax=ax, label=axis_label(color_key, unit))
        cats = []
    else:
        missing = np.array([label is None for label in labels])
        cats = sorted({label for label in labels if label is not None})
        cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
        labels = np.asarray(labels, dtype=object)
        for k, c in enumerate(cats):
            m = labels == c
            ax.scatter(Z[m, 0], Z[m, 1], s=10, alpha=0.85, color=cmap(k % cmap.N), label=c)
    if missing.any():
        ax.scatter(Z[missing, 0], Z[missing, 1], s=14, facecolors="none", edgecolors="0.55", lw=0.8,
                   label=f"no value ({int(missing.sum())})")
    if highlight is not None and len(highlight):
        ax.scatter(Z[highlight, 0], Z[highlight, 1], s=40, facecolors="none", edgecolors="k", lw=0.8,
                   label=f"selected ({len(highlight)})")
    handles, names = ax.get_legend_handles_labels()
    if len(cats) > 20:  # too many categories for a legend: only the other entries
        kept = [k for k, n in enumerate(names) if n not in cats]
        handles, names = [handles[k] for k in kept], [names[k] for k in kept]
    if handles:
        ax.legend(handles, names, title=color_key if cats else None, fontsize=8, markerscale=1.5)
    x_name, y_name = axis_names or ("component 1", "component 2")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    _title(fig, title, ax=ax, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def _ids(records):
    """What identifies each record on an interactive map: its ``id``, else its index.

    Examples
    --------
    >>> _ids([{"id": "mp-1"}, {"x": 2}])
    ['mp-1', '1']
    """
    from ..structures import record_id

    return [str(record_id(r, default=i)) for i, r in enumerate(records)]


def run_map(args):
    from ..datasets import target_unit
    from ..outputs import write_csv
    from ..plots import axis_label

    if args.gamma is not None and not args.kernel_pca:
        raise InputError("--gamma is the width of kernel PCA", hint="add --kernel-pca, or drop --gamma")
    if args.chemiscope:
        from ..maps import import_chemiscope

        import_chemiscope(args.chemiscope)  # before the work: is the optional package there?
    data, X, names, spec = _features(args)
    values, labels = _colour_values(data.records, args.color, data.source)
    highlight = _read_indices(args.highlight, len(X)) if args.highlight else None
    with from_source(data.source):
        Z, explained = embed(X, kernel_pca=args.kernel_pca, gamma=args.gamma)
    method = "kernel PCA (RBF)" if args.kernel_pca else "PCA"
    if explained:
        unit = "mixed feature units" if args.no_scale else "no unit"
        axis_names = [f"PC{k + 1} ({unit}; {100 * v:.0f} % of variance)" for k, v in enumerate(explained)]
        axis_names += [f"PC2 ({unit})"] * (2 - len(axis_names))
    else:
        axis_names = ["kernel PC1 (no unit)", "kernel PC2 (no unit)"]
    features = f"{spec['name']} ({X.shape[1]} features{'' if args.no_scale else ', standardised'})"
    title, unit = f"{method} of {data.source}, {features}", target_unit(args.color, data.name)
    hover = None
    if args.output.lower().endswith(".html") or args.chemiscope:
        from ..maps import hover_columns

        hover = hover_columns(data.records)  # every record's scalar properties, read once for both outputs
    if args.output.lower().endswith(".html"):
        from ..maps import write_map_html

        shown = {k: v for k, v in hover.items() if k != args.color}  # the colour: once
        write_map_html(args.output, Z, _ids(data.records), values=values, labels=labels,
                       color_label=axis_label(args.color, unit) if values is not None else args.color,
                       properties=shown, highlight=highlight, title=title, axis_names=axis_names)
    else:
        map_plot(Z, args.output, values=values, labels=labels, color_key=args.color, highlight=highlight,
                 title=title, axis_names=axis_names, unit=unit)
    if args.chemiscope:
        from ..maps import write_chemiscope

        write_chemiscope(args.chemiscope, data.records, Z, axis_names, args.color, values=values, labels=labels,
                         unit=unit, properties=hover, title=title)
    if args.csv:
        from ..structures import record_id

        rows = []
        for i, r in enumerate(data.records):
            row = {"index": i}
            rid = record_id(r)
            if rid is not None:
                row["id"] = rid.item() if hasattr(rid, "item") else rid
            row.update(x=float(Z[i, 0]), y=float(Z[i, 1]))
            value = labels[i] if values is None else (float(values[i]) if np.isfinite(values[i]) else None)
            row[f"colour {args.color}" if args.color in ("index", "x", "y") else args.color] = value  # empty: none
            rows.append(row)
        write_csv(args.csv, rows)
    n_missing = int(np.sum(~np.isfinite(values))) if values is not None else labels.count(None)
    print(f"{method} map of {len(X)} records of {data.source} coloured by {args.color}"
          + (f" ({n_missing} without a value, drawn as grey rings)" if n_missing else "") + f": {args.output}"
          + (f"; chemiscope input: {args.chemiscope}" if args.chemiscope else ""))
