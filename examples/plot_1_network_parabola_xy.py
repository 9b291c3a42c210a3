"""
A network fits a parabola, and fails on f = xy until the inputs are right
=========================================================================

**The lesson.** A small neural network fits a smooth one-dimensional function such as a parabola from a few dozen
points, but it only interpolates: outside the range it was trained on it follows no law. A function as simple as
``f(x, y) = x·y`` is already awkward for the same kind of network when it is given ``x`` and ``y``: the product is
a saddle, and ReLU units build it from flat pieces. Given inputs in which the target is simple, ``u = (x + y)²``
and ``v = (x − y)²``, the same network learns it almost exactly, because ``x·y = (u − v) / 4`` is linear in them.
No information was added; only the representation changed.

That is why materials models are built on descriptors: the right inputs make the learning problem easy, and the
wrong ones make it hard however long the network is trained.

This example uses plain PyTorch.
"""

# %%
# One small network, one training loop
# ------------------------------------
# A network with one hidden layer of 16 ReLU units, trained by Adam on the mean squared error over the whole
# training set (2000 steps). Seeds fix the data and the initial weights, so the numbers below are the same on
# every run. A network this small gains nothing from several threads, so torch gets one.
import matplotlib.pyplot as plt
import numpy as np
import torch

torch.set_num_threads(1)


def make_network(n_inputs, seed, hidden=16):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))


def train(network, X, y, steps=2000, learning_rate=1e-2):
    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.mean((network(X) - y) ** 2)
        loss.backward()
        optimizer.step()
    return network


def predict(network, X):
    with torch.no_grad():
        return network(torch.as_tensor(X, dtype=torch.float32)).numpy().ravel()


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# %%
# A parabola
# ----------
# 40 noisy samples of ``y = x²`` on ``[-1, 1]``.
rng = np.random.default_rng(0)
x_train = rng.uniform(-1, 1, size=40)
y_train = x_train**2 + rng.normal(scale=0.02, size=x_train.size)
parabola = train(make_network(1, seed=0), x_train[:, None], y_train)

x_inside = np.linspace(-1, 1, 201)
x_wide = np.linspace(-2.5, 2.5, 501)
outside = np.abs(x_wide) > 1.5
print(f"RMSE inside the training range [-1, 1]: {rmse(predict(parabola, x_inside[:, None]), x_inside**2):.4f}")
print(f"RMSE at 1.5 < |x| < 2.5, outside it:    "
      f"{rmse(predict(parabola, x_wide[outside, None]), x_wide[outside] ** 2):.4f}")

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.axvspan(-1, 1, color="0.93", label="training range")
ax.plot(x_wide, x_wide**2, color="k", lw=1, label="y = x²")
ax.plot(x_wide, predict(parabola, x_wide[:, None]), color="C1", lw=2, label="network")
ax.scatter(x_train, y_train, s=12, color="C0", zorder=3, label="training points")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.set_ylim(-0.5, 6.5)
ax.legend()
ax.set_title("Inside its training range the network fits; outside it, it does not")

# %%
# The product f = xy, from x and y and from the right inputs
# ----------------------------------------------------------
# 200 samples of ``f = x·y`` on the square ``[-1, 1]²``. Two test sets: a grid on the same square
# (interpolation) and a grid on the ring around it, ``1 < max(|x|, |y|) ≤ 2`` (extrapolation). The same
# network is trained on ``(x, y)`` and on ``(u, v) = ((x + y)², (x − y)²)``, computed from the same points.
# Three seeds (data and initial weights) show how much of a difference is luck.


def right_inputs(XY):
    return np.column_stack([(XY[:, 0] + XY[:, 1]) ** 2, (XY[:, 0] - XY[:, 1]) ** 2])


def grid(low, high, n):
    g = np.linspace(low, high, n)
    return np.column_stack([a.ravel() for a in np.meshgrid(g, g)])


inside = grid(-1, 1, 41)
ring = grid(-2, 2, 81)
ring = ring[np.abs(ring).max(axis=1) > 1]

scores = {"(x, y)": [], "(u, v)": []}
for seed in (0, 1, 2):
    rng = np.random.default_rng(seed)
    XY = rng.uniform(-1, 1, size=(200, 2))
    f = XY[:, 0] * XY[:, 1]
    for name, inputs in (("(x, y)", lambda a: a), ("(u, v)", right_inputs)):
        network = train(make_network(2, seed), inputs(XY), f)
        scores[name].append([rmse(predict(network, inputs(T)), T[:, 0] * T[:, 1]) for T in (inside, ring)])
        if seed == 0:
            scores[name + " network"] = network

print("test RMSE of f = xy, mean ± std over 3 seeds")
print(f"{'inputs':8s} {'inside [-1, 1]^2':>22s} {'ring 1 < max|x,y| <= 2':>26s}")
for name in ("(x, y)", "(u, v)"):
    values = np.array(scores[name])
    mean, std = values.mean(axis=0), values.std(axis=0, ddof=1)
    print(f"{name:8s} {mean[0]:13.4f} ± {std[0]:.4f} {mean[1]:17.4f} ± {std[1]:.4f}")

# %%
# The errors of the seed-0 networks on the square and the ring around it. The dashed square is the training
# region; both error maps share one colour scale.
show = grid(-2, 2, 81)
truth = show[:, 0] * show[:, 1]
errors = {"(x, y)": predict(scores["(x, y) network"], show) - truth,
          "(u, v)": predict(scores["(u, v) network"], right_inputs(show)) - truth}
limit = float(np.abs(errors["(x, y)"]).max())
fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6), layout="constrained")
panels = [(truth, "f = xy", 4.0), (errors["(x, y)"], "error, inputs (x, y)", limit),
          (errors["(u, v)"], "error, inputs ((x+y)², (x−y)²)", limit)]
for ax, (values, title, scale) in zip(axes, panels):
    image = ax.imshow(values.reshape(81, 81), origin="lower", extent=(-2, 2, -2, 2), cmap="RdBu_r",
                      vmin=-scale, vmax=scale)
    ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "k--", lw=1)
    ax.set_title(title)
    ax.set_xlabel("x")
    fig.colorbar(image, ax=ax, shrink=0.85)
axes[0].set_ylabel("y")

# %%
# What to take away
# -----------------
# * A network interpolates. Inside the training range the parabola is fitted closely; outside it the ReLU network
#   continues in straight lines. Never trust a network where it has seen no data.
# * Both input sets carry exactly the same information about ``x·y``. With ``(x, y)`` the small network leaves a
#   structured error on the square and a large one on the ring; with ``((x + y)², (x − y)²)``, where the target
#   is linear, the error is far smaller on both, and the difference is much larger than the spread over seeds
#   (the table above).
# * For materials, the right inputs are the descriptor: a representation in which the property is a simple
#   function, invariant to rotations, translations and permutations of the atoms, matters more than the size of
#   the network (:doc:`/guide/descriptors`).
