"""Plots people would rather see than read: parity plots and learning curves (PNG).

matplotlib is imported inside the functions (Agg backend), never at ``import ml4ms``.
"""

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=120):
    """Save ``fig`` as PNG through a temporary file, so no half-written picture is left behind."""
    from .outputs import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")


def _plain_log_ticks(ax, axes="xy"):
    """Log axes labelled with plain numbers at the decades and a few steps, without overlap."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for axis in [getattr(ax, f"{name}axis") for name in axes]:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)
        axis.set_minor_formatter(NullFormatter())


def parity_plot(y_true, y_pred, names, path, units=None, title=None, y_std=None):
    """Predicted vs reference, one panel per target, with MAE/RMSE in the legend.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,) or (n, n_targets)
    names : list of str
    path : str
        PNG file to write.
    units : list of str, optional
    y_std : array-like, optional
        Predictive standard deviations, drawn as error bars.
    """
    plt = _pyplot()
    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    k = y_true.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4.0), squeeze=False)
    for j, ax in enumerate(axes[0]):
        t, p = y_true[:, j], y_pred[:, j]
        err = p - t
        label = f"MAE {np.mean(np.abs(err)):.4g}\nRMSE {np.sqrt(np.mean(err**2)):.4g}\nn = {len(t)}"
        if y_std is not None:
            s = np.asarray(y_std, dtype=float).reshape(len(t), -1)[:, j]
            if np.all(np.isfinite(s)):
                ax.errorbar(t, p, yerr=s, fmt="none", ecolor="0.7", lw=0.5, zorder=1)
        ax.scatter(t, p, s=6, alpha=0.6, label=label, zorder=2)
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        unit = f" ({units[j]})" if units and units[j] else ""
        ax.set_xlabel(f"reference {names[j]}{unit}")
        ax.set_ylabel(f"predicted {names[j]}{unit}")
        ax.legend(loc="upper left", fontsize=8, handlelength=0, handletextpad=0)
        ax.set_aspect("equal", adjustable="datalim")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def learning_curve_plot(curve, path, metric="RMSE", title=None):
    """Error against training-set size, log-log, mean ± std over seeds.

    Parameters
    ----------
    curve : dict
        ``{"train_size": [...], "targets": {name: {"mean": [...], "std": [...]}}}``
        (optionally several curves as ``{"curves": {label: curve}}``).
    path : str
    """
    plt = _pyplot()
    curves = curve.get("curves", {"": curve})
    names = list(next(iter(curves.values()))["targets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), squeeze=False)
    fig.subplots_adjust(wspace=0.4)
    for j, name in enumerate(names):
        ax = axes[0][j]
        for label, c in curves.items():
            n = np.asarray(c["train_size"], dtype=float)
            m = np.asarray(c["targets"][name]["mean"], dtype=float)
            s = np.asarray(c["targets"][name]["std"], dtype=float)
            ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label=label or None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"test {metric}")
        ax.set_title(name, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def score_plot(score, errors, path, score_name, error_name, title=None, highlight=None, threshold=None):
    """|error| against a score meant to predict it (novelty, a committee's spread), log–log.

    ``highlight``: indices of samples drawn in red and labelled with their
    index; ``threshold``: a score drawn as a dashed vertical line. Values of
    zero are drawn four decades below the largest.
    """
    plt = _pyplot()
    err = np.abs(np.asarray(errors, dtype=float))
    floor = max(1e-4 * float(np.nanmax(err)), 1e-12)  # four decades below the largest error (log axes)
    err = np.maximum(err, floor)
    score = np.asarray(score, dtype=float)
    score = np.maximum(score, max(1e-4 * float(np.nanmax(score[np.isfinite(score)], initial=0.0)), 1e-12))
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    ax.scatter(score, err, s=6, alpha=0.6)
    for k in highlight or []:
        ax.scatter(score[k], err[k], s=14, color="tab:red")
        ax.annotate(str(k), (score[k], err[k]), fontsize=7, xytext=(3, 2), textcoords="offset points")
    if threshold is not None:
        ax.axvline(threshold, color="0.5", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax, axes="x")  # errors span decades: powers of ten on y
    ax.set_xlabel(score_name)
    ax.set_ylabel(f"|{error_name}|")
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
