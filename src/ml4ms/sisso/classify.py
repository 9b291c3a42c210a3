"""The SISSO domain-overlap loss for classification (Ouyang et al. 2018).

A descriptor is good for classification when the convex hulls of the classes
in descriptor space do not overlap. The loss counts the samples that lie inside
the convex hull of another class; ties are broken by the size of the overlap
(1D: overlap length, 2D: overlap area, both relative to the smaller class
domain; 3D and higher: no tie-break).

>>> import numpy as np
>>> x = np.array([[0.0], [1.0], [2.0], [1.5], [3.0], [4.0]])
>>> labels = np.array([0, 0, 0, 1, 1, 1])
>>> overlap(x, labels)[0]   # 1.5 and 2.0 are in both intervals
2
"""

import itertools

import numpy as np
from scipy.spatial import ConvexHull, QhullError


def overlap_1d_scores(vals, labels, mask=None):
    """Vectorised 1D loss of every column: ``count + size`` with size in [0, 1).

    Parameters
    ----------
    vals : ndarray (n_samples, b)
    labels : ndarray (n_samples,)
    mask : ndarray of bool, optional
        Only these samples are counted (the ones still unresolved).
    """
    classes = np.unique(labels)
    lo = np.stack([vals[labels == c].min(axis=0) for c in classes])  # (n_classes, b)
    hi = np.stack([vals[labels == c].max(axis=0) for c in classes])
    counted = np.ones(len(labels), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    count = np.zeros(vals.shape[1])
    size = np.zeros(vals.shape[1])
    for a, ca in enumerate(classes):
        rows = vals[(labels == ca) & counted]
        inside = np.zeros(rows.shape, dtype=bool)
        for b, cb in enumerate(classes):
            if b == a:
                continue
            inside |= (rows >= lo[b]) & (rows <= hi[b])
        count += inside.sum(axis=0)
    for a, b in itertools.combinations(range(len(classes)), 2):
        length = np.minimum(hi[a], hi[b]) - np.maximum(lo[a], lo[b])
        smaller = np.minimum(hi[a] - lo[a], hi[b] - lo[b])
        with np.errstate(all="ignore"):
            size += np.where(length > 0, length / np.where(smaller > 0, smaller, 1.0), 0.0)
    size = np.clip(size / max(1, len(classes) * (len(classes) - 1) // 2), 0.0, 0.999)
    return count + size


def _hull(points):
    try:
        return ConvexHull(points)
    except (QhullError, ValueError):
        try:
            return ConvexHull(points, qhull_options="QJ")
        except (QhullError, ValueError):
            return None


def _inside(hull, points, scale):
    eq = hull.equations
    return np.all(points @ eq[:, :-1].T + eq[:, -1] <= 1e-9 * scale, axis=1)


def _polygon_clip(subject, clip):
    """Intersection of two convex polygons (counter-clockwise vertex arrays)."""
    out = list(subject)
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        inp, out = out, []
        if not inp:
            break
        side = lambda p: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])  # noqa: E731
        for j in range(len(inp)):
            p, q = inp[j], inp[(j + 1) % len(inp)]
            sp, sq = side(p), side(q)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append(p + t * (q - p))
    return np.array(out)


def _area(poly):
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def overlap(D, labels, mask=None):
    """Domain overlap of a descriptor matrix.

    Parameters
    ----------
    D : ndarray (n_samples, dim)
    labels : ndarray (n_samples,)
    mask : ndarray of bool, optional
        Count only these samples.

    Returns
    -------
    count : int
        Number of (counted) samples inside the convex hull of another class.
    size : float
        Tie-breaker in [0, 1): relative overlap length/area (0 for dim > 2).
    in_overlap : ndarray of bool (n_samples,)
        Which samples are in the overlap region.
    """
    D = np.asarray(D, dtype=float)
    labels = np.asarray(labels)
    if D.shape[1] == 1:
        score = overlap_1d_scores(D, labels, mask)[0]
        classes = np.unique(labels)
        in_overlap = np.zeros(len(labels), dtype=bool)
        for c in classes:
            for o in classes:
                if o != c:
                    lo, hi = D[labels == o, 0].min(), D[labels == o, 0].max()
                    in_overlap |= (labels == c) & (D[:, 0] >= lo) & (D[:, 0] <= hi)
        return int(round(score - (score % 1))), float(score % 1), in_overlap
    classes = np.unique(labels)
    scale = np.abs(D).max() or 1.0
    Z = D / scale
    hulls = {c: _hull(Z[labels == c]) for c in classes}
    in_overlap = np.zeros(len(labels), dtype=bool)
    for c in classes:
        for o in classes:
            if o == c:
                continue
            if hulls[o] is None:
                continue
            sel = labels == c
            in_overlap[sel] |= _inside(hulls[o], Z[sel], 1.0)
    counted = in_overlap if mask is None else in_overlap & np.asarray(mask, dtype=bool)
    size = 0.0
    if D.shape[1] == 2:
        parts = []
        for a, b in itertools.combinations(classes, 2):
            ha, hb = hulls[a], hulls[b]
            if ha is None or hb is None:
                continue
            pa, pb = ha.points[ha.vertices], hb.points[hb.vertices]
            inter = _area(_polygon_clip(pa, pb)) if len(pa) >= 3 and len(pb) >= 3 else 0.0
            smaller = min(_area(pa), _area(pb))
            parts.append(inter / smaller if smaller > 0 else 0.0)
        size = float(np.clip(np.mean(parts) if parts else 0.0, 0.0, 0.999))
    return int(counted.sum()), size, in_overlap


def l0_classification(F, labels, dim, mask=None):
    """The ``dim`` columns of ``F`` with the smallest domain overlap.

    Returns
    -------
    dict
        ``columns``, ``overlap`` (int), ``overlap_size`` (float), ``in_overlap``.
    """
    F = np.asarray(F, dtype=float)
    best = None
    for combo in itertools.combinations(range(F.shape[1]), dim):
        count, size, inside = overlap(F[:, combo], labels, mask)
        key = (count, size)
        if best is None or key < best[0]:
            best = (key, combo, inside)
            if count == 0 and size == 0.0:
                break
    (count, size), combo, inside = best
    return {"columns": [int(c) for c in combo], "overlap": int(count), "overlap_size": float(size),
            "in_overlap": inside}
