"""
Δ-learning on QM7: learn what a cheap baseline gets wrong
=========================================================

**The lesson.** A model does not have to learn a property from scratch. If a cheap estimate of it exists, learn
the difference: ``y = baseline + ML(Δ)`` (Ramakrishnan et al., JCTC 11, 2087, 2015). The difference is smaller and
usually smoother than the property itself, so the same model on the same training molecules makes smaller errors, or
reaches the same error with fewer of them. Two baselines are tried here on the PBE0 atomization energies of
QM7. The first is free: a *dressed-atom* fit, one energy per element fitted by least squares on the training
molecules. The second costs a calculation per molecule: the semi-empirical DFTB3 atomization energy, which QM7
ships next to PBE0.
"""

# %%
# QM7, a descriptor and a fixed test set
# --------------------------------------
# All 7101 molecules, the bag-of-bonds descriptor (standardised), and a test set of 1000 molecules (whole
# duplicate groups, seed 0) that stays the same for every model. The element counts of each molecule are the
# features of the dressed-atom fit.
import time

import matplotlib.pyplot as plt
import numpy as np
from ase import units
from matplotlib.ticker import NullFormatter

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.duplicates import duplicate_groups
from ml4ms.model_selection import group_train_test_split
from ml4ms.models.kernel import KernelRidge, feature_scaling
from ml4ms.models.structure import StructureRegressor

qm7 = load("qm7")
pbe0 = qm7.targets["atomization_energy_pbe0_eV"]
dftb3 = qm7.targets["atomization_energy_dftb3_eV"]
X = make_descriptor("bag_of_bonds", progress=False).fit_transform(qm7.records)
mean, scale = feature_scaling(X)
X = (X - mean) / scale
groups = duplicate_groups(qm7.records, progress=False)
pool, test = group_train_test_split(groups, 1000 / len(pbe0), random_state=0)
elements = (1, 6, 7, 8, 16)
counts = np.array([[np.sum(atoms.numbers == z) for z in elements] for atoms in qm7.records], dtype=float)
kcal = units.kcal / units.mol  # eV per kcal/mol
print(f"{len(pool)} molecules in the training pool, {len(test)} in the test set")

# %%
# Four ways to learn the same energy
# ----------------------------------
# Each variant has a baseline ``b`` (zero for the direct model) and learns ``y − b`` with a Laplacian kernel ridge
# regression; its prediction is ``b + ML``. The dressed-atom baseline is fitted on the training molecules of each
# fit only, so it uses no test label; with DFTB3 it is fitted to what DFTB3 leaves. The kernel width of each
# variant is chosen once by leave-one-out on 400 pool molecules; the regularisation is searched in every fit.


def dressed_atoms(train, target):
    """A per-element energy fitted on the training molecules: the baseline of every molecule."""
    energies = np.linalg.lstsq(counts[train], target[train], rcond=None)[0]
    return counts @ energies


def baseline(variant, train):
    cheap = dftb3 if "DFTB3" in variant else np.zeros_like(pbe0)
    if "dressed atoms" in variant:
        cheap = cheap + dressed_atoms(train, pbe0 - cheap)
    return cheap


variants = ("direct", "dressed atoms", "DFTB3", "DFTB3 + dressed atoms")
some = np.random.default_rng(0).choice(pool, size=400, replace=False)
gammas = {}
for variant in variants:
    residual = pbe0 - baseline(variant, some)
    gammas[variant] = KernelRidge(kernel="laplacian").fit(X[some], residual[some], groups=groups[some]).gamma_[0]
    print(f"{variant:22s} learns a quantity with std {residual[pool].std():6.3f} eV over the pool")

# %%
# Learning curves: nested training sets of 100, 300 and 1000 molecules drawn from the pool in a random order per
# seed (0, 1, 2), the test MAE of every variant in kcal/mol.
sizes = (100, 300, 1000)
seeds = (0, 1, 2)
mae = {variant: np.empty((len(sizes), len(seeds))) for variant in variants}
start = time.perf_counter()
for s, seed in enumerate(seeds):
    order = np.random.default_rng(seed).permutation(pool)
    for k, n in enumerate(sizes):
        train = order[:n]
        for variant in variants:
            b = baseline(variant, train)
            model = KernelRidge(kernel="laplacian", gamma=gammas[variant])
            model.fit(X[train], (pbe0 - b)[train], groups=groups[train])
            prediction = b[test] + model.predict(X[test])
            mae[variant][k, s] = np.mean(np.abs(prediction - pbe0[test])) / kcal
