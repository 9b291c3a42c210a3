"""benchmarks/tio2_peers.py and its MACE side, without MACE: the data handed over, the deadline, the options."""

import doctest
import importlib
import os
import sys
import time

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="module")
def peers():
    sys.path.insert(0, BENCHMARKS)
    try:
        yield importlib.import_module("tio2_peers"), importlib.import_module("tio2_peers_mace")
    finally:
        sys.path.remove(BENCHMARKS)


def test_doctests(peers):
    for module in peers:
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_deadline_cuts_an_epoch_and_ends_the_loop(peers):
    _, mace_side = peers

    def slow_batches():
        for k in range(100):
            time.sleep(0.01)
            yield [k]

    class Loader:
        def __iter__(self):
            return slow_batches()

        def __len__(self):
            return 100

    d = mace_side.Deadline(Loader(), 0.05, atoms_of=len)
    d.start()
    seen = list(d)
    assert 1 <= len(seen) < 100 and d.batches == len(seen) == d.atoms
    with pytest.raises(mace_side.BudgetSpent):
        list(d)


def test_mace_inputs_carry_the_split_and_labels(peers, tmp_path):
    from ase.io import read

    from ml4ms.datasets import load
    from ml4ms.potentials.metrics import labels_of

    tio2_peers, _ = peers
    cells = load("tio2", "test").records  # the smaller split: its first cells stand in for training cells
    frames, test = cells[:30], cells[30:33]
    e, f = labels_of(frames)
    tr, va = tio2_peers.common_split(frames, e, 0, ["dn", "mp"])
    assert len(va) > 0 and not set(tr) & set(va)
    paths = tio2_peers.write_mace_inputs(str(tmp_path), frames, e, f, tr, va, test)
    train = read(paths["train"], ":")
    assert len(train) == len(tr)
    assert np.allclose([a.info["REF_energy"] for a in train], e[tr])
    assert np.allclose(train[-1].arrays["REF_forces"], f[tr[-1]])
    assert np.allclose(train[0].positions, frames[tr[0]].positions)
    cells = read(paths["test_cells"], ":")
    assert len(cells) == 3 and cells[0].calc is None and "REF_energy" not in cells[0].info
    assert len(read(paths["md_cell"])) == 4 * len(test[0])


def test_bad_options_exit_2(peers, tmp_path):
    tio2_peers, _ = peers
    for argv in (["--only", "mace,schnet"], ["--minutes", "0"],
                 ["--only", "mace", "--peers-python", str(tmp_path / "no-python")]):
        with pytest.raises(SystemExit) as exc:
            tio2_peers.main(argv + ["--workdir", str(tmp_path)])
        assert exc.value.code == 2
