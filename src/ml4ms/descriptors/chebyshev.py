r"""Chebyshev descriptor of Artrith, Urban and Ceder (the ænet "AUC" basis).

N. Artrith, A. Urban, G. Ceder, Phys. Rev. B 96, 014112 (2017). The radial
and angular distribution functions around atom *i* are expanded in Chebyshev
polynomials :math:`T_\alpha`; the expansion coefficients are the features:

.. math::

    c^{(2)}_\alpha &= \sum_{j} T_\alpha\!\left(\frac{2 r_{ij}}{R_c^{(2)}} - 1\right)
                      f_c(r_{ij}; R_c^{(2)}),
                      \qquad \alpha = 0 \dots n^{(2)} \\
    c^{(3)}_\alpha &= \sum_{j<k} T_\alpha(\cos\theta_{ijk})\,
                      f_c(r_{ij}; R_c^{(3)})\, f_c(r_{ik}; R_c^{(3)}),
                      \qquad \alpha = 0 \dots n^{(3)}

with the cosine cutoff :math:`f_c(r; R_c) = \tfrac12[\cos(\pi r / R_c) + 1]`
(0 beyond :math:`R_c`), sums over all periodic images and *j < k* over
unordered pairs of distinct neighbours.

The angular expansion carries no radial information beyond the cutoff
factors: first-shell and second-shell angles inside :math:`R_c^{(3)}` are
summed together. With ``angular_radial_order`` *P* > 0 (an ml4ms
extension; 0, the default, is ænet's basis) the angular terms are also
resolved along one leg of each angle,

.. math::

    c^{(3)}_{\alpha p} = \tfrac12 \sum_{j \ne k} T_\alpha(\cos\theta_{ijk})\,
        g_p(r_{ij})\, f_c(r_{ik}; R_c^{(3)}), \qquad
    g_p(r) = T_p\!\left(\frac{2 r}{R_c^{(3)}} - 1\right) f_c(r; R_c^{(3)}),
    \qquad p = 0 \dots P,

where :math:`p = 0` is the ænet term (:math:`g_0 = f_c`): one leg of the
radial-times-angular resolution of SOAP/ACE-type bases, at a cost linear in
*P*. (On the ænet TiO2 set it fits the training cells better but generalises
worse at equal training: docs/studies/tio2-potential.md.)

With more than one species a second, species-weighted copy of both
expansions is appended, in which every neighbour *j* carries the weight
:math:`w_{t_j}` (radial) and every pair the weight :math:`w_{t_j} w_{t_k}`
(angular). The weights are ænet's "type spins": for species sorted by atomic number, the integers
:math:`-\lfloor N/2\rfloor, \dots` counting upwards and skipping 0 when N is
even (2 species: −1, +1; 3 species: −1, 0, +1; 4: −2, −1, +1, +2).
Layout: ``[c2 (n2+1), c3 ((P+1)(n3+1), p-major), c2_weighted,
c3_weighted]``, so the size is ``2 (n2 + 1 + (P+1)(n3 + 1))`` for any number
of species (half that for one species, where the weighted copy would be
zero); with *P* = 0 it is ænet's ``sfbasis``.

The two angular copies weight a neighbour pair by 1 and by
:math:`w_{t_j} w_{t_k}`; for two species (weights −1, +1) both give O–O and
Ti–Ti pairs the same weight, so angles between two O neighbours and between
two Ti neighbours are summed together. With ``angular_pairs`` (an ml4ms
extension) further angular copies follow, with pair weights
:math:`v_{t_j} v_{t_k}` for the vectors of :func:`pair_channel_weights`,
until every unordered pair of neighbour species has its own angular
expansion (up to a fixed linear map): :math:`S(S+1)/2 - 2` more copies of
the angular terms for *S* ≥ 2 species (one for two species), so the size
then grows with the number of species, as for ACSF.

The radial cutoff sets the range the descriptor sees, and at a fixed order
a longer cutoff also coarsens the radial resolution. With
``long_radial_cutoff`` :math:`R_l > 0` (an ml4ms extension) a second radial
expansion of low order :math:`n_l`,
:math:`\sum_j T_\alpha(2 r_{ij}/R_l - 1) f_c(r_{ij}; R_l)`, and its
species-weighted copy are appended after all the other features, so the
descriptor reaches further at the short-range resolution of the first set.
It adds :math:`2 (n_l + 1)` features (:math:`n_l + 1` for one species).

The maths is the pure PyTorch function :func:`chebyshev_features`,
differentiable with respect to positions and a homogeneous strain (forces
and stress by autograd); :class:`Chebyshev` is the transformer.
"""

