"""Every descriptor plugs into the fit/predict path through a recipe file."""

import numpy as np
import pytest

from ml4ms.datasets import Dataset, load
from ml4ms.descriptors import DESCRIPTORS
from ml4ms.recipe import bundled_recipes, read_recipe, recipe_from_dict
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
}
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
        "model": {"name": "krr", "kernel": "laplacian", "alpha": [1e-3, 1e-1]},
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
    for name in bundled_recipes():
        recipe = read_recipe(name)
        assert recipe.descriptor and recipe.targets
