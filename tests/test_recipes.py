"""Every descriptor plugs into the fit/predict path through a recipe file."""

import numpy as np
import pytest

from ml4ms.datasets import Dataset, load
from ml4ms.descriptors import DESCRIPTORS
from ml4ms.errors import InputError
from ml4ms.recipe import apply_overrides, bundled_recipes, read_recipe, recipe_from_dict
from ml4ms.serialize import load_model, save_model
from ml4ms.workflow import fit, predict

# small settings per descriptor, and the data it suits
SETTINGS = {
    "soap": ("qm7", {"r_cut": 4.0, "n_max": 3, "l_max": 2}),
    "local_kernel": ("qm7", {"descriptor": {"name": "soap", "r_cut": 4.0, "n_max": 3, "l_max": 2}, "n_active": 50}),
    "acsf": ("qm7", {"r_cut": 4.0}),
    "chebyshev": ("qm7", {"radial_cutoff": 4.0, "radial_order": 6, "angular_order": 3}),
    "coulomb_matrix": ("qm7", {}),
    "bag_of_bonds": ("qm7", {}),
    "composition": ("qm7", {}),
    "ngrams": ("nomad2018", {"scale": "nomad2018"}),
    "columns": ("nomad2018", {"columns": ["percent_atom_al", "percent_atom_ga", "lattice_vector_1_ang"]}),
    "concat": ("nomad2018", {"parts": [{"name": "composition"}, {"name": "ngrams", "ngram_range": [1, 2]}]}),
    "structures": ("qm7", {}),
}
KRR = {"name": "krr", "kernel": "laplacian", "alpha": [1e-3, 1e-1]}
#: the model of a descriptor whose features only one kind of model reads (default: KRR)
MODELS = {"structures": {"name": "mpnn", "features": 8, "interactions": 2, "max_epochs": 5, "progress": False}}
TARGET = {"qm7": "atomization_energy_pbe0_eV", "nomad2018": "bandgap_energy_ev"}


@pytest.fixture(scope="module")
def subsets():
    out = {}
    for name in ("qm7", "nomad2018"):
        data = load(name)
        records = data.records[:40]
        out[name] = Dataset(name=name, split=None, records=records, source=f"{name} subset")
    return out


