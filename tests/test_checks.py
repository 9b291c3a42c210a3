"""Energy-force consistency of labelled data (ml4ms.potentials.checks, ``ml4ms potential check``)."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ml4ms import cli
from ml4ms.errors import InputError
from ml4ms.potentials.checks import energy_force_consistency


def _path(steps=6, step=0.01, seed=0):
    """EMT-labelled copies of a rattled Cu cell, each ``step`` Å (RMS per atom) from the last."""
    base = bulk("Cu", cubic=True).repeat(2)
    base.rattle(0.05, seed=seed)
    direction = np.random.default_rng(seed).normal(size=base.positions.shape)
    direction *= step / np.sqrt((direction ** 2).sum(1).mean())
    frames = []
    for k in range(steps):
        a = base.copy()
        a.positions += k * direction
        a.calc = EMT()
        a.get_potential_energy()
        frames.append(a)
    return frames


def _labels(frames):
    return np.array([a.get_potential_energy() for a in frames]), [a.get_forces() for a in frames]


def _rms(x):
    return np.sqrt(np.mean(np.square(x)))


def test_consistent_labels_agree_and_scaled_energies_do_not():
    frames = _path()
    e, f = _labels(frames)
    out = energy_force_consistency(frames, e, f)
    assert out["pairs"].tolist() == [[k, k + 1] for k in range(5)]
    assert np.allclose(out["displacement"], 0.01)
    assert np.allclose(out["discrepancy"], out["energy_difference"] - out["work"])
    assert _rms(out["energy_difference"]) > 0.1  # meV/atom: there is something to compare
    assert _rms(out["discrepancy"]) < 0.02 * _rms(out["energy_difference"])
    # energies from another energy expression than the forces (here: differences 30 % too large)
    wrong = e[0] + 1.3 * (e - e[0])
    bad = energy_force_consistency(frames, wrong, f)
    assert _rms(bad["discrepancy"]) > 0.2 * _rms(bad["energy_difference"])


def test_pairs_need_the_same_cell_and_atom_order_and_use_the_minimum_image():
    frames = _path(steps=3)
    e, f = _labels(frames)
    # wrapping atoms back into the cell changes positions by lattice vectors only
    shifted = frames[1].copy()
    shifted.positions[0] += frames[1].cell[0]
    shifted.positions[3] -= frames[1].cell[2]
    out = energy_force_consistency([frames[0], shifted, frames[2]], e, f)
    assert len(out["pairs"]) == 2 and np.allclose(out["displacement"], 0.01)
    assert _rms(out["discrepancy"]) < 0.02 * _rms(out["energy_difference"])
    # another atom order or another cell: no partner within reach
    swapped = frames[1][[1, 0] + list(range(2, len(frames[1])))]
    strained = frames[1].copy()
    strained.set_cell(frames[1].cell * 1.01, scale_atoms=False)
    out = energy_force_consistency([frames[0], swapped, strained], e, f)
    assert len(out["pairs"]) == 0
    # too far apart
    assert len(energy_force_consistency(frames, e, f, max_displacement=0.005)["pairs"]) == 0


def test_bad_labels_name_the_structure():
    frames = _path(steps=3)
    e, f = _labels(frames)
    e[1] = np.nan
    with pytest.raises(InputError, match="structure 1.*not finite"):
        energy_force_consistency(frames, e, f, source="x.extxyz")
    e, f = _labels(frames)
    with pytest.raises(InputError, match="structure 2.*shape"):
        energy_force_consistency(frames, e, f[:2] + [f[2][:-1]])
    with pytest.raises(InputError, match="3 structures, 2 energies"):
        energy_force_consistency(frames, e[:2], f)
    with pytest.raises(InputError, match="max_displacement"):
        energy_force_consistency(frames, e, f, max_displacement=0)


def test_cli_check(tmp_path, capsys):
    frames = _path()
    e, f = _labels(frames)
    for a, ek, fk in zip(frames, e, f):  # labels as an extxyz file stores them
        a.calc = SinglePointCalculator(a, energy=ek, forces=fk)
    data = tmp_path / "path.extxyz"
    write(data, frames)
    out = tmp_path / "check.json"
    assert cli.main(["potential", "check", str(data), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_pairs"] == 5 and report["relative_discrepancy"] < 0.02
    assert report["by_formula"]["Cu32"]["n_pairs"] == 5
    assert len(report["worst_pairs"]) == 5
    assert "5 pairs of structures" in capsys.readouterr().out
    assert cli.main(["potential", "check", str(data), "--max-displacement", "0.001"]) == 0
    assert "nothing to compare" in capsys.readouterr().out
    write(tmp_path / "bare.extxyz", bulk("Cu"))
    assert cli.main(["potential", "check", str(tmp_path / "bare.extxyz")]) == 2
    assert "no energy and forces" in capsys.readouterr().err


def test_label_outliers_name_labels_in_other_units():
    from ase.build import bulk

    from ml4ms.potentials.checks import label_outliers, outlier_warning

    cells = [bulk("Cu", "fcc", a=3.6 + 0.01 * k) * (1, 1, 1 + k % 2) for k in range(8)]
    energies = [-3.7 * len(a) - 0.01 * k for k, a in enumerate(cells)]
    forces = [np.full((len(a), 3), 0.1) for a in cells]
    assert label_outliers(cells, energies, forces) == []
    energies[3] *= 1000  # meV given as eV
    forces[5][0, 1] = 1e8
    found = label_outliers(cells, energies, forces)
    assert [k for k, _ in found] == [3, 5]
    assert "energy" in found[0][1] and "forces up to 1e+08 eV/Å" in found[1][1]
    line = outlier_warning(found, "data.extxyz")
    assert line.startswith("data.extxyz: 2 structures with labels far outside the rest") and "\n" not in line
