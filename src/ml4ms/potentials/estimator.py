"""What every kind of potential shares as an estimator: :class:`PotentialEstimator`.

A kind of potential is two things: its torch module (an :class:`~ml4ms.potentials.base.AtomisticModel`, the maths)
and an estimator that holds the settings, fits the statistics the module starts from (``initialize``), is trained
by :func:`~ml4ms.potentials.train.train_potential` and is saved as the module's state
(:mod:`ml4ms.potentials.io`). :class:`PotentialEstimator` is the estimator's shared part: batches of structures
(:meth:`~PotentialEstimator.tensors`), energies, forces and stress (:meth:`~PotentialEstimator.compute`,
:meth:`~PotentialEstimator.predict`), the trainable parameters as tensors, and novelty in the module's
embeddings. A kind writes ``cutoff``, ``check_settings``, ``initialize``, ``network`` (its module, built from the
fitted state) and ``from_network`` (the fitted state from a module); :class:`~ml4ms.potentials.model.NeuralPotential`
is the descriptor network's.
"""

import numpy as np
from sklearn.base import BaseEstimator

from ..batch import _torch, collate, torch_device, torch_dtype
from ..errors import InputError
from .base import energies_forces_stress
from .novelty import nearest_distances, novelty_scale, reference_environments, structure_means


def as_numpy(energy, forces, virial, atoms):
    """``(energy, forces, stress)`` of one structure as ASE wants them from the tensors of
    :func:`~ml4ms.potentials.base.energies_forces_stress`: eV, eV/Å (or None), Voigt eV/Å³ (or None; xx, yy, zz,
    yz, xz, xy)."""
    f = None if forces is None else forces.detach().cpu().double().numpy()
    s = None
    if virial is not None:
        v = virial[0].detach().cpu().double().numpy()
        v = 0.5 * (v + v.T) / atoms.get_volume()
        s = np.array([v[0, 0], v[1, 1], v[2, 2], v[1, 2], v[0, 2], v[0, 1]])
    return float(energy.detach()[0].cpu()), f, s


class WeightLists(list):
    """Lists of tensors that are the parameters of the module ``network``
    (:meth:`PotentialEstimator.torch_parameters`)."""

    network = None


