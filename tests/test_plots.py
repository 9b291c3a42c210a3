"""The plots read right: units on every axis, a stats box without a marker, two labelled ticks on narrow
log axes, records without a colour value on their own, meV/atom where the CLI prints meV/atom.

The figures are inspected (the plotting functions return them), not their pixels.
"""

import numpy as np
import pytest

from ml4ms.plots import learning_curve_plot, log_ticks, parity_plot, score_plot, wrap

NOMAD_UNITS = {"formation_energy_ev_natom": "eV/atom", "bandgap_energy_ev": "eV"}


def _labelled_ticks(ax, name):
    """The major tick labels of an axis that are drawn inside its view limits."""
    ax.figure.canvas.draw()
    lo, hi = sorted(getattr(ax, f"get_{name}lim")())
    axis = getattr(ax, f"{name}axis")
    return [t.label1.get_text() for t in axis.get_major_ticks()
            if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]


def _legend_texts(ax):
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_parity_plot_axes_carry_units_and_the_stats_box_has_no_marker(tmp_path):
    rng = np.random.default_rng(0)
    y = np.c_[rng.uniform(0, 0.4, 50), rng.uniform(0, 5, 50), rng.uniform(0, 1, 50)]
    p = y + 0.02 * rng.normal(size=y.shape)
    names = ["formation_energy_ev_natom", "bandgap_energy_ev", "my_key"]
    fig = parity_plot(y, p, names, str(tmp_path / "parity.png"), units=[NOMAD_UNITS.get(n) for n in names])
    assert (tmp_path / "parity.png").stat().st_size > 1000
    a, b, c = fig.axes
    assert a.get_xlabel() == "reference formation_energy_ev_natom (eV/atom)"
    assert a.get_ylabel() == "predicted formation_energy_ev_natom (eV/atom)"
    assert b.get_xlabel().endswith("(eV)") and c.get_xlabel().endswith("(unit unknown)")
    for ax, unit in zip(fig.axes, ["eV/atom", "eV", None]):
        assert ax.get_legend() is None  # no legend, so no marker beside the numbers
        (box,) = ax.texts
        text = box.get_text()
        assert text.startswith("MAE ") and "RMSE " in text and "n = 50" in text
        assert box.get_bbox_patch() is not None
        if unit:
            assert text.splitlines()[0].endswith(f" {unit}")
    mae = np.mean(np.abs(p[:, 0] - y[:, 0]))
    assert f"MAE {mae:.4g} eV/atom" in a.texts[0].get_text()


@pytest.mark.parametrize("lo, hi", [(0.09, 0.19), (0.0255, 0.0335), (0.3, 0.45), (120, 240), (60, 240),
                                    (0.031, 0.0312), (0.26, 1.1), (24, 240), (1e-3, 1e4), (7.1, 7.9)])
def test_log_ticks_give_at_least_two_distinct_labels_inside_the_range(lo, hi):
    values, labels = log_ticks(lo, hi)
    assert len(values) >= 2 and len(values) == len(labels) == len(set(labels))
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in values)
    assert np.allclose([float(t) for t in labels], values, rtol=1e-9)
    assert len(values) <= 8


def test_learning_curve_panels_have_two_labelled_ticks_and_units_on_a_narrow_range(tmp_path):
    curve = {"train_size": [120, 180, 240], "targets": {
        "formation_energy_ev_natom": {"mean": [0.0312, 0.0281, 0.0262], "std": [0.002, 0.0015, 0.001]},
        "bandgap_energy_ev": {"mean": [0.142, 0.131, 0.118], "std": [0.01, 0.008, 0.006]},
        "my_key": {"mean": [0.51, 0.50, 0.49], "std": [0.0, 0.0, 0.0]}}}
    fig = learning_curve_plot(curve, str(tmp_path / "lc.png"), metric="RMSE", units=NOMAD_UNITS)
    for ax in fig.axes:
        for name in "xy":
            assert len(_labelled_ticks(ax, name)) >= 2, (ax.get_title(), name)
        assert ax.get_xlabel() == "training structures"
    assert [ax.get_ylabel() for ax in fig.axes] == ["test RMSE (eV/atom)", "test RMSE (eV)",
                                                    "test RMSE (unit unknown)"]
    fig = learning_curve_plot({"curves": {"random": curve, "FPS": curve}}, str(tmp_path / "lc2.png"),
                              metric="RMSLE", units=NOMAD_UNITS)
    assert fig.axes[0].get_ylabel() == "test RMSLE (no unit)"
    assert _legend_texts(fig.axes[0]) == ["random", "FPS"]


def test_learning_curve_of_r2_uses_a_linear_axis_without_warnings(tmp_path, recwarn):
    curve = {"train_size": [2, 4, 8], "targets": {"y": {"mean": [-3.0, 0.2, 0.8], "std": [1.0, 0.1, 0.05]}}}
    ax = learning_curve_plot(curve, str(tmp_path / "r2.png"), metric="R2").axes[0]
    assert ax.get_yscale() == "linear" and ax.get_xscale() == "log"
    assert ax.get_ylabel() == "test R2 (no unit)"
    assert not [w for w in recwarn if "matplotlib" in str(w.filename) or "log" in str(w.message).lower()]
    error = {"train_size": [2, 4, 8], "targets": {"y": {"mean": [3.0, 2.0, 1.0], "std": [0.1, 0.1, 0.1]}}}
    assert learning_curve_plot(error, str(tmp_path / "e.png"), metric="MAE").axes[0].get_yscale() == "log"


