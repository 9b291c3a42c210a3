"""Model files as data: a folder with ``model.json`` and ``arrays.npz``; no pickle.

An estimator is stored as its class path, its ``get_params(deep=False)`` and
its fitted attributes (names ending in ``_``); arrays go to the ``.npz``
(read with ``allow_pickle=False``), everything else to JSON.

Loading a file builds nothing but the classes in :data:`MODEL_CLASSES`, an
explicit registry: never a function, never "anything under ``ml4ms.``". The
stored parameters must be among the class's declared parameters (its
``__init__`` signature) and the stored fitted attributes must be plain
``name_`` data attributes, so a file cannot reach a method either. A class
may list the options it no longer has in ``_removed_parameters`` (see
:func:`_drop_removed`): an old file that holds one at the value that left
it out still loads, any other value is refused.

``model.json`` records the SHA-256 of ``arrays.npz`` and of its own content
(:func:`seal`), so an edited or damaged file is refused in one line
(:class:`~ml4ms.errors.ModelFileError`). The checksums catch edits and
damage; they are not a signature (whoever edits a file can recompute them).
What makes a file from a stranger safe to load is the registry: the worst a
forged file can do is hold wrong numbers.

>>> import tempfile, os
>>> from ml4ms.models.kernel import KernelRidge
>>> m = KernelRidge(alpha=0.1, gamma=1.0).fit(np.eye(3), [0.0, 1.0, 2.0])
>>> d = os.path.join(tempfile.mkdtemp(), "m")
>>> save_model(d, m, {"targets": ["y"]})
>>> m2, meta = load_model(d)
>>> bool(np.allclose(m2.predict(np.eye(3)), m.predict(np.eye(3)))), meta["targets"]
(True, ['y'])
"""

import hashlib
import importlib
import io
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone

import numpy as np

from . import __version__
from .errors import ModelFileError
from .outputs import user_mode

FORMAT = "ml4ms-model"
FORMAT_VERSION = 2  # 2: model.json checksums itself (format 1 did only the arrays)
JSON_NAME = "model.json"
ARRAYS_NAME = "arrays.npz"

#: The only classes a model file may build, by the class path stored in the
#: file. A new estimator that is saved in model files is added here (the test
#: suite checks that every public estimator class of ml4ms is).
MODEL_CLASSES = frozenset({
    "ml4ms.descriptors.acsf.ACSF",
    "ml4ms.descriptors.chebyshev.Chebyshev",
    "ml4ms.descriptors.columns.ColumnFeatures",
    "ml4ms.descriptors.composition.CompositionFeatures",
    "ml4ms.descriptors.concat.ConcatDescriptor",
    "ml4ms.descriptors.coulomb.BagOfBonds",
    "ml4ms.descriptors.coulomb.CoulombMatrix",
    "ml4ms.descriptors.local_kernel.LocalKernelFeatures",
    "ml4ms.descriptors.ngrams.BondTopologyNGrams",
    "ml4ms.descriptors.soap.SOAP",
    "ml4ms.descriptors.structure_rows.StructureRows",
    "ml4ms.models.committee.CommitteeRegressor",
    "ml4ms.models.ensemble.EnsembleRegressor",
    "ml4ms.models.gp.GaussianProcessRegressor",
    "ml4ms.models.kernel.KernelRidge",
    "ml4ms.models.linear.BayesianRidge",
    "ml4ms.models.linear.Ridge",
    "ml4ms.models.mpnn.MPNNRegressor",
    "ml4ms.models.structure.StructureRegressor",
    "ml4ms.potentials.model.NeuralPotential",
    "ml4ms.sisso.estimators.SISSOClassifier",
    "ml4ms.sisso.estimators.SISSORegressor",
    "sklearn.decomposition._pca.PCA",
    "sklearn.linear_model._bayes.BayesianRidge",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
})


