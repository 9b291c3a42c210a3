r"""Atom-centred symmetry functions (Behler–Parrinello G1, G2, G3, G4, G5).

The maths lives in the pure PyTorch function :func:`acsf_features`, which is
differentiable with respect to positions and to a homogeneous strain of the
cell (forces and stress of a neural-network potential come from autograd).
:class:`ACSF` is the scikit-learn transformer around it.

Definitions (J. Behler, J. Chem. Phys. 134, 074106 (2011)), with the cosine
cutoff :math:`f_c(r) = \tfrac12[\cos(\pi r/R_c) + 1]` for :math:`r < R_c`
and 0 beyond, :math:`r_{ij} = |\mathbf r_j + \mathbf S\cdot\mathbf h -
\mathbf r_i|` over all periodic images and :math:`\cos\theta_{ijk}` the angle
at the centre *i*:

.. math::

    G^1_i &= \sum_{j} f_c(r_{ij}) \\
    G^2_i &= \sum_{j} e^{-\eta (r_{ij} - R_s)^2} f_c(r_{ij}) \\
    G^3_i &= \sum_{j} \cos(\kappa r_{ij}) f_c(r_{ij}) \\
    G^4_i &= \sum_{j<k} 2^{1-\zeta} (1 + \lambda\cos\theta_{ijk})^\zeta
             e^{-\eta (r_{ij}^2 + r_{ik}^2 + r_{jk}^2)}
             f_c(r_{ij}) f_c(r_{ik}) f_c(r_{jk}) \\
    G^5_i &= \sum_{j<k} 2^{1-\zeta} (1 + \lambda\cos\theta_{ijk})^\zeta
             e^{-\eta (r_{ij}^2 + r_{ik}^2)} f_c(r_{ij}) f_c(r_{ik})

The sums over *j < k* run over unordered pairs of distinct neighbours. The
radial functions are resolved by the neighbour's species and the angular ones
by the unordered species pair of the two neighbours; the centre's own species
is not encoded (train one network per element, as in Behler–Parrinello).
Layout, identical to ``dscribe.descriptors.ACSF`` (species sorted by atomic
number): for every species *s*, ``[G1, G2(all params), G3(all params)]``;
then for every species pair (a ≥ b in that order, index a(a+1)/2 + b),
``[G4(all params), G5(all params)]``. With ``g1=True`` (the default, as in
DScribe) values agree with DScribe 2.1 to rounding.

Implementation: a vectorised neighbour search over periodic images
(:func:`neighbor_list`); three-body sums on padded (centre, neighbour,
neighbour) blocks grouped by neighbour species (:func:`center_blocks`), with
the j–k factor of G4 looked up from the pair list instead of recomputed per
triplet; small structures are featurized together in one call
(:class:`BatchedLocal`), on one torch thread (parallelism: ``n_jobs``).
For a neural-network potential, call :func:`acsf_features` on the fields of
an :class:`~ml4ms.batch.AtomsBatch` (:func:`~ml4ms.batch.collate`) with
``positions`` (and a zero ``strain``) requiring grad.
"""

import math

import numpy as np
import torch

from ..batch import _torch, collate, pair_vectors, single_thread, torch_dtype
from ..errors import InputError
from .base import LocalDescriptor

#: Default radial parameters (eta in 1/Å², Rs in Å): eight Behler-style widths
#: from 0.003 to 1.43 Å⁻², centred at 0.
DEFAULT_G2 = [(eta, 0.0) for eta in (0.003214, 0.035711, 0.071421, 0.124987,
                                     0.214264, 0.357106, 0.714213, 1.428426)]
#: Default angular parameters (eta, zeta, lambda): 3 η × ζ ∈ {1, 2, 4} × λ = ±1.
#: With two species the defaults give 2 × 9 + 3 × 18 = 72 functions (16 G2 and
#: 54 G4, the counts of Artrith & Urban's TiO2 set, plus DScribe's G1).
DEFAULT_G4 = [(eta, zeta, lam) for eta in (0.000357, 0.028569, 0.089277)
              for zeta in (1.0, 2.0, 4.0) for lam in (-1.0, 1.0)]


