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

import torch

from ..batch import torch_dtype
from ..descriptors.acsf import acsf_features
from ..descriptors.chebyshev import chebyshev_features, chebyshev_pair_gradients, type_weights
from .base import AtomisticModel


def cutoff_of(descriptor, settings):
    """The neighbour cutoff (Å) a descriptor's settings need."""
    if descriptor == "chebyshev":
        return max(float(settings["radial_cutoff"]), float(settings["angular_cutoff"]))
    return float(settings["r_cut"])


def descriptor_features(descriptor, settings, n_species, batch, strain=None, vectors=None):
    """Raw descriptor (n_atoms, n_features) of ``batch`` (differentiable).

    ``vectors`` (n_pairs, 3) replace the pair vectors computed from the positions (the precomputed Jacobians of
    :mod:`ml4ms.potentials.precompute` differentiate through them).
    """
    args = (batch.positions, batch.species_index, batch.cell, batch.i, batch.j, batch.shifts)
    if descriptor == "chebyshev":
        weights = type_weights(n_species) if n_species > 1 else None
        return chebyshev_features(*args, radial_cutoff=float(settings["radial_cutoff"]),
                                  radial_order=int(settings["radial_order"]),
                                  angular_cutoff=float(settings["angular_cutoff"]),
                                  angular_order=int(settings["angular_order"]), weights=weights, strain=strain,
                                  vectors=vectors)
    return acsf_features(*args, n_species=n_species, r_cut=float(settings["r_cut"]), g2=settings.get("g2", ()),
                         g3=settings.get("g3", ()), g4=settings.get("g4", ()), g5=settings.get("g5", ()),
                         g1=settings.get("g1", True), strain=strain, structure=batch.structure.numpy(),
                         vectors=vectors)


def descriptor_pair_gradients(descriptor, settings, n_species, batch, vectors):
    """Features (n_atoms, F) and ``dX_{i_p}/dD_p`` (n_pairs, F, 3) at the pair vectors ``vectors``.

    Chebyshev: analytic (:func:`~ml4ms.descriptors.chebyshev.chebyshev_pair_gradients`); ACSF: one reverse-mode
    pass per feature.
    """
    D = vectors.detach()
    if descriptor == "chebyshev":
        with torch.no_grad():
            X = descriptor_features(descriptor, settings, n_species, batch, vectors=D)
        weights = type_weights(n_species) if n_species > 1 else None
        G = chebyshev_pair_gradients(D, batch.species_index, batch.i, batch.j, X.shape[0],
                                     radial_cutoff=float(settings["radial_cutoff"]),
                                     radial_order=int(settings["radial_order"]),
                                     angular_cutoff=float(settings["angular_cutoff"]),
                                     angular_order=int(settings["angular_order"]), weights=weights)
        return X, G
    D = D.requires_grad_(True)
    with torch.enable_grad():
        X = descriptor_features(descriptor, settings, n_species, batch, vectors=D)
        G = torch.empty(D.shape[0], X.shape[1], 3, dtype=D.dtype)
        for f in range(X.shape[1]):
            (G[:, f],) = torch.autograd.grad(X[:, f].sum(), D, retain_graph=f < X.shape[1] - 1)
    return X.detach(), G


def cell_average(H, structure):
    """Rows of ``H`` (n_atoms, F) averaged over the atoms of each cell: (n_cells, F), differentiable.

    ``structure`` (n_atoms,) int64 tensor: the cell of every atom.
    """
    n_cells = int(structure.max()) + 1 if structure.numel() else 0
    counts = torch.zeros(n_cells, dtype=H.dtype).index_add_(0, structure, torch.ones_like(H[:, 0]))
    return torch.zeros(n_cells, H.shape[1], dtype=H.dtype).index_add(0, structure, H) / counts[:, None]


