"""Is a predicted standard deviation trustworthy? Calibration diagnostics.

For Gaussian predictions ``N(ŷ, σ²)`` that are calibrated, the errors fall
within ±1σ for 68.3 % of the samples and within ±2σ for 95.4 %; the
z-scores ``(y − ŷ)/σ`` have mean square 1. :func:`calibration_metrics`
reports these with the mean Gaussian negative log-likelihood
``NLL = mean(½ log(2πσ²) + (y − ŷ)²/(2σ²))`` (lower is better; it rewards
small σ only where errors are small). :func:`calibration_plot` draws the
observed coverage of the central intervals against the expected one (a
calibrated model lies on the diagonal; below it, the σ are too small).

matplotlib is imported inside :func:`calibration_plot` (Agg backend).

Examples
--------
>>> m = calibration_metrics([0.0, 1.0, 2.0], [0.5, 1.0, 4.0], [1.0, 1.0, 1.0])
>>> m["within_1sigma"], m["within_2sigma"]
(0.6666666666666666, 1.0)
"""

import numpy as np
from scipy.special import erf, erfinv

from .errors import InputError

#: expected coverage of ±1σ for a Gaussian (0.683)
EXPECTED_1SIGMA = float(erf(1 / np.sqrt(2)))
#: expected coverage of ±2σ for a Gaussian (0.954)
EXPECTED_2SIGMA = float(erf(2 / np.sqrt(2)))


def _check(y_true, y_pred, y_std):
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    y_std = np.asarray(y_std, dtype=float)
    if not (y_true.shape == y_pred.shape == y_std.shape):
        raise InputError(f"shapes differ: y_true {y_true.shape}, y_pred {y_pred.shape}, y_std {y_std.shape}")
    if y_true.size == 0:
        raise InputError("no predictions to assess")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise InputError("values or predictions contain NaN or inf")
    if not np.all(np.isfinite(y_std)) or np.any(y_std <= 0):
        raise InputError("standard deviations must be finite and > 0",
                         hint="the model may have no uncertainty (std is NaN)")
    return y_true, y_pred, y_std


def coverage(y_true, y_pred, y_std, k=1.0):
    """Fraction of samples with ``|y − ŷ| <= k σ``.

    Examples
    --------
    >>> coverage([0.0, 0.0], [0.5, 3.0], [1.0, 1.0], k=2)
    0.5
    """
    y_true, y_pred, y_std = _check(y_true, y_pred, y_std)
    return float(np.mean(np.abs(y_true - y_pred) <= k * y_std))


def gaussian_nll(y_true, y_pred, y_std):
    """Mean Gaussian negative log-likelihood per sample.

    Examples
    --------
    >>> round(gaussian_nll([0.0], [1.0], [2.0]), 6)  # 0.5*log(2*pi*4) + 1/8
    1.737086
    """
    y_true, y_pred, y_std = _check(y_true, y_pred, y_std)
    var = y_std**2
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + (y_true - y_pred) ** 2 / (2 * var)))


def calibration_metrics(y_true, y_pred, y_std):
    """Coverage of ±1σ and ±2σ, NLL and the mean squared z-score.

    Returns
    -------
    dict
        ``within_1sigma``, ``within_2sigma`` (observed fractions; expected
        0.683 and 0.954), ``nll`` (mean per sample), ``mean_z2`` (1 if
        calibrated), ``n``.
    """
    y_true, y_pred, y_std = _check(y_true, y_pred, y_std)
    z = (y_true - y_pred) / y_std
    return {
        "within_1sigma": float(np.mean(np.abs(z) <= 1.0)),
        "within_2sigma": float(np.mean(np.abs(z) <= 2.0)),
        "nll": gaussian_nll(y_true, y_pred, y_std),
        "mean_z2": float(np.mean(z**2)),
        "n": int(z.size),
    }


def calibration_curve(y_true, y_pred, y_std, n_levels=20):
    """Expected and observed coverage of central Gaussian intervals.

    Returns
    -------
    expected, observed : ndarray, shape (n_levels,)
        For probabilities ``p`` in (0, 1), the fraction of errors inside
        ``± σ √2 erfinv(p)``.

    Examples
    --------
    >>> e, o = calibration_curve([0.0, 0.0, 0.0, 0.0], [0.1, 0.5, 1.5, 3.0], [1.0] * 4, n_levels=3)
    >>> e.round(2).tolist(), o.tolist()
    ([0.25, 0.5, 0.75], [0.25, 0.5, 0.5])
    """
    y_true, y_pred, y_std = _check(y_true, y_pred, y_std)
    expected = np.arange(1, n_levels + 1) / (n_levels + 1)
    z = np.abs(y_true - y_pred).ravel() / y_std.ravel()
    observed = np.array([np.mean(z <= np.sqrt(2) * erfinv(p)) for p in expected])
    return expected, observed


def calibration_plot(y_true, y_pred, y_std, path, names=None, title=None, n_levels=20):
    """Observed vs expected coverage of Gaussian intervals, one panel per target (PNG).

    The coverages are fractions of the samples (no unit); the ±1σ, ±2σ
    coverages and the NLL are in a text box beside the curve.

    Parameters
    ----------
    y_true, y_pred, y_std : array-like, shape (n,) or (n, n_targets)
    path : str
        PNG file to write (atomically).
    names : list of str, optional
        Target names for the panel titles.

    Returns
    -------
    matplotlib.figure.Figure
        The saved (and closed) figure.
    """
    from .plots import _stats_box, _title, axis_label, pyplot, save_figure

    y_true, y_pred, y_std = _check(y_true, y_pred, y_std)
    y_true, y_pred, y_std = (np.reshape(a, (len(a), -1)) for a in (y_true, y_pred, y_std))
    k = y_true.shape[1]
    names = list(names) if names is not None else [f"target {j}" for j in range(k)]
    plt = pyplot()
    fig, axes = plt.subplots(1, k, figsize=(3.9 * k, 3.8), squeeze=False, layout="constrained")
    for j, ax in enumerate(axes[0]):
        e, o = calibration_curve(y_true[:, j], y_pred[:, j], y_std[:, j], n_levels)
        m = calibration_metrics(y_true[:, j], y_pred[:, j], y_std[:, j])
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
        ax.plot(np.r_[0, e], np.r_[0, o], "o-", ms=3, label="observed")
        _stats_box(ax, f"within ±1σ {m['within_1sigma']:.2f} (0.68)\nwithin ±2σ {m['within_2sigma']:.2f} (0.95)\n"
                       f"NLL {m['nll']:.3g}", loc="lower right")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(axis_label("expected coverage", "fraction of samples"))
        ax.set_ylabel(axis_label("observed coverage", "fraction of samples"))
        ax.set_title(names[j] if j < len(names) else f"target {j}", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_aspect("equal")
    _title(fig, title)
    save_figure(fig, path)
    plt.close(fig)
    return fig


__all__ = [
    "EXPECTED_1SIGMA",
    "EXPECTED_2SIGMA",
    "calibration_curve",
    "calibration_metrics",
    "calibration_plot",
    "coverage",
    "gaussian_nll",
]
