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

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone

from .config import check_value
from .errors import InputError, from_source
from .metrics import METRICS, regression_metrics, undefined_reason
from .models import regressor_class
from .models.structure import with_blocks
from .recipe import build_model
from .structures import ATOM_COUNT_KEYS, check_structures, get_targets, is_atoms, record_id
from .transforms import TargetTransform


def _targets(recipe, data):
    if not recipe.targets:
        have = ", ".join(sorted(data.targets)) or "none"
        raise InputError("no target given", source=data.source, hint=f"use --target KEY (keys with labels: {have})")
    return list(recipe.targets)


def read_labels(recipe, data):
    """The recipe's targets of every record, shape (n, n_targets), checked before any work.

    The recipe's target transform is applied once to all of them, so that a
    baseline missing from a record or a value outside the transform's domain
    (log1p of a value <= -1) is named by its record and the data.
    """
    targets = _targets(recipe, data)
    y = get_targets(data.records, targets, source=data.source)
    transform = TargetTransform(function=recipe.transform, per_atom=recipe.per_atom, baseline=recipe.baseline)
    for j, name in enumerate(targets):
        transform.forward(y[:, j], data.records, source=data.source, name=name)
    return y


def prepare(data, recipe, labels=True):
    """Validate the records and :func:`read_labels`; return ``(records, y)`` (``y`` is None without labels)."""
    records = data.records
    check_structures(records, source=data.source)
    if recipe.per_atom:
        for i, record in enumerate(records):
            if isinstance(record, dict) and not any(k in record for k in ATOM_COUNT_KEYS):
                raise InputError("per-atom targets need the number of atoms, and this row has none",
                                 source=data.source, index=i, item="row",
                                 hint="add an n_atoms column, or leave out --per-atom ([target] per_atom)")
    return records, (read_labels(recipe, data) if labels else None)


def featurize(model, records, source=None, progress=True):
    """Fit the model's descriptor on ``records``; returns ``(descriptor, features)``."""
    descriptor = clone(model.descriptor)
    if "progress" in descriptor.get_params():
        descriptor.set_params(progress=progress)
    with from_source(source):
        features = descriptor.fit_transform(records)
    return descriptor, features


def duplicate_groups(records, tol=1e-3, progress=True):
    """Group labels that keep duplicate structures together (one group per table row)."""
    from .duplicates import groups_for

    return groups_for(records, tol=tol, progress=progress)


def _light_records(records, baseline):
    """What target transforms need of each record: the atom count and the baseline."""
    from .structures import get_property, n_atoms

    return [{"n_atoms": n_atoms(r), **({baseline: get_property(r, baseline)} if baseline else {})} for r in records]


class FeatureHead(RegressorMixin, BaseEstimator):
    """The part of a :class:`~ml4ms.models.structure.StructureRegressor` after the descriptor.

    ``X`` are row indices into precomputed ``features``, so the generic
    splitters of :mod:`ml4ms.model_selection` can cross-validate a model
    without recomputing its descriptor for every fold. ``groups`` (indexed
    the same way) reach the regressor's hyperparameter search.
    """

    def __init__(self, *, model=None, features=None, records=None, groups=None):
        self.model = model
        self.features = features
        self.records = records
        self.groups = groups

    def fit(self, X, y):
        idx = np.asarray(X, dtype=int).ravel()
        self.model_ = clone(self.model).fit_features(
            self.features[idx], y, [self.records[i] for i in idx],
            groups=None if self.groups is None else self.groups[idx])
        return self

    def predict(self, X):
        idx = np.asarray(X, dtype=int).ravel()
        return self.model_.predict_features(self.features[idx], [self.records[i] for i in idx])


@dataclass
class Prepared:
    """What every step needs, computed once: validated records, labels, groups, features."""

    records: list
    y: np.ndarray
    groups: np.ndarray
    model: object  # the unfitted StructureRegressor of the recipe
    descriptor: object  # its descriptor, fitted on the records
    features: np.ndarray

    def head(self, baseline=None):
        return FeatureHead(model=self.model, features=self.features,
                           records=_light_records(self.records, baseline), groups=self.groups)


