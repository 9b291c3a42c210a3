"""How far a structure lies from a potential's training data, in descriptor space.

A committee's spread measures how much its members disagree. Members trained
on the same data can agree on a configuration that none of them has seen, and
be wrong together: on the bundled TiO2 set the shipped committee's five worst
test cells rank 0, 40, 89, 8 and 4 of 770 by its spread
(docs/studies/tio2-potential.md, "The edge of the data"). *Novelty* measures the
data instead of the models:

* every training atom's environment is its standardised descriptor (the
  networks' own input, before any cell-wide columns);
* ``n_reference`` environments per element are kept, chosen by farthest-point
  sampling (:func:`~ml4ms.selection.farthest_point_sampling`), so the rare
  environments are kept with the common ones;
* an atom's novelty is the Euclidean distance from its environment to the
  nearest reference environment of its element, and a structure's novelty is
  the mean over its atoms;
* both are divided by the 99th percentile of the training structures' own
  novelty, each structure measured against the references of the others
  (``scale``), so a value above 1 means "further from the training data
  than 99 % of the training structures are from the rest of it".

This is the distance-to-data idea behind D-optimality and the extrapolation
grade of moment tensor potentials (Podryabinkin & Shapeev, Comput. Mater.
Sci. 140, 171 (2017)), in its simplest, model-free form: it depends on the
descriptor and the training structures only, not on the weights. The
TorchScript export (``ml4ms potential export``) carries energies, forces and
stress only, not novelty.

Examples
--------
>>> import numpy as np
>>> H = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
>>> refs = reference_environments(H, np.array([0, 0, 1]), n_species=2, n_reference=1)
>>> [r.tolist() for r in refs]
[[[0.0, 0.0]], [[0.0, 5.0]]]
>>> nearest_distances(np.array([[3.0, 4.0], [0.0, 5.0]]), np.array([0, 1]), refs)
array([5., 0.])
"""

import numpy as np

from ..errors import InputError
from .committee import as_committee
from ..selection import farthest_point_sampling

#: novelty of the training structures below which 99 % of them lie (the unit of novelty)
SCALE_PERCENTILE = 99.0


def reference_environments(H, species_index, n_species, n_reference, start=0, return_rows=False):
    """Per element, ``n_reference`` rows of ``H`` chosen by farthest-point sampling.

    Parameters
    ----------
    H : ndarray (n_atoms, n_features)
        Standardised environments.
    species_index : ndarray (n_atoms,) of int
        Element index (0 … n_species-1) of every row.
    n_species : int
    n_reference : int
        Environments kept per element (all of them where there are fewer).
    start : int
        Index, within each element's rows, of the first one chosen.
    return_rows : bool
        Also return the indices (into ``H``) of the rows kept.

    Returns
    -------
    list of ndarray
        One (n_s, n_features) float32 array per element (n_s = 0 for an
        element without atoms).
    rows : ndarray of int
        Only with ``return_rows``.
    """
    H = np.asarray(H, dtype=np.float64)
    species_index = np.asarray(species_index)
    out, kept = [], []
    for s in range(int(n_species)):
        rows = np.flatnonzero(species_index == s)
        if len(rows) > n_reference:
            rows = rows[farthest_point_sampling(H[rows].T, int(n_reference), start=min(int(start), len(rows) - 1))]
        out.append(np.ascontiguousarray(H[rows], dtype=np.float32))
        kept.append(rows)
    return (out, np.concatenate(kept)) if return_rows else out