def cosine_cutoff(r: torch.Tensor, r_cut: float) -> torch.Tensor:
    """``0.5 (cos(π r / r_cut) + 1)`` for r < r_cut, else 0 (torch; scriptable)."""
    return torch.where(r < r_cut, 0.5 * (torch.cos(r * (math.pi / r_cut)) + 1.0), torch.zeros_like(r))


def center_blocks(centers, n_atoms, group=None, n_groups=1, per_element=1, max_elements=1_000_000):
    """Blocks of consecutive centres for dense (centre, neighbour, neighbour) work.

    Three-body terms are computed on padded arrays of shape (b, M, M): no
    per-triplet gathers, only contiguous arithmetic and batched matrix
    products. Within a centre, neighbours are laid out by ``group`` (the
    neighbour's species): group g occupies columns ``bounds[g]:bounds[g+1]``
    of every row, so sums over species pairs are sums over sub-blocks.
    Blocks keep ``b · M² · per_element`` under ``max_elements``.

    Parameters
    ----------
    centers : ndarray of int (n_pairs,), sorted
    n_atoms : int
    group : ndarray of int (n_pairs,), optional
        Group (species index) of each pair's neighbour; all 0 if omitted.
    n_groups : int

    Returns
    -------
    list of (c0, c1, pairs, M, slot, bounds)
        Centres ``c0:c1`` own the pairs ``pairs`` (indices into the pair
        list); ``slot`` is the flat index ``(centre − c0) · M + column`` of
        each of them in the padded block; ``bounds`` (n_groups + 1,) are the
        column ranges of the groups.

    Examples
    --------
    >>> [b[3] for b in center_blocks(np.array([0, 0, 1]), 2)]
    [2]
    """
    centers = np.asarray(centers, dtype=np.int64)
    group = np.zeros(len(centers), np.int64) if group is None else np.asarray(group, dtype=np.int64)
    counts = np.zeros((n_atoms, n_groups), np.int64)
    np.add.at(counts, (centers, group), 1)
    order = np.lexsort((group, centers))
    key = centers[order] * n_groups + group[order]
    flat_counts = counts.reshape(-1)
    starts = np.cumsum(flat_counts) - flat_counts
    local = np.arange(len(order)) - starts[key]
    pair_start = np.concatenate([[0], np.cumsum(counts.sum(1))])
    blocks = []
    c0 = 0
    while c0 < n_atoms:
        c1 = c0 + 1
        widths = counts[c0].copy()
        while c1 < n_atoms:
            w = np.maximum(widths, counts[c1])
            m = int(w.sum())
            if (c1 + 1 - c0) * m * m * per_element > max_elements:
                break
            widths = w
            c1 += 1
        bounds = np.concatenate([[0], np.cumsum(widths)])
        M = int(bounds[-1])
        p0, p1 = int(pair_start[c0]), int(pair_start[c1])
        pairs = order[p0:p1]
        g = group[pairs]
        slot = (centers[pairs] - c0) * M + bounds[g] + local[p0:p1]
        blocks.append((c0, c1, pairs, M, slot, bounds))
        c0 = c1
    return blocks


def padded(values: torch.Tensor, slot: torch.Tensor, rows: int, M: int, fill: float = 0.0) -> torch.Tensor:
    """Scatter per-pair ``values`` (p, ...) into a padded (rows, M, ...) tensor (scriptable)."""
    tail = [int(n) for n in values.shape[1:]]
    base = torch.full([rows * M] + tail, fill, dtype=values.dtype, device=values.device)
    return base.index_put((slot,), values).reshape([rows, M] + tail)


class BatchedLocal(LocalDescriptor):
    """Local descriptor that featurizes small structures together, in one torch call.

    Subclasses write ``_batch_core(batch)`` returning the (n_atoms, F)
    tensor of an :class:`~ml4ms.batch.AtomsBatch`, and ``_cutoff()``.
    """

    #: structures are grouped up to this many atoms per call
    _batch_atoms = 256

    def _featurize_batch(self, frames):
        torch = _torch()
        batch = collate(frames, self._cutoff(), self.species_, self.dtype)
        with torch.no_grad(), single_thread():
            out = self._batch_core(batch).to(torch.float64).numpy()
        return batch.split(out)