def prepare_features(recipe, data, progress=True):
    """Validate, read labels, find duplicate groups and compute the descriptor once.

    Pass the result as ``prepared=`` to :func:`cross_validate`,
    :func:`learning_curve` and :func:`fit` to share the work.
    """
    records, y = prepare(data, recipe)
    groups = duplicate_groups(records, tol=recipe.cv.get("duplicate_tol", 1e-3), progress=progress)
    model = build_model(recipe, records, progress=progress)
    descriptor, F = featurize(model, records, data.source, progress=progress)
    model.set_params(regressor=with_blocks(model.regressor, descriptor))  # for the folds' clones of the model
    return Prepared(records, y, groups, model, descriptor, F)


def cross_validate(recipe, data, n_splits=None, seeds=None, progress=True, prepared=None):
    """Grouped K-fold CV of a recipe, repeated over seeds.

    Returns
    -------
    dict
        As :func:`ml4ms.model_selection.cross_validate` (``folds``,
        ``summary`` with mean and std over all folds and seeds, out-of-fold
        ``predictions``), plus ``data``, ``n_structures``,
        ``n_duplicate_groups`` (structures sharing a group with another) and
        ``recipe``.
    """
    from . import model_selection

    prep = prepared or prepare_features(recipe, data, progress)
    head, y, groups = prep.head(recipe.baseline), prep.y, prep.groups
    n_splits = int(n_splits or recipe.cv["n_splits"])
    model_selection.check_n_splits(n_splits, groups, name="--n-splits ([cv] n_splits)", source=data.source)
    with from_source(data.source):
        result = model_selection.cross_validate(
            head, np.arange(len(y)), y, groups, n_splits=n_splits,
            seeds=list(seeds if seeds is not None else recipe.cv["seeds"]),
            target_names=_targets(recipe, data), progress=progress,
        )
    _, counts = np.unique(groups, return_counts=True)
    result.update(data=data.source, n_structures=len(y), n_duplicate_groups=int(counts[counts > 1].sum()),
                  recipe=recipe.to_dict(), y_true=y)
    return result


def learning_curve(recipe, data, train_sizes=None, seeds=None, test_fraction=0.2, metric="rmse",
                   fixed_hyperparameters=True, progress=True, prepared=None):
    """Test error against training-set size, mean ± std over seeds (group-aware test sets).

    With ``fixed_hyperparameters`` the hyperparameters are chosen once, on
    the training pool of the first seed, and reused for every size (fast);
    otherwise every fit searches its own.

    Returns
    -------
    dict
        ``{"train_size": [...], "metric": metric, "targets": {t: {"mean": [...], "std": [...]}}}``
    """
    from . import model_selection

    prep = prepared or prepare_features(recipe, data, progress)
    head, y, groups = prep.head(recipe.baseline), prep.y, prep.groups
    seeds = check_value(list(seeds if seeds is not None else recipe.cv["seeds"]), model_selection.SEEDS, "seeds")
    targets = _targets(recipe, data)
    with from_source(data.source):
        if fixed_hyperparameters:
            pool, _ = model_selection.group_train_test_split(groups, test_fraction,
                                                             random_state=np.random.default_rng(seeds[0]))
            reference = clone(head).fit(pool, y[pool]).model_
            head.set_params(model=clone(head.model).set_params(regressor=_fixed(reference)))
        out = model_selection.learning_curve(
            head, np.arange(len(y)), y, groups,
            train_sizes=list(train_sizes or recipe.learning_curve["train_sizes"]), seeds=seeds,
            test_fraction=test_fraction, metric=metric, target_names=targets, progress=progress,
        )
    return {
        "data": data.source,
        "metric": metric,
        "train_size": [int(round(n)) for n in out["train_sizes"]],
        "seeds": seeds,
        "targets": {t: {"mean": out["mean"][t].tolist(), "std": out["std"][t].tolist()} for t in targets},
    }


