"""
PCA and kernel-PCA maps of NOMAD 2018, coloured by band gap
===========================================================

**The lesson.** A map of a dataset shows what a descriptor sees, squeezed into two dimensions. Each structure
becomes a vector of features; principal component analysis (PCA) projects those vectors onto the two directions
of largest variance, and kernel PCA does the same after a non-linear (here RBF) kernel. Colouring the map by a
property shows whether it varies smoothly over what the descriptor sees, which is what a regression model on
that descriptor needs.

The NOMAD 2018 set holds (Al, Ga, In)₂O₃ structures in six space groups. A composition descriptor sees only the
Al/Ga/In fractions, so polymorphs of one composition are the same point to it. SOAP and the bond-topology
n-grams see the arrangement of the atoms. But a map shows only two directions: whether it shows the structure
depends on the descriptor, and a map that does not show something does not prove that the descriptor misses it.
``ml4ms map`` draws the same kind of map from the command line (:doc:`/guide/cli`).
"""

# %%
# Three descriptors of the same structures
# ----------------------------------------
# The 2400 training structures, described by composition statistics, by SOAP averaged over the atoms of each
# structure (``reduce="mean"``) and by bond-topology n-grams (with the bond scale of the NOMAD 2018 winning
# entry). Each feature is standardised (mean 0, variance 1), as ``ml4ms map`` does.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA, KernelPCA
from sklearn.neighbors import KNeighborsClassifier

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.duplicates import duplicate_groups
from ml4ms.model_selection import GroupedKFold
from ml4ms.models.kernel import feature_scaling

data = load("nomad2018", "train")
gap = data.targets["bandgap_energy_ev"]
spacegroup = np.array([atoms.info["spacegroup"] for atoms in data.records])

descriptors = {
    "composition": make_descriptor("composition"),
    "SOAP": make_descriptor("soap", r_cut=5.0, n_max=4, l_max=3, progress=False),
    "n-grams": make_descriptor("ngrams", scale="nomad2018", progress=False),
}
features = {}
for name, descriptor in descriptors.items():
    start = time.perf_counter()
    X = descriptor.fit_transform(data.records)
    mean, scale = feature_scaling(X)
    features[name] = (X - mean) / scale
    print(f"{name:12s} {X.shape[1]:4d} features, {time.perf_counter() - start:4.1f} s")

# %%
# Maps coloured by band gap
# -------------------------
# Linear PCA (top row), with the fraction of the variance its two axes explain, and RBF kernel PCA with the
# default width ``γ = 1 / n_features`` (bottom row). Both are seeded, so the maps are the same on every run.
maps = {}
for name, X in features.items():
    pca = PCA(n_components=2, random_state=0)
    maps[name, "PCA"] = pca.fit_transform(X)
    explained = " and ".join(f"{100 * v:.0f} %" for v in pca.explained_variance_ratio_)
    print(f"{name:12s} the two PCA axes explain {explained} of the variance")
    maps[name, "kernel PCA"] = KernelPCA(n_components=2, kernel="rbf", random_state=0).fit_transform(X)

fig, axes = plt.subplots(2, 3, figsize=(12, 7.6), layout="constrained")
for row, method in enumerate(("PCA", "kernel PCA")):
    for column, name in enumerate(features):
        Z = maps[name, method]
        ax = axes[row, column]
        points = ax.scatter(Z[:, 0], Z[:, 1], c=gap, s=5, cmap="viridis")
        ax.set_title(f"{method} of {name}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(points, ax=axes, label="band gap (eV)", shrink=0.6)

# %%
# The same kernel-PCA maps coloured by space group
# ------------------------------------------------
fig, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
for ax, name in zip(axes, features):
    Z = maps[name, "kernel PCA"]
    for k, group in enumerate(np.unique(spacegroup)):
        chosen = spacegroup == group
        ax.scatter(Z[chosen, 0], Z[chosen, 1], s=5, color=f"C{k}", label=f"{group} ({chosen.sum()})")
    ax.set_title(f"kernel PCA of {name}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
axes[2].legend(title="space group", fontsize=8, markerscale=2, loc="best")

# %%
# A number instead of a picture
# -----------------------------
# How well does each descriptor tell the space groups apart, in all its features and in the two map axes? A
# 5-nearest-neighbour classifier answers with its accuracy out of fold: grouped 5-fold cross-validation, so
# that duplicate structures (found by :func:`~ml4ms.duplicates.duplicate_groups`) never sit on both sides of a
# split. Guessing the most common space group would score the fraction printed first.
groups = duplicate_groups(data.records, progress=False)
folds = list(GroupedKFold(n_splits=5, random_state=0).split(spacegroup, groups=groups))


def accuracy(X):
    right = 0
    for train, test in folds:
        knn = KNeighborsClassifier(n_neighbors=5).fit(X[train], spacegroup[train])
        right += int((knn.predict(X[test]) == spacegroup[test]).sum())
    return right / len(spacegroup)


_, counts = np.unique(spacegroup, return_counts=True)
print(f"most common space group: {counts.max() / counts.sum():.3f} of the structures")
print(f"{'descriptor':12s} {'all features':>13s} {'kernel-PCA map':>15s}")
for name, X in features.items():
    print(f"{name:12s} {accuracy(X):13.3f} {accuracy(maps[name, 'kernel PCA']):15.3f}")

# %%
# What to take away
# -----------------
# * A map is a picture of the descriptor, not of the materials: structures on one point are the same to any model
#   built on that descriptor.
# * The band gap changes smoothly across the composition map, so composition explains much of it; polymorphs of
#   one composition coincide there, and the part of the band gap that depends on the structure is invisible to a
#   composition model.
# * Two axes keep little: SOAP tells the space groups apart almost perfectly in all its features, yet its map
#   hardly shows them, while the n-gram map does. Judge a descriptor by a number computed on all its features
#   (here a classifier, in general an honest model evaluation, :doc:`/guide/evaluation`), not by its map.
