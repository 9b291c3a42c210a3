"""Plots people would rather see than read: parity plots, learning curves, score plots (PNG).

Every axis says its unit: :func:`axis_label` writes ``name (unit)``, or says
``unit unknown`` when nobody told the plot (a user's own key) and ``no unit``
for ratios and scores. Log axes get at least two plain-number tick labels
(:func:`log_ticks`). The plotting functions save the PNG and return the
(closed) matplotlib figure, so callers and tests can look at its axes.

matplotlib is imported inside the functions (Agg backend), never at ``import ml4ms``.
"""

import re

import numpy as np

from .metrics import GREATER_IS_BETTER

#: metrics whose value has no unit (the others have the unit of the target)
UNITLESS_METRICS = frozenset({"rmsle", "r2"})


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display needed), imported on first use.

    Every ml4ms figure is drawn through it, then written with :func:`save_figure`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=120):
    """Save ``fig`` as PNG through a temporary file, so no half-written picture is left behind."""
    from .outputs import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")


def axis_label(name, unit):
    """``name (unit)``; ``unit=None``: the unit is not known; ``""``: a quantity without unit.

    Examples
    --------
    >>> axis_label("band gap", "eV")
    'band gap (eV)'
    >>> axis_label("my_key", None)
    'my_key (unit unknown)'
    >>> axis_label("test RMSLE", "")
    'test RMSLE (no unit)'
    """
    if unit is None:
        return f"{name} (unit unknown)"
    return f"{name} ({unit or 'no unit'})"


def metric_unit(metric, unit):
    """Unit of an error metric of a target in ``unit``: the same, or ``""`` for RMSLE and R².

    Examples
    --------
    >>> metric_unit("RMSE", "eV/atom"), metric_unit("rmsle", "eV"), metric_unit("mae", None)
    ('eV/atom', '', None)
    """
    return "" if str(metric).lower() in UNITLESS_METRICS else unit


def unit_of(units, j, name):
    """The unit of target ``j`` called ``name``: ``units`` is a list (by position), a dict (by name) or None.

    Examples
    --------
    >>> unit_of(["eV/atom", "eV"], 1, "bandgap_energy_ev"), unit_of({"y": "eV"}, 0, "z"), unit_of(None, 0, "y")
    ('eV', None, None)
    """
    if isinstance(units, dict):
        return units.get(name)
    if units is not None and j < len(units):
        return units[j]
    return None


def wrap(text, width_in, fontsize=10):
    """``text`` in lines that fit ``width_in`` inches at ``fontsize`` points; long paths break after a ``/``.

    Examples
    --------
    >>> print(wrap("models/tio2 on /data/runs/a_rather_long_folder_name/tio2_test_structures.extxyz", 3.0))
    models/tio2 on /data/runs/
    a_rather_long_folder_name/
    tio2_test_structures.extxyz
    """
    width = max(12, int(width_in * 72 / (0.52 * fontsize)))
    lines = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for word in re.findall(r"\S+\s*", paragraph):
            parts = re.findall(r"[^/]*/|[^/]+", word) if len(word.rstrip()) > width else [word]
            for part in (piece[i:i + width] for piece in parts for i in range(0, len(piece), width)):
                if line and len(line) + len(part.rstrip()) > width:
                    lines.append(line.rstrip())
                    line = ""
                line += part
        lines.append(line.rstrip())
    return "\n".join(lines)


def _round(v):
    return float(f"{v:.12g}")


