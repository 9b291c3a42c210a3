r"""An equivariant message-passing potential (PaiNN): the second :class:`~ml4ms.potentials.base.AtomisticModel` kind.

The polarizable atom interaction network of Schütt, Unke and Gastegger (ICML 2021, "Equivariant message passing
for the prediction of tensorial properties and molecular spectra"), written from the paper's equations in plain
torch. Every atom carries scalar features :math:`s_i \in \mathbb R^F` (an embedding of its element to start) and
vector features :math:`\vec v_i \in \mathbb R^{3 \times F}` (zero to start). Each of ``interactions`` layers is a
message block and an update block:

.. math::

    x_{ij} &= \phi(s_j) \circ \mathcal W(r_{ij}) = (x^{s}_{ij}, x^{vv}_{ij}, x^{vs}_{ij}), \qquad
    \mathcal W(r) = \big(W\, \mathrm{rbf}(r) + b\big)\, f_c(r) \\
    \Delta s_i &= \frac{1}{\bar n} \sum_j x^{s}_{ij}, \qquad
    \Delta \vec v_i = \frac{1}{\bar n} \sum_j x^{vv}_{ij} \circ \vec v_j + x^{vs}_{ij}\, \hat r_{ij} \\
    a_i &= \mathrm{MLP}\big(s_i, \lVert V \vec v_i \rVert\big) = (a^{vv}_i, a^{sv}_i, a^{ss}_i), \qquad
    \Delta \vec v_i = a^{vv}_i \circ U \vec v_i, \qquad
    \Delta s_i = a^{ss}_i + a^{sv}_i \circ \langle U \vec v_i, V \vec v_i \rangle

with :math:`\phi` a two-layer SiLU network, the sine basis :math:`\mathrm{rbf}_n(r) = \sin(n \pi r / r_c) / (r / r_c)`
(:math:`n = 1 \dots` ``radial_basis``; the paper's :math:`\sin(n \pi r / r_c) / r` made dimensionless, so that its
values are of order one for any cutoff), the cosine envelope :math:`f_c(r) = \tfrac12 (\cos(\pi r / r_c) + 1)`,
:math:`U`, :math:`V` linear maps over the feature channels (no bias, so vectors stay vectors) and
:math:`\bar n` the square root of the mean neighbour count of the training atoms (a constant of the fitted model,
as NequIP and MACE normalise their sums; the square root rather than the count itself). Both scalings make the
initial scalars depend on the geometry more strongly, and training starts faster: on 16 six-atom TiO2 cells
(``features = 8``, 30 epochs at learning rate 0.01) the training energy error ends at 56 meV/atom, against 214
with the paper's basis and 260 with that basis and the count itself. The atomic energy is

.. math::

    E_i = E^{\mathrm{ref}}_{t_i} + s\, \mathrm{MLP}(s_i)

with the per-element reference energies (float64, least squares on the composition) and the energy scale
:math:`s` of :class:`~ml4ms.potentials.model.NeuralPotential`. Energies depend on the pair vectors only through
their lengths, dot products and norms of sums of vectors, so they are exactly invariant under rotations,
translations and permutations; forces and stress are derivatives through the pair vectors
(:func:`~ml4ms.potentials.base.energies_forces_stress`). All sums over pairs are ``index_add`` scatters; there is
no loop over atoms.

:class:`MessagePassingNetwork` is the module (its :meth:`~MessagePassingNetwork.atomic_energies_of_vectors` is
scriptable, so :func:`~ml4ms.potentials.export.export_torchscript` exports it) and
:class:`MessagePassingPotential` its estimator. The descriptor network's precomputed-Jacobian training
(``precompute``) does not apply: this kind has no fixed descriptor, and the training loop trains it through the
whole network (:attr:`MessagePassingPotential.has_precompute`).
"""

import math
from typing import List

import numpy as np
import torch

from ..batch import _torch, torch_dtype
from ..config import check, integer, number
from ..errors import InputError
from .base import AtomisticModel
from .descriptor_network import Dense
from .estimator import PotentialEstimator

#: the settings of :class:`MessagePassingPotential` and the rules they follow
SETTINGS = {"r_cut": number("> 0", note="Å"), "features": integer(1), "interactions": integer(1),
            "radial_basis": integer(1), "seed": integer(0)}


def sine_basis(r: torch.Tensor, cutoff: float, n: int) -> torch.Tensor:
    r"""The radial basis :math:`\sin(k \pi r / r_c) / (r / r_c)`, :math:`k = 1 \dots n`: (n_pairs, n) for ``r`` (n_pairs,).

    Examples
    --------
    >>> sine_basis(torch.tensor([1.0, 5.0]), 5.0, 3)[1].abs().max().item() < 1e-6
    True
    """
    k = torch.arange(1, n + 1, dtype=r.dtype, device=r.device) * (math.pi / cutoff)
    return torch.sin(r[:, None] * k) / (r[:, None] / cutoff)