import math

import numpy as np

from ..batch import _torch, collate, pair_vectors, torch_dtype
from ..errors import InputError
from .acsf import BatchedLocal, center_blocks, cosine_cutoff, padded, structure_gradients


def type_weights(n_species):
    """ænet's species weights ("type spins") for ``n_species`` sorted species.

    Examples
    --------
    >>> type_weights(2), type_weights(3), type_weights(4)
    ([-1.0, 1.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 1.0, 2.0])
    """
    out = []
    s = -(n_species // 2)
    for _ in range(n_species):
        if s == 0 and n_species % 2 == 0:
            s += 1
        out.append(float(s))
        s += 1
    return out


def pair_channel_weights(n_species):
    r"""Species weights of the extra angular channels that resolve every pair of neighbour species.

    A channel with species weights *v* sums the angular terms of neighbours
    *j*, *k* with the pair weight :math:`v_{t_j} v_{t_k}`. The unweighted and
    the type-spin channels give two such pair weightings (matrices
    :math:`\mathbf 1 \mathbf 1^T` and :math:`w w^T`); the vectors returned
    here add channels until the pair weightings span every symmetric
    species × species matrix, i.e. until each unordered species pair can be
    told apart. Candidates, in order: one species alone (:math:`e_s`), then
    two species together (:math:`e_s + e_t`); each is taken if it adds to the
    span. ``n_species * (n_species + 1) // 2 - 2`` vectors for two or more
    species (none for one).

    Examples
    --------
    >>> pair_channel_weights(1), pair_channel_weights(2)
    ([], [[1.0, 0.0]])
    >>> [len(pair_channel_weights(n)) for n in (3, 4)]
    [4, 8]
    """
    if n_species < 2:
        return []
    w = np.asarray(type_weights(n_species))
    basis = [np.ones((n_species, n_species)).ravel(), np.outer(w, w).ravel()]
    eye = np.eye(n_species)
    candidates = [eye[s] for s in range(n_species)]
    candidates += [eye[s] + eye[t] for s in range(n_species) for t in range(s + 1, n_species)]
    out = []
    for v in candidates:
        trial = basis + [np.outer(v, v).ravel()]
        if np.linalg.matrix_rank(np.array(trial)) > len(basis):
            basis, out = trial, out + [[float(x) for x in v]]
    return out


#: the settings of the descriptor (``angular_pairs`` chooses :func:`chebyshev_features`'s ``angular_weights``)
SETTINGS = ("radial_cutoff", "radial_order", "angular_cutoff", "angular_order", "angular_radial_order",
            "angular_pairs", "long_radial_cutoff", "long_radial_order")


def check_settings(settings):
    """One-line :class:`~ml4ms.errors.InputError` for a bad cutoff or order in ``settings`` (a dict).

    Examples
    --------
    >>> check_settings({"radial_cutoff": 5.0, "angular_order": -1})
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: angular_order must be a non-negative integer, got -1
    """
    for name, value in settings.items():
        if name.endswith("_cutoff"):
            off = name == "long_radial_cutoff"  # 0 turns the long-range set off
            try:
                ok = math.isfinite(float(value)) and (float(value) > 0 or (off and float(value) == 0))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError(f"{name} must be a positive number of Å{' (or 0: off)' if off else ''}, got {value!r}")
        elif name.endswith("_order"):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"{name} must be a non-negative integer, got {value!r}")
        elif name == "angular_pairs" and not isinstance(value, (bool, np.bool_)):
            raise InputError(f"angular_pairs must be true or false, got {value!r}")


def chebyshev_polynomials(x, order):
    """``[T_0(x), ..., T_order(x)]`` stacked on a new last axis (torch)."""
    torch = _torch()
    values = [torch.ones_like(x)]
    if order >= 1:
        values.append(x)
    for _ in range(2, order + 1):
        values.append(2.0 * x * values[-1] - values[-2])
    return torch.stack(values, -1)


