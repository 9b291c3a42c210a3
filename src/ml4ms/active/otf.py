"""On-the-fly MD for potentials: MD with a committee, labels where it is unsure, retraining, until a run stays sure.

The strategy ``[strategy] name = "md"`` of the loop (:mod:`ml4ms.active.loop`),
which labels, stores and resumes its rounds as it does those of a pool. Round
0 labels the starting structures (the ``[pool]``); every later round ``k``:

1. trains a committee of potentials on every label so far
   (:func:`ml4ms.potentials.train.train_committee`), continuing from the
   members of round ``k - 1`` (``warm_start``, for ``warm_epochs`` epochs
   where given; round 1 starts from the recipe's template), and keeps it in the store (a ``model`` row: the model
   that chose the round's frames, and the one the next round continues);
2. runs Langevin MD with the committee (:func:`committee_md`), one run per
   trajectory, in turn. A run stops at its first *candidate*: a frame whose
   largest per-atom force standard deviation over the members
   (:func:`force_uncertainty`, eV/Å) passes ``threshold``, or whose novelty
   passes ``novelty``. The round stops starting runs once it holds
   ``labels_per_round`` candidates (or what is left of the label budget);
3. writes the candidate frames themselves into the round's plan, so a rerun
   after a kill labels the same frames, and labels them with the oracle.

The loop ends when every run of a round went its ``steps`` under the
threshold (*converged*), or when the label budget is spent (the last round's
MD then only records the uncertainty, for the report).

**One candidate per run, its first.** Past a frame the committee is unsure
of, the trajectory follows forces nobody vouches for: the frames after it
sample the wrong potential (its temperature may even run away). The next
round's run starts again from its starting structure, with a new seed and the
retrained committee, and gets further: the candidates of a round come from
different runs, spread over the starting structures, and move along the
trajectories as the committee improves. Runs start from the starting
structures, not from the last candidate, so that the last round's test means
"MD of ``steps`` from every starting structure stays under the threshold".

**Seeds.** Run ``t`` of round ``k`` draws its velocities and its Langevin
noise from ``(seed, k, t)``; the training uses the recipe's seeds. The order of
the runs rotates by one each round, so every starting structure gets to go
first.

Examples
--------
>>> force_uncertainty([[0.0, 0.0, 0.0], [0.03, 0.04, 0.0]])
0.05
"""

import time

import numpy as np

from ..errors import InputError
from .store import settings_digest

#: why an MD run stopped
STOPS = ("completed", "candidate", "unstable")


def force_uncertainty(forces_std):
    """The largest per-atom force standard deviation (eV/Å) of a committee: ``max_i |σ_i|``.

    ``σ_i`` holds the standard deviations over the members of the three force
    components of atom ``i``, so ``|σ_i|`` is the root-mean-square distance of
    the members' forces on the atom from their mean (DeePMD-kit's "model
    deviation" of the forces).

    Parameters
    ----------
    forces_std : array-like, shape (n_atoms, 3)
        ``forces_std`` of :class:`~ml4ms.potentials.calculator.NeuralPotentialCalculator`'s results.

    Returns
    -------
    float
        0 for no atoms.

    Examples
    --------
    >>> force_uncertainty(np.zeros((0, 3)))
    0.0
    """
    forces_std = np.asarray(forces_std, dtype=float).reshape(-1, 3)
    return float(np.sqrt((forces_std ** 2).sum(axis=1)).max()) if len(forces_std) else 0.0


def frame_dict(atoms):
    """A structure as plain lists (numbers, positions, cell, pbc), for a round's plan in the store.

    Examples
    --------
    >>> from ase.build import bulk
    >>> d = frame_dict(bulk("Cu", cubic=True))
    >>> sorted(d), len(frame_atoms(d))
    (['cell', 'numbers', 'pbc', 'positions'], 4)
    """
    return {"numbers": [int(z) for z in atoms.numbers], "positions": np.asarray(atoms.positions, float).tolist(),
            "cell": np.asarray(atoms.cell.array, float).tolist(), "pbc": [bool(p) for p in atoms.pbc]}


