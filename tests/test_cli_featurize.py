import json

import ase.io
import numpy as np

from ml4ms.cli import main
from ml4ms.datasets import load


def test_per_atom_soap_to_npz(tmp_path, capsys):
    out = tmp_path / "f.npz"
    code = main(["featurize", "octet:structures", "--descriptor", "soap", "--set", "r_cut=4.0", "--set", "n_max=2",
                 "--set", "l_max=1", "--per-atom", "-o", str(out), "--quiet"])
    assert code == 0
    with np.load(out, allow_pickle=False) as f:
        n_atoms = sum(len(a) for a in load("octet", "structures").records)
        assert f["features"].shape[0] == n_atoms == len(f["structure_index"])
        assert f["structure_index"].max() == 163
        assert f["features"].shape[1] == len(f["feature_names"])
        assert json.loads(str(f["descriptor"]))["r_cut"] == 4.0


def test_global_descriptor_and_errors(tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert main(["featurize", "octet:structures", "--descriptor", "composition", "-o", str(out), "--quiet"]) == 0
    with np.load(out, allow_pickle=False) as f:
        assert f["features"].shape[0] == 164
    capsys.readouterr()
    assert main(["featurize", "octet:structures", "--descriptor", "composition", "--per-atom",
                 "-o", str(tmp_path / "x.npz")]) == 2
    assert "global" in capsys.readouterr().err
    assert main(["featurize", "octet:structures", "-o", str(tmp_path / "y.npz")]) == 2
    assert "no descriptor given" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()


def test_set_with_an_unknown_parameter_names_the_allowed_ones(tmp_path, capsys):
    assert main(["featurize", "octet:structures", "--descriptor", "soap", "--set", "r_cutt=4.0",
                 "-o", str(tmp_path / "z.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set: [descriptor] unknown key 'r_cutt'; did you mean 'r_cut'?" in err[0]
    assert not (tmp_path / "z.npz").exists()


def test_concat_descriptor_names_every_column(tmp_path, capsys):
    """featurize with a concat descriptor crashed: ConcatDescriptor had no get_feature_names_out."""
    recipe = tmp_path / "concat.toml"
    recipe.write_text('[descriptor]\nname = "concat"\n'
                      '[[descriptor.parts]]\nname = "composition"\nproperties = ["atomic_mass"]\n'
                      '[[descriptor.parts]]\nname = "composition"\nfractions = false\nstats = ["mean"]\n'
                      'properties = ["atomic_mass"]\n')
    out = tmp_path / "c.npz"
    assert main(["featurize", "octet:structures", "--config", str(recipe), "-o", str(out), "--quiet"]) == 0
    with np.load(out, allow_pickle=False) as f:
        names = list(f["feature_names"])
        assert len(names) == f["features"].shape[1] == len(set(names))
    assert names[-1] == "composition1__mean_atomic_mass" and names[0].startswith("composition0__frac_")


def test_species_fixed_by_the_parameter_are_named_as_such(tmp_path, capsys):
    assert main(["featurize", "octet:structures", "--descriptor", "composition", "--set", "species=['Na','Cl']",
                 "-o", str(tmp_path / "f.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "octet:structures: structure 0: element" in err and "not among the descriptor's species (Cl, Na), " \
           "fixed by its species parameter; add it to species, or remove the structure" in err
    assert "training" not in err and not (tmp_path / "f.npz").exists()


def test_bad_table_values_name_the_row_and_the_file(tmp_path, capsys):
    for text, needle in [("a,b,y\n1,2,3\n4,nan,6\n", "row 1: feature column 'b' is nan"),
                         ("a,b,y\n1,2,3\n4,x,6\n", "row 1: feature column 'b' is missing or not a number ('x')"),
                         ("a,a,y\n1,2,3\n4,5,6\n", "column 'a' appears 2 times in the header; give every column its "
                                                   "own name"),
                         ("a,b,y\n1,2,3\n4,5\n", "row 1: the row has a different number of columns than the header")]:
        table = tmp_path / "t.csv"
        table.write_text(text)
        assert main(["featurize", str(table), "--descriptor", "columns", "--set", "columns=['a','b']",
                     "-o", str(tmp_path / "f.npz"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"ml4ms: error: {table}: {needle}" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "f.npz").exists()


SOAP = ["--descriptor", "soap", "--set", "r_cut=3.0", "--set", "n_max=2", "--set", "l_max=1",
        "--set", "species=['O','Al','Ga','In']", "--per-atom", "--quiet"]


def test_shards_equal_the_single_file_and_resume_after_an_interruption(tmp_path, capsys, monkeypatch):
    from ml4ms import shards

    ase.io.write(tmp_path / "s.extxyz", load("nomad2018", "test").records[:130], format="extxyz")
    data = ["featurize", str(tmp_path / "s.extxyz")]
    assert main(data + SOAP + ["-o", str(tmp_path / "one.npz")]) == 0
    folder = tmp_path / "feats"
    calls = []
    real = shards.FeaturizeChunk.__call__

    def crash_at_third(self, pieces):
        calls.append(pieces[0][1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, pieces)

    monkeypatch.setattr(shards.FeaturizeChunk, "__call__", crash_at_third)
    assert main(data + SOAP + ["--chunk", "30", "-o", str(folder)]) == 130
    assert calls == [0, 30, 60] and sorted(p.name for p in folder.iterdir()) == [
        "index.json", "shard-000000.npz", "shard-000001.npz"]
    monkeypatch.undo()
    capsys.readouterr()
    assert main(data + SOAP + ["--chunk", "30", "-o", str(folder)]) == 0
    assert "continued from 2 of 5 shards" in capsys.readouterr().out
    one, sharded = np.load(tmp_path / "one.npz"), shards.read_features(folder)
    assert sorted(one.files) == sorted(sharded)
    for key in one.files:
        np.testing.assert_array_equal(one[key], sharded[key])
    index = json.load(open(folder / "index.json"))
    assert index["complete"] and index["shards"][1]["structures"] == [30, 60]
    assert index["shards"][-1]["rows"][1] == len(one["features"]) and index["descriptor"]["r_cut"] == 3.0
    mapped = shards.read_features(folder, mmap=str(tmp_path / "f.npy"))["features"]
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, one["features"])


def test_shards_refuse_descriptors_that_learn_from_the_data(tmp_path, capsys):
    for extra, needle in [(["--descriptor", "soap"], "descriptor 'soap' learns from the data (species)"),
                          (["--config", "nomad2018"], "ngrams n-gram vocabulary"),
                          (["--descriptor", "composition", "-o", str(tmp_path / "f.npz")], "with --chunk the "
                                                                                             "features go to a folder")]:
        out = [] if "-o" in extra else ["-o", str(tmp_path / "feats")]
        assert main(["featurize", "nomad2018:test", *extra, *out, "--chunk", "100", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "feats").exists() and not (tmp_path / "f.npz").exists()