def chebyshev_features(positions, species_index, cell, i, j, shifts, *, radial_cutoff, radial_order,
                       angular_cutoff, angular_order, weights=None, strain=None, vectors=None,
                       angular_radial_order=0, angular_weights=None, long_radial_cutoff=0.0, long_radial_order=4):
    """Artrith–Urban–Ceder Chebyshev features of every atom (pure PyTorch).

    Parameters
    ----------
    positions : torch.Tensor (n_atoms, 3)
        May require grad.
    species_index : torch.Tensor of int (n_atoms,)
    cell : torch.Tensor (3, 3), or (n_atoms, 3, 3) for a batch of structures
    i, j : torch.Tensor of int (n_pairs,)
        Neighbour pairs sorted by ``i``, containing every pair within
        ``max(radial_cutoff, angular_cutoff)``.
    shifts : torch.Tensor of int (n_pairs, 3)
    radial_cutoff, angular_cutoff : float
    radial_order, angular_order : int
    weights : sequence of float, optional
        Weight of each species for the second channel (see
        :func:`type_weights`); ``None`` gives the unweighted channel only.
    strain : torch.Tensor (3, 3), optional
    vectors : torch.Tensor (n_pairs, 3), optional
        The pair vectors themselves (then ``positions`` only gives the atom
        count and dtype); atom *a*'s features depend only on the pairs with
        ``i == a``, so the gradient with respect to ``vectors`` holds every
        per-atom Jacobian (see :mod:`ml4ms.potentials.precompute`).
    angular_radial_order : int, default 0
        *P*: radial resolution of the angular terms (module docstring).
    angular_weights : list of sequences of float, optional
        Species weights of further angular channels (with ``weights``), each
        appended as one more copy of the angular terms with pair weights
        :math:`v_{t_j} v_{t_k}`; :func:`pair_channel_weights` resolves every
        species pair.
    long_radial_cutoff : float, default 0.0
        Cutoff (Å) of a second radial expansion appended after all the
        other features (module docstring); 0 leaves it out.
    long_radial_order : int, default 4
        Its highest Chebyshev order.

    Returns
    -------
    torch.Tensor (n_atoms, n_features)
    """
    torch = _torch()
    n_atoms = positions.shape[0]
    dt = positions.dtype
    nr, na = int(radial_order) + 1, int(angular_order) + 1
    D = pair_vectors(positions, cell, i, j, shifts, strain) if vectors is None else vectors
    r2 = (D * D).sum(1)
    r = torch.sqrt(r2)
    w = None
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights, dtype=float), dtype=dt)[species_index[j]]
    extra = [torch.as_tensor(np.asarray(v, dtype=float), dtype=dt)[species_index[j]]
             for v in (angular_weights or [])] if weights is not None else []

    radial, radial_w = _radial_sums(r, i, w, n_atoms, radial_cutoff, nr)
    long = []
    if long_radial_cutoff > 0:
        long = [x for x in _radial_sums(r, i, w, n_atoms, long_radial_cutoff, int(long_radial_order) + 1)
                if x is not None]

    # angular, on padded (centre, neighbour, neighbour) blocks
    keep = torch.nonzero(r < angular_cutoff).squeeze(1)
    Da, r2a, ia = D[keep], r2[keep], i[keep]
    fa = cosine_cutoff(torch.sqrt(r2a), angular_cutoff)
    leg_weights = ([w[keep]] if w is not None else []) + [v[keep] for v in extra]
    n_ch = 1 + len(leg_weights)
    n_p = int(angular_radial_order) + 1
    # g_p of every angular pair, (pairs, P+1); g_0 = f_c
    ga = _radial_basis(torch.sqrt(r2a), angular_cutoff, n_p)
    parts = []
    for c0, c1, pairs, M, slot, _ in center_blocks(ia.numpy(), n_atoms, per_element=na + 3 + n_ch * n_p):
        b = c1 - c0
        if M < 2:
            parts.append(torch.zeros(b, n_ch * n_p * na, dtype=dt))
            continue
        slot = torch.from_numpy(slot)
        pairs = torch.from_numpy(pairs)
        P = padded(Da[pairs], slot, b, M)
        U = P * torch.rsqrt(padded(r2a[pairs], slot, b, M, 1.0))[:, :, None]
        cos = (U @ U.transpose(1, 2)).clamp(-1.0, 1.0)
        eye = torch.eye(M, dtype=torch.bool)
        f = padded(fa[pairs], slot, b, M)
        g = padded(ga[pairs], slot, b, M)  # (b, M, P+1)
        legs = [(f, g)]
        for wa in leg_weights:
            wb = padded(wa[pairs], slot, b, M)
            legs.append((f * wb, g * wb[:, :, None]))
        # W[j, k] = g_p(r_j) f(r_k), j != k, for every channel and p (channel-major, then p)
        W = [(gc[:, :, None, p] * fc[:, None, :]).masked_fill(eye, 0.0) for fc, gc in legs for p in range(n_p)]
        W = torch.stack(W, -1).reshape(b, M * M, n_ch * n_p)
        Tc = chebyshev_polynomials(cos, na - 1).reshape(b, M * M, na)
        # ½ Σ_{j≠k} (= Σ_{j<k} when p = 0); (b, na, n_ch n_p) -> channel-major, p, α
        parts.append(0.5 * (Tc.transpose(1, 2) @ W).transpose(1, 2).reshape(b, n_ch * n_p * na))
    angular = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
    if w is None:
        return torch.cat([radial, angular] + long, 1)
    m = n_p * na
    return torch.cat([radial, angular[:, :m], radial_w, angular[:, m:]] + long, 1)


