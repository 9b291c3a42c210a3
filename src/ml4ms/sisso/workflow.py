"""SISSO runs from a TOML config: data, primary features with units, operators, CV.

A config has these tables (see the bundled ``octet_*.toml`` recipes in ``ml4ms.recipes``)::

    [data]
    path = "octet"                 # bundled NAME[:SPLIT] or a CSV path (relative to the config)
    target = "dE_RS_minus_ZB_eV_per_atom"   # regression target or class column
    classes = "lowest_energy_structure"     # optional: colours of the 2D map
    tasks = "..."                            # optional: multi-task column

    [features]                     # name = column and unit
    IP_A = { column = "IP_A_eV", unit = "eV" }

    [derived]                      # optional extra primary features
    r_sigma = { formula = "abs(r_p_A + r_s_A - r_p_B - r_s_B)", unit = "angstrom" }

    [sisso]
    kind = "regression"            # or "classification"
    space = "generic"              # or "prl2015"
    operators = ["+", "-", "*", "/"]
    rung = 1
    n_sis = 20
    max_dim = 3

    [cv]
    repeats = 10                   # repeated leave-10%-out; 0 = none
    test_fraction = 0.1
    seed = 0
    method = "leave-out"           # or "loo": leave-one-out, pooled RMSE (repeats ignored)

>>> cfg = parse_config({"data": {"path": "octet", "target": "y"},
...                     "features": {"a": {"column": "A", "unit": "eV"}}})
>>> cfg["sisso"]["kind"], cfg["cv"]["repeats"]
('regression', 0)
"""

import os
import re
import time

import numpy as np

from ..config import Rule, any_keys, boolean, check, integer, is_integer, list_of, number, read_toml, required, string
from ..errors import InputError, from_source
from .estimators import _SPACES
from .features import canonical_operator
from .units import parse_unit

#: the tables and keys of a SISSO config (:func:`ml4ms.config.check`)
SCHEMA = {
    "data": required({"path": required(string()), "target": required(string()), "classes": string(),
                      "tasks": string()}),
    "features": required(any_keys({"column": string(), "unit": string()})),
    "derived": any_keys({"formula": required(string()), "unit": string()}),
    "sisso": {"kind": string("regression", "classification"), "space": string(*_SPACES), "operators": list_of(string()),
              "rung": Rule("0, 1, 2 or 3", lambda v: is_integer(v) and 0 <= v <= 3), "n_sis": integer(1),
              "max_dim": integer(1), "radius_unit": string(),
              "allow_transcendental_units": boolean(), "max_abs_value": number("> 0"),
              "min_abs_value": number(">= 0"), "batch_size": integer(1), "cache_gb": number(">= 0")},
    "cv": {"repeats": integer(0), "test_fraction": number("(0, 1)"), "seed": integer(0),
           "method": string("leave-out", "loo")},
}


def read_config(path):
    """Read and check a SISSO TOML config (a file or a bundled name); relative data paths resolve against its folder.

    Examples
    --------
    >>> read_config("octet_prl2015")["sisso"]["n_sis"]
    26
    """
    raw, path = read_toml(path)
    cfg = parse_config(raw, source=path)
    data_path = cfg["data"]["path"]
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), data_path)
    if not os.path.exists(data_path) and os.path.exists(candidate):
        cfg["data"]["path"] = candidate
    return cfg


