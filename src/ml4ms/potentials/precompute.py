r"""Descriptors and their position Jacobians computed once, for fast training on forces.

A potential's descriptor does not change while its networks train, so the
features :math:`X_a` of every training atom and their Jacobians
:math:`J_{a f b} = \partial X_{a f} / \partial \mathbf r_b` can be computed
once. Forces then follow by the chain rule through the (small) networks
only,

.. math::

    \mathbf F_b = -\sum_{a, f} \frac{\partial E}{\partial X_{a f}} J_{a f b},

so an epoch costs a network pass and one small matrix product per
structure instead of a second-order pass through the descriptor (about 5×
faster on the ænet TiO2 set).

The Jacobians are assembled from the derivatives with respect to the pair
vectors :math:`\mathbf D_p = \mathbf r_{j_p} - \mathbf r_{i_p}` (+ cell
shift): atom *a*'s features depend only on the pairs with :math:`i_p = a`,
so :math:`\partial X_{i_p f}/\partial \mathbf D_p` of every pair
(:meth:`~ml4ms.potentials.model.NeuralPotential.pair_gradients`: analytic
for Chebyshev, one reverse-mode pass per feature for ACSF) holds them all,
and :math:`J_{a f b}` collects
:math:`+\partial X/\partial \mathbf D_p` at :math:`b = j_p` and
:math:`-\partial X/\partial \mathbf D_p` at :math:`b = a`. Structures are
stored in groups of equal atom count (dense ``(n, F, n, 3)`` blocks in
float32), which suits the small periodic cells of DFT training sets: the
ænet TiO2 training set (6937 cells, 147,740 atoms, 38 features) takes
about 1.9 GB.
"""

import time

import numpy as np

from ..batch import _torch, pair_vectors, torch_dtype

#: :class:`JacobianSet` reports its estimate of the whole after this many passes and this share of the atoms
ESTIMATE_PASSES = 2
ESTIMATE_SHARE = 0.02


