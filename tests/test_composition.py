"""Tests of the composition features and the element table."""

import json

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.spacegroup import crystal
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.linear_model import Ridge

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.descriptors.composition import CompositionFeatures, parse_formula
from ml4ms.descriptors.elements import PROPERTIES, Z_MAX, element_property, property_table
from ml4ms.errors import InputError


def corundum():
    return crystal(
        ["Al", "O"],
        basis=[(0, 0, 0.352), (0.306, 0, 0.25)],
        spacegroup=167,
        cellpar=[4.76, 4.76, 12.99, 90, 90, 120],
    )


# -- element table ----------------------------------------------------------------
def test_element_table_shape_and_spot_values():
    table = property_table()
    assert table.shape == (Z_MAX + 1, len(PROPERTIES))
    assert np.isnan(table[0]).all()
    col = {p: k for k, p in enumerate(PROPERTIES)}
    # spot checks against well-known values
    o, al, ga, in_, fe = table[8], table[13], table[31], table[49], table[26]
    assert (o[col["period"]], o[col["group"]], o[col["valence_electrons"]]) == (2, 16, 6)
    assert (in_[col["period"]], in_[col["group"]]) == (5, 13)
    assert (fe[col["group"]], fe[col["valence_electrons"]]) == (8, 8)
    assert al[col["atomic_mass"]] == pytest.approx(26.98, abs=0.01)
    assert ga[col["electronegativity"]] == pytest.approx(1.81)
    assert o[col["ionization_energy"]] == pytest.approx(13.618, abs=1e-3)
    assert table[9, col["electron_affinity"]] == pytest.approx(3.401, abs=1e-3)  # F
    assert table[86, col["group"]] == 18 and table[72, col["group"]] == 4  # Rn, Hf


def test_element_table_consistency():
    z = np.arange(1, Z_MAX + 1)
    assert np.array_equal(element_property("atomic_number")[1:], z)
    period = element_property("period")[1:]
    assert np.all(np.diff(period) >= 0) and period[-1] == 6
    group = element_property("group")[1:]
    assert set(group) == set(range(1, 19))
    noble = [2, 10, 18, 36, 54, 86]
    assert np.all(group[np.array(noble) - 1] == 18)
    # mendeleev number is a permutation of 1..86
    assert sorted(element_property("mendeleev_number")[1:]) == list(range(1, Z_MAX + 1))
    # ionisation energy is largest for noble gases within each period
    ie = element_property("ionization_energy")
    for start, end in [(3, 10), (11, 18), (19, 36), (37, 54), (55, 86)]:
        assert np.argmax(ie[start : end + 1]) + start == end
    en = element_property("electronegativity")
    assert np.isnan(en[[2, 10, 18]]).all() and np.isfinite(np.delete(en[1:], [1, 9, 17])).all()
    for name in PROPERTIES:
        if name != "electronegativity":
            assert np.isfinite(element_property(name)[1:]).all(), name
    with pytest.raises(InputError, match="unknown element property"):
        property_table(["density"])


# -- formulas ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Al2O3", {"Al": 2, "O": 3}),
        ("Ca(OH)2", {"Ca": 1, "O": 2, "H": 2}),
        ("Mg3[Fe(CN)6]2", {"Mg": 3, "Fe": 2, "C": 12, "N": 12}),
        ("Al0.5Ga1.5O3", {"Al": 0.5, "Ga": 1.5, "O": 3}),
        (" In2 O3 ", {"In": 2, "O": 3}),
        ("HOH", {"H": 2, "O": 1}),
    ],
)
def test_parse_formula(text, expected):
    assert parse_formula(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "al2o3", "Al2(O3", "Al2)O3", "2Al", "Al-O", "Xx2O3"])
def test_parse_formula_errors(text):
    with pytest.raises(InputError):
        parse_formula(text)


def test_unknown_element_message_has_hint():
    with pytest.raises(InputError, match="unknown element 'Xx'.*chemical symbols"):
        CompositionFeatures().fit(["Xx2O3"])


# -- features ------------------------------------------------------------------------
def test_hand_computed_values():
    cf = CompositionFeatures(properties=["electronegativity", "atomic_mass"]).fit(["Al2O3"])
    assert cf.feature_names_ == [
        "frac_O", "frac_Al",
        "mean_electronegativity", "std_electronegativity", "min_electronegativity", "max_electronegativity",
        "mean_atomic_mass", "std_atomic_mass", "min_atomic_mass", "max_atomic_mass",
    ]  # fmt: skip
    x = cf.transform(["Al2O3"])[0]
    en = {"O": 3.44, "Al": 1.61}
    mean = 0.6 * en["O"] + 0.4 * en["Al"]
    std = np.sqrt(0.6 * (en["O"] - mean) ** 2 + 0.4 * (en["Al"] - mean) ** 2)
    np.testing.assert_allclose(x[:6], [0.6, 0.4, mean, std, 1.61, 3.44])
    from ase.data import atomic_masses

    m = 0.6 * atomic_masses[8] + 0.4 * atomic_masses[13]
    np.testing.assert_allclose(x[6], m)
    np.testing.assert_allclose(x[8:], [atomic_masses[8], atomic_masses[13]])


