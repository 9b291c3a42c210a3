r"""The torch module of :class:`~ml4ms.models.mpnn.MPNNRegressor`: invariant message passing with edge updates.

The network of Jørgensen, Jacobsen and Schmidt, "Neural message passing with edge updates for predicting
properties of molecules and materials" (arXiv:1806.03146, 2018), a SchNet-like network whose edges carry a state
of their own that every layer updates from the two atoms it joins. Atoms start from a learned embedding of their
element, :math:`h^0_i = \mathrm{emb}(Z_i)`; edges from their length, :math:`e^0_{ij} = W\,[\mathrm{rbf}(r_{ij}),
w_{ij}] + b` (the sine basis of the message-passing potential times its cosine envelope,
:func:`~ml4ms.potentials.message_passing.sine_basis` and :func:`~ml4ms.potentials.message_passing.cosine_envelope`,
zero beyond the cutoff, and the graph's edge weights, e.g. Voronoi face areas,
divided by their training mean), or from a learned constant for topology-only graphs. Each of ``interactions``
layers is

.. math::

    m_{ij} &= (W h_j) \circ \phi_m(e_{ij}), \qquad
    h_i \leftarrow h_i + \phi_h\Big(\frac{1}{\bar n} \sum_j m_{ij}\Big), \\
    e_{ij} &\leftarrow e_{ij} + \phi_e(h_i, h_j, e_{ij})

with :math:`\phi` two-layer SiLU networks (:class:`~ml4ms.potentials.message_passing.Perceptron`; the paper
uses shifted softplus and replaces the edge state instead of adding to it) and :math:`\bar n` the square root of
the mean neighbour count of the training atoms, as in the potential. The last layer's edge update is left out
(nothing reads it), and the first layer of :math:`\phi_e` maps the atom states per atom before they are
gathered onto the edges (the same function, fewer operations per edge). A per-atom network maps the final
:math:`h_i` to one value per target, summed over the atoms of a structure (extensive targets) or averaged
(intensive ones). Only distances enter, so the output is exactly invariant under rotations, translations and
permutations, and a supercell has the same atoms with the same neighbourhoods: the same mean and an integer
multiple of the sum. All sums are ``index_add`` scatters.
"""

import torch

from ..batch import torch_dtype
from ..potentials.descriptor_network import Dense
from ..potentials.message_passing import Perceptron, cosine_envelope, sine_basis


class EdgeUpdateLayer(torch.nn.Module):
    """One layer: messages filtered by the edge states, a node update, then (unless ``last``) an edge update."""

    def __init__(self, features, dtype, last):
        super().__init__()
        self.neighbour = Dense(features, features, dtype)
        self.filter = Perceptron(features, features, features, dtype)
        self.node = Perceptron(features, features, features, dtype)
        self.last = bool(last)
        if not self.last:  # the edge network's first layer on (h_i, h_j, e), split so h is mapped per atom
            self.edge_atoms = Dense(features, 2 * features, dtype)
            self.edge_inner = Dense(features, features, dtype)
            self.edge_outer = Dense(features, features, dtype)

    def forward(self, h, e, i, j, inverse_neighbours: float):
        m = self.neighbour(h)[j] * self.filter(e)
        h = h + self.node(torch.zeros_like(h).index_add(0, i, m) * inverse_neighbours)
        if not self.last:
            F = h.shape[1]
            a = self.edge_atoms(h)  # W [h_i, h_j, e] + b = (W_i h)[i] + (W_j h)[j] + W_e e + b
            inner = a[i, :F] + a[j, F:] + self.edge_inner(e)
            e = e + self.edge_outer(torch.nn.functional.silu(inner))
        return h, e


class EdgeUpdateNetwork(torch.nn.Module):
    """Invariant message passing with edge updates (see the module notes); outputs standardised targets.

    Parameters
    ----------
    n_species : int
    features : int
        Width of the atom and edge states.
    interactions : int
    radial_basis : int
        Sine functions of the distance basis (unused when ``topology_only``).
    cutoff : float
        Å; the distance basis is zero beyond it.
    n_edge_weights : int
        Edge weight columns of the graph (0 for none).
    topology_only : bool
        Edges start from a learned constant: no distance, no weights.
    n_outputs : int
    readout : {"sum", "mean"}
    dtype : {"float32", "float64"}

    The state is the parameters and two buffers: ``neighbour_scale`` and ``weight_scale`` (the training mean of
    every edge weight column).

    Examples
    --------
    >>> net = EdgeUpdateNetwork(n_species=2, features=8, interactions=2, radial_basis=4, cutoff=4.0,
    ...                         n_edge_weights=0, topology_only=False, n_outputs=3, readout="mean")
    >>> i, j = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 1])
    >>> net(torch.tensor([0, 1, 1]), i, j, torch.tensor([1.0, 1.0, 1.5, 1.5]), None,
    ...     torch.tensor([0, 0, 0]), torch.tensor([3])).shape
    torch.Size([1, 3])
    """

    def __init__(self, *, n_species, features, interactions, radial_basis, cutoff, n_edge_weights, topology_only,
                 n_outputs, readout, dtype="float32"):
        super().__init__()
        dt = torch_dtype(dtype)
        F = int(features)
        self.features, self.radial_basis, self.cutoff = F, int(radial_basis), float(cutoff)
        self.topology_only, self.readout_kind = bool(topology_only), str(readout)
        self.n_edge_weights = 0 if self.topology_only else int(n_edge_weights)
        self.embedding = torch.nn.Parameter(torch.zeros(int(n_species), F, dtype=dt))
        if self.topology_only:
            self.edge_embedding = torch.nn.Parameter(torch.zeros(1, F, dtype=dt))
        else:
            self.edge_input = Dense(self.radial_basis + self.n_edge_weights, F, dt)
        self.layers = torch.nn.ModuleList([EdgeUpdateLayer(F, dt, last=k == int(interactions) - 1)
                                           for k in range(int(interactions))])
        self.readout = Perceptron(F, max(1, F // 2), int(n_outputs), dt)
        self.register_buffer("neighbour_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("weight_scale", torch.ones(max(self.n_edge_weights, 1), dtype=torch.float64))

    def edge_states(self, distances, weights):
        """The initial edge states (n_edges, F)."""
        if self.topology_only:
            return self.edge_embedding.expand(distances.shape[0], -1)
        x = sine_basis(distances, self.cutoff, self.radial_basis) * cosine_envelope(distances, self.cutoff)[:, None]
        if self.n_edge_weights:
            x = torch.cat([x, weights / self.weight_scale.to(x.dtype)], 1)
        return self.edge_input(x)

    def atom_outputs(self, species_index, i, j, distances, weights):
        """Per-atom outputs (n_atoms, n_outputs) before the sum or mean."""
        h = self.embedding[species_index]
        e = self.edge_states(distances, weights)
        inverse = 1.0 / float(self.neighbour_scale)
        for layer in self.layers:
            h, e = layer(h, e, i, j, inverse)
        return self.readout(h)

    def forward(self, species_index, i, j, distances, weights, structure, counts):
        """Outputs per structure (n_structures, n_outputs): the sum or mean of the atoms' outputs."""
        out = self.atom_outputs(species_index, i, j, distances, weights)
        total = torch.zeros(counts.shape[0], out.shape[1], dtype=out.dtype, device=out.device)
        total = total.index_add(0, structure, out)
        if self.readout_kind == "mean":
            total = total / counts.to(out.dtype)[:, None]
        return total