def frame_atoms(frame):
    """The :class:`ase.Atoms` of a :func:`frame_dict`."""
    from ase import Atoms

    return Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])


class _Stop(Exception):
    """Ends an MD run from its observer: ``args[0]`` is the reason (:data:`STOPS`)."""


def committee_md(atoms, calculator, *, threshold, temperature, steps, timestep=1.0, friction=0.02, novelty=None,
                 interval=10, seed=0):
    """Langevin MD with a committee calculator, to its first uncertain frame or for ``steps`` steps.

    Every step is checked (the committee computes its spread with the forces
    anyway); step 0, the starting structure, is not a candidate.

    Parameters
    ----------
    atoms : ase.Atoms
        The starting structure (copied).
    calculator : NeuralPotentialCalculator
        Of a committee (``novelty=True`` where ``novelty`` is given).
    threshold : float
        eV/Å: a frame whose :func:`force_uncertainty` passes it is a candidate.
    temperature : float
        K: the Maxwell–Boltzmann velocities at step 0 and the Langevin bath.
    steps : int
    timestep : float
        fs.
    friction : float
        1/fs.
    novelty : float, optional
        A frame whose novelty passes it is a candidate too.
    interval : int
        Steps between two points of the trace (the stopping frame is always one).
    seed : int or sequence of int
        The velocities and the Langevin noise.

    Returns
    -------
    dict
        ``stopped`` (:data:`STOPS`: ``"unstable"`` for a non-finite energy or
        spread, or a temperature past ``max(10 T, 1000 K)``), ``steps`` (done),
        ``frame`` (the candidate, an :class:`ase.Atoms` without calculator; else
        None), ``score`` (its force uncertainty, eV/Å), ``novelty``,
        ``energy`` and ``energy_std`` (the committee's, eV), and ``trace``:
        lists ``step``, ``force_std`` (eV/Å), ``energy_std`` (eV/atom),
        ``temperature`` (K), and ``novelty`` with a novelty threshold.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential, NeuralPotentialCalculator
    >>> cell = bulk("Cu", cubic=True)
    >>> members = [NeuralPotential(hidden=(3,), seed=s, descriptor_params={"radial_order": 2, "angular_order": 1})
    ...            .initialize([cell], [-1.0]) for s in (0, 1)]
    >>> run = committee_md(cell, NeuralPotentialCalculator(members), threshold=1e-9, temperature=300, steps=5)
    >>> run["stopped"], run["steps"], run["score"] > 1e-9
    ('candidate', 1, True)
    """
    from ..potentials.md import start_dynamics

    atoms = atoms.copy()
    dyn = start_dynamics(atoms, calculator, ensemble="nvt", temperature=temperature, timestep=timestep,
                         friction=friction, seed=seed)
    hot = max(10.0 * temperature, 1000.0)
    trace = {"step": [], "force_std": [], "energy_std": [], "temperature": []}
    if novelty is not None:
        trace["novelty"] = []
    out = {"frame": None, "score": None, "novelty": None, "energy": None, "energy_std": None}

    def look():
        step = dyn.nsteps
        if trace["step"] and trace["step"][-1] == step:
            return
        energy = atoms.get_potential_energy()
        results = calculator.results
        score = force_uncertainty(results["forces_std"])
        nov = results.get("novelty")
        temp = atoms.get_temperature()
        bad = not (np.isfinite(energy) and np.isfinite(score) and temp < hot)
        over = step > 0 and not bad and (score > threshold or (novelty is not None and nov > novelty))
        if step % interval == 0 or bad or over:
            for key, value in (("step", step), ("force_std", score), ("temperature", temp),
                               ("energy_std", results.get("energy_std", 0.0) / len(atoms)), ("novelty", nov)):
                if key in trace:
                    trace[key].append(float(value) if key != "step" else int(value))
        if bad:
            raise _Stop("unstable")
        if over:
            frame = atoms.copy()
            frame.calc = None
            for key in list(frame.arrays):
                if key not in ("numbers", "positions"):
                    del frame.arrays[key]
            out.update(frame=frame, score=score, novelty=None if nov is None else float(nov), energy=float(energy),
                       energy_std=float(results.get("energy_std", 0.0)))
            raise _Stop("candidate")

    dyn.attach(look, interval=1)
    try:
        with np.errstate(all="ignore"):
            look()
            dyn.run(steps)
        stopped = "completed"
    except _Stop as stop:
        stopped = stop.args[0]
    except InputError:  # e.g. atoms so close that the neighbour list refuses them
        stopped = "unstable"
    return {"stopped": stopped, "steps": int(dyn.nsteps), "trace": trace, **out}


