"""
Ridge, kernel ridge and a Gaussian process on a 1-D function
============================================================

**The lesson.** Linear ridge regression fits a straight line: whatever the regularisation, it cannot follow a
curved function of ``x``. Kernel ridge regression (KRR) fits the same kind of model on a kernel, a similarity
between points, and follows the curve; its regularisation ``α`` and width ``γ`` must be chosen on held-out data,
which :class:`~ml4ms.models.kernel.KernelRidge` does by exact leave-one-out. A Gaussian process (GP) has the same
prediction as KRR, a weighted sum of kernels, but it chooses ``α`` and ``γ`` by the marginal likelihood and
also gives a standard deviation with every prediction: small near the data, growing in gaps and outside the
training range. The band is only useful if it is calibrated, so we count how often the truth falls inside it.
"""

# %%
# Data with a gap
# ---------------
# 40 noisy samples of ``f(x) = sin(2x) + 0.3 x`` on ``[-3, 3]``, none of them between 0.4 and 1.8.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Ridge

from ml4ms.models.gp import GaussianProcessRegressor
from ml4ms.models.kernel import KernelRidge
from ml4ms.uncertainty import coverage


def f(x):
    return np.sin(2 * x) + 0.3 * x


noise = 0.1
rng = np.random.default_rng(0)
x_train = rng.uniform(-3, 3, size=80)
x_train = x_train[(x_train < 0.4) | (x_train > 1.8)][:40]
y_train = f(x_train) + rng.normal(scale=noise, size=x_train.size)
x_plot = np.linspace(-4.5, 4.5, 451)

# %%
# Three models
# ------------
# Ridge on ``x`` itself; KRR with a Gaussian kernel, where ``α`` and ``γ`` are searched over a grid by exact
# leave-one-out; the GP with a Gaussian kernel, where they maximise the marginal likelihood.
ridge = Ridge(alpha=1e-3).fit(x_train[:, None], y_train)
krr = KernelRidge(kernel="gaussian").fit(x_train[:, None], y_train)
gp = GaussianProcessRegressor(kernel="gaussian").fit(x_train[:, None], y_train)
mean, std = gp.predict(x_plot[:, None], return_std=True)

for name, model in (("KRR, by leave-one-out", krr), ("GP, by marginal likelihood", gp)):
    alpha, gamma = (float(np.ravel(model.best_params_[key])[0]) for key in ("alpha", "gamma"))
    print(f"{name:27s} alpha = {alpha:.2g}, gamma = {gamma:.3g} (on the standardised x)")
print(f"GP noise standard deviation: {float(gp.noise_std_):.3f} (the data were made with {noise})")

inside = (np.abs(x_plot) <= 3)
for name, model in (("ridge", ridge), ("kernel ridge", krr), ("GP mean", gp)):
    error = model.predict(x_plot[inside, None]) - f(x_plot[inside])
    print(f"{name:13s} RMSE against f on [-3, 3]: {np.sqrt(np.mean(error**2)):.3f}")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True, layout="constrained")
panels = [("ridge", ridge.predict(x_plot[:, None])), ("kernel ridge", krr.predict(x_plot[:, None])),
          ("Gaussian process", mean)]
for ax, (title, prediction) in zip(axes, panels):
    if title == "Gaussian process":
        ax.fill_between(x_plot, mean - 2 * std, mean + 2 * std, color="C1", alpha=0.25, label="±2σ")
    ax.plot(x_plot, f(x_plot), color="k", lw=1, label="f(x)")
    ax.plot(x_plot, prediction, color="C1", lw=2, label="prediction")
    ax.scatter(x_train, y_train, s=10, color="C0", zorder=3, label="training points")
    ax.axvspan(0.4, 1.8, color="0.93", zorder=0)
    ax.set_title(title)
    ax.set_xlabel("x")
axes[0].set_ylabel("y")
axes[0].set_ylim(-3, 3)
axes[2].legend(loc="lower right", fontsize=8)

# %%
# Is the band calibrated?
# -----------------------
# The GP's standard deviation is that of a new observation, noise included, so it is checked against fresh noisy
# samples: 2000 of them, drawn where the training data are dense, in the gap, and outside the training range.
# For a calibrated Gaussian, 68.3 % of them fall within ±1σ and 95.4 % within ±2σ.
regions = {"dense (|x| <= 3, outside the gap)": lambda x: (np.abs(x) <= 3) & ((x < 0.4) | (x > 1.8)),
           "the gap (0.4 < x < 1.8)": lambda x: (x > 0.4) & (x < 1.8),
           "outside (3 < |x| < 4.5)": lambda x: np.abs(x) > 3}
x_test = rng.uniform(-4.5, 4.5, size=2000)
y_test = f(x_test) + rng.normal(scale=noise, size=x_test.size)
m_test, s_test = gp.predict(x_test[:, None], return_std=True)
for region, pick in regions.items():
    sel = pick(x_test)
    print(f"{region:36s} n={sel.sum():4d}  mean σ={s_test[sel].mean():.3f}  "
          f"within ±1σ {coverage(y_test[sel], m_test[sel], s_test[sel], k=1):.3f}  "
          f"within ±2σ {coverage(y_test[sel], m_test[sel], s_test[sel], k=2):.3f}")

# %%
# What to take away
# -----------------
# * A linear model on the raw input cannot follow a curve; a kernel model can, because it compares points
#   instead of weighting coordinates.
# * KRR and the GP make the same kind of prediction. They differ in how the hyperparameters are chosen
#   (leave-one-out error against marginal likelihood) and in what else they return: the GP's σ grows where data
#   are missing (the gap, and outside the range).
# * A σ is a claim to be tested: count how often the errors fall within ±1σ and ±2σ, as above and in
#   :doc:`/guide/uncertainty`. Here the band is slightly too narrow where the data are dense (the noise level
#   estimated from 40 points is a little below the true one) and wider than needed in the gap and outside the
#   range. Far from the data the σ tends to the prior's spread; whether that covers the truth there depends on
#   the kernel, not on the data.
