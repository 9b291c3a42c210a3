r"""Behler–Parrinello neural-network potential on ml4ms descriptors.

The total energy of a structure is a sum of atomic energies,

.. math::

    E = \sum_a \left[ E^{\mathrm{ref}}_{t_a} + s\,
        \mathrm{NN}_{t_a}\!\left(\frac{X_a - \mu_{t_a}}{\sigma_{t_a}}\right) \right],

with one feed-forward network per element :math:`t` (tanh hidden layers,
linear output), the per-element reference energies :math:`E^{\mathrm{ref}}`
fitted by least squares on the composition, the descriptor :math:`X_a`
(Chebyshev of Artrith–Urban–Ceder by default, or ACSF) standardised per
element, and an energy scale :math:`s` (the spread of the reference-energy
residual per atom) so the networks learn numbers of order one. Forces are
:math:`-\partial E/\partial \mathbf r` and the stress
:math:`\sigma = V^{-1}\,\partial E/\partial \varepsilon` (homogeneous strain of
positions and cell), both by autograd through the pure-torch descriptor.

With ``cell_mean=True`` every atom's network also sees the cell average of
the standardised descriptor,
:math:`\bar X = N^{-1} \sum_b (X_b - \mu_{t_b})/\sigma_{t_b}` (itself
standardised over the training cells), a mean-field input in the spirit of
the global descriptors of fourth-generation potentials (Ko et al., Nat.
Commun. 12, 398, 2021). It carries cell-wide information a cutoff cannot:
in the O-deficient cells of the ænet TiO2 set the excess electrons are
delocalised (PBE), and the local model's energy errors there are 3× larger
than in stoichiometric cells (docs/studies/tio2-potential.md). Energies stay invariant,
forces and stress stay exact derivatives, and a supercell has exactly
*k*-fold energy; but the model is no longer local, so keep it to cells like
the training ones (not interfaces or mixed-phase slabs).

With ``linear=True`` every element's atomic energy also has a term linear in
the network's (standardised) inputs, :math:`E_i = \mathrm{NN}_{t_i}(h_i) +
v_{t_i} \cdot h_i`, a skip connection past the tanh layers. A linear function
of the radial features is a pair potential, and of the cell average a
cell-wide term; the network then fits what is left instead of bending tanh
units into a near-linear trend. On the ænet TiO2 set it lowers the test
energy error at equal training (docs/studies/tio2-potential.md).

Everything the model holds is plain numbers and numpy arrays, so it is saved
by :mod:`ml4ms.serialize` (JSON + npz); torch tensors are built on demand.
"""

import numpy as np
from sklearn.base import BaseEstimator

from ..batch import _torch, collate, torch_dtype
from ..descriptors.acsf import DEFAULT_G2, DEFAULT_G4
from ..descriptors.chebyshev import REMOVED_SETTINGS, check_settings
from ..errors import InputError
from .base import energies_forces_stress
from .descriptor_network import (DESCRIPTOR_MODULES, DescriptorNetwork, batch_features, batch_pair_gradients,
                                 cell_average, cutoff_of)
from .novelty import nearest_distances, novelty_scale, reference_environments, structure_means

#: descriptor settings of the ænet TiO2 workshop fit set003
CHEBYSHEV_DEFAULTS = {"radial_cutoff": 5.0, "radial_order": 12, "angular_cutoff": 3.0, "angular_order": 5}
ACSF_DEFAULTS = {"r_cut": 6.0, "g2": [list(p) for p in DEFAULT_G2], "g4": [list(p) for p in DEFAULT_G4]}


def _species_of(frames):
    return sorted({int(z) for a in frames for z in a.numbers})


class WeightLists(list):
    """Per-element lists of weights that are the parameters of the module ``network``."""

    network = None


