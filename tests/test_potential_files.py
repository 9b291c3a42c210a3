"""Potential files: the module's config and state, checked on load; old folders go through the converter."""

import json

import numpy as np
import pytest
from ase.build import bulk

from ml4ms.cli import main
from ml4ms.errors import ModelFileError
from ml4ms.potentials import NeuralPotential
from ml4ms.potentials.committee import Committee
from ml4ms.potentials.io import convert_potential, load_potential, save_potential
from ml4ms.serialize import save_model, seal


@pytest.fixture(scope="module")
def small():
    cells = [bulk("MgO", "rocksalt", a=4.1 + 0.05 * k) for k in range(4)]
    model = NeuralPotential(hidden=(4,), descriptor_params={"radial_order": 3, "angular_order": 2}, linear=True,
                            cell_mean=True).initialize(cells, [-10.0, -10.2, -10.3, -10.25])
    model.weights_[0][-1] = model.weights_[0][-1] + 0.1  # the linear term starts at zero: make it count
    model.fit_novelty(cells)
    model.training_ = {"epochs": 3, "n_train": 4}
    return model, cells


def _edit(folder, change, reseal=True):
    doc = json.loads((folder / "model.json").read_text())
    change(doc)
    (folder / "model.json").write_text(json.dumps(seal(doc) if reseal else doc))


def test_round_trip_keeps_the_module_state_training_and_novelty(small, tmp_path):
    model, cells = small
    save_potential(tmp_path / "pot", model, {"data": "mgo"})
    doc = json.loads((tmp_path / "pot" / "model.json").read_text())
    assert doc["format"] == "ml4ms-potential" and doc["model"]["class"] == "DescriptorNetwork"
    assert doc["model"]["config"] == model.network().config()
    assert set(doc["model"]["state"]) == set(model.network().state_dict())
    back, meta = load_potential(tmp_path / "pot", with_metadata=True)
    assert meta["data"] == "mgo" and back.training_ == model.training_
    assert json.dumps(back.get_params()) == json.dumps(model.get_params())  # tuples come back as lists
    assert back.novelty_scale_ == model.novelty_scale_
    for a in cells:
        e0, f0, s0 = model.compute(a, stress=True)
        e1, f1, s1 = back.compute(a, stress=True)
        assert e0 == e1 and np.array_equal(f0, f1) and np.array_equal(s0, s1)
    np.testing.assert_array_equal(back.novelty(cells), model.novelty(cells))


def test_old_folders_name_the_converter_and_convert_to_the_same_numbers(small, tmp_path, capsys):
    model, cells = small
    save_model(tmp_path / "old", model, {"kind": "ml4ms-neural-potential"})  # how earlier versions wrote it
    with pytest.raises(ModelFileError, match="convert it with 'ml4ms potential convert .*old -o NEW'"):
        load_potential(tmp_path / "old")
    assert main(["potential", "eval", str(tmp_path / "old"), "tio2:test"]) == 2
    assert "ml4ms potential convert" in capsys.readouterr().err
    assert main(["potential", "convert", str(tmp_path / "old"), "-o", str(tmp_path / "new")]) == 0
    new = load_potential(tmp_path / "new")
    assert [new.compute(a)[0] for a in cells] == [model.compute(a)[0] for a in cells]
    assert main(["potential", "convert", str(tmp_path / "new"), "-o", str(tmp_path / "again")]) == 2
    assert "already in the current format" in capsys.readouterr().err