def parse_config(raw, source="config"):
    """Check a config dict (:data:`SCHEMA`) and fill in defaults; ``name = "COLUMN"`` is short for
    ``name = { column = "COLUMN" }`` in [features]."""
    if isinstance(raw.get("features"), dict):
        raw = {**raw, "features": {k: {"column": v} if isinstance(v, str) else v for k, v in raw["features"].items()}}
    check(raw, SCHEMA, source)
    features = {str(name): {"column": spec.get("column", name), "unit": spec.get("unit", "")}
                for name, spec in raw["features"].items()}
    derived = {str(name): {"formula": spec["formula"], "unit": spec.get("unit", "")}
               for name, spec in raw.get("derived", {}).items()}
    sisso = {"kind": "regression", **raw.get("sisso", {})}
    cv = {"repeats": 0, "test_fraction": 0.1, "seed": 0, "method": "leave-out", **raw.get("cv", {})}
    for table, specs in (("features", features), ("derived", derived)):
        for name, spec in specs.items():
            _in_config(parse_unit, spec["unit"], where=f"[{table}.{name}] unit", source=source)
    for op in sisso.get("operators", []):
        _in_config(canonical_operator, op, where="[sisso] operators", source=source)
    if "radius_unit" in sisso:
        _in_config(parse_unit, sisso["radius_unit"], where="[sisso] radius_unit", source=source)
    target = raw["data"]["target"]
    if target in {spec["column"] for spec in features.values()}:
        raise InputError(f"[data] target '{target}' is also a column of [features]: the target would explain "
                         "itself", source=source, hint="remove it from [features]")
    return {"data": dict(raw["data"]), "features": features, "derived": derived, "sisso": sisso, "cv": cv,
            "source": source}


def _in_config(check_one, value, where, source):
    """``check_one(value)``, its :class:`~ml4ms.errors.InputError` naming the config file and where in it."""
    try:
        return check_one(value)
    except InputError as exc:
        raise InputError(f"{where}: {exc.message}", source=source, hint=exc.hint) from None


def _estimator(cfg):
    from .estimators import SISSOClassifier, SISSORegressor

    params = {k: v for k, v in cfg["sisso"].items() if k != "kind"}
    if "operators" in params:
        params["operators"] = tuple(params["operators"])
    units = {n: f["unit"] for n, f in cfg["features"].items()}
    units.update({n: f["unit"] for n, f in cfg["derived"].items()})
    derived = {n: f["formula"] for n, f in cfg["derived"].items()} or None
    cls = SISSOClassifier if cfg["sisso"]["kind"] == "classification" else SISSORegressor
    return cls(feature_names=list(cfg["features"]), units=units, derived=derived, **params)


def load_table(cfg):
    """Rows of primary features (dicts), the target, the classes for the map, the tasks, and the data's name."""
    from ..datasets import load_data

    data = load_data(cfg["data"]["path"])
    records = data.records
    if not records or not isinstance(records[0], dict):
        raise InputError("SISSO needs a table (CSV or a bundled table such as 'octet')", source=data.source)
    rows = []
    for i, rec in enumerate(records):
        row = {}
        for name, spec in cfg["features"].items():
            value = rec.get(spec["column"])
            if not isinstance(value, (int, float)):
                raise InputError(f"column '{spec['column']}' is missing or not a number", source=data.source,
                                 index=i, item="row", hint="check [features]")
            row[name] = float(value)
        rows.append(row)

    def column(key, numeric):
        values = [rec.get(key) for rec in records]
        if any(v is None for v in values):
            raise InputError(f"no column '{key}'", source=data.source, hint="check [data]")
        return np.asarray(values, dtype=float if numeric else object)

    regression = cfg["sisso"]["kind"] == "regression"
    needed = int(cfg["sisso"].get("max_dim", 3)) + 2  # more rows than coefficients, and one to spare
    if len(rows) < needed:
        raise InputError(f"{len(rows)} row{'' if len(rows) == 1 else 's'}: too few to fit descriptors of up to "
                         f"{needed - 2} dimensions", source=data.source,
                         hint=f"give at least {needed} rows, or lower [sisso] max_dim")
    y = column(cfg["data"]["target"], regression)
    if not regression and any(isinstance(v, float) and not v.is_integer() for v in y):
        raise InputError(f'kind = "classification" needs class labels, but [data] target '
                         f"'{cfg['data']['target']}' of {data.source} holds real numbers", source=cfg.get("source"),
                         hint='name a column of labels in [data] target, or use kind = "regression"')
    classes = column(cfg["data"]["classes"], False) if cfg["data"].get("classes") else None
    tasks = column(cfg["data"]["tasks"], False) if cfg["data"].get("tasks") else None
    return rows, y, classes, tasks, data.source