class ElementNetworks(torch.nn.Module):
    """What follows the descriptor: per-element standardisation, the cell average (``cell_mean``), one tanh
    network per element (with a linear term: ``linear``), the energy scale and the reference energies.

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
        if self.cell_mean:
            self.register_buffer("cell_feature_mean", torch.zeros(n_features, dtype=dt))
            self.register_buffer("cell_feature_std", torch.ones(n_features, dtype=dt))
        self.register_buffer("reference_energies", torch.zeros(n_species, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        n_in = n_features * (2 if self.cell_mean else 1)
        widths = [n_in] + list(hidden) + [1]
        #: per element, the names of its parameters: W0, b0, W1, b1, ..., W_out, b_out (``h @ W + b``), then the
        #: linear term's weights with ``linear``
        self.names = []
        for s in range(n_species):
            names = []
            for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                for kind, shape in (("weight", (a, b)), ("bias", (b,))):
                    names.append(f"element{s}_{kind}{k}")
                    self.register_parameter(names[-1], torch.nn.Parameter(torch.zeros(*shape, dtype=dt)))
            if self.linear:
                names.append(f"element{s}_linear")
                self.register_parameter(names[-1], torch.nn.Parameter(torch.zeros(n_in, dtype=dt)))
            self.names.append(names)

    def standardised(self, X, species_index):
        """Raw features ``X`` (n_atoms, F) standardised per element (differentiable)."""
        return (X - self.feature_mean[species_index]) / self.feature_std[species_index]

    def network_inputs(self, X, species_index, structure):
        """The networks' inputs (n_atoms, n_in): the standardised descriptor, with ``cell_mean`` its cell average."""
        H = self.standardised(X, species_index)
        if self.cell_mean:
            cells = (cell_average(H, structure) - self.cell_feature_mean) / self.cell_feature_std
            H = torch.cat([H, cells[structure]], 1)
        return H

    def network_outputs(self, H, species_index):
        """Atomic energies above the reference energies (n_atoms,) from the networks' inputs ``H``."""
        out = torch.zeros(H.shape[0], dtype=H.dtype)
        scale = float(self.energy_scale)
        for s, names in enumerate(self.names):
            idx = torch.nonzero(species_index == s).squeeze(1)
            if idx.numel() == 0:
                continue
            layers = [getattr(self, name) for name in names]
            if self.linear:
                *layers, skip = layers
            h = H[idx]
            lin = h @ skip if self.linear else None
            for k in range(0, len(layers) - 2, 2):
                h = torch.tanh(h @ layers[k] + layers[k + 1])
            e = (h @ layers[-2] + layers[-1]).squeeze(1)
            out = out.index_put((idx,), (e if lin is None else e + lin) * scale)
        return out

    def forward(self, X, species_index, structure, reference=True):
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
        self.head = ElementNetworks(len(self.species), self.n_features, self.hidden, self.dtype, cell_mean, linear)

    def config(self):
        return {"species": list(self.species), "descriptor": self.descriptor,
                "descriptor_settings": dict(self.descriptor_settings), "n_features": self.n_features,
                "hidden": list(self.hidden), "dtype": self.dtype, "cell_mean": self.head.cell_mean,
                "linear": self.head.linear}

    def features(self, batch, strain=None, vectors=None):
        """Raw descriptor (n_atoms, n_features) of ``batch`` (:func:`descriptor_features`)."""
        return descriptor_features(self.descriptor, self.descriptor_settings, len(self.species), batch, strain,
                                   vectors)

    def pair_gradients(self, batch, vectors):
        """Features and their pair-vector derivatives (:func:`descriptor_pair_gradients`)."""
        return descriptor_pair_gradients(self.descriptor, self.descriptor_settings, len(self.species), batch,
                                         vectors)

    def atomic_energies(self, batch, strain=None):
        return self.head(self.features(batch, strain), batch.species_index, batch.structure)

    def embeddings(self, batch):
        """The standardised descriptor of every atom (novelty measures distances between these)."""
        return self.head.standardised(self.features(batch), batch.species_index)

    def element_parameter_names(self):
        """Per element, the names of its parameters in the order [W0, b0, ..., W_out, b_out, (v)]."""
        return [[f"head.{name}" for name in names] for names in self.head.names]
