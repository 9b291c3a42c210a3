"""SOAP power spectrum with the orthonormal GTO radial basis, and its gradients.

The atomic density around a centre atom *i* is a sum of unnormalised Gaussians
``w(r_ij) exp(-|r - r_ij|^2 / (2 sigma^2))`` over its neighbours *j* (the
centre included), one density per species. It is expanded in radial functions
``g_nl(r) = sum_k beta_lnk r^l exp(-alpha_lk r^2)`` (Gaussian-type orbitals,
Löwdin-orthonormalised on [0, inf)) times real spherical harmonics ``Y_lm``.
Because the radial functions are Gaussians, the expansion coefficients are
closed-form (no quadrature): with ``eta = 1 / (2 sigma^2)``

    c^Z_nlm(i) = sum_k B_lnk sum_{j of species Z} w_ij exp(-a_lk r_ij^2) r_ij^l Y_lm(r_ij / r_ij),

    a_lk = alpha_lk eta / (alpha_lk + eta),
    B_lnk = pi^(3/2) eta^l beta_lnk / (alpha_lk + eta)^(l + 3/2),

from ``int_0^inf x^(l+2) exp(-p x^2) i_l(b x) dx = sqrt(pi) b^l exp(b^2 / 4p) / (2^(l+2) p^(l+3/2))``
(De, Bartók, Csányi and Ceriotti, PCCP 18, 13754 (2016); Himanen et al.,
Comput. Phys. Commun. 247, 106949 (2020)). The power spectrum is

    p^(Z Z')_(n n' l)(i) = pi sqrt(8 / (2l + 1)) sum_m c^Z_nlm(i) c^Z'_n'lm(i).

Conventions shared with DScribe's ``SOAP(rbf="gto")`` so that values agree
(tested to 1e-6 relative, molecules and crystals): the exponents ``alpha_lk``
make ``r^l exp(-alpha r^2)`` decay to 1e-3 at ``a_k`` evenly spaced in
``[1, r_cut]``; features are ordered by species pair ``Z <= Z'`` (sorted atomic
numbers), then ``l``, then ``n``, then ``n'`` (``n' >= n`` when ``Z == Z'``);
the centre atom is part of its own density. ``cutoff_function=None`` is
DScribe without ``weighting``: neighbours up to ``r_cut + sigma sqrt(2 ln 1000)``
count fully (a discontinuous cutoff); ``cutoff_function="poly"`` is DScribe's
``weighting={"function": "poly", "r0": r_cut, "c": 1, "m": cutoff_exponent}``;
``radial_scaling`` is its ``"pow"`` weighting (which DScribe cannot combine
with ``"poly"``; ml4ms multiplies the two).

Gradients with respect to positions and to a homogeneous strain are
analytic (numpy; the derivative of ``r^l Y_lm`` is carried through the same
recursion), for molecules and periodic cells alike, and cross-checked against
PyTorch forward-mode automatic differentiation (``method="autograd"``).

Speed: all neighbour pairs of a batch of structures are handled at once with
pairs along the contiguous axis; mean/sum reductions sum ``C_i^T C_i`` over a
structure with one matrix product per ``l`` instead of forming per-atom rows.
Neighbours come from :func:`ml4ms.neighbors.neighbor_pairs`.
"""

import math

import numpy as np

from ..errors import InputError
from ..neighbors import neighbor_pairs
from .base import LocalDescriptor, as_records

#: value at which the unnormalised primitive GTO r^l exp(-alpha r^2) reaches a_k
GTO_THRESHOLD = 1e-3
#: batches of structures hold about this many (pair, lm, n) products: small
#: enough to stay in cache, large enough to amortise Python overhead
BATCH_ELEMENTS = 2_000_000


def gto_basis(r_cut, n_max, l_max):
    """Exponents and Löwdin orthonormalisation of the primitive GTO radial basis.

    Parameters
    ----------
    r_cut : float
        Radial cutoff in Å (> 1).
    n_max, l_max : int
        Number of radial functions and largest angular momentum.

    Returns
    -------
    alphas : ndarray, shape (l_max + 1, n_max)
        Exponents; ``r^l exp(-alpha_lk r^2) = 1e-3`` at ``r = a_k``,
        ``a = linspace(1, r_cut, n_max)``.
    betas : ndarray, shape (l_max + 1, n_max, n_max)
        ``S_l^(-1/2)`` with ``S_l`` the overlap matrix of the primitives
        ``int r^2 r^(2l) exp(-(alpha_k + alpha_k') r^2) dr``.

    Examples
    --------
    >>> alphas, betas = gto_basis(5.0, 3, 2)
    >>> alphas.shape, betas.shape
    ((3, 3), (3, 3, 3))
    """
    a = np.linspace(1.0, float(r_cut), int(n_max))
    alphas = np.empty((l_max + 1, n_max))
    betas = np.empty((l_max + 1, n_max, n_max))
    for l in range(l_max + 1):
        alpha = (l * np.log(a) - np.log(GTO_THRESHOLD)) / a**2
        s = alpha[:, None] + alpha[None, :]
        overlap = 0.5 * math.gamma(l + 1.5) * s ** (-(l + 1.5))
        vals, vecs = np.linalg.eigh(overlap)
        if vals.min() <= 1e-13 * vals.max():
            raise _singular_basis(overlap, r_cut, n_max, l)
        alphas[l] = alpha
        betas[l] = (vecs / np.sqrt(vals)) @ vecs.T
    return alphas, betas


