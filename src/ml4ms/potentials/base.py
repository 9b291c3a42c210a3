"""The seam every interatomic potential plugs into: :class:`AtomisticModel` and :func:`energies_forces_stress`.

A kind of potential is a :class:`torch.nn.Module` that maps a typed batch of structures
(:class:`~ml4ms.batch.AtomsBatch`) to one energy per atom, differentiably in the positions and in a homogeneous
strain of the cell. Everything else follows from that contract and is shared by every kind:
:func:`energies_forces_stress` takes forces as minus the gradient and the virial as the strain derivative (with
``create_graph`` only while training), and training, evaluation, the ASE calculator, MD and committees call it and
never ask which kind they hold. ``embeddings`` are the per-atom rows that novelty measures distances in.
"""

from typing import List

import torch

from ..batch import pair_vectors


class AtomisticModel(torch.nn.Module):
    """A potential: per-atom energies of an :class:`~ml4ms.batch.AtomsBatch`, as a torch module.

    Subclasses implement :meth:`atomic_energies_of_vectors` (scriptable), :meth:`embeddings` and
    :meth:`config`, and set
    ``species`` (atomic numbers, sorted: ``batch.species_index`` indexes them) and ``cutoff`` (Å: the
    neighbour pairs the batch must hold). ``Kind(**model.config())`` followed by
    ``load_state_dict(model.state_dict())`` rebuilds a model.
    """

    species: List[int]
    cutoff: float

    @torch.jit.unused
    def atomic_energies(self, batch, strain=None):
        """Energy of every atom (n_atoms,), float64, differentiable in ``batch.positions`` and in ``strain``.

        ``strain`` (n_atoms, 3, 3): the homogeneous strain ε of each atom's structure (positions and cell
        deformed by 1 + ε), or None.
        """
        return self.atomic_energies_of_vectors(self.pair_vectors(batch, strain), batch.species_index, batch.i,
                                               batch.j, batch.structure)

    def atomic_energies_of_vectors(self, D: torch.Tensor, species_index: torch.Tensor, i: torch.Tensor,
                                   j: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        """Energy of every atom (n_atoms,), float64, from the pair vectors ``D`` (n_pairs, 3) of the pairs
        ``(i, j)`` (sorted by ``i``), in the model's dtype. The maths of a kind, scriptable (export scripts it):
        forces and stress follow by differentiating through ``D``.
        """
        raise NotImplementedError

    @torch.jit.unused
    def pair_vectors(self, batch, strain=None):
        """The pair vectors (n_pairs, 3) of ``batch`` in the model's dtype, strained by ``strain`` (n_atoms, 3, 3)."""
        return pair_vectors(batch.positions, batch.cell, batch.i, batch.j, batch.shifts, strain)

    @torch.jit.unused
    def embeddings(self, batch):
        """Per-atom rows (n_atoms, F) that describe each atom's environment to this model (for novelty)."""
        raise NotImplementedError

    def config(self):
        """The constructor's keyword arguments, as plain values (JSON-able)."""
        raise NotImplementedError

    @torch.jit.unused
    def features_key(self):
        """A key equal for models whose :meth:`fixed_features` are the same function (a fixed descriptor), so that a
        committee computes it once; None (the default) for a learned representation."""
        return None

    def fixed_features(self, D: torch.Tensor, species_index: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                       structure: torch.Tensor) -> torch.Tensor:
        """Per-atom rows the energies are read out from (kinds with a :meth:`features_key`)."""
        raise NotImplementedError

    def energies_of_features(self, R: torch.Tensor, species_index: torch.Tensor,
                             structure: torch.Tensor) -> torch.Tensor:
        """The energy of every atom (float64) from :meth:`fixed_features`."""
        raise NotImplementedError

    @torch.jit.unused
    def parameter_groups(self):
        """The names of the trainable parameters, in groups (one group of all of them unless a kind says
        otherwise): the order in which estimators keep and checkpoints store them."""
        return [[name for name, _ in self.named_parameters()]]

    @torch.jit.unused
    def forward(self, batch, strain=None):
        return self.atomic_energies(batch, strain)


def energies_forces_stress(model, batch, *, forces=True, stress=False, create_graph=False, parameters=None):
    """Energies, forces and strain derivatives of a batch of structures, for any :class:`AtomisticModel`.

    Parameters
    ----------
    model : AtomisticModel
    batch : ml4ms.batch.AtomsBatch
    forces, stress : bool
        Whether to take the forces, and the derivatives by a homogeneous strain.
    create_graph : bool
        Keep the graph of the derivatives (training on forces); off for evaluation, MD and the calculator.
    parameters : dict, optional
        Parameters (and buffers) by name that replace the model's own for this call
        (:func:`torch.func.functional_call`): training and weight averages pass theirs.

    Returns
    -------
    energy : torch.Tensor (n_structures,), float64
    forces : torch.Tensor (n_atoms, 3) or None
        ``-dE/dr``, in the batch's dtype.
    virial : torch.Tensor (n_structures, 3, 3) or None
        ``dE/dε`` at ε = 0 (the stress times the volume).

    Works under ``torch.no_grad()`` too.
    """
    with torch.enable_grad():
        positions = batch.positions
        if forces:
            positions = positions.detach().clone().requires_grad_(True)
        eps = strain = None
        if stress:
            eps = torch.zeros(batch.n_structures, 3, 3, dtype=positions.dtype, device=positions.device,
                              requires_grad=True)
            strain = eps[batch.structure]
        moved = batch.replace(positions=positions)
        if parameters is None:
            atomic = model(moved, strain)
        else:
            atomic = torch.func.functional_call(model, parameters, (moved, strain))
        energy = torch.zeros(batch.n_structures, dtype=torch.float64, device=atomic.device).index_add(
            0, batch.structure, atomic)
        F = V = None
        if forces or stress:
            inputs = ([positions] if forces else []) + ([eps] if stress else [])
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
            if forces:
                F = -grads[0]
            if stress:
                V = grads[-1]
    return energy, F, V


def committee_energies_forces_stress(models, batch, *, forces=True, stress=False):
    """:func:`energies_forces_stress` of every model of a committee on one batch: a list of ``(energy, forces,
    virial)``, one per model.

    Models that share a fixed representation (equal, non-None :meth:`AtomisticModel.features_key`) compute
    it once: one forward pass, each model's readout, and one batched backward pass through the representation
    (:func:`torch.autograd.grad` with ``is_grads_batched``). Other committees run model by model. Evaluation only
    (no graph is kept).
    """
    keys = {m.features_key() for m in models}
    if len(models) < 2 or len(keys) != 1 or None in keys:
        return [energies_forces_stress(m, batch, forces=forces, stress=stress) for m in models]
    with torch.enable_grad():
        positions = batch.positions.detach().clone().requires_grad_(forces)
        eps = strain = None
        if stress:
            eps = torch.zeros(batch.n_structures, 3, 3, dtype=positions.dtype, device=positions.device,
                              requires_grad=True)
            strain = eps[batch.structure]
        D = pair_vectors(positions, batch.cell, batch.i, batch.j, batch.shifts, strain)
        R = models[0].fixed_features(D, batch.species_index, batch.i, batch.j, batch.structure)
        leaf = R.detach().requires_grad_(forces or stress)
        energies, grads = [], []
        for m in models:
            atomic = m.energies_of_features(leaf, batch.species_index, batch.structure)
            energies.append(torch.zeros(batch.n_structures, dtype=torch.float64, device=atomic.device).index_add(
                0, batch.structure, atomic).detach())
            if forces or stress:
                grads.append(torch.autograd.grad(atomic.sum(), leaf)[0])
        if not (forces or stress):
            return [(e, None, None) for e in energies]
        inputs = ([positions] if forces else []) + ([eps] if stress else [])
        out = torch.autograd.grad(R, inputs, grad_outputs=torch.stack(grads), is_grads_batched=True)
    F = -out[0] if forces else None
    V = out[-1] if stress else None
    return [(e, None if F is None else F[k], None if V is None else V[k]) for k, e in enumerate(energies)]
