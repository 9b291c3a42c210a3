"""TorchScript export of a potential: the model's own module, scripted.

The exported file runs with PyTorch alone (``torch.jit.load``), for hosts
that embed TorchScript models (C++ codes, LAMMPS-style pair styles, other
Python stacks). It is :func:`torch.jit.script` of the potential's
:class:`~ml4ms.potentials.base.AtomisticModel` (its
``atomic_energies_of_vectors``, the maths every other path runs too) inside
a thin :class:`ExportedModel` that takes the host's arrays and differentiates;
there is no second copy of the maths. The host supplies the neighbour list,
as for MACE or NequIP exports.

``forward(positions, numbers, cell, i, j, shifts)``:

- ``positions`` (n, 3) Å and ``cell`` (3, 3) Å (rows are lattice vectors;
  any cell for a molecule);
- ``numbers`` (n,) int64 atomic numbers;
- ``i``, ``j`` (n_pairs,) int64 and ``shifts`` (n_pairs, 3): every ordered
  pair within ``module.cutoff`` Å, with the vector
  ``positions[j] - positions[i] + shifts @ cell`` (ASE's
  ``neighbor_list("ijS", atoms, module.cutoff)``);

returns ``(energy, forces, virial)``: energy (eV, a float64 0-d tensor),
forces (n, 3) eV/Å and the virial ``W = −dE/dε`` (3, 3) eV under a
homogeneous strain ε (the NequIP/MACE sign), so the stress is ``−W / volume``
(ASE's sign; symmetrise it). Floating inputs of any dtype are cast to the
model's (float32 or float64), which forces and virial have. One structure per
call; call it with autograd enabled (not under ``torch.no_grad()``), since
forces come from autograd inside the module. The model file (JSON + arrays)
stays the reference format; this is a deployment copy. A committee exports
as one module that returns the members' mean energy, forces and virial.

A kind whose maths is not scriptable (the descriptor network on ACSF, whose
three-body blocks are planned in numpy) is refused in one line. TorchScript is
in maintenance in PyTorch 2.x; the export suppresses its deprecation warning.
"""

import io
import warnings
from typing import List, Tuple

import torch

from ..errors import InputError
from ..outputs import write_bytes
from .committee import as_committee


