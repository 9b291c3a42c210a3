"""
Correlated features are redundant descriptors: the octet binaries' primary features
===================================================================================

**The lesson.** Before building a model on a list of features, look at how they correlate with each other. Two
features that are nearly proportional across the data carry one piece of information, not two: a model can use
either, and a fitted model cannot tell which one matters. The atomic properties of the octet binaries are an
example. The ionisation potential of an atom and the energy of its highest occupied Kohn-Sham level are nearly
the same number, and so are the radii of its valence s and p orbitals. A clustered correlation map shows such
groups at a glance, and the dendrogram next to it shows how far apart the groups are.

The consequences are practical: a descriptor chosen among correlated candidates (by SISSO, LASSO or any other
selection) is one of several near-equivalent choices, and the individual coefficients of correlated features are
not determined by the data, only their combination is.
"""

# %%
# Fourteen primary features of 82 materials
# -----------------------------------------
# For each of the atoms A and B: the ionisation potential (IP), the electron affinity (EA), the Kohn-Sham HOMO and
# LUMO energies of the free atom, and the radii of its valence s, p and d orbitals (the bundled octet table).
import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import dendrogram, fcluster, linkage
from scipy.spatial.distance import squareform

from ml4ms.datasets import load
from ml4ms.model_selection import group_train_test_split
from ml4ms.models.kernel import KernelRidge

octet = load("octet")
columns = {"IP_A": "IP_A_eV", "EA_A": "EA_A_eV", "HOMO_A": "E_HOMO_A_eV", "LUMO_A": "E_LUMO_A_eV",
           "r_s_A": "r_s_A_ang", "r_p_A": "r_p_A_ang", "r_d_A": "r_d_A_ang",
           "IP_B": "IP_B_eV", "EA_B": "EA_B_eV", "HOMO_B": "E_HOMO_B_eV", "LUMO_B": "E_LUMO_B_eV",
           "r_s_B": "r_s_B_ang", "r_p_B": "r_p_B_ang", "r_d_B": "r_d_B_ang"}
names = list(columns)
X = np.array([[row[column] for column in columns.values()] for row in octet.records])
y = octet.targets["dE_RS_minus_ZB_eV_per_atom"]
print(f"{X.shape[0]} materials, {X.shape[1]} primary features")

# %%
# The correlation map, clustered
# ------------------------------
# The Pearson correlation ``r`` of every pair of features over the 82 materials. Two features are close when
# ``|r|`` is near 1, whatever its sign (an anticorrelated pair is just as redundant), so the distance between
# features is ``1 − |r|``. Average-linkage hierarchical clustering on these distances orders the features so that
# correlated ones sit next to each other; the dendrogram shows at which distance the groups merge.
R = np.corrcoef(X.T)
distance = 1 - np.abs(R)
np.fill_diagonal(distance, 0.0)
tree = linkage(squareform(distance, checks=False), method="average")

fig, (ax_tree, ax_map) = plt.subplots(1, 2, figsize=(11, 5.4), width_ratios=(1, 2.6), layout="constrained")
leaves = dendrogram(tree, labels=names, orientation="left", ax=ax_tree, color_threshold=0.1,
                    above_threshold_color="0.5")["leaves"]