def nearest_distances(H, species_index, references, chunk=4096, groups=None, reference_groups=None):
    """Distance (n_atoms,) from every row of ``H`` to the nearest reference environment of its element.

    An element without reference environments gives ``inf``. With ``groups``
    (n_atoms,) and ``reference_groups`` (per element, one label per
    reference) a row ignores the references of its own group: with the
    structures as groups, each training structure is scored against the
    rest of the training data (``inf`` where nothing else is left).
    """
    H = np.asarray(H, dtype=np.float64)
    species_index = np.asarray(species_index)
    groups = None if groups is None else np.asarray(groups)
    out = np.full(len(H), np.inf)
    for s, R in enumerate(references):
        rows = np.flatnonzero(species_index == s)
        if len(rows) == 0 or len(R) == 0:
            continue
        R = np.asarray(R, dtype=np.float64)
        r2 = (R ** 2).sum(1)
        for k in range(0, len(rows), chunk):
            part = rows[k:k + chunk]
            A = H[part]
            d2 = r2[None, :] - 2.0 * A @ R.T  # |a - r|² up to |a|²
            if groups is not None:
                d2[groups[part][:, None] == np.asarray(reference_groups[s])[None, :]] = np.inf
            nearest = np.argmin(d2, axis=1)
            # the distance itself directly: the expansion above loses digits near 0
            d = np.sqrt(((A - R[nearest]) ** 2).sum(1))
            out[part] = np.where(np.isfinite(d2[np.arange(len(part)), nearest]), d, np.inf)
    return out


def structure_means(values, structure, n_structures):
    """Mean (n_structures,) of per-atom ``values`` over the atoms of each structure (NaN for one without atoms)."""
    structure = np.asarray(structure, dtype=np.int64)
    counts = np.bincount(structure, minlength=n_structures)
    sums = np.bincount(structure, weights=values, minlength=n_structures)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def novelty_scale(structure_novelty):
    """The unit of novelty: the 99th percentile of the training structures' raw novelty.

    The raw novelty of the training structures is leave-one-structure-out
    (each against the references of the other structures): in-sample, a
    small training set, all of it references, would have a scale of zero.
    """
    values = np.asarray(structure_novelty, dtype=float)
    scale = float(np.percentile(values[np.isfinite(values)], SCALE_PERCENTILE)) if np.isfinite(values).any() \
        else float("nan")
    if not np.isfinite(scale) or scale < 1e-6:
        raise InputError("the training environments are all alike (copies of one crystal?): novelty has no scale",
                         hint="train on varied structures (rattled, strained), or set novelty_references = 0")
    return scale


def _top(score, fraction):
    """Indices of the ``fraction`` of samples with the highest ``score`` (at least one)."""
    return np.argsort(-score, kind="stable")[:max(1, int(round(fraction * len(score))))]


def _top_share(score, errors, fraction):
    """Share of the summed squared ``errors`` held by the ``fraction`` of samples with the highest ``score``."""
    total = float(np.sum(errors ** 2))
    return float(np.sum(errors[_top(score, fraction)] ** 2) / total) if total > 0 else 0.0


