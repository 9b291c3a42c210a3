"""Distributed training (torchrun, gloo on the CPU) follows the one-process run; devices; resuming across both."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.io import write

import ml4ms
import ml4ms.cli as cli
from ml4ms.datasets import load
from ml4ms.errors import InputError
from ml4ms.potentials import (MessagePassingPotential, NeuralPotential, NeuralPotentialCalculator, load_potential,
                              save_potential)
from ml4ms.potentials.distributed import Ranks
from ml4ms.potentials.train import train_potential

pytestmark = pytest.mark.usefixtures("one_thread")

#: float64 throughout, so that rounding (the order of the sums over processes) stays far below the tolerance
TRAINING = """[training]
epochs = 2
batch_size = 5
learning_rate = 0.01
valid_fraction = 0.25
novelty_references = 0
"""
DESCRIPTOR_NETWORK = """[model]
hidden = [6]
[descriptor]
radial_order = 4
angular_order = 2
""" + TRAINING
#: with a moving average of the weights
MESSAGE_PASSING = """[model]
kind = "message_passing"
r_cut = 4.0
features = 4
interactions = 1
radial_basis = 3
""" + TRAINING + "ema_decay = 0.9\n"
#: run under torchrun: ``ml4ms`` commands one after the other in every process (one process group for them all)
RUNS = """import json, sys
import ml4ms.cli as cli
for argv in json.loads(sys.argv[1]):
    assert cli.main(argv) == 0, argv
"""


def _cells():
    out = []
    for a in [a for a in load("tio2", "train").records if len(a) <= 12][:16]:
        b = a.copy()
        b.info = {}
        b.calc = a.calc
        out.append(b)
    return out


def _fit(data, config, output, *extra):
    assert cli.main(["potential", "fit", str(data), "--config", str(config), "-o", str(output), "--quiet",
                     *extra]) == 0


def _torchrun(folder, runs):
    """``ml4ms`` command lines in 2 processes started by torchrun (gloo on 127.0.0.1)."""
    script = folder / "runs.py"
    script.write_text(RUNS)
    src = os.path.dirname(os.path.dirname(ml4ms.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), json.dumps(runs)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _same_run(one, two):
    """The histories (``state.json``) and final weights of two runs agree to float64 rounding."""
    rows = [json.loads((folder.parent / (folder.name + ".checkpoint") / "state.json").read_text())["history"]
            for folder in (one, two)]
    assert len(rows[0]) == len(rows[1]) == 3
    for a, b in zip(*rows):
        for key in ("train_energy_rmse", "train_force_rmse", "val_energy_rmse", "val_force_rmse", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=0)
    states = [load_potential(folder).network().state_dict() for folder in (one, two)]
    assert list(states[0]) == list(states[1])
    for name, w in states[0].items():
        np.testing.assert_allclose(states[1][name].numpy(), w.numpy(), rtol=1e-10, atol=1e-12 * float(w.abs().max()))


def test_two_processes_follow_one_and_checkpoints_resume_on_either(tmp_path):
    data = tmp_path / "cells.extxyz"
    write(data, _cells())
    dn, mp = tmp_path / "dn.toml", tmp_path / "mp.toml"
    dn.write_text(DESCRIPTOR_NETWORK)
    mp.write_text(MESSAGE_PASSING)
    # one process: the message-passing run's 2 epochs, also the start of a 2-process resume
    _fit(data, mp, tmp_path / "one_mp")
    shutil.copytree(tmp_path / "one_mp.checkpoint", tmp_path / "two_mp.checkpoint")
    # two processes: a descriptor network from scratch (precomputed Jacobians, shared out by structure), and the
    # message-passing run resumed from one process's checkpoint (batches shared out structure by structure)
    _torchrun(tmp_path, [["potential", "fit", str(data), "--config", str(dn), "-o", str(tmp_path / "two_dn"),
                          "--quiet"],
                         ["potential", "fit", str(data), "--config", str(mp), "-o", str(tmp_path / "two_mp"),
                          "--quiet", "--resume", "--epochs", "3"]])
    assert load_potential(tmp_path / "two_dn").training_["epochs"] == 2
    # the 2-process checkpoint resumes in one process
    _fit(data, dn, tmp_path / "two_dn", "--resume", "--epochs", "3")
    _fit(data, dn, tmp_path / "one_dn", "--epochs", "3")
    _fit(data, mp, tmp_path / "one_mp", "--resume", "--epochs", "3")
    _same_run(tmp_path / "one_dn", tmp_path / "two_dn")
    _same_run(tmp_path / "one_mp", tmp_path / "two_mp")


def test_gradient_sum_of_one_process_leaves_the_gradients():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([1.0, 2.0])
    Ranks().sum_gradients([p])
    assert p.grad.tolist() == [1.0, 2.0]
    owner = np.array([0, 1, 1, 0, 1])
    assert Ranks(rank=1, size=2).share([4, 0, 2], owner).tolist() == [4, 2]


def test_committees_and_torchrun_are_one_or_the_other(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    data = tmp_path / "cells.extxyz"
    write(data, _cells()[:4])
    assert cli.main(["potential", "fit", str(data), "-o", str(tmp_path / "m"), "--members", "2"]) == 2
    assert "trains one potential, and this is a committee" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_this_machine_lacks_is_one_line(tmp_path, capsys):
    with pytest.raises(InputError, match="device is 'cuda', but torch finds no CUDA GPU on this machine; set "
                                         "device to 'cpu'"):
        MessagePassingPotential(device="cuda").check_settings()
    data = tmp_path / "cells.extxyz"
    write(data, _cells()[:4])
    config = tmp_path / "gpu.toml"
    config.write_text('[model]\nhidden = [4]\ndevice = "cuda:1"\n')
    assert cli.main(["potential", "fit", str(data), "--config", str(config), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ml4ms: error: {config}: device is 'cuda:1', but torch finds no CUDA GPU")
    assert "\n" not in err
    assert cli.main(["potential", "fit", str(data), "-o", str(tmp_path / "m"), "--device", "cuda"]) == 2
    assert "--device is 'cuda'" in capsys.readouterr().err
    assert cli.main(["potential", "fit", str(data), "-o", str(tmp_path / "m"), "--device", "tpu"]) == 2
    assert "--device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_kinds_train_on_the_cpu_device_and_files_keep_no_device(tmp_path, dtype):
    cells = _cells()[:6]
    for model in (NeuralPotential(hidden=(4,), descriptor_params={"radial_order": 3, "angular_order": 2},
                                  dtype=dtype, device="cpu"),
                  MessagePassingPotential(r_cut=4.0, features=4, interactions=1, radial_basis=3, dtype=dtype,
                                          device="cpu")):
        trained, history = train_potential(model, cells, epochs=1, batch_size=3, valid_fraction=0, progress=False,
                                           novelty_references=0)
        assert np.isfinite(history[0]["train_force_rmse"])
        assert {str(p.dtype) for p in trained.network().parameters()} == {f"torch.{dtype}"}
        folder = tmp_path / f"{type(model).__name__}-{dtype}"
        save_potential(folder, trained)
        assert "device" not in json.loads((folder / "model.json").read_text())["estimator"]["params"]
        loaded = load_potential(folder, device="cpu")
        assert loaded.device == "cpu"
        calc = NeuralPotentialCalculator(loaded, device="cpu", skin=0.0)
        atoms = cells[0].copy()
        atoms.calc = calc
        np.testing.assert_allclose(atoms.get_forces(), trained.compute(cells[0])[1], rtol=0,
                                   atol=1e-4 if dtype == "float32" else 1e-10)
