"""``ml4ms select`` and ``ml4ms map`` end to end, and bad input (exit code 2, one line)."""

import ase.io
import numpy as np
import pytest

from ml4ms.cli import main
from ml4ms.datasets import load

COLUMNS = "columns=['IP_A_eV','IP_B_eV','r_s_A_ang','r_p_B_ang']"


@pytest.fixture(scope="module")
def nomad_subset(tmp_path_factory):
    data = load("nomad2018", "train")
    path = tmp_path_factory.mktemp("nomad") / "nomad200.extxyz"
    ase.io.write(path, data.records[:200], format="extxyz")
    return str(path)


def _indices(path):
    return [int(line.split()[0]) for line in path.read_text().splitlines()]


def test_select_fps_matches_library(tmp_path, capsys):
    from ml4ms.descriptors import make_descriptor
    from ml4ms.selection import farthest_point_sampling

    out = tmp_path / "idx.txt"
    rc = main(["select", "octet:table", "--n", "12", "--method", "fps", "--descriptor", "columns",
               "--set", COLUMNS, "-o", str(out), "--quiet"])
    assert rc == 0
    idx = _indices(out)
    assert len(idx) == 12 and len(set(idx)) == 12 and idx[0] == 0
    rows = load("octet").records
    X = make_descriptor("columns", columns=["IP_A_eV", "IP_B_eV", "r_s_A_ang", "r_p_B_ang"]).fit_transform(rows)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    assert idx == farthest_point_sampling(X.T, 12).tolist()
    assert "12 of 82 records" in capsys.readouterr().out


def test_select_cur_on_structures_and_features(tmp_path, nomad_subset):
    out = tmp_path / "cur.txt"
    assert main(["select", nomad_subset, "--n", "20", "--method", "cur", "--descriptor", "composition",
                 "-o", str(out), "--quiet"]) == 0
    idx = _indices(out)
    assert len(set(idx)) == 20 and all(0 <= i < 200 for i in idx)
    feats = tmp_path / "features.txt"
    assert main(["select", "octet:table", "--n", "2", "--method", "cur", "--features", "--descriptor", "columns",
                 "--set", COLUMNS, "-o", str(feats), "--quiet"]) == 0
    lines = [line.split("\t") for line in feats.read_text().splitlines()]
    assert len(lines) == 2 and all(name in COLUMNS for _, name in lines)


def test_select_random_start_is_reproducible(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    for path in (a, b):
        assert main(["select", "octet:table", "--n", "5", "--seed", "3", "--descriptor", "columns",
                     "--set", COLUMNS, "-o", str(path), "--quiet"]) == 0
    assert a.read_text() == b.read_text()


def test_map_numeric_categorical_kernel_and_highlight(tmp_path, nomad_subset):
    png = tmp_path / "map.png"
    csv = tmp_path / "map.csv"
    assert main(["map", nomad_subset, "--descriptor", "composition", "--color", "formation_energy_ev_natom",
                 "-o", str(png), "--csv", str(csv), "--quiet"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    lines = csv.read_text().splitlines()
    assert lines[0].split(",")[:4] == ["index", "id", "x", "y"] and len(lines) == 201
    xy = np.array([[float(v) for v in line.split(",")[2:4]] for line in lines[1:]])
    assert xy[:, 0].var() >= xy[:, 1].var()  # PCA: the first axis carries the most variance

    sel = tmp_path / "sel.txt"
    assert main(["select", "octet:table", "--n", "8", "--descriptor", "columns", "--set", COLUMNS,
                 "-o", str(sel), "--quiet"]) == 0
    png2 = tmp_path / "octet.png"
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color",
                 "lowest_energy_structure", "--kernel-pca", "--highlight", str(sel), "-o", str(png2)]) == 0
    assert png2.stat().st_size > 1000
    png3 = tmp_path / "cells.png"
    assert main(["map", "octet:structures", "--descriptor", "composition", "--color", "structure_type",
                 "-o", str(png3), "--quiet"]) == 0
    assert png3.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["select", "octet:table", "--n", "100", "--descriptor", "columns", "--set", COLUMNS], "cannot select 100"),
        (["select", "octet:table", "--n", "0", "--descriptor", "columns", "--set", COLUMNS], "--n: must be an integer >= 1"),
        (["select", "octet:table", "--n", "3"], "needs a descriptor"),
        (["select", "octet:table", "--n", "3", "--descriptor", "nope"], "unknown descriptor"),
        (["select", "octet:table", "--n", "3", "--descriptor", "columns", "--set", "columns=['nope']"],
         "'nope' is missing"),
        (["select", "no_such_file.xyz", "--n", "3"], "no such file"),
        (["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color", "nope"],
         "no scalar property 'nope'"),
        (["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color", "Z_A",
          "--highlight", "missing.txt"], "file not found"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, argv, message):
    out = tmp_path / ("out.png" if argv[0] == "map" else "out.txt")
    assert main([*argv, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_map_rejects_non_png_and_bad_highlight(tmp_path, capsys):
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color", "Z_A",
                 "-o", str(tmp_path / "map.jpg")]) == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("3\n500\n")
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color", "Z_A",
                 "--highlight", str(bad), "-o", str(tmp_path / "m.png")]) == 2
    assert "index 500" in capsys.readouterr().err