def feature_gradients(func, batch, strain=False):
    """Jacobian of ``func(positions, strain) -> (n_atoms, F)`` by forward-mode autograd.

    One forward pass with dual numbers per position coordinate (and per
    strain component): 3 n_atoms (+ 9) passes, far cheaper than one
    reverse pass per output feature. Returns ``dX/dr`` of shape
    (n_atoms, F, n_atoms, 3) and, if ``strain``, ``dX/dε`` of shape
    (n_atoms, F, 3, 3), as numpy arrays.
    """
    import warnings

    torch = _torch()
    import torch.autograd.forward_ad as fwAD

    with warnings.catch_warnings():  # torch's first make_dual loads jit-scripted decompositions
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        with fwAD.dual_level():
            fwAD.make_dual(torch.zeros(1), torch.zeros(1))
    pos = batch.positions
    n = pos.shape[0]
    eps = torch.zeros(3, 3, dtype=pos.dtype)
    columns = []
    with fwAD.dual_level():
        for k in range(3 * n + (9 if strain else 0)):
            if k < 3 * n:
                tangent = torch.zeros(3 * n, dtype=pos.dtype)
                tangent[k] = 1.0
                out = func(fwAD.make_dual(pos, tangent.reshape(n, 3)), eps if strain else None)
            else:
                tangent = torch.zeros(9, dtype=pos.dtype)
                tangent[k - 3 * n] = 1.0
                out = func(pos, fwAD.make_dual(eps, tangent.reshape(3, 3)))
            t = fwAD.unpack_dual(out).tangent
            columns.append(torch.zeros_like(out) if t is None else t)
    J = torch.stack(columns, -1).detach().numpy()
    d_pos = J[..., : 3 * n].reshape(J.shape[0], J.shape[1], n, 3)
    if strain:
        return d_pos, J[..., 3 * n:].reshape(J.shape[0], J.shape[1], 3, 3)
    return d_pos


def structure_gradients(func, batch, strain=False):
    """Features and their position (and strain) Jacobians of one structure, as numpy."""
    torch = _torch()
    with single_thread():
        grads = feature_gradients(func, batch, strain=strain)
        with torch.no_grad():
            X = func(batch.positions).to(torch.float64).numpy()
    if strain:
        return X, grads[0].astype(np.float64), grads[1].astype(np.float64)
    return X, grads.astype(np.float64)


# ------------------------------------------------------------------ ACSF core --


def _as_param_array(params, width, name):
    if params is None or len(params) == 0:
        return np.zeros((0, width))
    arr = np.asarray(params, dtype=float)
    if width == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != width or not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be a list of {width}-tuples of numbers, got {params!r}")
    return arr