def _singular_basis(overlap, r_cut, n_max, l):
    """The error for a GTO overlap matrix too ill-conditioned to orthonormalise, with what helps.

    Two causes: neighbouring widths ``a_k`` too close (many radial functions
    in a short cutoff: the normalised overlap is singular too), or widths
    spread over so many orders of magnitude that ``r^(2l)`` weights make the
    overlap's scale span more than double precision (a huge cutoff: the
    normalised overlap is fine).
    """
    norm = np.sqrt(np.diag(overlap))
    shape = np.linalg.eigvalsh(overlap / np.outer(norm, norm))
    where = f"the GTO radial basis is numerically singular for n_max={n_max}, r_cut={r_cut} at l={l}"
    if shape.min() > 1e-10 * shape.max():
        return InputError(f"{where}: r_cut spreads the basis widths over too many orders of magnitude",
                          hint="lower r_cut (SOAP is local: 3 to 8 Å is usual; above about 20 Å the basis fails) "
                               "or l_max")
    return InputError(f"{where}: the {n_max} radial functions are too close together within r_cut",
                      hint="lower n_max or raise r_cut")


def solid_harmonics(D, l_max):
    """Real orthonormal spherical harmonics times r^l, ``r^l Y_lm(D / r)``.

    Polynomials in x, y, z (smooth at D = 0). Columns ordered ``l^2 + l + m``.

    Parameters
    ----------
    D : ndarray or torch.Tensor, shape (n, 3)
    l_max : int

    Returns
    -------
    ndarray or torch.Tensor, shape (n, (l_max + 1)^2)

    Examples
    --------
    >>> Y = solid_harmonics(np.array([[0.0, 0.0, 2.0]]), 1)
    >>> np.allclose(Y, [[0.2821, 0.0, 0.9772, 0.0]], atol=1e-4)
    True
    """
    x, y, z = D[:, 0], D[:, 1], D[:, 2]
    r2 = x * x + y * y + z * z
    one = x * 0.0 + 1.0
    cos_m, sin_m = [one], [x * 0.0]
    for _ in range(1, l_max + 1):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(x * c - y * s)
        sin_m.append(x * s + y * c)
    cols = [None] * (l_max + 1) ** 2
    double_factorial = 1.0  # (2m - 1)!!
    for m in range(l_max + 1):
        if m > 0:
            double_factorial *= 2 * m - 1
        q_prev2, q_prev = None, double_factorial * one  # Q_m^m
        for l in range(m, l_max + 1):
            if l == m:
                q = q_prev
            elif l == m + 1:
                q = (2 * m + 1) * z * q_prev
            else:
                q = ((2 * l - 1) * z * q_prev - (l + m - 1) * r2 * q_prev2) / (l - m)
            if l > m:
                q_prev2, q_prev = q_prev, q
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            if m == 0:
                cols[l * l + l] = norm * q
            else:
                norm *= math.sqrt(2.0)
                cols[l * l + l + m] = norm * q * cos_m[m]
                cols[l * l + l - m] = norm * q * sin_m[m]
    if isinstance(D, np.ndarray):
        return np.stack(cols, axis=0).T
    import torch

    return torch.stack(cols, dim=1)


def solid_harmonics_grad(Dt, l_max):
    """``r^l Y_lm`` and its gradient, numpy, pairs along the last axis.

    Parameters
    ----------
    Dt : ndarray, shape (3, n)
    l_max : int

    Returns
    -------
    Y : ndarray, shape ((l_max + 1)^2, n)
    dY : ndarray, shape ((l_max + 1)^2, 3, n)
        ``dY[lm, a] = d Y[lm] / d D_a``.
    """
    x, y, z = Dt
    n = Dt.shape[1]
    r2 = x * x + y * y + z * z
    e = np.eye(3)[:, :, None]  # d(x, y, z)/dD
    cos_m, sin_m = [np.ones(n)], [np.zeros(n)]
    dcos, dsin = [np.zeros((3, n))], [np.zeros((3, n))]
    for _ in range(1, l_max + 1):
        c, s_, dc, ds = cos_m[-1], sin_m[-1], dcos[-1], dsin[-1]
        cos_m.append(x * c - y * s_)
        sin_m.append(x * s_ + y * c)
        dcos.append(e[0] * c + x * dc - e[1] * s_ - y * ds)
        dsin.append(e[0] * s_ + x * ds + e[1] * c + y * dc)
    LM = (l_max + 1) ** 2
    Y = np.empty((LM, n))
    dY = np.empty((LM, 3, n))
    double_factorial = 1.0
    for m in range(l_max + 1):
        if m > 0:
            double_factorial *= 2 * m - 1
        q2 = dq2 = None
        q1, dq1 = np.full(n, double_factorial), np.zeros((3, n))
        for l in range(m, l_max + 1):
            if l == m:
                q, dq = q1, dq1
            elif l == m + 1:
                q = (2 * m + 1) * z * q1
                dq = (2 * m + 1) * (e[2] * q1 + z * dq1)
            else:
                q = ((2 * l - 1) * z * q1 - (l + m - 1) * r2 * q2) / (l - m)
                dq = ((2 * l - 1) * (e[2] * q1 + z * dq1) - (l + m - 1) * (2.0 * Dt * q2 + r2 * dq2)) / (l - m)
            if l > m:
                q2, dq2, q1, dq1 = q1, dq1, q, dq
            norm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            if m == 0:
                Y[l * l + l] = norm * q
                dY[l * l + l] = norm * dq
            else:
                norm *= math.sqrt(2.0)
                Y[l * l + l + m] = norm * q * cos_m[m]
                dY[l * l + l + m] = norm * (dq * cos_m[m] + q * dcos[m])
                Y[l * l + l - m] = norm * q * sin_m[m]
                dY[l * l + l - m] = norm * (dq * sin_m[m] + q * dsin[m])
    return Y, dY