def test_an_old_committee_converts_as_one_folder(small, tmp_path):
    import os

    from ml4ms.serialize import JSON_NAME, read_json

    model, cells = small
    other = NeuralPotential(**model.get_params()).set_params(seed=3).initialize(cells, [-10.0, -10.2, -10.3, -10.25])
    folder = tmp_path / "old"
    sums = []
    for k, member in enumerate([model, other]):
        save_model(folder / f"member{k}", member, {"kind": "ml4ms-neural-potential"})
        sums.append(read_json(os.path.join(folder, f"member{k}", JSON_NAME))["sha256"])
    (folder / "committee.json").write_text(json.dumps(seal({"kind": "ml4ms-neural-potential", "members": 2,
                                                            "members_sha256": sums})))
    with pytest.raises(ModelFileError, match="a committee in the file format of earlier"):
        load_potential(folder)
    convert_potential(folder, tmp_path / "new")
    back = load_potential(tmp_path / "new")
    assert isinstance(back, Committee) and len(back) == 2
    np.testing.assert_allclose(back.members[1].compute(cells[0])[1], other.compute(cells[0])[1], rtol=0, atol=0)


@pytest.mark.parametrize("change, match", [
    (lambda d: d["model"].update({"class": "ml4ms.outputs.write_text"}), "not a registered kind of potential"),
    (lambda d: d["model"].update({"class": "os.system"}), "not a registered kind of potential"),
    (lambda d: d["estimator"].update({"class": "KernelRidge"}), "does not train a DescriptorNetwork"),
    (lambda d: d["model"]["config"].update({"path": "/tmp/x"}), "'path' is not a setting of DescriptorNetwork"),
    (lambda d: d["estimator"]["params"].update({"text": "x"}), "'text' is not a setting of NeuralPotential"),
    (lambda d: d["model"]["config"].update({"hidden": [5]}), "does not match|does not fit"),
    (lambda d: d["estimator"]["params"].update({"hidden": [5]}), "settings differ"),
    (lambda d: d["model"]["config"]["descriptor_settings"].update({"radial_cutoff": 9.0}), "settings differ"),
    (lambda d: d["model"]["config"].update({"descriptor": "soap"}), "cannot build"),
    (lambda d: d["model"].update({"state": d["model"]["state"][1:]}), "does not match"),
    (lambda d: d.update(novelty={"scale": -1.0, "elements": 2}), "novelty references are damaged"),
    (lambda d: d.update(training=[1, 2]), "training is not a table"),
    (lambda d: d["metadata"].update(kind="ml4ms-model"), "metadata is not a potential's"),
    (lambda d: d.update(format_version=99), "newer than this ml4ms supports"),
])
def test_forged_files_are_refused_in_one_line_and_write_nothing(small, tmp_path, change, match):
    model, _ = small
    save_potential(tmp_path / "pot", model)
    _edit(tmp_path / "pot", change)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ModelFileError, match=match) as info:
        load_potential(tmp_path / "pot")
    assert "\n" not in str(info.value) and str(tmp_path / "pot") in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_edits_without_a_new_checksum_and_pickles_are_refused(small, tmp_path):
    import hashlib
    import io

    model, _ = small
    save_potential(tmp_path / "pot", model)
    _edit(tmp_path / "pot", lambda d: d["model"]["config"].update({"hidden": [5]}), reseal=False)
    with pytest.raises(ModelFileError, match="checksum does not match"):
        load_potential(tmp_path / "pot")
    save_potential(tmp_path / "pot", model)
    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(target), "w"))

    buf = io.BytesIO()
    np.savez(buf, **{"state.head.energy_scale": np.array([Payload()], dtype=object)})
    (tmp_path / "pot" / "arrays.npz").write_bytes(buf.getvalue())
    _edit(tmp_path / "pot", lambda d: d.update(arrays_sha256=hashlib.sha256(buf.getvalue()).hexdigest()))
    with pytest.raises(ModelFileError, match="plain numeric arrays only"):
        load_potential(tmp_path / "pot")
    assert not target.exists()


def test_a_property_model_is_not_a_potential(tmp_path):
    from ml4ms.models.kernel import KernelRidge

    save_model(tmp_path / "krr", KernelRidge(alpha=0.1, gamma=1.0).fit(np.eye(3), [0.0, 1.0, 2.0]))
    with pytest.raises(ModelFileError, match="a property model, not a potential"):
        load_potential(tmp_path / "krr")
