"""Novelty: distance of structures to a potential's training data in descriptor space."""

import json
import os

import numpy as np
import pytest
from ase.io import write
from scipy.spatial.distance import cdist

from ml4ms.errors import InputError
from ml4ms.potentials import NeuralPotential, NeuralPotentialCalculator, load_potential, save_potential
from ml4ms.potentials.novelty import (nearest_distances, novel_structures, novelty_report, reference_environments,
                                      select_novel, structure_means)
from ml4ms.potentials.options import check_training_options
from ml4ms.potentials.train import train_potential

from test_potentials import SMALL, frames  # noqa: F401  (the fixtures, shared)

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = dict(epochs=2, batch_size=6, learning_rate=0.01, valid_fraction=0.2, seed=0, progress=False)


@pytest.fixture(scope="module")
def trained(frames):
    # every structure in training (no validation split), so all of them set the scale
    model, _ = train_potential(NeuralPotential(hidden=(6,), descriptor_params=SMALL), frames,
                               novelty_references=40, **dict(TRAIN, valid_fraction=0.0))
    return model


def _compressed(atoms, factor=0.85):
    b = atoms.copy()
    b.calc = None
    b.set_cell(b.cell * factor, scale_atoms=True)
    return b


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(300, 7))
    species = rng.integers(0, 2, 300)
    refs = reference_environments(H, species, n_species=3, n_reference=25)
    assert [len(r) for r in refs] == [25, 25, 0] and refs[0].dtype == np.float32
    for s in (0, 1):  # the references are rows of that element
        rows = H[species == s]
        assert np.allclose(cdist(refs[s], rows).min(1), 0.0, atol=1e-5)
    Q = rng.normal(size=(50, 7)) * 2
    qs = np.r_[np.zeros(20, int), np.ones(25, int), np.full(5, 2)]
    d = nearest_distances(Q, qs, refs, chunk=7)
    for s in (0, 1):
        expected = cdist(Q[qs == s], refs[s].astype(float)).min(1)
        assert np.allclose(d[qs == s], expected, atol=1e-5)
    assert np.all(np.isinf(d[qs == 2]))  # an element without references
    # fewer rows than asked for: all of them
    assert len(reference_environments(H[:10], np.zeros(10, int), 1, 25)[0]) == 10
    # farthest-point sampling keeps the outlier
    H2 = np.r_[rng.normal(size=(100, 3)), [[50.0, 0, 0]]]
    assert 50.0 in reference_environments(H2, np.zeros(101, int), 1, 5)[0][:, 0]
    means = structure_means(np.array([1.0, 3.0, 5.0]), np.array([0, 0, 2]), 3)
    assert np.allclose(means[[0, 2]], [2.0, 5.0]) and np.isnan(means[1])  # a structure without atoms
    # with groups, a row ignores the references of its own group
    refs, rows = reference_environments(H, species, 2, 25, return_rows=True)
    assert np.allclose(np.r_[refs[0], refs[1]], H[rows], atol=1e-6)
    groups = np.arange(len(H)) // 10  # "structures" of 10 rows
    owners = [groups[rows[:25]], groups[rows[25:]]]
    d = nearest_distances(H, species, refs, groups=groups, reference_groups=owners)
    for r in range(0, 300, 37):
        R = refs[species[r]].astype(float)[owners[species[r]] != groups[r]]
        assert np.isclose(d[r], cdist(H[r:r + 1], R).min(), atol=1e-5)


def test_training_keeps_references_and_scales_novelty(trained, frames):
    refs = trained.novelty_references_
    assert len(refs) == len(trained.species_) and all(r.shape == (40, trained.n_features_) for r in refs)
    assert trained.novelty_scale_ > 0
    nov = trained.novelty(frames)
    assert nov.shape == (len(frames),) and np.all(nov >= 0)
    assert np.mean(nov <= 1.0 + 1e-9) >= 0.95  # 1 is the 99th percentile of the training structures
    squeezed = trained.novelty([_compressed(a) for a in frames[:5]])
    assert np.all(squeezed > np.max(nov))  # compressed by 15 %: beyond every training structure
    per_atom = trained.novelty(frames[:3], per_atom=True)
    assert [len(p) for p in per_atom] == [len(a) for a in frames[:3]]
    assert np.allclose([p.mean() for p in per_atom], nov[:3])


