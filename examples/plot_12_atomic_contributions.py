"""
Per-atom contributions: where in a molecule does the model put the energy?
==========================================================================

**The lesson.** A model of a sum of local environments writes the energy of a molecule as a sum of atomic
contributions, one per atom, each a function of the atom's neighbourhood. Drawing them on the molecule shows
what the model does with each environment. They add up exactly to the prediction, but only the sum is fitted to
data: how the energy is split among the atoms is the model's choice, not an observable. Read them with that in
mind: compare an atom with other atoms of its element, not with atoms of another element.

``ml4ms predict MODEL DATA --contributions atoms.csv`` writes the contributions from the command line; in Python
they come from :meth:`~ml4ms.models.structure.StructureRegressor.predict_local`.
"""

# %%
# Two sum-of-local-environments models of QM7
# -------------------------------------------
# The sparse kernel of the QM7 recipes, smaller: SOAP environments (cutoff 3 Å, ``n_max = 4``, ``l_max = 3``),
# 400 active environments and a constant per element
# (:class:`~ml4ms.descriptors.local_kernel.LocalKernelFeatures` with ``reduce="sum"``), and a Bayesian ridge on
# its features. Both are linear in the per-atom features, so the prediction splits into atoms. Two environment
# kernels: the normalised dot product of the SOAP vectors (``zeta = 1``) and its square (``zeta = 2``, the
# recipes' choice). Each is trained on the same 1000 molecules drawn at random (seed 0) and tested on 200 others.
import matplotlib.pyplot as plt
import numpy as np
from ase import units
from ase.data import chemical_symbols, covalent_radii
from ase.data.colors import jmol_colors
from sklearn.linear_model import BayesianRidge

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.models.structure import StructureRegressor

qm7 = load("qm7")
energy = qm7.targets["atomization_energy_pbe0_eV"]
order = np.random.default_rng(0).permutation(len(qm7))
train, test = order[:1000], order[-200:]
molecules = [qm7.records[i] for i in test]
models, predictions = {}, {}
for zeta in (1, 2):
    soap = {"name": "soap", "r_cut": 3.0, "n_max": 4, "l_max": 3, "sigma": 0.5}
    models[zeta] = StructureRegressor(
        descriptor=make_descriptor("local_kernel", descriptor=soap, zeta=zeta, n_active=400, species_offset=10.0,
                                   progress=False),
        regressor=BayesianRidge(max_iter=300)).fit([qm7.records[i] for i in train], energy[train])
    predictions[zeta] = models[zeta].predict(molecules)
    mae = np.mean(np.abs(predictions[zeta] - energy[test])) / (units.kcal / units.mol)
    print(f"zeta = {zeta}: test MAE on 200 molecules {mae:.2f} kcal/mol")

# %%
# Contributions add up to the prediction, but their split is the model's
# ----------------------------------------------------------------------
# One array per molecule, one number (eV) per atom. Their sums equal the predictions to rounding. Yet the two
# models, which predict the molecules' energies almost equally well, share them out among the elements very
# differently.
contributions = {zeta: model.predict_local(molecules) for zeta, model in models.items()}
numbers = np.concatenate([m.numbers for m in molecules])
for zeta, parts in contributions.items():
    sums = np.array([c.sum() for c in parts])
    print(f"zeta = {zeta}: largest |sum of contributions − prediction| {np.abs(sums - predictions[zeta]).max():.1e} eV")
print(f"{'element':>7s} {'atoms':>6s} {'zeta = 1: mean ± std (eV)':>27s} {'zeta = 2: mean ± std (eV)':>27s}")
typical = {}
for z in np.unique(numbers):
    row = []
    for zeta, parts in contributions.items():
        values = np.concatenate(parts)[numbers == z]
        typical[zeta, z] = values.mean()
        row.append(f"{values.mean():14.2f} ± {values.std():5.2f}")
    print(f"{chemical_symbols[z]:>7s} {np.sum(numbers == z):6d} {row[0]:>27s} {row[1]:>27s}")