def test_every_registered_descriptor_is_covered():
    assert set(SETTINGS) == set(DESCRIPTORS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_descriptor_through_recipe_fit_save_predict(name, subsets, tmp_path):
    dataset, params = SETTINGS[name]
    data = subsets[dataset]
    recipe = recipe_from_dict({
        "targets": [TARGET[dataset]],
        "descriptor": {"name": name, "progress": False, **params} if name != "concat" else {"name": name, **params},
        "model": MODELS.get(name, KRR),
        "target": {"per_atom": dataset == "qm7"},
    })
    model, meta = fit(recipe, data, progress=False)
    save_model(tmp_path / "m", model, meta)
    loaded, meta2 = load_model(tmp_path / "m")
    rows = predict(loaded, meta2, data, progress=False)
    pred = np.array([r[TARGET[dataset]] for r in rows])
    np.testing.assert_allclose(pred, np.asarray(model.predict(data.records)).ravel(), rtol=1e-10)
    y = np.array([a.info[TARGET[dataset]] for a in data.records])
    assert np.all(np.isfinite(pred)) and np.mean(np.abs(pred - y)) < np.std(y)


def test_bundled_recipes_parse():
    """Every bundled recipe passes the reader of its kind; property recipes name targets and a descriptor or graph."""
    from ml4ms.active.config import read_config as read_active_config
    from ml4ms.config import read_toml
    from ml4ms.potentials.train import read_config as read_potential_config
    from ml4ms.sisso.workflow import read_config as read_sisso_config

    kinds = {}
    for name in bundled_recipes():
        doc, _ = read_toml(name)
        kind = ("potential" if "training" in doc else "sisso" if "sisso" in doc else "active" if "oracle" in doc
                else "property")
        kinds.setdefault(kind, []).append(name)
        if kind == "active":
            read_active_config(name)
        elif kind == "potential":
            read_potential_config(name)
        elif kind == "sisso":
            read_sisso_config(name)
        else:
            recipe = read_recipe(name)
            assert (recipe.descriptor or recipe.graph) and recipe.targets
    assert {"nomad2018", "nomad2018_demo", "qm7", "qm7_delta"} <= set(kinds["property"])
    assert {"tio2_potential", "tio2_committee"} <= set(kinds["potential"])
    assert {"octet_prl2015", "octet_classify"} <= set(kinds["sisso"])
    assert {"active_cuau_pool_emt"} <= set(kinds["active"])


@pytest.mark.parametrize("text, needle", [
    ("[modle]\nname = 'krr'\n", "unknown table [modle]; did you mean 'model'?"),
    ("[cv]\nn_split = 3\n", "[cv] unknown key 'n_split'; did you mean 'n_splits'?"),
    ("[target]\ntransfrom = 'log1p'\n", "[target] unknown key 'transfrom'"),
    ("[learning_curve]\nsizes = [0.5]\n", "[learning_curve] unknown key 'sizes'"),
    ("[descriptor]\nname = 'soap'\nr_cutt = 5.0\n", "[descriptor] unknown key 'r_cutt'; did you mean 'r_cut'? "
                                                     "allowed: center_weight"),
    ("[model]\nname = 'krr'\nalpah = 0.1\n", "[model] unknown key 'alpah'; did you mean 'alpha'?"),
    ("[model]\nname = 'ridge'\nkernel = 'laplacian'\n", "[model] unknown key 'kernel'"),
    ("[model]\nkernel = 'laplacian'\n", "[model] needs 'name'"),
    ("[descriptor]\nname = 'nonsense'\n", "[descriptor] unknown descriptor 'nonsense'; choose one of:"),
    ("[cv]\nn_splits = '5'\n", "[cv] n_splits must be an integer >= 2, got '5' (a string); fix it in [cv]"),
    ("[cv]\nseeds = 1.5\n", "[cv] seeds must be a non-empty list of distinct values, each a non-negative "
                           "integer, got 1.5"),
    ("[cv]\nseeds = []\n", "[cv] seeds must be a non-empty list"),
    ("[cv]\nseeds = [0, 0]\n", "[cv] seeds must be a non-empty list of distinct values"),
    ("[cv]\nduplicate_tol = -1e-3\n", "[cv] duplicate_tol must be a number >= 0"),
    ("[target]\nper_atom = 'yes'\n", "[target] per_atom must be true or false, got 'yes' (a string)"),
    ("[target]\nper_atom = 1\n", "[target] per_atom must be true or false, got 1"),
    ("[target]\ntransform = 'log'\n", "[target] transform must be 'none' or 'log1p', got 'log'"),
    ("targets = 3\n", "targets must be a string or a non-empty list of distinct values, each a string, got 3"),
    ("targets = []\n", "targets must be a string or a non-empty list"),
    ("targets = ['y', 'y']\n", "targets must be a string or a non-empty list of distinct values"),
    ("[learning_curve]\ntrain_sizes = [0.5, 0]\n", "[learning_curve] train_sizes must be a non-empty list of "
                                                   "distinct values, each a fraction in (0, 1] or a whole number > 1"),
    ("[learning_curve]\ntrain_sizes = [1.5]\n", "[learning_curve] train_sizes must be"),
    ("[learning_curve]\ntrain_sizes = []\n", "[learning_curve] train_sizes must be a non-empty list"),
    ("[model]\nname = 'krr'\nalpha = []\n", "[model] alpha must be a finite number > 0 or a non-empty list of "
                                           "them, got []; fix it in [model]"),
    ("[model]\nname = 'krr'\nalpha = nan\n", "[model] alpha must be a finite number > 0"),
    ("[model]\nname = 'krr'\nalpha = 1e400\n", "[model] alpha must be a finite number > 0 or a non-empty list "
                                              "of them, got inf"),
    ("[model]\nname = 'gp'\ngamma = [0.1, -1]\n", "[model] gamma must be 'auto' or a finite number > 0"),
    ("[model]\nname = 'committee'\n[model.regressor]\nname = 'krr'\nalpha = []\n",
     "[model.regressor] alpha must be a finite number > 0 or a non-empty list of them, got []"),
    ("[model]\nname = 'ensemble'\n[[model.members]]\ncolumns = [0, 2]\n[model.members.regressor]\nname = 'krr'\n"
     "gamma = inf\n", "[model.members[0].regressor] gamma must be 'auto' or a finite number > 0"),
    ("[model]\nname = 'ensemble'\n[[model.members]]\ncolumn = [0, 2]\n",
     "[model.members[0]] unknown key 'column'; did you mean 'columns'?"),
    ("[descriptor]\nname = 'soap'\nr_cut = inf\n", "[descriptor] r_cut must be finite (no nan or inf), got inf"),
    ("targets = ['e']\n[target]\nbaseline = 'e'\n", "the baseline 'e' is also a target"),
])
def test_bad_recipes_fail_at_read_time_on_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_recipe(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and needle in message


def test_set_values_override_the_recipe_and_are_checked():
    recipe = apply_overrides(read_recipe("nomad2018_demo"),
                             values={"model.alpha": 0.1, "descriptor.weights": [1.0, 2.0], "cv.n_splits": 3})
    assert recipe.model == {"name": "krr", "kernel": "laplacian", "alpha": 0.1}
    assert recipe.descriptor["weights"] == [1.0, 2.0] and recipe.cv["n_splits"] == 3
    assert recipe.source.endswith("nomad2018_demo.toml")
    with pytest.raises(InputError, match="--set cv.n_splits: .cv. n_splits must be an integer >= 2, got 1"):
        apply_overrides(recipe, values={"cv.n_splits": 1})
    with pytest.raises(InputError, match="--set model.alpah: .model. unknown key 'alpah'"):
        apply_overrides(recipe, values={"model.alpah": 1.0})
    # the flags come first: --model ridge --set model.alpha=2
    assert apply_overrides(recipe, model="ridge", values={"model.alpha": 2.0}).model == {"name": "ridge", "alpha": 2.0}


def test_flags_are_checked_like_the_recipe_and_named():
    recipe = read_recipe("nomad2018_demo")
    for flags, needle in [({"targets": ["y", "y"]}, "--target must be a non-empty list of distinct values"),
                          ({"seeds": [0, 0]}, "--seeds must be a non-empty list of distinct values"),
                          ({"seeds": []}, "--seeds must be a non-empty list"),
                          ({"n_splits": 1}, "--n-splits must be an integer >= 2, got 1"),
                          ({"train_sizes": [1.5]}, "--sizes must be a non-empty list of distinct values, each a "
                                                   "fraction in (0, 1] or a whole number > 1, got [1.5]"),
                          ({"train_sizes": [0.5, 0.5]}, "--sizes must be"),
                          ({"targets": ["e"], "baseline": "e"}, "the baseline 'e' is also a target: learning e "
                                                                "minus itself gives 0")]:
        with pytest.raises(InputError) as info:
            apply_overrides(recipe, **flags)
        assert needle in str(info.value)
    both = apply_overrides(recipe, n_splits=3, seeds=[4, 5], train_sizes=[0.5, 20])
    assert both.cv["n_splits"] == 3 and both.cv["seeds"] == [4, 5] and both.learning_curve["train_sizes"] == [0.5, 20]


def test_to_dict_round_trips():
    recipe = read_recipe("qm7")
    assert recipe_from_dict(recipe.to_dict()).to_dict() == recipe.to_dict()
    assert recipe_from_dict(read_recipe().to_dict()).descriptor is None