def test_a_small_training_set_all_of_it_references_still_has_a_scale(frames):
    # 24 cells: every environment becomes a reference (the default keeps 2000 per element)
    model, _ = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames, **TRAIN)
    assert all(len(r) < 2000 for r in model.novelty_references_)
    assert 1e-3 < model.novelty_scale_ < 1e3
    rattled = frames[0].copy()
    rattled.positions += np.random.default_rng(0).normal(0, 0.01, rattled.positions.shape)
    assert model.novelty([rattled])[0] < 1.0  # 0.01 Å from a training cell: well inside the data
    crystal = [frames[0].copy() for _ in range(3)]  # copies of one cell: nothing to scale by
    with pytest.warns(UserWarning, match="no reference environments"):
        alike, _ = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), crystal,
                                   energies=[-100.0] * 3, forces=[np.zeros((len(frames[0]), 3))] * 3,
                                   **dict(TRAIN, valid_fraction=0.0))
    assert hasattr(alike, "weights_") and not hasattr(alike, "novelty_references_")  # trained, without novelty


def test_novelty_errors_name_the_structure(trained, frames):
    from ase.build import bulk

    cao = bulk("CaO", "rocksalt", a=4.8)
    with pytest.raises(InputError, match="element Ca is not among") as err:
        trained.novelty(frames[:3] + [cao])
    assert err.value.index == 3
    only_o = [a[[k for k in range(len(a)) if a.numbers[k] == 8]] for a in frames[:3]]
    with pytest.raises(InputError, match="element Ti of the potential has no atoms"):
        trained.fit_novelty(only_o)
    unfitted = NeuralPotential(hidden=(4,))
    with pytest.raises(InputError, match="no reference environments"):
        unfitted.novelty(frames[:1])


def test_novelty_is_invariant(trained, frames):
    a = frames[3].copy()
    a.calc = None
    base = trained.novelty([a], per_atom=True)[0]
    b = a.copy()
    b.rotate(37, (1, 2, 3), rotate_cell=True)
    b.translate((0.3, -1.1, 2.0))
    perm = np.random.default_rng(1).permutation(len(a))
    c = a[perm]
    sup = a.repeat((2, 1, 1))
    assert np.allclose(trained.novelty([b], per_atom=True)[0], base, atol=1e-5)
    assert np.allclose(trained.novelty([c], per_atom=True)[0], base[perm], atol=1e-5)
    assert np.isclose(trained.novelty([sup])[0], base.mean(), atol=1e-5)


def test_novelty_survives_the_model_file_and_reinitialisation(trained, frames, tmp_path):
    save_potential(tmp_path / "pot", trained)
    back = load_potential(tmp_path / "pot")
    assert np.allclose(back.novelty(frames[:6]), trained.novelty(frames[:6]))
    fresh = NeuralPotential(**trained.get_params()).initialize(frames, [a.get_potential_energy() for a in frames])
    with pytest.raises(InputError, match="no reference environments") as err:
        fresh.novelty(frames[:2])
    assert "fit_novelty" in err.value.hint
    refit = load_potential(tmp_path / "pot")
    refit.initialize(frames[:10], [a.get_potential_energy() for a in frames[:10]])
    assert not hasattr(refit, "novelty_references_")  # stale references of other data are dropped
    with pytest.raises(InputError, match="n_reference"):
        trained.fit_novelty(frames, 0)
    with pytest.raises(InputError, match="novelty_references"):
        check_training_options({"novelty_references": -1})


def test_calculator_reports_novelty_of_the_current_positions(trained, frames):
    atoms = frames[2].copy()
    atoms.calc = NeuralPotentialCalculator([trained, trained], novelty=True, skin=0.5)
    atoms.get_potential_energy()
    first = atoms.calc.results["novelty"]
    assert np.isclose(first, trained.novelty([atoms])[0])
    atoms.positions[0] += (0.1, 0.0, 0.0)  # within the skin: the neighbour list is reused
    atoms.get_potential_energy()
    assert atoms.calc.n_builds == 1
    per_atom = trained.novelty([atoms], per_atom=True)[0]
    assert np.allclose(atoms.calc.results["atom_novelty"], per_atom)
    assert not np.isclose(atoms.calc.results["novelty"], first)
    plain = frames[2].copy()
    plain.calc = NeuralPotentialCalculator(trained)
    plain.get_potential_energy()
    assert "novelty" not in plain.calc.results  # off by default
    bare = NeuralPotential(**trained.get_params()).initialize(frames, [a.get_potential_energy() for a in frames])
    with pytest.raises(InputError, match="keeps no reference environments"):
        NeuralPotentialCalculator(bare, novelty=True)


