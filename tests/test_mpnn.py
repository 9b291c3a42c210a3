"""The graph property model: invariances, conventions, training, model files, recipes, committees, ensembles.

Every model here is tiny (8 features, a few epochs on a few small cells): the checks are about the function the
network computes and the plumbing around it, not about accuracy, and each takes well under a second.
"""

import csv
import json
import os

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from sklearn.base import clone
from test_descriptor_kit import deformed, permutation, random_rotation, translated

from ml4ms.cli import main
from ml4ms.descriptors.concat import ConcatDescriptor
from ml4ms.descriptors.structure_rows import StructureRows
from ml4ms.errors import InputError
from ml4ms.models.ensemble import EnsembleRegressor
from ml4ms.models.mpnn import MPNNRegressor, graph_settings, structure_graphs
from ml4ms.models.structure import StructureRegressor
from ml4ms.recipe import build_model, recipe_from_dict
from ml4ms.serialize import load_model, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"features": 8, "interactions": 2, "radial_basis": 4, "max_epochs": 3, "batch_size": 2, "progress": False}
GRAPHS = {"radius": {"kind": "radius", "cutoff": 4.0}, "knn": {"kind": "knn", "k": 6},
          "voronoi": {"kind": "voronoi"}, "voronoi topology": {"kind": "voronoi", "topology_only": True}}


def _targets(frames, n_outputs=1):
    """Smooth, size-independent targets: the volume per atom (the cell, or a box around a molecule) and more."""
    volume = np.array([abs(a.cell.volume) / len(a) if a.pbc.all() else 10.0 + len(a) for a in frames])
    y = np.column_stack([volume, np.sqrt(volume), [a.numbers.mean() for a in frames]])[:, :n_outputs]
    return y[:, 0] if n_outputs == 1 else y


