"""ASE calculator of a :class:`~ml4ms.potentials.model.NeuralPotential` (or a committee).

Neighbour data: the pair list is built with the cutoff plus a ``skin`` and
reused while the atomic numbers, cell and pbc are unchanged and no atom has
moved more than ``skin / 2`` since it was built (then no pair can have
crossed the cutoff unseen); pair vectors are always recomputed from the
current positions, so reuse changes no number, only the time. ``skin=0``
rebuilds the list on every call.
"""

import copy
from contextlib import nullcontext

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..batch import single_thread
from ..errors import InputError
from .committee import as_committee
from .io import load_potential


class NeuralPotentialCalculator(Calculator):
    """ASE calculator: ``energy``, ``free_energy``, ``forces``, ``stress``.

    Parameters
    ----------
    model : NeuralPotential, Committee, or str
        A model, a committee (:class:`~ml4ms.potentials.committee.Committee`,
        or a list of models) or a potential folder.
    skin : float, default 0.5
        Extra neighbour-list distance (Å) that allows reuse between steps.
    threads_above : int, default 1000
        Structures with fewer atoms run on one torch thread.
    novelty : bool, default False
        Also report how far the structure lies from the training data
        (:mod:`ml4ms.potentials.novelty`; the model must keep reference
        environments, as trained models do).
    device : {"cpu", "cuda", "cuda:N"}, optional
        Where to compute: the models' own ``device`` setting by default (a
        folder loads on the CPU); given, the calculator computes with copies
        of the models on it (the models given are left as they are).

    Notes
    -----
    With a committee, ``energy``/``forces``/``stress`` are the committee means and
    ``results`` also holds ``energy_std`` (eV), ``forces_std`` (n_atoms, 3; eV/Å) and ``stress_std``,
    the spread of the members (for active learning). With ``novelty=True``
    ``results`` holds ``novelty`` (the structure's, averaged over the members;
    above 1 it lies further from the training data than 99 % of the training
    structures lie from the rest of it) and ``atom_novelty`` (n_atoms,). The spread shows where the
    members disagree, novelty where the data end: members trained on the same
    data can agree and be wrong together.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> a.calc = NeuralPotentialCalculator(m.initialize([a], [-10.0]))
    >>> a.get_forces().shape
    (2, 3)
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, skin=0.5, threads_above=1000, novelty=False, device=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, str):
            model = load_potential(model, device=device or "cpu")
        self.committee = as_committee(model)
        if device is not None:
            self.committee = as_committee([copy.copy(m).set_params(device=device) for m in self.committee])
            self.committee[0].torch_device()  # a device this machine lacks: one line naming it
        self.skin = float(skin)
        self.threads_above = int(threads_above)
        self.novelty = bool(novelty)
        if self.novelty:
            missing = [k for k, m in enumerate(self.committee) if not hasattr(m, "novelty_references_")]
            if missing:
                raise InputError(f"novelty=True, but model {missing[0]} keeps no reference environments",
                                 hint="retrain it with 'ml4ms potential fit', or call fit_novelty(training "
                                      "structures) and save it again")
        self._nl = None  # (numbers, cell, pbc, positions, batch): the members share one neighbour list
        self.n_builds = 0

    def _tensors(self, atoms):
        key = (atoms.numbers.tobytes(), np.asarray(atoms.cell).tobytes(), atoms.pbc.tobytes())
        if self._nl is not None and self._nl[0] == key and self.skin > 0:
            moved = np.sqrt(((atoms.positions - self._nl[1]) ** 2).sum(1)).max() if len(atoms) else 0.0
            if moved <= 0.5 * self.skin:
                return self._nl[2]
        t = self.committee[0].tensors([atoms], self.committee.cutoff() + self.skin)
        self.n_builds += 1
        self._nl = (key, atoms.positions.copy(), t)
        return t

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not all(atoms.pbc):
            raise InputError("stress needs a periodic cell in all three directions")
        # small cells: one torch thread (extra threads only spin-wait on tensors this small)
        with single_thread() if len(atoms) < self.threads_above else nullcontext():
            t = self._tensors(atoms)
            r = self.committee.compute(atoms, forces=True, stress=want_stress, tensors=t)
            nov = [m.atom_novelty(t, positions=atoms.positions) for m in self.committee] if self.novelty else []
        self.results.update(energy=r["energy"], free_energy=r["energy"], forces=r["forces"])
        if want_stress:
            self.results["stress"] = r["stress"]
        if len(self.committee) > 1:
            self.results.update({k: r[k] for k in ("energy_std", "forces_std", "stress_std") if k in r})
        if self.novelty:
            self.results["atom_novelty"] = np.mean(nov, axis=0)
            self.results["novelty"] = float(self.results["atom_novelty"].mean())