def _class_path(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _registered_class(path, where):
    """The class registered under ``path``; a :class:`ModelFileError` for anything else."""
    from sklearn.base import BaseEstimator

    if not isinstance(path, str) or path not in MODEL_CLASSES:
        shown = path if isinstance(path, str) else type(path).__name__
        raise ModelFileError(f"{where}: class '{shown[:80]}' is not allowed in a model file (not a registered "
                             "ml4ms model class); do not use this file, or refit the model")
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ModelFileError(f"{where}: class {path} does not exist in this version; refit the model") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):  # the registry names classes only
        raise ModelFileError(f"{where}: {path} is not a model class; do not use this file")
    return cls


def _check_attribute_name(cls, name, where):
    """Fitted state is plain data under ``name_``: never a method, property or dunder of ``cls``."""
    ok = (isinstance(name, str) and name.isidentifier() and name.endswith("_") and not name.startswith("__")
          and not callable(getattr(cls, name, None)) and not isinstance(getattr(cls, name, None), property))
    if not ok:
        raise ModelFileError(f"{where}: '{str(name)[:80]}' is not a fitted attribute of {cls.__name__}; "
                             "the file was edited, do not use it")


def canonical_json(doc):
    """The bytes a checksum is taken of: sorted keys, no spaces, ASCII (independent of indentation)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def seal(doc):
    """``doc`` with ``"sha256"``, the checksum of the rest of it (see :func:`check_seal`).

    Examples
    --------
    >>> check_seal(seal({"a": 1}), "x.json")  # passes
    >>> try:
    ...     check_seal({"a": 2, "sha256": seal({"a": 1})["sha256"]}, "x.json")
    ... except ModelFileError as exc:
    ...     print(str(exc)[:44])
    x.json: checksum does not match its content;
    """
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return {**body, "sha256": _sha256(canonical_json(body))}


def check_seal(doc, path):
    """Raise :class:`ModelFileError` unless ``doc`` is as :func:`seal` wrote it."""
    if not isinstance(doc, dict) or "sha256" not in doc:
        raise ModelFileError(f"{path}: no checksum; the file was not written by this ml4ms version or was edited, "
                             "refit the model")
    try:
        ok = seal(doc)["sha256"] == doc["sha256"]
    except ValueError:  # NaN/inf smuggled into the JSON
        ok = False
    if not ok:
        raise ModelFileError(f"{path}: checksum does not match its content; the file was edited or damaged, "
                             "obtain the original or refit the model")


def read_json(path, what="model file"):
    """A JSON document from ``path``; one-line :class:`ModelFileError` if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__}); give the "
                             "folder that 'ml4ms fit' or 'ml4ms potential fit' wrote, with its files") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: invalid JSON ({exc.__class__.__name__}); the {what} is damaged") from None


class _Writer:
    def __init__(self):
        self.arrays = {}

    def encode(self, value, where):
        from sklearn.base import BaseEstimator

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            v = float(value)
            return v if np.isfinite(v) else {"__float__": repr(v)}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                return {"__list__": [self.encode(v, f"{where}[{k}]") for k, v in enumerate(value.tolist())],
                        "__as_object_array__": True}
            key = f"a{len(self.arrays)}"
            self.arrays[key] = value
            return {"__array__": key}
        if isinstance(value, (list, tuple)):
            return {"__list__": [self.encode(v, f"{where}[{k}]") for k, v in enumerate(value)],
                    "__tuple__": isinstance(value, tuple)}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                return {"__items__": [[self.encode(k, where), self.encode(v, f"{where}[{k!r}]")]
                                      for k, v in value.items()]}
            return {"__dict__": {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}}
        if isinstance(value, BaseEstimator):
            path = _class_path(value)
            if path not in MODEL_CLASSES:
                raise TypeError(f"{where}: class {path} cannot be saved in a model file "
                                "(not in ml4ms.serialize.MODEL_CLASSES)")
            fitted = {
                k: self.encode(v, f"{where}.{k}")
                for k, v in vars(value).items()
                if k.endswith("_") and not k.startswith("_")
            }
            private = {k: self.encode(v, f"{where}.{k}") for k, v in vars(value).items()
                       if k.startswith("_") and k.endswith("_") and not k.startswith("__")}
            return {
                "__estimator__": path,
                "params": self.encode(value.get_params(deep=False), f"{where}.params"),
                "fitted": fitted,
                "private": private,
            }
        raise TypeError(f"{where}: cannot save a value of type {type(value).__name__} in a model file")


