"""``ml4ms screen``: predictions with their uncertainty through filters, in resumable chunks, survivors ranked."""

import csv
import os

import ase.io
import numpy as np
import pytest

from ml4ms.cli import main
from ml4ms.datasets import load
from ml4ms.screening import Filter, apply_filters, partial_folder

BAND, BAND_STD, FORM = "bandgap_energy_ev", "bandgap_energy_ev_std", "formation_energy_ev_natom"
WHERE = [f"{BAND} > 2 and {BAND_STD} < 0.7", f"{FORM} < 0.2"]


@pytest.fixture(scope="module")
def model(uncertain_model, tmp_path_factory):
    """The model's folder and its predictions of nomad2018:test (``ml4ms predict``)."""
    out = tmp_path_factory.mktemp("screen") / "all.csv"
    assert main(["predict", uncertain_model, "nomad2018:test", "-o", str(out), "--quiet"]) == 0
    return uncertain_model, list(csv.DictReader(open(out)))


def _screen(capsys, *argv):
    code = main(["screen", *[str(a) for a in argv], "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _where(*texts):
    return [a for text in texts for a in ("--where", text)]


def test_filters_counts_and_ranking(model, tmp_path, capsys):
    path, predictions = model
    code, out, _ = _screen(capsys, path, "nomad2018:test", *_where(*WHERE), "--chunk", "150",
                           "-o", tmp_path / "s.csv")
    assert code == 0
    stage1 = [r for r in predictions if float(r[BAND]) > 2 and float(r[BAND_STD]) < 0.7]
    stage2 = [r for r in stage1 if float(r[FORM]) < 0.2]
    assert 0 < len(stage2) < len(stage1) < len(predictions)
    assert f"stage 1: {WHERE[0]}: {len(stage1)} passed" in out
    assert f"stage 2: {WHERE[1]}: {len(stage2)} passed" in out
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert list(rows[0])[:3] == ["rank", "index", "id"]
    assert [r["rank"] for r in rows] == [str(k) for k in range(1, len(stage2) + 1)]
    assert sorted(int(r["index"]) for r in rows) == sorted(int(r["index"]) for r in stage2)
    values = [float(r[FORM]) for r in rows]
    assert values == sorted(values)  # default: the first target, smallest first
    by_index = {r["index"]: r for r in predictions}
    assert all(r[BAND] == by_index[r["index"]][BAND] for r in rows)  # the same numbers as predict
    assert not os.path.exists(partial_folder(tmp_path / "s.csv"))
    code, _, _ = _screen(capsys, path, "nomad2018:test", *_where(WHERE[0]), "--rank-by", BAND, "--descending",
                         "-o", tmp_path / "d.csv")
    values = [float(r[BAND]) for r in csv.DictReader(open(tmp_path / "d.csv"))]
    assert code == 0 and len(values) == len(stage1) and values == sorted(values, reverse=True)


def test_interrupted_run_continues_where_it_stopped(model, tmp_path, capsys, monkeypatch):
    path, _ = model
    args = [path, "nomad2018:test", *_where(*WHERE), "--chunk", "100"]
    assert _screen(capsys, *args, "-o", tmp_path / "whole.csv")[0] == 0
    out = tmp_path / "s.csv"
    code, text, _ = _screen(capsys, *args, "--max-chunks", "2", "-o", out)
    assert code == 0 and "2 of 6 chunks" in text and "run the same command again" in text
    assert not out.exists() and sorted(os.listdir(partial_folder(out))) == [
        "chunk-000000.csv", "chunk-000001.csv", "state.json"]
    # a crash in the fourth chunk (the third of this run): the finished ones stay
    from ml4ms import screening

    calls = []
    real = screening.PredictChunk.__call__

    def crash_at_third(self, item):
        calls.append(item[0][1])  # the start of the chunk's first piece
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, item)

    monkeypatch.setattr(screening.PredictChunk, "__call__", crash_at_third)
    assert main(["screen", *args, "-o", str(out), "--quiet"]) == 130
    assert calls == [200, 300, 400] and not out.exists()
    monkeypatch.undo()
    code, text, _ = _screen(capsys, *args, "-o", out)
    assert code == 0 and "continued from 4 of 6 chunks" in text
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()
    # a different job (other filters) in the same place starts over
    _screen(capsys, *args[:2], *_where(WHERE[1]), "--chunk", "100", "--max-chunks", "1", "-o", out)
    code, text, _ = _screen(capsys, *args, "-o", out)
    assert code == 0 and "continued" not in text and out.read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_several_inputs_get_a_data_column(model, tmp_path, capsys):
    path, _ = model
    ase.io.write(tmp_path / "few.extxyz", load("nomad2018", "test").records[:5], format="extxyz")
    code, _, _ = _screen(capsys, path, "nomad2018:test", tmp_path / "few.extxyz", "--where", f"{FORM} > -100",
                         "-o", tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert code == 0 and len(rows) == 605 and list(rows[0])[:4] == ["rank", "index", "data", "id"]
    assert sum(r["data"] == str(tmp_path / "few.extxyz") for r in rows) == 5


def test_no_survivor_still_writes_a_header(model, tmp_path, capsys):
    path, _ = model
    code, out, _ = _screen(capsys, path, "nomad2018:test", "--where", f"{BAND} > 1e9", "-o", tmp_path / "s.csv")
    assert code == 0 and "0 survivors" in out
    assert open(tmp_path / "s.csv").read().splitlines() == [f"rank,index,{FORM},{FORM}_std,{BAND},{BAND_STD}"]


@pytest.mark.parametrize("text, why", [
    ("__import__('os').system('true')", "calls are not allowed"),
    ("__import__('os').sep > 1", "attribute access is not allowed"),
    ("__import__('os') > 1", "calls are not allowed"),
    ("open('x') == 1", "calls are not allowed"),
    (f"{BAND}.real > 1", "attribute access is not allowed"),
    (f"{BAND}[0] > 1", "subscripts are not allowed"),
    ("(lambda: 1)() > 0", "calls are not allowed"),
    (f"{BAND} > 'a'", "is not a number"),
    (f"{BAND} > True", "is not a number"),
    (f"{BAND} ** 2 > 1", "BinOp is not allowed"),
    ("volume > 1", "unknown name 'volume'"),
    (f"{BAND} > 2 and", "is not an expression"),
    (f"{BAND} + 1", "is not a condition"),
    (f"{BAND} and {FORM} < 1", "and/or needs a condition"),
    (f"[x for x in ()] == {BAND}", "ListComp is not allowed"),
])
def test_unsafe_or_wrong_expressions_are_refused_in_one_line(model, tmp_path, capsys, text, why):
    path, _ = model
    code, out, err = _screen(capsys, path, "nomad2018:test", "--where", f"{FORM} < 1", "--where", text,
                             "-o", tmp_path / "s.csv")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and why in lines[0] and f"--where '{text}'" in lines[0], err
    assert not (tmp_path / "s.csv").exists() and not os.path.exists(partial_folder(tmp_path / "s.csv"))


def test_bad_rank_column_and_scheduler_are_one_line(model, tmp_path, capsys):
    path, _ = model
    code, _, err = _screen(capsys, path, "nomad2018:test", "--rank-by", "volume", "-o", tmp_path / "s.csv")
    assert code == 2 and "--rank-by: 'volume' is not a prediction column" in err
    code, _, err = _screen(capsys, path, "nomad2018:test", "--scheduler", "8786", "-o", tmp_path / "s.csv")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tcp://HOST:PORT" in err


def test_filter_arithmetic_chains_and_nan():
    cols = {"a": np.array([1.0, 2.0, np.nan, 4.0]), "b": np.array([0.5, 0.5, 0.5, 0.0])}
    assert Filter("1 < a <= 3", ["a"])(cols).tolist() == [False, True, False, False]
    assert Filter("not (a / b > 3) or -a < -3.5", ["a", "b"])(cols).tolist() == [True, False, True, True]
    assert Filter("a * 2 - b >= 3.5", ["a", "b"])(cols).tolist() == [False, True, False, True]
    rows = [{"a": v} for v in cols["a"]]
    assert apply_filters(rows, [Filter("a > 1", ["a"]), Filter("a != 4", ["a"])])[1] == [2, 1]


def test_files_patterns_and_merging_in_rounds_give_the_in_memory_result(model, tmp_path, capsys, monkeypatch):
    from ml4ms import screening

    path, _ = model
    records = load("nomad2018", "test").records
    ase.io.write(tmp_path / "all.extxyz", records, format="extxyz")
    for k in range(3):
        ase.io.write(tmp_path / f"part{k}.extxyz", records[80 * k:80 * (k + 1)], format="extxyz")
    assert main(["predict", path, "nomad2018:test", "--chunk", "100", "-o", str(tmp_path / "a.csv"), "--quiet"]) == 0
    assert main(["predict", path, str(tmp_path / "all.extxyz"), "--chunk", "100", "-o", str(tmp_path / "b.csv"),
                 "--quiet"]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    args = [path, *_where(WHERE[0]), "--chunk", "30"]
    assert _screen(capsys, *args, *(tmp_path / f"part{k}.extxyz" for k in range(3)), "-o", tmp_path / "c.csv")[0] == 0
    monkeypatch.setattr(screening, "FAN_IN", 2)  # 8 sorted chunk files merged two at a time, in rounds
    assert _screen(capsys, *args, tmp_path / "part*.extxyz", "-o", tmp_path / "d.csv")[0] == 0
    assert (tmp_path / "c.csv").read_bytes() == (tmp_path / "d.csv").read_bytes()
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    values = [float(r[FORM]) for r in rows]
    assert values == sorted(values) and {os.path.basename(r["data"]) for r in rows} == {f"part{k}.extxyz" for k in range(3)}