def test_report_compares_novelty_with_the_spread():
    errors = np.array([1.0, -2.0, 30.0, 0.5, -25.0, 0.1, 0.2, 1.5, -0.3, 0.4])
    novelty = np.array([0.5, 0.6, 1.4, 0.4, 1.3, 0.2, 0.3, 0.7, 0.5, 0.6])
    spread = np.array([3.0, 0.1, 0.2, 0.1, 0.3, 0.1, 2.0, 0.1, 0.1, 0.1])
    r = novelty_report(novelty, errors, spread=spread, fraction=0.2, count=2)
    assert r["above_1"] == 2 and [w["index"] for w in r["most_novel"]] == [2, 4]
    assert np.isclose(r["top_share_of_mse"], (30 ** 2 + 25 ** 2) / np.sum(errors ** 2))
    assert r["spread_top_share_of_mse"] < 0.01 and r["spearman_abs_error"] > r["spread_spearman_abs_error"]
    assert r["largest_errors"] == [2, 4] and r["largest_errors_novelty_rank"] == [0, 1]
    assert r["largest_errors_spread_rank"] == [3, 2]
    assert np.isclose(r["rmse_above_1"], np.sqrt((30 ** 2 + 25 ** 2) / 2))
    assert np.isclose(r["rmse_at_most_1"], np.sqrt(np.mean(np.delete(errors, [2, 4]) ** 2)))
    assert np.isclose(r["rmse_less_novel"], r["rmse_at_most_1"])  # the top 20 % are the two above 1 here
    with pytest.raises(InputError, match="one length"):
        novelty_report(novelty, errors[:3])


def test_cli_fit_novelty_and_eval(frames, tmp_path, capsys, monkeypatch):
    import ml4ms.cli as cli

    monkeypatch.chdir(tmp_path)  # eval without --json writes its plots into the working folder

    model, _ = train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames,
                               novelty_references=0, **TRAIN)
    assert not hasattr(model, "novelty_references_")
    save_potential(tmp_path / "pot", [model, model])
    data = tmp_path / "train.extxyz"
    write(data, frames)
    assert cli.main(["potential", "fit-novelty", str(tmp_path / "pot"), str(data), "-n", "30"]) == 0
    assert all(len(r) == 30 for m in load_potential(tmp_path / "pot") for r in m.novelty_references_)
    test = tmp_path / "test.extxyz"
    write(test, frames[:8])
    out = tmp_path / "eval.json"
    capsys.readouterr()
    import ml4ms.plots as plots

    figures = {}

    def keep(plot):  # the figures the CLI draws, to read their labels
        def drawn(*args, **kwargs):
            figures.setdefault(plot.__name__, []).append(plot(*args, **kwargs))
            return figures[plot.__name__][-1]
        return drawn

    for plot in (plots.parity_plot, plots.score_plot):
        monkeypatch.setattr(plots, plot.__name__, keep(plot))
    assert cli.main(["potential", "eval", str(tmp_path / "pot"), str(test), "--json", str(out)]) == 0
    energy_ax, novelty_ax = figures["parity_plot"][0].axes[0], figures["score_plot"][0].axes[0]
    rmse = json.loads(out.read_text())["energy_rmse_mev_per_atom"]  # printed in meV/atom: so are the plots
    assert energy_ax.get_xlabel().endswith("(meV/atom)")
    assert f"RMSE {rmse:.4g} meV/atom" in energy_ax.texts[0].get_text()
    assert novelty_ax.get_ylabel() == "|energy error| (meV/atom)"
    doc = json.loads(out.read_text())["novelty"]
    assert {"above_1", "spearman_abs_error", "top_share_of_mse", "spread_top_share_of_mse", "most_novel"} <= set(doc)
    assert os.path.exists(doc["plot"]) and len(doc["most_novel"]) == 5
    assert "novelty (distance to the training data" in capsys.readouterr().out
    assert cli.main(["potential", "fit-novelty", str(tmp_path / "missing"), str(data)]) == 2
    capsys.readouterr()
    write(tmp_path / "o_only.extxyz", [a[[k for k in range(len(a)) if a.numbers[k] == 8]] for a in frames[:3]])
    assert cli.main(["potential", "fit-novelty", str(tmp_path / "pot"), str(tmp_path / "o_only.extxyz")]) == 2
    err = capsys.readouterr().err
    assert "o_only.extxyz" in err and "element Ti" in err and len(err.strip().splitlines()) == 1
    bare = tmp_path / "bare"
    save_potential(bare, NeuralPotential(**model.get_params()).initialize(frames, [a.get_potential_energy()
                                                                                   for a in frames]))
    assert cli.main(["potential", "eval", str(bare), str(test)]) == 0
    assert "no novelty: the potential keeps no reference environments" in capsys.readouterr().out