def log_ticks(lo, hi, max_ticks=8):
    """Tick values and plain-number labels for a log axis from ``lo`` to ``hi`` (> 0); at least two.

    One, two and five times the powers of ten when at least three of them lie
    in the range (only powers of ten, every k-th, when more than ``max_ticks``
    would); otherwise, for a range of about a decade or less, evenly spaced
    round numbers.

    Examples
    --------
    >>> log_ticks(24, 240)
    ([50.0, 100.0, 200.0], ['50', '100', '200'])
    >>> log_ticks(0.0255, 0.0335)
    ([0.026, 0.028, 0.03, 0.032], ['0.026', '0.028', '0.030', '0.032'])
    >>> log_ticks(0.09, 0.19)[1]
    ['0.10', '0.12', '0.14', '0.16', '0.18']
    >>> log_ticks(0.26, 1.1)[1]
    ['0.4', '0.6', '0.8', '1.0']
    >>> log_ticks(0.004, 300)[1]
    ['0.01', '0.1', '1', '10', '100']
    """
    lo, hi = sorted((float(lo), float(hi)))
    if not (lo > 0 and np.isfinite(hi)):
        raise ValueError(f"a log axis needs 0 < lo <= hi < inf, got {lo}, {hi}")
    inside = lambda v: lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)  # noqa: E731
    decades = [_round(10.0**k) for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)]
    ticks = [t for t in (_round(d * m) for d in decades for m in (1, 2, 5)) if inside(t)]
    if len(ticks) > max_ticks:
        ticks = [d for d in decades if inside(d)]
        ticks = ticks[:: -(-len(ticks) // max_ticks)]
    if len(ticks) >= 3:
        return ticks, [np.format_float_positional(t, trim="-") for t in ticks]
    if hi == lo:
        return [lo], [f"{lo:g}"]
    raw = (hi - lo) / 5
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    ticks = [_round(k * step) for k in range(int(np.ceil(lo / step - 1e-9)), int(np.floor(hi / step + 1e-9)) + 1)]
    decimals = max(0, -int(np.floor(np.log10(step) + 1e-9)))
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


def _plain_log_ticks(ax, axes="xy"):
    """Label the log axes of ``ax`` (after plotting) with :func:`log_ticks`; minor ticks unlabelled."""
    from matplotlib.ticker import NullFormatter

    for name in axes:
        lo, hi = getattr(ax, f"get_{name}lim")()
        values, labels = log_ticks(lo, hi)
        getattr(ax, f"set_{name}lim")(lo, hi)
        getattr(ax, f"set_{name}ticks")(values, labels)
        getattr(ax, f"{name}axis").set_minor_formatter(NullFormatter())


def _stats_box(ax, text, loc="upper left"):
    """A text box of numbers in a corner of ``ax`` (no legend: no marker beside the numbers)."""
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    return ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=8, zorder=5,
                   bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "0.75", "alpha": 0.9})


def _title(fig, title, ax=None, fontsize=None):
    """Figure title (or axes title with ``ax``) wrapped to the figure width."""
    if not title:
        return
    if ax is not None:
        ax.set_title(wrap(title, fig.get_figwidth(), fontsize or 9), fontsize=fontsize or 9)
    else:
        fig.suptitle(wrap(title, fig.get_figwidth(), fontsize or 11), fontsize=fontsize or 11)


