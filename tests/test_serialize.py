import json
import os

import numpy as np
import pytest

from ml4ms.descriptors.columns import ColumnFeatures
from ml4ms.errors import ModelFileError
from ml4ms.models.kernel import KernelRidge
from ml4ms.models.structure import StructureRegressor
from ml4ms.serialize import MODEL_CLASSES, load_model, save_model, seal


def _edit(folder, change, reseal=True):
    """Change model.json as someone editing the file would; ``reseal``: and recompute its checksum."""
    path = folder / "model.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(seal(doc) if reseal else doc))


@pytest.fixture
def fitted():
    rows = [{"a": float(i), "b": float(i % 3)} for i in range(30)]
    y = np.array([[r["a"] ** 0.5 + r["b"], r["a"]] for r in rows])
    model = StructureRegressor(descriptor=ColumnFeatures(columns=["a", "b"]),
                               regressor=KernelRidge(kernel="gaussian"), target_transform="log1p")
    return model.fit(rows, y), rows


def test_round_trip_predictions_identical(tmp_path, fitted):
    model, rows = fitted
    save_model(tmp_path / "m", model, {"targets": ["t1", "t2"]})
    loaded, meta = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    assert meta["targets"] == ["t1", "t2"] and meta["ml4ms_version"]
    assert sorted(os.listdir(tmp_path / "m")) == ["arrays.npz", "model.json"]


def test_overwrite_existing_model(tmp_path, fitted):
    model, rows = fitted
    save_model(tmp_path / "m", model)
    save_model(tmp_path / "m", model)
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_tampered_arrays_are_rejected(tmp_path, fitted):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    with open(tmp_path / "m" / "arrays.npz", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(tmp_path / "m")


def test_foreign_class_is_rejected(tmp_path, fitted):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    _edit(tmp_path / "m", lambda d: d["estimator"].update({"__estimator__": "os.system"}))
    with pytest.raises(ModelFileError, match="not allowed"):
        load_model(tmp_path / "m")


def test_a_function_of_ml4ms_cannot_be_called_by_a_model_file(tmp_path, fitted, monkeypatch):
    """The reported hole: an edited model.json naming ml4ms.outputs.write_text wrote a file on loading."""
    model, _ = fitted
    save_model(tmp_path / "m", model)
    target = tmp_path / "written-by-the-model-file.txt"
    attack = {"__estimator__": "ml4ms.outputs.write_text", "params": {"__dict__": {"path": str(target), "text": "x"}}}
    for where in ("top", "nested"):
        if where == "top":
            _edit(tmp_path / "m", lambda d: d.update(estimator=attack))
        else:
            save_model(tmp_path / "m", model)
            _edit(tmp_path / "m", lambda d: d["estimator"]["params"]["__dict__"].update(regressor=attack))
        before = set(os.listdir(tmp_path))
        with pytest.raises(ModelFileError, match="not allowed in a model file") as info:
            load_model(tmp_path / "m")
        assert "\n" not in str(info.value)
        assert not target.exists() and set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("path", ["ml4ms.outputs.write_text", "ml4ms.serialize.save_model", "builtins.eval",
                                  "ml4ms.datasets.Dataset", "ml4ms.selection.FPS", "ml4ms.models.kernel.np",
                                  "ml4ms.models.kernel.KernelRidge.fit", 3, None])
def test_only_registered_classes_are_built(tmp_path, fitted, path):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    _edit(tmp_path / "m", lambda d: d["estimator"]["params"]["__dict__"]["regressor"].update(__estimator__=path))
    with pytest.raises(ModelFileError, match="not allowed in a model file"):
        load_model(tmp_path / "m")


def test_changed_hyperparameter_is_refused(tmp_path, fitted):
    model, rows = fitted
    save_model(tmp_path / "m", model)
    _edit(tmp_path / "m", lambda d: d["estimator"]["params"]["__dict__"]["regressor"]["params"]["__dict__"].update(
        alpha=123.0), reseal=False)
    with pytest.raises(ModelFileError, match="checksum does not match its content; the file was edited"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("change, match", [
    (lambda e: e["params"]["__dict__"].update(command="rm -rf /"), "command is not a parameter of StructureRegressor"),
    (lambda e: e["fitted"].update(predict={"__float__": "1.0"}), "'predict' is not a fitted attribute"),
    (lambda e: e["fitted"].update(__class__="x"), "'__class__' is not a fitted attribute"),
    (lambda e: e["fitted"].update({"a b_": 1}), "'a b_' is not a fitted attribute"),
    (lambda e: e.update(params=[1, 2]), "is not a parameter"),
])
def test_parameters_and_attributes_must_be_declared(tmp_path, fitted, change, match):
    """Even with a recomputed checksum, a file cannot pass undeclared parameters or reach a method."""
    model, _ = fitted
    save_model(tmp_path / "m", model)
    _edit(tmp_path / "m", lambda d: change(d["estimator"]))
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "m")


def _small_potential(tmp_path):
    """A tiny fitted NeuralPotential saved in ``tmp_path / "pot"``; returns it and its structure."""
    from ase.build import bulk

    from ml4ms.potentials import NeuralPotential

    atoms = bulk("MgO", "rocksalt", a=4.2)
    model = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    save_model(tmp_path / "pot", model.initialize([atoms], [-10.0]))
    return model, atoms


def _store_option(doc, name, value):
    """Store the option ``name`` (``"table.key"``: a key of a dict parameter) as a file of an earlier version did."""
    params = doc["estimator"]["params"]["__dict__"]
    table, _, key = name.rpartition(".")
    (params[table]["__dict__"] if table else params)[key] = value


def test_removed_options_at_their_old_values_are_dropped(tmp_path):
    """Files written before options were removed load where they hold the values that left the options out."""
    from ml4ms.descriptors.chebyshev import Chebyshev

    model, atoms = _small_potential(tmp_path)
    old = {"cell_pool": 0, "activation": "tanh", "descriptor_params.angular_radial_order": 0,
           "descriptor_params.angular_pairs": False, "descriptor_params.long_radial_cutoff": 0.0,
           "descriptor_params.long_radial_order": 4}
    _edit(tmp_path / "pot", lambda d: [_store_option(d, k, v) for k, v in old.items()])
    back, _ = load_model(tmp_path / "pot")
    assert back.get_params() == model.get_params() and back.compute(atoms)[0] == model.compute(atoms)[0]
    descriptor = Chebyshev(radial_order=2, angular_order=1, progress=False).fit([atoms])
    save_model(tmp_path / "chebyshev", descriptor)
    _edit(tmp_path / "chebyshev", lambda d: [_store_option(d, k, v) for k, v in
                                             {"angular_pairs": False, "long_radial_cutoff": 0}.items()])
    back, _ = load_model(tmp_path / "chebyshev")
    assert back.get_params() == descriptor.get_params()
    np.testing.assert_array_equal(back.transform([atoms]), descriptor.transform([atoms]))


@pytest.mark.parametrize("name, value", [("cell_pool", 8), ("activation", "silu"),
                                         ("descriptor_params.angular_pairs", True),
                                         ("descriptor_params.long_radial_cutoff", 8.0)])
def test_removed_options_at_other_values_are_refused(tmp_path, name, value):
    _small_potential(tmp_path)
    _edit(tmp_path / "pot", lambda d: _store_option(d, name, value))
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "pot")
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'pot' / 'model.json'}: ")
    assert f"{name} = {value!r} is an option that was removed from ml4ms" in text
    assert "docs/studies/tio2-potential.md" in text and "refit the model" in text


