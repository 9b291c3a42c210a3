r"""The descriptor network (Behler–Parrinello): per-element feed-forward networks on a local descriptor.

.. math::

    E = \sum_a \left[ E^{\mathrm{ref}}_{t_a} + s\,
        \mathrm{NN}_{t_a}\!\left(\frac{X_a - \mu_{t_a}}{\sigma_{t_a}}\right) \right]

:class:`DescriptorNetwork` is the :class:`~ml4ms.potentials.base.AtomisticModel` kind; its maths is here and
nowhere else. The descriptor (Chebyshev or ACSF) is computed by the pure torch functions of
:mod:`ml4ms.descriptors`; :class:`ElementNetworks` holds what follows it (standardisation, the optional cell
average, one tanh network per element with an optional linear term, the reference energies), so that the
precomputed-Jacobian training path, which has the descriptor already, runs the same module.
:class:`~ml4ms.potentials.model.NeuralPotential` (the estimator and the model file) builds one of these from
its arrays.
"""

from typing import Optional

import torch

from ..batch import pair_vectors, torch_dtype
from ..descriptors.acsf import acsf_features
from ..descriptors.chebyshev import chebyshev_of_vectors, chebyshev_pair_gradients, type_weights
from .base import AtomisticModel


def cutoff_of(descriptor, settings):
    """The neighbour cutoff (Å) a descriptor's settings need."""
    if descriptor == "chebyshev":
        return max(float(settings["radial_cutoff"]), float(settings["angular_cutoff"]))
    return float(settings["r_cut"])


class ChebyshevFeatures(torch.nn.Module):
    """The Chebyshev descriptor as a module: ``forward(D, i, j, species_index, structure)`` gives the features
    (n_atoms, F) from the pair vectors (:func:`~ml4ms.descriptors.chebyshev.chebyshev_of_vectors`); scriptable."""

    def __init__(self, n_species, settings):
        super().__init__()
        self.radial_cutoff = float(settings["radial_cutoff"])
        self.radial_order = int(settings["radial_order"])
        self.angular_cutoff = float(settings["angular_cutoff"])
        self.angular_order = int(settings["angular_order"])
        self.weighted = n_species > 1
        weights = type_weights(n_species) if self.weighted else []
        self.register_buffer("type_weights", torch.tensor(weights, dtype=torch.float64), persistent=False)

    def forward(self, D: torch.Tensor, i: torch.Tensor, j: torch.Tensor, species_index: torch.Tensor,
                structure: torch.Tensor) -> torch.Tensor:
        weights: Optional[torch.Tensor] = None
        if self.weighted:
            weights = self.type_weights
        return chebyshev_of_vectors(D, i, j, species_index, species_index.shape[0], self.radial_cutoff,
                                    self.radial_order, self.angular_cutoff, self.angular_order, weights)

    @torch.jit.unused
    def pair_gradients(self, D, i, j, species_index, structure):
        """Features (n_atoms, F) and ``dX_{i_p}/dD_p`` (n_pairs, F, 3), analytic
        (:func:`~ml4ms.descriptors.chebyshev.chebyshev_pair_gradients`)."""
        with torch.no_grad():
            X = self(D, i, j, species_index, structure)
        weights = self.type_weights.tolist() if self.weighted else None
        G = chebyshev_pair_gradients(D, species_index, i, j, X.shape[0], radial_cutoff=self.radial_cutoff,
                                     radial_order=self.radial_order, angular_cutoff=self.angular_cutoff,
                                     angular_order=self.angular_order, weights=weights)
        return X, G


