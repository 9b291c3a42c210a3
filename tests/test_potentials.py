"""Neural-network potential: physics checks, model files, ASE calculator, MD, checkpoints, CLI."""

import json
import os

import numpy as np
import pytest
from ase.io import write

from ml4ms.datasets import TIO2_ATOMIC_ENERGIES, load
from ml4ms.potentials import NeuralPotential, NeuralPotentialCalculator, load_potential, run_md, save_potential
from ml4ms.potentials.metrics import binding_energy_per_atom, labels_of
from ml4ms.potentials.train import read_config, train_potential

SMALL = {"radial_order": 6, "angular_order": 3}
TRAIN = dict(epochs=4, batch_size=6, learning_rate=0.01, force_weight=0.1, valid_fraction=0.2, seed=0,
             progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frames():
    recs = [a for a in load("tio2", "train").records if len(a) <= 12]
    return recs[:30]


@pytest.fixture(scope="module")
def trained(frames, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    model, history = train_potential(NeuralPotential(hidden=(8,), descriptor_params=SMALL), frames,
                                     checkpoint_dir=str(ckpt), **TRAIN)
    return model, history, str(ckpt)


def _cell(frames, rattle=0.05, seed=1):
    atoms = frames[0].copy()
    atoms.calc = None
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
    return atoms


def _plain(records):
    # keep energies/forces, drop string info ('structure'): see the report on load_data
    out = []
    for a in records:
        b = a.copy()
        b.info = {}
        b.calc = a.calc
        out.append(b)
    return out


def test_training_reduces_error_and_reports(trained):
    model, history, _ = trained
    assert len(history) == TRAIN["epochs"]
    assert history[-1]["train_energy_rmse"] < history[0]["train_energy_rmse"]
    assert model.training_["n_train"] == 24 and model.training_["n_val"] == 6
    assert np.isfinite(history[-1]["val_force_rmse"])


def test_float32_close_to_float64(trained, frames):
    model = trained[0]
    atoms = _cell(frames)
    m32 = NeuralPotential(**{**model.get_params(), "dtype": "float32"})
    m32.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    e64, f64, _ = model.compute(atoms)
    e32, f32, _ = m32.compute(atoms)
    assert abs(e32 - e64) / len(atoms) < 1e-4
    np.testing.assert_allclose(f32, f64, atol=1e-3)


def test_save_load_round_trip(trained, frames, tmp_path):
    model = trained[0]
    atoms = _cell(frames)
    save_potential(tmp_path / "pot", model, {"note": "x"})
    assert sorted(os.listdir(tmp_path / "pot")) == ["arrays.npz", "model.json"]
    loaded, meta = load_potential(tmp_path / "pot", with_metadata=True)
    assert meta["note"] == "x"
    e0, f0, s0 = model.compute(atoms, stress=True)
    e1, f1, s1 = loaded.compute(atoms, stress=True)
    assert e0 == e1
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(s0, s1)
    # tampered arrays are refused
    from ml4ms.errors import ModelFileError

    with open(tmp_path / "pot" / "arrays.npz", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ModelFileError):
        load_potential(tmp_path / "pot")


def _committee_edits():
    import shutil

    from ml4ms.serialize import seal

    def rewrite(folder, change, reseal=True):
        doc = json.loads((folder / "committee.json").read_text())
        change(doc)
        (folder / "committee.json").write_text(json.dumps(seal(doc) if reseal else doc))

    return {
        "invalid JSON": (lambda f: (f / "committee.json").write_text("{oops"), "invalid JSON"),
        "not a table": (lambda f: (f / "committee.json").write_text("[1, 2]"), "no checksum"),
        "edited count": (lambda f: rewrite(f, lambda d: d.update(members=1), reseal=False), "checksum does not match"),
        "count as text": (lambda f: rewrite(f, lambda d: d.update(members="2")), "not a committee"),
        "count true": (lambda f: rewrite(f, lambda d: d.update(members=True)), "not a committee"),
        "huge count": (lambda f: rewrite(f, lambda d: d.update(members=10**9)), "not a committee"),
        "no members": (lambda f: rewrite(f, lambda d: d.update(members=0, members_sha256=[])), "not a committee"),
        "member missing": (lambda f: shutil.rmtree(f / "member1"), "member1 is missing"),
        "member swapped": (lambda f: (shutil.rmtree(f / "member1"), shutil.copytree(f / "member0", f / "member1")),
                           "not the member committee.json was written with"),
        "extra member": (lambda f: shutil.copytree(f / "member0", f / "member2"), "member2 is not among the 2"),
        "member not a potential": (lambda f: (f / "member0" / "model.json").write_text("7"), "not the member"),
    }


@pytest.mark.parametrize("case", list(_committee_edits()))
def test_damaged_committee_files_give_one_line(trained, tmp_path, case):
    import copy

    from ml4ms.errors import ModelFileError

    change, match = _committee_edits()[case]
    other = copy.deepcopy(trained[0]).set_params(seed=5)  # a member that differs
    save_potential(tmp_path / "com", [trained[0], other])
    assert len(load_potential(tmp_path / "com")) == 2
    change(tmp_path / "com")
    with pytest.raises(ModelFileError, match=match) as info:
        load_potential(tmp_path / "com")
    assert "\n" not in str(info.value)


def test_ase_calculator_contract_and_committee(trained, frames, tmp_path):
    model = trained[0]
    atoms = _cell(frames)
    atoms.calc = NeuralPotentialCalculator(model)
    e = atoms.get_potential_energy()
    assert isinstance(e, float) and e == atoms.get_potential_energy(force_consistent=True)
    assert atoms.get_forces().shape == (len(atoms), 3)
    assert atoms.get_stress().shape == (6,)
    assert abs(e - model.compute(atoms)[0]) < 1e-10
    # neighbour list reused for small moves, rebuilt for a cell change; numbers unchanged by reuse
    calc = atoms.calc
    builds = calc.n_builds
    atoms.positions[0, 0] += 0.05
    e_reuse = atoms.get_potential_energy()
    assert calc.n_builds == builds
    assert abs(e_reuse - model.compute(atoms)[0]) < 1e-10
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)
    atoms.get_potential_energy()
    assert calc.n_builds == builds + 1
    # committee: mean and spread of the members
    other = NeuralPotential(**{**model.get_params(), "seed": 5})
    other.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    other.weights_ = [[w + 0.05 * np.random.default_rng(1).normal(size=w.shape) for w in layers]
                      for layers in model.weights_]
    save_potential(tmp_path / "committee", [model, other])
    members = load_potential(tmp_path / "committee")
    atoms.calc = NeuralPotentialCalculator(str(tmp_path / "committee"))
    e_c = atoms.get_potential_energy()
    es = [m.compute(atoms)[0] for m in members]
    assert abs(e_c - np.mean(es)) < 1e-10
    assert abs(atoms.calc.results["energy_std"] - np.std(es)) < 1e-10 and np.std(es) > 0
    assert atoms.calc.results["forces_std"].shape == (len(atoms), 3)


def test_nve_conserves_energy(trained, frames):
    # 24-atom cell, 200 steps of 0.5 fs from 300 K (100 fs). Velocity Verlet has no secular drift
    # for a smooth potential; its energy error is O(dt^2) and bounded. kT at 300 K is 26 meV, so a
    # total-energy spread under 0.5 meV/atom and a drift under 2 meV/atom/ps (0.2 meV/atom over the
    # run) is a conserving integrator. Measured with this fixture: drift -0.23 meV/atom/ps, spread
    # 0.015 meV/atom; with forces scaled by 1.3 (inconsistent with E): drift 447, spread 13.
    atoms = frames[0].copy() * (2, 2, 1) if len(frames[0]) == 6 else frames[0].copy()
    atoms.calc = None
    result = run_md(atoms, NeuralPotentialCalculator(trained[0]), ensemble="nve", temperature=300.0, steps=200,
                    timestep=0.5, seed=0)
    assert result["steps"] == 200 and result["atoms"] == len(atoms)
    assert abs(result["energy_drift_mev_per_atom_per_ps"]) < 2.0, result
    assert result["energy_fluctuation_mev_per_atom"] < 0.5, result
    assert result["atom_steps_per_second"] > 0


def test_checkpoint_resume_continues(frames, trained, tmp_path):
    model, history, ckpt = trained
    state = json.load(open(os.path.join(ckpt, "state.json")))
    assert state["epoch"] == TRAIN["epochs"]
    # a run "killed" after 2 epochs, resumed to 4, equals the uninterrupted 4-epoch run
    short = dict(TRAIN, epochs=2)
    train_potential(NeuralPotential(hidden=(8,), descriptor_params=SMALL), frames, checkpoint_dir=str(tmp_path),
                    **short)
    resumed, h2 = train_potential(NeuralPotential(hidden=(8,), descriptor_params=SMALL), frames,
                                  checkpoint_dir=str(tmp_path), **TRAIN)
    assert [h["epoch"] for h in h2] == [1, 2, 3, 4]
    from ml4ms.errors import InputError

    with pytest.raises(InputError, match=r"other model settings \(cell_mean, hidden\)"):
        train_potential(NeuralPotential(hidden=(9,), descriptor_params=SMALL, cell_mean=True), frames,
                        checkpoint_dir=str(tmp_path), **TRAIN)
    for a, b in zip(h2, history):
        assert abs(a["val_loss"] - b["val_loss"]) <= 1e-9 * abs(b["val_loss"])
    for la, lb in zip(resumed.weights_, model.weights_):
        for wa, wb in zip(la, lb):
            np.testing.assert_allclose(wa, wb, rtol=1e-9, atol=1e-12)


def test_restore_best_or_last_weights(frames, tmp_path):
    # a learning rate so large that the validation loss is lowest after the first of 4 epochs
    run = dict(TRAIN, learning_rate=0.3)
    weights = {}
    for restore in (True, False):
        folder = str(tmp_path / str(restore))
        model, history = train_potential(NeuralPotential(hidden=(8,), descriptor_params=SMALL), frames,
                                         checkpoint_dir=folder, restore_best=restore, **run)
        losses = [h["val_loss"] for h in history]
        assert int(np.argmin(losses)) == 0 and len(losses) == 4
        saved = load_potential(os.path.join(folder, "best" if restore else "model"))
        for la, lb in zip(model.weights_, saved.weights_):
            for wa, wb in zip(la, lb):
                np.testing.assert_array_equal(wa, wb)
        weights[restore] = model.weights_[0][0]
    assert not np.array_equal(weights[True], weights[False])


def test_max_energy_exclusion(frames):
    energies, _ = labels_of(frames)
    eb = binding_energy_per_atom(frames, energies, TIO2_ATOMIC_ENERGIES)
    assert np.all(eb < 1.0)  # set003 training structures are all below +1 eV/atom
    cut = float(np.sort(eb)[-5])  # leaves exactly 25 structures (distinct energies)
    m, _ = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames, epochs=1,
                           max_energy_per_atom=cut - 1e-9, atomic_energies=TIO2_ATOMIC_ENERGIES,
                           valid_fraction=0.0, force_weight=0.0, progress=False)
    assert m.training_["n_excluded"] == 5 and m.training_["n_train"] == 25


