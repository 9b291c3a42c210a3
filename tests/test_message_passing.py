"""The message-passing potential (PaiNN) as a kind of potential: training, committees, recipes, the command line
and MD. Its physics (forces, stress, symmetry, supercells, files, export, calculator) is in the shared kit,
tests/test_potential_kit.py."""

import numpy as np
import pytest
import torch
from ase.io import write

from ml4ms.datasets import load
from ml4ms.errors import InputError
from ml4ms.potentials import MessagePassingPotential, NeuralPotentialCalculator, load_potential, run_md
from ml4ms.potentials.message_passing import sine_basis
from ml4ms.potentials.train import read_config, train_committee, train_potential

TINY = dict(r_cut=4.0, features=8, interactions=2, radial_basis=6)
TRAIN = dict(batch_size=4, learning_rate=0.01, force_weight=0.1, valid_fraction=0.25, seed=0, progress=False,
             novelty_references=50)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frames():
    """The smallest cells of the TiO2 training set (6 atoms), with their DFT energies and forces."""
    return [a for a in load("tio2", "train").records if len(a) <= 6][:16]


@pytest.fixture(scope="module")
def trained(frames):
    return train_potential(MessagePassingPotential(**TINY), frames, epochs=12, **TRAIN)


def test_training_lowers_the_loss(trained, frames):
    model, history = trained
    assert len(history) == 12 and model.training_["precompute_seconds"] is None  # no Jacobians for this kind
    first, last = history[0], history[-1]
    assert last["train_energy_rmse"] < first["train_energy_rmse"]
    assert last["train_force_rmse"] < 0.6 * first["train_force_rmse"]
    assert last["val_loss"] < 0.5 * first["val_loss"]
    assert hasattr(model, "novelty_references_")  # novelty in the final scalar features
    assert model.environments(model.tensors(frames[:1])).shape == (6, TINY["features"])


def test_a_committee_of_two_trains_in_processes(frames):
    models, histories = train_committee(MessagePassingPotential(**TINY, seed=2), frames[:8], members=2, jobs=2,
                                        epochs=1, **dict(TRAIN, novelty_references=0))
    assert [m.seed for m in models] == [2, 3] and [len(h) for h in histories] == [1, 1]
    r = models.compute(frames[0])
    assert r["energy_std"] > 0 and np.isfinite(r["forces"]).all()


def test_the_command_line_fits_a_recipe_of_this_kind(frames, tmp_path, capsys):
    import ml4ms.cli as cli

    data = tmp_path / "few.extxyz"
    write(data, frames[:8])
    cfg = tmp_path / "mp.toml"
    cfg.write_text('[model]\nkind = "message_passing"\nr_cut = 4.0\nfeatures = 8\ninteractions = 1\n'
                   'radial_basis = 4\ndtype = "float32"\n'
                   '[training]\nepochs = 2\nbatch_size = 4\nvalid_fraction = 0.25\nnovelty_references = 20\n')
    assert cli.main(["potential", "fit", str(data), "--config", str(cfg), "-o", str(tmp_path / "m"),
                     "--quiet"]) == 0
    m = load_potential(tmp_path / "m")
    assert isinstance(m, MessagePassingPotential) and m.interactions == 1 and m.dtype == "float32"
    assert m.training_["epochs"] == 2
    assert cli.main(["potential", "eval", str(tmp_path / "m"), str(data), "--json", str(tmp_path / "e.json")]) == 0
    assert "meV/atom" in capsys.readouterr().out


@pytest.mark.parametrize("text, needle", [
    ('[model]\nkind = "message_passing"\nhidden = [8]\n', "unknown key 'hidden'"),
    ('[model]\nkind = "message_passing"\n[descriptor]\nradial_order = 4\n', "unknown table"),
    ('[model]\nkind = "message_passing"\n[training]\nprecompute = true\n', "no precomputed descriptor Jacobians"),
    ('[model]\nkind = "mace"\n', "[model] kind must be"),
    ('[model]\nkind = "message_passing"\nfeatures = 0\n', "features must be a positive integer"),
])
def test_recipes_of_this_kind_are_checked_on_one_line(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(InputError) as info:
        read_config(str(cfg))
    assert needle in str(info.value) and str(cfg) in str(info.value) and "\n" not in str(info.value)


def test_recipe_kinds_and_the_precompute_default():
    model, training = read_config(doc={"model": {"kind": "message_passing", "features": 16, "seed": 3}})
    assert isinstance(model, MessagePassingPotential) and model.features == 16 and model.seed == 3
    assert type(read_config(doc={"model": {"hidden": [4]}})[0]).__name__ == "NeuralPotential"
    assert read_config(doc={"model": {"kind": "message_passing"}, "training": {"precompute": False}})[1] == {
        "precompute": False}
    assert read_config("tio2_mpnn")[0].dtype == "float32"


def test_md_runs_with_the_calculator(trained, frames):
    atoms = frames[0].copy() * (2, 1, 1)
    atoms.calc = None
    result = run_md(atoms, NeuralPotentialCalculator(trained[0]), ensemble="nvt", temperature=300.0, steps=5,
                    timestep=0.5, seed=0)
    assert result["steps"] == 5 and np.isfinite(atoms.positions).all() and result["atom_steps_per_second"] > 0


def test_weights_are_seeded_and_must_fit_the_settings(frames):
    a = MessagePassingPotential(**TINY, seed=4).initialize(frames, [0.0] * len(frames))
    b = MessagePassingPotential(**TINY, seed=4).initialize(frames, [0.0] * len(frames))
    assert all(np.array_equal(a.state_[k], b.state_[k]) for k in a.state_)
    assert not np.array_equal(a.state_["embedding"], a.set_params(seed=5).initialize(frames[:2], [0.0, 0.0])
                              .state_["embedding"])
    assert float(sine_basis(torch.tensor([4.0], dtype=torch.float64), 4.0, 3).abs().max()) < 1e-15
    with pytest.raises(InputError, match="do not match the settings"):
        a.set_params(features=9).network()


def test_pairs_past_the_cutoff_add_nothing(frames):
    """The envelope multiplies the filters after their bias: a pair list built with a skin (as the calculator's
    is) gives the same energy and forces as one built at the cutoff, whatever the weights."""
    model = MessagePassingPotential(**TINY, seed=1).initialize(frames, [0.0] * len(frames))
    rng = np.random.default_rng(0)
    model.state_ = {k: v + (rng.normal(size=v.shape) if k.endswith("bias") else 0.0) for k, v in model.state_.items()}
    atoms = frames[3]
    plain = model.compute(atoms)
    padded_batch = model.tensors([atoms], model.cutoff() + 1.0)
    assert padded_batch.i.shape[0] > model.tensors([atoms]).i.shape[0]  # the skin adds pairs
    padded = model.compute(atoms, tensors=padded_batch)
    np.testing.assert_allclose(padded[0], plain[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(padded[1], plain[1], rtol=0, atol=1e-10)