def _ranks(score):
    """Rank of every sample by ``score``, 0 for the highest."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(len(order))
    return ranks


def novelty_report(novelty, errors, frames=None, spread=None, count=5, fraction=0.05):
    """Does novelty point at the large errors? A summary of labelled structures.

    Parameters
    ----------
    novelty : array-like (n,)
        Structure novelty.
    errors : array-like (n,)
        Energy errors (any unit, e.g. meV/atom).
    frames : list of ase.Atoms, optional
        For the formulas of the most novel structures.
    spread : array-like (n,), optional
        A committee's spread, scored the same way for comparison.
    count : int
        Most novel structures listed.
    fraction : float
        The top fraction (by score) whose share of the squared errors is reported.

    Returns
    -------
    dict
        - ``above_1``: structures more novel than 99 % of the training
          structures are from the rest of the training data;
          ``rmse_above_1`` and ``rmse_at_most_1``: the RMS error of those and
          of the others;
        - ``spearman_abs_error``: rank correlation of novelty and |error|;
        - ``top_share_of_mse``: the share of the squared errors in the
          ``fraction`` most novel structures (``fraction`` itself would be no
          better than chance); ``rmse_less_novel``: the RMS error of the
          others;
        - ``largest_errors``: indices of the ``count`` largest |errors|, and
          ``largest_errors_novelty_rank``: their ranks by novelty (0 the most
          novel);
        - with ``spread``: ``spread_spearman_abs_error``,
          ``spread_top_share_of_mse`` and ``largest_errors_spread_rank``,
          the same for the spread;
        - ``fraction``, ``n_structures``, and ``most_novel``: a list of
          ``index``, ``formula``, ``novelty``, ``error``.

    Examples
    --------
    >>> r = novelty_report([0.5, 0.6, 3.0, 0.4], [1.0, -1.0, 10.0, 0.5], fraction=0.25, count=1)
    >>> r["above_1"], round(r["top_share_of_mse"], 3), r["most_novel"][0]["index"]
    (1, 0.978, 2)
    """
    from scipy.stats import spearmanr

    novelty = np.asarray(novelty, dtype=float)
    errors = np.asarray(errors, dtype=float)
    if novelty.shape != errors.shape or novelty.ndim != 1:
        raise InputError(f"novelty {novelty.shape} and errors {errors.shape} must be two arrays of one length")
    varied = len(novelty) > 2 and np.ptp(novelty) > 0 and np.ptp(np.abs(errors)) > 0
    above = novelty > 1.0
    worst = np.argsort(-np.abs(errors), kind="stable")[:count]
    out = {"n_structures": int(len(novelty)), "above_1": int(np.sum(above)),
           "rmse_above_1": float(np.sqrt(np.mean(errors[above] ** 2))) if above.any() else float("nan"),
           "rmse_at_most_1": float(np.sqrt(np.mean(errors[~above] ** 2))) if (~above).any() else float("nan"),
           "spearman_abs_error": float(spearmanr(novelty, np.abs(errors))[0]) if varied else float("nan"),
           "top_share_of_mse": _top_share(novelty, errors, fraction), "fraction": float(fraction),
           "rmse_less_novel": float(np.sqrt(np.mean(np.delete(errors, _top(novelty, fraction)) ** 2)))
           if len(errors) > 1 else float("nan"),
           "largest_errors": [int(k) for k in worst], "largest_errors_novelty_rank": _ranks(novelty)[worst].tolist()}
    if spread is not None:
        spread = np.asarray(spread, dtype=float)
        out["spread_spearman_abs_error"] = float(spearmanr(spread, np.abs(errors))[0]) \
            if varied and np.ptp(spread) > 0 else float("nan")
        out["spread_top_share_of_mse"] = _top_share(spread, errors, fraction)
        out["largest_errors_spread_rank"] = _ranks(spread)[worst].tolist()
    out["most_novel"] = [{"index": int(k), "formula": frames[k].get_chemical_formula() if frames else "",
                          "novelty": float(novelty[k]), "error": float(errors[k])}
                         for k in np.argsort(-novelty, kind="stable")[:count]]
    return out


def select_novel(environments, distances, species_index, structure, n_structures, count, min_novelty=0.0):
    """Greedy choice of the structures that would add the most new environments to the training data.

    Each step takes the structure of highest novelty, then counts its atoms
    as reference environments, so a near-copy of a structure already taken
    (the next frame of an MD run) is no longer novel and the choice spreads
    out over the new regions instead of piling up in the most novel one.

    Parameters
    ----------
    environments : list of ndarray (n_atoms, n_features)
        One per committee member: the atoms' standardised environments,
        divided by that member's novelty unit.
    distances : list of ndarray (n_atoms,)
        One per member: each atom's novelty (distance to the nearest reference
        environment of its element, in the same unit).
    species_index, structure : ndarray (n_atoms,) of int
        Every atom's element index and structure index (0 … n_structures-1).
    n_structures, count : int
        Candidate structures, and how many to take at most.
    min_novelty : float, default=0.0
        Stop when no remaining structure is more novel than this (so
        structures with nothing new, novelty 0, are never taken).

    Returns
    -------
    order : ndarray of int
        Indices of the structures taken, in the order taken.
    novelty : ndarray
        Their novelty (the members' mean) when taken.

    Examples
    --------
    One reference environment at 0, four one-atom candidates: the one at 9
    is taken first; then 5.0 is 4.0 from it, and 5.1, a near copy of 5.0,
    is left out by ``min_novelty``:

    >>> H = [np.array([[0.0], [5.0], [5.1], [9.0]])]
    >>> d = [np.array([0.0, 5.0, 5.1, 9.0])]
    >>> order, nov = select_novel(H, d, np.zeros(4, int), np.arange(4), 4, count=3, min_novelty=0.5)
    >>> order.tolist(), nov.round(2).tolist()
    ([3, 1], [9.0, 4.0])
    """
    species_index = np.asarray(species_index)
    structure = np.asarray(structure, dtype=np.int64)
    distances = [np.asarray(d, dtype=np.float64).copy() for d in distances]
    # each element's rows once, so a step compares the new atoms with their own element only
    rows = [np.flatnonzero(species_index == s) for s in np.unique(species_index)]
    blocks = [[np.asarray(H[r], dtype=np.float64) for r in rows] for H in environments]
    taken = np.zeros(n_structures, dtype=bool)
    order, values = [], []
    for _ in range(min(int(count), n_structures)):
        score = np.mean([structure_means(d, structure, n_structures) for d in distances], axis=0)
        score[taken | np.isnan(score)] = -np.inf  # +inf (an element without references) is the most novel
        k = int(np.argmax(score))
        if not score[k] > min_novelty:
            break
        taken[k] = True
        order.append(k)
        values.append(float(score[k]))
        for member, d in zip(blocks, distances):
            for r, H in zip(rows, member):
                added = H[structure[r] == k]
                if len(added):
                    d[r] = np.minimum(d[r], nearest_distances(H, np.zeros(len(H), dtype=int), [added]))
    return np.asarray(order, dtype=np.int64), np.asarray(values)


def novel_structures(models, frames, count, min_novelty=0.0, batch_atoms=2000, progress=False):
    """Choose up to ``count`` of ``frames`` to label next: :func:`select_novel` for a potential or a committee.

    Parameters
    ----------
    models : NeuralPotential or Committee
        Fitted, with reference environments (``fit_novelty``); a committee's
        members must share their elements.
    frames : list of ase.Atoms
        The candidates (no labels needed).
    count : int
        How many to choose at most.
    min_novelty : float, default=0.0
        Stop when no remaining candidate is more novel than this.
    batch_atoms : int, default=2000
        Atoms per descriptor batch.
    progress : bool, default=False
        Show a progress bar over the batches.

    Returns
    -------
    order : ndarray of int
        Indices into ``frames``, in the order chosen.
    novelty : ndarray
        The committee novelty of each when chosen (after the ones before it
        joined the references).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential
    >>> cells = [bulk("MgO", "rocksalt", a=4.1 + 0.05 * k) for k in range(4)]
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> m = m.initialize(cells, [-10.0, -10.2, -10.3, -10.25]).fit_novelty(cells[:3])
    >>> candidates = [bulk("MgO", "rocksalt", a=a) for a in (4.12, 3.6, 3.6, 3.7)]
    >>> novel_structures(m, candidates, 2)[0].tolist()  # the 3.6 Å cell, then 3.7 Å (its twin is nothing new)
    [1, 3]
    """
    from tqdm.auto import tqdm

    from ..descriptors.base import batches_of

    members = as_committee(models).members
    frames = list(frames)
    for m in members:
        m._require_references()
        m._check_species(frames)
    environments, distances = [[] for _ in members], [[] for _ in members]
    species, structure, offset = [], [], 0
    for group in tqdm(batches_of(frames, batch_atoms), disable=not progress, desc="candidate environments",
                      unit="batch"):
        built = {}  # members with one cutoff and precision share the neighbour lists
        for k, m in enumerate(members):
            key = (m.cutoff(), m.dtype, str(m.torch_device()))
            t = built[key] = built[key] if key in built else m.tensors(group)
            H = m.environments(t) / m.novelty_scale_
            environments[k].append(H)
            distances[k].append(nearest_distances(H, t.species_index.cpu().numpy(),
                                                  [R / m.novelty_scale_ for R in m.novelty_references_]))
        species.append(t.species_index.cpu().numpy())
        structure.append(t.structure.cpu().numpy() + offset)
        offset += len(group)
    if not frames:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return select_novel([np.concatenate(h) for h in environments], [np.concatenate(d) for d in distances],
                        np.concatenate(species), np.concatenate(structure), len(frames), count, min_novelty)
