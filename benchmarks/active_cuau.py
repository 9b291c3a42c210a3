"""On-the-fly MD of Cu-Au fcc alloys with the EMT oracle (issue 30): labels used, force error, the loop's overhead.

Runs ``ml4ms active run`` on configs/active_cuau_emt.toml (or --config): from
at most 10 labelled starting structures, a committee of potentials runs
Langevin MD at 800 K and labels the frames it is unsure of until every MD run
of a round stays under the threshold for the requested length. Then:

* the oracle calls it took (target: at most 100, the starting labels included)
  and whether it converged;
* the committee's force and energy errors against EMT on frames of an
  independent EMT Langevin MD at the same temperature, from new random alloys
  (--test-cells cells, --test-steps steps, a frame every --test-every steps
  after --test-skip; target: force RMSE <= 0.05 eV/Å);
* one MD of --check-ps picoseconds (default 10) with the last committee from
  the first starting structure, and one from a new random alloy drawn like
  them: does it stay under the threshold (the issue's "10 ps MD")?
* the loop's own overhead per round: the round's wall time less its training,
  its MD and its oracle calls' compute time, as a share of the round (target:
  < 5 %); the share of everything but the oracle and the training (the MD
  included) is printed beside it.

    python benchmarks/active_cuau.py [--config FILE] [--db FILE] [--rounds N] [--json results.json]

A --db that holds the run already is continued (or only evaluated, when it is
finished); ``--rounds N`` runs at most N rounds now (0: evaluate the store as
it is, killed or not). The force error of every round's committee is printed
too (the learning curve). The last line is ``SUMMARY {json}``.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np


def overhead(store):
    """Per round after the first: wall seconds, and those of training, MD, oracle compute and the rest."""
    compute = {}
    for row in store.labels(light=True) + store.failures(light=True):
        compute[row.round] = compute.get(row.round, 0.0) + row.seconds
    out = []
    for entry in store.rounds():
        if entry["round"] == 0 or entry.get("ended") is None:
            continue
        timing = entry["data"].get("timing", {})
        wall = entry["ended"] - entry["started"]
        train, md, oracle = timing.get("train_s", 0.0), timing.get("md_s", 0.0), compute.get(entry["round"], 0.0)
        out.append({"round": entry["round"], "wall_s": wall, "train_s": train, "md_s": md, "oracle_s": oracle,
                    "rest_s": wall - train - md - oracle})
    return out


def reference_frames(elements, n_cells, steps, every, skip, temperature, seed):
    """Frames of EMT Langevin MD (2 fs, friction 0.02/fs) from new random 32-atom alloys, with EMT's labels."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md import velocitydistribution as vd
    from ase.md.langevin import Langevin

    from ml4ms.active.pool import random_alloys

    frames = []
    for k, atoms in enumerate(random_alloys(elements, n_cells, repeat=(2, 2, 2), rattle=0.1, seed=seed)):
        atoms.calc = EMT()
        rng = np.random.default_rng([seed, k])
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        dyn = Langevin(atoms, timestep=2.0 * units.fs, temperature_K=temperature, friction=0.02 / units.fs, rng=rng)
        for step in range(0, steps + 1, every):
            if step >= skip:
                frame = atoms.copy()
                frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(),
                                                   forces=atoms.get_forces())
                frames.append(frame)
            dyn.run(every)
    return frames


