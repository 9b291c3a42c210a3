"""A committee of potentials: members that share their elements and cutoff, with the mean and spread of their
energies, forces and stress (Musil et al., JCTC 15, 906 (2019): the spread as the uncertainty).

Every place that takes "a potential or a committee" turns it into a :class:`Committee` with
:func:`as_committee`, so one model is a committee of one and nothing asks which it was given.
"""

import numpy as np

from ..errors import InputError


class Committee:
    """Potentials trained alike (other seeds, other data splits), used together.

    Parameters
    ----------
    members : sequence of fitted potentials
        At least one; all with the same elements (``species_``) and the same
        neighbour cutoff, so one neighbour list serves them all.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> members = [NeuralPotential(hidden=(3,), seed=s, descriptor_params={"radial_order": 2, "angular_order": 1})
    ...            .initialize([a], [-10.0]) for s in (0, 1)]
    >>> c = Committee(members)
    >>> r = c.compute(a, stress=True)
    >>> len(c), sorted(r)
    (2, ['energy', 'energy_std', 'forces', 'forces_std', 'stress', 'stress_std'])
    """

    def __init__(self, members):
        members = list(members)
        if not members:
            raise InputError("a committee needs at least one potential")
        for k, m in enumerate(members):
            if not hasattr(m, "species_"):
                raise InputError(f"committee member {k} is not fitted", hint="train it first")
            if list(m.species_) != list(members[0].species_):
                raise InputError(f"the committee's members have different elements ({list(members[0].species_)} "
                                 f"and {list(m.species_)} of member {k})",
                                 hint="use members trained on the same elements")
            if m.cutoff() != members[0].cutoff():
                raise InputError(f"the committee's members have different cutoffs ({members[0].cutoff()} and "
                                 f"{m.cutoff()} Å of member {k})", hint="use members with the same descriptor")
        self.members = members

    def __len__(self):
        return len(self.members)

    def __iter__(self):
        return iter(self.members)

    def __getitem__(self, k):
        return self.members[k]

    def __repr__(self):
        return f"Committee({len(self)} members, species {list(self.species_)}, cutoff {self.cutoff():g} Å)"

    @property
    def species_(self):
        """The members' atomic numbers, sorted."""
        return self.members[0].species_

    def cutoff(self):
        """The members' neighbour cutoff (Å)."""
        return self.members[0].cutoff()

    @property
    def has_novelty(self):
        """True when every member keeps reference environments (trained potentials do)."""
        return all(hasattr(m, "novelty_references_") for m in self.members)

    # ------------------------------------------------------------ one structure --
    def compute(self, atoms, forces=True, stress=False, tensors=None):
        """Mean and standard deviation over the members for one structure.

        ``tensors`` (an :class:`~ml4ms.batch.AtomsBatch` of ``atoms``, e.g. a
        neighbour list cached with a skin) serves every member.

        Returns
        -------
        dict
            ``energy`` (eV) and ``energy_std``; with ``forces``, ``forces`` and
            ``forces_std`` (n_atoms, 3; eV/Å); with ``stress``, ``stress`` and
            ``stress_std`` (Voigt, eV/Å³). The standard deviations are zero for
            a committee of one.
        """
        runs = self._runs(atoms, forces, stress, tensors)
        out = {}
        for k, name in enumerate(("energy", "forces", "stress")):
            if k == 0 or (forces, stress)[k - 1]:
                values = np.array([r[k] for r in runs])
                out[name] = float(values.mean()) if k == 0 else values.mean(axis=0)
                out[name + "_std"] = float(values.std()) if k == 0 else values.std(axis=0)
        return out

    def _runs(self, atoms, forces, stress, tensors):
        """Every member's ``(energy, forces, stress)`` of one structure; members sharing a fixed descriptor compute
        it once (:func:`~ml4ms.potentials.base.committee_energies_forces_stress`)."""
        from .base import committee_energies_forces_stress
        from .estimator import as_numpy

        first = self.members[0]
        if len(self.members) == 1 or any(m.dtype != first.dtype for m in self.members):
            return [m.compute(atoms, forces=forces, stress=stress, tensors=tensors) for m in self.members]
        for m in self.members:
            m.require_fitted()
        t = first.structure_batch(atoms, stress, tensors)
        runs = committee_energies_forces_stress([m.network() for m in self.members], t, forces=forces, stress=stress)
        return [as_numpy(e, F, V, atoms) for e, F, V in runs]

    # ---------------------------------------------------------- many structures --
    def predict(self, frames, forces=True, batch_atoms=2000, return_std=False):
        """The members' mean energies (n_frames,) and, with ``forces``, a list of mean force arrays.

        With ``return_std`` the members' energy standard deviation (n_frames,;
        eV) comes last.
        """
        frames = list(frames)
        runs = [m.predict(frames, forces=forces, batch_atoms=batch_atoms) for m in self.members]
        energies = np.array([r[0] if forces else r for r in runs])
        out = [energies.mean(axis=0)]
        if forces:
            out.append([np.mean([r[1][k] for r in runs], axis=0) for k in range(len(frames))])
        if return_std:
            out.append(energies.std(axis=0))
        return tuple(out) if len(out) > 1 else out[0]

    def energy_spread(self, frames, batch_atoms=2000):
        """The members' energy standard deviation per atom (n_frames,; eV/atom), energies only."""
        frames = list(frames)
        _, spread = self.predict(frames, forces=False, batch_atoms=batch_atoms, return_std=True)
        return spread / np.array([max(len(a), 1) for a in frames])

    def novelty(self, frames):
        """How far ``frames`` lie from the training data (n_frames,): the members' mean novelty."""
        return np.mean([m.novelty(frames) for m in self.members], axis=0)


def as_committee(model):
    """``model`` as a :class:`Committee`: a committee as it is, a list as its members, one potential alone.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> one = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> c = as_committee(one.initialize([a], [-10.0]))
    >>> len(c), c.compute(a)["energy_std"]
    (1, 0.0)
    """
    if isinstance(model, Committee):
        return model
    return Committee(model if isinstance(model, (list, tuple)) else [model])
