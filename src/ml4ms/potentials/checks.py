r"""Are a data set's energies the integral of its forces? A check that needs no model.

DFT codes report more than one total energy: with electronic smearing the
forces are derivatives of the (Mermin) free energy, while the energy printed
next to it may be the internal energy or an extrapolation to zero smearing
(VASP's ``TOTEN`` against "energy without entropy" and "sigma→0"). A training
set that takes the wrong one, or mixes settings, has energies that no
potential can fit together with its forces, and the fit silently trades one
against the other.

Two structures with the same cell and the same atoms in the same order, a
small displacement :math:`\Delta\mathbf r_i = \mathbf r_i^{(b)} - \mathbf
r_i^{(a)}` apart, give a check by the trapezoid rule:

.. math::

    E_b - E_a \approx -\tfrac12 \sum_i \left(\mathbf F_i^{(a)} + \mathbf
    F_i^{(b)}\right)\cdot \Delta\mathbf r_i ,

with an error of third order in the displacement. Consecutive frames of MD
runs, relaxation steps and finite-displacement sets supply such pairs. With
consistent labels the two sides agree to a few per cent of the energy
differences; energies from another energy expression than the forces
disagree by about the size of the difference between the two.
"""

import numpy as np

from ..errors import InputError


def _group_key(atoms):
    return (tuple(int(z) for z in atoms.numbers), tuple(bool(p) for p in atoms.pbc),
            tuple(np.round(np.asarray(atoms.cell.array, dtype=float), 4).ravel().tolist()))