def test_map_draws_records_without_a_value_apart(tmp_path, capsys, monkeypatch):
    import ml4ms.cli.insight as insight

    rng = np.random.default_rng(0)
    lines = ["a,b,y,c"]
    for k in range(12):
        y = "" if k % 4 == 0 else ("nan" if k == 5 else f"{0.1 * k:.2f}")
        lines.append(f"{rng.normal():.3f},{rng.normal():.3f},{y},{'' if k == 3 else 'RS' if k % 2 else 'ZB'}")
    table = tmp_path / "t.csv"
    table.write_text("\n".join(lines) + "\n")
    seen, real = [], insight.map_plot
    monkeypatch.setattr(insight, "map_plot", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    png, csv = tmp_path / "m.png", tmp_path / "m.csv"
    argv = ["map", str(table), "--descriptor", "columns", "--set", "columns=['a','b']", "-o", str(png), "--quiet"]
    assert main([*argv, "--color", "y", "--csv", str(csv)]) == 0
    assert "(4 without a value, drawn as grey rings)" in capsys.readouterr().out
    ax = seen[-1].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no value (4)"]
    assert ax.collections[0].norm.vmax == pytest.approx(1.1)
    assert ax.get_xlabel().startswith("PC1 (no unit; ") and seen[-1].axes[1].get_ylabel() == "y (unit unknown)"
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    assert [r[-1] for r in rows][:6] == ["", "0.1", "0.2", "0.3", "", ""]
    assert main([*argv, "--color", "c"]) == 0
    texts = [t.get_text() for t in seen[-1].axes[0].get_legend().get_texts()]
    assert texts == ["RS", "ZB", "no value (1)"]


def test_select_and_map_on_identical_or_single_structures(tmp_path, capsys):
    from ase.build import bulk

    cell = bulk("MgO", "rocksalt", a=4.2)
    cell.info["y"] = 1.0
    same = tmp_path / "same.extxyz"
    ase.io.write(same, [cell] * 6, format="extxyz")
    out = tmp_path / "s.txt"
    assert main(["select", str(same), "--descriptor", "composition", "-n", "3", "-o", str(out), "--quiet"]) == 0
    assert _indices(out) == [0, 1, 2]  # ties at distance 0: unchosen ones in order, never one twice
    capsys.readouterr()
    for path, needle in [(same, "the 6 records have the same features"), (tmp_path / "one.extxyz", "1 record")]:
        if not path.exists():
            ase.io.write(path, [cell], format="extxyz")
        assert main(["map", str(path), "--descriptor", "composition", "--color", "y",
                     "-o", str(tmp_path / "m.png"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{path}: nothing to map: {needle}; give at least 2 records with different features" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("argv, needle", [
    (["select", "octet:table", "--n", "3", "--method", "cur", "--seed", "3"],
     "--seed draws the first structure of FPS; CUR is deterministic"),
    (["map", "octet:table", "--color", "Z_A", "--gamma", "5"], "--gamma is the width of kernel PCA"),
])
def test_options_that_would_be_ignored_are_refused(tmp_path, capsys, argv, needle):
    out = tmp_path / ("out.png" if argv[0] == "map" else "out.txt")
    assert main([*argv, "--descriptor", "columns", "--set", COLUMNS, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_descriptor_help_lists_every_descriptor(capsys):
    from ml4ms.descriptors import DESCRIPTORS

    for command in ("featurize", "select", "map"):
        assert main([command, "--help"]) == 0
        assert f"descriptor name: {', '.join(DESCRIPTORS)}" in " ".join(capsys.readouterr().out.split())