# %%
# Drawn on the molecules
# ----------------------
# The contributions of the ``zeta = 1`` model on three test molecules with four elements, each projected onto the
# plane of its two largest principal axes (atoms further back drawn first and paler, and molecules chosen whose
# atoms do not overlap in that view), with bonds between atoms closer than 1.2 times the sum of their covalent
# radii. Top row: the atoms in their usual colours and the contribution of each, in eV. Bottom row: every atom
# coloured by its contribution less the mean contribution of its element over the 200 test molecules, so that the
# colour says whether the model finds this environment more (blue) or less (red) bound than is usual for that
# element.


def projection(atoms):
    """Positions in the plane of the two largest principal axes, and the depth along the third."""
    positions = atoms.positions - atoms.positions.mean(axis=0)
    axes3 = np.linalg.svd(positions, full_matrices=False)[2]
    return positions @ axes3[:2].T, positions @ axes3[2]


def clear(atoms):
    """Whether no two atoms fall within 0.9 Å of each other in the projection."""
    xy = projection(atoms)[0]
    return np.min(np.linalg.norm(xy[:, None] - xy[None], axis=-1) + 9 * np.eye(len(atoms))) > 0.9


chosen = [i for i, m in enumerate(molecules) if len(set(m.numbers)) >= 4 and clear(m)][:3]


def draw(ax, atoms, colours, labels):
    xy, depth = projection(atoms)
    positions = atoms.positions
    radii = covalent_radii[atoms.numbers]
    for a in range(len(atoms)):
        for b in range(a + 1, len(atoms)):
            if np.linalg.norm(positions[a] - positions[b]) < 1.2 * (radii[a] + radii[b]):
                ax.plot(*xy[[a, b]].T, color="0.4", lw=2, zorder=1)
    for k, a in enumerate(np.argsort(depth)):
        circle = plt.Circle(xy[a], 0.55 * radii[a] + 0.15, facecolor=colours[a], edgecolor="k", lw=0.8,
                            zorder=2 + k, alpha=0.75 + 0.25 * k / len(atoms))
        ax.add_patch(circle)
        ax.text(*xy[a], labels[a], ha="center", va="center", fontsize=6.5, zorder=2 + len(atoms) + k)
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.margins(0.04)
    ax.axis("off")


contribution, prediction = contributions[1], predictions[1]
relative = [np.array([c - typical[1, z] for c, z in zip(contribution[i], molecules[i].numbers)]) for i in chosen]
limit = max(np.abs(r).max() for r in relative)
norm = plt.Normalize(-limit, limit)
cmap = plt.get_cmap("RdBu_r")
fig, axes = plt.subplots(2, 3, figsize=(12, 8.4), layout="constrained")
for column, (i, shift) in enumerate(zip(chosen, relative)):
    atoms = molecules[i]
    draw(axes[0, column], atoms, jmol_colors[atoms.numbers],
         [f"{s}\n{c:.1f}" for s, c in zip(atoms.get_chemical_symbols(), contribution[i])])
    axes[0, column].set_title(f"{atoms.get_chemical_formula()}: predicted {prediction[i]:.2f} eV, "
                              f"PBE0 {energy[test[i]]:.2f} eV", fontsize=9)
    draw(axes[1, column], atoms, cmap(norm(shift)),
         [f"{s}\n{c:+.2f}" for s, c in zip(atoms.get_chemical_symbols(), shift)])
fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[1, :], shrink=0.8,
             label="contribution − mean of its element (eV)")

# %%
# What to take away
# -----------------
# * The contributions of a sum-of-local model add up to its prediction exactly; ``predict_local`` (and
#   ``ml4ms predict --contributions``) give them for any linear model on a summed local descriptor.
# * Their absolute values mix a per-element constant with the part that depends on the environment, and the data
#   fix only the sum over each molecule. The two models above predict about equally well and split the energy
#   among the elements very differently (with ``zeta = 2`` carbon atoms even come out positive, which no chemist
#   would write): how the binding energy is shared between elements is left to the model and its prior.
# * Within one element the differences are meaningful to the model: atoms with unusual neighbours (next to a
#   heteroatom, at a multiple bond) stand out from the typical atom of their element. Neighbours can also trade
#   energy between them (in the third molecule the amine N lies far above its element's mean and its two
#   hydrogens as far below), so the sum over a group of atoms is more robust than one atom's value. Read the
#   contributions as a way to look inside the model, not as a measurement of atomic energies.
