"""Data read chunk by chunk (ml4ms.datasets.sources): the same records as reading whole, never more than a chunk."""

import os
import pickle
import weakref

import ase.db
import ase.io
import numpy as np
import pytest

from ml4ms.cli import main
from ml4ms.datasets import load, load_data
from ml4ms.datasets.sources import chunk_pieces, open_parts, plan_chunks, read_chunks, read_pieces, records_of
from ml4ms.errors import InputError

N = 23


@pytest.fixture(scope="module")
def frames():
    return load("nomad2018", "test").records[:N]


def _chunked(parts, size):
    return [(label, start + k, atoms) for pieces in read_chunks(parts, plan_chunks(parts, size))
            for label, start, records in pieces for k, atoms in enumerate(records)]


def _same(a, b):
    assert a.get_chemical_formula() == b.get_chemical_formula()
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.cell[:], b.cell[:])
    assert a.info["spacegroup"] == b.info["spacegroup"] and a.info["lattice_vector_1_ang"] == b.info["lattice_vector_1_ang"]


@pytest.mark.parametrize("name", ["s.extxyz", "s.xyz.gz"])
def test_a_structure_file_in_chunks_gives_the_records_of_a_whole_read(frames, tmp_path, name):
    path = tmp_path / name
    ase.io.write(path, frames, format="extxyz")
    whole = load_data(str(path)).records
    [part] = open_parts([str(path)])
    assert len(part) == N
    chunked = _chunked([part], 5)
    assert [(label, i) for label, i, _ in chunked] == [(str(path), i) for i in range(N)]
    for (_, _, atoms), reference in zip(chunked, whole):
        _same(atoms, reference)
    _same(part.read(20, 21)[0], whole[20])  # a chunk read again, out of order (a resumed run)
    _same(part.read(3, 4)[0], whole[3])


def test_a_pattern_gives_its_files_in_order_and_chunks_span_them(frames, tmp_path):
    for k, (a, b) in enumerate([(0, 10), (10, 11), (11, N)]):
        ase.io.write(tmp_path / f"part{k}.extxyz", frames[a:b], format="extxyz")
    parts = open_parts([str(tmp_path / "part*.extxyz")])
    assert [len(p) for p in parts] == [10, 1, 12]
    plan = plan_chunks(parts, 8)
    assert plan[1] == [(0, 8, 10), (1, 0, 1), (2, 0, 5)]
    chunked = _chunked(parts, 8)
    assert [(os.path.basename(label), i) for label, i, _ in chunked[9:12]] == [
        ("part0.extxyz", 9), ("part1.extxyz", 0), ("part2.extxyz", 0)]
    for (_, _, atoms), reference in zip(chunked, frames):
        _same(atoms, reference)


def test_an_ase_database_in_chunks_gives_every_row_with_its_labels(frames, tmp_path):
    path = str(tmp_path / "s.db")
    with ase.db.connect(path) as db:
        for atoms in frames:
            db.write(atoms, **{k: v.item() for k, v in atoms.info.items() if k != "id"})
    [part] = open_parts([path])
    chunked = [atoms for _, _, atoms in _chunked([part], 4)]
    assert len(part) == N and [a.info["id"] for a in chunked] == list(range(1, N + 1))
    for atoms, reference in zip(chunked, frames):
        _same(atoms, reference)
    for atoms, whole in zip(chunked, load_data(path).records):
        _same(atoms, whole)
    _same(part.read(17, 18)[0], frames[17])  # out of order: by offset


class CountingPart:
    """Fresh structures on every read, counted while they live: how many the reader holds at once."""

    def __init__(self, frames, n):
        self.frames, self.n, self.label = frames, n, "counted"
        self.refs, self.most = [], 0

    def __len__(self):
        return self.n

    def identity(self):
        return [self.label, self.n]

    def read(self, start, stop):
        records = [self.frames[i % len(self.frames)].copy() for i in range(start, stop)]
        self.refs = [r for r in self.refs if r() is not None] + [weakref.ref(a) for a in records]
        self.most = max(self.most, len(self.refs))
        return records


