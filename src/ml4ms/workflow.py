"""End-to-end steps shared by the CLI, the demo and scripts.

Each function takes a :class:`~ml4ms.recipe.Recipe` and a
:class:`~ml4ms.datasets.Dataset` and returns plain dicts, so results can be
printed, written as JSON or plotted.

Cross-validation and learning curves compute the descriptor once on all
structures of the dataset (the descriptor learns only the species or the
vocabulary of its features from them, never a label), then fit the model
head per fold. Duplicate structures (found by
:func:`ml4ms.duplicates.groups_for`) always stay in one fold.
"""

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

from .errors import InputError
from .metrics import regression_metrics
from .recipe import build_model
from .structures import check_structures, get_targets, is_atoms, record_id


def _targets(recipe, data):
    if not recipe.targets:
        have = ", ".join(sorted(data.targets)) or "none"
        raise InputError("no target given", source=data.source, hint=f"use --target KEY (keys with labels: {have})")
    return list(recipe.targets)


def prepare(data, recipe, labels=True):
    """Validate the records; return ``(records, y)`` (``y`` is None without labels)."""
    records = data.records
    check_structures(records, source=data.source)
    y = get_targets(records, _targets(recipe, data), source=data.source) if labels else None
    return records, y


def featurize(model, records, source=None):
    """Fit the model's descriptor on ``records``; returns ``(descriptor, features)``."""
    descriptor = clone(model.descriptor)
    try:
        descriptor.fit(records)
        features = descriptor.transform(records)
    except InputError as exc:
        if exc.source is None:
            exc = InputError(exc.message, source=source, index=exc.index, hint=exc.hint)
        raise exc from None
    return descriptor, features


def duplicate_groups(records, tol=1e-3):
    """Group labels that keep duplicate structures together (arange for table rows)."""
    from .duplicates import groups_for

    return groups_for(records, tol=tol)