class ACSFFeatures(torch.nn.Module):
    """Behler–Parrinello symmetry functions as a module (:func:`~ml4ms.descriptors.acsf.acsf_features` on the
    pair vectors). Not scriptable: its three-body blocks are planned in numpy."""

    def __init__(self, n_species, settings):
        super().__init__()
        self.n_species = int(n_species)
        self.settings = dict(settings)

    def forward(self, D, i, j, species_index, structure):
        s = self.settings
        # with ``vectors``, positions give the atom count and dtype only, and the cell and shifts are not read
        positions = torch.zeros(species_index.shape[0], 3, dtype=D.dtype, device=D.device)
        cell = torch.zeros(3, 3, dtype=D.dtype, device=D.device)
        shifts = torch.zeros(i.shape[0], 3, dtype=torch.long, device=D.device)
        return acsf_features(positions, species_index, cell, i, j, shifts, n_species=self.n_species,
                             r_cut=float(s["r_cut"]), g2=s.get("g2", ()), g3=s.get("g3", ()), g4=s.get("g4", ()),
                             g5=s.get("g5", ()), g1=s.get("g1", True), structure=structure.cpu().numpy(), vectors=D)

    def pair_gradients(self, D, i, j, species_index, structure):
        """Features and ``dX_{i_p}/dD_p`` (n_pairs, F, 3): one reverse-mode pass per feature."""
        D = D.detach().requires_grad_(True)
        with torch.enable_grad():
            X = self(D, i, j, species_index, structure)
            G = torch.empty(D.shape[0], X.shape[1], 3, dtype=D.dtype, device=D.device)
            for f in range(X.shape[1]):
                (G[:, f],) = torch.autograd.grad(X[:, f].sum(), D, retain_graph=f < X.shape[1] - 1)
        return X.detach(), G


#: descriptor name -> its module
DESCRIPTOR_MODULES = {"chebyshev": ChebyshevFeatures, "acsf": ACSFFeatures}


def batch_features(module, batch, strain=None, vectors=None):
    """The descriptor ``module``'s features (n_atoms, F) of ``batch``, differentiable in its positions and in
    ``strain`` (n_atoms, 3, 3); ``vectors`` (n_pairs, 3) replace the pair vectors computed from the positions
    (the precomputed Jacobians of :mod:`ml4ms.potentials.precompute` differentiate through them)."""
    D = pair_vectors(batch.positions, batch.cell, batch.i, batch.j, batch.shifts, strain) if vectors is None \
        else vectors
    return module(D, batch.i, batch.j, batch.species_index, batch.structure)


def batch_pair_gradients(module, batch, vectors):
    """Features (n_atoms, F) and ``dX_{i_p}/dD_p`` (n_pairs, F, 3) of ``batch`` at the pair vectors ``vectors``."""
    return module.pair_gradients(vectors.detach(), batch.i, batch.j, batch.species_index, batch.structure)