def cross_validate(cfg, rows, y, tasks=None, progress=None):
    """Repeated leave-``test_fraction``-out CV (or leave-one-out): per dimension, a list of scores.

    Scores are test RMSEs (regression) or accuracies (classification), one per
    split; for leave-one-out the list holds the single pooled value.
    """
    repeats = int(cfg["cv"]["repeats"])
    loo = cfg["cv"].get("method") == "loo"
    if repeats <= 0 and not loo:
        return None
    rng = np.random.default_rng(int(cfg["cv"]["seed"]))
    n = len(y)
    n_test = max(1, int(round(float(cfg["cv"]["test_fraction"]) * n)))
    regression = cfg["sisso"]["kind"] == "regression"
    if loo:
        splits = [(np.array([i]), np.delete(np.arange(n), i)) for i in range(n)]
    else:
        splits = []
        for _ in range(repeats):
            perm = rng.permutation(n)
            splits.append((np.sort(perm[:n_test]), np.sort(perm[n_test:])))
    scores, pooled = {}, {}
    for rep, (test, train) in enumerate(splits):
        model = _estimator(cfg)
        tr_rows = [rows[i] for i in train]
        te_rows = [rows[i] for i in test]
        if regression:
            model.fit(tr_rows, y[train], **({} if tasks is None else {"tasks": tasks[train]}))
        else:
            model.fit(tr_rows, y[train])
        for m in model.models_:
            kw = {} if tasks is None or not regression else {"tasks": tasks[test]}
            pred = model.predict(te_rows, dim=m["dim"], **kw)
            if regression:
                value = float(np.sqrt(np.mean((pred - y[test]) ** 2)))
                pooled.setdefault(m["dim"], []).append(float((pred - y[test])[0] ** 2))
            else:
                value = float(np.mean(pred == y[test]))
                pooled.setdefault(m["dim"], []).append(value)
            scores.setdefault(m["dim"], []).append(value)
        if progress:
            progress(rep + 1, len(splits))
    if loo:
        if regression:
            return {d: [float(np.sqrt(np.mean(v)))] for d, v in pooled.items()}
        return {d: [float(np.mean(v))] for d, v in pooled.items()}
    return scores


def run(cfg, progress=None):
    """Fit on the whole table, cross-validate; return (model, result dict, rows, y, classes)."""
    rows, y, classes, tasks, source = load_table(cfg)
    regression = cfg["sisso"]["kind"] == "regression"
    start = time.perf_counter()
    model = _estimator(cfg)
    with from_source(source):  # a bad row (a derived feature that is not finite) names the data
        if regression:
            model.fit(rows, y, **({} if tasks is None else {"tasks": tasks}))
        else:
            model.fit(rows, y)
    seconds = time.perf_counter() - start
    cv = cross_validate(cfg, rows, y, tasks, progress)
    loo = cfg["cv"].get("method") == "loo"
    dims = []
    for m in model.models_:
        entry = {"dim": m["dim"], "formula": None, "features": m["features"], "latex": m["latex"],
                 "units": m["units"], "coefficients": m["coefficients"], "intercept": m["intercept"]}
        if regression:
            entry["formula"] = model.formula(m["dim"])
            entry.update(rmse=m["rmse"], max_ae=m["max_ae"])
            if cv:
                entry.update(cv_rmse_mean=float(np.mean(cv[m["dim"]])),
                             cv_rmse_std=None if loo else float(np.std(cv[m["dim"]])))
        else:
            entry["formula"] = "; ".join(m["features"])
            entry.update(overlap=m["overlap"], overlap_size=m["overlap_size"], accuracy=m["accuracy"])
            if cv:
                entry.update(cv_accuracy_mean=float(np.mean(cv[m["dim"]])),
                             cv_accuracy_std=None if loo else float(np.std(cv[m["dim"]])))
        dims.append(entry)
    result = {"kind": cfg["sisso"]["kind"], "n_samples": len(y), "n_features": model.n_features_,
              "seconds": seconds, "dimensions": dims}
    if cv:
        result["cv"] = {"method": cfg["cv"]["method"], "repeats": int(cfg["cv"]["repeats"]),
                        "test_fraction": float(cfg["cv"]["test_fraction"])}
    return model, result, rows, y, classes