def test_predict_holds_at_most_two_chunks_of_structures(uncertain_model, frames, tmp_path):
    from ml4ms.screening import stream
    from ml4ms.serialize import load_model

    model, meta = load_model(uncertain_model)
    part = CountingPart(frames, 200)
    summary = stream(model, meta, [part], tmp_path / "p.csv", filters=["bandgap_energy_ev > 2"], chunk=10,
                     rank_by="bandgap_energy_ev", progress=False)
    assert summary["complete"] and summary["n_records"] == 200
    assert 10 <= part.most <= 20  # the chunk being read and at most the one before it, of 200


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_bad_sources_are_one_line(uncertain_model, frames, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    err = _one_line_error(capsys, ["predict", uncertain_model, str(tmp_path / "none*.xyz"), "-o", out])
    assert "none*.xyz: no file matches the pattern" in err
    (tmp_path / "bad.db").write_bytes(b"not a database at all" * 20)
    err = _one_line_error(capsys, ["predict", uncertain_model, str(tmp_path / "bad.db"), "-o", out])
    assert "bad.db: cannot read structures (" in err
    (tmp_path / "cut.extxyz").write_text("3\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\n"
                                         "H 0 0 0\n")
    err = _one_line_error(capsys, ["screen", uncertain_model, str(tmp_path / "cut.extxyz"), "-o", out])
    assert "cut.extxyz: cannot read structures (the frame at line 1 ends early)" in err
    broken = [atoms.copy() for atoms in frames]
    broken[13].positions[1] = broken[13].positions[0]
    ase.io.write(tmp_path / "overlap.extxyz", broken, format="extxyz")
    err = _one_line_error(capsys, ["predict", uncertain_model, str(tmp_path / "overlap.extxyz"), "--chunk", "5",
                                   "-o", out, "--quiet"])
    assert f"{tmp_path / 'overlap.extxyz'}: structure 13: atoms 0 and 1 overlap" in err
    assert not (tmp_path / "p.csv").exists()


def test_records_of_a_chunk_are_in_order(frames):
    parts = open_parts(["nomad2018:test"])
    [pieces] = read_chunks(parts, [plan_chunks(parts, 7)[2]])
    assert [a.info["id"] for a in records_of(pieces)] == list(range(15, 22))


def _write(frames, path):
    if str(path).endswith(".db"):
        with ase.db.connect(str(path)) as db:
            for atoms in frames:
                db.write(atoms, **{k: v.item() for k, v in atoms.info.items() if k != "id"})
    else:
        ase.io.write(path, frames, format="extxyz")


@pytest.mark.parametrize("name", ["s.extxyz", "s.xyz.gz", "s.db"])
def test_a_file_chunk_travels_as_a_description_and_reads_the_same_records(frames, tmp_path, name):
    """What a worker receives for a file's chunk holds no ase.Atoms; it reads the records a whole read gives."""
    _write(frames, tmp_path / name)
    [part] = open_parts([str(tmp_path / name)])
    chunks = list(chunk_pieces([part], plan_chunks([part], 10)))
    payload = pickle.dumps(chunks)
    assert b"ase.atoms" not in payload and b"Atoms" not in payload
    if not name.endswith(".gz"):  # a gzipped file's piece carries its text; the others only where it is
        assert max(len(pickle.dumps(c)) for c in chunks) < 400
    read = [atoms for chunk in pickle.loads(payload) for atoms in records_of(read_pieces(chunk))]
    assert len(read) == N
    for atoms, reference in zip(read, load_data(str(tmp_path / name)).records):
        _same(atoms, reference)


def test_a_chunk_whose_file_is_gone_or_replaced_is_one_line_naming_it(frames, tmp_path):
    path = tmp_path / "s.extxyz"
    _write(frames, path)
    [part] = open_parts([str(path)])
    [[(_, _, piece)]] = chunk_pieces([part], [[(0, 5, 9)]])
    _write(frames[:-1], path)  # another file at the same path, as a worker without the shared disk may see
    with pytest.raises(InputError, match="cannot read the file where the chunk runs .* bytes, not the .*"
                                         "put them on a filesystem every worker sees, or drop --scheduler"):
        piece.read()
    os.remove(path)
    with pytest.raises(InputError) as exc:
        piece.read()
    assert str(exc.value).startswith(f"{path}: cannot read the file where the chunk runs (FileNotFoundError)")
    assert len(str(exc.value).splitlines()) == 1