def test_validation_split_keeps_duplicates_together(frames, tmp_path):
    from ml4ms.errors import InputError

    copies = []
    for a in frames[:6]:  # translated copies: the same structure
        b = a.copy()
        b.positions += 0.3
        copies.append(b)
    data = list(frames) + copies
    energies, forces = labels_of(frames)
    energies, forces = np.concatenate([energies, energies[:6]]), list(forces) + list(forces[:6])
    for seed in range(4):
        folder = str(tmp_path / f"s{seed}")
        train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), data, energies, forces, epochs=1,
                        valid_fraction=0.3, force_weight=0.0, seed=seed, checkpoint_dir=folder, progress=False)
        val = set(json.load(open(os.path.join(folder, "state.json")))["val_idx"])
        assert 0 < len(val) < len(data)
        for k in range(6):
            assert (k in val) == (len(frames) + k in val)
    # the caller's groups (say, MD trajectories) are kept whole too
    groups = np.arange(len(frames)) // 10
    folder = str(tmp_path / "groups")
    train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames, epochs=1, valid_fraction=0.3,
                    force_weight=0.0, groups=groups, checkpoint_dir=folder, progress=False)
    val = json.load(open(os.path.join(folder, "state.json")))["val_idx"]
    assert len(set(groups[val])) == 1 and len(val) == 10
    with pytest.raises(InputError, match="groups has 3 labels for 30 structures"):
        train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames, epochs=1, groups=[0, 1, 2],
                        progress=False)


def test_config_and_bad_input():
    from ml4ms.errors import InputError

    m, kw = read_config(os.path.join(os.path.dirname(__file__), "..", "configs", "tio2_potential.toml"))
    assert m.hidden == [128, 128] and m.linear and kw["max_energy_per_atom"] == 1.0 and kw["atomic_energies"]["Ti"] < 0
    assert m.cell_mean is True and m.dtype == "float32" and kw["threads"] == 2
    m, kw = read_config(os.path.join(os.path.dirname(__file__), "..", "configs", "tio2_potential_local.toml"))
    assert not m.cell_mean and not read_config(doc={})[0].cell_mean
    with pytest.raises(InputError):
        read_config(doc={"training": {"epoch": 3}})
    with pytest.raises(InputError):
        NeuralPotential(descriptor="soapy").cutoff()
    m, _ = read_config(os.path.join(os.path.dirname(__file__), "..", "configs", "tio2_committee.toml"))
    assert m.linear is True and m.cell_mean is True
    for bad, match in (({"angular_order": -1}, "angular_order must be a non-negative integer"),
                       ({"angular_cutoff": 0.0}, "angular_cutoff must be a positive")):
        with pytest.raises(InputError, match=match):
            NeuralPotential(descriptor_params=bad).cutoff()