def acsf_features(positions, species_index, cell, i, j, shifts, *, n_species, r_cut,
                  g2=(), g3=(), g4=(), g5=(), g1=True, strain=None, structure=None, vectors=None):
    """Behler–Parrinello symmetry functions of every atom (pure PyTorch).

    Parameters
    ----------
    positions : torch.Tensor (n_atoms, 3)
        May require grad.
    species_index : torch.Tensor of int (n_atoms,)
        Index of every atom's species in 0..n_species-1.
    cell : torch.Tensor (3, 3)
    i, j : torch.Tensor of int (n_pairs,)
        Neighbour pairs, sorted by ``i``, containing every pair within
        ``r_cut`` (e.g. from :func:`neighbor_list`).
    shifts : torch.Tensor of int (n_pairs, 3)
    n_species : int
    r_cut : float
    g2, g3, g4, g5 : sequences of (eta, Rs), (kappa,), (eta, zeta, lambda)
    g1 : bool
        Include G1 (the coordination-like cutoff sum).
    strain : torch.Tensor (3, 3), optional
        Homogeneous strain ε applied to positions and cell.
    structure : ndarray of int (n_atoms,), optional
        For a batch of several structures in one call (block-diagonal pairs,
        ``cell`` of shape (n_atoms, 3, 3)): the non-decreasing structure
        index of every atom (:attr:`~ml4ms.batch.AtomsBatch.structure`). Only used to keep
        the internal pair lookup table small.
    vectors : torch.Tensor (n_pairs, 3), optional
        The pair vectors themselves (as :func:`chebyshev_features`); the
        G4 pair table is then not used, so every atom's features depend
        only on its own pairs.

    Returns
    -------
    torch.Tensor (n_atoms, n_features)
        In the layout described in the module docstring.
    """
    torch = _torch()
    g2 = _as_param_array(g2, 2, "g2_params")
    g3 = _as_param_array(g3, 1, "g3_params")
    g4 = _as_param_array(g4, 3, "g4_params")
    g5 = _as_param_array(g5, 3, "g5_params")
    n_atoms = positions.shape[0]
    dt = positions.dtype
    n_rad = int(bool(g1)) + len(g2) + len(g3)
    n_ang = len(g4) + len(g5)

    D = pair_vectors(positions, cell, i, j, shifts, strain) if vectors is None else vectors
    r2 = (D * D).sum(1)
    r = torch.sqrt(r2)
    keep = r < r_cut
    if not bool(keep.all()):  # pairs from a longer list (a calculator's skin): every per-pair array alike
        idx = torch.nonzero(keep).squeeze(1)
        D, r2, r, i, j, shifts = D[idx], r2[idx], r[idx], i[idx], j[idx], shifts[idx]
    fc = cosine_cutoff(r, r_cut)
    sj = species_index[j]
    blocks = []
    if n_rad:
        cols = []
        if g1:
            cols.append(fc[:, None])
        if len(g2):
            eta = torch.as_tensor(g2[:, 0], dtype=dt, device=D.device)
            rs = torch.as_tensor(g2[:, 1], dtype=dt, device=D.device)
            cols.append(torch.exp(-eta * (r[:, None] - rs) ** 2) * fc[:, None])
        if len(g3):
            kappa = torch.as_tensor(g3[:, 0], dtype=dt, device=D.device)
            cols.append(torch.cos(kappa * r[:, None]) * fc[:, None])
        values = torch.cat(cols, 1) if len(cols) > 1 else cols[0]
        out = torch.zeros(n_atoms * n_species, n_rad, dtype=dt, device=D.device)
        out = out.index_add(0, i * n_species + sj, values)
        blocks.append(out.reshape(n_atoms, n_species * n_rad))
    if n_ang:
        etas = sorted({float(e) for e in g4[:, 0]})
        use_table = len(g4) and vectors is None
        table = _pair_table(r2, fc, i, j, shifts, n_atoms, etas, structure) if use_table else None
        blocks.append(_acsf_angular(D, r2, fc, i, species_index[j], n_atoms, n_species, r_cut, g4, g5, table))
    if not blocks:
        return torch.zeros(n_atoms, 0, dtype=dt, device=D.device)
    return torch.cat(blocks, 1) if len(blocks) > 1 else blocks[0]


def _power(base, zeta):
    if float(zeta).is_integer() and 1 <= zeta <= 8:
        out = base
        for _ in range(int(zeta) - 1):
            out = out * base
        return out
    return base.clamp_min(0.0) ** float(zeta)


def species_pair_list(n_species):
    """Unordered species pairs (hi, lo), hi ≥ lo, in DScribe's order."""
    return [(hi, lo) for hi in range(n_species) for lo in range(hi + 1)]


#: Largest lookup table (entries) of :func:`_pair_table`.
_TABLE_MAX = 8_000_000