def _summary(rows, targets, metrics):
    out = {}
    for t in targets:
        out[t] = {}
        for m in metrics:
            vals = np.array([r[m] for r in rows if r["target"] == t], dtype=float)
            out[t][m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": int(len(vals))}
    return out


def _subset(records, idx):
    return [records[i] for i in idx]


def cross_validate(recipe, data, n_splits=None, seeds=None, progress=True):
    """Grouped K-fold CV of a recipe, repeated over seeds.

    Returns
    -------
    dict
        ``targets``, ``n_splits``, ``seeds``, ``folds`` (one row per
        seed/fold/target with every metric), ``summary`` (mean and std over
        all folds and seeds per target and metric), ``n_duplicate_groups``,
        and out-of-fold predictions of the first seed (``oof``).
    """
    from .model_selection import GroupedKFold

    records, y = prepare(data, recipe)
    targets = _targets(recipe, data)
    n_splits = int(n_splits or recipe.cv["n_splits"])
    seeds = list(seeds if seeds is not None else recipe.cv["seeds"])
    groups = duplicate_groups(records, tol=recipe.cv.get("duplicate_tol", 1e-3))
    model = build_model(recipe, records)
    descriptor, F = featurize(model, records, data.source)
    rows = []
    oof = np.full_like(y, np.nan)
    total = len(seeds) * n_splits
    bar = tqdm(total=total, desc="cross-validation", disable=not progress)
    for seed in seeds:
        splitter = GroupedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for fold, (train, test) in enumerate(splitter.split(F, y, groups)):
            head = clone(model)
            head.descriptor_ = descriptor
            head.fit_features(F[train], y[train], _subset(records, train), groups=groups[train])
            pred = head.predict_features(F[test], _subset(records, test)).reshape(len(test), -1)
            if seed == seeds[0]:
                oof[test] = pred
            for j, t in enumerate(targets):
                row = {"seed": seed, "fold": fold, "target": t, "n_train": int(len(train)), "n_test": int(len(test))}
                row.update(regression_metrics(y[test, j], pred[:, j]))
                rows.append(row)
            bar.update()
    bar.close()
    metrics = [k for k in rows[0] if k not in ("seed", "fold", "target", "n_train", "n_test")]
    return {
        "data": data.source,
        "targets": targets,
        "n_structures": len(records),
        "n_duplicate_groups": int(len(records) - len(np.unique(groups))),
        "n_splits": n_splits,
        "seeds": seeds,
        "recipe": recipe.to_dict(),
        "folds": rows,
        "summary": _summary(rows, targets, metrics),
        "oof": {"y_true": y.tolist(), "y_pred": oof.tolist()},
    }


def _take_groups(order, groups, n_wanted):
    """Indices of whole groups, in the given group order, until ``n_wanted`` samples."""
    chosen, count = [], 0
    members = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    for g in order:
        if count >= n_wanted:
            break
        chosen.extend(members[g])
        count += len(members[g])
    return np.array(sorted(chosen), dtype=int)


def learning_curve(recipe, data, train_sizes=None, seeds=None, test_fraction=0.2, metric="rmse",
                   fixed_hyperparameters=True, progress=True):
    """Test error against training-set size, mean ± std over seeds.

    For each seed a group-aware test set (``test_fraction`` of the data) is
    held out; training sets of increasing size are drawn (whole duplicate
    groups) from the rest. With ``fixed_hyperparameters`` the model's
    hyperparameters are chosen once on the largest training set of the first
    seed and reused (fast); otherwise every fit searches its own.

    Returns
    -------
    dict
        ``{"train_size": [...], "metric": metric, "targets": {t: {"mean": [...], "std": [...]}}}``
    """
    records, y = prepare(data, recipe)
    targets = _targets(recipe, data)
    train_sizes = list(train_sizes or recipe.learning_curve["train_sizes"])
    seeds = list(seeds if seeds is not None else recipe.cv["seeds"])
    groups = duplicate_groups(records, tol=recipe.cv.get("duplicate_tol", 1e-3))
    model = build_model(recipe, records)
    descriptor, F = featurize(model, records, data.source)
    unique = np.unique(groups)
    scores = {t: [[] for _ in train_sizes] for t in targets}
    sizes = [[] for _ in train_sizes]
    head_model = model
    bar = tqdm(total=len(seeds) * len(train_sizes), desc="learning curve", disable=not progress)
    for s, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        order = rng.permutation(unique)
        test = _take_groups(order, groups, int(round(test_fraction * len(records))))
        in_test = np.zeros(len(records), bool)
        in_test[test] = True
        first_member = {g: i for i, g in reversed(list(enumerate(groups)))}
        pool_order = [g for g in order if not in_test[first_member[g]]]
        n_pool = int((~in_test).sum())
        if s == 0 and fixed_hyperparameters:
            # choose hyperparameters once, on the largest training set of the first seed
            train = _take_groups(pool_order, groups, n_pool)
            ref = clone(model)
            ref.descriptor_ = descriptor
            ref.fit_features(F[train], y[train], _subset(records, train), groups=groups[train])
            head_model = clone(model).set_params(regressor=_fixed(ref))
        for k, f in enumerate(train_sizes):
            n_wanted = max(2, int(round(f * n_pool))) if f <= 1 else int(f)
            train = _take_groups(pool_order, groups, n_wanted)
            head = clone(head_model)
            head.descriptor_ = descriptor
            head.fit_features(F[train], y[train], _subset(records, train), groups=groups[train])
            pred = head.predict_features(F[test], _subset(records, test)).reshape(len(test), -1)
            sizes[k].append(len(train))
            for j, t in enumerate(targets):
                scores[t][k].append(regression_metrics(y[test, j], pred[:, j])[metric])
            bar.update()
    bar.close()
    sizes = [int(round(np.mean(n))) for n in sizes]
    return {
        "data": data.source,
        "metric": metric,
        "train_size": sizes,
        "seeds": seeds,
        "targets": {
            t: {"mean": [float(np.mean(s)) for s in scores[t]], "std": [float(np.std(s)) for s in scores[t]]}
            for t in targets
        },
    }


def _fixed(fitted_model):
    """A regressor like the fitted one, with its chosen hyperparameters fixed."""
    est = fitted_model.estimators_[0]
    reg = clone(fitted_model.regressor)
    if hasattr(est, "best_params_") and len(fitted_model.estimators_) == 1:
        best = est.best_params_
        alpha, gamma = best["alpha"], best["gamma"]
        if isinstance(alpha, list):  # per-output choices: keep the grid to the chosen values
            reg.set_params(alpha=sorted(set(alpha)), gamma=sorted(set(g for g in gamma if g is not None)) or reg.gamma)
        else:
            reg.set_params(alpha=alpha, gamma=gamma if gamma is not None else reg.gamma)
    return reg


def fit(recipe, data, progress=True):
    """Fit a recipe on all of ``data``; returns ``(model, metadata)``."""
    records, y = prepare(data, recipe)
    targets = _targets(recipe, data)
    groups = duplicate_groups(records, tol=recipe.cv.get("duplicate_tol", 1e-3))
    model = build_model(recipe, records)
    descriptor, F = featurize(model, records, data.source)
    model.descriptor_ = descriptor
    model.fit_features(F, y, records, groups=groups)
    from ase.data import chemical_symbols

    species = [chemical_symbols[z] for z in getattr(descriptor, "species_", [])]
    chosen = [getattr(e, "best_params_", None) for e in model.estimators_]
    meta = {
        "targets": targets,
        "recipe": recipe.to_dict(),
        "species": species,
        "n_train": len(records),
        "train_data": data.source,
        "hyperparameters": chosen,
        "has_uncertainty": bool(model.has_uncertainty),
    }
    return model, meta


def predict(model, meta, data, progress=True):
    """Predictions for every record: a list of dict rows (index, id, targets, stds)."""
    records = data.records
    check_structures(records, source=data.source)
    try:
        if meta.get("has_uncertainty"):
            pred, std = model.predict(records, return_std=True)
        else:
            pred, std = model.predict(records), None
    except InputError as exc:
        raise InputError(exc.message, source=data.source, index=exc.index, hint=exc.hint) from None
    pred = np.asarray(pred).reshape(len(records), -1)
    rows = []
    for i, r in enumerate(records):
        row = {"index": i}
        rid = record_id(r)
        if rid is not None:
            row["id"] = rid.item() if hasattr(rid, "item") else rid
        for j, t in enumerate(meta["targets"]):
            row[t] = float(pred[i, j])
            if std is not None:
                row[f"{t}_std"] = float(np.asarray(std).reshape(len(records), -1)[i, j])
        rows.append(row)
    return rows


def evaluate(model, meta, data, progress=True):
    """Metrics of a fitted model against the labels in ``data``."""
    targets = meta["targets"]
    y = get_targets(data.records, targets, source=data.source)
    rows = predict(model, meta, data, progress=progress)
    pred = np.array([[row[t] for t in targets] for row in rows])
    return {
        "data": data.source,
        "n_structures": len(rows),
        "targets": targets,
        "metrics": {t: regression_metrics(y[:, j], pred[:, j]) for j, t in enumerate(targets)},
        "y_true": y.tolist(),
        "y_pred": pred.tolist(),
    }


def is_structure_data(data):
    """True if the records are structures (not table rows)."""
    return bool(data.records) and is_atoms(data.records[0])