def test_cli_md_reports_the_novelty_of_its_frames(trained, frames, tmp_path, capsys):
    import ml4ms.cli as cli

    save_potential(tmp_path / "pot", trained)
    start = tmp_path / "start.extxyz"
    write(start, frames[0])
    out = tmp_path / "md.json"
    assert cli.main(["md", str(tmp_path / "pot"), str(start), "--steps", "6", "--interval", "2", "--temperature",
                     "2000", "-o", str(tmp_path / "t.extxyz"), "--json", str(out)]) == 0
    r = json.loads(out.read_text())["novelty"]
    from ase.io import read

    written = read(tmp_path / "t.extxyz", ":")
    assert r["every_steps"] == 2 and np.allclose(r["values"], trained.novelty(written))
    assert len(r["values"]) == 4 and np.isclose(r["max"], max(r["values"]))
    above = [k for k, v in enumerate(r["values"]) if v > 1]
    assert r["first_above_1_step"] == (2 * above[0] if above else None)
    printed = capsys.readouterr().out
    assert "novelty of the written frames" in printed
    assert ("ml4ms potential select" in printed) == bool(above)  # where to label more, when it left the data


def test_select_novel_matches_a_brute_force_greedy_choice():
    rng = np.random.default_rng(3)
    refs = rng.normal(size=(30, 4))
    ref_species = np.arange(30) % 2
    H = np.r_[rng.normal(size=(60, 4)), rng.normal(size=(40, 4)) * 3 + 2]  # a far-off cloud
    structure = np.repeat(np.arange(25), 4)
    species = rng.integers(0, 2, 100)  # two elements: an atom is compared with its own element only
    H2 = 2 * H  # a second member, with its own unit

    def nearest(X, known, known_species):
        return np.array([np.linalg.norm(known[known_species == s] - x, axis=1).min() for x, s in zip(X, species)])

    d = [nearest(H, refs, ref_species), nearest(H2, 2 * refs, ref_species)]
    order, values = select_novel([H, H2], d, species, structure, 25, count=6)
    known, known_species, taken = refs.copy(), ref_species.copy(), []
    for _ in range(6):  # brute force: recompute every distance from scratch after each choice
        per_atom = [nearest(X, f * known, known_species) for X, f in ((H, 1), (H2, 2))]
        score = [np.mean([p[structure == k].mean() for p in per_atom]) if k not in taken else -1 for k in range(25)]
        taken.append(int(np.argmax(score)))
        known = np.r_[known, H[structure == taken[-1]]]
        known_species = np.r_[known_species, species[structure == taken[-1]]]
    assert order.tolist() == taken
    assert np.all(np.diff(values) <= 1e-12) and values[0] > 1  # each choice is less novel than the one before
    assert set(order[:3]) <= set(range(15, 25))  # the far cloud first
    # min_novelty stops the choice; count is capped by the candidates
    assert len(select_novel([H], d[:1], species, structure, 25, count=25, min_novelty=values[2])[0]) < 25
    assert len(select_novel([H], d[:1], species, structure, 25, count=99)[0]) == 25