ax_tree.set_xlabel("distance 1 − |r|")
ax_tree.axvline(0.1, color="C3", lw=1, ls="--")
ax_tree.set_title("Dendrogram (cut at |r| = 0.9)", fontsize=10)
order = leaves[::-1]  # the dendrogram draws its first leaf at the bottom; the map lists it at the top
image = ax_map.imshow(R[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1)
ax_map.set_xticks(range(len(names)), [names[i] for i in order], rotation=90)
ax_map.set_yticks(range(len(names)), [names[i] for i in order])
for a in range(len(names)):
    for b in range(len(names)):
        value = R[order[a], order[b]]
        ax_map.text(b, a, f"{value:.1f}".replace("-0.0", "0.0"), ha="center", va="center", fontsize=6,
                    color="w" if abs(value) > 0.7 else "k")
fig.colorbar(image, ax=ax_map, shrink=0.8, label="Pearson r")
ax_map.set_title("Correlation of the primary features, in the dendrogram's order", fontsize=10)

# %%
# The groups at ``|r| > 0.9``: cutting the tree at the distance 0.1 leaves the clusters below, and one feature
# of each (the first listed) is enough to represent it.
labels = fcluster(tree, t=0.1, criterion="distance")
representatives = []
for label in np.unique(labels):
    members = [names[i] for i in np.flatnonzero(labels == label)]
    representatives.append(members[0])
    if len(members) > 1:
        print("redundant group: " + ", ".join(members))
print(f"{len(names)} features, {len(representatives)} groups: {', '.join(representatives)}")

# %%
# Redundant features add little
# -----------------------------
# A Gaussian kernel ridge regression of ``ΔE = E(RS) − E(ZB)`` (hyperparameters by leave-one-out inside each
# training set), on all fourteen features and on one representative per group, scored on 20 random 80/20
# splits (seeded). If the removed features carried information the model needed, the second error would be
# clearly larger.
def held_out_rmse(Z):
    errors = []
    for seed in range(20):
        train, test = group_train_test_split(np.arange(len(y)), 0.2, random_state=seed)
        model = KernelRidge(kernel="gaussian").fit(Z[train], y[train])
        errors.append(np.sqrt(np.mean((model.predict(Z[test]) - y[test]) ** 2)))
    return np.array(errors)


keep = [names.index(name) for name in representatives]
scores = {f"all {len(names)} features": held_out_rmse(X), f"{len(keep)} representatives": held_out_rmse(X[:, keep])}
for label, rmse in scores.items():
    print(f"{label:18s} held-out RMSE {rmse.mean():.3f} ± {rmse.std(ddof=1):.3f} eV/atom (20 splits)")
difference = np.subtract(*scores.values())
print(f"difference on the same splits: {difference.mean():.3f} ± {difference.std(ddof=1):.3f} eV/atom")

# %%
# The coefficients of correlated features are not determined
# ----------------------------------------------------------
# A linear least-squares fit of ΔE on the standardised features, repeated on 200 bootstrap resamples of the
# materials (seeded). The coefficients of ``r_s_B`` and ``r_p_B``, correlated at ``r`` ≈ 1, swing widely and in
# opposite directions from one resample to the next; their sum, what the data actually constrain, varies far less.
Xs = (X - X.mean(axis=0)) / X.std(axis=0)
i, j = names.index("r_s_B"), names.index("r_p_B")
rng = np.random.default_rng(0)
coefficients = []
for _ in range(200):
    pick = rng.integers(0, len(y), size=len(y))
    A = np.column_stack([np.ones(len(y)), Xs[pick]])
    coefficients.append(np.linalg.lstsq(A, y[pick], rcond=None)[0][1:])
coefficients = np.array(coefficients)
print(f"r(r_s_B, r_p_B) = {R[i, j]:.4f}")
print(f"std over resamples: coefficient of r_s_B {coefficients[:, i].std():.3f}, of r_p_B "
      f"{coefficients[:, j].std():.3f}, of their sum {(coefficients[:, i] + coefficients[:, j]).std():.3f} eV/atom")

fig, ax = plt.subplots(figsize=(4.8, 4.2), layout="constrained")
ax.scatter(coefficients[:, i], coefficients[:, j], s=10, alpha=0.6)
ax.axline((coefficients[:, i].mean(), coefficients[:, j].mean()), slope=-1, color="k", lw=1, ls="--",
          label="the mean sum")
ax.set_xlabel("coefficient of r_s_B (eV/atom per std)")
ax.set_ylabel("coefficient of r_p_B (eV/atom per std)")
ax.legend()
ax.set_title("200 bootstrap fits: only the sum is determined", fontsize=10)

# %%
# What to take away
# -----------------
# * The fourteen primary features hold fewer independent pieces of information: IP and HOMO of the same atom, and
#   its s and p radii, are correlated at ``|r| > 0.9``, and the IP of B follows its radii almost as closely. Look at
#   the clustered correlation map before reading meaning into which feature a selection method picked: a close
#   relative would have done almost as well (the published SISSO descriptors of these materials use the s and p
#   radii, :doc:`/guide/sisso`).
# * Dropping all but one member of each group raises the held-out error of a kernel model only a little (the
#   paired difference above), far less than the error varies from one split to another: the removed features
#   added little.
# * In a linear model the coefficients of correlated features trade off against each other, so their signs and
#   sizes mean little one by one. Interpret the combination, remove the redundancy, or regularise (ridge).