def _pair_table(r2, fc, i, j, shifts, n_atoms, etas, structure=None):
    """Lookup table of exp(−η r²) f_c(r) for every neighbour pair (j → k, ΔS).

    The j–k factor of a G4 triplet only depends on the pair (j, k), which is
    itself in the neighbour list when r_jk < r_c. Pair (a → b, shift S) of a
    structure with N atoms gets the slot ``base + a·N·C + b·C + code(S)``
    (a, b counted within the structure), with ``code`` linear in S, so the
    slot of the neighbours j (shift S_ij) and k (shift S_ik) of a centre is
    ``left[p_ij] + right[p_ik]``: an outer sum over the padded neighbours,
    no transcendental function per triplet. Slots hold int32 pair ids; absent
    pairs (r_jk ≥ r_c, or j = k) point to a zero row. ``structure`` (per-atom
    structure index, non-decreasing) gives every structure of a batch its own
    block. Returns None when the table would be too large.
    """
    torch = _torch()
    if len(i) == 0:
        return None
    S = shifts.numpy()
    L = np.abs(S).max(0)
    K = 4 * L + 1
    C = int(np.prod(K))
    inp, jnp = i.numpy(), j.numpy()
    if structure is None:
        structure = np.zeros(n_atoms, np.int64)
    counts = np.bincount(structure)
    starts = np.cumsum(counts) - counts
    sizes = counts * counts * C
    if int(sizes.sum()) > _TABLE_MAX:
        return None
    base = np.cumsum(sizes) - sizes
    owner = structure[inp]
    N, b0, first = counts[owner], base[owner], starts[owner]
    il, jl = inp - first, jnp - first
    stride = np.array([K[1] * K[2], K[2], 1], dtype=np.int64)
    enc = S @ stride
    const = int((2 * L) @ stride)
    key = b0 + il * (N * C) + jl * C + enc + const
    eta = torch.as_tensor(etas, dtype=r2.dtype)
    X = torch.exp(-r2[:, None] * eta) * fc[:, None]
    # int32 pair ids (the last id is an all-zero row for absent pairs), then a compact value table
    ids = np.full(int(sizes.sum()), len(key), dtype=np.int32)
    ids[key] = np.arange(len(key), dtype=np.int32)
    zero = torch.zeros(1, dtype=r2.dtype)
    table = (torch.from_numpy(ids), [torch.cat([X[:, k], zero]) for k in range(len(etas))])
    half = int(L @ stride)  # keeps both halves ≥ 0, so padding (0) never leaves the table
    # int32 halves the memory traffic of the (b, M, M) index arrays
    left = torch.from_numpy((b0 + jl * (N * C) - enc + const - half).astype(np.int32))
    right = torch.from_numpy((jl * C + enc + half).astype(np.int32))
    return table, left, right, {e: k for k, e in enumerate(etas)}