def _radial_sums(r, i, w, n_atoms, r_cut, n):
    """Radial expansion of every atom, ``n`` terms, and its species-weighted copy (``None`` if ``w`` is)."""
    torch = _torch()
    keep = torch.nonzero(r < r_cut).squeeze(1)
    T = _radial_basis(r[keep], r_cut, n)
    plain = torch.zeros(n_atoms, n, dtype=r.dtype).index_add(0, i[keep], T)
    if w is None:
        return plain, None
    return plain, torch.zeros(n_atoms, n, dtype=r.dtype).index_add(0, i[keep], T * w[keep][:, None])


def _radial_basis(r, r_cut, n_p):
    """``T_p(2r/R_c - 1) f_c(r)``, ``p < n_p``, stacked on a new last axis (torch)."""
    return chebyshev_polynomials(2.0 * r / r_cut - 1.0, n_p - 1) * cosine_cutoff(r, r_cut)[:, None]


def _radial_basis_derivative(r, r_cut, n_p):
    """``d/dr`` of :func:`_radial_basis`."""
    x = 2.0 * r / r_cut - 1.0
    return (chebyshev_derivatives(x, n_p - 1) * (2.0 / r_cut) * cosine_cutoff(r, r_cut)[:, None]
            + chebyshev_polynomials(x, n_p - 1) * _cutoff_derivative(r, r_cut)[:, None])



def chebyshev_derivatives(x, order):
    """``[T_0'(x), ..., T_order'(x)]`` (``T_n' = n U_{n-1}``) stacked on a new last axis (torch)."""
    torch = _torch()
    values = [torch.zeros_like(x)]
    u_prev, u = torch.zeros_like(x), torch.ones_like(x)  # U_{-1}, U_0
    for n in range(1, order + 1):
        values.append(n * u)
        u_prev, u = u, 2.0 * x * u - u_prev
    return torch.stack(values, -1)


def _cutoff_derivative(r, r_cut):
    torch = _torch()
    return torch.where(r < r_cut, -0.5 * (math.pi / r_cut) * torch.sin(r * (math.pi / r_cut)), torch.zeros_like(r))