def _cells(n=12, seed=0):
    """Rocksalt oxides of three cations at random lattice constants, primitive or cubic."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        cation = ("Mg", "Ca", "Sr")[k % 3]
        atoms = bulk(f"{cation}O", "rocksalt", a=4.2 + 0.4 * (k % 3) + 0.1 * rng.normal(), cubic=k % 2 == 0)
        atoms.rattle(0.02, seed=k)
        atoms.info["y"] = float(abs(atoms.cell.volume) / len(atoms))
        atoms.info["gap"] = float(2.0 + 0.1 * k)
        out.append(atoms)
    return out


def _fitted(frames, n_outputs=1, **params):
    return MPNNRegressor(**{**TINY, **params}).fit(frames, _targets(frames, n_outputs))


# ------------------------------------------------------------------------------------------ invariances
@pytest.mark.parametrize("graph", list(GRAPHS), ids=list(GRAPHS))
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-5)])
def test_rotation_translation_and_permutation_leave_predictions_unchanged(structures, graph, dtype, rtol):
    model = _fitted(structures, graph=GRAPHS[graph], dtype=dtype)
    expected = model.predict(structures)
    rotation = random_rotation(3)
    moved = [deformed(a, rotation) for a in structures]
    np.testing.assert_allclose(model.predict(moved), expected, rtol=rtol)
    for wrap in (False, True):
        np.testing.assert_allclose(model.predict([translated(a, wrap) for a in structures]), expected, rtol=rtol)
    permuted = [a[permutation(len(a), seed=k)] for k, a in enumerate(structures)]
    np.testing.assert_allclose(model.predict(permuted), expected, rtol=rtol)


@pytest.mark.parametrize("graph", list(GRAPHS), ids=list(GRAPHS))
@pytest.mark.parametrize("readout, factor", [("mean", 1.0), ("sum", 2.0)])
def test_a_supercell_gives_the_same_mean_and_twice_the_sum(crystals, graph, readout, factor):
    model = _fitted(crystals, graph=GRAPHS[graph], readout=readout, dtype="float64")
    doubled = [a.repeat((2, 1, 1)) for a in crystals]
    np.testing.assert_allclose(model.predict(doubled), factor * model.predict(crystals), rtol=1e-9)


def test_topology_only_graphs_see_no_distances():
    """A uniformly scaled cell has the same Voronoi topology: the topology-only model cannot tell them apart."""
    frames = _cells(6)
    model = _fitted(frames, graph=GRAPHS["voronoi topology"], dtype="float64")
    scaled = [deformed(a, 1.1 * np.eye(3)) for a in frames]
    np.testing.assert_allclose(model.predict(scaled), model.predict(frames), rtol=1e-10)
    with_distances = _fitted(frames, graph=GRAPHS["voronoi"], dtype="float64")
    assert not np.allclose(with_distances.predict(scaled), with_distances.predict(frames), rtol=1e-6)


# ------------------------------------------------------------------------------------------ conventions
def test_scikit_learn_conventions():
    model = MPNNRegressor(features=16, graph={"kind": "knn", "k": 4})
    assert model.get_params()["features"] == 16 and model.get_params()["graph"] == {"kind": "knn", "k": 4}
    twin = clone(model)
    assert twin.get_params() == model.get_params() and twin is not model
    assert not [k for k in vars(model) if k.endswith("_")]  # __init__ stores its arguments only
    frames = _cells(6)
    assert model.set_params(**TINY).fit(frames, _targets(frames)) is model
    assert model.species_ == [8, 12, 20, 38] and model.graph_["kind"] == "knn"
    assert not hasattr(clone(model), "state_")


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_several_targets_at_once(n_outputs):
    frames = _cells(8)
    model = _fitted(frames, n_outputs)
    pred = model.predict(frames)
    assert pred.shape == ((8,) if n_outputs == 1 else (8, n_outputs)) and np.all(np.isfinite(pred))
    assert model.reference_.shape == (4, n_outputs) and model.scale_.shape == (n_outputs,)


def test_the_same_seed_gives_the_same_model_and_another_seed_another():
    frames = _cells(8)
    first, again = _fitted(frames, random_state=3), _fitted(frames, random_state=3)
    other = _fitted(frames, random_state=4)
    assert all(np.array_equal(first.state_[k], again.state_[k]) for k in first.state_)
    assert first.history_ == again.history_
    assert not np.array_equal(first.predict(frames), other.predict(frames))


def test_early_stopping_keeps_the_best_epoch():
    frames = _cells(12)
    y = _targets(frames)
    model = MPNNRegressor(**{**TINY, "max_epochs": 200, "patience": 4, "learning_rate": 0.05,
                             "validation_fraction": 0.25}).fit(frames, y)
    history = model.history_["validation"]
    assert model.n_epochs_ < 200 and model.n_epochs_ == model.best_epoch_ + 5
    assert history[model.best_epoch_] == min(history) < history[-1]
    # the kept weights are those of the best epoch: their validation error is the best one recorded
    val = model.validation_indices_
    assert len(val) == 3
    z = (model.predict([frames[i] for i in val]) - y[val]) / model.scale_[0]
    assert np.mean(z ** 2) == pytest.approx(history[model.best_epoch_], rel=1e-4)


def test_a_diverging_epoch_goes_back_to_the_best_weights_with_half_the_step():
    frames = _cells(12)
    y = _targets(frames)
    # a step far too large: the first epochs blow up (losses of 1e23 and more, or NaN) and would poison the model
    model = MPNNRegressor(**{**TINY, "max_epochs": 12, "patience": 12, "learning_rate": 3.0,
                             "validation_fraction": 0.25}).fit(frames, y)
    history = model.history_
    assert history["restarts"][0] == 0 and model.best_epoch_ not in history["restarts"]
    assert history["validation"][history["restarts"][0]] > 1e6
    kept = history["validation"][model.best_epoch_]
    assert kept == min(v for i, v in enumerate(history["validation"]) if i not in history["restarts"]) < 10
    val = model.validation_indices_
    z = (model.predict([frames[i] for i in val]) - y[val]) / model.scale_[0]
    assert np.mean(z ** 2) == pytest.approx(kept, rel=1e-4)


@pytest.mark.parametrize("batch_size", [2, 64], ids=["batches", "one batch"])
def test_a_sane_step_never_restarts_and_learns(batch_size):
    frames = _cells(12)
    model = MPNNRegressor(**{**TINY, "max_epochs": 8, "batch_size": batch_size, "learning_rate": 0.01,
                             "validation_fraction": 0}).fit(frames, _targets(frames))
    train = model.history_["train"]
    assert model.history_["restarts"] == [] and model.best_epoch_ == 7 and train[-1] < train[0]


def test_a_time_budget_stops_after_the_first_epoch():
    frames = _cells(6)
    model = _fitted(frames, max_epochs=50, max_minutes=1e-9)
    assert model.n_epochs_ == 1


def test_float64_and_float32_compute_the_same_function():
    frames = _cells(6)
    model = _fitted(frames, dtype="float64")
    single = clone(model).set_params(dtype="float32")
    for name in ("species_", "graph_", "reference_", "scale_", "state_", "n_outputs_"):
        setattr(single, name, getattr(model, name))
    np.testing.assert_allclose(single.predict(frames), model.predict(frames), rtol=1e-5)


# ------------------------------------------------------------------------------------------ files and errors
def test_a_model_file_gives_identical_predictions(tmp_path):
    frames = _cells(8)
    model = StructureRegressor(descriptor=StructureRows(progress=False),
                               regressor=MPNNRegressor(**TINY, graph=GRAPHS["voronoi"]))
    model.fit(frames, _targets(frames, 2))
    save_model(tmp_path / "m", model, {"targets": ["a", "b"]})
    loaded, _ = load_model(tmp_path / "m")
    assert np.array_equal(loaded.predict(frames), model.predict(frames))
    bigger = frames[1].repeat((3, 3, 3))  # 54 atoms, more than any training cell: the rows have room
    np.testing.assert_allclose(loaded.predict([bigger]), model.predict(frames[1:2]), rtol=1e-5)


def test_given_species_let_a_model_predict_an_element_it_did_not_train_on():
    frames = [a for a in _cells(9) if "Sr" not in a.get_chemical_formula()]
    strontium = bulk("SrO", "rocksalt", a=5.1)
    with pytest.raises(InputError, match="element Sr is not among the elements"):
        _fitted(frames).predict([strontium])
    model = _fitted(frames, species=["O", "Mg", "Ca", "Sr"])
    assert model.species_ == [8, 12, 20, 38] and np.isfinite(model.predict([strontium])).all()


def test_graphs_are_built_once_and_kept():
    frames = _cells(4)
    settings = graph_settings(GRAPHS["voronoi"])
    first = structure_graphs(frames, settings)
    again = structure_graphs([a.copy() for a in frames], settings)
    assert all(a is b for a, b in zip(first, again))
    moved = frames[0].copy()
    moved.positions[0] += 0.01
    assert structure_graphs([moved], settings)[0] is not first[0]


def test_bad_input_is_one_line():
    frames = _cells(6)
    model = _fitted(frames)
    with pytest.raises(InputError, match=r"structure 1: element Ti is not among the elements \(O, Mg, Ca, Sr\)"):
        model.predict([frames[0], bulk("TiO", "rocksalt", a=4.2)])
    with pytest.raises(InputError, match="not the rows of the 'structures' descriptor"):
        model.predict(np.ones((3, 30)))
    with pytest.raises(InputError, match="features must be a positive integer, got 0"):
        MPNNRegressor(features=0).fit(frames, _targets(frames))
    with pytest.raises(InputError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        MPNNRegressor(device="gpu").fit(frames, _targets(frames))
    with pytest.raises(InputError, match="structure 2: target is NaN"):
        MPNNRegressor(**TINY).fit(frames, np.where(np.arange(6) == 2, np.nan, 1.0))
    rows = StructureRows(max_atoms=2).fit(frames[1:2])
    with pytest.raises(InputError, match="structure 0: the structure has 8 atoms, more than the 2"):
        rows.transform([bulk("CaO", "rocksalt", a=4.8, cubic=True)])


@pytest.mark.parametrize("graph, needle", [
    ({"kind": "grid"}, "[graph] kind must be one of 'radius', 'knn', 'voronoi', got 'grid'"),
    ({"cutof": 4.0}, "[graph] unknown key 'cutof'; did you mean 'cutoff'?"),
    ({"cutoff": -1.0}, "[graph] cutoff must be a number > 0, got -1.0"),
    ({"kind": "radius", "k": 8}, "[graph] k is a setting of kind 'knn', not 'radius'"),
    ({"kind": "voronoi", "weights": ["volume"]}, "[graph] weights must be a list of distinct values"),
    ({"kind": "voronoi", "weights": ["area"], "topology_only": True}, "topology_only graphs carry no edge weights"),
])
def test_bad_graph_settings_are_one_line_errors(graph, needle):
    with pytest.raises(InputError) as info:
        recipe_from_dict({"model": {"name": "mpnn"}, "graph": graph}, source="r.toml")
    assert needle in str(info.value) and "\n" not in str(info.value) and str(info.value).startswith("r.toml: ")


def test_recipes_refuse_a_graph_without_graph_model_and_a_graph_model_on_features():
    with pytest.raises(InputError, match=r"r.toml: \[graph\] is for graph models, and \[model\] has none"):
        recipe_from_dict({"model": {"name": "krr"}, "graph": {"kind": "knn"}}, source="r.toml")
    with pytest.raises(InputError, match="the mpnn model reads structures, but .descriptor. is 'soap'"):
        recipe_from_dict({"model": {"name": "mpnn"}, "descriptor": {"name": "soap"}}, source="r.toml")
    assert graph_settings({"kind": "voronoi", "topology_only": True})["weights"] == []


# ------------------------------------------------------------------------------------------ recipes and wrappers
def test_recipe_fit_and_predict_from_the_command_line(tmp_path, capsys):
    ase.io.write(tmp_path / "d.extxyz", _cells(12), format="extxyz")
    (tmp_path / "r.toml").write_text(
        'targets = ["y", "gap"]\n[graph]\nkind = "knn"\nk = 6\n'
        '[model]\nname = "mpnn"\nfeatures = 8\ninteractions = 2\nmax_epochs = 3\n[target]\ntransform = "log1p"\n')
    assert main(["fit", str(tmp_path / "d.extxyz"), "--config", str(tmp_path / "r.toml"), "-o",
                 str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "d.extxyz"), "-o", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 12 and {"y", "gap"} <= set(rows[0])
    assert all(float(r["gap"]) > 0 for r in rows)
    assert main(["evaluate", str(tmp_path / "m"), str(tmp_path / "d.extxyz"), "--json", str(tmp_path / "e.json"),
                 "--quiet"]) == 0
    assert main(["cv", str(tmp_path / "d.extxyz"), "--config", str(tmp_path / "r.toml"), "--n-splits", "2",
                 "--seeds", "0", "--no-learning-curve", "--json", str(tmp_path / "cv.json")]) == 0
    assert "gap" in json.load(open(tmp_path / "cv.json"))["summary"]
    (tmp_path / "bad.toml").write_text('[graph]\nkind = "knn"\nk = 0\n[model]\nname = "mpnn"\n')
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "d.extxyz"), "--config", str(tmp_path / "bad.toml"), "--target", "y",
                 "-o", str(tmp_path / "m2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "[graph] k must be a positive integer, got 0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m2").exists()


def test_a_committee_of_graph_models_has_a_spread():
    recipe = recipe_from_dict({"targets": ["y"], "graph": {"kind": "knn", "k": 6},
                               "model": {"name": "committee", "n_models": 4, "subsample": 0.5, "tune_once": False,
                                         "regressor": {"name": "mpnn", **TINY}}})
    frames = _cells(12)
    model = build_model(recipe, frames).fit(frames, _targets(frames))
    assert model.estimators_[0].estimators_[0].graph == {"kind": "knn", "k": 6}
    mean, std = model.predict(frames[:4], return_std=True)
    assert mean.shape == std.shape == (4,) and np.all(std > 0)


def _fit_ensemble_recipe(tmp_path):
    """``ml4ms fit`` of a recipe whose ensemble members name their blocks, into ``tmp_path / "m"``."""
    ase.io.write(tmp_path / "d.extxyz", _cells(12), format="extxyz")
    (tmp_path / "r.toml").write_text(
        'targets = ["y"]\n[graph]\nkind = "knn"\nk = 6\n'
        '[descriptor]\nname = "concat"\nparts = [{ name = "composition" }, { name = "structures" }]\n'
        '[model]\nname = "ensemble"\nn_splits = 2\n'
        '[[model.members]]\nblock = "composition"\nregressor = { name = "ridge", alpha = 1.0 }\n'
        '[[model.members]]\nblock = "structures"\n'
        'regressor = { name = "mpnn", features = 8, interactions = 2, max_epochs = 3, batch_size = 2 }\n')
    assert main(["fit", str(tmp_path / "d.extxyz"), "--config", str(tmp_path / "r.toml"), "-o",
                 str(tmp_path / "m"), "--quiet"]) == 0


def test_a_recipe_ensemble_member_names_its_block_of_the_concat_descriptor(tmp_path):
    # the parts' widths are known only once the descriptor is fitted; fit, cv and predict resolve the names then
    _fit_ensemble_recipe(tmp_path)
    model, _ = load_model(str(tmp_path / "m"))
    ensemble = model.estimators_[0]
    assert [b[0] for b in ensemble.blocks] == ["composition", "structures"]
    assert isinstance(ensemble.estimators_[1][0], MPNNRegressor)
    assert main(["predict", str(tmp_path / "m"), str(tmp_path / "d.extxyz"), "-o", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 12
    assert main(["cv", str(tmp_path / "d.extxyz"), "--config", str(tmp_path / "r.toml"), "--n-splits", "2",
                 "--seeds", "0", "--no-learning-curve", "--json", str(tmp_path / "cv.json")]) == 0
    assert "y" in json.load(open(tmp_path / "cv.json"))["summary"]


def test_a_model_file_trained_on_a_gpu_predicts_here_with_device_cpu(tmp_path, capsys):
    import torch

    from ml4ms.models.devices import model_devices, set_device

    _fit_ensemble_recipe(tmp_path)
    model, meta = load_model(str(tmp_path / "m"))
    assert model_devices(model) == ["cpu"]
    save_model(tmp_path / "gpu", set_device(model, "cuda"), meta)  # as if trained on a GPU
    data, out = str(tmp_path / "d.extxyz"), str(tmp_path / "gpu.csv")
    capsys.readouterr()
    if not torch.cuda.is_available():
        for command in (["predict", str(tmp_path / "gpu"), data, "-o", out], ["evaluate", str(tmp_path / "gpu"), data],
                        ["screen", str(tmp_path / "gpu"), data, "-o", out]):
            assert main(command + ["--quiet"]) == 2
            err = capsys.readouterr().err.strip()
            assert "computes on 'cuda' (the device it was trained on), which this machine lacks" in err
            assert "give --device cpu" in err and len(err.splitlines()) == 1
        assert not os.path.exists(out)
        assert main(["predict", str(tmp_path / "m"), data, "-o", out, "--device", "cuda", "--quiet"]) == 2
        assert "--device is 'cuda', but torch finds no CUDA GPU" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "gpu"), data, "-o", out, "--device", "cpu", "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "m"), data, "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    assert list(csv.DictReader(open(out))) == list(csv.DictReader(open(tmp_path / "p.csv")))  # = the CPU model's
    assert main(["evaluate", str(tmp_path / "gpu"), data, "--device", "cpu", "--quiet",
                 "--json", str(tmp_path / "e.json")]) == 0


def test_a_graph_model_as_a_member_of_the_stacked_ensemble():
    frames = _cells(12)
    descriptor = ConcatDescriptor(parts=[{"name": "composition"}, {"name": "structures"}], progress=False)
    X = descriptor.fit_transform(frames)
    width = descriptor.blocks_[0][2]
    model = EnsembleRegressor(blocks=descriptor.blocks_, n_splits=2, members=[
        {"columns": [0, width], "regressor": {"name": "ridge", "alpha": 1.0}},
        {"block": "structures", "regressor": {"name": "mpnn", **TINY, "graph": GRAPHS["knn"]}}])
    y = _targets(frames, 2)
    mean, std = model.fit(X, y).predict(X, return_std=True)
    assert mean.shape == std.shape == (12, 2) and np.all(np.isfinite(mean)) and np.all(std > 0)
    assert isinstance(model.estimators_[1][0], MPNNRegressor)
    wrong = EnsembleRegressor(members=[{"columns": [0, width], "regressor": {"name": "mpnn", **TINY}}])
    with pytest.raises(InputError, match="not the rows of the 'structures' descriptor"):
        wrong.fit(X, y)