def _drop_removed(cls, params, where):
    """Drop from ``params`` the options ``cls`` no longer has, where they hold the value that left them out.

    ``cls._removed_parameters`` maps a parameter name (or ``"table.key"`` for
    a key of a dict parameter such as ``descriptor_params``) to
    that value; any other value stored in the file is refused in one line.
    """
    for name, default in getattr(cls, "_removed_parameters", {}).items():
        table, _, key = name.rpartition(".")
        holder = params.get(table) if table else params
        if not isinstance(holder, dict) or key not in holder:
            continue
        value = holder.pop(key)
        if not (isinstance(value, (bool, int, float, str)) and value == default):
            raise ModelFileError(f"{where}: {name} = {repr(value)[:40]} is an option that was removed from ml4ms "
                                 "(docs/studies/tio2-potential.md says why); refit the model without it")


def _decode(node, arrays, where="model"):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):  # plain JSON list
        return [_decode(v, arrays, where) for v in node]
    if not isinstance(node, dict):
        raise ModelFileError(f"{where}: unexpected entry in model file")
    if "__float__" in node:
        return float(node["__float__"])
    if "__array__" in node:
        key = node["__array__"]
        if key not in arrays:
            raise ModelFileError(f"{where}: array '{key}' is missing from {ARRAYS_NAME}")
        return arrays[key]
    if "__list__" in node:
        items = [_decode(v, arrays, where) for v in node["__list__"]]
        if node.get("__as_object_array__"):
            return np.asarray(items, dtype=object)
        return tuple(items) if node.get("__tuple__") else items
    if "__dict__" in node:
        return {k: _decode(v, arrays, f"{where}.{k}") for k, v in node["__dict__"].items()}
    if "__items__" in node:
        return {_decode(k, arrays, where): _decode(v, arrays, where) for k, v in node["__items__"]}
    if "__estimator__" in node:
        cls = _registered_class(node["__estimator__"], where)
        params = _decode(node.get("params", {}), arrays, f"{where}.params")
        if isinstance(params, dict):
            _drop_removed(cls, params, where)
        declared = set(cls._get_param_names())
        if not isinstance(params, dict) or set(params) - declared:
            unknown = sorted(set(params) - declared) if isinstance(params, dict) else ["(not a table)"]
            raise ModelFileError(f"{where}: {', '.join(map(str, unknown))[:120]} is not a parameter of "
                                 f"{cls.__name__}; the file was edited or is from another version, refit the model")
        try:
            obj = cls(**params)
        except TypeError as exc:
            raise ModelFileError(f"{where}: parameters do not fit {cls.__name__} ({exc}); refit the model") from None
        for section in ("fitted", "private"):
            entries = node.get(section, {})
            if not isinstance(entries, dict):
                raise ModelFileError(f"{where}: unexpected entry in model file")
            for k, v in entries.items():
                _check_attribute_name(cls, k, where)
                setattr(obj, k, _decode(v, arrays, f"{where}.{k}"))
        return obj
    raise ModelFileError(f"{where}: unexpected entry in model file")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _finite_or_none(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN), recursively.

    Examples
    --------
    >>> _finite_or_none({"rmse": float("nan"), "runs": [1.0, float("inf")]})
    {'rmse': None, 'runs': [1.0, None]}
    """
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def save_model(path, estimator, metadata=None):
    """Write ``estimator`` (and JSON-able ``metadata``) to the folder ``path``.

    The folder is written next to its destination and moved into place, so
    an error never leaves a half-written model.
    """
    writer = _Writer()
    tree = writer.encode(estimator, "model")
    write_folder(path, {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": metadata,
                        "estimator": tree}, writer.arrays)


def write_folder(path, doc, arrays):
    """Write the model folder ``path``: ``doc`` (a JSON table) as ``model.json`` and ``arrays`` as ``arrays.npz``.

    ``doc`` gets the ml4ms version, the time, the arrays' checksum and its own (:func:`seal`); NaN in its
    ``metadata`` becomes null. The folder is written next to its destination and moved into place, so an error
    never leaves a half-written model; an existing model folder is replaced, anything else is refused.
    """
    path = os.fspath(path)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    doc = dict(doc)
    doc["metadata"] = _finite_or_none(doc.get("metadata") or {})
    doc = seal({**doc, "ml4ms_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "arrays_sha256": _sha256(data)})
    text = json.dumps(doc, indent=1, allow_nan=False)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ml4ms-model-", dir=parent)
    try:
        os.chmod(tmp, user_mode(folder=True))
        with open(os.path.join(tmp, ARRAYS_NAME), "wb") as handle:
            handle.write(data)
        with open(os.path.join(tmp, JSON_NAME), "w", encoding="utf-8") as handle:
            handle.write(text)
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, JSON_NAME)) and os.listdir(path):
                raise ModelFileError(f"{path}: exists and is not an ml4ms model folder; choose another -o")
            old = path + ".old-" + os.path.basename(tmp)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        elif os.path.exists(path):
            raise ModelFileError(f"{path}: exists and is a file; choose another -o")
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def read_arrays(path, doc):
    """The arrays of the model folder ``path`` whose checked ``model.json`` is ``doc``: verified against its
    checksum and read without pickle; one-line :class:`ModelFileError` otherwise."""
    arrays_path = os.path.join(path, ARRAYS_NAME)
    if not os.path.exists(arrays_path):
        raise ModelFileError(f"{path}: {ARRAYS_NAME} is missing; the model folder is incomplete")
    with open(arrays_path, "rb") as handle:
        data = handle.read()
    if _sha256(data) != doc.get("arrays_sha256"):
        raise ModelFileError(f"{arrays_path}: checksum does not match {JSON_NAME}; the model was modified or damaged")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # damaged zip, object (pickled) arrays
        raise ModelFileError(f"{arrays_path}: cannot read arrays ({exc.__class__.__name__}); "
                             "a model file holds plain numeric arrays only, do not use this file") from None


def load_model(path):
    """Read a model folder; returns ``(estimator, metadata)``.

    Raises
    ------
    ModelFileError
        Missing files, invalid JSON, a different, older or newer format,
        JSON or arrays that do not match their recorded checksums, pickled
        arrays, classes outside :data:`MODEL_CLASSES`, or parameters and
        attributes the class does not declare.
    """
    path = os.fspath(path)
    json_path = os.path.join(path, JSON_NAME)
    if not os.path.isdir(path) or not os.path.exists(json_path):
        raise ModelFileError(f"{path}: not an ml4ms model (no {JSON_NAME}); give the folder written by 'ml4ms fit -o' "
                             "(or 'ml4ms potential fit -o' for a potential)")
    doc = read_json(json_path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{json_path}: not an ml4ms model file; give the folder that 'ml4ms fit' or "
                             "'ml4ms potential fit' wrote, or refit the model")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{json_path}: model format {version} is newer than this ml4ms supports ({FORMAT_VERSION}); upgrade ml4ms"
        )
    if version < FORMAT_VERSION:
        raise ModelFileError(f"{json_path}: model format {version} has no checksum over its JSON, so edits to it "
                             "cannot be detected; refit the model with this ml4ms version")
    check_seal(doc, json_path)
    arrays = read_arrays(path, doc)
    try:
        estimator = _decode(doc.get("estimator"), arrays)
    except ModelFileError as exc:  # name the file, not only the place inside it
        raise ModelFileError(f"{json_path}: {exc}") from None
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{json_path}: metadata is not a table; the file is damaged")
    metadata.setdefault("ml4ms_version", doc.get("ml4ms_version"))
    return estimator, metadata
