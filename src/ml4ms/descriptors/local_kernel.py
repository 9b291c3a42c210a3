"""Sparse structure kernels from per-atom environments: the Nyström / projected-process feature map.

A structure kernel built from an environment kernel ``k`` (on per-atom
descriptors such as SOAP) is, for ``reduce="sum"``,

    K(A, B) = Σ_{a∈A} Σ_{b∈B} k(x_a, x_b)

(the sum of local kernels, right for extensive targets such as total or
atomization energies: a model of it is a sum of atomic contributions), or for
``reduce="mean"`` the same divided by ``|A| |B|`` (the average kernel).
With ``M`` *active* environments ``x_m`` chosen from the training set (FPS
or CUR), this module maps a structure to

    f(A) = Φ(A) K_MM^{-1/2},    Φ(A)_m = Σ_{a∈A} k(x_a, x_m),

so that ``f(A) · f(B) = Φ(A) K_MM^{-1} Φ(B)ᵀ``, the projected-process
(Nyström, "subset of regressors") approximation of ``K(A, B)``. A linear
ridge regression on ``f`` with weights ``w ~ N(0, I)`` is exactly the sparse
GP / KRR of the structure kernel (Quiñonero-Candela and Rasmussen, JMLR 6,
1939 (2005); Bartók and Csányi, Int. J. Quantum Chem. 115, 1051 (2015)),
at a cost linear in the number of structures. When the active set holds
every training environment (``selection="all"``) the approximation is exact
on the training set and the ridge reproduces full KRR with ``K``.

Per-atom rows ``f_a = φ(x_a) K_MM^{-1/2}`` (:meth:`LocalKernelFeatures.transform_local`)
sum to ``f(A)`` for ``reduce="sum"``, so a linear model on ``f`` gives
per-atom contributions that add up to its prediction.

With ``per_species=True`` (default) the environment kernel is zero between
atoms of different elements (``k(x_a, x_b) δ(Z_a, Z_b)``), active
environments are chosen per element, and ``K_MM`` is block diagonal.

Kernels: ``"polynomial"`` is ``(x̂_a · x̂_b)^zeta`` with ``x̂ = x / |x|`` (the
usual SOAP kernel, De et al., PCCP 18, 13754 (2016)); ``"gaussian"`` is
``exp(-gamma |x_a - x_b|²)``.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError
from .base import PROGRESS_MIN, as_records, batches_of, check_finite_params

KERNELS = ("polynomial", "gaussian")
SELECTIONS = ("fps", "cur", "all")
REDUCES = ("sum", "mean")


def _as_descriptor(spec):
    """A local descriptor from a ``{"name": ..., **params}`` dict or an instance."""
    from . import make_descriptor
    from .base import LocalDescriptor

    if spec is None:
        raise InputError("local_kernel needs a local descriptor",
                         hint='e.g. descriptor = {name = "soap", r_cut = 4.0}')
    if isinstance(spec, dict):
        if not spec.get("name"):
            raise InputError("local_kernel: the descriptor table needs a 'name'")
        desc = make_descriptor(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    else:
        desc = clone(spec)
    if not isinstance(desc, LocalDescriptor):
        raise InputError(f"local_kernel needs a per-atom descriptor, got {type(desc).__name__}",
                         hint="use soap, acsf or chebyshev")
    return desc


def share_out(counts, total):
    """Split ``total`` over groups as evenly as possible, never more than a group's count.

    Examples
    --------
    >>> share_out([1000, 10, 500], 300).tolist()
    [145, 10, 145]
    """
    counts = np.asarray(counts, dtype=int)
    out = np.zeros(len(counts), dtype=int)
    left = min(int(total), int(counts.sum()))
    open_ = counts > 0
    while left > 0 and open_.any():
        share = max(1, left // int(open_.sum()))
        for k in np.flatnonzero(open_):
            take = min(share, counts[k] - out[k], left)
            out[k] += take
            left -= take
            if out[k] >= counts[k]:
                open_[k] = False
            if left == 0:
                break
    return out


def inverse_sqrt(K, jitter=1e-10, rtol=1e-10):
    """``K^{-1/2}`` of a symmetric PSD matrix by a jittered eigendecomposition.

    Eigenvalues below ``rtol`` times the largest are dropped (their columns are
    zero), so the result has ``K``'s shape and ``P Pᵀ`` is the pseudo-inverse
    of ``K + jitter I`` on the kept subspace.

    Examples
    --------
    >>> P = inverse_sqrt(np.array([[4.0, 0.0], [0.0, 0.0]]))
    >>> np.round(P @ P.T, 6).tolist()
    [[0.25, 0.0], [0.0, 0.0]]
    """
    from scipy.linalg import eigh

    n = len(K)
    if n == 0:
        return np.zeros((0, 0))
    scale = max(float(np.max(np.abs(np.diag(K)))), 1e-300)
    w, V = eigh(K + jitter * scale * np.eye(n))
    keep = w > rtol * max(float(w[-1]), 1e-300)
    P = np.zeros((n, n))
    P[:, :int(keep.sum())] = V[:, keep] / np.sqrt(w[keep])
    return P


class LocalKernelFeatures(TransformerMixin, BaseEstimator):
    """Projected-process features of a sum (or average) of local-environment kernels.

    Parameters
    ----------
    descriptor : dict or LocalDescriptor
        The per-atom descriptor: ``{"name": "soap", ...}`` as in a recipe
        (in TOML: a ``[descriptor.descriptor]`` table) or an instance.
    kernel : {"polynomial", "gaussian"}, default "polynomial"
        Environment kernel: normalised dot product to the power ``zeta``, or
        ``exp(-gamma |x - y|²)``.
    zeta : float, default 2
    gamma : float or "auto", default "auto"
        Gaussian width; ``"auto"`` is 1 / median squared distance between
        the active environments.
    reduce : {"sum", "mean"}, default "sum"
        Sum kernel (extensive targets) or average kernel (intensive ones).
    n_active : int or dict, default 1000
        Number of active environments, split evenly over the elements
        (never more than an element has) when ``per_species``; a dict
        ``{symbol: n}`` gives the numbers per element.
    selection : {"fps", "cur", "all"}, default "fps"
        How the active environments are chosen among the training ones
        (``"all"`` takes every one: the exact structure kernel).
    per_species : bool, default True
        Environments of different elements do not interact.
    max_candidates : int, default 20000
        FPS/CUR choose among at most this many training environments
        (a random subset, split over the elements like ``n_active``).
    seed : int, default 0
        For the candidate subset and the first FPS point.
    jitter : float, default 1e-10
        Relative jitter on the diagonal of ``K_MM``; eigenvalues below
        ``1e-10`` of the largest are dropped.
    species_offset : float, default 0
        If > 0, adds ``species_offset² δ(Z_a, Z_b)`` to the environment kernel
        (a per-element constant, e.g. atomic reference energies with this prior
        standard deviation): one more column per element, ``species_offset``
        times its number of atoms.
    chunk_atoms : int, default 8192
        Environments computed at a time (bounds the memory).
    progress : bool, default True

    Attributes
    ----------
    descriptor_ : LocalDescriptor
        The fitted per-atom descriptor.
    active_ : ndarray, shape (M, n_descriptor_features)
        Active environments (normalised for the polynomial kernel).
    active_species_ : ndarray of int, shape (M,)
    projection_ : ndarray, shape (M, M)
        ``K_MM^{-1/2}`` (block diagonal per element with ``per_species``).
    gamma_ : float or None
    species_ : list of int
    n_features_out_ : int
        ``M`` (plus one per element with ``species_offset``).

    Examples
    --------
    >>> from ase.build import molecule
    >>> mols = [molecule(m) for m in ("H2O", "CH4", "NH3", "CH3OH")]
    >>> f = LocalKernelFeatures(descriptor={"name": "soap", "r_cut": 3.0, "n_max": 2, "l_max": 1},
    ...                         n_active=6).fit(mols)
    >>> F = f.transform(mols)
    >>> F.shape
    (4, 6)
    >>> rows, index = f.transform_local(mols)
    >>> bool(np.allclose(np.bincount(index, rows[:, 0]), F[:, 0]))
    True
    """

    def __init__(self, *, descriptor=None, kernel="polynomial", zeta=2, gamma="auto", reduce="sum",
                 n_active=1000, selection="fps", per_species=True, max_candidates=20000, seed=0,
                 jitter=1e-10, species_offset=0.0, chunk_atoms=8192, progress=True):
        self.descriptor = descriptor
        self.kernel = kernel
        self.zeta = zeta
        self.gamma = gamma
        self.reduce = reduce
        self.n_active = n_active
        self.selection = selection
        self.per_species = per_species
        self.max_candidates = max_candidates
        self.seed = seed
        self.jitter = jitter
        self.species_offset = species_offset
        self.chunk_atoms = chunk_atoms
        self.progress = progress

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.kernel not in KERNELS:
            raise InputError(f"unknown local kernel '{self.kernel}'", hint=f"choose one of: {', '.join(KERNELS)}")
        if self.selection not in SELECTIONS:
            raise InputError(f"unknown selection '{self.selection}'", hint=f"choose one of: {', '.join(SELECTIONS)}")
        if self.reduce not in REDUCES:
            raise InputError(f"local_kernel reduce must be 'sum' or 'mean', not '{self.reduce}'")
        if self.kernel == "polynomial" and not float(self.zeta) > 0:
            raise InputError(f"zeta must be > 0, got {self.zeta}")
        if self.kernel == "gaussian" and not (self.gamma == "auto" or float(self.gamma) > 0):
            raise InputError(f"gamma must be > 0 or 'auto', got {self.gamma}")
        if not float(self.species_offset) >= 0:
            raise InputError(f"species_offset must be >= 0, got {self.species_offset}")
        if int(self.chunk_atoms) < 1:
            raise InputError(f"chunk_atoms must be >= 1, got {self.chunk_atoms}")

    # ------------------------------------------------------------------ maths
    def _prepare(self, X):
        """Rows as the kernel sees them (unit length for the polynomial kernel)."""
        X = np.asarray(X, dtype=float)
        if self.kernel == "polynomial":
            norm = np.linalg.norm(X, axis=1)
            X = X / np.where(norm > 0, norm, 1.0)[:, None]
        return X

    def _kernel(self, X, A, gamma):
        """Environment kernel between prepared rows ``X`` and ``A``."""
        if self.kernel == "polynomial":
            base = X @ A.T
            zeta = float(self.zeta)
            if zeta == int(zeta):
                return base ** int(zeta)
            return np.clip(base, 0.0, None) ** zeta
        d2 = (X * X).sum(1)[:, None] + (A * A).sum(1)[None, :] - 2.0 * (X @ A.T)
        return np.exp(-gamma * np.clip(d2, 0.0, None))

    def _groups(self, species):
        """Element label per environment for the per-species blocks (one block if not per_species)."""
        species = np.asarray(species)
        return species if self.per_species else np.zeros(len(species), dtype=int)

    def _offset_rows(self, species):
        """The per-element constant columns of each environment."""
        return float(self.species_offset) * (np.asarray(species)[:, None] == self.offset_species_[None, :])

    def _local_rows(self, X, species):
        """Per-atom output rows of prepared environments."""
        rows = self._kernel_rows(X, species) @ self.projection_
        if len(self.offset_species_):
            rows = np.hstack([rows, self._offset_rows(species)])
        return rows

    def _kernel_rows(self, X, species):
        """``k(x_a, x_m)`` for prepared rows X (n, d): shape (n, M), zero across elements."""
        out = np.zeros((len(X), len(self.active_)))
        groups, active_groups = self._groups(species), self._groups(self.active_species_)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            cols = np.flatnonzero(active_groups == g)
            if len(cols):
                out[np.ix_(rows, cols)] = self._kernel(X[rows], self.active_[cols], self.gamma_)
        return out

    # ------------------------------------------------------------------ chunks
    def _environments(self, records, desc):
        """Yield ``(features, structure_index, species)`` per chunk of whole structures."""
        from tqdm.auto import tqdm

        groups = batches_of(records, int(self.chunk_atoms))
        show = bool(self.progress) and len(records) >= PROGRESS_MIN
        start = 0
        for group in tqdm(groups, desc=desc, disable=not show, leave=False):
            X, index = self.descriptor_.transform_local(group)
            species = np.concatenate([r.numbers for r in group]) if group else np.zeros(0, dtype=int)
            yield X, index + start, species
            start += len(group)

    # ------------------------------------------------------------------ fit
    def _active_counts(self, counts):
        """Active environments per group (element, or one group) from the candidate counts."""
        from ase.data import atomic_numbers

        keys = sorted(counts)
        n = np.array([counts[k] for k in keys])
        if self.selection == "all":
            return dict(zip(keys, n.tolist()))
        if isinstance(self.n_active, dict):
            if not self.per_species:
                raise InputError("n_active as a dict needs per_species = true")
            want = {}
            for sym, value in self.n_active.items():
                z = atomic_numbers.get(sym, sym) if isinstance(sym, str) else int(sym)
                if isinstance(z, str):
                    raise InputError(f"unknown element '{sym}' in n_active")
                want[int(z)] = int(value)
            return {k: min(int(c), want.get(k, 0)) for k, c in zip(keys, n)}
        if int(self.n_active) < 1:
            raise InputError(f"n_active must be >= 1, got {self.n_active}")
        return dict(zip(keys, share_out(n, int(self.n_active)).tolist()))

    def learned_from_data(self):
        """The active environments, always (and what the per-atom descriptor learns)."""
        return _as_descriptor(self.descriptor).learned_from_data() + ["active environments"]

    def fit(self, X, y=None):
        """Fit the per-atom descriptor, choose the active environments, factor ``K_MM``."""
        check_finite_params(self)
        self._check_params()
        records = as_records(X)
        self.species_ = []
        self._check_species(records)  # structures only
        self.descriptor_ = _as_descriptor(self.descriptor)
        if "progress" in self.descriptor_.get_params():
            self.descriptor_.set_params(progress=False)
        self.descriptor_.fit(records)
        self.species_ = list(getattr(self.descriptor_, "species_", []))
        rng = np.random.default_rng(self.seed)
        species = np.concatenate([r.numbers for r in records]) if records else np.zeros(0, dtype=int)
        if len(species) == 0:
            raise InputError("local_kernel: no atoms to fit on")
        groups = self._groups(species)
        labels, counts = np.unique(groups, return_counts=True)
        n_counts = dict(zip(labels.tolist(), counts.tolist()))
        # candidates: every environment, or a random subset of at most max_candidates
        if self.selection == "all" or len(groups) <= int(self.max_candidates):
            cand_counts = n_counts
        else:
            cand_counts = dict(zip(labels.tolist(), share_out(counts, int(self.max_candidates)).tolist()))
        want = self._active_counts(cand_counts)
        want = {g: max(want.get(g, 0), 0) for g in labels.tolist()}
        # make sure every group with atoms has at least one candidate and one active environment
        for g in labels.tolist():
            cand_counts[g] = max(cand_counts[g], 1)
            if want[g] == 0:
                want[g] = 1
            cand_counts[g] = max(cand_counts[g], want[g])
        keep = np.zeros(len(groups), dtype=bool)
        for g in labels.tolist():
            idx = np.flatnonzero(groups == g)
            pick = idx if cand_counts[g] >= len(idx) else rng.choice(idx, cand_counts[g], replace=False)
            keep[pick] = True
        cand_X, cand_species = [], []
        offset = 0
        for Xc, _, sc in self._environments(records, "local kernel: environments"):
            mask = keep[offset:offset + len(Xc)]
            cand_X.append(self._prepare(Xc[mask]))
            cand_species.append(sc[mask])
            offset += len(Xc)
        cand_X = np.concatenate(cand_X)
        cand_species = np.concatenate(cand_species)
        cand_groups = self._groups(cand_species)
        active, active_species = [], []
        for g in labels.tolist():
            rows = np.flatnonzero(cand_groups == g)
            n_pick = min(want[g], len(rows))
            chosen = self._select(cand_X[rows], n_pick)
            active.append(cand_X[rows[chosen]])
            active_species.append(cand_species[rows[chosen]])
        self.active_ = np.concatenate(active)
        self.active_species_ = np.concatenate(active_species).astype(int)
        if self.kernel == "gaussian" and self.gamma == "auto":
            sample = self.active_[rng.choice(len(self.active_), min(len(self.active_), 500), replace=False)]
            d2 = ((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1)[np.triu_indices(len(sample), 1)]
            d2 = d2[d2 > 0]
            self.gamma_ = float(1.0 / np.median(d2)) if len(d2) else 1.0
        else:
            self.gamma_ = float(self.gamma) if self.kernel == "gaussian" else None
        M = len(self.active_)
        self.projection_ = np.zeros((M, M))
        active_groups = self._groups(self.active_species_)
        for g in np.unique(active_groups):
            cols = np.flatnonzero(active_groups == g)
            A = self.active_[cols]
            self.projection_[np.ix_(cols, cols)] = inverse_sqrt(self._kernel(A, A, self.gamma_), float(self.jitter))
        self.offset_species_ = np.asarray(self.species_ if float(self.species_offset) > 0 else [], dtype=int)
        self.n_features_out_ = M + len(self.offset_species_)
        return self

    def _select(self, X, n):
        """Indices of ``n`` active rows of the prepared candidates ``X``."""
        from ..selection import cur_selection, farthest_point_sampling

        if n >= len(X) or self.selection == "all":
            return np.arange(len(X))
        if self.selection == "fps":
            start = int(np.random.default_rng(self.seed).integers(len(X)))
            return farthest_point_sampling(X.T, n, start=start, progress=self.progress)
        return cur_selection(X.T, n, progress=self.progress)

    # ------------------------------------------------------------------ transform
    def _check_species(self, records):
        from ..structures import is_atoms
        from .base import check_known_species

        for i, r in enumerate(records):
            if not is_atoms(r):
                raise InputError(f"local_kernel needs ase.Atoms, got {type(r).__name__}", index=i)
            if self.species_:
                check_known_species(r.numbers, self.species_, i,
                                    given=getattr(self.descriptor_, "species", None) is not None)

    def transform(self, X):
        """Structure features ``Φ K_MM^{-1/2}``, shape (n_structures, M)."""
        check_is_fitted(self, "projection_")
        records = as_records(X)
        self._check_species(records)
        M = len(self.active_)
        out = np.zeros((len(records), M))
        offsets = np.zeros((len(records), len(self.offset_species_)))
        for Xc, index, species in self._environments(records, "local kernel"):
            _add_rows(out, index, self._kernel_rows(self._prepare(Xc), species))
            if len(self.offset_species_):
                _add_rows(offsets, index, self._offset_rows(species))
        out = np.hstack([out @ self.projection_, offsets])
        if self.reduce == "mean":
            sizes = np.array([len(r) for r in records], dtype=float)
            out /= np.maximum(sizes, 1.0)[:, None]
        return out

    def transform_local(self, X):
        """Per-atom rows ``k(x_a, ·) K_MM^{-1/2}`` and the owning structure index.

        For ``reduce="sum"`` they add up (per structure) to :meth:`transform`;
        for ``"mean"`` their per-structure mean does.

        Returns
        -------
        features : ndarray, shape (n_atoms_total, M)
        structure_index : ndarray of int, shape (n_atoms_total,)
        """
        check_is_fitted(self, "projection_")
        records = as_records(X)
        self._check_species(records)
        rows, indices = [], []
        for Xc, index, species in self._environments(records, "local kernel"):
            rows.append(self._local_rows(self._prepare(Xc), species))
            indices.append(index)
        if not rows:
            return np.zeros((0, self.n_features_out_)), np.zeros(0, dtype=int)
        return np.concatenate(rows), np.concatenate(indices)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"local_kernel{k}" for k in range(self.n_features_out_)], dtype=object)


def _add_rows(out, index, K):
    """``out[index] += K`` for sorted ``index`` (one reduceat instead of add.at)."""
    if len(index) == 0:
        return
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    out[index[starts]] += np.add.reduceat(K, starts, axis=0)