def cosine_envelope(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    r"""The envelope :math:`f_c(r) = \tfrac12 (\cos(\pi r / r_c) + 1)` for :math:`r < r_c`, else 0.

    It and its slope vanish at the cutoff; every filter is multiplied by it
    *after* its bias, so that a pair at or beyond the cutoff contributes
    nothing whatever the weights (the energy is smooth, and the same for any
    neighbour list that holds every pair within the cutoff).

    Examples
    --------
    >>> cosine_envelope(torch.tensor([0.0, 5.0, 6.0]), 5.0).tolist()
    [1.0, 0.0, 0.0]
    """
    return 0.5 * (torch.cos(r * (math.pi / cutoff)) + 1.0) * (r < cutoff).to(r.dtype)


class Vectorwise(torch.nn.Module):
    """A linear map over the feature channels of vectors (n, 3, F) -> (n, 3, F_out), without a bias (equivariant)."""

    def __init__(self, n_in, n_out, dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n_in, n_out, dtype=dtype))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.weight


class Perceptron(torch.nn.Module):
    """``Dense -> SiLU -> Dense``: the two-layer networks of PaiNN's blocks and readout."""

    def __init__(self, n_in, n_hidden, n_out, dtype):
        super().__init__()
        self.inner = Dense(n_in, n_hidden, dtype)
        self.outer = Dense(n_hidden, n_out, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.nn.functional.silu(self.inner(x)))


class Interaction(torch.nn.Module):
    """One PaiNN layer: a message block and an update block (see the module notes)."""

    def __init__(self, features, dtype):
        super().__init__()
        self.features = int(features)
        self.message = Perceptron(features, features, 3 * features, dtype)
        self.mix_u = Vectorwise(features, features, dtype)
        self.mix_v = Vectorwise(features, features, dtype)
        self.update = Perceptron(2 * features, features, 3 * features, dtype)

    def forward(self, s: torch.Tensor, v: torch.Tensor, filters: torch.Tensor, unit: torch.Tensor,
                i: torch.Tensor, j: torch.Tensor, inverse_neighbours: float, first: bool):
        F = self.features
        # message: neighbour scalars filtered by the radial basis; vectors carried along and along r̂_ij
        x = self.message(s)[j] * filters * inverse_neighbours
        x_s, x_vv, x_vs = x[:, :F], x[:, F:2 * F], x[:, 2 * F:]
        dv = unit[:, :, None] * x_vs[:, None, :]
        if not first:  # the first layer's vectors are zero: nothing to carry along
            dv = dv + v[j] * x_vv[:, None, :]
        s = s.index_add(0, i, x_s)
        v = v.index_add(0, i, dv)
        # update: scalars and vector norms mixed, vectors rescaled, scalars from their inner products
        Uv, Vv = self.mix_u(v), self.mix_v(v)
        norm = torch.sqrt((Vv * Vv).sum(1) + 1e-8)  # the shift keeps the gradient finite at v = 0
        a = self.update(torch.cat([s, norm], 1))
        a_vv, a_sv, a_ss = a[:, :F], a[:, F:2 * F], a[:, 2 * F:]
        v = v + a_vv[:, None, :] * Uv
        s = s + a_ss + a_sv * (Uv * Vv).sum(1)
        return s, v