def cell_average(H: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
    """Rows of ``H`` (n_atoms, F) averaged over the atoms of each cell: (n_cells, F), differentiable.

    ``structure`` (n_atoms,) int64 tensor: the cell of every atom.
    """
    n_cells = int(structure.max()) + 1 if structure.numel() > 0 else 0
    counts = torch.zeros(n_cells, dtype=H.dtype, device=H.device).index_add_(0, structure, torch.ones_like(H[:, 0]))
    return torch.zeros(n_cells, H.shape[1], dtype=H.dtype, device=H.device).index_add(0, structure, H) \
        / counts[:, None]


class Dense(torch.nn.Module):
    """``h @ weight + bias``: one layer of an element's network (weight (n_in, n_out))."""

    def __init__(self, n_in, n_out, dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n_in, n_out, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.zeros(n_out, dtype=dtype))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight + self.bias


class ElementNetwork(torch.nn.Module):
    """One element's network: tanh hidden layers, a linear output and, with ``linear``, a term linear in the
    inputs (a skip connection). ``forward(h)`` gives (n,) outputs."""

    def __init__(self, n_in, hidden, dtype, linear):
        super().__init__()
        widths = [n_in] + list(hidden) + [1]
        self.layers = torch.nn.ModuleList([Dense(a, b, dtype) for a, b in zip(widths[:-1], widths[1:])])
        self.n_layers = len(self.layers)
        self.linear = bool(linear)
        skip = torch.zeros(n_in, dtype=dtype)
        if self.linear:
            self.skip = torch.nn.Parameter(skip)
        else:
            self.register_buffer("skip", skip, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < self.n_layers - 1:
                x = torch.tanh(x)
        e = x.squeeze(1)
        if self.linear:
            e = e + h @ self.skip
        return e


class ElementNetworks(torch.nn.Module):
    """What follows the descriptor: per-element standardisation, the cell average (``cell_mean``), one
    :class:`ElementNetwork` per element (with a linear term: ``linear``), the energy scale and the reference
    energies.

    ``forward(X, species_index, structure)`` gives the atomic energies (n_atoms,) in float64: the networks run in
    ``dtype``; the reference energies (~1e3 eV per atom) are added in float64, so that float32 totals are not
    rounded to float32 steps (~8 meV for a 100-atom cell). With ``reference=False`` the energies above the
    references, in ``dtype``.
    """

    def __init__(self, n_species, n_features, hidden, dtype="float64", cell_mean=False, linear=False):
        super().__init__()
        dt = torch_dtype(dtype)
        self.cell_mean, self.linear = bool(cell_mean), bool(linear)
        self.register_buffer("feature_mean", torch.zeros(n_species, n_features, dtype=dt))
        self.register_buffer("feature_std", torch.ones(n_species, n_features, dtype=dt))
        # the cell-average statistics are state only with ``cell_mean``
        self.register_buffer("cell_feature_mean", torch.zeros(n_features, dtype=dt), persistent=self.cell_mean)
        self.register_buffer("cell_feature_std", torch.ones(n_features, dtype=dt), persistent=self.cell_mean)
        self.register_buffer("reference_energies", torch.zeros(n_species, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        n_in = n_features * (2 if self.cell_mean else 1)
        self.networks = torch.nn.ModuleList([ElementNetwork(n_in, hidden, dt, linear) for _ in range(n_species)])

    def parameter_names(self):
        """Per element, the names of its parameters: W0, b0, W1, b1, ..., W_out, b_out, then the linear term's
        weights with ``linear``."""
        names = []
        for s, net in enumerate(self.networks):
            own = [f"networks.{s}.layers.{k}.{kind}" for k in range(net.n_layers) for kind in ("weight", "bias")]
            names.append(own + ([f"networks.{s}.skip"] if self.linear else []))
        return names

    def standardised(self, X: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        """Raw features ``X`` (n_atoms, F) standardised per element (differentiable)."""
        return (X - self.feature_mean[species_index]) / self.feature_std[species_index]

    def network_inputs(self, X: torch.Tensor, species_index: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        """The networks' inputs (n_atoms, n_in): the standardised descriptor, with ``cell_mean`` its cell average."""
        H = self.standardised(X, species_index)
        if self.cell_mean:
            cells = (cell_average(H, structure) - self.cell_feature_mean) / self.cell_feature_std
            H = torch.cat([H, cells[structure]], 1)
        return H

    def network_outputs(self, H: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        """Atomic energies above the reference energies (n_atoms,) from the networks' inputs ``H``."""
        out = torch.zeros(H.shape[0], dtype=H.dtype, device=H.device)
        scale = float(self.energy_scale)
        for s, net in enumerate(self.networks):
            idx = torch.nonzero(species_index == s).squeeze(1)
            if idx.numel() > 0:
                out = out.index_put((idx,), net(H[idx]) * scale)
        return out

    def forward(self, X: torch.Tensor, species_index: torch.Tensor, structure: torch.Tensor,
                reference: bool = True) -> torch.Tensor:
        residual = self.network_outputs(self.network_inputs(X, species_index, structure), species_index)
        return residual.double() + self.reference_energies[species_index] if reference else residual


class DescriptorNetwork(AtomisticModel):
    """Per-element feed-forward networks on a local descriptor: an :class:`~ml4ms.potentials.base.AtomisticModel`.

    Parameters
    ----------
    species : list of int
        Atomic numbers, sorted.
    descriptor : {"chebyshev", "acsf"}
    descriptor_settings : dict
        The descriptor's full settings (radial/angular cutoffs and orders for Chebyshev; ``r_cut`` and the
        symmetry-function parameters for ACSF).
    n_features : int
        Width of the descriptor.
    hidden : list of int
        Hidden-layer widths of every element's network.
    dtype : {"float64", "float32"}
    cell_mean, linear : bool
        See :class:`ElementNetworks`.

    The state (standardisation, reference energies, weights) is in :attr:`head`'s buffers and parameters;
    ``DescriptorNetwork(**m.config())`` and ``load_state_dict(m.state_dict())`` rebuild ``m``.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.batch import collate
    >>> net = DescriptorNetwork(species=[8, 12], descriptor="chebyshev", n_features=10, hidden=[3],
    ...                         descriptor_settings={"radial_cutoff": 4.0, "radial_order": 2,
    ...                                              "angular_cutoff": 3.0, "angular_order": 1})
    >>> net.atomic_energies(collate([bulk("MgO", "rocksalt", a=4.2)], net.cutoff, net.species)).shape
    torch.Size([2])
    """

    def __init__(self, *, species, descriptor, descriptor_settings, n_features, hidden, dtype="float64",
                 cell_mean=False, linear=False):
        super().__init__()
        self.species = [int(z) for z in species]
        self.descriptor = str(descriptor)
        self.descriptor_settings = dict(descriptor_settings)
        self.cutoff = cutoff_of(self.descriptor, self.descriptor_settings)
        self.n_features, self.hidden, self.dtype = int(n_features), [int(h) for h in hidden], str(dtype)
        self.descriptor_module = DESCRIPTOR_MODULES[self.descriptor](len(self.species), self.descriptor_settings)
        self.head = ElementNetworks(len(self.species), self.n_features, self.hidden, self.dtype, cell_mean, linear)

    def config(self):
        return {"species": list(self.species), "descriptor": self.descriptor,
                "descriptor_settings": dict(self.descriptor_settings), "n_features": self.n_features,
                "hidden": list(self.hidden), "dtype": self.dtype, "cell_mean": self.head.cell_mean,
                "linear": self.head.linear}

    @torch.jit.unused
    def features(self, batch, strain=None, vectors=None):
        """Raw descriptor (n_atoms, n_features) of ``batch`` (:func:`batch_features`)."""
        return batch_features(self.descriptor_module, batch, strain, vectors)

    @torch.jit.unused
    def pair_gradients(self, batch, vectors):
        """Features and their pair-vector derivatives (:func:`batch_pair_gradients`)."""
        return batch_pair_gradients(self.descriptor_module, batch, vectors)

    def atomic_energies_of_vectors(self, D: torch.Tensor, species_index: torch.Tensor, i: torch.Tensor,
                                   j: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        return self.head(self.descriptor_module(D, i, j, species_index, structure), species_index, structure)

    @torch.jit.unused
    def features_key(self):
        """The descriptor and its settings: members of a committee that agree compute the descriptor once."""
        import json

        return (self.descriptor, json.dumps(self.descriptor_settings, sort_keys=True), len(self.species),
                self.dtype)

    def fixed_features(self, D: torch.Tensor, species_index: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                       structure: torch.Tensor) -> torch.Tensor:
        return self.descriptor_module(D, i, j, species_index, structure)

    def energies_of_features(self, R: torch.Tensor, species_index: torch.Tensor,
                             structure: torch.Tensor) -> torch.Tensor:
        return self.head(R, species_index, structure)

    @torch.jit.unused
    def embeddings(self, batch):
        """The standardised descriptor of every atom (novelty measures distances between these)."""
        return self.head.standardised(self.features(batch), batch.species_index)

    def parameter_groups(self):
        """Per element, the names of its parameters in the order [W0, b0, ..., W_out, b_out, (v)]."""
        return [[f"head.{name}" for name in names] for names in self.head.parameter_names()]