def chebyshev_pair_gradients(vectors, species_index, i, j, n_atoms, *, radial_cutoff, radial_order, angular_cutoff,
                             angular_order, weights=None, angular_radial_order=0, angular_weights=None,
                             long_radial_cutoff=0.0, long_radial_order=4):
    r"""Analytic ``dX_{i_p} / dD_p`` of :func:`chebyshev_features` for every pair *p* (no autograd).

    Atom *a*'s features depend only on its own pair vectors ``D_p``
    (``i_p = a``): radial terms through :math:`|D_p|`, angular terms through
    :math:`\cos\theta_{pq} = \hat D_p \cdot \hat D_q` and the cutoff factors.
    One pass gives every derivative, where reverse-mode autograd needs one
    pass per feature.

    Parameters
    ----------
    vectors : torch.Tensor (n_pairs, 3)
        Pair vectors (from :func:`~ml4ms.descriptors.acsf.pair_vectors`).
    species_index, i, j, n_atoms
        As :func:`chebyshev_features`.
    radial_cutoff, radial_order, angular_cutoff, angular_order, weights, angular_radial_order, angular_weights
        As :func:`chebyshev_features`.
    long_radial_cutoff, long_radial_order
        As :func:`chebyshev_features`.

    Returns
    -------
    torch.Tensor (n_pairs, n_features, 3)
        In the feature layout of :func:`chebyshev_features`.
    """
    torch = _torch()
    D = vectors
    dt = D.dtype
    nr, na, n_p = int(radial_order) + 1, int(angular_order) + 1, int(angular_radial_order) + 1
    n_ch = 1 if weights is None else 2
    extra = [np.asarray(v, dtype=float) for v in (angular_weights or [])] if weights is not None else []
    n_long = int(long_radial_order) + 1 if long_radial_cutoff > 0 else 0
    n_main = n_ch * (nr + n_p * na) + len(extra) * n_p * na
    G = torch.zeros(D.shape[0], n_main + n_ch * n_long, 3, dtype=dt)
    r = torch.sqrt((D * D).sum(1))
    w = None
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights, dtype=float), dtype=dt)[species_index[j]]
    # feature columns: [radial, angular] or [radial, angular, radial_w, angular_w, angular_pair1, ...],
    # then [long] or [long, long_w]
    rad_cols = [0] + ([nr + n_p * na] if w is not None else [])
    ang_cols = [nr] + [2 * nr + (1 + c) * n_p * na for c in range(n_ch - 1 + len(extra))]

    _radial_sum_gradients(G, D, r, w, radial_cutoff, nr, rad_cols)
    if n_long:
        _radial_sum_gradients(G, D, r, w, long_radial_cutoff, n_long, [n_main + c * n_long for c in range(n_ch)])

    # X = ½ Σ_{j≠k} T(c_jk) g_j f_k per (channel, p), with g = g_p (g_0 = f) and the species weights folded into
    # g and f. With ∂c_jk/∂D_j = (u_k − c_jk u_j)/r_j and T symmetric in (j, k):
    #   ∂X/∂D_j = ½/r_j Σ_k T'(c_jk)(g_j f_k + f_j g_k)(u_k − c_jk u_j) + ½ (g'_j Σ_k T_jk f_k + f'_j Σ_k T_jk g_k) u_j
    keep = torch.nonzero(r < angular_cutoff).squeeze(1)
    Da, ra, ia = D[keep], r[keep], i[keep]
    fa = cosine_cutoff(ra, angular_cutoff)
    dfa = _cutoff_derivative(ra, angular_cutoff)
    ga = _radial_basis(ra, angular_cutoff, n_p)
    dga = _radial_basis_derivative(ra, angular_cutoff, n_p)
    channels = [(fa, dfa, ga, dga)]
    for v in ([w] if w is not None else []) + [torch.as_tensor(v, dtype=dt)[species_index[j]] for v in extra]:
        wk = v[keep]
        channels.append((fa * wk, dfa * wk, ga * wk[:, None], dga * wk[:, None]))
    for c0, c1, pairs, M, slot, _ in center_blocks(ia.numpy(), n_atoms, per_element=6 * na + 8):
        b = c1 - c0
        if M < 2:
            continue
        slot_t = torch.from_numpy(slot)
        pairs_t = torch.from_numpy(pairs)
        rr = padded(ra[pairs_t], slot_t, b, M, 1.0)
        U = padded(Da[pairs_t], slot_t, b, M) / rr[:, :, None]
        cos = (U @ U.transpose(1, 2)).clamp(-1.0, 1.0)
        off = 1.0 - torch.eye(M, dtype=dt)
        T = chebyshev_polynomials(cos, na - 1)
        Tp = chebyshev_derivatives(cos, na - 1)
        rows = keep[pairs_t]

        def contract(leg):
            """Σ_k T'(c_jk) leg_k (u_k − c_jk u_j) and Σ_k T_jk leg_k, leg zero on k = j: (b, j, n, 3), (b, j, n)."""
            lk = leg[:, None, :] * off
            A = Tp * lk[..., None]
            return (torch.einsum("bjkn,bkx->bjnx", A, U) - (A * cos[..., None]).sum(2)[..., None] * U[:, :, None, :],
                    (T * lk[..., None]).sum(2))

        for col, (f, df, gq, dgq) in zip(ang_cols, channels):
            fp, dfp = padded(f[pairs_t], slot_t, b, M), padded(df[pairs_t], slot_t, b, M)
            Cf, Sf = contract(fp)
            for p in range(n_p):
                if p == 0:  # g_0 = f
                    gp, dgp, Cg, Sg = fp, dfp, Cf, Sf
                else:
                    gp, dgp = padded(gq[pairs_t, p], slot_t, b, M), padded(dgq[pairs_t, p], slot_t, b, M)
                    Cg, Sg = contract(gp)
                Gb = (0.5 / rr)[:, :, None, None] * (gp[:, :, None, None] * Cf + fp[:, :, None, None] * Cg)
                Gb = Gb + (0.5 * (dgp[:, :, None] * Sf + dfp[:, :, None] * Sg))[..., None] * U[:, :, None, :]
                c = col + p * na
                G[rows, c:c + na] = Gb.reshape(b * M, na, 3)[slot_t]
    return G