def test_select_skips_near_copies_and_the_cli_writes_the_choice(trained, frames, tmp_path, capsys):
    import ml4ms.cli as cli
    from ase.io import read

    far = _compressed(frames[2])
    candidates = [frames[0], far, far.copy(), _compressed(frames[5], 0.9), frames[1]]
    order, values = novel_structures(trained, candidates, 5)
    assert order[0] == 3 and order[1] in (1, 2)  # the two compressed cells first ...
    assert len({1, 2} & set(order.tolist())) == 1  # ... and a twin of a chosen one is not novel any more
    assert np.isclose(values[0], trained.novelty([candidates[3]])[0], rtol=1e-4)
    save_potential(tmp_path / "pot", [trained, trained])
    write(tmp_path / "cand.extxyz", candidates)
    out = tmp_path / "sel.json"
    assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "cand.extxyz"), "-n", "2",
                     "-o", str(tmp_path / "next.extxyz"), "--json", str(out)]) == 0
    chosen = read(tmp_path / "next.extxyz", ":")
    doc = json.loads(out.read_text())
    assert [a.info["candidate_index"] for a in chosen] == [c["index"] for c in doc["chosen"]] == order[:2].tolist()
    assert np.isclose(chosen[0].info["novelty"], values[0], rtol=1e-4)  # the committee of two identical members
    assert np.allclose(chosen[1].positions, candidates[order[1]].positions)
    assert "chose 2 of 5 candidates" in capsys.readouterr().out
    assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "cand.extxyz"), "-n", "5",
                     "--min-novelty", f"{(values[1] + values[2]) / 2:.6g}", "-o", str(tmp_path / "few.extxyz")]) == 0
    assert len(read(tmp_path / "few.extxyz", ":")) == 2  # the compressed cells only
    assert "no other candidate is more novel than" in capsys.readouterr().out
    assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "cand.extxyz"), "-n", "9",
                     "--min-novelty", "1e6", "-o", str(tmp_path / "none.extxyz")]) == 0
    assert "nothing to label" in capsys.readouterr().out and not os.path.exists(tmp_path / "none.extxyz")
    for bad in (["--min-novelty", "nan"], ["-o", str(tmp_path / "y.csv")]):
        assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "cand.extxyz"), "-n", "2",
                         "-o", str(tmp_path / "z.extxyz"), *bad]) == 2
    assert "--min-novelty" in capsys.readouterr().err
    assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "cand.extxyz"), "-n", "2",
                     "--by", "spread", "-o", str(tmp_path / "spread.extxyz")]) == 0  # identical members: spread 0
    save_potential(tmp_path / "one", trained)
    capsys.readouterr()
    assert cli.main(["potential", "select", str(tmp_path / "one"), str(tmp_path / "cand.extxyz"), "-n", "2",
                     "--by", "spread", "-o", str(tmp_path / "x.extxyz")]) == 2
    err = capsys.readouterr().err
    assert "no committee spread" in err and str(tmp_path / "one") in err
    bare = tmp_path / "bare"
    save_potential(bare, NeuralPotential(**trained.get_params()).initialize(frames, [a.get_potential_energy()
                                                                                     for a in frames]))
    assert cli.main(["potential", "select", str(bare), str(tmp_path / "cand.extxyz"), "-n", "2",
                     "-o", str(tmp_path / "x.extxyz")]) == 2
    err = capsys.readouterr().err
    assert "no reference environments" in err and str(bare) in err and "fit-novelty" in err
    from ase.build import bulk

    write(tmp_path / "cao.extxyz", [frames[0], bulk("CaO", "rocksalt", a=4.8)])
    assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "cao.extxyz"), "-n", "1",
                     "-o", str(tmp_path / "x.extxyz")]) == 2
    err = capsys.readouterr().err
    assert "cao.extxyz" in err and "structure 1" in err and len(err.strip().splitlines()) == 1
    from ase import Atoms

    write(tmp_path / "bad.extxyz", [frames[0], Atoms("O2", positions=[(0, 0, 0), (0.1, 0, 0)])])
    assert cli.main(["potential", "select", str(tmp_path / "pot"), str(tmp_path / "bad.extxyz"), "-n", "1",
                     "-o", str(tmp_path / "x.extxyz")]) == 2
    err = capsys.readouterr().err
    assert "structure 1" in err and "overlap" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "x.extxyz")