def _fixed(fitted_model):
    """A regressor like the fitted one's, its grid narrowed to the chosen hyperparameters.

    With one target this fixes ``alpha`` and ``gamma``; with several (chosen
    per target) the grid keeps only the chosen values.
    """
    reg = clone(fitted_model.regressor)
    best = getattr(fitted_model.estimators_[0], "best_params_", None)
    if best is None or len(fitted_model.estimators_) != 1:
        return reg
    alpha, gamma = best["alpha"], best["gamma"]
    alphas = sorted(set(alpha)) if isinstance(alpha, list) else [alpha]
    gammas = sorted(set(g for g in (gamma if isinstance(gamma, list) else [gamma]) if g is not None))
    reg.set_params(alpha=alphas if len(alphas) > 1 else alphas[0])
    if gammas:
        reg.set_params(gamma=gammas if len(gammas) > 1 else gammas[0])
    return reg


#: structures per chunk of a streamed fit (:func:`fit`)
FIT_CHUNK = 1000


def fit(recipe, data, progress=True, prepared=None, chunk=FIT_CHUNK):
    """Fit a recipe on all of ``data``; returns ``(model, metadata)``.

    A model whose regressor fits from sufficient statistics (``ridge``,
    ``bayesian_ridge``) is fitted streamed, ``chunk`` structures at a time
    (:meth:`~ml4ms.models.structure.StructureRegressor.fit_streamed`), unless
    ``prepared`` already holds the features; the metadata then names the chunk.
    """
    targets = _targets(recipe, data)
    streamed = prepared is None and hasattr(regressor_class(recipe.model["name"]), "fit_statistics")
    if streamed:
        records, y = prepare(data, recipe)
        model = build_model(recipe, records)
        if "progress" in model.descriptor.get_params():
            model.descriptor.set_params(progress=progress)
        with from_source(data.source):
            model.fit_streamed(records, y, chunk=chunk, progress=progress)
    else:
        prep = prepared or prepare_features(recipe, data, progress)
        records, y = prep.records, prep.y
        model = clone(prep.model)
        model.descriptor_ = prep.descriptor
        with from_source(data.source):
            model.fit_features(prep.features, y, records, groups=prep.groups)
    descriptor = model.descriptor_
    from ase.data import chemical_symbols

    species = [chemical_symbols[z] for z in getattr(descriptor, "species_", [])]
    chosen = [getattr(e, "best_params_", None) or getattr(e, "member_params_", None) or _evidence_params(e)
              for e in model.estimators_]
    meta = {
        "targets": targets,
        "recipe": recipe.to_dict(),
        "species": species,
        "n_train": len(records),
        "train_data": data.source,
        "hyperparameters": chosen,
        "has_uncertainty": bool(model.has_uncertainty),
    }
    if streamed:
        meta["streamed_chunk"] = int(chunk)
    return model, meta


def _evidence_params(estimator):
    """Noise and prior precisions of a Bayesian ridge (chosen by evidence), or None."""
    found = {k.rstrip("_"): float(getattr(estimator, k)) for k in ("alpha_", "lambda_")
             if np.isscalar(getattr(estimator, k, None))}
    return found or None


def _show_progress(model, progress):
    """Switch the progress bar of a fitted model's descriptor on or off."""
    desc = getattr(model, "descriptor_", None)
    if desc is not None and "progress" in desc.get_params():
        desc.set_params(progress=progress)


def predict(model, meta, data, progress=True):
    """Predictions for every record: a list of dict rows (index, id, targets, stds)."""
    records = data.records
    check_structures(records, source=data.source)
    _show_progress(model, progress)
    with from_source(data.source):
        return prediction_rows(model, meta, records)


