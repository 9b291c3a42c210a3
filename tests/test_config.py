"""The one TOML reader (ml4ms.config): files, bundled names, the schema checker, KEY=VALUE settings."""

import os

import numpy as np
import pytest

from ml4ms.config import (any_keys, assign, boolean, bundled_recipe_path, bundled_recipes, check, integer, list_of,
                          named, number, one_of, or_none, parse_assignment, parse_assignments, read_toml, required,
                          string)
from ml4ms.errors import InputError

SCHEMA = {
    "title": string(),
    "cv": {"n_splits": integer(2), "shuffle": boolean(), "tol": number(">= 0"), "fraction": number("(0, 1]"),
           "method": string("loo", "kfold"), "seeds": list_of(integer(0)),
           "sizes": one_of(integer(1), list_of(integer(1)))},
    "data": required({"path": required(string())}),
    "atoms": any_keys({"mass": number("> 0")}),
}


def _error(doc, schema=SCHEMA, source="r.toml"):
    with pytest.raises(InputError) as info:
        check(doc, schema, source=source)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{source}: ")
    return text


def test_read_toml_file_and_bundled_name(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[cv]\nn_splits = 3\n')
    assert read_toml(path) == ({"cv": {"n_splits": 3}}, str(path))
    doc, where = read_toml("qm7")
    assert doc["descriptor"]["name"] == "local_kernel" and where == bundled_recipe_path("qm7.toml")
    assert {"nomad2018", "nomad2018_demo", "qm7", "tio2_potential", "octet_prl2015"} <= set(bundled_recipes())
    assert bundled_recipe_path("nope") is None


@pytest.mark.parametrize("content, needle", [
    (None, "config file not found"),
    (b"[cv\nn_splits = 3\n", "invalid TOML"),
    (b"a = \xff\xfe\n", "not UTF-8 text"),
    ("folder", "cannot read the file"),
])
def test_read_toml_bad_files_are_one_line(tmp_path, content, needle):
    path = tmp_path / "bad.toml"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as info:
        read_toml(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_suggests_a_bundled_name():
    with pytest.raises(InputError, match="did you mean the bundled recipe 'qm7'"):
        read_toml("qm8")


def test_a_good_document_passes():
    doc = {"title": "x", "cv": {"n_splits": 2, "shuffle": False, "tol": 0, "fraction": 1, "method": "loo",
                                "seeds": [0, 1], "sizes": 5}, "data": {"path": "a.csv"}, "atoms": {"O": {"mass": 16}}}
    assert check(doc, SCHEMA) is doc


@pytest.mark.parametrize("doc, needle", [
    ({"dta": {}}, "unknown table [dta]; did you mean 'data'? allowed: [atoms], [cv], [data], title"),
    ({"data": {"path": "a", "paht": "b"}}, "[data] unknown key 'paht'; did you mean 'path'?"),
    ({"cv": {}}, "missing table [data]"),
    ({"data": {}}, "[data] needs 'path'; add it to [data]"),
    ({"data": {"path": 1}}, "[data] path must be a string, got 1; fix it in [data]"),
    ({"data": {"path": "a"}, "cv": {"shuffle": "yes"}}, "[cv] shuffle must be true or false, got 'yes' (a string)"),
    ({"data": {"path": "a"}, "cv": {"shuffle": 1}}, "shuffle must be true or false, got 1;"),
    ({"data": {"path": "a"}, "cv": {"n_splits": "5"}}, "n_splits must be an integer >= 2, got '5' (a string)"),
    ({"data": {"path": "a"}, "cv": {"n_splits": True}}, "n_splits must be an integer >= 2, got true"),
    ({"data": {"path": "a"}, "cv": {"n_splits": 2.0}}, "n_splits must be an integer >= 2, got 2.0"),
    ({"data": {"path": "a"}, "cv": {"tol": float("inf")}}, "tol must be a number >= 0, got inf"),
    ({"data": {"path": "a"}, "cv": {"fraction": 0}}, "fraction must be in (0, 1], got 0"),
    ({"data": {"path": "a"}, "cv": {"method": "cv"}}, "method must be 'loo' or 'kfold', got 'cv'"),
    ({"data": {"path": "a"}, "cv": {"seeds": 1.5}}, "seeds must be a list, each a non-negative integer, got 1.5"),
    ({"data": {"path": "a"}, "cv": {"sizes": [1, 0]}}, "sizes must be a positive integer or a list, each"),
    ({"data": {"path": "a"}, "cv": 3}, "cv must be a table, got 3"),
    ({"data": {"path": "a"}, "atoms": {"O": {"mass": -1}}}, "[atoms.O] mass must be a number > 0"),
])
def test_first_problem_is_one_line_naming_table_and_key(doc, needle):
    assert needle in _error(doc)


def test_numbers_take_integers_and_numpy_scalars():
    assert check({"n": 1, "x": 2, "b": np.bool_(True), "k": np.int64(3), "y": np.float32(0.5)},
                 {"n": integer(), "x": number(), "b": boolean(), "k": integer(0), "y": number("[0, 1)")})
    assert or_none(integer(1)).test(None) and not integer(1).test(None)


def test_named_tables_take_the_parameters_of_the_class():
    class Model:
        @classmethod
        def _get_param_names(cls):
            return ["alpha", "kernel"]

    def lookup(name):
        if name != "m":
            raise InputError(f"unknown model '{name}'", hint="choose one of: m")
        return Model

    schema = {"model": named(lookup)}
    assert check({"model": {"name": "m", "alpha": [0.1, 1.0]}}, schema)
    assert "[model] unknown key 'alpah'; did you mean 'alpha'? allowed: alpha, kernel, name" in _error(
        {"model": {"name": "m", "alpah": 1}}, schema)
    assert "[model] unknown model 'x'; choose one of: m" in _error({"model": {"name": "x"}}, schema)
    assert "[model] needs 'name'" in _error({"model": {"alpha": 1}}, schema)
    assert "[model] name must be a non-empty string, got 3" in _error({"model": {"name": 3}}, schema)


def test_parse_assignments_bare_words_are_strings():
    assert parse_assignments(["reduce=species_mean", "x=1e-3"]) == {"reduce": "species_mean", "x": 1e-3}
    assert parse_assignment("model.alpha=[0.1, 1]") == ("model.alpha", [0.1, 1])
    assert parse_assignment("per_atom=true") == ("per_atom", True)
    with pytest.raises(InputError, match="--set needs KEY=VALUE"):
        parse_assignment("alpha")


def test_assign_dotted_keys():
    doc = {"model": {"name": "krr"}, "descriptor": None}
    assert assign(doc, "descriptor.r_cut", 4.0) == {"model": {"name": "krr"}, "descriptor": {"r_cut": 4.0}}
    assert assign(doc, "targets", ["y"])["targets"] == ["y"] and "targets" not in doc
    with pytest.raises(InputError, match="'model.name' is not a table"):
        assign(doc, "model.name.x", 1)


def test_configs_folder_is_the_bundled_recipes():
    configs = os.path.join(os.path.dirname(__file__), "..", "configs")
    assert sorted(f[:-5] for f in os.listdir(configs) if f.endswith(".toml")) == bundled_recipes()
