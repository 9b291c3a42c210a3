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

With more than one species a second, species-weighted copy of both
expansions is appended, in which every neighbour *j* carries the weight
:math:`w_{t_j}` (radial) and every pair the weight :math:`w_{t_j} w_{t_k}`
(angular). The weights are ænet's "type spins": for species sorted by atomic number, the integers
:math:`-\lfloor N/2\rfloor, \dots` counting upwards and skipping 0 when N is
even (2 species: −1, +1; 3 species: −1, 0, +1; 4: −2, −1, +1, +2).
Layout: ``[c2 (n2+1), c3 (n3+1), c2_weighted, c3_weighted]``, so the size
is ``2 (n2 + n3 + 2)`` for any number of species (half that for one
species, where the weighted copy would be zero): ænet's ``sfbasis``. For
two species (weights −1, +1) both angular copies give O–O and Ti–Ti
neighbour pairs the same weight, so angles between two O neighbours and
between two Ti neighbours are summed together.

The maths is the pure PyTorch function :func:`chebyshev_features`,
differentiable with respect to positions and a homogeneous strain (forces
and stress by autograd); :class:`Chebyshev` is the transformer.
"""

import math
from typing import List, Optional, Tuple

import numpy as np
import torch

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


#: the settings of the descriptor
SETTINGS = ("radial_cutoff", "radial_order", "angular_cutoff", "angular_order")

#: settings of earlier versions, with the values that left them out (:mod:`ml4ms.serialize` reads old files that
#: hold them at these values and refuses the others; docs/studies/tio2-potential.md says why they were removed)
REMOVED_SETTINGS = {"angular_radial_order": 0, "angular_pairs": False, "long_radial_cutoff": 0.0,
                    "long_radial_order": 4}


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
            try:
                ok = math.isfinite(float(value)) and float(value) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError(f"{name} must be a positive number of Å, got {value!r}")
        elif name.endswith("_order"):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"{name} must be a non-negative integer, got {value!r}")


def chebyshev_polynomials(x: torch.Tensor, order: int) -> torch.Tensor:
    """``[T_0(x), ..., T_order(x)]`` stacked on a new last axis (torch; scriptable)."""
    values = [torch.ones_like(x)]
    if order >= 1:
        values.append(x)
    for _ in range(2, order + 1):
        values.append(2.0 * x * values[-1] - values[-2])
    return torch.stack(values, -1)


def chebyshev_features(positions, species_index, cell, i, j, shifts, *, radial_cutoff, radial_order,
                       angular_cutoff, angular_order, weights=None, strain=None, vectors=None):
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

    Returns
    -------
    torch.Tensor (n_atoms, n_features)

    See :func:`chebyshev_of_vectors`, the maths (on the pair vectors).
    """
    D = pair_vectors(positions, cell, i, j, shifts, strain) if vectors is None else vectors
    w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=float), dtype=D.dtype,
                                                     device=D.device)
    return chebyshev_of_vectors(D, i, j, species_index, int(positions.shape[0]), float(radial_cutoff),
                                int(radial_order), float(angular_cutoff), int(angular_order), w)