def _min_image(d, atoms):
    """Displacements ``d`` (..., N, 3) wrapped to the nearest periodic image along the periodic directions."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not pbc.any() or abs(np.linalg.det(cell)) < 1e-9:
        return d
    s = d @ np.linalg.inv(cell)
    s[..., pbc] -= np.round(s[..., pbc])
    return s @ cell


def energy_force_consistency(frames, energies, forces, *, max_displacement=0.05, source="data", progress=False):
    """Energy differences against the work of the forces, over close pairs of structures.

    Every structure is paired with the nearest (by RMS displacement per
    atom, minimum image) of the structures after it in ``frames`` that have
    the same cell and the same atoms in the same order, if that one is at
    most ``max_displacement`` away. The frames of an MD run or a relaxation
    pair up with the next frame.

    Parameters
    ----------
    frames : list of ase.Atoms
    energies : array-like (n,)
        Total energies (eV).
    forces : list of arrays (n_atoms, 3)
        Forces (eV/Å).
    max_displacement : float
        Largest RMS displacement per atom (Å) of a pair.
    source : str
        Named in error messages.
    progress : bool
        tqdm bar over structures.

    Returns
    -------
    dict of arrays, one row per pair
        ``pairs`` (m, 2) structure indices *a* < *b*; ``displacement`` RMS
        displacement per atom (Å); ``energy_difference`` :math:`(E_b -
        E_a)/N`, ``work`` the trapezoid estimate of it from the forces, and
        ``discrepancy`` their difference, all in meV/atom.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> frames = []
    >>> for k in range(3):
    ...     a = bulk("Cu", cubic=True).repeat(2)
    ...     a.rattle(0.01, seed=k)
    ...     a.calc = EMT()
    ...     frames.append(a)
    >>> e = [a.get_potential_energy() for a in frames]
    >>> f = [a.get_forces() for a in frames]
    >>> out = energy_force_consistency(frames, e, f)
    >>> len(out["pairs"]), bool(np.abs(out["discrepancy"]).max() < 0.05 * np.abs(out["energy_difference"]).max())
    (2, True)
    """
    from tqdm.auto import tqdm

    frames = list(frames)
    energies = np.asarray(energies, dtype=float)
    if len(energies) != len(frames) or len(forces) != len(frames):
        raise InputError(f"{len(frames)} structures, {len(energies)} energies and {len(forces)} force arrays",
                         source=source, hint="give one energy and one force array per structure")
    if not max_displacement > 0:
        raise InputError(f"max_displacement must be positive, got {max_displacement}", source=source)
    forces = [np.asarray(f, dtype=float) for f in forces]
    for k, (a, e, f) in enumerate(zip(frames, energies, forces)):
        if f.shape != (len(a), 3):
            raise InputError(f"forces have shape {f.shape} for {len(a)} atoms", source=source, index=k,
                             hint="give one force vector per atom")
        if not np.isfinite(e) or not np.isfinite(f).all():
            raise InputError("energy or forces are not finite (NaN or inf)", source=source, index=k,
                             hint="remove the structure or fix its labels")
    groups = {}
    for k, a in enumerate(frames):
        if len(a):
            groups.setdefault(_group_key(a), []).append(k)
    rows = []
    bar = tqdm(total=len(frames), desc="energy-force pairs", unit="structure", disable=not progress)
    for idx in groups.values():
        P = np.stack([frames[k].positions for k in idx])
        for q, a in enumerate(idx[:-1]):
            d = _min_image(P[q + 1:] - P[q], frames[a])
            rms = np.sqrt((d ** 2).sum(-1).mean(-1))
            p = int(np.argmin(rms))
            if rms[p] <= max_displacement:
                b, n = idx[q + 1 + p], len(frames[a])
                work = -0.5 * float(((forces[a] + forces[b]) * d[p]).sum())
                rows.append((a, b, rms[p], 1000 * (energies[b] - energies[a]) / n, 1000 * work / n))
        bar.update(len(idx))
    bar.close()
    table = np.array(rows, dtype=float).reshape(-1, 5)
    return {"pairs": table[:, :2].astype(np.int64), "displacement": table[:, 2], "energy_difference": table[:, 3],
            "work": table[:, 4], "discrepancy": table[:, 3] - table[:, 4]}


#: labels beyond these are named by :func:`label_outliers`: no material has forces of 100 eV/Å, and a structure whose
#: energy per atom lies 10 eV/atom off a linear fit of the data set's energies on its composition is in other units,
#: from another code or another reference, or mislabelled
MAX_FORCE = 100.0
MAX_ENERGY_RESIDUAL = 10.0


def label_outliers(frames, energies, forces, max_force=MAX_FORCE, max_residual=MAX_ENERGY_RESIDUAL):
    """Structures whose labels cannot be right: forces above ``max_force`` eV/Å, or energies ``max_residual`` eV/atom
    off the data set's per-element linear fit (fitted robustly: once, and again without the clear outliers).

    Returns
    -------
    list of (int, str)
        Index and reason, in index order.

    Examples
    --------
    >>> from ase.build import bulk
    >>> cells = [bulk("Cu", "fcc", a=3.6 + 0.01 * k) for k in range(6)]
    >>> energies = [-3.7 - 0.01 * k for k in range(6)]
    >>> energies[2] = -3.7e6  # eV written as meV
    >>> [i for i, _ in label_outliers(cells, energies, [np.zeros((1, 3))] * 6)]
    [2]
    """
    out = {}
    for k, f in enumerate(forces):
        peak = float(np.abs(f).max()) if np.size(f) else 0.0
        if peak > max_force:
            out[k] = f"forces up to {peak:.3g} eV/Å"
    species = sorted({int(z) for a in frames for z in a.numbers})
    if len(frames) > len(species):
        counts = np.array([[np.count_nonzero(a.numbers == z) for z in species] for a in frames], dtype=float)
        n = np.maximum(counts.sum(1), 1)
        e = np.asarray(energies, dtype=float)
        keep = np.ones(len(frames), bool)
        for _ in range(2):
            ref, *_ = np.linalg.lstsq(counts[keep], e[keep], rcond=None)
            residual = (e - counts @ ref) / n
            spread = 20 * np.median(np.abs(residual[keep] - np.median(residual[keep]))) + max_residual
            keep = np.abs(residual - np.median(residual[keep])) <= spread
        for k in np.flatnonzero(~keep):
            out.setdefault(int(k), f"energy {residual[k]:+.3g} eV/atom off the composition fit")
    return sorted(out.items())


def outlier_warning(outliers, source, shown=3):
    """One line naming the structures of :func:`label_outliers`, or None."""
    if not outliers:
        return None
    listed = "; ".join(f"structure {k}: {reason}" for k, reason in outliers[:shown])
    more = f" (and {len(outliers) - shown} more)" if len(outliers) > shown else ""
    return (f"{source}: {len(outliers)} structure{'' if len(outliers) == 1 else 's'} with labels far outside the "
            f"rest ({listed}{more}); check their units, or remove them")