def test_pickle_inside_the_npz_is_refused(tmp_path, fitted):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(target), "w"))

    import io
    import hashlib
    buf = io.BytesIO()
    np.savez(buf, a0=np.array([Payload()], dtype=object))
    (tmp_path / "m" / "arrays.npz").write_bytes(buf.getvalue())
    _edit(tmp_path / "m", lambda d: d.update(arrays_sha256=hashlib.sha256(buf.getvalue()).hexdigest()))
    with pytest.raises(ModelFileError, match="plain numeric arrays only"):
        load_model(tmp_path / "m")
    assert not target.exists()


def test_every_public_estimator_class_is_registered():
    """A new estimator of ml4ms must join the registry to be saved (and only then can be loaded)."""
    import importlib
    import pkgutil

    import ml4ms
    from sklearn.base import BaseEstimator

    found = set()
    for info in pkgutil.walk_packages(ml4ms.__path__, "ml4ms."):
        if ".cli" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and issubclass(obj, BaseEstimator) and obj.__module__ == info.name
                    and not name.startswith("_") and not __import__("inspect").isabstract(obj)):
                found.add(f"{obj.__module__}.{obj.__qualname__}")
    internal = {"ml4ms.selection.FPS", "ml4ms.selection.CUR", "ml4ms.workflow.FeatureHead",  # never saved
                "ml4ms.descriptors.base.GlobalDescriptor", "ml4ms.descriptors.base.LocalDescriptor",
                "ml4ms.descriptors.base.BaseDescriptor", "ml4ms.descriptors.acsf.BatchedLocal",
                "ml4ms.potentials.estimator.PotentialEstimator"}  # a base class; potential files hold modules
    from ml4ms.potentials.io import model_kinds

    internal |= {f"{cls.__module__}.{cls.__qualname__}" for _, cls in model_kinds().values()}  # their own registry
    assert found - internal <= MODEL_CLASSES, sorted(found - internal - MODEL_CLASSES)
    for path in MODEL_CLASSES:
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), BaseEstimator)


def test_format_1_files_are_refused(tmp_path, fitted):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    _edit(tmp_path / "m", lambda d: (d.update(format_version=1), d.pop("sha256")), reseal=False)
    with pytest.raises(ModelFileError, match="format 1 has no checksum over its JSON"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(format_version=99), "newer"),
    (lambda d: d.update(format="other"), "not an ml4ms model"),
])
def test_incompatible_files(tmp_path, fitted, change, match):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    _edit(tmp_path / "m", change)
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "m")


def test_damaged_json_and_missing_folder(tmp_path, fitted):
    with pytest.raises(ModelFileError, match="not an ml4ms model"):
        load_model(tmp_path / "nothing")
    model, _ = fitted
    save_model(tmp_path / "m", model)
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="invalid JSON"):
        load_model(tmp_path / "m")


def test_unsaveable_object_fails_before_writing(tmp_path):
    model = StructureRegressor(descriptor=ColumnFeatures(columns=["a"]), regressor=KernelRidge())
    model.fit([{"a": 1.0}, {"a": 2.0}, {"a": 3.0}], np.array([1.0, 2.0, 3.0]))
    model.estimators_[0].extra_ = object()
    with pytest.raises(TypeError, match="cannot save"):
        save_model(tmp_path / "m", model)
    assert not (tmp_path / "m").exists()


def test_model_folders_and_outputs_get_the_users_permissions(tmp_path, fitted):
    from ml4ms.outputs import write_json

    model, _ = fitted
    old = os.umask(0o022)
    try:
        save_model(tmp_path / "m", model)
        write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "m").st_mode & 0o777) == "0o755"
    assert oct(os.stat(tmp_path / "m" / "model.json").st_mode & 0o777) == "0o644"
    assert oct(os.stat(tmp_path / "r.json").st_mode & 0o777) == "0o644"