def _radial_sum_gradients(G, D, r, w, r_cut, n, cols):
    """Write ``d/dD`` of :func:`_radial_sums` into ``G`` at columns ``cols`` (plain; weighted if ``w``)."""
    torch = _torch()
    keep = torch.nonzero(r < r_cut).squeeze(1)
    rk = r[keep]
    g = _radial_basis_derivative(rk, r_cut, n)
    u = D[keep] / rk[:, None]
    G[keep, cols[0]:cols[0] + n] = g[:, :, None] * u[:, None, :]
    if w is not None:
        G[keep, cols[1]:cols[1] + n] = (g * w[keep][:, None])[:, :, None] * u[:, None, :]


class Chebyshev(BatchedLocal):
    """Artrith–Urban–Ceder Chebyshev descriptor, per atom; size independent of species.

    Parameters
    ----------
    radial_cutoff : float, default 5.0
        Cutoff (Å) of the radial expansion.
    radial_order : int, default 12
        Highest Chebyshev order of the radial expansion (order + 1 terms).
    angular_cutoff : float, default 3.0
        Cutoff (Å) of the angular expansion.
    angular_order : int, default 5
        Highest Chebyshev order of the angular expansion.
    angular_radial_order : int, default 0
        Highest Chebyshev order of the radial resolution of the angular
        terms (0: ænet's basis; *P* multiplies the angular features by
        *P* + 1, see the module docstring).
    angular_pairs : bool, default False
        Resolve the angular terms by the species of both neighbours: with
        *S* ≥ 2 species, :math:`S(S+1)/2 - 2` more copies of the angular
        terms (:func:`pair_channel_weights`; one for two species, which tells
        O–O from Ti–Ti neighbour pairs). An ml4ms extension; ænet's basis
        is ``False``.
    long_radial_cutoff : float, default 0.0
        Cutoff (Å) of a second, coarse radial expansion beyond the first
        (module docstring); 0 (ænet's basis) leaves it out.
    long_radial_order : int, default 4
        Highest Chebyshev order of the second radial expansion.
    species : list of str or int, optional
        Fixed species (they set the weights); learned in ``fit`` if ``None``.
    reduce : {"mean", "sum", "species_mean", None}, default "mean"
    dtype : {"float64", "float32"}, default "float64"
    n_jobs : int, default 1
    progress : bool, default True

    Notes
    -----
    The defaults are those of the ænet TiO2 workshop fit "set003" (radial
    Rc 5 Å, order 12; angular Rc 3 Å, order 5): 38 features for two or more
    species. The formula is in the module docstring; species weights are
    ænet's type spins over the species sorted by atomic number (ænet uses the
    order of its input file, so a model file from ænet may have them
    permuted). Derivatives come from autograd: :meth:`gradients`.

    Examples
    --------
    >>> from ase.build import bulk
    >>> rutile = bulk("NaCl", "rocksalt", a=5.64)
    >>> Chebyshev(radial_order=4, angular_order=2).fit(rutile).transform_local(rutile)[0].shape
    (2, 16)
    >>> Chebyshev(radial_order=4, angular_order=2, angular_radial_order=2).fit(rutile).transform_local(rutile)[0].shape
    (2, 28)
    >>> Chebyshev(radial_order=4, angular_order=2, angular_pairs=True).fit(rutile).transform_local(rutile)[0].shape
    (2, 19)
    >>> Chebyshev(radial_order=4, angular_order=2, long_radial_cutoff=8.0).fit(rutile).transform_local(rutile)[0].shape
    (2, 26)
    """

    def __init__(self, *, radial_cutoff=5.0, radial_order=12, angular_cutoff=3.0, angular_order=5,
                 angular_radial_order=0, angular_pairs=False, long_radial_cutoff=0.0, long_radial_order=4, species=None,
                 reduce="mean", dtype="float64", n_jobs=1, progress=True):
        self.radial_cutoff = radial_cutoff
        self.radial_order = radial_order
        self.angular_cutoff = angular_cutoff
        self.angular_order = angular_order
        self.angular_radial_order = angular_radial_order
        self.angular_pairs = angular_pairs
        self.long_radial_cutoff = long_radial_cutoff
        self.long_radial_order = long_radial_order
        self.species = species
        self.reduce = reduce
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.progress = progress

    def _fit_extra(self, records):
        check_settings({name: getattr(self, name) for name in SETTINGS})
        torch_dtype(self.dtype)
        self.type_weights_ = type_weights(len(self.species_))
        self.pair_weights_ = pair_channel_weights(len(self.species_)) if self.angular_pairs else []

    def _n_features(self):
        m = (int(self.angular_radial_order) + 1) * (int(self.angular_order) + 1)
        n = int(self.radial_order) + 1 + m + self._n_long()
        return 2 * n + len(self._pairs()) * m if len(self.species_) > 1 else n

    def _pairs(self):
        # a transformer saved before angular_pairs existed has no pair_weights_
        return getattr(self, "pair_weights_", [])

    def _n_long(self):
        return int(self.long_radial_order) + 1 if float(self.long_radial_cutoff) > 0 else 0

    def _cutoff(self):
        return max(float(self.radial_cutoff), float(self.angular_cutoff), float(self.long_radial_cutoff))

    def _core(self, batch):
        weights = self.type_weights_ if len(self.species_) > 1 else None

        def func(positions, strain=None):
            return chebyshev_features(positions, batch.species_index, batch.cell, batch.i, batch.j, batch.shifts,
                                      radial_cutoff=float(self.radial_cutoff), radial_order=int(self.radial_order),
                                      angular_cutoff=float(self.angular_cutoff),
                                      angular_order=int(self.angular_order), weights=weights, strain=strain,
                                      angular_radial_order=int(self.angular_radial_order),
                                      angular_weights=self._pairs(),
                                      long_radial_cutoff=float(self.long_radial_cutoff),
                                      long_radial_order=int(self.long_radial_order))

        return func

    def _batch_core(self, batch):
        return self._core(batch)(batch.positions)

    def gradients(self, atoms, strain=False):
        """Per-atom features and their derivatives for one structure.

        Returns
        -------
        features : ndarray (n_atoms, n_features)
        d_positions : ndarray (n_atoms, n_features, n_atoms, 3)
            ``d_positions[a, f, b, x] = ∂X[a, f] / ∂r[b, x]``.
        d_strain : ndarray (n_atoms, n_features, 3, 3), only if ``strain``
            Derivative with respect to a homogeneous strain ε of positions
            and cell (positions and cell multiplied by 1 + ε).
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        self._check_species([atoms])
        batch = collate([atoms], self._cutoff(), self.species_, self.dtype)
        return structure_gradients(self._core(batch), batch, strain)

    def get_feature_names_out(self, input_features=None):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        names = [f"radial{a}" for a in range(int(self.radial_order) + 1)]
        angular = [f"angular{a}" + (f"_r{p}" if p else "") for p in range(int(self.angular_radial_order) + 1)
                   for a in range(int(self.angular_order) + 1)]
        names += angular
        if len(self.species_) > 1:
            names += [f"{n}_weighted" for n in names]
        for c in range(len(self._pairs())):
            names += [f"{n}_pair{c + 1}" for n in angular]
        long = [f"long_radial{a}" for a in range(self._n_long())]
        names += long + ([f"{n}_weighted" for n in long] if len(self.species_) > 1 else [])
        return np.asarray(names, dtype=object)
