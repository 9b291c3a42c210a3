"""
Farthest-point sampling against random training sets
====================================================

**The lesson.** When labels are expensive (a DFT calculation each), the structures to label should be chosen
well. A random training set copies the density of the data: common kinds of molecules many times, rare ones
perhaps never. Farthest-point sampling (FPS) starts from one structure and repeatedly adds the one farthest,
in descriptor space, from all those chosen so far, so it covers the space evenly. Whether that helps is an
empirical question, answered here the honest way: the same model trained on FPS-chosen and on random sets of
the same size, scored on the same held-out molecules, with several seeds.
"""

# %%
# QM7 and a bag-of-bonds descriptor
# ---------------------------------
# The 7101 QM7 molecules, their PBE0 atomization energies, and the bag-of-bonds descriptor (Coulomb-matrix
# entries grouped by element pair), standardised. Duplicate molecules are found first, so that no copy of a test
# molecule can be chosen for training.
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from ml4ms.datasets import load
from ml4ms.descriptors import make_descriptor
from ml4ms.duplicates import duplicate_groups
from ml4ms.model_selection import learning_curve
from ml4ms.models.kernel import KernelRidge, feature_scaling
from ml4ms.selection import farthest_point_sampling

qm7 = load("qm7")
y = qm7.targets["atomization_energy_pbe0_eV"]
X = make_descriptor("bag_of_bonds", progress=False).fit_transform(qm7.records)
mean, scale = feature_scaling(X)
X = (X - mean) / scale
groups = duplicate_groups(qm7.records, progress=False)
print(f"{len(y)} molecules, {X.shape[1]} features, {len(y) - len(np.unique(groups))} of them copies of another")

# %%
# Two ways of choosing the training set
# -------------------------------------
# :func:`~ml4ms.model_selection.learning_curve` holds out about 20 % of the molecules (whole duplicate groups) as
# the test set of each seed; the rest is the pool. A random training set is the first ``N`` of the pool in a
# random order. An FPS training set starts from a random molecule of the pool and follows the FPS order; since
# FPS is nested (its first ``N`` choices do not depend on how many come after), the order is computed once per
# seed, up to the largest ``N``.
#
# The model is a Laplacian kernel ridge regression. Its regularisation ``α`` is chosen by leave-one-out inside
# every training set; its kernel width ``γ`` is chosen once, the same way, on 400 random molecules, and then kept
# for every fit (a search over widths in every fit would cost several times as much).
sizes = (100, 200, 400, 800)
orders = {}


def fps(pool, n, rng):
    key = pool.tobytes()
    if key not in orders:
        first = int(rng.integers(len(pool)))
        orders[key] = pool[farthest_point_sampling(X[pool].T, max(sizes), start=first)]
    return orders[key][:n]


some = np.random.default_rng(0).choice(len(y), size=400, replace=False)
gamma = KernelRidge(kernel="laplacian").fit(X[some], y[some], groups=groups[some]).gamma_[0]
model = KernelRidge(kernel="laplacian", gamma=gamma)

curves = {}
for name, selection in (("random", "random"), ("FPS", fps)):
    curves[name] = learning_curve(model, X, y, groups, train_sizes=sizes, seeds=(0, 1, 2), metric="mae",
                                  selection=selection, progress=False)

print(f"test MAE (eV) on {curves['FPS']['n_test'][0]} held-out molecules, mean ± std over seeds 0, 1, 2")
print(f"{'N':>5s} {'random':>17s} {'FPS':>17s}")
for k, n in enumerate(sizes):
    row = [f"{curves[name]['mean']['y'][k]:.3f} ± {curves[name]['std']['y'][k]:.3f}" for name in curves]
    print(f"{n:5d} {row[0]:>17s} {row[1]:>17s}")

fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
for name, curve in curves.items():
    ax.errorbar(curve["train_sizes"], curve["mean"]["y"], yerr=curve["std"]["y"], marker="o", capsize=3,
                label=name)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xticks(sizes, [str(n) for n in sizes])
ax.xaxis.set_minor_formatter(NullFormatter())
ax.yaxis.set_minor_formatter(NullFormatter())
ax.set_yticks([0.2, 0.3, 0.5, 0.8], ["0.2", "0.3", "0.5", "0.8"])
ax.set_xlabel("training molecules N")
ax.set_ylabel("test MAE (eV)")
ax.set_title("QM7, bag of bonds + Laplacian KRR", fontsize=10)
ax.legend()

# %%
# Where the two differ
# --------------------
# FPS takes unusual molecules first. The largest test errors show whether that pays: for one seed and
# ``N = 800``, the fraction of test molecules whose absolute error exceeds a given value, for the two training
# sets (the tail of the error distribution, on logarithmic axes).
from ml4ms.model_selection import group_train_test_split  # noqa: E402

rng = np.random.default_rng(0)
pool, test = group_train_test_split(groups, 0.2, random_state=rng)
errors = {}
for name in ("random", "FPS"):
    train = rng.permutation(pool)[:800] if name == "random" else fps(pool, 800, rng)
    fitted = KernelRidge(kernel="laplacian", gamma=gamma).fit(X[train], y[train], groups=groups[train])
    errors[name] = np.abs(fitted.predict(X[test]) - y[test])
    print(f"{name:6s} N=800: MAE {errors[name].mean():.3f} eV, 99th percentile {np.percentile(errors[name], 99):.3f} "
          f"eV, largest {errors[name].max():.3f} eV")

fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
for name, values in errors.items():
    ordered = np.sort(values)
    ax.step(ordered, 1 - np.arange(len(ordered)) / len(ordered), where="post", lw=2, label=name)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlim(1e-2, None)
ax.set_xlabel("absolute test error (eV)")
ax.set_ylabel("fraction of test molecules with a larger error")
ax.legend()

# %%
# What to take away
# -----------------
# * Compare selection methods the way you compare models: same test set, same model, several seeds, mean ± std.
#   A single run can mislead.
# * FPS covers the descriptor space, so it spends labels on unusual molecules that a random set samples rarely.
#   Here its mean error is lower than random at ``N = 800`` by more than the spread over seeds, within or near
#   that spread at smaller ``N``, and at ``N = 800`` its largest test error is about half that of the random set.
#   Whether FPS helps depends on the data, the descriptor and ``N``: measure it, as above, rather than assume it.
# * ``ml4ms learning-curve ... --compare-fps`` draws the same comparison from the command line, and
#   ``ml4ms select --method fps`` writes the chosen indices (:doc:`/guide/cli`).