def display_unit(unit):
    """A SISSO unit string for an axis label: Å for angstrom, exponents raised, ``""`` stays ``""``.

    Examples
    --------
    >>> display_unit("eV angstrom^-2")
    'eV Å$^{-2}$'
    """
    return re.sub(r"\^(-?[0-9.]+)", r"$^{\1}$", str(unit).replace("angstrom", "Å"))


def plot_results(model, result, rows, y, classes, out_dir, target="target", unit=None):
    """Parity plot (regression) and the 2D map of materials; returns the written paths.

    ``target`` and its ``unit`` (None: unknown) label the parity plot; the map's
    axes carry the units of the descriptor components.
    """
    from ..plots import axis_label, pyplot, save_figure, wrap

    plt = pyplot()

    paths = []
    regression = result["kind"] == "regression"
    if regression:
        ndim = len(model.models_)
        fig, axes = plt.subplots(1, ndim, figsize=(3.6 * ndim, 3.6), squeeze=False)
        lo, hi = float(np.min(y)), float(np.max(y))
        for ax, m in zip(axes[0], model.models_):
            pred = model.predict(rows, dim=m["dim"]) if model.tasks_ is None else None
            if pred is None:
                continue
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
            ax.scatter(y, pred, s=12)
            ax.set_title(f"{m['dim']}D: RMSE {m['rmse']:.4f}" + (f" {unit}" if unit else ""))
            ax.set_xlabel(wrap(axis_label(f"reference {target}", unit), 2.8))
            ax.set_ylabel(axis_label(f"SISSO {m['dim']}D", unit))
        fig.tight_layout()
        path = os.path.join(out_dir, "parity.png")
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    two = [m for m in model.models_ if m["dim"] == 2]
    if two:
        D = model.descriptor(rows, dim=2)
        labels = classes if classes is not None else (y if not regression else np.where(y < 0, "y<0", "y>=0"))
        fig, ax = plt.subplots(figsize=(5, 4.2))
        for label in np.unique(labels.astype(str)):
            sel = labels.astype(str) == label
            ax.scatter(D[sel, 0], D[sel, 1], s=16, label=label)
        ax.set_xlabel(axis_label(f"${two[0]['latex'][0]}$", display_unit(two[0]["units"][0])))
        ax.set_ylabel(axis_label(f"${two[0]['latex'][1]}$", display_unit(two[0]["units"][1])))
        ax.legend()
        ax.set_title("2D SISSO descriptor")
        fig.tight_layout()
        path = os.path.join(out_dir, "map.png")
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def summary_lines(result):
    """Human-readable lines of a result dict."""
    lines = [f"{result['kind']}: {result['n_samples']} samples, {result['n_features']} features, "
             f"fit in {result['seconds']:.2f} s"]
    for d in result["dimensions"]:
        if result["kind"] == "regression":
            text = f"{d['dim']}D  RMSE {d['rmse']:.4f}  MaxAE {d['max_ae']:.4f}"
            if d.get("cv_rmse_std") is not None:
                text += f"  CV RMSE {d['cv_rmse_mean']:.4f} ± {d['cv_rmse_std']:.4f}"
            elif "cv_rmse_mean" in d:
                text += f"  LOO RMSE {d['cv_rmse_mean']:.4f}"
        else:
            text = f"{d['dim']}D  overlap {d['overlap']}  accuracy {d['accuracy']:.3f}"
            if d.get("cv_accuracy_std") is not None:
                text += f"  CV accuracy {d['cv_accuracy_mean']:.3f} ± {d['cv_accuracy_std']:.3f}"
            elif "cv_accuracy_mean" in d:
                text += f"  LOO accuracy {d['cv_accuracy_mean']:.3f}"
        lines.append(text)
        lines.append(f"    {d['formula']}")
    return lines
