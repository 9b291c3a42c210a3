"""TorchScript export of a Chebyshev :class:`~ml4ms.potentials.NeuralPotential`.

The exported file runs with PyTorch alone (``torch.jit.load``), for hosts
that embed TorchScript models (C++ codes, LAMMPS-style pair styles, other
Python stacks). The host supplies the neighbour list, as for MACE or NequIP
exports; the module computes the Chebyshev descriptor, the standardisation,
the per-element networks and, by autograd inside the module, forces and the
virial.

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
model's (float32 or float64), which forces and virial have; the reference
energies are added in float64. One structure per call; call it with
autograd enabled (not under ``torch.no_grad()``), since forces come from
autograd inside the module. The model file
(JSON + arrays) stays the reference format; this is a deployment copy.
A committee exports as one module (:class:`ExportedCommittee`) that
returns the members' mean energy, forces and virial.

The angular term here sums over explicit neighbour triplets (TorchScript
cannot run the padded-block layout of
:func:`~ml4ms.descriptors.chebyshev.chebyshev_features`); a test pins both to
the same numbers. TorchScript is in maintenance in PyTorch 2.x; the export
suppresses its deprecation warning.
"""

import io
import math
import warnings
from typing import List, Tuple

import numpy as np
import torch

from ..batch import torch_dtype
from ..descriptors.chebyshev import type_weights
from ..errors import InputError
from ..outputs import write_bytes
from .committee import Committee, as_committee


def _chebyshev(x: torch.Tensor, order: int) -> torch.Tensor:
    values = [torch.ones_like(x), x]
    for _ in range(2, order + 1):
        values.append(2.0 * x * values[-1] - values[-2])
    return torch.stack(values[:order + 1], -1)


def _cutoff(r: torch.Tensor, rc: float) -> torch.Tensor:
    return 0.5 * (torch.cos(r * (math.pi / rc)) + 1.0)