class OnTheFlyMD:
    """The rounds of on-the-fly MD for an :class:`~ml4ms.active.loop.ActiveLoop` (see the module notes).

    The loop asks it for the plan of each round after the first (:meth:`plan`),
    for the structure of a planned candidate (:meth:`structure`) and whether a
    finished run can go on (:meth:`used_up`).
    """

    def __init__(self, loop):
        self.loop = loop
        self.cfg = loop.cfg
        self.md = loop.cfg.strategy
        self.n_runs = int(self.md.get("trajectories", len(loop.pool)))
        if self.md["labels_per_round"] > self.n_runs:
            raise InputError(f"[strategy] labels_per_round ({self.md['labels_per_round']}) is more than the "
                             f"{self.n_runs} MD runs of a round (one per starting structure): each run gives one "
                             "candidate, its first", source=loop.cfg.source,
                             hint="lower labels_per_round, or give [strategy] trajectories")

    # --------------------------------------------------------------------------------------- the loop's asks
    def structure(self, candidate, entry):
        """The structure of ``candidate``: a starting structure, or a frame of the round ``entry``'s plan."""
        if candidate < len(self.loop.pool):
            return self.loop.pool[candidate]
        return frame_atoms(entry["data"]["frames"][str(candidate)])

    def used_up(self, k):
        """True when round ``k`` would do nothing new: the last round converged or stalled, or the budget is spent."""
        rounds = self.loop.store.rounds()
        if rounds and rounds[-1].get("stop") in ("converged", "unstable"):
            return True
        ids, _ = self.loop.store.training_set("active", k)
        return len(ids) >= self.cfg.loop["budget"]

    def plan(self, k):
        """Train round ``k``'s committee, run its MD and plan the candidates: ``(plan, keys, data)``."""
        store, progress = self.loop.store, self.loop.progress
        started = time.perf_counter()
        rows = store.labels(f"active<{int(k)}")
        if not rows:
            raise InputError("no starting structure could be labelled, so there is nothing to train on",
                             source=store.url, hint="see 'ml4ms active status' for the oracle's failures")
        committee, model_id = self._committee(k, rows, progress)
        trained = time.perf_counter()
        ids = [row.candidate for row in rows]
        wanted = max(0, min(self.md["labels_per_round"], self.cfg.loop["budget"] - len(ids)))
        runs, found = self._run_md(k, committee, wanted, progress)
        chosen, frames, choice = [], {}, {}
        per_atom = self.cfg.oracle["target"] == "energy_per_atom"
        next_id = self._next_id()
        for t, run in found[:wanted]:
            c = next_id + len(chosen)
            chosen.append(c)
            frames[str(c)] = frame_dict(run["frame"])
            n = len(run["frame"]) if per_atom else 1
            choice[str(c)] = {"strategy": "md", "score": run["score"], "model": model_id,
                              "pred": run["energy"] / n, "pred_std": run["energy_std"] / n,
                              "trajectory": int(t), "step": run["steps"], "novelty": run["novelty"]}
        converged = len(runs) == self.n_runs and all(r["stopped"] == "completed" for r in runs)
        stop = "converged" if converged else "budget" if not wanted else "unstable" if not chosen else None
        keys = {"n_train": len(ids), "model": model_id, "strategy": "md", "final": stop is not None,
                "converged": converged, "stop": stop}
        data = {"choice": choice, "frames": frames, "md": runs,
                "timing": {"train_s": trained - started, "md_s": time.perf_counter() - trained}}
        return {"active": chosen, "random": [], "test": []}, keys, data

    # --------------------------------------------------------------------------------------- the parts
    def _committee(self, k, rows, progress):
        """Round ``k``'s committee and its id: kept in the store already (a run killed before the round
        opened), or trained on ``rows``, continuing from round ``k - 1``'s."""
        from ..potentials.train import train_committee

        recipe, store = self.cfg.recipe, self.loop.store
        previous = next((r.get("model") for r in store.rounds() if r["round"] == k - 1), None)
        model_id = settings_digest({"recipe": recipe.to_dict(), "train": sorted(int(r.candidate) for r in rows),
                                    "from": previous})
        committee = store.load_model(model_id)
        if committee is not None:
            return committee, model_id
        training = dict(recipe.training)
        members, jobs = training.pop("members"), training.pop("jobs", None)
        start = store.load_model(previous) if previous else None
        if start is not None and "warm_epochs" in self.md:
            training["epochs"] = self.md["warm_epochs"]
        frames = [row.toatoms() for row in rows]
        committee, _ = train_committee(start if start is not None else recipe.model, frames, members=members,
                                       jobs=jobs, progress=progress, source=f"the labels before round {k}",
                                       warm_start=start is not None, **training)
        store.save_model(k, model_id, committee)
        return committee, model_id

    def _run_md(self, k, committee, wanted, progress):
        """The MD runs of round ``k`` in turn until ``wanted`` candidates (all runs when ``wanted`` is 0).

        Returns the records of the runs (for the store and the report) and ``[(trajectory, run)]`` of the
        candidates.
        """
        from tqdm.auto import tqdm

        from ..potentials.calculator import NeuralPotentialCalculator

        md, pool = self.md, self.loop.pool
        novelty = md.get("novelty")
        runs, found = [], []
        order = [(k - 1 + i) % self.n_runs for i in range(self.n_runs)]
        with tqdm(total=len(order), desc=f"round {k}: md", unit="run", disable=not progress, leave=False) as bar:
            for t in order:
                start = t % len(pool)
                run = committee_md(pool[start], NeuralPotentialCalculator(committee, novelty=novelty is not None),
                                   threshold=md["threshold"], novelty=novelty, temperature=md["temperature"],
                                   steps=md["steps"], timestep=md["timestep"], friction=md["friction"],
                                   interval=md["interval"], seed=[self.cfg.loop["seed"], k, t])
                runs.append({"trajectory": t, "start": start, "steps": run["steps"], "stopped": run["stopped"],
                             "score": run["score"], "trace": run["trace"]})
                if run["stopped"] == "candidate":
                    found.append((t, run))
                bar.update(1)
                bar.set_postfix_str(f"{len(found)} candidates", refresh=False)
                if wanted and len(found) >= wanted:
                    break
        return runs, found

    def _next_id(self):
        """The candidate number of the next new frame: after the starting structures and every frame planned."""
        planned = [c for r in self.loop.store.rounds() for c in r["data"].get("plan", {}).get("active", [])]
        return max([len(self.loop.pool) - 1, *planned]) + 1

    def line(self, entry):
        """What round ``entry`` did, for the terminal (after ``round k: trained on N labels;``)."""
        runs = entry["data"].get("md", [])
        done = sum(r["stopped"] == "completed" for r in runs)
        text = f"{len(runs)} MD runs, {done} of {self.md['steps']} steps under {self.md['threshold']:g} eV/Å"
        stop = entry.get("stop")
        if stop == "converged":
            return text + ": converged"
        if stop == "budget":
            return text + "; the budget is spent"
        if stop == "unstable":
            return text + "; the others ran away without a candidate: stopped"
        return text + f"; chose {len(entry['data']['plan']['active'])} frames"