class MessagePassingNetwork(AtomisticModel):
    """PaiNN: equivariant message passing on scalar and vector features (see the module notes).

    Parameters
    ----------
    species : list of int
        Atomic numbers, sorted.
    cutoff : float
        Neighbour cutoff (Å) of the messages.
    features : int
        Width F of the scalar and vector features.
    interactions : int
        Message-passing layers.
    radial_basis : int
        Sine functions of the radial basis.
    dtype : {"float64", "float32"}

    The state is the parameters and three buffers: ``reference_energies`` (float64), ``energy_scale`` and
    ``neighbour_scale`` (the square root of the mean neighbour count, which divides every sum over neighbours).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.batch import collate
    >>> net = MessagePassingNetwork(species=[8, 12], cutoff=4.0, features=8, interactions=2, radial_basis=4)
    >>> net.atomic_energies(collate([bulk("MgO", "rocksalt", a=4.2)], net.cutoff, net.species)).shape
    torch.Size([2])
    """

    def __init__(self, *, species, cutoff, features, interactions, radial_basis, dtype="float64"):
        super().__init__()
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.features, self.interactions, self.radial_basis = int(features), int(interactions), int(radial_basis)
        self.dtype = str(dtype)
        dt = torch_dtype(self.dtype)
        F = self.features
        self.embedding = torch.nn.Parameter(torch.zeros(len(self.species), F, dtype=dt))
        self.filters = Dense(self.radial_basis, 3 * F * self.interactions, dt)  # all layers' filters at once
        self.layers = torch.nn.ModuleList([Interaction(F, dt) for _ in range(self.interactions)])
        self.readout = Perceptron(F, max(1, F // 2), 1, dt)
        self.register_buffer("reference_energies", torch.zeros(len(self.species), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("neighbour_scale", torch.ones((), dtype=torch.float64))

    def config(self):
        return {"species": list(self.species), "cutoff": self.cutoff, "features": self.features,
                "interactions": self.interactions, "radial_basis": self.radial_basis, "dtype": self.dtype}

    def scalar_features(self, D: torch.Tensor, species_index: torch.Tensor, i: torch.Tensor,
                        j: torch.Tensor) -> torch.Tensor:
        """The final scalar features (n_atoms, F) from the pair vectors ``D`` of the pairs ``(i, j)``."""
        n, F = species_index.shape[0], self.features
        r = torch.sqrt((D * D).sum(1))
        unit = D / r[:, None]
        # the envelope multiplies the whole filter, bias included: pairs at or past the cutoff add nothing
        filters = self.filters(sine_basis(r, self.cutoff, self.radial_basis))
        filters = filters * cosine_envelope(r, self.cutoff)[:, None]
        s = self.embedding[species_index]
        v = torch.zeros(n, 3, F, dtype=s.dtype, device=s.device)
        inverse = 1.0 / float(self.neighbour_scale)
        for k, layer in enumerate(self.layers):
            s, v = layer(s, v, filters[:, 3 * F * k:3 * F * (k + 1)], unit, i, j, inverse, k == 0)
        return s

    def atomic_energies_of_vectors(self, D: torch.Tensor, species_index: torch.Tensor, i: torch.Tensor,
                                   j: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        s = self.scalar_features(D, species_index, i, j)
        return self.reference_energies[species_index] + self.energy_scale * self.readout(s).squeeze(1).double()

    @torch.jit.unused
    def embeddings(self, batch):
        """The final scalar features of every atom (novelty measures distances between these)."""
        return self.scalar_features(self.pair_vectors(batch), batch.species_index, batch.i, batch.j)


def initial_weights(net, rng):
    """Random parameters of ``net`` (name -> ndarray): normal weights of variance 1 / fan-in, zero biases,
    unit-normal element embeddings, from the numpy generator ``rng`` (in the order of ``named_parameters``)."""
    out = {}
    for name, p in net.named_parameters():
        shape = tuple(p.shape)
        if name.endswith("bias"):
            out[name] = np.zeros(shape)
        elif name == "embedding":
            out[name] = rng.normal(0.0, 1.0, shape)
        else:
            out[name] = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape)
    return out


class MessagePassingPotential(PotentialEstimator):
    """A PaiNN message-passing potential (:class:`MessagePassingNetwork`), trained like every kind.

    Parameters
    ----------
    r_cut : float, default 5.0
        Neighbour cutoff (Å). (Named ``r_cut``, not ``cutoff``: :meth:`cutoff` is the method every kind has.)
    features : int, default 32
        Width of the scalar and vector features.
    interactions : int, default 2
        Message-passing layers (the receptive field is ``interactions × r_cut``).
    radial_basis : int, default 8
        Sine functions of the radial basis.
    dtype : {"float64", "float32"}, default "float64"
    seed : int, default 0
        Seed of the weight initialisation.
    device : {"cpu", "cuda", "cuda:N"}, default "cpu"
        Where the module, its batches and its training run (a potential file does not keep it).

    Attributes
    ----------
    species_ : list of int
        Atomic numbers, sorted.
    reference_energies_ : ndarray (n_species,)
        Per-element reference energies (eV), least squares on the composition.
    energy_scale_ : float
        Scale (eV) of the readout.
    neighbour_scale_ : float
        Square root of the mean neighbour count of the training atoms (divides the message sums).
    state_ : dict of str -> ndarray
        The network's parameters by name (:meth:`MessagePassingNetwork.named_parameters`).

    Examples
    --------
    >>> from ase.build import bulk
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> m = MessagePassingPotential(r_cut=4.0, features=8).initialize([a], [-10.0])
    >>> e, f, s = m.compute(a, stress=True)
    >>> f.shape, s.shape
    ((2, 3), (6,))
    """

    _fitted_attribute = "state_"
    #: the name of this kind in a recipe's ``[model] kind``
    recipe_kind = "message_passing"

    def __init__(self, *, r_cut=5.0, features=32, interactions=2, radial_basis=8, dtype="float64", seed=0,
                 device="cpu"):
        self.r_cut = r_cut
        self.features = features
        self.interactions = interactions
        self.radial_basis = radial_basis
        self.dtype = dtype
        self.seed = seed
        self.device = device

    def cutoff(self):
        """Neighbour-list cutoff (Å): ``r_cut``."""
        return float(self.r_cut)

    def check_settings(self):
        """Raise :class:`~ml4ms.errors.InputError` for a bad setting; needs no data.

        Examples
        --------
        >>> MessagePassingPotential(features=0).check_settings()
        Traceback (most recent call last):
        ...
        ml4ms.errors.InputError: features must be a positive integer, got 0
        """
        check({name: getattr(self, name) for name in SETTINGS}, SETTINGS)
        torch_dtype(self.dtype)
        self.torch_device()

    def initialize(self, frames, energies):
        """Set the species, reference energies, energy scale, neighbour scale and random weights (``seed``).

        Parameters
        ----------
        frames : list of ase.Atoms
        energies : array-like (n_frames,)
            Total energies (eV), for the least-squares reference energies.

        Returns
        -------
        self
        """
        self.check_settings()
        self.fit_reference_energies(frames, energies)
        sample = self.tensors(list(frames[::max(1, len(frames) // 400)]))  # up to ~400 structures, evenly spaced
        self.neighbour_scale_ = float(np.sqrt(max(len(sample.i) / sample.n_atoms, 1.0)))
        net = MessagePassingNetwork(**self.network_config())
        self.state_ = initial_weights(net, np.random.default_rng(self.seed))
        self.__dict__.pop("_network", None)
        return self

    def network_config(self):
        """The :class:`MessagePassingNetwork` configuration of this potential."""
        return {"species": [int(z) for z in self.species_], "cutoff": self.cutoff(),
                "features": int(self.features), "interactions": int(self.interactions),
                "radial_basis": int(self.radial_basis), "dtype": str(self.dtype)}

    def network(self):
        """The :class:`MessagePassingNetwork` holding this potential's state.

        Built from the fitted arrays, then reused while they stay the same; its parameters do not require grad
        (training runs a copy, :meth:`~ml4ms.potentials.estimator.PotentialEstimator.torch_parameters`).
        """
        self.require_fitted()
        key = (repr(self.get_params(deep=False)), id(self.state_), tuple(self.species_),
               float(self.energy_scale_), float(self.neighbour_scale_), id(self.reference_energies_))
        cached = self.__dict__.get("_network")
        if cached is not None and cached[0] == key:
            return cached[1]
        torch = _torch()
        net = MessagePassingNetwork(**self.network_config())
        own = net.state_dict()
        state = {**self.state_, "reference_energies": self.reference_energies_,
                 "energy_scale": self.energy_scale_, "neighbour_scale": self.neighbour_scale_}
        if sorted(state) != sorted(own) or any(np.size(v) != own[k].numel() for k, v in state.items()):
            raise InputError("the weights do not match the settings (features, interactions, radial_basis)",
                             hint="initialize or train the potential again with these settings")
        net.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=own[k].dtype).reshape(own[k].shape)
                             for k, v in state.items()})
        net.requires_grad_(False)
        net.to(self.torch_device())
        self.__dict__["_network"] = (key, net)
        return net

    def from_network(self, net):
        """Take the fitted state of ``net``, a :class:`MessagePassingNetwork` of this potential's settings;
        returns self.

        Raises
        ------
        InputError
            ``net`` was built with other settings than this potential's.
        """
        self.species_ = [int(z) for z in net.species]
        own, theirs = self.network_config(), net.config()
        differ = sorted(k for k in own if own[k] != theirs.get(k))
        if differ:
            raise InputError(f"the network's settings differ from the potential's ({', '.join(differ)})",
                             hint="rebuild the potential from the network's configuration")
        state = {k: v.detach().cpu().double().numpy().copy() for k, v in net.state_dict().items()}
        self.reference_energies_ = state.pop("reference_energies")
        self.energy_scale_ = float(state.pop("energy_scale"))
        self.neighbour_scale_ = float(state.pop("neighbour_scale"))
        self.state_ = state
        self.__dict__.pop("_network", None)
        return self


__all__: List[str] = ["MessagePassingNetwork", "MessagePassingPotential", "cosine_envelope", "sine_basis"]
