import json

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