def prediction_rows(model, meta, records, start=0):
    """Dict rows of ``model``'s predictions for ``records``: ``index`` (from ``start``), ``id``, targets, stds.

    A ``{target}_std`` column follows each target when the model has an
    uncertainty (``meta["has_uncertainty"]``).
    """
    if meta.get("has_uncertainty"):
        pred, std = model.predict(records, return_std=True)
        std = np.asarray(std).reshape(len(records), -1)
    else:
        pred, std = model.predict(records), None
    pred = np.asarray(pred).reshape(len(records), -1)
    rows = []
    for i, r in enumerate(records):
        row = {"index": start + i}
        rid = record_id(r)
        if rid is not None:
            row["id"] = rid.item() if hasattr(rid, "item") else rid
        for j, t in enumerate(meta["targets"]):
            row[t] = float(pred[i, j])
            if std is not None:
                row[f"{t}_std"] = float(std[i, j])
        rows.append(row)
    return rows


def predict_local(model, meta, data, progress=True):
    """Per-atom contributions of a sum-of-local model: one dict row per atom.

    Rows hold ``structure`` (index), ``id`` (if the records have one),
    ``atom`` (index within the structure), ``element``, ``pos_x``, ``pos_y``,
    ``pos_z`` (Å) and one column per target; the contributions of a structure add up to
    its prediction (see :meth:`~ml4ms.models.structure.StructureRegressor.predict_local`).
    """
    from ase.data import chemical_symbols

    records = data.records
    check_structures(records, source=data.source)
    if not is_structure_data(data):
        raise InputError("per-atom contributions need structures, not table rows", source=data.source)
    _show_progress(model, progress)
    with from_source(data.source):
        parts = model.predict_local(records)
    rows = []
    for i, (r, part) in enumerate(zip(records, parts)):
        part = np.asarray(part).reshape(len(r), -1)
        rid = record_id(r)
        for a in range(len(r)):
            row = {"structure": i}
            if rid is not None:
                row["id"] = rid.item() if hasattr(rid, "item") else rid
            x, y, z = (float(v) for v in r.positions[a])
            row.update(atom=a, element=chemical_symbols[int(r.numbers[a])], pos_x=x, pos_y=y, pos_z=z)
            for j, t in enumerate(meta["targets"]):
                row[t] = float(part[a, j])
            rows.append(row)
    return rows


def evaluate(model, meta, data, progress=True):
    """Metrics of a fitted model against the labels in ``data``.

    A metric undefined for a target's labels (:data:`ml4ms.metrics.METRIC_DOMAINS`: ``r2`` without spread,
    ``rmsle`` of values <= -1) is left out of its ``metrics`` and named, with the reason, in ``omitted``.
    """
    targets = meta["targets"]
    y = get_targets(data.records, targets, source=data.source)
    rows = predict(model, meta, data, progress=progress)
    pred = np.array([[row[t] for t in targets] for row in rows])
    omitted = {t: {m: undefined_reason(m, y[:, j]) for m in METRICS if undefined_reason(m, y[:, j])}
               for j, t in enumerate(targets)}
    out = {
        "data": data.source,
        "n_structures": len(rows),
        "targets": targets,
        "metrics": {t: regression_metrics(y[:, j], pred[:, j]) for j, t in enumerate(targets)},
        "omitted": {t: reasons for t, reasons in omitted.items() if reasons},
        "y_true": y.tolist(),
        "y_pred": pred.tolist(),
    }
    if meta.get("has_uncertainty"):
        from .uncertainty import calibration_metrics

        std = np.array([[row[f"{t}_std"] for t in targets] for row in rows])
        if np.all(np.isfinite(std)) and np.all(std > 0):
            out["calibration"] = {t: calibration_metrics(y[:, j], pred[:, j], std[:, j])
                                  for j, t in enumerate(targets)}
            out["y_std"] = std.tolist()
    return out


def is_structure_data(data):
    """True if the records are structures (not table rows)."""
    return bool(data.records) and is_atoms(data.records[0])