def test_warm_start_continues_from_the_weights_and_refits_the_references(trained, frames, tmp_path, capsys):
    import copy

    import ml4ms.cli as cli
    from ml4ms.potentials.committee import as_committee
    from ml4ms.potentials.train import train_committee

    base = copy.deepcopy(trained)
    more = frames + [_compressed(a, 0.95) for a in frames[:4]]
    for a, b in zip(more[len(frames):], frames[:4]):  # labels for the new cells (any will do here)
        from ase.calculators.singlepoint import SinglePointCalculator

        a.calc = SinglePointCalculator(a, energy=b.get_potential_energy() + 1.0, forces=b.get_forces())
    # a learning rate of 0: the weights, standardisation and reference energies are exactly the old ones
    still, _ = train_potential(copy.deepcopy(base), more, warm_start=True,
                               **dict(TRAIN, epochs=1, learning_rate=0.0, valid_fraction=0.0))
    assert np.allclose(as_committee(still).predict(frames)[0], as_committee(base).predict(frames)[0], atol=1e-8)
    # ... and the reference environments now are all the atoms of the training cells, the new ones included
    assert base.novelty(more[len(frames):]).min() > 1e-2 and still.novelty(more[len(frames):]).max() < 1e-3
    ck = str(tmp_path / "ck")
    moved, _ = train_potential(base, more, warm_start=True, checkpoint_dir=ck, **dict(TRAIN, epochs=2))
    assert not np.allclose(as_committee(moved).predict(frames)[0], as_committee(base).predict(frames)[0])
    assert hasattr(base, "novelty_references_")  # the caller's potential is left as it was
    # a checkpoint remembers where its run started: not another potential, not a run from scratch
    with pytest.raises(InputError, match="from another potential"):
        train_potential(moved, more, warm_start=True, checkpoint_dir=ck, **dict(TRAIN, epochs=3))
    train_potential(NeuralPotential(**base.get_params()), more, checkpoint_dir=str(tmp_path / "anew"),
                    **dict(TRAIN, epochs=1))
    with pytest.raises(InputError, match="started anew"):
        train_potential(base, more, warm_start=True, checkpoint_dir=str(tmp_path / "anew"), **dict(TRAIN, epochs=2))
    again, _ = train_potential(base, more, warm_start=True, checkpoint_dir=ck, **dict(TRAIN, epochs=2))
    assert np.allclose(as_committee(again).predict(frames)[0], as_committee(moved).predict(frames)[0])  # resumed: done
    from ase.build import bulk

    with pytest.raises(InputError, match="element Ca is not among") as err:
        train_potential(copy.deepcopy(base), frames[:5] + [bulk("CaO", "rocksalt", a=4.8)], energies=[0.0] * 6,
                        forces=[np.zeros((len(a), 3)) for a in frames[:5]] + [np.zeros((2, 3))], warm_start=True,
                        **TRAIN)
    assert err.value.index == 5 and "train a new potential" in str(err.value)
    with pytest.raises(InputError, match="needs a fitted potential"):
        train_potential(NeuralPotential(hidden=(4,), descriptor_params=SMALL), frames, warm_start=True, **TRAIN)
    with pytest.raises(InputError, match="warm_start=True"):
        train_committee([base, base], frames, **TRAIN)
    members, _ = train_committee([copy.deepcopy(base), copy.deepcopy(base)], more, jobs=1, warm_start=True,
                                 **dict(TRAIN, epochs=1, learning_rate=0.0))
    assert len(members) == 2 and np.allclose(as_committee(members).predict(frames)[0], as_committee(base).predict(frames)[0],
                                             atol=1e-8)
    # the command line: --init continues a committee, every member
    save_potential(tmp_path / "old", [base, base])
    write(tmp_path / "more.extxyz", more)
    assert cli.main(["potential", "fit", str(tmp_path / "more.extxyz"), "--init", str(tmp_path / "old"),
                     "--epochs", "1", "--jobs", "1", "--quiet", "-o", str(tmp_path / "new")]) == 0
    printed = capsys.readouterr().out
    assert len(load_potential(tmp_path / "new")) == 2 and "committee of 2" in printed
    assert "at learning rate 0.0001" in printed
    save_potential(tmp_path / "single", base)
    assert cli.main(["potential", "fit", str(tmp_path / "more.extxyz"), "--init", str(tmp_path / "single"),
                     "--members", "3", "-o", str(tmp_path / "x")]) == 2
    assert "is one potential" in capsys.readouterr().err
    assert cli.main(["potential", "fit", str(tmp_path / "more.extxyz"), "--init", str(tmp_path / "old"),
                     "--members", "3", "-o", str(tmp_path / "x")]) == 2
    assert "committee of 2" in capsys.readouterr().err