def test_score_plot_says_its_units_and_labels_the_highlighted_points_readably(tmp_path):
    rng = np.random.default_rng(1)
    novelty, errors = rng.uniform(0.2, 1.2, 60), rng.normal(scale=3.0, size=60)
    title = "models/tio2 on /a/rather/long/folder/with/many/levels/of/test/structures/tio2_test_cells.extxyz"
    fig = score_plot(novelty, errors, str(tmp_path / "s.png"), "novelty", "energy error", title=title,
                     highlight=[3, 7, 11], threshold=1.0, score_unit="1 = 99th percentile of training",
                     error_unit="meV/atom", highlight_label="the 3 largest errors")
    (ax,) = fig.axes
    assert ax.get_ylabel() == "|energy error| (meV/atom)"
    assert ax.get_xlabel() == "novelty (1 = 99th percentile of training)"
    assert _legend_texts(ax) == ["the 3 largest errors"]
    notes = [t for t in ax.texts if t.get_text() in {"3", "7", "11"}]
    assert len(notes) == 3 and all(t.get_fontsize() >= 8 for t in notes)
    assert ax.get_title() == wrap(title, fig.get_figwidth(), 9) and "\n" in ax.get_title()
    for name in "xy":
        assert len(_labelled_ticks(ax, name)) >= 2


def test_wrap_keeps_short_text_and_breaks_long_paths_after_a_slash():
    assert wrap("learning curve, nomad2018:train", 4.4) == "learning curve, nomad2018:train"
    lines = wrap("m on /" + "/".join(["folder"] * 20) + "/file.extxyz", 3.0).splitlines()
    assert len(lines) > 1 and all(len(line) <= int(3.0 * 72 / (0.52 * 10)) for line in lines)
    assert all(line.endswith("/") for line in lines[:-1])


def test_map_plot_draws_records_without_a_value_apart_from_the_colour_scale(tmp_path):
    from ml4ms.cli.insight import map_plot

    Z = np.random.default_rng(2).normal(size=(8, 2))
    values = np.array([0.5, np.nan, 1.5, 2.5, np.nan, 1.0, np.inf, 3.0])
    fig = map_plot(Z, str(tmp_path / "m.png"), values=values, color_key="formation_energy_ev_natom",
                   unit="eV/atom", highlight=np.array([0, 1]))
    ax, cax = fig.axes
    assert cax.get_ylabel() == "formation_energy_ev_natom (eV/atom)"
    coloured, empty, selected = ax.collections
    assert (coloured.norm.vmin, coloured.norm.vmax) == (0.5, 3.0)
    assert np.all(np.isfinite(coloured.get_array())) and len(coloured.get_offsets()) == 5
    assert empty.get_label() == "no value (3)" and len(empty.get_offsets()) == 3
    assert len(empty.get_facecolors()) == 0 or np.all(empty.get_facecolors()[:, 3] == 0)  # hollow
    assert np.allclose(empty.get_offsets(), Z[[1, 4, 6]])
    assert _legend_texts(ax) == ["no value (3)", "selected (2)"]

    labels = ["RS", None, "ZB", "RS", None]
    fig = map_plot(Z[:5], str(tmp_path / "c.png"), labels=labels, color_key="lowest_energy_structure")
    (ax,) = fig.axes
    assert _legend_texts(ax) == ["RS", "ZB", "no value (2)"]
    assert ax.get_legend().get_title().get_text() == "lowest_energy_structure"


def test_colour_values_keep_records_without_a_value_out_of_the_classes():
    from ml4ms.cli.insight import _colour_values
    from ml4ms.errors import InputError

    rows = [{"y": 1.0, "c": "RS"}, {"y": float("nan"), "c": ""}, {"y": "", "c": float("nan")}, {"c": "ZB"}]
    values, labels = _colour_values(rows, "y", "t.csv")
    assert labels is None and values[0] == 1.0 and np.isnan(values[1:]).all()
    values, labels = _colour_values(rows, "c", "t.csv")
    assert values is None and labels == ["RS", None, None, "ZB"]
    with pytest.raises(InputError, match="no scalar property 'z'"):
        _colour_values(rows, "z", "t.csv")


def test_potential_parity_plots_use_mev_per_atom_as_the_cli_prints(tmp_path):
    from ml4ms.cli.potential import _parity_plots

    rng = np.random.default_rng(3)
    e_ref = -840.0 + rng.normal(scale=10.0, size=20)  # eV/atom
    e_pred = e_ref + rng.normal(scale=0.004, size=20)
    forces = [rng.normal(size=(6, 3)) for _ in range(20)]
    pred_f = [f + 0.05 * rng.normal(size=f.shape) for f in forces]
    energy, force = _parity_plots(e_ref, e_pred, forces, pred_f, str(tmp_path / "p"), "pot on data")
    assert (tmp_path / "p_energy.png").exists() and (tmp_path / "p_forces.png").exists()
    ax = energy.axes[0]
    assert ax.get_xlabel().endswith("(meV/atom)") and ax.get_ylabel().endswith("(meV/atom)")
    rmse = 1000 * np.sqrt(np.mean((e_pred - e_ref) ** 2))
    assert f"RMSE {rmse:.4g} meV/atom" in ax.texts[0].get_text()
    assert f"{np.mean(e_ref):.3f} eV/atom" in energy.get_suptitle()
    ax = force.axes[0]
    assert ax.get_xlabel() == "reference force component (eV/Å)" and "eV/Å" in ax.texts[0].get_text()
