"""``ml4ms datasets`` and ``ml4ms duplicates`` through ``ml4ms.cli.main``."""

import json
import os

import pytest
from ase.build import bulk
from ase.io import write

from ml4ms.cli import main
from ml4ms.datasets import CARDS


def test_datasets_lists_every_card(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for card in CARDS.values():
        assert card.name in out and card.citation in out
        for split, size in card.splits.items():
            assert f"{split} ({size}" in out
        for key, unit in card.targets.items():
            assert f"{key} [{unit}]" in out


@pytest.mark.slow
def test_duplicates_nomad_train(capsys, tmp_path):
    out_json = tmp_path / "dups.json"
    assert main(["duplicates", "nomad2018:train", "--quiet", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    assert doc["data"] == ["nomad2018:train"] and doc["n_pairs"] == len(doc["pairs"])
    ids = {(p["id_i"], p["id_j"]) for p in doc["pairs"]}
    readme = {(126, 395), (531, 1379), (2319, 2337), (308, 2154), (353, 2075), (1215, 1886), (2333, 2370)}
    assert readme <= ids
    for p in doc["pairs"]:
        assert p["i"] < p["j"] and p["id_i"] == p["i"] + 1 and 0 <= p["max_deviation"] <= 1e-3
    assert f"{doc['n_pairs']} duplicate pairs in nomad2018:train" in text
    # the pairs with conflicting labels are exactly the README's seven
    conflict_line = [line for line in text.splitlines() if "labels that differ" in line][0]
    flagged = {tuple(int(x) for x in pair.split("/")) for pair in conflict_line.split(": ")[1].split(", ")}
    assert flagged == readme
    assert set(doc["pairs"][0]["label_difference"]) == {"formation_energy_ev_natom", "bandgap_energy_ev"}
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []


def test_duplicates_two_files(capsys, tmp_path):
    a = bulk("Si", "diamond", a=5.43)
    b = bulk("Si", "diamond", a=5.43, cubic=True)  # the same crystal, conventional cell
    c = bulk("Si", "diamond", a=5.6)
    write(tmp_path / "one.xyz", [a, c], format="extxyz")
    write(tmp_path / "two.xyz", [c, b], format="extxyz")
    out_json = tmp_path / "x.json"
    assert main(["duplicates", str(tmp_path / "one.xyz"), str(tmp_path / "two.xyz"), "--quiet",
                 "--cutoff", "4", "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert [(p["i"], p["j"]) for p in doc["pairs"]] == [(0, 1), (1, 0)]
    assert doc["pairs"][0]["id_i"] is None
    assert "2 duplicate pairs" in capsys.readouterr().out


def test_garbage_file_is_a_one_line_error(capsys, tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("this is not\na structure file\n")
    out_json = tmp_path / "out.json"
    assert main(["duplicates", str(bad), "--json", str(out_json)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ml4ms: error:") and str(bad) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out_json.exists()


def test_other_errors(capsys, tmp_path):
    assert main(["duplicates", "octet:table"]) == 2
    assert "needs structures" in capsys.readouterr().err
    assert main(["duplicates", "nomad2018:train", "--tol", "-1"]) == 2
    assert "--tol" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["duplicates", "nomad2018:train", "--json", str(tmp_path / "file" / "x.json")]) == 2
    assert "cannot write the pairs here" in capsys.readouterr().err
    assert main(["duplicates", "nosuchdata"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_one_data_set_twice_is_refused(capsys, tmp_path, monkeypatch):
    write(tmp_path / "one.xyz", [bulk("Si", "diamond", a=5.43), bulk("Si", "diamond", a=5.6)], format="extxyz")
    monkeypatch.chdir(tmp_path)
    for first, second in [("one.xyz", str(tmp_path / "one.xyz")), ("octet:structures", "octet:structures")]:
        assert main(["duplicates", first, second, "--json", "x.json", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "DATA and DATA2 are the same data set: every structure would pair with itself; give it once, as " \
               "DATA, for the duplicates within it" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()