def _acsf_angular(D, r2, fc, i, sj, n_atoms, n_species, r_cut, g4, g5, table=None):
    """G4/G5 on padded (centre, neighbour, neighbour) blocks (see :func:`center_blocks`).

    For every species pair (lo ≤ hi) the block holds the neighbours of
    species lo as rows and those of species hi as columns, so every sum is a
    batched dot product of two contiguous (b, M_lo, M_hi) arrays; pairs of
    equal species are counted twice and halved.
    """
    torch = _torch()
    dt = D.dtype
    n_par = len(g4) + len(g5)
    n_sp_pairs = n_species * (n_species + 1) // 2
    rc2 = r_cut * r_cut
    params = [(float(e), float(z), float(lam), True) for e, z, lam in g4]
    params += [(float(e), float(z), float(lam), False) for e, z, lam in g5]
    scale = torch.as_tensor([2.0 ** (1.0 - z) for _, z, _, _ in params], dtype=dt, device=D.device)
    out = []
    for c0, c1, pairs, M, slot, bounds in center_blocks(i.cpu().numpy(), n_atoms, sj.cpu().numpy(), n_species,
                                                        per_element=4):
        b = c1 - c0
        if M < 2:
            out.append(torch.zeros(b, n_sp_pairs * n_par, dtype=dt, device=D.device))
            continue
        slot = torch.from_numpy(slot).to(D.device)
        pairs = torch.from_numpy(pairs).to(D.device)
        P = padded(D[pairs], slot, b, M)
        rr2 = padded(r2[pairs], slot, b, M, 1.0)
        f = padded(fc[pairs], slot, b, M)
        U = P * torch.rsqrt(rr2)[:, :, None]
        e = {eta: torch.exp(rr2 * -eta) * f for eta in sorted({p[0] for p in params})}
        if len(g4) and table is not None:
            (ids, compact), left, right, column = table
            lt = padded(left[pairs], slot, b, M)
            rt = padded(right[pairs], slot, b, M)
        block_values = []
        for hi, lo in species_pair_list(n_species):
            r0, r1, k0, k1 = bounds[lo], bounds[lo + 1], bounds[hi], bounds[hi + 1]
            if r1 == r0 or k1 == k0:
                block_values.append(torch.zeros(b, n_par, dtype=dt, device=D.device))
                continue
            cos = U[:, r0:r1] @ U[:, k0:k1].transpose(1, 2)
            diag = None
            if hi == lo:
                diag = torch.eye(r1 - r0, dtype=torch.bool, device=D.device)
            if len(g4):
                if table is not None:
                    index = ids.index_select(0, (lt[:, r0:r1, None] + rt[:, None, k0:k1]).reshape(-1))
                    Xjk = [v.index_select(0, index).reshape(b, r1 - r0, k1 - k0) for v in compact]
                else:
                    Pa, Pb = P[:, r0:r1], P[:, k0:k1]
                    rjk2 = torch.baddbmm(rr2[:, r0:r1, None] + rr2[:, None, k0:k1], Pa, Pb.transpose(1, 2),
                                         alpha=-2.0).clamp(min=1e-12, max=rc2)
                    # f_c = (cos(π r / 2 r_c))², which is 0 at r ≥ r_c after the clamp
                    fjk = torch.cos(torch.sqrt(rjk2) * (0.5 * math.pi / r_cut)).square()
                    if diag is not None:
                        fjk = fjk.masked_fill(diag, 0.0)
            weights = {}
            angular = {}
            cols = []
            for eta, zeta, lam, with_jk in params:
                if (eta, with_jk) not in weights:
                    W = e[eta][:, r0:r1, None] * e[eta][:, None, k0:k1]
                    if with_jk and table is not None:
                        W = W * Xjk[column[eta]]
                    elif with_jk:
                        W = W * (torch.exp(rjk2 * -eta) * fjk)
                    elif diag is not None:
                        W = W.masked_fill(diag, 0.0)
                    weights[(eta, with_jk)] = W.reshape(b, -1)
                if (zeta, lam) not in angular:
                    base = 1.0 + cos if lam == 1.0 else (1.0 - cos if lam == -1.0 else 1.0 + lam * cos)
                    angular[(zeta, lam)] = _power(base, zeta).reshape(b, -1)
                cols.append((angular[(zeta, lam)] * weights[(eta, with_jk)]).sum(1))
            v = torch.stack(cols, 1)
            block_values.append(v * 0.5 if hi == lo else v)
        out.append((torch.stack(block_values, 1) * scale).reshape(b, n_sp_pairs * n_par))
    return torch.cat(out, 0) if len(out) > 1 else out[0]


# -------------------------------------------------------------- transformer --