def chebyshev_of_vectors(D: torch.Tensor, i: torch.Tensor, j: torch.Tensor, species_index: torch.Tensor,
                         n_atoms: int, radial_cutoff: float, radial_order: int, angular_cutoff: float,
                         angular_order: int, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """The Chebyshev features (n_atoms, n_features) from the pair vectors ``D`` (n_pairs, 3); scriptable.

    ``i``, ``j``: the pairs (sorted by ``i``); ``weights`` (n_species,): the type weights, or None for the
    unweighted channel only. The angular sums run on padded (centre, neighbour, neighbour) blocks: planned by
    :func:`~ml4ms.descriptors.acsf.center_blocks` in Python, by :func:`even_blocks` under TorchScript.
    """
    dt = D.dtype
    nr, na = radial_order + 1, angular_order + 1
    r2 = (D * D).sum(1)
    r = torch.sqrt(r2)
    w: Optional[torch.Tensor] = None
    if weights is not None:
        w = weights.to(dt)[species_index[j]]

    radial, radial_w = _radial_sums(r, i, w, n_atoms, radial_cutoff, nr)

    # angular, on padded (centre, neighbour, neighbour) blocks
    keep = torch.nonzero(r < angular_cutoff).squeeze(1)
    Da, r2a, ia = D[keep], r2[keep], i[keep]
    fa = cosine_cutoff(torch.sqrt(r2a), angular_cutoff)
    wa: Optional[torch.Tensor] = None
    if w is not None:
        wa = w[keep]
    n_ch = 1 if w is None else 2
    parts: List[torch.Tensor] = []
    for c0, c1, pairs, M, slot in angular_blocks(ia, n_atoms, na + 3 + n_ch):
        b = c1 - c0
        if M < 2:
            parts.append(torch.zeros(b, n_ch * na, dtype=dt, device=D.device))
            continue
        P = padded(Da[pairs], slot, b, M)
        U = P * torch.rsqrt(padded(r2a[pairs], slot, b, M, 1.0))[:, :, None]
        cos = (U @ U.transpose(1, 2)).clamp(-1.0, 1.0)
        eye = torch.eye(M, dtype=torch.bool, device=D.device)
        f = padded(fa[pairs], slot, b, M)
        legs = [f]
        if wa is not None:
            legs.append(f * padded(wa[pairs], slot, b, M))
        # W[j, k] = f(r_j) f(r_k) (times w_j w_k in the weighted channel), j != k
        W = torch.stack([(leg[:, :, None] * leg[:, None, :]).masked_fill(eye, 0.0) for leg in legs], -1)
        W = W.reshape(b, M * M, n_ch)
        Tc = chebyshev_polynomials(cos, na - 1).reshape(b, M * M, na)
        # ½ Σ_{j≠k} = Σ_{j<k}; (b, na, n_ch) -> channel-major, then α
        parts.append(0.5 * (Tc.transpose(1, 2) @ W).transpose(1, 2).reshape(b, n_ch * na))
    angular = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
    if radial_w is None:
        return torch.cat([radial, angular], 1)
    return torch.cat([radial, angular[:, :na], radial_w, angular[:, na:]], 1)


def angular_blocks(ia: torch.Tensor, n_atoms: int,
                   per_element: int) -> List[Tuple[int, int, torch.Tensor, int, torch.Tensor]]:
    """``(c0, c1, pairs, M, slot)`` blocks of centres for the angular sums (see
    :func:`~ml4ms.descriptors.acsf.center_blocks`); :func:`even_blocks` under TorchScript."""
    if torch.jit.is_scripting():
        return even_blocks(ia, n_atoms, per_element)
    else:
        return [(c0, c1, torch.from_numpy(pairs).to(ia.device), M, torch.from_numpy(slot).to(ia.device))
                for c0, c1, pairs, M, slot, _ in center_blocks(ia.cpu().numpy(), n_atoms, per_element=per_element)]


def even_blocks(ia: torch.Tensor, n_atoms: int, per_element: int,
                max_elements: int = 1_000_000) -> List[Tuple[int, int, torch.Tensor, int, torch.Tensor]]:
    """Blocks of equally many consecutive centres, all padded to the largest neighbour count (scriptable).

    The TorchScript planner of :func:`angular_blocks`: the same blocks as
    :func:`~ml4ms.descriptors.acsf.center_blocks` up to their sizes (more padding, so the same sums).
    ``ia`` (n_pairs,): the centre of every pair, sorted.

    Examples
    --------
    >>> [(c0, c1, M, slot.tolist()) for c0, c1, _, M, slot in even_blocks(torch.tensor([0, 0, 2]), 3, 1)]
    [(0, 3, 2, [0, 1, 4])]
    """
    counts = torch.bincount(ia, minlength=n_atoms)
    M = int(counts.max()) if n_atoms > 0 else 0
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(ia.shape[0], device=ia.device) - starts[ia]
    size = max(1, max_elements // max(1, M * M * per_element))
    out: List[Tuple[int, int, torch.Tensor, int, torch.Tensor]] = []
    for c0 in range(0, n_atoms, size):
        c1 = min(n_atoms, c0 + size)
        p0 = int(starts[c0])
        p1 = int(starts[c1 - 1] + counts[c1 - 1])
        pairs = torch.arange(p0, p1, device=ia.device)
        out.append((c0, c1, pairs, M, (ia[pairs] - c0) * M + local[pairs]))
    return out


def _radial_sums(r: torch.Tensor, i: torch.Tensor, w: Optional[torch.Tensor], n_atoms: int, r_cut: float,
                 n: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Radial expansion of every atom, ``n`` terms, and its species-weighted copy (``None`` if ``w`` is)."""
    keep = torch.nonzero(r < r_cut).squeeze(1)
    T = _radial_basis(r[keep], r_cut, n)
    plain = torch.zeros(n_atoms, n, dtype=r.dtype, device=r.device).index_add(0, i[keep], T)
    if w is None:
        return plain, None
    return plain, torch.zeros(n_atoms, n, dtype=r.dtype, device=r.device).index_add(0, i[keep], T * w[keep][:, None])


def _radial_basis(r: torch.Tensor, r_cut: float, n: int) -> torch.Tensor:
    """``T_a(2r/R_c - 1) f_c(r)``, ``a < n``, stacked on a new last axis (torch)."""
    return chebyshev_polynomials(2.0 * r / r_cut - 1.0, n - 1) * cosine_cutoff(r, r_cut)[:, None]


def _radial_basis_derivative(r, r_cut, n):
    """``d/dr`` of :func:`_radial_basis`."""
    x = 2.0 * r / r_cut - 1.0
    return (chebyshev_derivatives(x, n - 1) * (2.0 / r_cut) * cosine_cutoff(r, r_cut)[:, None]
            + chebyshev_polynomials(x, n - 1) * _cutoff_derivative(r, r_cut)[:, None])


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
                             angular_order, weights=None):
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
    radial_cutoff, radial_order, angular_cutoff, angular_order, weights
        As :func:`chebyshev_features`.

    Returns
    -------
    torch.Tensor (n_pairs, n_features, 3)
        In the feature layout of :func:`chebyshev_features`.
    """
    torch = _torch()
    D = vectors
    dt = D.dtype
    nr, na = int(radial_order) + 1, int(angular_order) + 1
    n_ch = 1 if weights is None else 2
    G = torch.zeros(D.shape[0], n_ch * (nr + na), 3, dtype=dt, device=D.device)
    r = torch.sqrt((D * D).sum(1))
    w = None
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights, dtype=float), dtype=dt, device=D.device)[species_index[j]]
    # feature columns: [radial, angular] or [radial, angular, radial_w, angular_w]
    _radial_sum_gradients(G, D, r, w, radial_cutoff, nr, [0] + ([nr + na] if w is not None else []))
    ang_cols = [nr] + ([2 * nr + na] if w is not None else [])

    # X = ½ Σ_{j≠k} T(c_jk) f_j f_k per channel, the species weights folded into f. With
    # ∂c_jk/∂D_j = (u_k − c_jk u_j)/r_j and T symmetric in (j, k):
    #   ∂X/∂D_j = f_j/r_j Σ_k T'(c_jk) f_k (u_k − c_jk u_j) + f'_j Σ_k T_jk f_k u_j
    keep = torch.nonzero(r < angular_cutoff).squeeze(1)
    Da, ra, ia = D[keep], r[keep], i[keep]
    fa = cosine_cutoff(ra, angular_cutoff)
    dfa = _cutoff_derivative(ra, angular_cutoff)
    channels = [(fa, dfa)] + ([(fa * w[keep], dfa * w[keep])] if w is not None else [])
    for c0, c1, pairs, M, slot, _ in center_blocks(ia.cpu().numpy(), n_atoms, per_element=6 * na + 8):
        b = c1 - c0
        if M < 2:
            continue
        slot_t = torch.from_numpy(slot).to(D.device)
        pairs_t = torch.from_numpy(pairs).to(D.device)
        rr = padded(ra[pairs_t], slot_t, b, M, 1.0)
        U = padded(Da[pairs_t], slot_t, b, M) / rr[:, :, None]
        cos = (U @ U.transpose(1, 2)).clamp(-1.0, 1.0)
        off = 1.0 - torch.eye(M, dtype=dt, device=D.device)
        T = chebyshev_polynomials(cos, na - 1)
        Tp = chebyshev_derivatives(cos, na - 1)
        rows = keep[pairs_t]
        for col, (f, df) in zip(ang_cols, channels):
            fp, dfp = padded(f[pairs_t], slot_t, b, M), padded(df[pairs_t], slot_t, b, M)
            lk = fp[:, None, :] * off  # f_k, zero on k = j
            A = Tp * lk[..., None]
            # Σ_k T'(c_jk) f_k (u_k − c_jk u_j): (b, j, n, 3); Σ_k T_jk f_k: (b, j, n)
            C = torch.einsum("bjkn,bkx->bjnx", A, U) - (A * cos[..., None]).sum(2)[..., None] * U[:, :, None, :]
            S = (T * lk[..., None]).sum(2)
            Gb = (1.0 / rr)[:, :, None, None] * (fp[:, :, None, None] * C)
            Gb = Gb + (dfp[:, :, None] * S)[..., None] * U[:, :, None, :]
            G[rows, col:col + na] = Gb.reshape(b * M, na, 3)[slot_t]
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
    """

    _removed_parameters = REMOVED_SETTINGS  # read by ml4ms.serialize

    def __init__(self, *, radial_cutoff=5.0, radial_order=12, angular_cutoff=3.0, angular_order=5, species=None,
                 reduce="mean", dtype="float64", n_jobs=1, progress=True):
        self.radial_cutoff = radial_cutoff
        self.radial_order = radial_order
        self.angular_cutoff = angular_cutoff
        self.angular_order = angular_order
        self.species = species
        self.reduce = reduce
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.progress = progress

    def _fit_extra(self, records):
        check_settings({name: getattr(self, name) for name in SETTINGS})
        torch_dtype(self.dtype)
        self.type_weights_ = type_weights(len(self.species_))

    def _n_features(self):
        n = int(self.radial_order) + int(self.angular_order) + 2
        return 2 * n if len(self.species_) > 1 else n

    def _cutoff(self):
        return max(float(self.radial_cutoff), float(self.angular_cutoff))

    def _core(self, batch):
        weights = self.type_weights_ if len(self.species_) > 1 else None

        def func(positions, strain=None):
            return chebyshev_features(positions, batch.species_index, batch.cell, batch.i, batch.j, batch.shifts,
                                      radial_cutoff=float(self.radial_cutoff), radial_order=int(self.radial_order),
                                      angular_cutoff=float(self.angular_cutoff),
                                      angular_order=int(self.angular_order), weights=weights, strain=strain)

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
        names += [f"angular{a}" for a in range(int(self.angular_order) + 1)]
        if len(self.species_) > 1:
            names += [f"{n}_weighted" for n in names]
        return np.asarray(names, dtype=object)
