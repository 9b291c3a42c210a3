import gzip

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ml4ms.errors import InputError
from ml4ms.structures import check_structure, get_property, get_targets, read_structures


def test_read_gzipped_extxyz_fast_path(tmp_path):
    import ase.io

    frames = [bulk("Cu", "fcc", a=3.6 + 0.01 * k) for k in range(3)]
    for k, a in enumerate(frames):
        a.info["y"] = float(k)
    plain = tmp_path / "x.extxyz"
    ase.io.write(plain, frames, format="extxyz")
    gz = tmp_path / "x.extxyz.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    back = read_structures(gz)
    assert [a.info["y"] for a in back] == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(back[2].cell, frames[2].cell)


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_structures(tmp_path / "missing.xyz")
    bad = tmp_path / "garbage.xyz"
    bad.write_bytes(b"\x00\x01garbage\nnot a structure\n")
    with pytest.raises(InputError, match="cannot read structures") as err:
        read_structures(bad)
    assert "\n" not in str(err.value) and "garbage.xyz" in str(err.value)


@pytest.mark.parametrize("atoms, match", [
    (Atoms(), "empty structure"),
    (Atoms("H2", positions=[[0, 0, 0], [0, 0, np.nan]]), "NaN or inf"),
    (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.1]]), "overlap"),
    (Atoms("H", positions=[[0, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]], pbc=True), "zero volume"),
    (Atoms("H", positions=[[0, 0, 0]], cell=[0.3, 3, 3], pbc=True), "overlap"),  # own periodic image
])
def test_check_structure_rejects(atoms, match):
    with pytest.raises(InputError, match=match) as err:
        check_structure(atoms, source="f.xyz", index=7)
    assert str(err.value).startswith("f.xyz: structure 7:")


def test_small_periodic_cell_is_fine():
    check_structure(bulk("Si", "diamond", a=5.43))  # cell far smaller than typical cutoffs


def test_targets_from_info_calc_and_rows():
    from ase.calculators.singlepoint import SinglePointCalculator

    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], info={"gap": 1.5})
    a.calc = SinglePointCalculator(a, energy=-3.0)
    assert get_property(a, "energy_per_atom") == -1.5
    np.testing.assert_allclose(get_targets([a, {"gap": 2.0, "energy": 1.0}], ["gap", "energy"]), [[1.5, -3.0], [2.0, 1.0]])
    with pytest.raises(InputError, match="'bandgap' is missing.*gap"):
        get_targets([a], ["bandgap"], source="d.xyz")
    a.info["gap"] = float("nan")
    with pytest.raises(InputError, match="target 'gap' is nan"):
        get_targets([a], ["gap"])