class PotentialEstimator(BaseEstimator):
    """The shared part of every kind of potential's estimator (see the module notes).

    Fitted attributes every kind has: ``species_`` (atomic numbers, sorted), and after training ``training_``;
    with reference environments, ``novelty_references_`` and ``novelty_scale_`` (:meth:`fit_novelty`).

    Every kind has a ``device`` setting (``"cpu"``, the default, ``"cuda"`` or ``"cuda:N"``): its module, its
    batches (:meth:`tensors`) and its training run there, while the fitted state stays numpy arrays, so that a
    potential file is the same whatever device wrote it (:mod:`ml4ms.potentials.io` loads it on the CPU unless
    asked otherwise).
    """

    #: the fitted attribute whose presence means the potential has weights
    _fitted_attribute = "species_"
    #: the name of the kind in a potential recipe's ``[model] kind`` (:func:`~ml4ms.potentials.train.read_config`)
    recipe_kind = None
    #: whether the kind has the precomputed-Jacobian training path (``precompute``,
    #: :mod:`ml4ms.potentials.precompute`): a fixed descriptor whose Jacobians can be computed once. Without it the
    #: training loop differentiates through the whole model at every step, whatever ``precompute`` says
    has_precompute = False

    def cutoff(self):
        """Neighbour-list cutoff (Å) the potential needs."""
        raise NotImplementedError

    def check_settings(self):
        """Raise :class:`~ml4ms.errors.InputError` for a bad setting; needs no data."""
        raise NotImplementedError

    def initialize(self, frames, energies):
        """Set the species, the statistics the module starts from and random weights; returns self."""
        raise NotImplementedError

    def network(self):
        """The :class:`~ml4ms.potentials.base.AtomisticModel` holding this potential's fitted state."""
        raise NotImplementedError

    def from_network(self, net):
        """Take the fitted state of ``net`` (a module of this potential's settings); returns self."""
        raise NotImplementedError

    def set_parameters(self, params):
        """Take the trained parameters ``params`` (as from :meth:`torch_parameters`); returns self."""
        return self.from_network(params.network)

    def tensors(self, frames, cutoff=None):
        """The :class:`~ml4ms.batch.AtomsBatch` of ``frames`` for this potential (its species, cutoff, dtype),
        on its device."""
        self._check_species(frames)
        return collate(frames, self.cutoff() if cutoff is None else cutoff, self.species_,
                       self.dtype).to(self.torch_device())

    def torch_device(self):
        """The torch device of ``device`` (an :class:`~ml4ms.errors.InputError` for a GPU this machine lacks)."""
        return torch_device(getattr(self, "device", "cpu"))

    def _check_species(self, frames):
        known = set(self.species_)
        for k, a in enumerate(frames):
            bad = {int(z) for z in a.numbers} - known
            if bad:
                from ase.data import chemical_symbols

                names = ", ".join(chemical_symbols[z] for z in self.species_)
                raise InputError(f"element {chemical_symbols[sorted(bad)[0]]} is not among the potential's elements "
                                 f"({names})", index=k, hint="train a potential that includes it")

    def require_fitted(self):
        """Raise :class:`sklearn.exceptions.NotFittedError` unless the potential has weights.

        (A potential is fitted by :meth:`initialize` and trained by
        :func:`~ml4ms.potentials.train.train_potential`; it has no ``fit`` of its own, which would need energies
        and forces.)
        """
        if not hasattr(self, self._fitted_attribute):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} has no weights yet: initialize it or train it with "
                                 "ml4ms.potentials.train.train_potential")

    def fit_reference_energies(self, frames, energies):
        """Set ``species_`` (the elements of ``frames``), ``reference_energies_`` (least squares of the energies
        on the composition) and ``energy_scale_`` (the spread of the residual per atom, at least 1 meV): the start
        of every kind's ``initialize``. Reference environments of earlier training data are dropped; returns self.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from ml4ms.potentials import NeuralPotential
        >>> cells = [bulk("MgO", "rocksalt", a=4.2), bulk("MgO", "rocksalt", a=4.2).repeat((2, 1, 1))]
        >>> m = NeuralPotential().fit_reference_energies(cells, [-10.0, -20.0])
        >>> m.species_, round(float(m.reference_energies_.sum()), 6), m.energy_scale_
        ([8, 12], -10.0, 0.001)
        """
        if len(frames) == 0:
            raise InputError("no structures to train on")
        energies = np.asarray(energies, dtype=float)
        self.species_ = sorted({int(z) for a in frames for z in a.numbers})
        for stale in ("novelty_references_", "novelty_scale_"):  # they belong to the previous training data
            self.__dict__.pop(stale, None)
        counts = self.composition(frames)
        ref, *_ = np.linalg.lstsq(counts, energies, rcond=None)
        self.reference_energies_ = np.asarray(ref, dtype=float)
        resid = (energies - counts @ ref) / counts.sum(1)
        self.energy_scale_ = float(max(np.std(resid), 1e-3))
        return self

    def composition(self, frames):
        """Counts (n_frames, n_species) of each species in each structure."""
        index = {z: k for k, z in enumerate(self.species_)}
        out = np.zeros((len(frames), len(self.species_)))
        for r, a in enumerate(frames):
            for z in a.numbers:
                out[r, index[int(z)]] += 1
        return out

    def torch_parameters(self, requires_grad=True):
        """The trainable parameters as lists of tensors (in the groups of the module's ``parameter_groups``; the
        descriptor network: per element, in the order of ``weights_``), in ``dtype``.

        They are the parameters of a copy of :meth:`network` (the ``network`` attribute of the returned
        :class:`WeightLists`), so that training runs that module directly.
        """
        own = self.network()
        net = type(own)(**own.config()).to(self.torch_device())
        net.load_state_dict(own.state_dict())
        net.requires_grad_(requires_grad)
        out = WeightLists([net.get_parameter(name) for name in names] for names in net.parameter_groups())
        out.network = net
        return out

    def parameter_dict(self, params, prefix=""):
        """``params`` (lists, as :meth:`torch_parameters`) by their names in :meth:`network` (without ``prefix``)."""
        names = self.network().parameter_groups()
        return {name[len(prefix):] if prefix and name.startswith(prefix) else name: p
                for ns, ps in zip(names, params) for name, p in zip(ns, ps)}

    def energies_forces(self, t, params=None, *, forces=True, stress=False, create_graph=False):
        """Energies (n_structures,), forces (n_atoms, 3) and dE/dε (n_structures, 3, 3) as tensors.

        :func:`~ml4ms.potentials.base.energies_forces_stress` of :meth:`network`, with ``params`` (lists per
        species, as :meth:`torch_parameters`) in place of its weights when given (training).
        """
        own = getattr(params, "network", None)  # the parameters of a module (:meth:`torch_parameters`): run it
        return energies_forces_stress(own or self.network(), t, forces=forces, stress=stress,
                                      create_graph=create_graph,
                                      parameters=None if params is None or own is not None else
                                      self.parameter_dict(params))


    # ---------------------------------------------------------------- numpy --
    def compute(self, atoms, forces=True, stress=False, tensors=None):
        """Energy (eV), forces (eV/Å) and Voigt stress (eV/Å³) of one structure.

        ``tensors`` (an :class:`~ml4ms.batch.AtomsBatch`) may be given (e.g. a
        cached neighbour list with a skin); its ``positions`` are replaced by the current ones.

        Returns
        -------
        energy : float
        forces : ndarray (n_atoms, 3) or None
        stress : ndarray (6,) or None, in ASE's order xx, yy, zz, yz, xz, xy
        """
        self.require_fitted()
        t = self.structure_batch(atoms, stress, tensors)
        return as_numpy(*self.energies_forces(t, forces=forces, stress=stress), atoms)

    def structure_batch(self, atoms, stress=False, tensors=None):
        """The batch of the one structure ``atoms`` at its current positions (``tensors``: a cached one)."""
        if stress and not all(atoms.pbc):
            raise InputError("stress needs a periodic cell in all three directions")
        t = self.tensors([atoms]) if tensors is None else tensors
        return t.replace(positions=_torch().as_tensor(np.asarray(atoms.positions), dtype=torch_dtype(self.dtype),
                                                      device=t.positions.device))

    def predict(self, frames, forces=True, batch_atoms=2000):
        """Energies (n_frames,) and, if ``forces``, a list of force arrays for many structures."""
        from ..descriptors.base import batches_of

        energies, force_list = [], []
        for group in batches_of(list(frames), batch_atoms):
            t = self.tensors(group)
            e, F, _ = self.energies_forces(t, forces=forces)
            energies.extend(e.detach().cpu().double().numpy().tolist())
            if forces:
                force_list.extend(t.split(F.detach().cpu().double().numpy()))
        energies = np.asarray(energies)
        return (energies, force_list) if forces else energies

    # ------------------------------------------------------------- novelty --
    def environments(self, t):
        """Standardised descriptor (n_atoms, n_features) of the batch ``t`` (numpy, no gradients)."""
        torch = _torch()
        with torch.no_grad():
            return self.network().embeddings(t).cpu().double().numpy()

    def fit_novelty(self, frames, n_reference=2000, batch_atoms=2000, progress=False):
        """Keep reference environments of ``frames`` (the training structures) for :meth:`novelty`.

        Sets ``novelty_references_`` (per element, up to ``n_reference``
        environments chosen by farthest-point sampling) and ``novelty_scale_``
        (the 99th percentile of the structures' raw novelty, each against
        the references of the others): see :mod:`ml4ms.potentials.novelty`.

        Returns
        -------
        self
        """
        from tqdm.auto import tqdm

        from ..descriptors.base import batches_of

        self.require_fitted()
        if isinstance(n_reference, bool) or not isinstance(n_reference, (int, np.integer)) or n_reference < 1:
            raise InputError(f"n_reference must be a positive integer, got {n_reference!r}")
        frames = list(frames)
        if not frames:
            raise InputError("no structures to take reference environments from")
        self._check_species(frames)
        absent = sorted(set(self.species_) - {int(z) for a in frames for z in a.numbers})
        if absent:
            from ase.data import chemical_symbols

            raise InputError(f"element {chemical_symbols[absent[0]]} of the potential has no atoms in these "
                             "structures, so it would have no reference environments",
                             hint="give the structures it was trained on")
        H, S, ST, offset = [], [], [], 0
        groups = batches_of(frames, batch_atoms)
        for group in tqdm(groups, disable=not progress, desc="reference environments", unit="batch"):
            t = self.tensors(group)
            H.append(self.environments(t))
            S.append(t.species_index.cpu().numpy())
            ST.append(t.structure.cpu().numpy() + offset)
            offset += len(group)
        H, S, ST = np.concatenate(H), np.concatenate(S), np.concatenate(ST)
        references, rows = reference_environments(H, S, len(self.species_), int(n_reference), return_rows=True)
        # the scale: every training structure against the references taken from the others
        owners = np.split(ST[rows], np.cumsum([len(r) for r in references])[:-1])
        raw = nearest_distances(H, S, references, groups=ST, reference_groups=owners)
        self.novelty_scale_ = novelty_scale(structure_means(raw, ST, len(frames)))
        self.novelty_references_ = references
        return self

    def atom_novelty(self, t, positions=None):
        """Novelty (n_atoms,) of the atoms of the batch ``t``: distance to the nearest reference
        environment of their element, in units of ``novelty_scale_``.

        ``positions`` (n_atoms, 3) replace those of ``t`` (a neighbour list
        cached with a skin, as in :meth:`compute`).
        """
        self._require_references()
        if positions is not None:
            t = t.replace(positions=_torch().as_tensor(np.asarray(positions), dtype=torch_dtype(self.dtype),
                                                       device=t.positions.device))
        H = self.environments(t)
        return nearest_distances(H, t.species_index.cpu().numpy(), self.novelty_references_) / self.novelty_scale_

    def _require_references(self):
        if not hasattr(self, "novelty_references_"):
            raise InputError("this potential keeps no reference environments, so it has no novelty",
                             hint="retrain it with 'ml4ms potential fit' (novelty_references > 0), or call "
                                  "fit_novelty(training structures) and save it again")

    def novelty(self, frames, per_atom=False, batch_atoms=2000):
        """How far ``frames`` lie from the training data (see :mod:`ml4ms.potentials.novelty`).

        Returns
        -------
        ndarray (n_frames,)
            The mean novelty of each structure's atoms (1: the 99th percentile
            of the training structures, each measured against the others; NaN
            for a structure without atoms), or
            with ``per_atom`` a list of (n_atoms,) arrays.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from ml4ms.potentials import NeuralPotential
        >>> cells = [bulk("MgO", "rocksalt", a=4.1 + 0.05 * k) for k in range(4)]
        >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
        >>> m = m.initialize(cells, [-10.0, -10.2, -10.3, -10.25]).fit_novelty(cells[:3])
        >>> nov = m.novelty([cells[1], bulk("MgO", "rocksalt", a=3.6)])
        >>> bool(nov[0] <= 1.0 < nov[1])
        True
        """
        from ..descriptors.base import batches_of

        frames = list(frames)
        self._require_references()
        self._check_species(frames)  # here, so an error names the structure's index in ``frames``
        out = []
        for group in batches_of(frames, batch_atoms):
            t = self.tensors(group)
            d = self.atom_novelty(t)
            structure = t.structure.cpu().numpy()
            if per_atom:
                out.extend(d[structure == k] for k in range(len(group)))
            else:
                out.extend(structure_means(d, structure, len(group)).tolist())
        return out if per_atom else np.asarray(out)