class ExportedModel(torch.nn.Module):
    """The members' mean energy, forces and virial from the host's arrays (see the module notes); scriptable.

    Parameters
    ----------
    networks : list of AtomisticModel
        One (a potential) or several (a committee) modules of the same species and dtype.
    """

    def __init__(self, networks):
        super().__init__()
        first = networks[0]
        dtypes = {next(iter(n.state_dict().values())).dtype for n in networks}
        if any(list(n.species) != list(first.species) for n in networks) or len(dtypes) != 1:
            raise InputError("committee members differ in species or dtype; they cannot be exported together",
                             hint="export the members one by one")
        self.members = torch.nn.ModuleList(networks)
        self.cutoff = max(float(n.cutoff) for n in networks)
        self.n_members = len(networks)
        lookup = -torch.ones(max(first.species) + 1, dtype=torch.long)
        for k, z in enumerate(first.species):
            lookup[int(z)] = k
        self.register_buffer("lookup", lookup)
        self.register_buffer("carrier", torch.zeros(0, dtype=dtypes.pop()))  # the dtype the members run in

    def forward(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, i: torch.Tensor,
                j: torch.Tensor, shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        species = _species(positions, numbers, cell, i, j, shifts, self.lookup)
        dt = self.carrier.dtype
        order = torch.argsort(i, stable=True)  # the pairs, sorted by centre
        i, j, S = i[order].long(), j[order].long(), shifts[order].to(dt)
        pos = positions.detach().to(dt).requires_grad_(True)
        eps = torch.zeros(3, 3, dtype=dt).requires_grad_(True)
        D = (pos[j] - pos[i] + S @ cell.detach().to(dt)) @ (torch.eye(3, dtype=dt) + eps)
        total = self.total_energy(D, species, i, j, torch.zeros(pos.shape[0], dtype=torch.long))
        return _energy_forces_virial(total / self.n_members, pos, eps)

    def total_energy(self, D: torch.Tensor, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                     structure: torch.Tensor) -> torch.Tensor:
        """The members' summed energy (float64) from the pair vectors ``D``."""
        total = torch.zeros((), dtype=torch.float64)
        for member in self.members:
            total = total + member.atomic_energies_of_vectors(D, species, i, j, structure).sum()
        return total


class ExportedSharedDescriptor(ExportedModel):
    """:class:`ExportedModel` of members that share fixed features (equal
    :meth:`~ml4ms.potentials.base.AtomisticModel.features_key`, as a committee does): computed once per call."""

    def total_energy(self, D: torch.Tensor, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                     structure: torch.Tensor) -> torch.Tensor:
        X = self.members[0].fixed_features(D, species, i, j, structure)
        total = torch.zeros((), dtype=torch.float64)
        for member in self.members:
            total = total + member.energies_of_features(X, species, structure).sum()
        return total


def exported_module(networks):
    """The :class:`ExportedModel` of ``networks``; members that share fixed features compute them once, as
    :func:`~ml4ms.potentials.base.committee_energies_forces_stress` does."""
    keys = {n.features_key() for n in networks}
    shared = len(networks) > 1 and len(keys) == 1 and None not in keys
    module = (ExportedSharedDescriptor if shared else ExportedModel)(networks)
    module.shared = shared
    return module


def _species(positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
             shifts: torch.Tensor, lookup: torch.Tensor) -> torch.Tensor:
    """Checks the inputs of ``forward`` and returns the species index of every atom."""
    if not torch.is_grad_enabled():
        raise RuntimeError("call with autograd enabled (not under torch.no_grad or inference_mode): "
                           "forces come from autograd inside the module")
    n = positions.shape[0]
    if n == 0:
        raise ValueError("empty structure: no atoms")
    if positions.dim() != 2 or positions.shape[1] != 3 or numbers.dim() != 1 or numbers.shape[0] != n \
            or cell.dim() != 2 or cell.shape[0] != 3 or cell.shape[1] != 3:
        raise ValueError("positions must be (n, 3), numbers (n,) and cell (3, 3)")
    if i.dim() != 1 or j.dim() != 1 or i.shape[0] != j.shape[0] or shifts.dim() != 2 \
            or shifts.shape[0] != i.shape[0] or shifts.shape[1] != 3:
        raise ValueError("i and j must be (n_pairs,) and shifts (n_pairs, 3)")
    if i.shape[0] > 0 and (bool((i < 0).any()) or bool((j < 0).any()) or int(i.max()) >= n or int(j.max()) >= n):
        raise ValueError("neighbour indices i, j must lie in 0..n-1")
    if bool((numbers < 0).any()) or bool((numbers >= lookup.shape[0]).any()):
        raise ValueError("an atomic number is not among the potential's species")
    species = lookup[numbers]
    if bool((species < 0).any()):
        raise ValueError("an atomic number is not among the potential's species")
    return species


def _energy_forces_virial(e: torch.Tensor, pos: torch.Tensor,
                          eps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = torch.autograd.grad([e], [pos, eps])
    dE_dr, dE_deps = grads[0], grads[1]
    assert dE_dr is not None and dE_deps is not None
    return e.detach(), -dE_dr, -dE_deps


def export_torchscript(model, path):
    """Write ``model`` (a fitted potential, or a committee) as a TorchScript file.

    Parameters
    ----------
    model : NeuralPotential or Committee
        Fitted, of a kind whose maths is scriptable (the descriptor network on
        Chebyshev features). A committee is written as one module that
        returns the members' mean.
    path : str
        Output file (conventionally ``.pt``).

    Returns
    -------
    torch.jit.ScriptModule
        The scripted module that was saved.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from ase.build import bulk
    >>> from ase.neighborlist import neighbor_list
    >>> from ml4ms.potentials import NeuralPotential
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> m = m.initialize([a], [-10.0])
    >>> f = os.path.join(tempfile.mkdtemp(), "mgo.pt")
    >>> _ = export_torchscript(m, f)
    >>> module = torch.jit.load(f)
    >>> i, j, S = neighbor_list("ijS", a, module.cutoff)
    >>> e, forces, virial = module(torch.tensor(a.positions), torch.tensor(a.numbers), torch.tensor(a.cell[:]),
    ...                            torch.tensor(i), torch.tensor(j), torch.tensor(S))
    >>> abs(float(e) - m.compute(a)[0]) < 1e-10
    True
    """
    networks = []
    for m in as_committee(model).members:
        net = m.network()
        copy = type(net)(**net.config())
        copy.load_state_dict(net.state_dict())
        networks.append(copy.requires_grad_(False))
    module = exported_module(networks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(module)
        except Exception as exc:  # TorchScript's own errors are many lines and of many types
            what = getattr(networks[0], "descriptor", type(networks[0]).__name__)
            raise InputError(f"this potential ({what}) cannot be exported: its maths is not scriptable "
                             f"({type(exc).__name__})", hint="train it with descriptor = \"chebyshev\", or use "
                             "the model folder with the ASE calculator") from None
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    write_bytes(path, buffer.getvalue())
    return scripted


__all__: List[str] = ["ExportedModel", "ExportedSharedDescriptor", "export_torchscript", "exported_module"]
