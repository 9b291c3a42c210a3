"""Calibration diagnostics: coverage, NLL by hand, the calibration curve and plot."""

import math

import numpy as np
import pytest

from ml4ms.errors import InputError
from ml4ms.uncertainty import (
    EXPECTED_1SIGMA,
    EXPECTED_2SIGMA,
    calibration_curve,
    calibration_metrics,
    calibration_plot,
    coverage,
    gaussian_nll,
)


def test_nll_matches_hand_computation():
    y, p, s = [1.0, -2.0, 0.5], [1.5, -2.0, 2.5], [0.5, 2.0, 1.0]
    hand = (
        (0.5 * math.log(2 * math.pi * 0.25) + 0.25 / 0.5)
        + (0.5 * math.log(2 * math.pi * 4.0) + 0.0)
        + (0.5 * math.log(2 * math.pi * 1.0) + 4.0 / 2.0)
    ) / 3
    assert gaussian_nll(y, p, s) == pytest.approx(hand, rel=1e-12)
    assert calibration_metrics(y, p, s)["nll"] == pytest.approx(hand, rel=1e-12)


def test_coverage_counts_and_gaussian_reference():
    assert coverage([0, 0, 0, 0], [0.5, -1.0, 1.5, 3.0], [1, 1, 1, 1]) == 0.5
    assert coverage([0, 0, 0, 0], [0.5, -1.0, 1.5, 3.0], [1, 1, 1, 1], k=2) == 0.75
    rng = np.random.default_rng(0)
    s = rng.uniform(0.1, 2.0, size=40000)
    y = s * rng.normal(size=s.size)
    m = calibration_metrics(y, np.zeros_like(y), s)
    assert m["within_1sigma"] == pytest.approx(EXPECTED_1SIGMA, abs=0.01)
    assert m["within_2sigma"] == pytest.approx(EXPECTED_2SIGMA, abs=0.005)
    assert m["mean_z2"] == pytest.approx(1.0, abs=0.03)
    assert m["nll"] == pytest.approx(np.mean(0.5 * np.log(2 * np.pi * s**2)) + 0.5, abs=0.02)
    # too small σ: low coverage and a worse NLL
    small = calibration_metrics(y, np.zeros_like(y), s / 3)
    assert small["within_1sigma"] < 0.35 and small["nll"] > m["nll"]


def test_calibration_curve_on_calibrated_and_overconfident_predictions():
    rng = np.random.default_rng(1)
    y = rng.normal(size=5000)
    e, o = calibration_curve(y, np.zeros_like(y), np.ones_like(y), n_levels=9)
    assert np.allclose(e, np.arange(1, 10) / 10)
    assert np.max(np.abs(o - e)) < 0.03
    _, o_small = calibration_curve(y, np.zeros_like(y), 0.5 * np.ones_like(y), n_levels=9)
    assert np.all(o_small < e)


def test_calibration_plot_writes_png(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.normal(size=(200, 2))
    path = tmp_path / "sub" / "cal.png"
    calibration_plot(y, y + 0.1 * rng.normal(size=y.shape), np.full(y.shape, 0.1), str(path),
                     names=["a", "b"], title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("std", [[1.0, 0.0], [1.0, np.nan], [1.0, -1.0]])
def test_bad_std(std):
    with pytest.raises(InputError, match="standard deviations"):
        calibration_metrics([0.0, 1.0], [0.0, 1.0], std)


def test_shape_mismatch():
    with pytest.raises(InputError, match="shapes differ"):
        gaussian_nll([0.0, 1.0], [0.0], [1.0, 1.0])
