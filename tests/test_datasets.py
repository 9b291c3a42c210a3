import numpy as np
import pytest

from ml4ms.datasets import CARDS, load, load_data, readme
from ml4ms.errors import InputError


@pytest.mark.parametrize("name, split, n", [("nomad2018", "train", 2400), ("nomad2018", "test", 600),
                                            ("octet", "table", 82), ("octet", "structures", 164),
                                            ("qm7", "all", 7101), ("tio2", "train", 6937), ("tio2", "test", 770),
                                            ("tio2", "not_used", 108)])
def test_sizes(name, split, n):
    assert len(load(name, split)) == n == CARDS[name].splits[split]


def test_targets_and_units():
    train = load("nomad2018")
    assert set(train.targets) == {"formation_energy_ev_natom", "bandgap_energy_ev"}
    assert train.targets["formation_energy_ev_natom"].min() == 0.0
    assert load("nomad2018", "test").targets == {}
    qm7 = load("qm7")
    assert np.isclose(qm7.targets["atomization_energy_pbe0_eV"].mean(), -66.621, atol=1e-3)
    tio2 = load("tio2", "test")
    assert tio2.records[0].get_forces().shape == (len(tio2.records[0]), 3)
    assert "Artrith" in readme("tio2")


def test_tio2_excluded_structures_are_high_energy():
    from ml4ms.datasets import TIO2_ATOMIC_ENERGIES as ref

    def binding(a):
        n_o = (a.numbers == 8).sum()
        n_ti = (a.numbers == 22).sum()
        return (a.get_potential_energy() - n_o * ref["O"] - n_ti * ref["Ti"]) / len(a)

    assert min(binding(a) for a in load("tio2", "not_used").records) > 1.0
    assert max(binding(a) for a in load("tio2", "train").records) < 1.0


def test_records_are_copies():
    a = load("octet", "structures")
    a.records[0].positions += 1.0
    b = load("octet", "structures")
    assert not np.allclose(a.records[0].positions, b.records[0].positions)


def test_load_data_specs(tmp_path):
    assert load_data("qm7").source == "qm7:all"
    csv = tmp_path / "t.csv"
    csv.write_text("formula,y\nAl2O3,1.5\nGa2O3,2\n")
    t = load_data(str(csv))
    assert t.records[1] == {"formula": "Ga2O3", "y": 2} and list(t.targets) == ["y"]
    with pytest.raises(InputError, match="no such file or bundled dataset"):
        load_data("nomad2019:train")
    with pytest.raises(InputError, match="has no split"):
        load_data("nomad2018:valid")


def test_load_data_skips_non_numeric_info_keys(tmp_path):
    import ase.io

    frames = load("qm7").records[:3]
    ase.io.write(tmp_path / "m.extxyz", frames, format="extxyz")
    data = load_data(str(tmp_path / "m.extxyz"))
    assert "source_file" not in data.targets and "atomization_energy_pbe0_eV" in data.targets