def _chunks(sizes, batch_atoms):
    """``[(n_atoms, members), ...]``: the passes of :class:`JacobianSet`, equal-size structures, about ``batch_atoms``
    atoms each, by atom count and then in order.

    Examples
    --------
    >>> [(int(n), m.tolist()) for n, m in _chunks(np.array([2, 3, 2, 2]), batch_atoms=4)]
    [(2, [0, 2]), (2, [3]), (3, [1])]
    """
    out = []
    for n in np.unique(sizes):
        members = np.flatnonzero(sizes == n)
        per = max(1, int(batch_atoms) // int(n))
        out.extend((n, members[c0:c0 + per]) for c0 in range(0, len(members), per))
    return out


def _jacobian_chunk(model, frames):
    """Features (s, n, F) and Jacobians (s, n, F, n, 3) of equal-size structures."""
    torch = _torch()
    t = model.tensors(frames)
    n = len(frames[0])
    s = len(frames)
    D = pair_vectors(t.positions, t.cell, t.i, t.j, t.shifts)
    X, G = model.pair_gradients(t, D)  # (n_atoms, F), (pairs, F, 3)
    F = X.shape[1]
    i, j = t.i.cpu().numpy(), t.j.cpu().numpy()
    owner = i // n
    a, b = i - owner * n, j - owner * n
    rows = torch.from_numpy(owner * n * n + a * n + b).to(D.device)
    diag = torch.from_numpy(owner * n * n + a * n + a).to(D.device)
    J = torch.zeros(s * n * n, F, 3, dtype=D.dtype, device=D.device)
    J.index_add_(0, rows, G)
    J.index_add_(0, diag, -G)
    J = J.reshape(s, n, n, F, 3).permute(0, 1, 3, 2, 4)
    return X.detach().reshape(s, n, F), J.to(torch.float32).contiguous(), t.species_index.reshape(s, n)


class JacobianSet:
    """Features, Jacobians and labels of many structures, grouped by atom count.

    Parameters
    ----------
    model : NeuralPotential
        Initialised (species and descriptor settings fixed).
    frames : list of ase.Atoms
    energies : array-like (n_frames,)
        Total energies (eV).
    forces : list of arrays (n_atoms, 3)
    batch_atoms : int
        Atoms per Jacobian pass (memory of the pass grows with it).
    progress : bool
        tqdm bar over structures.
    on_estimate : callable, optional
        Called once, early (after a few passes and 2 % of the atoms, in a
        seeded random order), with the estimated seconds of the whole
        precomputation: a long one can be announced (or stopped) before most
        of it is spent.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> from ml4ms.potentials.model import NeuralPotential
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> a.rattle(0.05, seed=1)
    >>> m = NeuralPotential(hidden=(4,), descriptor_params={"radial_order": 3, "angular_order": 2})
    >>> m = m.initialize([a], [-10.0])
    >>> js = JacobianSet(m, [a], [-10.0], [np.zeros((2, 3))], progress=False)
    >>> e, f = js.energies_forces(m, m.torch_parameters(False), js.groups([0]))
    >>> bool(np.allclose(f[0].numpy(), m.compute(a)[1]))
    True
    """

    def __init__(self, model, frames, energies, forces, batch_atoms=3000, progress=True, on_estimate=None):
        from tqdm.auto import tqdm

        torch = _torch()
        dt = torch_dtype(model.dtype)
        #: where the features, Jacobians and labels are kept: the potential's device
        self.device = model.torch_device()
        sizes = np.array([len(a) for a in frames])
        comp = model.composition(frames)
        #: energies above the per-element reference energies (eV), what the networks fit
        self.residual = torch.as_tensor(np.asarray(energies, dtype=float) - comp @ model.reference_energies_,
                                        dtype=dt, device=self.device)
        self.group_of = np.empty(len(frames), dtype=np.int64)
        self.slot_of = np.empty(len(frames), dtype=np.int64)
        self.blocks = []
        chunks = _chunks(sizes, batch_atoms)
        parts, done, told, total = {}, 0, on_estimate is None, float(sizes.sum())
        bar = tqdm(total=len(frames), desc="descriptor Jacobians", unit="structure", disable=not progress)
        t0 = time.perf_counter()
        # the passes in a seeded random order: the first ones time a fair sample of the cells (for on_estimate)
        for count, c in enumerate(np.random.default_rng(0).permutation(len(chunks)), 1):
            members = chunks[c][1]
            parts[c] = _jacobian_chunk(model, [frames[k] for k in members])
            bar.update(len(members))
            done += int(sizes[members].sum())
            if not told and (count == len(chunks) or (count >= ESTIMATE_PASSES and done >= ESTIMATE_SHARE * total)):
                told = True
                on_estimate((time.perf_counter() - t0) * total / done)
        for g, n in enumerate(np.unique(sizes)):
            mine = [c for c in range(len(chunks)) if chunks[c][0] == n]  # in order: the slots follow the members
            members = np.concatenate([chunks[c][1] for c in mine])
            X, J, S = (torch.cat(t) for t in zip(*(parts.pop(c) for c in mine)))
            F = torch.as_tensor(np.stack([np.asarray(forces[k], dtype=float) for k in members]), dtype=dt,
                                device=self.device)
            self.blocks.append({"n": int(n), "X": X.to(dt), "J": J, "species": S, "forces": F})
            self.group_of[members] = g
            self.slot_of[members] = np.arange(len(members))
        bar.close()

    def groups(self, indices):
        """``[(block, slots, positions_in_indices), ...]`` of a batch of structure indices."""
        indices = np.asarray(indices, dtype=np.int64)
        out = []
        g_of = self.group_of[indices]
        for g in np.unique(g_of):
            where = np.flatnonzero(g_of == g)
            out.append((self.blocks[g], _torch().from_numpy(self.slot_of[indices[where]]).to(self.device), where))
        return out

    def energies_forces(self, model, params, groups, forces=True, create_graph=False):
        """Residual energies (per group, (b,)) and forces (per group, (b, n, 3)) of a batch."""
        torch = _torch()
        Xs = [blk["X"][slots] for blk, slots, _ in groups]
        flat = torch.cat([x.reshape(-1, x.shape[-1]) for x in Xs])
        species = torch.cat([blk["species"][slots].reshape(-1) for blk, slots, _ in groups])
        sizes = np.concatenate([np.full(len(slots), blk["n"]) for blk, slots, _ in groups])
        structure = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes)).to(flat.device)
        if forces:
            flat = flat.detach().requires_grad_(True)
        ea = model.network_energies(flat, species, params, structure)
        energies, start, bounds = [], 0, []
        for (blk, slots, _), x in zip(groups, Xs):
            m = x.shape[0] * x.shape[1]
            energies.append(ea[start:start + m].reshape(x.shape[0], x.shape[1]).sum(1))
            bounds.append((start, m))
            start += m
        if not forces:
            return energies, None
        (c,) = torch.autograd.grad(ea.sum(), flat, create_graph=create_graph)
        out = []
        for (blk, slots, _), (s0, m) in zip(groups, bounds):
            # one product per structure on a view of its stored Jacobian: gathering the batch's Jacobians
            # first copied them, which took longer than the products
            b, n = len(slots), blk["n"]
            cs = c[s0:s0 + m].reshape(b, -1)
            rows = [cs[k] @ blk["J"][s].reshape(-1, n * 3).to(c.dtype) for k, s in enumerate(slots.tolist())]
            out.append(-torch.stack(rows).reshape(b, n, 3))
        return energies, out
