import json
import os

import numpy as np
import pytest

from ml4ms.descriptors.columns import ColumnFeatures
from ml4ms.errors import ModelFileError
from ml4ms.models.kernel import KernelRidge
from ml4ms.models.structure import StructureRegressor
from ml4ms.serialize import load_model, save_model


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
    path = tmp_path / "m" / "model.json"
    doc = json.loads(path.read_text())
    doc["estimator"]["__estimator__"] = "os.system"
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="not allowed"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(format_version=99), "newer"),
    (lambda d: d.update(format="other"), "not an ml4ms model"),
])
def test_incompatible_files(tmp_path, fitted, change, match):
    model, _ = fitted
    save_model(tmp_path / "m", model)
    path = tmp_path / "m" / "model.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
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