class ACSF(BatchedLocal):
    """Behler–Parrinello atom-centred symmetry functions, per atom.

    Parameters
    ----------
    r_cut : float, default 6.0
        Cutoff radius (Å) of every function.
    g2_params : list of (eta, Rs), optional
        ``None`` gives :data:`DEFAULT_G2` (8 functions); ``[]`` gives none.
    g3_params : list of kappa, optional
        ``None`` or ``[]``: none.
    g4_params : list of (eta, zeta, lambda), optional
        ``None`` gives :data:`DEFAULT_G4` (18 functions); ``[]`` gives none.
    g5_params : list of (eta, zeta, lambda), optional
        ``None`` or ``[]``: none.
    g1 : bool, default True
        Include G1 (as DScribe always does).
    species : list of str or int, optional
        Fixed species; learned in ``fit`` if ``None``.
    reduce : {"mean", "sum", "species_mean", None}, default "mean"
        Per-structure reduction of :meth:`transform`; ``transform_local``
        always gives per-atom rows.
    dtype : {"float64", "float32"}, default "float64"
        Precision of the computation.
    n_jobs : int, default 1
    progress : bool, default True

    Notes
    -----
    The feature layout and values equal ``dscribe.descriptors.ACSF`` with
    the same parameters and ``periodic=True`` (see the module docstring).
    Per-atom derivatives come from autograd: :meth:`gradients`.

    Examples
    --------
    >>> from ase.build import bulk
    >>> acsf = ACSF(r_cut=4.0, g2_params=[(0.5, 0.0)], g4_params=[(0.01, 1, 1)])
    >>> X = acsf.fit(bulk("NaCl", "rocksalt", a=5.64)).transform_local(
    ...     bulk("NaCl", "rocksalt", a=5.64))[0]
    >>> X.shape  # 2 species x (G1 + G2) + 3 pairs x G4
    (2, 7)
    """

    def __init__(self, *, r_cut=6.0, g2_params=None, g3_params=None, g4_params=None, g5_params=None,
                 g1=True, species=None, reduce="mean", dtype="float64", n_jobs=1, progress=True):
        self.r_cut = r_cut
        self.g2_params = g2_params
        self.g3_params = g3_params
        self.g4_params = g4_params
        self.g5_params = g5_params
        self.g1 = g1
        self.species = species
        self.reduce = reduce
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.progress = progress

    # parameters with defaults resolved
    def _params(self):
        g2 = DEFAULT_G2 if self.g2_params is None else self.g2_params
        g4 = DEFAULT_G4 if self.g4_params is None else self.g4_params
        g3 = [] if self.g3_params is None else self.g3_params
        g5 = [] if self.g5_params is None else self.g5_params
        return (_as_param_array(g2, 2, "g2_params"), _as_param_array(g3, 1, "g3_params"),
                _as_param_array(g4, 3, "g4_params"), _as_param_array(g5, 3, "g5_params"))

    def _fit_extra(self, records):
        try:
            r_cut = float(self.r_cut)
        except (TypeError, ValueError):
            r_cut = float("nan")
        if not (math.isfinite(r_cut) and r_cut > 0):
            raise InputError(f"r_cut must be a positive number of Å, got {self.r_cut!r}")
        self._params()
        torch_dtype(self.dtype)

    def _n_features(self):
        g2, g3, g4, g5 = self._params()
        n = len(self.species_)
        return (int(bool(self.g1)) + len(g2) + len(g3)) * n + (len(g4) + len(g5)) * n * (n + 1) // 2

    def _core(self, batch):
        g2, g3, g4, g5 = self._params()
        r_cut = float(self.r_cut)
        n_species = len(self.species_)
        structure = batch.structure.numpy()

        def func(positions, strain=None):
            return acsf_features(positions, batch.species_index, batch.cell, batch.i, batch.j, batch.shifts,
                                 n_species=n_species, r_cut=r_cut, g2=g2, g3=g3, g4=g4, g5=g5, g1=self.g1,
                                 strain=strain, structure=structure)

        return func

    def _cutoff(self):
        return float(self.r_cut)

    def _batch_core(self, batch):
        return self._core(batch)(batch.positions)

    def gradients(self, atoms, strain=False):
        """Per-atom features and their derivatives for one structure.

        Parameters
        ----------
        atoms : ase.Atoms
        strain : bool, default False
            Also return derivatives with respect to a homogeneous strain ε
            of positions and cell (for stress).

        Returns
        -------
        features : ndarray (n_atoms, n_features)
        d_positions : ndarray (n_atoms, n_features, n_atoms, 3)
            ``d_positions[a, f, b, x] = ∂X[a, f] / ∂r[b, x]``.
        d_strain : ndarray (n_atoms, n_features, 3, 3), only if ``strain``
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        self._check_species([atoms])
        batch = collate([atoms], float(self.r_cut), self.species_, self.dtype)
        return structure_gradients(self._core(batch), batch, strain)

    def get_feature_names_out(self, input_features=None):
        from ase.data import chemical_symbols
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        g2, g3, g4, g5 = self._params()
        sym = [chemical_symbols[z] for z in self.species_]
        names = []
        for s in sym:
            if self.g1:
                names.append(f"G1[{s}]")
            names += [f"G2[{s}](eta={e:g},Rs={rs:g})" for e, rs in g2]
            names += [f"G3[{s}](kappa={k:g})" for (k,) in g3]
        for a in range(len(sym)):
            for b in range(a + 1):
                pair = f"{sym[b]}-{sym[a]}"
                names += [f"G4[{pair}](eta={e:g},zeta={z:g},lambda={lam:g})" for e, z, lam in g4]
                names += [f"G5[{pair}](eta={e:g},zeta={z:g},lambda={lam:g})" for e, z, lam in g5]
        return np.asarray(names, dtype=object)
