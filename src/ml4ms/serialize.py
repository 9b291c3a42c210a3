"""Model files as data: a folder with ``model.json`` and ``arrays.npz``; no pickle.

An estimator is stored as its class path, its ``get_params(deep=False)`` and
its fitted attributes (names ending in ``_``); arrays go to the ``.npz``
(read with ``allow_pickle=False``), everything else to JSON. On loading, only
classes from ``ml4ms`` and an allow-list of scikit-learn classes are built,
and the SHA-256 of the arrays recorded in the JSON must match, so a tampered
or foreign file gives a clear :class:`~ml4ms.errors.ModelFileError` instead
of running code.

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

FORMAT = "ml4ms-model"
FORMAT_VERSION = 1
JSON_NAME = "model.json"
ARRAYS_NAME = "arrays.npz"

#: scikit-learn classes that may appear in a model file
SKLEARN_ALLOWED = {
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._bayes.BayesianRidge",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.pipeline.Pipeline",
    "sklearn.decomposition._pca.PCA",
}


def _class_path(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _allowed(path):
    return path.startswith("ml4ms.") or path in SKLEARN_ALLOWED


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
            if not _allowed(path):
                raise TypeError(f"{where}: class {path} cannot be saved in a model file")
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
        path = node["__estimator__"]
        if not isinstance(path, str) or not _allowed(path):
            raise ModelFileError(f"{where}: class '{path}' is not allowed in a model file")
        module, _, name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise ModelFileError(
                f"{where}: class {path} does not exist in this ml4ms version; retrain the model"
            ) from None
        params = _decode(node.get("params", {}), arrays, f"{where}.params")
        try:
            obj = cls(**params)
        except TypeError as exc:
            raise ModelFileError(f"{where}: parameters do not fit {path} ({exc}); retrain the model") from None
        for section in ("fitted", "private"):
            for k, v in node.get(section, {}).items():
                setattr(obj, k, _decode(v, arrays, f"{where}.{k}"))
        return obj
    raise ModelFileError(f"{where}: unexpected entry in model file")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def save_model(path, estimator, metadata=None):
    """Write ``estimator`` (and JSON-able ``metadata``) to the folder ``path``.

    The folder is written next to its destination and moved into place, so
    an error never leaves a half-written model.
    """
    path = os.fspath(path)
    writer = _Writer()
    tree = writer.encode(estimator, "model")
    buf = io.BytesIO()
    np.savez_compressed(buf, **writer.arrays)
    data = buf.getvalue()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ml4ms_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metadata": metadata or {},
        "arrays_sha256": _sha256(data),
        "estimator": tree,
    }
    text = json.dumps(doc, indent=1, allow_nan=False)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ml4ms-model-", dir=parent)
    try:
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


def load_model(path):
    """Read a model folder; returns ``(estimator, metadata)``.

    Raises
    ------
    ModelFileError
        Missing files, invalid JSON, a different format, a newer format
        version, arrays that do not match their recorded checksum, or classes
        outside ml4ms and the scikit-learn allow-list.
    """
    path = os.fspath(path)
    json_path = os.path.join(path, JSON_NAME)
    arrays_path = os.path.join(path, ARRAYS_NAME)
    if not os.path.isdir(path) or not os.path.exists(json_path):
        raise ModelFileError(f"{path}: not an ml4ms model (no {JSON_NAME}); give the folder written by 'ml4ms fit -o'")
    try:
        with open(json_path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{json_path}: invalid JSON ({exc.__class__.__name__}); the file is damaged") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{json_path}: not an ml4ms model file")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{json_path}: model format {version} is newer than this ml4ms supports ({FORMAT_VERSION}); upgrade ml4ms"
        )
    if not os.path.exists(arrays_path):
        raise ModelFileError(f"{path}: {ARRAYS_NAME} is missing; the model folder is incomplete")
    with open(arrays_path, "rb") as handle:
        data = handle.read()
    if _sha256(data) != doc.get("arrays_sha256"):
        raise ModelFileError(f"{arrays_path}: checksum does not match {JSON_NAME}; the model was modified or damaged")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # damaged zip, object arrays
        raise ModelFileError(f"{arrays_path}: cannot read arrays ({exc.__class__.__name__})") from None
    estimator = _decode(doc.get("estimator"), arrays)
    metadata = doc.get("metadata", {})
    metadata.setdefault("ml4ms_version", doc.get("ml4ms_version"))
    return estimator, metadata