def _radial(r: torch.Tensor, i: torch.Tensor, w: torch.Tensor, n_atoms: int, rc: float,
            order: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Radial expansion (n_atoms, order + 1) and its species-weighted copy."""
    k = torch.nonzero(r < rc).squeeze(1)
    T = _chebyshev(2.0 * r[k] / rc - 1.0, order) * _cutoff(r[k], rc)[:, None]
    plain = torch.zeros(n_atoms, order + 1, dtype=r.dtype).index_add(0, i[k], T)
    return plain, torch.zeros(n_atoms, order + 1, dtype=r.dtype).index_add(0, i[k], T * w[k][:, None])


class ExportedPotential(torch.nn.Module):
    """The scriptable module; build it with :func:`export_torchscript`."""

    def __init__(self, model):
        super().__init__()
        s = model.descriptor_settings()
        dt = torch_dtype(model.dtype)
        self.radial_cutoff = float(s["radial_cutoff"])
        self.angular_cutoff = float(s["angular_cutoff"])
        self.radial_order = int(s["radial_order"])
        self.angular_order = int(s["angular_order"])
        self.cutoff = float(model.cutoff())
        self.weighted = len(model.species_) > 1
        self.cell_mean = bool(model.cell_mean)
        self.energy_scale = float(model.energy_scale_)
        lookup = -torch.ones(max(model.species_) + 1, dtype=torch.long)
        for k, z in enumerate(model.species_):
            lookup[int(z)] = k
        self.register_buffer("lookup", lookup)
        weights = type_weights(len(model.species_)) if self.weighted else [0.0]
        self.register_buffer("type_weights", torch.tensor(weights, dtype=dt))
        self.register_buffer("feature_mean", torch.tensor(model.feature_mean_, dtype=dt))
        self.register_buffer("feature_std", torch.tensor(model.feature_std_, dtype=dt))
        cm, cs = (model.cell_feature_mean_, model.cell_feature_std_) if self.cell_mean else (np.zeros(1), np.ones(1))
        self.register_buffer("cell_feature_mean", torch.tensor(cm, dtype=dt))
        self.register_buffer("cell_feature_std", torch.tensor(cs, dtype=dt))
        self.register_buffer("reference", torch.tensor(model.reference_energies_, dtype=torch.float64))
        self.networks = torch.nn.ModuleList()
        skips = []  # the linear terms (zeros without ``linear``), one row per species
        for layers in model.weights_:
            layers, skip = model.split_layers(layers)
            n_in = np.asarray(layers[0]).shape[0]
            skips.append(np.zeros(n_in) if skip is None else np.asarray(skip))
            net = torch.nn.Sequential()
            for k in range(0, len(layers), 2):
                w, b = np.asarray(layers[k]), np.asarray(layers[k + 1])
                lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=dt)
                with torch.no_grad():
                    lin.weight.copy_(torch.tensor(w.T, dtype=dt))
                    lin.bias.copy_(torch.tensor(b, dtype=dt))
                net.append(lin)
                if k + 2 < len(layers):
                    net.append(torch.nn.Tanh())
            self.networks.append(net.requires_grad_(False))
        self.register_buffer("skip", torch.tensor(np.stack(skips), dtype=dt))

    def features(self, species: torch.Tensor, D: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                 n_atoms: int) -> torch.Tensor:
        """Chebyshev features (n_atoms, F) from pair vectors ``D`` (channel layout of the model)."""
        dt = D.dtype
        r = torch.sqrt((D * D).sum(1))
        w = self.type_weights[species[j]]
        radial, radial_w = _radial(r, i, w, n_atoms, self.radial_cutoff, self.radial_order)
        # angular: every ordered pair of neighbours (p, q), p != q, of the same centre; half the sum
        k = torch.nonzero(r < self.angular_cutoff).squeeze(1)
        ia = i[k]
        order = torch.argsort(ia)
        k, ia = k[order], ia[order]
        counts = torch.bincount(ia, minlength=n_atoms)
        start = torch.cumsum(counts, 0) - counts
        reps = counts[ia]
        p = torch.repeat_interleave(torch.arange(k.shape[0]), reps)
        offset = torch.arange(p.shape[0]) - torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
        q = start[ia[p]] + offset
        keep = p != q
        p, q = p[keep], q[keep]
        Dp, Dq = D[k[p]], D[k[q]]
        rp, rq = r[k[p]], r[k[q]]
        cos = ((Dp * Dq).sum(1) / (rp * rq)).clamp(-1.0, 1.0)
        fpq = _cutoff(rp, self.angular_cutoff) * _cutoff(rq, self.angular_cutoff)
        Tc = 0.5 * fpq[:, None] * _chebyshev(cos, self.angular_order)
        centre = ia[p]
        angular = torch.zeros(n_atoms, Tc.shape[1], dtype=dt).index_add(0, centre, Tc)
        if not self.weighted:
            return torch.cat([radial, angular], 1)
        wpq = (w[k[p]] * w[k[q]])[:, None]
        angular_w = torch.zeros(n_atoms, Tc.shape[1], dtype=dt).index_add(0, centre, Tc * wpq)
        return torch.cat([radial, angular, radial_w, angular_w], 1)

    def energy(self, positions: torch.Tensor, species: torch.Tensor, cell: torch.Tensor, i: torch.Tensor,
               j: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Total energy (eV, float64) of one structure (differentiable in ``positions`` and ``cell``)."""
        D = positions[j] - positions[i] + shifts @ cell
        return self.energy_of_features(self.features(species, D, i, j, positions.shape[0]), species)

    def energy_of_features(self, X: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Total energy (eV, float64) from the raw features ``X`` (n_atoms, F) of one structure."""
        H = (X - self.feature_mean[species]) / self.feature_std[species]
        if self.cell_mean:
            c = (H.mean(0) - self.cell_feature_mean) / self.cell_feature_std
            H = torch.cat([H, c.expand(H.shape[0], c.shape[0])], 1)
        out = torch.zeros(H.shape[0], dtype=H.dtype)
        for s, net in enumerate(self.networks):
            idx = torch.nonzero(species == s).squeeze(1)
            h = H[idx]
            out = out.index_add(0, idx, (net(h).squeeze(1) + h @ self.skip[s]) * self.energy_scale)
        return (out.double() + self.reference[species]).sum()

    def forward(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, i: torch.Tensor,
                j: torch.Tensor, shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        species = _species(positions, numbers, cell, i, j, shifts, self.lookup)
        dt = self.feature_mean.dtype
        pos = positions.detach().to(dt).requires_grad_(True)
        eps = torch.zeros(3, 3, dtype=dt).requires_grad_(True)
        strain = torch.eye(3, dtype=dt) + eps
        e = self.energy(pos @ strain, species, cell.detach().to(dt) @ strain, i.long(), j.long(), shifts.to(dt))
        return _energy_forces_virial(e, pos, eps)


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


class ExportedCommittee(torch.nn.Module):
    """A committee's mean as one scriptable module (same ``forward`` as :class:`ExportedPotential`).

    Members that share the descriptor settings share one descriptor pass.
    """

    def __init__(self, models):
        super().__init__()
        first = models[0]
        for m in models[1:]:
            if list(m.species_) != list(first.species_) or m.dtype != first.dtype:
                raise InputError("committee members differ in species or dtype; they cannot be exported together",
                                 hint="export the members one by one")
        self.members = torch.nn.ModuleList([ExportedPotential(m) for m in models])
        self.cutoff = max(float(m.cutoff()) for m in models)
        self.n_members = len(models)
        self.shared = all(m.descriptor_settings() == first.descriptor_settings() for m in models)
        self.register_buffer("lookup", self.members[0].lookup.clone())
        self.register_buffer("feature_mean", self.members[0].feature_mean.clone())  # carries the dtype

    def forward(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, i: torch.Tensor,
                j: torch.Tensor, shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        species = _species(positions, numbers, cell, i, j, shifts, self.lookup)
        dt = self.feature_mean.dtype
        pos = positions.detach().to(dt).requires_grad_(True)
        eps = torch.zeros(3, 3, dtype=dt).requires_grad_(True)
        strain = torch.eye(3, dtype=dt) + eps
        p, c, i, j, S = pos @ strain, cell.detach().to(dt) @ strain, i.long(), j.long(), shifts.to(dt)
        total = torch.zeros((), dtype=torch.float64)
        if self.shared:
            D = p[j] - p[i] + S @ c
            X = self.members[0].features(species, D, i, j, p.shape[0])
            for member in self.members:
                total = total + member.energy_of_features(X, species)
        else:
            for member in self.members:
                total = total + member.energy(p, species, c, i, j, S)
        return _energy_forces_virial(total / self.n_members, pos, eps)


def export_torchscript(model, path):
    """Write ``model`` (a fitted Chebyshev :class:`NeuralPotential`, or a committee) as a TorchScript file.

    Parameters
    ----------
    model : NeuralPotential or Committee
        Fitted, with ``descriptor="chebyshev"``. A committee is
        written as one module that returns the members' mean
        (:class:`ExportedCommittee`).
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
    models = as_committee(model).members
    for m in models:
        m.require_fitted()
        if m.descriptor != "chebyshev":
            raise InputError(f"TorchScript export supports the Chebyshev descriptor only, not {m.descriptor!r}",
                             hint="train the potential with descriptor = \"chebyshev\"")
        if m.cell_mean and not hasattr(m, "cell_feature_mean_"):
            raise InputError("cell_mean is on but the model has no cell-average statistics",
                             hint="retrain (or initialize) the potential with cell_mean = true")
    module = ExportedCommittee(models) if isinstance(model, (Committee, list, tuple)) else ExportedPotential(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    write_bytes(path, buffer.getvalue())
    return scripted


__all__: List[str] = ["ExportedCommittee", "ExportedPotential", "export_torchscript"]
