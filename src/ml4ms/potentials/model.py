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

The estimator holds plain numbers and numpy arrays; its torch module, a
:class:`~ml4ms.potentials.descriptor_network.DescriptorNetwork`, is built from them on demand
(:meth:`NeuralPotential.network`), and a potential file holds that module's state
(:mod:`ml4ms.potentials.io`). What every kind of potential shares (energies, forces, novelty, the parameters as
tensors) is in :class:`~ml4ms.potentials.estimator.PotentialEstimator`.
"""

import numpy as np

from ..batch import _torch, torch_dtype
from ..descriptors.acsf import DEFAULT_G2, DEFAULT_G4
from ..descriptors.chebyshev import REMOVED_SETTINGS, check_settings
from ..errors import InputError
from .descriptor_network import (DESCRIPTOR_MODULES, DescriptorNetwork, batch_features, batch_pair_gradients,
                                 cell_average, cutoff_of)
from .estimator import PotentialEstimator

#: descriptor settings of the ænet TiO2 workshop fit set003
CHEBYSHEV_DEFAULTS = {"radial_cutoff": 5.0, "radial_order": 12, "angular_cutoff": 3.0, "angular_order": 5}
ACSF_DEFAULTS = {"r_cut": 6.0, "g2": [list(p) for p in DEFAULT_G2], "g4": [list(p) for p in DEFAULT_G4]}


class NeuralPotential(PotentialEstimator):
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
    device : {"cpu", "cuda", "cuda:N"}, default "cpu"
        Where the module, its batches and its training run (a potential file does not keep it).
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
    _fitted_attribute = "weights_"
    recipe_kind = "descriptor_network"
    has_precompute = True
    _removed_parameters = {"cell_pool": 0, "activation": "tanh",
                           **{f"descriptor_params.{k}": v for k, v in REMOVED_SETTINGS.items()}}

    def __init__(self, *, descriptor="chebyshev", descriptor_params=None, hidden=(20, 20), dtype="float64", seed=0,
                 device="cpu", cell_mean=False, linear=False):
        self.descriptor = descriptor
        self.descriptor_params = descriptor_params
        self.hidden = hidden
        self.dtype = dtype
        self.seed = seed
        self.device = device
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
        self.torch_device()
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
        return DESCRIPTOR_MODULES[self.descriptor](len(self.species_), self.descriptor_settings()).to(
            self.torch_device())

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
        self.fit_reference_energies(frames, energies)
        step = max(1, len(frames) // max_stat_frames)
        sample = list(frames[::step])
        with torch.no_grad():
            t = self.tensors(sample)
            X = self.features(t).cpu().double().numpy()
        sidx = t.species_index.cpu().numpy()
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
            cells = cell_average(H, t.structure.cpu()).numpy()
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

    def n_inputs(self):
        """Width of the networks' inputs: the descriptor and its cell average (fitted model)."""
        return self.n_features_ * (2 if self.cell_mean else 1)

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
        for names, layers in zip(net.parameter_groups(), self.weights_):
            state.update(zip(names, layers))
        own = net.state_dict()
        net.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=own[k].dtype).reshape(own[k].shape)
                             for k, v in state.items()})
        net.requires_grad_(False)
        net.to(self.torch_device())
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
        state = {k: v.detach().cpu().double().numpy().copy() for k, v in net.state_dict().items()}
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
        self.weights_ = [[state[name] for name in names] for names in net.parameter_groups()]
        self.__dict__.pop("_network", None)
        return self

    def set_parameters(self, params):
        """Copy torch parameters (as from :meth:`torch_parameters`) back into ``weights_``."""
        self.weights_ = [[p.detach().cpu().double().numpy().copy() for p in layers] for layers in params]
        return self

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
