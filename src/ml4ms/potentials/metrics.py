"""Labels of structures, and the errors of a potential on them.

:func:`labels_of` reads the energies and forces that training and evaluation
compare with; :func:`evaluate_errors` scores predictions (energies per atom
in meV/atom, force components in eV/Å), :func:`errors_by_formula` breaks
them down by chemical formula and :func:`worst_structures` names the
structures that carry most of the energy error.
"""

import numpy as np
from ase.data import chemical_symbols

from ..errors import InputError
from .committee import as_committee


def binding_energy_per_atom(frames, energies, atomic_energies):
    """``(E − Σ_a E_atom[t_a]) / N`` of each structure (eV/atom)."""
    out = np.empty(len(frames))
    for k, (a, e) in enumerate(zip(frames, energies)):
        try:
            ref = sum(float(atomic_energies[chemical_symbols[z]]) for z in a.numbers)
        except KeyError as exc:
            raise InputError(f"no atomic reference energy for {exc.args[0]}", index=k,
                             hint="add it to atomic_energies") from None
        out[k] = (e - ref) / len(a)
    return out


def labels_of(frames, source="data"):
    """Total energies (n,) and force arrays of structures carrying them (ASE calculator or info/arrays).

    Raises
    ------
    InputError
        A structure without an energy or forces, forces of the wrong shape, or a
        label that is not a finite number, naming the structure.
    """
    energies, forces = [], []
    for k, a in enumerate(frames):
        try:
            e, f = a.get_potential_energy(), a.get_forces()
        except Exception:
            e = a.info.get("energy")
            f = a.arrays.get("forces")
            if e is None or f is None:
                raise InputError("structure has no energy and forces", source=source, index=k,
                                 hint="give structures with DFT energies and forces (e.g. extxyz)") from None
        try:
            e, f = float(e), np.asarray(f, dtype=float)
        except (TypeError, ValueError):
            raise InputError("energy or forces are not numbers", source=source, index=k,
                             hint="fix or remove the structure") from None
        if f.shape != (len(a), 3):
            raise InputError(f"forces have shape {f.shape}, expected ({len(a)}, 3)", source=source, index=k,
                             hint="give one force vector per atom")
        if not np.isfinite(e) or not np.all(np.isfinite(f)):
            raise InputError(f"{'the energy contains' if not np.isfinite(e) else 'the forces contain'} NaN or inf", source=source,
                             index=k, hint="fix or remove the structure")
        energies.append(e)
        forces.append(f)
    return np.asarray(energies), forces


def _rmse(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


def evaluate_errors(model, frames, energies, forces, batch_atoms=2000, predictions=None):
    """RMSE/MAE of energies per atom (meV/atom) and force components (eV/Å).

    ``model`` may be a committee (its mean is scored); ``predictions``
    (energies, forces) skips the prediction.
    """
    pred_e, pred_f = predictions or as_committee(model).predict(frames, batch_atoms=batch_atoms)
    n = np.array([len(a) for a in frames])
    de = (pred_e - np.asarray(energies)) / n
    df = np.concatenate([(p - f).ravel() for p, f in zip(pred_f, forces)]) if frames else np.zeros(0)
    return {
        "energy_rmse_mev_per_atom": 1000 * _rmse(de),
        "energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(de))),
        "force_rmse_ev_per_ang": _rmse(df),
        "force_mae_ev_per_ang": float(np.mean(np.abs(df))),
        "n_structures": int(len(frames)),
    }


def errors_by_formula(frames, energies, forces, predictions, max_groups=50):
    """:func:`evaluate_errors` per chemical formula of the cell (e.g. ``O14Ti8``), largest energy RMSE first.

    Returns ``{}`` when there are more than ``max_groups`` formulas (a
    breakdown of that size says little).

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> cells = [bulk("Si"), bulk("Si").repeat((2, 1, 1))]
    >>> forces = [np.zeros((2, 3)), np.zeros((4, 3))]
    >>> out = errors_by_formula(cells, [-10.0, -20.0], forces, ([-10.0, -19.996], forces))
    >>> list(out), round(out["Si4"]["energy_rmse_mev_per_atom"], 3)
    (['Si4', 'Si2'], 1.0)
    """
    pred_e, pred_f = predictions
    formulas = np.array([a.get_chemical_formula() for a in frames])
    names = np.unique(formulas)
    if len(names) > max_groups:
        return {}
    energies = np.asarray(energies, dtype=float)
    pred_e = np.asarray(pred_e, dtype=float)
    out = {}
    for name in names:
        idx = np.flatnonzero(formulas == name)
        out[str(name)] = evaluate_errors(None, [frames[k] for k in idx], energies[idx], [forces[k] for k in idx],
                                         predictions=(pred_e[idx], [pred_f[k] for k in idx]))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["energy_rmse_mev_per_atom"]))


def worst_structures(frames, energies, forces, predictions, count=5):
    """The ``count`` structures with the largest energy error per atom, worst first.

    Each is a dict: ``index`` (into ``frames``), ``formula``,
    ``energy_error_mev_per_atom`` (predicted minus reference),
    ``share_of_energy_mse`` (its part of the summed squared energy errors),
    ``force_rmse_ev_per_ang`` and ``max_reference_force_ev_per_ang``. A few
    structures often carry much of an RMSE; these are the ones to look at.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> cells = [bulk("Si"), bulk("Si").repeat((2, 1, 1))]
    >>> forces = [np.zeros((2, 3)), np.zeros((4, 3))]
    >>> out = worst_structures(cells, [-10.0, -20.0], forces, ([-10.002, -19.996], forces), count=1)
    >>> out[0]["index"], round(out[0]["energy_error_mev_per_atom"], 3), round(out[0]["share_of_energy_mse"], 3)
    (0, -1.0, 0.5)
    """
    pred_e, pred_f = predictions
    n = np.array([len(a) for a in frames])
    de = 1000 * (np.asarray(pred_e, dtype=float) - np.asarray(energies, dtype=float)) / n
    total = float(np.sum(de ** 2))
    out = []
    for k in np.argsort(-np.abs(de), kind="stable")[:count]:
        k = int(k)
        out.append({"index": k, "formula": frames[k].get_chemical_formula(),
                    "energy_error_mev_per_atom": float(de[k]),
                    "share_of_energy_mse": float(de[k] ** 2 / total) if total > 0 else 0.0,
                    "force_rmse_ev_per_ang": _rmse(np.asarray(pred_f[k]) - np.asarray(forces[k])),
                    "max_reference_force_ev_per_ang": float(np.abs(forces[k]).max()) if len(forces[k]) else 0.0})
    return out