def parity_plot(y_true, y_pred, names, path, units=None, title=None, y_std=None):
    """Predicted vs reference, one panel per target, with MAE, RMSE and n in a text box.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,) or (n, n_targets)
    names : list of str
    path : str
        PNG file to write.
    units : list or dict of str, optional
        Unit of each target (by position or by name); a missing one is shown
        as ``unit unknown``, ``""`` as ``no unit``.
    y_std : array-like, optional
        Predictive standard deviations, drawn as error bars.

    Returns
    -------
    matplotlib.figure.Figure
        The saved (and closed) figure.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     fig = parity_plot([1.0, 2.0, 3.0], [1.1, 1.9, 3.2], ["band gap"], os.path.join(tmp, "p.png"),
    ...                       units=["eV"])
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_legend()
    ('reference band gap (eV)', None)
    >>> print(fig.axes[0].texts[0].get_text())
    MAE 0.1333 eV
    RMSE 0.1414 eV
    n = 3
    """
    plt = pyplot()
    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    k = y_true.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4.0), squeeze=False, layout="constrained")
    for j, ax in enumerate(axes[0]):
        t, p = y_true[:, j], y_pred[:, j]
        err = p - t
        unit = unit_of(units, j, names[j])
        shown = f" {unit}" if unit else ""
        if y_std is not None:
            s = np.asarray(y_std, dtype=float).reshape(len(t), -1)[:, j]
            if np.all(np.isfinite(s)):
                ax.errorbar(t, p, yerr=s, fmt="none", ecolor="0.7", lw=0.5, zorder=1)
        ax.scatter(t, p, s=6, alpha=0.6, zorder=2)
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        _stats_box(ax, f"MAE {np.mean(np.abs(err)):.4g}{shown}\nRMSE {np.sqrt(np.mean(err**2)):.4g}{shown}\n"
                       f"n = {len(t)}")
        ax.set_xlabel(wrap(axis_label(f"reference {names[j]}", unit), 3.4))
        ax.set_ylabel(wrap(axis_label(f"predicted {names[j]}", unit), 3.4))
        ax.set_aspect("equal", adjustable="datalim")
    _title(fig, title)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def learning_curve_plot(curve, path, metric="RMSE", title=None, units=None):
    """Error against training-set size, mean ± std over seeds; the size on a log axis.

    An error (MAE, RMSE, ...) goes on a log axis too: errors that fall as a
    power of the size then lie on a straight line. A score that can be zero
    or negative, R² above all (1 is perfect, below 0 worse than the mean),
    goes on a linear axis, where a user reads how close it comes to 1; a log
    axis could not show it.

    Parameters
    ----------
    curve : dict
        ``{"train_size": [...], "targets": {name: {"mean": [...], "std": [...]}}}``
        (optionally several curves as ``{"curves": {label: curve}}``).
    path : str
    units : dict or list of str, optional
        Unit of each target (the metric's unit unless it is RMSLE or R²);
        a missing one is shown as ``unit unknown``.

    Returns
    -------
    matplotlib.figure.Figure
        The saved (and closed) figure; each axis has at least two labelled ticks.
    """
    plt = pyplot()
    curves = curve.get("curves", {"": curve})
    names = list(next(iter(curves.values()))["targets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), squeeze=False, layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)
    for j, name in enumerate(names):
        ax = axes[0][j]
        lowest = np.inf
        for label, c in curves.items():
            n = np.asarray(c["train_size"], dtype=float)
            m = np.asarray(c["targets"][name]["mean"], dtype=float)
            s = np.asarray(c["targets"][name]["std"], dtype=float)
            ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label=label or None)
            lowest = min(lowest, float(np.min(m)))
        ax.set_xscale("log")
        log_y = str(metric).lower() not in GREATER_IS_BETTER and lowest > 0
        if log_y:
            ax.set_yscale("log")
        _plain_log_ticks(ax, "xy" if log_y else "x")
        ax.set_xlabel("training structures")
        ax.set_ylabel(axis_label(f"test {metric}", metric_unit(metric, unit_of(units, j, name))))
        ax.set_title(wrap(name, 4.0, 9), fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    _title(fig, title)
    save_figure(fig, path)
    plt.close(fig)
    return fig


def score_plot(score, errors, path, score_name, error_name, title=None, highlight=None, threshold=None,
               score_unit=None, error_unit=None, highlight_label=None):
    """The absolute error against a score meant to predict it (novelty, a committee's spread), log–log.

    ``highlight``: indices of samples drawn in red and labelled with their
    index (``highlight_label``: their legend entry); ``threshold``: a score
    drawn as a dashed vertical line. Values of zero are drawn four decades
    below the largest. The axes read ``score_name (score_unit)`` and
    ``|error_name| (error_unit)`` (see :func:`axis_label`: None is ``unit
    unknown``, ``""`` is ``no unit``).

    Returns
    -------
    matplotlib.figure.Figure
        The saved (and closed) figure.
    """
    plt = pyplot()
    err = np.abs(np.asarray(errors, dtype=float))
    floor = max(1e-4 * float(np.nanmax(err)), 1e-12)  # four decades below the largest error (log axes)
    err = np.maximum(err, floor)
    score = np.asarray(score, dtype=float)
    score = np.maximum(score, max(1e-4 * float(np.nanmax(score[np.isfinite(score)], initial=0.0)), 1e-12))
    fig, ax = plt.subplots(figsize=(5.2, 4.2), layout="constrained")
    ax.scatter(score, err, s=8, alpha=0.6)
    highlight = [int(k) for k in (highlight if highlight is not None else [])]
    if highlight:
        ax.scatter(score[highlight], err[highlight], s=22, color="tab:red", zorder=3, label=highlight_label)
        for rank, k in enumerate(sorted(highlight, key=lambda k: score[k])):  # alternate above / below
            ax.annotate(str(k), (score[k], err[k]), fontsize=9, xytext=(5, 4 if rank % 2 == 0 else -12),
                        textcoords="offset points", zorder=4,
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                              "alpha": 0.8})
    if threshold is not None:
        ax.axvline(threshold, color="0.5", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel(axis_label(score_name, score_unit))
    ax.set_ylabel(axis_label(f"|{error_name}|", error_unit))
    if highlight and highlight_label:
        ax.legend(loc="upper left", fontsize=8)
    _title(fig, title, ax=ax, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
    return fig