print(f"{len(sizes) * len(seeds) * len(variants)} fits in {time.perf_counter() - start:.1f} s")
print(f"test MAE (kcal/mol), mean ± std over seeds {seeds}")
print(f"{'variant':22s}" + "".join(f"{'N = ' + str(n):>15s}" for n in sizes))
for variant, values in mae.items():
    print(f"{variant:22s}" + "".join(f"{m:9.2f} ± {s:.2f}" for m, s in zip(values.mean(1), values.std(1, ddof=1))))
print(f"DFTB3 alone, no learning: {np.mean(np.abs(dftb3[test] - pbe0[test])) / kcal:.2f} kcal/mol")

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
for variant, values in mae.items():
    axes[0].errorbar(sizes, values.mean(1), yerr=values.std(1, ddof=1), marker="o", capsize=3, label=variant)
axes[0].set_xscale("log")
axes[0].set_yscale("log")
axes[0].set_xticks(sizes, [str(n) for n in sizes])
axes[0].xaxis.set_minor_formatter(NullFormatter())
axes[0].set_yticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
axes[0].yaxis.set_minor_formatter(NullFormatter())
axes[0].set_xlabel("training molecules N")
axes[0].set_ylabel("test MAE of the PBE0 energy (kcal/mol)")
axes[0].legend(fontsize=8)
axes[0].set_title("Learning curves with and without a baseline", fontsize=10)

# %%
# Why it works: what is left to learn. The histograms show, over the pool, the PBE0 energy less its mean and
# what each baseline leaves (with the dressed atoms fitted on the whole pool, for the picture only).
for variant in variants:
    left = pbe0[pool] - baseline(variant, pool)[pool]
    axes[1].hist(left - left.mean(), bins=np.linspace(-30, 30, 121), histtype="step", lw=1.5, label=variant)
axes[1].set_yscale("log")
axes[1].set_xlabel("what is left to learn, less its mean (eV)")
axes[1].set_ylabel("molecules")
axes[1].legend(fontsize=8)
axes[1].set_title("The learned quantity, with and without a baseline", fontsize=10)

# %%
# The same with the library's baseline transform
# ----------------------------------------------
# ml4ms does the DFTB3 arithmetic itself: :class:`~ml4ms.models.structure.StructureRegressor` with
# ``baseline="atomization_energy_dftb3_eV"`` learns PBE0 − DFTB3 and adds DFTB3 back to its predictions, reading
# the baseline from each structure (here ``atoms.info``). In a recipe it is ``[target] baseline = ...``, as in
# ``ml4ms fit qm7 --config qm7_delta``. On the seed-0 training set of 1000 it gives the number of the table above.
train = np.random.default_rng(0).permutation(pool)[:1000]
delta = StructureRegressor(descriptor=make_descriptor("bag_of_bonds", progress=False),
                           regressor=KernelRidge(kernel="laplacian", gamma=gammas["DFTB3"]),
                           baseline="atomization_energy_dftb3_eV")
delta.fit([qm7.records[i] for i in train], pbe0[train], groups=groups[train])
prediction = delta.predict([qm7.records[i] for i in test])
print(f"StructureRegressor with the DFTB3 baseline, N = 1000, seed 0: test MAE "
      f"{np.mean(np.abs(prediction - pbe0[test])) / kcal:.2f} kcal/mol")

# %%
# What to take away
# -----------------
# * The direct model spends its first few hundred molecules learning that bigger molecules bind more strongly. A
#   dressed-atom baseline takes that out for free (a least-squares fit on the element counts) and lowers the error
#   most where data are few.
# * The DFTB3 baseline is a physical model of the bonding. What it leaves has a larger spread than what the
#   dressed atoms leave (most of it is a per-element offset), yet the Δ-model on it is far more accurate at every
#   N: what matters is how smoothly the residual varies from molecule to molecule, not only its size. With 100
#   molecules it is more accurate than the direct model with 1000, and far better than DFTB3 alone. Fitting the
#   dressed atoms to what DFTB3 leaves removes the offset too and helps further, most at small N.
# * The price is a DFTB3 calculation for every molecule to predict: Δ-learning pays when the baseline is much
#   cheaper than the target method. The same idea works for any cheap baseline, from a force field to a smaller
#   basis set.