def _group_starts(sorted_keys):
    """Start index of every run of equal values in a sorted array."""
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


class SOAP(LocalDescriptor):
    """Smooth overlap of atomic positions: the power spectrum per atom.

    Parameters
    ----------
    r_cut : float, default 5.0
        Cutoff radius in Å (> 1); also sets the radial basis extent.
    n_max : int, default 8
        Number of radial basis functions.
    l_max : int, default 6
        Largest angular momentum (<= 20).
    sigma : float, default 1.0
        Width (standard deviation, Å) of the Gaussian on each atom.
    cutoff_function : {"poly", "cosine", None}, default "poly"
        Smooth weight that takes neighbours to zero at ``r_cut``:
        ``"poly"`` is ``(1 + 2x^3 - 3x^2)^cutoff_exponent`` with ``x = r / r_cut``
        (Caro, PRB 100, 024112 (2019)); ``"cosine"`` is ``(1 + cos(pi x)) / 2``;
        ``None`` is DScribe's default: weight 1 up to
        ``r_cut + sigma sqrt(2 ln 1000)`` and a hard (discontinuous) cutoff.
    cutoff_exponent : float, default 2
        The exponent ``m`` of the ``"poly"`` cutoff.
    radial_scaling : dict or None, default None
        Optional ``{"c": c, "d": d, "m": m, "r0": r0}``: multiplies the weight
        by ``c / (d + (r / r0)^m)`` (Willatt, Musil and Ceriotti, PCCP 20,
        29661 (2018)). Missing keys default to c = d = m = r0 = 1.
    center_weight : float or None, default None
        Weight of the centre atom in its own density; None keeps the weight
        function's value at r = 0 (1 unless ``radial_scaling`` changes it).
    species : list of str or int, optional
        Elements; learned in ``fit`` if not given.
    reduce : {"mean", "sum", "species_mean", None}, default "mean"
        Per-structure reduction in :meth:`transform`; None gives per-atom rows.
    n_jobs : int, default 1
        Processes for long inputs (batches of structures run in parallel).
    progress : bool, default True
        Progress bar for long inputs.

    Attributes
    ----------
    species_ : list of int
        Atomic numbers, sorted.
    n_features_out_ : int
        ``(S n_max)(S n_max + 1) / 2 (l_max + 1)`` for S species.

    Notes
    -----
    Values agree with ``dscribe.descriptors.SOAP(rbf="gto", compression off,
    average="off")`` for the same ``r_cut, n_max, l_max, sigma`` (see the
    module docstring for the ``cutoff_function`` mapping); ``reduce="mean"``
    equals DScribe's ``average="outer"``.

    Examples
    --------
    >>> from ase.build import molecule
    >>> soap = SOAP(r_cut=3.0, n_max=2, l_max=1, species=["H", "O"], reduce=None)
    >>> soap.fit_transform([molecule("H2O")]).shape
    (3, 20)
    >>> soap.gradients(molecule("H2O")).shape
    (3, 20, 3, 3)
    """

    def __init__(
        self,
        *,
        r_cut=5.0,
        n_max=8,
        l_max=6,
        sigma=1.0,
        cutoff_function="poly",
        cutoff_exponent=2,
        radial_scaling=None,
        center_weight=None,
        species=None,
        reduce="mean",
        n_jobs=1,
        progress=True,
    ):
        self.r_cut = r_cut
        self.n_max = n_max
        self.l_max = l_max
        self.sigma = sigma
        self.cutoff_function = cutoff_function
        self.cutoff_exponent = cutoff_exponent
        self.radial_scaling = radial_scaling
        self.center_weight = center_weight
        self.species = species
        self.reduce = reduce
        self.n_jobs = n_jobs
        self.progress = progress

    # ------------------------------------------------------------------ setup
    def _fit_extra(self, records):
        for name in ("r_cut", "n_max", "l_max", "sigma", "cutoff_exponent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise InputError(f"SOAP {name} must be a number, got {value!r}")
        if not float(self.r_cut) > 1.0:
            raise InputError(f"SOAP r_cut must be > 1 Å, got {self.r_cut}", hint="the GTO basis spans [1, r_cut]")
        if int(self.n_max) < 1 or int(self.n_max) != self.n_max:
            raise InputError(f"SOAP n_max must be a positive integer, got {self.n_max}")
        if not 0 <= int(self.l_max) <= 20 or int(self.l_max) != self.l_max:
            raise InputError(f"SOAP l_max must be an integer in 0..20, got {self.l_max}")
        if not float(self.sigma) > 0:
            raise InputError(f"SOAP sigma must be > 0, got {self.sigma}")
        if self.cutoff_function not in ("poly", "cosine", None):
            raise InputError(
                f"unknown SOAP cutoff_function '{self.cutoff_function}'", hint="use 'poly', 'cosine' or None"
            )
        if self.cutoff_function == "poly" and not float(self.cutoff_exponent) > 0:
            raise InputError(f"SOAP cutoff_exponent must be > 0, got {self.cutoff_exponent}")
        if self.radial_scaling is not None:
            if not isinstance(self.radial_scaling, dict) or set(self.radial_scaling) - {"c", "d", "m", "r0"}:
                raise InputError(
                    "SOAP radial_scaling must be None or a dict with keys c, d, m, r0",
                    hint='e.g. {"c": 1, "d": 1, "m": 2, "r0": 1}',
                )
        if self.reduce not in ("mean", "sum", "species_mean", None):
            raise InputError(f"unknown reduce '{self.reduce}'", hint="use 'mean', 'sum', 'species_mean' or None")
        gto_basis(float(self.r_cut), int(self.n_max), int(self.l_max))  # fails early if singular

    def _n_features(self):
        sn = len(self.species_) * int(self.n_max)
        return sn * (sn + 1) // 2 * (int(self.l_max) + 1)

    def neighbor_cutoff(self):
        """Distance (Å) up to which neighbours enter the density."""
        if self.cutoff_function is None:
            return float(self.r_cut) + float(self.sigma) * math.sqrt(-2.0 * math.log(GTO_THRESHOLD))
        return float(self.r_cut)

    def _feature_index(self):
        """(l, row a, column b) of every output feature in the (S n_max)^2 Gram blocks."""
        S, N, L = len(self.species_), int(self.n_max), int(self.l_max)
        ls, rows, cols = [], [], []
        for s1 in range(S):
            for s2 in range(s1, S):
                for l in range(L + 1):
                    for n1 in range(N):
                        for n2 in range(n1 if s1 == s2 else 0, N):
                            ls.append(l)
                            rows.append(s1 * N + n1)
                            cols.append(s2 * N + n2)
        return np.asarray(ls), np.asarray(rows), np.asarray(cols)

    def get_feature_names_out(self, input_features=None):
        """Names ``soap_<Z>_<Z'>_l<l>_n<n>_n<n'>`` in output order."""
        from ase.data import chemical_symbols
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        N = int(self.n_max)
        sym = [chemical_symbols[z] for z in self.species_]
        ls, rows, cols = self._feature_index()
        return np.asarray(
            [f"soap_{sym[a // N]}_{sym[b // N]}_l{l}_n{a % N}_n{b % N}" for l, a, b in zip(ls, rows, cols)],
            dtype=object,
        )

    def _constants(self):
        """Arrays shared by every batch (numpy)."""
        N, L = int(self.n_max), int(self.l_max)
        S = len(self.species_)
        eta = 1.0 / (2.0 * float(self.sigma) ** 2)
        alphas, betas = gto_basis(float(self.r_cut), N, L)
        l_arr = np.arange(L + 1)[:, None]
        decay = alphas * eta / (alphas + eta)  # (L+1, N)
        bfac = (np.pi**1.5 * eta ** l_arr[:, :, None] * betas) / ((alphas + eta) ** (l_arr + 1.5))[:, None, :]
        lm_l = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)
        ls, rows, cols = self._feature_index()
        sn = S * N
        lookup = np.full(max(self.species_) + 1, -1, dtype=np.int64)
        lookup[self.species_] = np.arange(S)
        return {
            "N": N,
            "L": L,
            "S": S,
            "decay": -decay,  # exp(decay * r^2)
            "bfac": bfac,  # (L+1, N, K)
            "bfac_lm": np.ascontiguousarray(bfac[lm_l]),  # (LM, N, K)
            "lm_l": lm_l,
            "gather": ls * sn * sn + rows * sn + cols,
            "pref": np.pi * np.sqrt(8.0 / (2.0 * ls + 1.0)),
            "lookup": lookup,
            "y00": 0.5 / math.sqrt(math.pi),
            "w0": self._center_weight(),
        }

    # ------------------------------------------------------------ the maths
    def _weights(self, r):
        """Neighbour weight w(r): cutoff function times optional radial scaling (numpy or torch)."""
        if isinstance(r, np.ndarray):
            xp, clip = np, lambda v: np.minimum(v, 1.0)  # noqa: E731
        else:
            import torch

            xp, clip = torch, lambda v: torch.clamp(v, max=1.0)  # noqa: E731
        rc = float(self.r_cut)
        if self.cutoff_function == "poly":
            x = clip(r / rc)
            w = (1.0 + (2.0 * x - 3.0) * x * x) ** float(self.cutoff_exponent)
        elif self.cutoff_function == "cosine":
            w = 0.5 * (xp.cos(math.pi * clip(r / rc)) + 1.0)
        else:
            w = r * 0.0 + 1.0
        if self.radial_scaling is not None:
            w = w * self._scaling(r)
        return w

    def _weights_derivative(self, r):
        """w(r) and dw/dr, numpy."""
        rc = float(self.r_cut)
        x = np.minimum(r / rc, 1.0)
        if self.cutoff_function == "poly":
            m = float(self.cutoff_exponent)
            u = 1.0 + (2.0 * x - 3.0) * x * x
            w = u**m
            dw = m * u ** (m - 1.0) * 6.0 * x * (x - 1.0) / rc
        elif self.cutoff_function == "cosine":
            w = 0.5 * (np.cos(math.pi * x) + 1.0)
            dw = -0.5 * math.pi / rc * np.sin(math.pi * x)
        else:
            w, dw = np.ones_like(r), np.zeros_like(r)
        if self.radial_scaling is not None:
            p = self.radial_scaling
            c, d, m, r0 = (float(p.get(k, 1.0)) for k in ("c", "d", "m", "r0"))
            t = (r / r0) ** m
            sc = c / (d + t)
            dsc = -c * m * t / np.maximum(r, 1e-300) / (d + t) ** 2
            w, dw = w * sc, dw * sc + w * dsc
        return w, dw

    def _scaling(self, r):
        p = self.radial_scaling
        c, d, m, r0 = (float(p.get(k, 1.0)) for k in ("c", "d", "m", "r0"))
        return c / (d + (r / r0) ** m)

    def _center_weight(self):
        if self.center_weight is not None:
            return float(self.center_weight)
        if self.radial_scaling is not None:
            return float(self._scaling(np.zeros(1))[0])
        return 1.0

    def _prepare(self, atoms_list, const):
        """Neighbour pairs of several structures, with global centre indices."""
        cutoff = self.neighbor_cutoff()
        S, lookup = const["S"], const["lookup"]
        centre, js, Ds = [], [], []
        offset = 0
        for atoms in atoms_list:
            n = len(atoms)
            i, j, D, _ = neighbor_pairs(atoms, cutoff, shifts_needed=False)
            centre.append(i + offset)
            js.append(j + offset)
            Ds.append(D)
            offset += n
        numbers = np.concatenate([a.numbers for a in atoms_list]) if atoms_list else np.zeros(0, int)
        spec = lookup[numbers]
        i = np.concatenate(centre).astype(np.int64) if centre else np.zeros(0, np.int64)
        j = np.concatenate(js).astype(np.int64) if js else np.zeros(0, np.int64)
        return {
            "n": offset,
            "i": i,
            "j": j,
            "row": i * S + spec[j],
            "D": np.concatenate(Ds) if Ds else np.zeros((0, 3)),
            "self_row": np.arange(offset) * S + spec,
        }

    def _power_spectrum(self, c, n_centres, const, xp, sizes=None):
        """Features from coefficients c (n_centres * S, LM, N) (numpy or torch).

        With ``sizes`` (numpy only), the power spectra of consecutive blocks of
        centres are summed: ``sum_i C_i^T C_i`` is one matrix product per block.
        """
        N, L, S = const["N"], const["L"], const["S"]
        LM = (L + 1) ** 2
        SN = S * N
        if xp is np:
            c = c.reshape(n_centres, S, LM, N).transpose(0, 2, 1, 3)
            rows = n_centres if sizes is None else len(sizes)
            gram = np.empty((rows, L + 1, SN, SN))
            bounds = None if sizes is None else np.concatenate([[0], np.cumsum(sizes)])
            for l in range(L + 1):
                cl = c[:, l * l : (l + 1) ** 2].reshape(n_centres, 2 * l + 1, SN)
                if sizes is None:
                    np.matmul(cl.transpose(0, 2, 1), cl, out=gram[:, l])
                else:
                    for k in range(rows):
                        block = cl[bounds[k] : bounds[k + 1]].reshape(-1, SN)
                        np.matmul(block.T, block, out=gram[k, l])
            return np.take(gram.reshape(rows, (L + 1) * SN * SN), const["gather"], axis=1) * const["pref"]
        c = c.reshape(n_centres, S, LM, N).permute(0, 2, 1, 3).reshape(n_centres, LM, SN)
        grams = []
        for l in range(L + 1):
            cl = c[:, l * l : (l + 1) ** 2, :]
            grams.append(xp.matmul(cl.transpose(1, 2), cl).reshape(n_centres, -1))
        gram = xp.cat(grams, dim=1)
        return xp.index_select(gram, 1, const["gather_t"]) * const["pref_t"]

    def _coefficients(self, D, row, self_row, n_centres, const):
        """Expansion coefficients c (n_centres * S, LM, N), numpy, fast path.

        Pairs run along the last (contiguous) axis so that every elementwise
        product and the per-centre sums are long inner loops.
        """
        N, L, S = const["N"], const["L"], const["S"]
        LM = (L + 1) ** 2
        order = np.argsort(row, kind="stable")
        Dt, row = np.ascontiguousarray(D[order].T), row[order]  # (3, P)
        r2 = Dt[0] * Dt[0] + Dt[1] * Dt[1] + Dt[2] * Dt[2]
        w = self._weights(np.sqrt(r2))
        radial = np.exp(const["decay"][:, :, None] * r2)  # (L+1, K, P)
        radial *= w
        Y = solid_harmonics(Dt.T, L).T  # (LM, P), contiguous
        prim = np.empty((LM, N, len(r2)))
        for l in range(L + 1):
            sl = slice(l * l, (l + 1) ** 2)
            np.multiply(Y[sl, None, :], radial[l, None, :, :], out=prim[sl])
        c = np.zeros((n_centres * S, LM, N))
        if len(row):
            starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
            c[row[starts]] = np.add.reduceat(prim, starts, axis=2).transpose(2, 0, 1)
        c[self_row, 0, :] += const["w0"] * const["y00"]
        # radial transform: c[x, lm, n] = sum_k bfac[l, n, k] c[x, lm, k]
        out = np.empty_like(c)
        for l in range(L + 1):
            sl = slice(l * l, (l + 1) ** 2)
            np.matmul(c[:, sl, :], const["bfac"][l].T, out=out[:, sl, :])
        return out

    def _features_numpy(self, D, row, self_row, n_centres, const, sizes=None):
        """Power spectrum (n_centres, n_features) from pair vectors, numpy."""
        c = self._coefficients(D, row, self_row, n_centres, const)
        return self._power_spectrum(c, n_centres, const, np, sizes)

    def _features_torch(self, D, row, self_row, n_centres, const):
        """The same as :meth:`_features_numpy` in torch, differentiable in D."""
        import torch

        N, L, S = const["N"], const["L"], const["S"]
        LM = (L + 1) ** 2
        r2 = (D * D).sum(1)
        w = self._weights(torch.sqrt(torch.clamp(r2, min=1e-30)))
        radial = w[:, None, None] * torch.exp(r2[:, None, None] * const["decay_t"][None])  # (P, L+1, K)
        Y = solid_harmonics(D, L)  # (P, LM)
        prim = torch.cat([radial[:, l : l + 1, :] * Y[:, l * l : (l + 1) ** 2, None] for l in range(L + 1)], dim=1)
        c = torch.zeros((n_centres * S, LM, N), dtype=D.dtype).index_add(0, row, prim)
        centre = torch.zeros((n_centres * S, LM, N), dtype=torch.float64)
        centre[self_row, 0, :] = const["w0"] * const["y00"]
        c = torch.einsum("xmk,mnk->xmn", c + centre, const["bfac_lm_t"])
        return self._power_spectrum(c, n_centres, const, torch)

    def _featurize_batch(self, atoms_list, const=None, reduce=None):
        const = const or self._constants()
        data = self._prepare(atoms_list, const)
        sizes = None if reduce is None else np.asarray([len(a) for a in atoms_list])
        out = self._features_numpy(data["D"], data["row"], data["self_row"], data["n"], const, sizes)
        if reduce == "mean":
            out /= np.maximum(sizes, 1)[:, None]
        return out

    def _featurize_atoms(self, atoms):
        return self._featurize_batch([atoms])

    # ------------------------------------------------------------- public
    def _run_batches(self, records, reduce):
        import functools

        from tqdm.auto import tqdm

        from ..parallel import Executor
        from .base import PROGRESS_MIN

        batches = self._batches(records)
        show = bool(self.progress) and len(records) >= PROGRESS_MIN
        executor = Executor(n_jobs=self.n_jobs or 1)
        if executor.kind != "serial" and len(batches) > 1:  # each worker computes the constants itself
            return executor.map(functools.partial(self._featurize_batch, const=None, reduce=reduce), batches,
                                progress=show, desc="SOAP")
        const = self._constants()
        return [self._featurize_batch(b, const, reduce) for b in tqdm(batches, desc="SOAP", disable=not show,
                                                                       leave=False)]

    def transform_local(self, X):
        """Per-atom SOAP rows and the index of the structure that owns each row.

        Structures are processed in batches (all neighbour pairs of a batch at
        once), with a progress bar and ``n_jobs`` processes for long inputs.

        Returns
        -------
        features : ndarray, shape (n_atoms_total, ``n_features_out_``)
        structure_index : ndarray of int, shape (n_atoms_total,)
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        records = as_records(X)
        self._check_species(records)
        sizes = np.asarray([len(a) for a in records], dtype=np.int64)
        blocks = self._run_batches(records, None)
        features = np.concatenate(blocks) if blocks else np.zeros((0, self.n_features_out_))
        return features, np.repeat(np.arange(len(records)), sizes)

    def transform(self, X):
        """Per-structure rows (``reduce`` set) or per-atom rows (``reduce=None``).

        ``"mean"`` and ``"sum"`` are computed without forming per-atom rows.
        """
        if self.reduce not in ("mean", "sum"):
            return super().transform(X)
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        records = as_records(X)
        self._check_species(records)
        blocks = self._run_batches(records, self.reduce)
        return np.concatenate(blocks) if blocks else np.zeros((0, self.n_features_out_))

    def _batches(self, records):
        """Group consecutive structures into batches of about BATCH_ELEMENTS products."""
        rc = self.neighbor_cutoff()
        per_pair = (int(self.l_max) + 1) ** 2 * int(self.n_max)
        max_pairs = max(1, BATCH_ELEMENTS // per_pair)
        batches, current, load = [], [], 0.0
        for atoms in records:
            n = len(atoms)
            if n and atoms.pbc.any() and abs(atoms.cell.volume) > 1e-9:
                density = n / abs(atoms.cell.volume)
                est = n * 4.0 / 3.0 * math.pi * rc**3 * density
            else:
                est = n * n
            if current and load + est > max_pairs:
                batches.append(current)
                current, load = [], 0.0
            current.append(atoms)
            load += est
        if current:
            batches.append(current)
        return batches

    def gradients(self, atoms, strain=False, method="analytic"):
        """Derivatives of the per-atom features with respect to positions (and strain).

        Periodic cells included. The neighbour list is that of the given
        geometry; with a smooth ``cutoff_function`` the derivatives are exact.

        Parameters
        ----------
        atoms : ase.Atoms
        strain : bool, default False
            Also return the derivative with respect to a homogeneous strain
            ``eps`` that maps every position and cell vector ``r -> (I + eps) r``.
        method : {"analytic", "autograd"}, default "analytic"
            Closed-form derivatives in numpy, or PyTorch forward-mode automatic
            differentiation of the same expressions (slower; a cross-check).

        Returns
        -------
        dX_dr : ndarray, shape (n_atoms, ``n_features_out_``, n_atoms, 3)
            ``dX_dr[i, f, j, a] = d features[i, f] / d positions[j, a]``.
            The derivative of a mean-reduced row is ``dX_dr.mean(axis=0)``.
        dX_deps : ndarray, shape (n_atoms, ``n_features_out_``, 3, 3)
            Only if ``strain``; ``d features[i, f] / d eps[a, b]`` at eps = 0.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_out_")
        self._check_species([atoms])
        if method == "autograd":
            return self._gradients_autograd(atoms, strain)
        if method != "analytic":
            raise InputError(f"unknown gradients method '{method}'", hint="use 'analytic' or 'autograd'")
        return self._gradients_analytic(atoms, strain)

    def _gradients_analytic(self, atoms, strain):
        const = self._constants()
        N, L, S = const["N"], const["L"], const["S"]
        LM, SN, F = (L + 1) ** 2, S * N, self.n_features_out_
        data = self._prepare([atoms], const)
        n = data["n"]
        c = self._coefficients(data["D"], data["row"], data["self_row"], n, const)
        C = c.reshape(n, S, LM, N).transpose(0, 2, 1, 3).reshape(n, LM, SN)  # per centre
        # pairs sorted by (centre, neighbour) for the accumulation at the end
        order = np.lexsort((data["j"], data["i"]))
        i, j, D = data["i"][order], data["j"][order], data["D"][order]
        spec_j = (data["row"] % S)[order]
        ls, rows, cols = self._feature_index()
        s_a, n_a, s_b, n_b = rows // N, rows % N, cols // N, cols % N
        idx1 = (ls * N + n_a) * SN + cols  # T[l, n_A, B]
        idx2 = (ls * N + n_b) * SN + rows  # T[l, n_B, A]
        pref = const["pref"]
        d_pos = np.zeros((n, n, F, 3))  # [i, j, f, a], transposed at the end
        d_eps = np.zeros((n, F, 3, 3)) if strain else None
        chunk = max(1, int(1e7 // (F * 3 + LM * N * 3 * 2)))
        for start in range(0, len(i), chunk):
            sl_p = slice(start, start + chunk)
            ip, jp, Dp, sp = i[sl_p], j[sl_p], D[sl_p], spec_j[sl_p]
            P = len(ip)
            Dt = np.ascontiguousarray(Dp.T)
            r2 = np.einsum("ap,ap->p", Dt, Dt)
            r = np.sqrt(r2)
            w, dw = self._weights_derivative(r)
            E = np.exp(const["decay"][:, :, None] * r2)  # (L+1, K, P)
            R = E * w  # radial value
            Rd = E * (dw / r + 2.0 * const["decay"][:, :, None] * w)  # d radial / dD_a = Rd * D_a
            Y, dY = solid_harmonics_grad(Dt, L)
            T = np.empty((P, L + 1, N, 3, SN))
            for l in range(L + 1):
                sl = slice(l * l, (l + 1) ** 2)
                # g[m, k, a, p] = Rd[k, p] D_a[p] Y[m, p] + R[k, p] dY[m, a, p]
                g = Rd[l][None, :, None, :] * Dt[None, None, :, :] * Y[sl][:, None, None, :]
                g += R[l][None, :, None, :] * dY[sl][:, None, :, :]
                dc = np.einsum("nk,mkap->pnam", const["bfac"][l], g)  # (P, N, 3, 2l+1)
                T[:, l] = np.matmul(dc.reshape(P, N * 3, 2 * l + 1), C[ip, sl, :]).reshape(P, N, 3, SN)
            T = T.transpose(0, 1, 2, 4, 3).reshape(P, -1, 3)  # [p, (l, n, B), a]
            # images of the same neighbour share (i, j): sum them before the gather
            key = ip * n + jp
            starts = _group_starts(key)
            Tk = np.add.reduceat(T, starts, axis=0)
            sk, ik = sp[starts], ip[starts]
            dp = np.take(Tk, idx1, axis=1)
            dp *= (s_a[None, :] == sk[:, None])[:, :, None]
            dp += np.take(Tk, idx2, axis=1) * (s_b[None, :] == sk[:, None])[:, :, None]
            dp *= pref[None, :, None]  # (keys, F, 3): d features[i] / d D summed over images of j
            d_pos.reshape(n * n, F, 3)[key[starts]] += dp
            # D_p = r_j - r_i + shift: the centre moves with the opposite sign
            first = _group_starts(ik)
            d_pos[ik[first], ik[first]] -= np.add.reduceat(dp, first, axis=0)
            if strain:
                # d D_p / d eps_ab = delta_a. D_p,b: needs the per-pair (not per-key) derivative
                Tp = np.take(T, idx1, axis=1) * (s_a[None, :] == sp[:, None])[:, :, None]
                Tp += np.take(T, idx2, axis=1) * (s_b[None, :] == sp[:, None])[:, :, None]
                Tp *= pref[None, :, None]
                bounds = np.r_[_group_starts(ip), P]
                for a_, b_ in zip(bounds[:-1], bounds[1:]):
                    d_eps[ip[a_]] += np.einsum("pfa,pb->fab", Tp[a_:b_], Dp[a_:b_])
        d_pos = np.ascontiguousarray(d_pos.transpose(0, 2, 1, 3))
        if strain:
            return d_pos, d_eps
        return d_pos

    def _gradients_autograd(self, atoms, strain):
        import torch

        const = self._constants()
        for key in ("decay", "bfac_lm", "pref"):
            const[key + "_t"] = torch.as_tensor(const[key], dtype=torch.float64)
        const["gather_t"] = torch.as_tensor(const["gather"])
        data = self._prepare([atoms], const)
        n, F = data["n"], self.n_features_out_
        i = torch.as_tensor(data["i"])
        j = torch.as_tensor(data["j"])
        row = torch.as_tensor(data["row"])
        self_row = torch.as_tensor(data["self_row"])
        pos0 = torch.as_tensor(np.asarray(atoms.positions, dtype=float))
        image = torch.as_tensor(data["D"]) - (pos0[j] - pos0[i])  # shift . cell
        eye = torch.eye(3, dtype=torch.float64)

        def features(pos, eps):
            D = (pos[j] - pos[i] + image) @ (eye + eps).T
            return self._features_torch(D, row, self_row, n, const)

        n_dir = 3 * n + (9 if strain else 0)
        tangents = torch.eye(n_dir, dtype=torch.float64)
        t_pos = tangents[:, : 3 * n].reshape(n_dir, n, 3)
        t_eps = tangents[:, 3 * n :]
        t_eps = t_eps.reshape(n_dir, 3, 3) if strain else torch.zeros((n_dir, 3, 3), dtype=torch.float64)
        eps0 = torch.zeros((3, 3), dtype=torch.float64)

        def one(tp, te):
            return torch.func.jvp(features, (pos0, eps0), (tp, te))[1]

        per_dir = max(1, len(data["D"]) * (int(self.l_max) + 1) ** 2 * int(self.n_max) * 4)
        chunk = max(1, min(n_dir, int(3e7 // per_dir)))
        parts = [
            torch.func.vmap(one)(t_pos[a : a + chunk], t_eps[a : a + chunk]) for a in range(0, n_dir, chunk)
        ]
        jac = torch.cat(parts).numpy()  # (n_dir, n, F)
        d_pos = jac[: 3 * n].reshape(n, 3, n, F).transpose(2, 3, 0, 1)
        d_pos = np.ascontiguousarray(d_pos)
        if not strain:
            return d_pos
        d_eps = np.ascontiguousarray(jac[3 * n :].reshape(3, 3, n, F).transpose(2, 3, 0, 1))
        return d_pos, d_eps