@pytest.mark.parametrize("section, key, value, match", [
    ("training", "ema_decay", 2.0, "ema_decay must be in"),
    ("training", "learning_rate", "fast", "learning_rate must be a number >= 0"),
    ("training", "epochs", 1.5, "epochs must be a positive integer"),
    ("training", "force_weight", -0.1, "force_weight must be a number >= 0"),
    ("training", "stage_two_start", 0.0, "stage_two_start must be in"),
    ("training", "precompute", "yes", "precompute must be true or false"),
    ("model", "hidden", [0], "hidden must be a list of positive integers"),
    ("model", "cell_mean", "yes", "cell_mean must be true or false"),
    ("model", "dtype", "float16", "unknown dtype"),
    ("descriptor", "radial_order", -1, "radial_order must be a non-negative integer"),
    ("training", "seed", -1, "seed must be a non-negative integer"),
    ("model", "seed", -1, "seed must be a non-negative integer"),
    ("training", "max_energy_per_atom", 1.0, "max_energy_per_atom needs atomic_energies"),
])
def test_bad_config_values_fail_before_the_data_is_read(tmp_path, capsys, section, key, value, match):
    """A bad value in a recipe is named, with the file, before the (here missing) data file is looked at."""
    import ml4ms.cli as cli
    from ml4ms.errors import InputError

    cfg = tmp_path / "bad.toml"
    text = repr(value).replace("'", '"') if not isinstance(value, list) else str(value)
    cfg.write_text(f"[{section}]\n{key} = {text}\n")
    with pytest.raises(InputError, match=match):
        read_config(str(cfg))
    assert cli.main(["potential", "fit", str(tmp_path / "missing.extxyz"), "--config", str(cfg),
                     "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cfg) in err[0] and match.split(" must")[0] in err[0] and "missing" not in err[0]


@pytest.mark.parametrize("text, needle", [
    ("[trainig]\nepochs = 3\n", "unknown table [trainig]; did you mean 'training'?"),
    ("[training]\nepoch = 3\n", "[training] unknown key 'epoch'; did you mean 'epochs'?"),
    ("[model]\nhiden = [8]\n", "[model] unknown key 'hiden'; did you mean 'hidden'?"),
    ("[descriptor]\nradial_cutof = 5.0\n", "unknown chebyshev settings: radial_cutof"),
    ("[training]\nbatch_size = '8'\n", "[training] batch_size must be a positive integer, got '8' (a string); "
                                        "fix it in [training]"),
    ("[training]\nrestore_best = 'yes'\n", "[training] restore_best must be true or false, got 'yes' (a string)"),
    ("[training]\nprecompute = 1\n", "[training] precompute must be true or false, got 1"),
    ("[training]\nwarm_start = true\n", "[training] unknown key 'warm_start'"),  # --init sets it
    ("[model]\nlinear = 'yes'\n", "linear must be true or false, got 'yes'"),
    ("[training.atomic_energies]\nO = 'x'\n", "[training] atomic_energies must be a table of element = energy"),
])
def test_bad_recipes_fail_at_read_time_on_one_line(tmp_path, capsys, text, needle):
    import ml4ms.cli as cli
    from ml4ms.errors import InputError

    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(InputError) as info:
        read_config(str(cfg))
    assert str(info.value).startswith(f"{cfg}: ") and needle in str(info.value)
    assert cli.main(["potential", "fit", str(tmp_path / "missing.extxyz"), "--config", str(cfg),
                     "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


def test_bundled_recipe_by_name(tmp_path, capsys):
    import ml4ms.cli as cli

    model, kwargs = read_config("tio2_potential")
    assert model.cell_mean and kwargs["atomic_energies"]["O"] < 0
    # the name resolves: the run gets as far as the (missing) data
    assert cli.main(["potential", "fit", str(tmp_path / "missing.extxyz"), "--config", "tio2_committee",
                     "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "missing.extxyz" in err and "config" not in err


def test_bad_command_line_training_values_fail_before_the_data_is_read(tmp_path, capsys):
    import ml4ms.cli as cli

    for flags, match in ((["--minutes", "0"], "--minutes: must be a finite number > 0"),
                         (["--epochs", "0"], "--epochs: must be an integer >= 1"),
                         (["--members", "0"], "--members: must be an integer >= 1")):
        assert cli.main(["potential", "fit", str(tmp_path / "missing.extxyz"), "-o", str(tmp_path / "m")] + flags) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0] and "missing" not in err[0]


def test_cli_eval_md_and_bad_input(trained, frames, tmp_path, capsys):
    import ml4ms.cli as cli

    save_potential(tmp_path / "pot", trained[0])
    data = tmp_path / "few.extxyz"
    write(data, frames[:5])  # with the string info key "structure"
    out = tmp_path / "eval.json"
    assert cli.main(["potential", "eval", str(tmp_path / "pot"), str(data), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    for key in ("energy_rmse_mev_per_atom", "energy_mae_mev_per_atom", "force_rmse_ev_per_ang",
                "force_mae_ev_per_ang"):
        assert np.isfinite(doc[key]) and doc[key] >= 0
    assert doc["energy_mae_mev_per_atom"] <= doc["energy_rmse_mev_per_atom"]
    assert all(os.path.exists(p) for p in doc["parity_plots"])
    worst = doc["worst_structures"]
    assert len(worst) == 5 and sorted(w["index"] for w in worst) == list(range(5))
    assert "largest energy errors" in capsys.readouterr().out
    md_json = tmp_path / "md.json"
    assert cli.main(["md", str(tmp_path / "pot"), str(data), "--ensemble", "nvt", "--steps", "5", "--dt", "0.5",
                     "-o", str(tmp_path / "traj.extxyz"), "--json", str(md_json), "--interval", "1"]) == 0
    md = json.loads(md_json.read_text())
    assert md["steps"] == 5 and md["atoms"] == len(frames[0])
    assert {"mean_temperature_k", "atom_steps_per_second"} <= set(md)
    assert "energy_drift_mev_per_atom_per_ps" not in md  # a thermostat: no drift (tests/test_md.py)
    from ase.io import read

    assert len(read(tmp_path / "traj.extxyz", ":")) == 6  # step 0 and every step after
    capsys.readouterr()
    assert cli.main(["potential", "eval", str(tmp_path / "missing"), str(data)]) == 2
    assert "error" in capsys.readouterr().err
    assert cli.main(["md", str(tmp_path / "pot"), str(data), "--steps", "0", "-o", str(tmp_path / "t.xyz")]) == 2
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[training]\nepochz = 1\n")
    assert cli.main(["potential", "fit", str(data), "--config", str(cfg), "-o", str(tmp_path / "m")]) == 2


def test_cli_fit(frames, tmp_path):
    import ml4ms.cli as cli

    data = tmp_path / "few.extxyz"
    write(data, _plain(frames[:8]))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nhidden = [4]\n[descriptor]\nradial_order = 4\nangular_order = 2\n'
                   '[training]\nepochs = 2\nbatch_size = 4\nvalid_fraction = 0.25\n')
    assert cli.main(["potential", "fit", str(data), "--config", str(cfg), "-o", str(tmp_path / "m"),
                     "--quiet"]) == 0
    m, meta = load_potential(tmp_path / "m", with_metadata=True)
    assert m.hidden == [4] and m.training_["epochs"] == 2
    assert m.training_["stopped_by"] == "epochs" and m.training_["epoch_limit"] == 2
    assert meta["config"] == str(cfg) and meta["data"] == str(data)  # the file says what it was trained from


def test_cli_fit_without_validation_resume_at_the_limit_and_init_notice(frames, tmp_path, capsys):
    import ml4ms.cli as cli

    data = tmp_path / "few.extxyz"
    write(data, _plain(frames[:8]))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nhidden = [4]\n[descriptor]\nradial_order = 4\nangular_order = 2\n'
                   '[training]\nepochs = 2\nbatch_size = 4\nvalid_fraction = 0\n')
    fit = ["potential", "fit", str(data), "--config", str(cfg), "--quiet"]
    assert cli.main(fit + ["-o", str(tmp_path / "m")]) == 0  # no validation split: nothing NaN in the file
    assert "training energy RMSE" in capsys.readouterr().out and load_potential(tmp_path / "m").training_["n_val"] == 0
    assert cli.main(fit + ["-o", str(tmp_path / "m"), "--resume", "--epochs", "1"]) == 2
    assert "and the epoch limit is 1: there is nothing left to train" in capsys.readouterr().err
    assert cli.main(fit + ["-o", str(tmp_path / "m2"), "--init", str(tmp_path / "m"), "--epochs", "1"]) == 0
    assert "[model] and [descriptor] of " in capsys.readouterr().out


def test_nvt_and_npt_run(trained, frames):
    atoms = frames[0].copy()
    atoms.calc = None
    cell0 = atoms.cell.array.copy()
    r = run_md(atoms, NeuralPotentialCalculator(trained[0]), ensemble="npt", temperature=300.0, steps=5,
               timestep=0.5, pressure=1.0)
    assert r["steps"] == 5 and not np.allclose(atoms.cell.array, cell0)
    from ml4ms.errors import InputError

    with pytest.raises(InputError):
        run_md(atoms, NeuralPotentialCalculator(trained[0]), ensemble="nph", steps=5)


def test_precomputed_jacobians_match_autograd_forces(frames):
    from ml4ms.potentials.precompute import JacobianSet

    mixed = frames[:4] + [a for a in load("tio2", "train").records[:60] if len(a) > 12][:2]
    energies, forces = labels_of(mixed)
    for model in (NeuralPotential(hidden=(5,), descriptor_params=SMALL, seed=2),
                  NeuralPotential(hidden=(5,), descriptor_params=SMALL, seed=2, cell_mean=True, linear=True),
                  NeuralPotential(descriptor="acsf", hidden=(5,), seed=2,
                                  descriptor_params={"r_cut": 4.5, "g2": [[0.5, 0.0]],
                                                     "g4": [[0.01, 1.0, 1.0], [0.01, 2.0, -1.0]]})):
        model.initialize(mixed, energies)
        if model.linear:  # the linear term starts at zero: make it count
            model.weights_[1][-1] += 0.2
        js = JacobianSet(model, mixed, energies, forces, batch_atoms=30, progress=False)
        assert len(js.blocks) == len({len(a) for a in mixed})
        assert_jacobian_path_matches_autograd(model, js, mixed)


def assert_jacobian_path_matches_autograd(model, js, frames):
    """Energies and forces from precomputed Jacobians equal the model's autograd ones."""
    groups = js.groups(np.arange(len(frames)))
    e, f = js.energies_forces(model, model.torch_parameters(False), groups)
    ref_e, ref_f = model.predict(frames)
    ref_e = ref_e - model.composition(frames) @ model.reference_energies_
    for (blk, _, where), eg, fg in zip(groups, e, f):
        np.testing.assert_allclose(eg.detach().numpy(), ref_e[where], rtol=1e-10, atol=1e-10)
        for k, w in enumerate(where):
            np.testing.assert_allclose(fg[k].detach().numpy(), ref_f[w], atol=1e-5)


def test_precomputed_training_follows_direct_training(frames):
    runs = []
    for precompute in (False, True):
        model, history = train_potential(NeuralPotential(hidden=(6,), descriptor_params=SMALL), frames,
                                         **dict(TRAIN, epochs=3), precompute=precompute)
        runs.append((model, history))
    (m0, h0), (m1, h1) = runs
    for a, b in zip(h0, h1):  # float32 Jacobians: equal to ~1e-6 relative
        assert abs(a["val_loss"] - b["val_loss"]) <= 1e-4 * b["val_loss"]
    for la, lb in zip(m0.weights_, m1.weights_):
        for wa, wb in zip(la, lb):
            np.testing.assert_allclose(wa, wb, atol=1e-4)


@pytest.mark.parametrize("settings", [{"cell_mean": True}, {"cell_mean": True, "linear": True}],
                         ids=["cell_mean", "cell_mean_linear"])
def test_cell_wide_model_physics_and_precompute(frames, tmp_path, settings):
    from ml4ms.potentials.precompute import JacobianSet

    model, _ = train_potential(NeuralPotential(hidden=(6,), descriptor_params=SMALL, **settings), frames,
                               **dict(TRAIN, epochs=2), precompute=True)
    nf = model.n_features_
    assert model.weights_[0][0].shape[0] == 2 * nf and model.cell_feature_std_.shape == (nf,)
    atoms = _cell(frames)
    e0, f0, s0 = model.compute(atoms, stress=True)
    # forces are exact derivatives although every atom sees the whole cell
    h = 1e-4
    for a, x in [(0, 0), (3, 1), (len(atoms) - 1, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, x] += h
        minus.positions[a, x] -= h
        fd = -(model.compute(plus, forces=False)[0] - model.compute(minus, forces=False)[0]) / (2 * h)
        assert abs(fd - f0[a, x]) < 1e-6 * max(1.0, abs(fd))
    d, volume = 1e-5, atoms.get_volume()
    energies = []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell @ (np.eye(3) + sign * d * np.diag([1.0, 0, 0])), scale_atoms=True)
        energies.append(model.compute(strained, forces=False)[0])
    assert abs((energies[0] - energies[1]) / (2 * d * volume) - s0[0]) < 1e-7
    # invariances, and a supercell has exactly twice the energy and the same forces
    rot = atoms.copy()
    rot.rotate(50.0, (0.2, 1.0, 0.3), rotate_cell=True)
    assert abs(model.compute(rot)[0] - e0) < 1e-9
    perm = atoms[np.random.default_rng(0).permutation(len(atoms))]
    assert abs(model.compute(perm)[0] - e0) < 1e-9
    e2, f2, _ = model.compute(atoms.repeat((2, 1, 1)))
    assert abs(e2 - 2 * e0) < 1e-8
    np.testing.assert_allclose(f2[:len(atoms)], f0, atol=1e-9)
    # the cell average is per structure in a batch: batched = one by one, Jacobian path = autograd
    mixed = [frames[0], frames[5], frames[9]]
    energies, forces = labels_of(mixed)
    batched, _ = model.predict(mixed)
    np.testing.assert_allclose(batched, [model.compute(a, forces=False)[0] for a in mixed], rtol=1e-12)
    assert_jacobian_path_matches_autograd(model, JacobianSet(model, mixed, energies, forces, progress=False), mixed)
    save_potential(str(tmp_path / "m"), model)
    back = load_potential(str(tmp_path / "m"))
    assert json.dumps(back.get_params()) == json.dumps(model.get_params())  # tuples come back as lists
    assert abs(back.compute(atoms)[0] - e0) < 1e-10
    # a non-boolean switch, or one turned on after fitting, is refused in plain words
    from ml4ms.errors import InputError

    few = labels_of(frames[:3])[0]
    with pytest.raises(InputError, match="cell_mean must be true or false"):
        NeuralPotential(descriptor_params=SMALL, cell_mean="no").initialize(frames[:3], few)
    local = NeuralPotential(hidden=(3,), descriptor_params=SMALL).initialize(frames[:3], few)
    with pytest.raises(InputError, match="switched on after fitting"):
        local.set_params(cell_mean=True).compute(atoms)


def test_linear_term_is_a_skip_connection(frames, tmp_path):
    from ml4ms.errors import InputError

    energies, _ = labels_of(frames)
    model = NeuralPotential(hidden=(4,), descriptor_params=SMALL, cell_mean=True, linear=True, seed=1)
    model.initialize(frames, energies)
    n_in = 2 * model.n_features_
    assert [w.shape for w in model.weights_[0]][-1] == (n_in,) and not model.weights_[0][-1].any()
    atoms = _cell(frames)
    e_plain = model.compute(atoms, forces=False)[0]
    rng = np.random.default_rng(0)
    for layers in model.weights_:
        layers[-1] = rng.normal(0, 0.3, n_in)
    # the energy gains exactly Σ_i v_{t_i} · h_i (energy scale units), h_i the standardised inputs
    X = model.features(model.tensors([atoms])).detach().numpy()
    sidx = np.searchsorted(model.species_, atoms.numbers)
    H = (X - model.feature_mean_[sidx]) / model.feature_std_[sidx]
    H = np.hstack([H, np.tile((H.mean(0) - model.cell_feature_mean_) / model.cell_feature_std_, (len(H), 1))])
    extra = sum(H[a] @ model.weights_[sidx[a]][-1] for a in range(len(atoms))) * model.energy_scale_
    e, f, _ = model.compute(atoms)
    assert abs(e - e_plain - extra) < 1e-9 and abs(extra) > 1e-3
    h = 1e-4
    for a, x in [(1, 0), (len(atoms) - 2, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, x] += h
        minus.positions[a, x] -= h
        fd = -(model.compute(plus, forces=False)[0] - model.compute(minus, forces=False)[0]) / (2 * h)
        assert abs(fd - f[a, x]) < 1e-6 * max(1.0, abs(fd))
    rot = atoms.copy()
    rot.rotate(33.0, (1.0, 0.2, -0.4), rotate_cell=True)
    assert abs(model.compute(rot, forces=False)[0] - e) < 1e-9
    save_potential(tmp_path / "lin", model)
    assert load_potential(tmp_path / "lin").compute(atoms, forces=False)[0] == e
    # training moves the linear weights; switching the term after fitting is refused in plain words
    trained, _ = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL, linear=True), frames,
                                 **dict(TRAIN, epochs=2))
    assert all(np.abs(layers[-1]).max() > 0 for layers in trained.weights_)
    with pytest.raises(InputError, match="linear was switched off after fitting"):
        trained.set_params(linear=False).compute(atoms)
    with pytest.raises(InputError, match="linear must be true or false"):
        NeuralPotential(descriptor_params=SMALL, linear=1).initialize(frames[:3], energies[:3])


def test_errors_by_formula_partition_the_errors(frames):
    from ml4ms.potentials.metrics import errors_by_formula, evaluate_errors

    mixed = frames[:3] + [a for a in load("tio2", "train").records[:80] if len(a) > 12][:4]
    energies, forces = labels_of(mixed)
    rng = np.random.default_rng(0)
    pred = (energies + rng.normal(0, 0.05, len(mixed)), [f + rng.normal(0, 0.1, f.shape) for f in forces])
    groups = errors_by_formula(mixed, energies, forces, pred)
    assert len(groups) > 1 and sum(g["n_structures"] for g in groups.values()) == len(mixed)
    rmse = [g["energy_rmse_mev_per_atom"] for g in groups.values()]
    assert rmse == sorted(rmse, reverse=True)
    total = evaluate_errors(None, mixed, energies, forces, predictions=pred)
    mse = sum(g["energy_rmse_mev_per_atom"] ** 2 * g["n_structures"] for g in groups.values()) / len(mixed)
    assert abs(np.sqrt(mse) - total["energy_rmse_mev_per_atom"]) < 1e-9
    assert errors_by_formula(mixed, energies, forces, pred, max_groups=1) == {}


def test_worst_structures_rank_the_energy_errors(frames):
    from ml4ms.potentials.metrics import evaluate_errors, worst_structures

    energies, forces = labels_of(frames[:6])
    rng = np.random.default_rng(1)
    pred = (energies + rng.normal(0, 0.05, 6), [f + rng.normal(0, 0.1, f.shape) for f in forces])
    every = worst_structures(frames[:6], energies, forces, pred, count=10)
    err = [w["energy_error_mev_per_atom"] for w in every]
    assert len(every) == 6 and sorted(w["index"] for w in every) == list(range(6))
    assert np.all(np.diff(np.abs(err)) <= 0)
    assert abs(sum(w["share_of_energy_mse"] for w in every) - 1.0) < 1e-12
    k = every[0]["index"]
    one = evaluate_errors(None, [frames[k]], energies[[k]], [forces[k]], predictions=(pred[0][[k]], [pred[1][k]]))
    assert abs(abs(err[0]) - one["energy_rmse_mev_per_atom"]) < 1e-9
    assert abs(every[0]["force_rmse_ev_per_ang"] - one["force_rmse_ev_per_ang"]) < 1e-12
    assert every[0]["max_reference_force_ev_per_ang"] == np.abs(forces[k]).max()
    assert [w["index"] for w in worst_structures(frames[:6], energies, forces, pred, count=2)] == \
        [w["index"] for w in every[:2]]


def test_committee_members_are_seeded_runs_in_parallel_processes(frames, tmp_path, capsys):
    import ml4ms.cli as cli
    from ml4ms.errors import InputError
    from ml4ms.potentials.train import train_committee

    few = frames[:12]
    energies, forces = labels_of(few)
    base = NeuralPotential(hidden=(4,), descriptor_params=SMALL, seed=3)
    kw = dict(TRAIN, epochs=2, seed=5)
    models, histories = train_committee(base, few, energies, forces, members=2, jobs=2,
                                        checkpoint_dir=str(tmp_path / "ck"), **kw)
    # member 1 is the run with weight seed 3 + 1 and training seed 5 + 1 (own split and shuffles), in any process
    alone, history = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL, seed=4), few, energies,
                                     forces, **dict(kw, seed=6))
    assert [m.seed for m in models] == [3, 4] and len(histories[1]) == len(history) == 2
    e1, f1 = models[1].predict(few[:3])
    e2, f2 = alone.predict(few[:3])
    assert np.allclose(e1, e2, rtol=0, atol=1e-9) and np.allclose(np.concatenate(f1), np.concatenate(f2), atol=1e-9)
    assert not np.allclose(models[0].predict(few[:3], forces=False), e1, atol=1e-6)
    assert os.path.exists(tmp_path / "ck" / "member1" / "state.json")
    with pytest.raises(InputError, match="members must be a positive integer"):
        train_committee(base, few, energies, forces, members=0)
    # the CLI writes a committee folder that loads as a list
    data = tmp_path / "few.extxyz"
    write(data, few)
    assert cli.main(["potential", "fit", str(data), "-o", str(tmp_path / "com"), "--members", "2", "--jobs", "1",
                     "--epochs", "1", "--quiet"]) == 0
    assert "committee of 2" in capsys.readouterr().out
    assert len(load_potential(str(tmp_path / "com"))) == 2


def test_torchscript_export_matches_the_model(trained, frames, tmp_path, capsys):
    import torch
    from ase.build import bulk
    from ase.neighborlist import neighbor_list

    import ml4ms.cli as cli
    from ml4ms.errors import InputError
    from ml4ms.potentials.export import export_torchscript

    energies, _ = labels_of(frames)
    si = [bulk("Si", "diamond", a=5.43, cubic=True) for _ in range(2)]
    for k, a in enumerate(si):
        a.rattle(0.05, seed=k)
    models = {"local": trained[0],
              "cell_mean": NeuralPotential(hidden=(5, 4), descriptor_params=SMALL, cell_mean=True,
                                           seed=3).initialize(frames, energies),
              "cell_mean_linear": NeuralPotential(hidden=(4,), cell_mean=True, linear=True, seed=4,
                                                  descriptor_params=SMALL).initialize(frames, energies),
              "float32_cell_mean": NeuralPotential(hidden=(5,), descriptor_params=SMALL, dtype="float32",
                                                   cell_mean=True, seed=1).initialize(frames, energies),
              "one_species": NeuralPotential(hidden=(4,), descriptor_params=SMALL,
                                             seed=2).initialize(si, [-43.0, -43.2])}
    save_potential(tmp_path / "pot", trained[0])
    assert cli.main(["potential", "export", str(tmp_path / "pot"), "-o", str(tmp_path / "new" / "local.pt")]) == 0
    models["cell_mean_linear"].weights_[0][-1] += 0.3  # the linear term starts at zero: make it count
    for name in ("cell_mean", "cell_mean_linear", "float32_cell_mean", "one_species"):
        export_torchscript(models[name], tmp_path / "new" / f"{name}.pt")
    cluster = _cell(frames, seed=4)[:6]
    cluster.pbc = False
    tio2 = (_cell(frames), _cell(frames, seed=2).repeat((2, 1, 1)), cluster)
    for name, model in models.items():
        module = torch.jit.load(str(tmp_path / "new" / f"{name}.pt"))
        single = name.startswith("float32")
        tol = 1e-4 if single else 1e-9
        for atoms in (si[1], si[1][:3]) if name == "one_species" else tio2:
            i, j, S = neighbor_list("ijS", atoms, module.cutoff)  # float64 positions, int shifts: cast inside
            e, f, v = module(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
                             torch.tensor(i), torch.tensor(j), torch.tensor(S))
            assert e.dtype == torch.float64 and f.dtype == (torch.float32 if single else torch.float64)
            periodic = bool(atoms.pbc.all())
            e0, f0, s0 = model.compute(atoms, stress=periodic)
            assert abs(float(e) - e0) < tol
            np.testing.assert_allclose(f.double().numpy(), f0, atol=tol)
            if periodic:  # virial W = -dE/dε, stress = -W / V
                W = v.double().numpy()
                W = -0.5 * (W + W.T) / atoms.get_volume()
                np.testing.assert_allclose([W[0, 0], W[1, 1], W[2, 2], W[1, 2], W[0, 2], W[0, 1]], s0, atol=tol)
    args = [torch.tensor(a) for a in (atoms.positions, atoms.numbers, atoms.cell[:], i, j)] + [torch.tensor(S)]
    with torch.no_grad(), pytest.raises(Exception, match="autograd enabled"):
        module(*args)
    with pytest.raises(Exception, match="empty structure"):
        module(torch.zeros(0, 3), *args[1:])
    with pytest.raises(Exception, match="neighbour indices"):
        module(*args[:3], args[3] + len(atoms), *args[4:])
    for z in (1, 99):  # unknown, and beyond every known atomic number
        with pytest.raises(Exception, match="not among the potential's species"):
            module(torch.zeros(1, 3), torch.tensor([z]), torch.eye(3), torch.zeros(0, dtype=torch.long),
                   torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
    # what cannot be exported says so
    acsf = NeuralPotential(descriptor="acsf", hidden=(3,), descriptor_params={"r_cut": 4.0, "g2": [[0.5, 0.0]],
                                                                              "g4": []}).initialize(frames, energies)
    save_potential(tmp_path / "acsf", acsf)
    capsys.readouterr()
    assert cli.main(["potential", "export", str(tmp_path / "acsf"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "error" in capsys.readouterr().err
    # a committee is one module returning the members' mean; a different descriptor does not share the pass
    other = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 4, "angular_order": 2},
                            seed=5).initialize(frames, energies)
    for name, members in (("shared", [trained[0], models["cell_mean"]]), ("mixed", [trained[0], other])):
        save_potential(tmp_path / name, members)
        assert cli.main(["potential", "export", str(tmp_path / name), "-o", str(tmp_path / f"{name}.pt")]) == 0
        assert "committee of 2" in capsys.readouterr().out
        module = torch.jit.load(str(tmp_path / f"{name}.pt"))
        assert module.shared == (name == "shared")
        for atoms in tio2[:2]:
            i, j, S = neighbor_list("ijS", atoms, module.cutoff)
            e, f, v = module(torch.tensor(atoms.positions), torch.tensor(atoms.numbers), torch.tensor(atoms.cell[:]),
                             torch.tensor(i), torch.tensor(j), torch.tensor(S))
            ref = [m.compute(atoms, stress=True) for m in members]
            assert abs(float(e) - np.mean([r[0] for r in ref])) < 1e-9
            np.testing.assert_allclose(f.numpy(), np.mean([r[1] for r in ref], 0), atol=1e-9)
            W = v.numpy()
            W = -0.5 * (W + W.T) / atoms.get_volume()
            np.testing.assert_allclose([W[0, 0], W[1, 1], W[2, 2], W[1, 2], W[0, 2], W[0, 1]],
                                       np.mean([r[2] for r in ref], 0), atol=1e-9)
    with pytest.raises(InputError, match="differ in species or dtype"):
        export_torchscript([trained[0], models["float32_cell_mean"]], tmp_path / "bad.pt")


def test_weight_average_follows_its_definition_and_resumes(frames, tmp_path):
    from ml4ms.errors import InputError

    # one Adam step per epoch (the batch holds the whole training split): the average after two steps is
    # d1 (0.1 w0 + 0.9 w1) + (1 - d1) w2 with d1 = min(ema_decay, 2 / 11), from the plain run's weights
    run = dict(TRAIN, batch_size=100, restore_best=False)

    def weights(**kw):
        m, h = train_potential(NeuralPotential(hidden=(5,), descriptor_params=SMALL), frames, **dict(run, **kw))
        return [w for layers in m.weights_ for w in layers], h

    w0, _ = weights(epochs=1, learning_rate=0.0)
    w1, _ = weights(epochs=1)
    w2, plain = weights(epochs=2)
    avg, history = weights(epochs=2, ema_decay=0.5)
    d1 = min(0.5, 2 / 11)
    for a, b0, b1, b2 in zip(avg, w0, w1, w2):
        np.testing.assert_allclose(a, d1 * (0.1 * b0 + 0.9 * b1) + (1 - d1) * b2, rtol=1e-9, atol=1e-12)
    assert history[0]["train_energy_rmse"] == plain[0]["train_energy_rmse"]  # training sees the raw weights
    assert history[1]["val_loss"] != plain[1]["val_loss"]  # validation sees the average
    # ema_decay = 0: the average is the last step's weights
    same, h0 = weights(epochs=2, ema_decay=0.0)
    assert h0[1]["val_loss"] == plain[1]["val_loss"]
    for a, b in zip(same, w2):
        np.testing.assert_array_equal(a, b)
    # a run killed after 3 of 4 epochs and resumed equals the uninterrupted one (raw weights and average kept)
    full, hf = weights(epochs=4, batch_size=6, ema_decay=0.9)
    weights(epochs=3, batch_size=6, ema_decay=0.9, checkpoint_dir=str(tmp_path))
    resumed, hr = weights(epochs=4, batch_size=6, ema_decay=0.9, checkpoint_dir=str(tmp_path))
    assert abs(hr[-1]["val_loss"] - hf[-1]["val_loss"]) <= 1e-9 * hf[-1]["val_loss"]
    for a, b in zip(resumed, full):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError, match="ema_decay must be in"):
        weights(epochs=1, ema_decay=1.0)


def test_stage_two_switches_the_loss_weights(frames):
    from ml4ms.errors import InputError

    run = dict(TRAIN, restore_best=False)
    plain, hp = train_potential(NeuralPotential(hidden=(5,), descriptor_params=SMALL), frames, **run)
    two, h2 = train_potential(NeuralPotential(hidden=(5,), descriptor_params=SMALL), frames, stage_two_start=0.5,
                              stage_two_energy_weight=2.0, stage_two_force_weight=0.0, **run)
    assert [h["stage"] for h in h2] == [1, 1, 2, 2]
    assert [h["val_loss"] for h in h2[:2]] == [h["val_loss"] for h in hp[:2]]  # the same first stage
    for h in h2[2:]:  # energies only, weighted 2: no force term in training or in the validation loss
        assert np.isnan(h["train_force_rmse"]) and np.isfinite(h["val_force_rmse"])
        assert h["val_loss"] == pytest.approx(2.0 * (h["val_energy_rmse"] / 1000) ** 2, rel=1e-12)
    assert not np.array_equal(two.weights_[0][0], plain.weights_[0][0])
    # a time limit: the fraction is of the training time (here 1 ms), whichever comes first; the clock starts with
    # the first epoch (the precomputation before it is not counted), so that epoch is still of the first stage
    _, ht = train_potential(NeuralPotential(hidden=(5,), descriptor_params=SMALL), frames, stage_two_start=1e-9,
                            time_limit=1e6, stage_two_force_weight=0.0, **run)
    assert [h["stage"] for h in ht] == [1, 2, 2, 2]
    with pytest.raises(InputError, match="stage_two_start must be in"):
        train_potential(NeuralPotential(hidden=(5,), descriptor_params=SMALL), frames, stage_two_start=0.0, **run)


FEW = '[model]\nhidden = [4]\n[descriptor]\nradial_order = 2\nangular_order = 1\n' \
      '[training]\nbatch_size = 4\nvalid_fraction = 0.25\nnovelty_references = 0\n'


def _tiny_fit_files(frames, tmp_path, n=8):
    """A structure file and a tiny recipe for CLI fits of well under a second."""
    data, cfg = tmp_path / "few.extxyz", tmp_path / "tiny.toml"
    write(data, _plain(frames[:n]))
    cfg.write_text(FEW)
    return str(data), str(cfg)


class _Clock:
    """A stand-in for the ``time`` module of ml4ms.potentials.loop: ``time()`` is what the test sets."""

    now = 1000.0

    @classmethod
    def time(cls):
        return cls.now


def test_time_limit_counts_training_only(frames, monkeypatch):
    import ml4ms.potentials.loop as loop

    real = loop.JacobianSet

    def slow(*args, **kwargs):  # a precomputation of 500 s, longer than the 100 s time limit
        _Clock.now += 500.0
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "time", _Clock)
    monkeypatch.setattr(loop, "JacobianSet", slow)
    model, history = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames[:12],
                                     **dict(TRAIN, epochs=3), time_limit=100.0)
    record = model.training_
    assert len(history) == 3 and record["stopped_by"] == "epochs"  # the clock stood still while training
    assert record["precompute_seconds"] == 500.0 and record["preparation_seconds"] >= 500.0
    assert record["training_seconds"] == 0.0 and record["time_limit_seconds"] == 100.0


def test_a_precomputation_longer_than_the_time_limit_is_announced(frames, tmp_path, monkeypatch, capsys):
    import ml4ms.cli as cli
    import ml4ms.potentials.loop as loop

    real = loop.JacobianSet
    estimate = {"seconds": 9000.0}

    def estimated(*args, on_estimate=None, **kwargs):
        if on_estimate is not None:
            on_estimate(estimate["seconds"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "JacobianSet", estimated)
    with pytest.warns(UserWarning, match=r"8 structures: about 2.5 h, longer than the time limit of 10.0 min"):
        train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames[:8], **dict(TRAIN, epochs=1),
                        time_limit=600.0)
    data, cfg = _tiny_fit_files(frames, tmp_path)
    fit = ["potential", "fit", data, "--config", cfg, "--epochs", "1", "--minutes", "10"]
    assert cli.main(fit + ["-o", str(tmp_path / "a"), "--quiet"]) == 0  # a warning: it still trains
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if "Jacobians" in line]
    assert len(err) == 1 and err[0].startswith("ml4ms: warning: descriptor Jacobians of 8 structures: about 2.5 h")
    assert "precompute = false" in err[0] and "stopped at the epoch limit" in captured.out
    estimate["seconds"] = 30.0  # within the limit: one line on stdout with the progress bars, none with --quiet
    assert cli.main(fit + ["-o", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "descriptor Jacobians of 8 structures: about 30 s (the time limit of 10.0 min starts after them)" \
        in captured.out and "warning" not in captured.err


@pytest.mark.filterwarnings("ignore:descriptor Jacobians")  # longer than the tiny time limit
def test_the_stop_reason_is_recorded(frames, tmp_path):
    from ml4ms.cli.potential import stop_summary

    few = frames[:12]
    runs = {"epochs": dict(TRAIN, epochs=2),
            "patience": dict(TRAIN, epochs=6, learning_rate=0.3, patience=1),  # best after the first epoch
            "time_limit": dict(TRAIN, epochs=6, time_limit=1e-9)}  # out of time after the first batch
    for reason, kw in runs.items():
        model, history = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), few, **kw)
        record = model.training_
        assert record["stopped_by"] == reason, (reason, record)
        assert record["epochs"] == len(history) == {"epochs": 2, "patience": 2, "time_limit": 1}[reason]
        assert record["epoch_limit"] == kw["epochs"] and record["patience"] == kw.get("patience", 20)
        expected = {"epochs": "stopped at the epoch limit (2 epochs) after ",
                    "patience": "stopped early (patience): no better validation loss in the last 1 epoch, at epoch 2 ",
                    "time_limit": "stopped by the time limit (1e-09 s) at epoch 1 of 6; rerun with --resume"}
        assert expected[reason] in stop_summary(record)
    save_potential(tmp_path / "m", model)  # the record is kept in the model file
    assert load_potential(tmp_path / "m").training_["stopped_by"] == "time_limit"
    # without a validation split there is no early stopping
    model, _ = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), few,
                               **dict(TRAIN, epochs=2, valid_fraction=0.0, patience=1))
    assert model.training_["stopped_by"] == "epochs" and model.training_["patience"] is None


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_cli_fit_refuses_an_old_checkpoint_and_resumes_with_resume(frames, tmp_path, monkeypatch, capsys):
    import ml4ms.cli as cli
    import ml4ms.potentials.loop as loop

    data, cfg = _tiny_fit_files(frames, tmp_path)
    out, ckpt = tmp_path / "m", tmp_path / "m.checkpoint"
    fit = ["potential", "fit", data, "--config", cfg, "-o", str(out), "--quiet"]
    # a run killed (Ctrl-C) after its second of three epochs keeps two in its checkpoint ...
    real, saves = loop.save_checkpoint, []

    def killed(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", killed)
    assert cli.main(fit + ["--epochs", "3"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ml4ms: interrupted; {ckpt} holds 2 finished epochs of one potential: rerun with --resume to "
                   "continue"]
    monkeypatch.setattr(loop, "save_checkpoint", real)
    # ... so a new fit to the same -o is refused, on one line, and writes nothing
    before = _listing(tmp_path)
    assert cli.main(fit + ["--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ckpt) in err[0] and "--resume" in err[0] and "another -o" in err[0], err
    assert _listing(tmp_path) == before and not out.exists()
    # --resume continues it from the third epoch
    assert cli.main(fit + ["--epochs", "3", "--resume"]) == 0
    state = json.load(open(ckpt / "state.json"))
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3] and load_potential(out).training_["epochs"] == 3
    assert "stopped at the epoch limit (3 epochs)" in capsys.readouterr().out
    # --resume without a checkpoint, or naming another kind of run, is refused as well
    assert cli.main(fit[:-3] + ["-o", str(tmp_path / "new"), "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err
    assert cli.main(fit + ["--resume", "--members", "2"]) == 2
    assert "holds one potential's run, not a committee's" in capsys.readouterr().err
    assert cli.main(fit + ["--checkpoint", str(tmp_path / "other")]) == 0  # another checkpoint folder: a new run


def test_cli_committee_fit_refuses_and_resumes_its_member_checkpoints(frames, tmp_path, capsys):
    import ml4ms.cli as cli

    data, cfg = _tiny_fit_files(frames, tmp_path)
    out, ckpt = tmp_path / "com", tmp_path / "com.checkpoint"
    fit = ["potential", "fit", data, "--config", cfg, "-o", str(out), "--members", "2", "--jobs", "1", "--quiet"]
    assert cli.main(fit + ["--epochs", "1"]) == 0
    assert "member 1: stopped at the epoch limit (1 epoch)" in capsys.readouterr().out
    before = _listing(tmp_path)
    assert cli.main(fit + ["--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ckpt) in err[0] and "a committee run: 2 members, 1 finished epoch each" in err[0]
    assert _listing(tmp_path) == before
    assert cli.main(fit[:-5] + ["--quiet", "--resume", "--epochs", "2"]) == 2  # one potential, not the committee
    assert "pass --members 2 to continue it" in capsys.readouterr().err
    assert cli.main(fit + ["--epochs", "2", "--resume"]) == 0
    assert [m.training_["epochs"] for m in load_potential(out)] == [2, 2]
    for k in range(2):
        assert [h["epoch"] for h in json.load(open(ckpt / f"member{k}" / "state.json"))["history"]] == [1, 2]