class NeuralPotential(BaseEstimator):
    """Per-element feed-forward networks on a local descriptor.

    Parameters
    ----------
    descriptor : {"chebyshev", "acsf"}, default "chebyshev"
    descriptor_params : dict, optional
        Settings of the descriptor; missing keys take the defaults
        (:data:`CHEBYSHEV_DEFAULTS`, :data:`ACSF_DEFAULTS`).
    hidden : sequence of int, default (20, 20)
        Hidden-layer widths of every element's network.
    dtype : {"float64", "float32"}, default "float64"
    seed : int, default 0
        Seed of the weight initialisation.
    cell_mean : bool, default False
        Append the (standardised) cell average of the standardised
        descriptor to every atom's input (see the module notes).
    linear : bool, default False
        Add a term linear in the network inputs to every atomic energy
        (a skip connection; see the module notes).

    Attributes
    ----------
    species_ : list of int
        Atomic numbers, sorted.
    reference_energies_ : ndarray (n_species,)
        Per-element reference energies (eV).
    energy_scale_ : float
        Scale (eV) of the network outputs.
    feature_mean_, feature_std_ : ndarray (n_species, n_features)
    cell_feature_mean_, cell_feature_std_ : ndarray (n_features,)
        Statistics of the cell averages (with ``cell_mean`` only).
    weights_ : list (per species) of list of ndarray
        ``[W0, b0, W1, b1, ...]`` with ``W`` of shape (n_in, n_out); with
        ``linear``, the linear weights ``v`` (n_in,) come last.
    novelty_references_ : list (per species) of ndarray (n_s, n_features)
        Standardised training environments kept by :meth:`fit_novelty`
        (training does it), for :meth:`novelty`.
    novelty_scale_ : float
        The unit of :meth:`novelty`: the 99th percentile of the training
        structures' own, each measured against the others.

    Examples
    --------
    >>> from ase.build import bulk
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> m = NeuralPotential(hidden=(4,), descriptor_params={"radial_order": 3, "angular_order": 2})
    >>> m = m.initialize([a], [-10.0])
    >>> e, f, s = m.compute(a, stress=True)
    >>> f.shape, s.shape
    ((2, 3), (6,))
    """

    #: options of earlier versions and the values that left them out: :mod:`ml4ms.serialize` drops them from old
    #: files at these values and refuses the others (docs/studies/tio2-potential.md says why they were removed)
    _removed_parameters = {"cell_pool": 0, "activation": "tanh",
                           **{f"descriptor_params.{k}": v for k, v in REMOVED_SETTINGS.items()}}

    def __init__(self, *, descriptor="chebyshev", descriptor_params=None, hidden=(20, 20), dtype="float64", seed=0,
                 cell_mean=False, linear=False):
        self.descriptor = descriptor
        self.descriptor_params = descriptor_params
        self.hidden = hidden
        self.dtype = dtype
        self.seed = seed
        self.cell_mean = cell_mean
        self.linear = linear

    # ------------------------------------------------------------ settings --
    def descriptor_settings(self):
        """The full descriptor settings (defaults filled in)."""
        if self.descriptor == "chebyshev":
            base = dict(CHEBYSHEV_DEFAULTS)
        elif self.descriptor == "acsf":
            base = dict(ACSF_DEFAULTS)
        else:
            raise InputError(f"unknown descriptor '{self.descriptor}'", hint="use 'chebyshev' or 'acsf'")
        extra = dict(self.descriptor_params or {})
        unknown = set(extra) - set(base) - ({"g1", "g3", "g5"} if self.descriptor == "acsf" else set())
        if unknown:
            raise InputError(f"unknown {self.descriptor} settings: {', '.join(sorted(unknown))}",
                             hint=f"allowed: {', '.join(sorted(base))}")
        base.update(extra)
        if self.descriptor == "chebyshev":
            check_settings(base)
        return base

    def cutoff(self):
        """Neighbour-list cutoff (Å) the descriptor needs."""
        return cutoff_of(self.descriptor, self.descriptor_settings())

    def check_settings(self):
        """Raise :class:`~ml4ms.errors.InputError` for a bad setting; needs no data.

        Returns
        -------
        list of int
            The hidden-layer widths.

        Examples
        --------
        >>> NeuralPotential(hidden=(8, 8)).check_settings()
        [8, 8]
        """
        hidden = self._check_hidden()
        torch_dtype(self.dtype)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("cell_mean", "linear"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self.descriptor_settings()
        return hidden

    def _check_hidden(self):
        hidden = list(self.hidden) if not isinstance(self.hidden, int) else [self.hidden]
        if not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h > 0 for h in hidden):
            raise InputError(f"hidden must be a list of positive integers, got {self.hidden!r}")
        return [int(h) for h in hidden]

    # -------------------------------------------------------------- tensors --
    def tensors(self, frames, cutoff=None):
        """The :class:`~ml4ms.batch.AtomsBatch` of ``frames`` for this potential (its species, cutoff, dtype)."""
        self._check_species(frames)
        return collate(frames, self.cutoff() if cutoff is None else cutoff, self.species_, self.dtype)

    def _check_species(self, frames):
        known = set(self.species_)
        for k, a in enumerate(frames):
            bad = {int(z) for z in a.numbers} - known
            if bad:
                from ase.data import chemical_symbols

                names = ", ".join(chemical_symbols[z] for z in self.species_)
                raise InputError(f"element {chemical_symbols[sorted(bad)[0]]} is not among the potential's elements "
                                 f"({names})", index=k, hint="train a potential that includes it")

    def features(self, t, strain=None, vectors=None):
        """Raw descriptor (n_atoms, n_features) of the batch ``t`` (differentiable; needs no weights).

        See :func:`~ml4ms.potentials.descriptor_network.batch_features`.
        """
        return batch_features(self.descriptor_module(), t, strain, vectors)

    def pair_gradients(self, t, vectors):
        """Features (n_atoms, F) and ``dX_{i_p}/dD_p`` (n_pairs, F, 3) at the pair vectors ``vectors``.

        See :func:`~ml4ms.potentials.descriptor_network.batch_pair_gradients`.
        """
        return batch_pair_gradients(self.descriptor_module(), t, vectors)

    def descriptor_module(self):
        """The descriptor as a torch module (needs the species, not the weights)."""
        return DESCRIPTOR_MODULES[self.descriptor](len(self.species_), self.descriptor_settings())

    # ------------------------------------------------------- initialisation --
    def initialize(self, frames, energies, max_stat_frames=400):
        """Set species, reference energies, feature statistics and random weights.

        Parameters
        ----------
        frames : list of ase.Atoms
        energies : array-like (n_frames,)
            Total energies (eV), for the least-squares reference energies.
        max_stat_frames : int
            Structures (evenly spaced) used for the feature statistics.

        Returns
        -------
        self
        """
        torch = _torch()
        hidden = self.check_settings()
        if len(frames) == 0:
            raise InputError("no structures to train on")
        energies = np.asarray(energies, dtype=float)
        self.species_ = _species_of(frames)
        for stale in ("novelty_references_", "novelty_scale_"):  # they belong to the previous training data
            self.__dict__.pop(stale, None)
        counts = self.composition(frames)
        ref, *_ = np.linalg.lstsq(counts, energies, rcond=None)
        self.reference_energies_ = np.asarray(ref, dtype=float)
        n = counts.sum(1)
        resid = (energies - counts @ ref) / n
        self.energy_scale_ = float(max(np.std(resid), 1e-3))
        step = max(1, len(frames) // max_stat_frames)
        sample = list(frames[::step])
        with torch.no_grad():
            t = self.tensors(sample)
            X = self.features(t).double().numpy()
        sidx = t.species_index.numpy()
        nf = X.shape[1]
        mean = np.zeros((len(self.species_), nf))
        std = np.ones((len(self.species_), nf))
        for s in range(len(self.species_)):
            xs = X[sidx == s]
            if len(xs):
                mean[s] = xs.mean(0)
                sd = xs.std(0)
                std[s] = np.where(sd > 1e-8, sd, 1.0)
        self.feature_mean_, self.feature_std_ = mean, std
        self.n_features_ = int(nf)
        if self.cell_mean:
            H = torch.from_numpy((X - mean[sidx]) / std[sidx])
            cells = cell_average(H, t.structure).numpy()
            sd = cells.std(0)
            self.cell_feature_mean_ = cells.mean(0)
            self.cell_feature_std_ = np.where(sd > 1e-8, sd, 1.0)
        rng = np.random.default_rng(self.seed)
        self.weights_ = []
        width_in = self.n_inputs()
        for _ in self.species_:
            layers, n_in = [], width_in
            for width in hidden + [1]:
                layers.append(rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, width)))
                layers.append(np.zeros(width))
                n_in = width
            if self.linear:
                layers.append(np.zeros(width_in))  # the skip term starts at zero
            self.weights_.append(layers)
        return self

    def require_fitted(self):
        """Raise :class:`sklearn.exceptions.NotFittedError` unless the potential has weights.

        (A potential is fitted by :meth:`initialize` and trained by
        :func:`~ml4ms.potentials.train.train_potential`; it has no ``fit`` of its own, which would need energies
        and forces.)
        """
        if not hasattr(self, "weights_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"this {type(self).__name__} has no weights yet: initialize it or train it with "
                                 "ml4ms.potentials.train.train_potential")

    def n_inputs(self):
        """Width of the networks' inputs: the descriptor and its cell average (fitted model)."""
        return self.n_features_ * (2 if self.cell_mean else 1)

    def composition(self, frames):
        """Counts (n_frames, n_species) of each species in each structure."""
        index = {z: k for k, z in enumerate(self.species_)}
        out = np.zeros((len(frames), len(self.species_)))
        for r, a in enumerate(frames):
            for z in a.numbers:
                out[r, index[int(z)]] += 1
        return out

    # ---------------------------------------------------------------- torch --
    def network(self):
        """The :class:`~ml4ms.potentials.descriptor_network.DescriptorNetwork` holding this potential's state.

        Built from the fitted arrays, then reused while they stay the same arrays with the same contents; its
        parameters do not require grad (training passes its own through
        :func:`~ml4ms.potentials.base.energies_forces_stress`).
        """
        self.require_fitted()
        arrays = [w for layers in self.weights_ for w in layers] + [
            getattr(self, name) for name in ("feature_mean_", "feature_std_", "reference_energies_",
                                             "cell_feature_mean_", "cell_feature_std_") if hasattr(self, name)]
        key = (self.get_params(deep=False).__repr__(), float(self.energy_scale_),
               tuple((id(a), float(np.sum(a))) for a in arrays))
        cached = self.__dict__.get("_network")
        if cached is not None and cached[0] == key and all(x is y for x, y in zip(cached[2], arrays)):
            return cached[1]
        if self.cell_mean and not hasattr(self, "cell_feature_mean_"):
            raise InputError("cell_mean was switched on after fitting: the model has no cell-average statistics",
                             hint="retrain (or initialize) with cell_mean = true")
        for layers in self.weights_:
            self.split_layers(layers)  # the weights fit the settings (one-line errors if not)
        torch = _torch()
        net = DescriptorNetwork(**self.network_config())
        state = {"head.feature_mean": self.feature_mean_, "head.feature_std": self.feature_std_,
                 "head.reference_energies": self.reference_energies_, "head.energy_scale": self.energy_scale_}
        if self.cell_mean:
            state.update({"head.cell_feature_mean": self.cell_feature_mean_,
                          "head.cell_feature_std": self.cell_feature_std_})
        for names, layers in zip(net.element_parameter_names(), self.weights_):
            state.update(zip(names, layers))
        own = net.state_dict()
        net.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=own[k].dtype).reshape(own[k].shape)
                             for k, v in state.items()})
        net.requires_grad_(False)
        self.__dict__["_network"] = (key, net, arrays)
        return net

    def network_config(self):
        """The :class:`~ml4ms.potentials.descriptor_network.DescriptorNetwork` configuration of this potential."""
        return {"species": [int(z) for z in self.species_], "descriptor": self.descriptor,
                "descriptor_settings": self.descriptor_settings(), "n_features": int(self.n_features_),
                "hidden": self._check_hidden(), "dtype": self.dtype, "cell_mean": bool(self.cell_mean),
                "linear": bool(self.linear)}

    def from_network(self, net):
        """Take the fitted state (species, statistics, weights) of ``net``, a
        :class:`~ml4ms.potentials.descriptor_network.DescriptorNetwork` of this potential's settings (a model file
        holds one); returns self.

        Raises
        ------
        InputError
            ``net`` was built with other settings than this potential's.
        """
        state = {k: v.detach().double().numpy().copy() for k, v in net.state_dict().items()}
        self.species_ = [int(z) for z in net.species]
        self.n_features_ = int(net.n_features)
        own, theirs = self.network_config(), net.config()
        differ = sorted(k for k in own if own[k] != theirs.get(k))
        if differ:
            raise InputError(f"the network's settings differ from the potential's ({', '.join(differ)})",
                             hint="rebuild the potential from the network's configuration")
        self.reference_energies_ = state["head.reference_energies"]
        self.energy_scale_ = float(state["head.energy_scale"])
        self.feature_mean_, self.feature_std_ = state["head.feature_mean"], state["head.feature_std"]
        if self.cell_mean:
            self.cell_feature_mean_ = state["head.cell_feature_mean"]
            self.cell_feature_std_ = state["head.cell_feature_std"]
        self.weights_ = [[state[name] for name in names] for names in net.element_parameter_names()]
        self.__dict__.pop("_network", None)
        return self

    def torch_parameters(self, requires_grad=True):
        """The weights as lists of tensors (per species, in the order of ``weights_``), in ``dtype``.

        They are the parameters of a copy of :meth:`network` (the ``network`` attribute of the returned
        :class:`WeightLists`), so that training runs that module directly.
        """
        own = self.network()
        net = DescriptorNetwork(**own.config())
        net.load_state_dict(own.state_dict())
        net.requires_grad_(requires_grad)
        out = WeightLists([net.get_parameter(name) for name in names] for names in net.element_parameter_names())
        out.network = net
        return out

    def set_parameters(self, params):
        """Copy torch parameters (as from :meth:`torch_parameters`) back into ``weights_``."""
        self.weights_ = [[p.detach().double().numpy().copy() for p in layers] for layers in params]
        return self

    def parameter_dict(self, params, prefix=""):
        """``params`` (lists per species, as :meth:`torch_parameters`) by their names in :meth:`network`."""
        names = self.network().element_parameter_names()
        return {name[len("head."):] if prefix == "head." else name: p
                for ns, ps in zip(names, params) for name, p in zip(ns, ps)}

    def network_energies(self, X, species_index, params, structure=None):
        """Atomic energies above the reference energies (n_atoms,) from raw features ``X`` (differentiable).

        ``structure`` (n_atoms,) int64 tensor: the cell of each atom (needed with ``cell_mean``).
        """
        torch = _torch()
        if self.cell_mean and structure is None:
            raise ValueError("cell_mean needs the structure index of every atom")
        if getattr(params, "network", None) is not None:  # the parameters of a module: run it
            return params.network.head(X, species_index, structure, reference=False)
        return torch.func.functional_call(self.network().head, self.parameter_dict(params, "head."),
                                          (X, species_index, structure), {"reference": False})

    def network_inputs(self, X, species_index, params=None, structure=None):
        """The networks' inputs (n_atoms, n_in): the standardised descriptor, with ``cell_mean`` its cell average."""
        return self.network().head.network_inputs(X, species_index, structure)

    def split_layers(self, layers):
        """``([W0, b0, ...], v)`` of one element's weights; ``v`` is ``None`` without ``linear``."""
        if len(layers) % 2 != int(bool(self.linear)):
            raise InputError(f"linear was switched {'on' if self.linear else 'off'} after fitting: the weights do "
                             "not match", hint=f"retrain (or initialize) with linear = {str(bool(self.linear)).lower()}")
        if np.shape(layers[0])[0] != self.n_inputs():
            raise InputError("the model's settings (cell_mean, linear) differ from those it was fitted "
                             "with: the weights do not match", hint="load the model again, or retrain it")
        return (layers[:-1], layers[-1]) if self.linear else (layers, None)

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
        torch = _torch()
        self.require_fitted()
        if stress and not all(atoms.pbc):
            raise InputError("stress needs a periodic cell in all three directions")
        t = self.tensors([atoms]) if tensors is None else tensors
        t = t.replace(positions=torch.as_tensor(np.asarray(atoms.positions), dtype=torch_dtype(self.dtype)))
        e, F, V = self.energies_forces(t, forces=forces, stress=stress)
        f = F.detach().double().numpy() if forces else None
        s = None
        if stress:
            v = V[0].detach().double().numpy()
            v = 0.5 * (v + v.T) / atoms.get_volume()
            s = np.array([v[0, 0], v[1, 1], v[2, 2], v[1, 2], v[0, 2], v[0, 1]])
        return float(e.detach()[0]), f, s

    def predict(self, frames, forces=True, batch_atoms=2000):
        """Energies (n_frames,) and, if ``forces``, a list of force arrays for many structures."""
        from ..descriptors.base import batches_of

        energies, force_list = [], []
        for group in batches_of(list(frames), batch_atoms):
            t = self.tensors(group)
            e, F, _ = self.energies_forces(t, forces=forces)
            energies.extend(e.detach().double().numpy().tolist())
            if forces:
                force_list.extend(t.split(F.detach().double().numpy()))
        energies = np.asarray(energies)
        return (energies, force_list) if forces else energies

    # ------------------------------------------------------------- novelty --
    def environments(self, t):
        """Standardised descriptor (n_atoms, n_features) of the batch ``t`` (numpy, no gradients)."""
        torch = _torch()
        with torch.no_grad():
            return self.network().embeddings(t).double().numpy()

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
            S.append(t.species_index.numpy())
            ST.append(t.structure.numpy() + offset)
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
            t = t.replace(positions=_torch().as_tensor(np.asarray(positions), dtype=torch_dtype(self.dtype)))
        H = self.environments(t)
        return nearest_distances(H, t.species_index.numpy(), self.novelty_references_) / self.novelty_scale_

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
            structure = t.structure.numpy()
            if per_atom:
                out.extend(d[structure == k] for k in range(len(group)))
            else:
                out.extend(structure_means(d, structure, len(group)).tolist())
        return out if per_atom else np.asarray(out)
