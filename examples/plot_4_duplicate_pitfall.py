"""
The duplicate pitfall: random against grouped splits
====================================================

**The lesson.** A test error means something only if the test structures are new to the model. Datasets often
hold the same structure more than once: merged from several sources, stored in two equivalent cells (a cell and
its supercell, another choice of cell vectors), as mirror images, or as nearly identical snapshots of a
trajectory. A random split puts one copy in training and the other in test, and the model is rewarded for
remembering rather than predicting. The hyperparameter search is fooled the same way: leave-one-out sees the
copy of every left-out structure and asks for almost no regularisation.

The cure is to find the duplicates (:mod:`ml4ms.duplicates`) and keep each group of copies on one side of every
split (:class:`~ml4ms.model_selection.GroupedKFold`, and ``groups`` passed to the model's own search). Here the
same model is scored both ways, on data with few duplicates and on data where every structure appears twice.
"""

# %%
# Duplicates in a real dataset
# ----------------------------
# The duplicate finder compares the sorted interatomic distances of every atom's environment, so it ignores
# rotations, translations, the order of the atoms, the choice of cell and supercells.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import KFold

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.duplicates import duplicate_groups, find_duplicates
from ml4ms.metrics import rmsle
from ml4ms.model_selection import GroupedKFold
from ml4ms.models.kernel import KernelRidge

train = load("nomad2018", "train")
start = time.perf_counter()
pairs = find_duplicates(train.records, progress=False)
print(f"NOMAD 2018 train: {len(pairs)} duplicate pairs among {len(train)} structures "
      f"({time.perf_counter() - start:.1f} s)")

# %%
# A dataset in which every structure appears twice
# ------------------------------------------------
# 300 structures drawn at random (seed 0) from the training set, plus a copy of each: its 2×1×1 supercell,
# rotated, with the atoms in another order. This is what merging two sources that store cells differently can
# produce. The finder recovers every copy.
rng = np.random.default_rng(0)
chosen = rng.choice(len(train), size=300, replace=False)
originals = [train.records[i] for i in chosen]
gap = train.targets["bandgap_energy_ev"][chosen]


def disguised_copy(atoms, rng):
    copy = atoms.repeat((2, 1, 1))
    copy = copy[rng.permutation(len(copy))]
    copy.rotate(rng.uniform(0, 360), rng.normal(size=3), rotate_cell=True)
    return copy


copies = [disguised_copy(atoms, rng) for atoms in originals]
doubled = originals + copies
gap_doubled = np.concatenate([gap, gap])
groups_doubled = duplicate_groups(doubled, progress=False)
groups_original = groups_doubled[:300]  # the originals' own duplicates, as groups among themselves
print(f"300 structures: {len(np.unique(groups_original))} groups; "
      f"with their copies, 600 structures: {len(np.unique(groups_doubled))} groups")

# %%
# One model, two ways of scoring it
# ---------------------------------
# Bond-topology n-grams (the NOMAD 2018 winner's features) and a Laplacian kernel ridge regression of
# ``log(1 + band gap)``, scored by RMSLE (the competition's metric) in 5-fold cross-validation repeated with
# seeds 0 and 1. The kernel width is fixed (chosen once by grouped leave-one-out on the 300 originals) and the
# regularisation ``α`` is searched inside every training fold by exact leave-one-out: plain for random splits,
# with the duplicate groups left out together for grouped splits.
descriptor = make_descriptor("ngrams", scale="nomad2018", progress=False)
X_doubled = descriptor.fit_transform(doubled)
X_original = X_doubled[:300]
gamma = KernelRidge().fit(X_original, np.log1p(gap), groups=groups_original).gamma_[0]


def scores(X, y, groups, grouped):
    """RMSLE of every fold and seed, and the regularisation chosen in each."""
    out, alphas = [], []
    for seed in (0, 1):
        if grouped:
            splits = GroupedKFold(n_splits=5, random_state=seed).split(X, groups=groups)
        else:
            splits = KFold(n_splits=5, shuffle=True, random_state=seed).split(X)
        for tr, te in splits:
            model = KernelRidge(gamma=gamma)
            model.fit(X[tr], np.log1p(y[tr]), groups=groups[tr] if grouped else None)
            out.append(rmsle(y[te], np.expm1(model.predict(X[te])).clip(0)))
            alphas.append(model.alpha_[0])
    return np.array(out), np.array(alphas)


results = {}
for data_name, X, y, groups in (("300 originals", X_original, gap, groups_original),
                                ("600 with copies", X_doubled, gap_doubled, groups_doubled)):
    for split_name, grouped in (("random", False), ("grouped", True)):
        results[data_name, split_name] = scores(X, y, groups, grouped)

print(f"{'data':18s} {'splits':8s} {'RMSLE, mean ± std over 10 folds':>32s} {'median α chosen':>16s}")
for (data_name, split_name), (values, alphas) in results.items():
    print(f"{data_name:18s} {split_name:8s} {values.mean():22.4f} ± {values.std(ddof=1):.4f} "
          f"{np.median(alphas):16.0e}")

fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
labels = [f"{d}\n{s} splits" for d, s in results]
means = [v.mean() for v, _ in results.values()]
stds = [v.std(ddof=1) for v, _ in results.values()]
ax.bar(range(4), means, yerr=stds, color=["C0", "C1", "C0", "C1"], capsize=4)
ax.set_xticks(range(4), labels, fontsize=8)
ax.set_ylabel("cross-validated RMSLE of the band gap")
ax.set_title("The same model, scored with random and with grouped splits", fontsize=10)

# %%
# What to take away
# -----------------
# * With few duplicates the two ways of scoring agree. With every structure twice, random splits report a much
#   smaller error for the very same model, and the leave-one-out search picks a smaller ``α``: both the score and
#   the hyperparameters are fooled.
# * Grouped splits give about the same error with and without the copies, as they should: the copies add no new
#   information.
# * Always look for duplicates before you split (``ml4ms duplicates``), and keep them together in every split and
#   every hyperparameter search. ``ml4ms cv``, ``ml4ms fit`` and the learning curves do this by default
#   (:doc:`/guide/evaluation`).