def test_formula_atoms_and_dict_agree():
    al2o3 = corundum()
    cf = CompositionFeatures().fit(["Al2O3", "Ga2O3", "MgO"])
    X = cf.transform([al2o3, "Al2O3", {"formula": "Al4O6", "other": 1}, al2o3 * (2, 1, 1), "O3Al2"])
    np.testing.assert_allclose(X, np.tile(X[0], (5, 1)), rtol=1e-12)
    # per-element fraction columns: Ga and Mg absent
    names = list(cf.get_feature_names_out())
    assert X[0, names.index("frac_Ga")] == 0 and X[0, names.index("frac_Al")] == pytest.approx(0.4)
    # a single element: std is 0, min = max = mean
    x = cf.transform([bulk("Mg")])[0]
    for p in PROPERTIES:
        vals = [x[names.index(f"{s}_{p}")] for s in ("mean", "min", "max")]
        assert vals == pytest.approx([vals[0]] * 3) and x[names.index(f"std_{p}")] == pytest.approx(0, abs=1e-7)


def test_nomad_fractions_match_dataset_columns():
    records = load("nomad2018", "train").records[:50]
    cf = CompositionFeatures(species=["Al", "Ga", "In", "O"], properties=["ionization_energy"])
    X = cf.fit_transform(records)
    assert list(cf.get_feature_names_out()[:4]) == ["frac_O", "frac_Al", "frac_Ga", "frac_In"]
    cations = X[:, 1:4] / X[:, 1:4].sum(axis=1, keepdims=True)
    expected = np.array([[a.info[f"percent_atom_{e}"] for e in ("al", "ga", "in")] for a in records])
    np.testing.assert_allclose(cations, expected, atol=6e-5)  # the columns have 4 decimals
    np.testing.assert_allclose(X[:, 0], 0.6)


def test_species_and_errors():
    cf = CompositionFeatures().fit(["Al2O3"])
    with pytest.raises(InputError, match="element Ga was not seen"):
        cf.transform(["Ga2O3"])
    with pytest.raises(InputError, match="no value for property 'electronegativity'"):
        CompositionFeatures().fit(["ArO"])
    assert CompositionFeatures(properties=["atomic_mass"]).fit(["ArO"]).n_features_out_ == 2 + 4
    with pytest.raises(InputError, match="beyond the property table"):
        CompositionFeatures().fit(["UO2"])
    with pytest.raises(InputError, match="no 'formula' column.*formula_key"):
        CompositionFeatures().fit([{"composition": "Al2O3"}])
    assert CompositionFeatures(formula_key="composition").fit([{"composition": "Al2O3"}]).n_features_out_ > 0
    with pytest.raises(InputError, match="unknown statistic"):
        CompositionFeatures(stats=["median"]).fit(["Al2O3"])
    with pytest.raises(InputError, match="structure 1"):
        CompositionFeatures().fit(["Al2O3", 5])
    fixed = CompositionFeatures(species=["O", "Al", "Ga"], fractions=False, stats=["mean"]).fit(["Al2O3"])
    assert fixed.species_ == [8, 13, 31] and fixed.n_features_out_ == len(PROPERTIES)
    fixed.transform(["Ga2O3"])  # allowed: listed in species


def test_sklearn_contract():
    cf = make_descriptor("composition", properties=["covalent_radius"])
    assert isinstance(cf, CompositionFeatures)
    assert clone(cf).get_params()["properties"] == ["covalent_radius"]
    data = ["Al2O3", "Ga2O3", "In2O3", "AlGaO3", molecule("H2O"), {"formula": "GaInO3"}]
    y = np.arange(len(data), dtype=float)
    model = make_pipeline(CompositionFeatures(), Ridge(alpha=1.0)).fit(data, y)
    assert model.predict(["AlInO3"]).shape == (1,)
    cf.fit(data)
    state = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(cf).items() if k.endswith("_")}
    json.dumps(state)
    np.testing.assert_allclose(cf.fit_transform(data), cf.transform(data))


def test_model_file_round_trip(tmp_path):
    from ml4ms.serialize import load_model, save_model

    cf = CompositionFeatures(stats=("mean", "max")).fit(["Al2O3", "Ga2O3", "In2O3"])
    save_model(tmp_path / "m", cf, {})
    back, _ = load_model(tmp_path / "m")
    X = ["AlGaO3", {"formula": "In2O3"}]
    np.testing.assert_array_equal(back.transform(X), cf.transform(X))