def long_run(committee, config, ps, new=False):
    """One Langevin MD of ``ps`` picoseconds with ``committee`` from the first starting structure (``new``: from a
    new random alloy drawn like them): ``under`` (it went its length without a frame past the threshold), ``steps``
    done and ``max_std`` (the largest force std of the recorded points, every ``interval`` steps; eV/Å)."""
    from ml4ms.active.otf import committee_md
    from ml4ms.active.pool import random_alloys
    from ml4ms.potentials import NeuralPotentialCalculator

    md, generate = config.strategy, dict(config.pool["generate"])
    if new:
        generate.update(n=1, seed=2000 + generate.get("seed", 0))
    atoms = random_alloys(**generate)[0]
    timestep = md.get("timestep", 2.0)
    run = committee_md(atoms, NeuralPotentialCalculator(committee), threshold=md["threshold"],
                       temperature=md["temperature"], steps=int(round(ps * 1000 / timestep)), timestep=timestep,
                       friction=md.get("friction", 0.02), seed=2000 + config.loop["seed"])
    return {"under": run["stopped"] == "completed", "steps": run["steps"],
            "max_std": float(max(run["trace"]["force_std"]))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="active_cuau_emt", help="a config file or bundled recipe name")
    parser.add_argument("--db", help="the label database (default: a temporary file)")
    parser.add_argument("--test-cells", type=int, default=4, help="cells of the independent EMT MD")
    parser.add_argument("--test-steps", type=int, default=2000, help="its steps (2 fs) per cell")
    parser.add_argument("--test-every", type=int, default=50, help="a test frame every N steps ...")
    parser.add_argument("--test-skip", type=int, default=200, help="... after the first N (equilibration)")
    parser.add_argument("--rounds", type=int, help="run at most N rounds now (0: only evaluate the store)")
    parser.add_argument("--check-ps", type=float, default=10.0,
                        help="then one MD of this many ps with the last committee from a new random alloy: does it stay "
                             "under the threshold? (0: skip)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from ml4ms.active.config import read_config
    from ml4ms.active.loop import ActiveLoop
    from ml4ms.active.report import summarize
    from ml4ms.active.store import LabelStore
    from ml4ms.potentials.metrics import evaluate_errors

    config = read_config(args.config)
    folder = tempfile.mkdtemp(prefix="active_cuau-")
    db = args.db or os.path.join(folder, "labels.db")
    start = time.perf_counter()
    ActiveLoop(config, db, progress=not args.quiet, echo=print).run(args.rounds)
    loop_s = time.perf_counter() - start
    store = LabelStore(db)
    summary = summarize(store)
    rounds = [r for r in store.rounds() if r.get("model")]
    calls = summary["labels"]["all"] + summary["failures"]["calls"]
    md = config.strategy

    t0 = time.perf_counter()
    frames = reference_frames(config.pool["generate"]["elements"], args.test_cells, args.test_steps, args.test_every,
                              args.test_skip, md["temperature"], seed=1000 + config.loop["seed"])
    labels = [a.get_potential_energy() for a in frames], [a.get_forces() for a in frames]
    curve = []
    print(f"\n{'round':>5} {'labels':>6} {'force RMSE eV/Å':>16} {'energy RMSE meV/atom':>21}")
    for entry in rounds:
        got = evaluate_errors(store.load_model(entry["model"]), frames, *labels)
        curve.append({"round": entry["round"], "n_train": entry["n_train"],
                      "force_rmse_ev_per_a": got["force_rmse_ev_per_ang"],
                      "energy_rmse_mev_per_atom": got["energy_rmse_mev_per_atom"]})
        print(f"{entry['round']:>5} {entry['n_train']:>6} {got['force_rmse_ev_per_ang']:>16.4f} "
              f"{got['energy_rmse_mev_per_atom']:>21.2f}")
    errors = {"force_rmse": got["force_rmse_ev_per_ang"], "force_mae": got["force_mae_ev_per_ang"],
              "energy_rmse": got["energy_rmse_mev_per_atom"], "energy_mae": got["energy_mae_mev_per_atom"]}
    reference_s = time.perf_counter() - t0

    last = store.load_model(rounds[-1]["model"])
    check = long_run(last, config, args.check_ps) if args.check_ps > 0 else None
    check_new = long_run(last, config, args.check_ps, new=True) if args.check_ps > 0 else None

    rows = overhead(store)
    wall = sum(r["wall_s"] for r in rows)
    rest = sum(r["rest_s"] for r in rows)
    but_oracle_training = sum(r["wall_s"] - r["train_s"] - r["oracle_s"] for r in rows)
    print(f"\n{'round':>5} {'wall s':>8} {'train s':>8} {'md s':>8} {'oracle s':>8} {'rest s':>7} {'rest %':>7}")
    for r in rows:
        print(f"{r['round']:>5} {r['wall_s']:>8.2f} {r['train_s']:>8.2f} {r['md_s']:>8.2f} {r['oracle_s']:>8.3f} "
              f"{r['rest_s']:>7.3f} {100 * r['rest_s'] / r['wall_s']:>6.2f}%")
    result = {
        "converged": summary["stop"] == "converged", "stop": summary["stop"], "rounds": summary["rounds"],
        "oracle_calls": calls, "labels": summary["labels"]["all"],
        "starting_structures": config.start["n"],
        "md_steps": md["steps"], "temperature_k": md["temperature"], "threshold_ev_per_a": md["threshold"],
        "force_rmse_ev_per_a": errors["force_rmse"], "force_mae_ev_per_a": errors["force_mae"],
        "energy_rmse_mev_per_atom": errors["energy_rmse"], "energy_mae_mev_per_atom": errors["energy_mae"],
        "n_test_frames": len(frames), "loop_seconds": loop_s, "reference_seconds": reference_s,
        "overhead_percent": 100 * rest / wall if wall else None,
        "all_but_oracle_and_training_percent": 100 * but_oracle_training / wall if wall else None,
        "train_percent": 100 * sum(r["train_s"] for r in rows) / wall if wall else None,
        "md_percent": 100 * sum(r["md_s"] for r in rows) / wall if wall else None,
        "n_train_last_model": rounds[-1]["n_train"], "per_round": rows, "curve": curve, "db": db,
        "check_ps": args.check_ps, "check_under_threshold": None if check is None else check["under"],
        "check_max_force_std_ev_per_a": None if check is None else check["max_std"],
        "check_new_alloy_under_threshold": None if check_new is None else check_new["under"],
        "check_new_alloy_steps": None if check_new is None else check_new["steps"],
    }
    print(f"\n{'converged' if result['converged'] else 'NOT converged (' + str(result['stop']) + ')'} after "
          f"{result['rounds']} rounds and {calls} oracle calls ({summary['labels']['all']} labels) in {loop_s:.0f} s")
    print(f"the last committee (trained on {rounds[-1]['n_train']} labels): force RMSE {errors['force_rmse']:.4f} eV/Å (MAE {errors['force_mae']:.4f}), energy RMSE "
          f"{errors['energy_rmse']:.3f} meV/atom on {len(frames)} frames of EMT MD at {md['temperature']:g} K")
    print(f"the loop's own overhead: {result['overhead_percent']:.2f} % of the rounds' time (training "
          f"{result['train_percent']:.1f} %, MD {result['md_percent']:.1f} %; everything but oracle and training "
          f"{result['all_but_oracle_and_training_percent']:.1f} %)")
    for what, got in (("the first starting structure", check), ("a new random alloy", check_new)):
        if got is not None:
            print(f"{args.check_ps:g} ps of MD at {md['temperature']:g} K with the last committee from {what}: "
                  f"{'stayed under' if got['under'] else 'passed'} {md['threshold']:g} eV/Å "
                  f"({got['steps']} steps; largest recorded force std {got['max_std']:.3f} eV/Å)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    keys = ("converged", "rounds", "oracle_calls", "n_train_last_model", "force_rmse_ev_per_a", "energy_rmse_mev_per_atom",
            "overhead_percent", "all_but_oracle_and_training_percent", "loop_seconds", "check_under_threshold",
            "check_max_force_std_ev_per_a", "check_new_alloy_under_threshold", "check_new_alloy_steps")
    print("SUMMARY " + json.dumps({k: round(result[k], 4) if isinstance(result[k], float) else result[k]
                                   for k in keys}))


if __name__ == "__main__":
    main()
