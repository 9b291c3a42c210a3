"""``run_md`` and ``ml4ms md``: what each ensemble reports, frames written as the run goes, interruptions."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from ml4ms.potentials import NeuralPotential, NeuralPotentialCalculator, run_md, save_potential
from ml4ms.errors import InputError
from ml4ms.potentials.md import MDInterrupted


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny untrained MgO potential (initialised: enough for dynamics), saved, and a start structure."""
    frames = [bulk("MgO", "rocksalt", a=4.1 + 0.1 * k, cubic=True) for k in range(3)]
    model = NeuralPotential(hidden=(4,), descriptor_params={"radial_order": 2, "angular_order": 1})
    model.initialize(frames, [-40.0, -40.5, -40.2])
    folder = tmp_path_factory.mktemp("md")
    save_potential(folder / "pot", model)
    start = frames[0].copy()
    start.calc = None
    write(folder / "start.extxyz", start)
    return model, start, folder


def _stop_after(monkeypatch, calls):
    """Ctrl-C at the ``calls``-th force call of NeuralPotentialCalculator (the first is step 0's)."""
    real = NeuralPotentialCalculator.calculate
    count = []

    def calculate(self, *args, **kwargs):
        count.append(1)
        if len(count) == calls:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(NeuralPotentialCalculator, "calculate", calculate)


def test_each_ensemble_reports_what_is_meaningful(setup):
    model, start, _ = setup
    runs = {e: run_md(start.copy(), NeuralPotentialCalculator(model), ensemble=e, steps=4, timestep=0.5, seed=1)
            for e in ("nve", "nvt", "npt")}
    assert {"energy_drift_mev_per_atom_per_ps", "energy_fluctuation_mev_per_atom"} <= set(runs["nve"])
    for e in ("nvt", "npt"):  # a thermostat exchanges energy: no drift, no fluctuation of the total
        assert not any("energy" in key for key in runs[e]), runs[e]
    for r in runs.values():
        assert r["mean_temperature_k"] > 0 and r["temperature_std_k"] >= 0
    npt = runs["npt"]
    assert abs(npt["mean_volume_a3"] - start.get_volume()) < 0.05 * start.get_volume()
    assert np.isfinite(npt["mean_pressure_gpa"]) and npt["pressure_std_gpa"] >= 0
    assert "mean_volume_a3" not in runs["nvt"]


def test_frames_are_appended_whole_as_the_run_goes(setup, tmp_path, monkeypatch):
    from ml4ms.outputs import FrameAppender

    model, start, _ = setup
    real, seen = FrameAppender.append, []

    def append(self, atoms):
        real(self, atoms)
        seen.append(len(read(self.path, ":")))  # a valid trajectory after every frame

    monkeypatch.setattr(FrameAppender, "append", append)
    traj = tmp_path / "t.extxyz"
    r = run_md(start.copy(), NeuralPotentialCalculator(model), steps=6, interval=2, trajectory=str(traj))
    assert seen == [1, 2, 3, 4] and r["frames_written"] == 4
    # Ctrl-C at step 5 keeps the frames of steps 0, 2 and 4
    _stop_after(monkeypatch, 6)
    with pytest.raises(MDInterrupted) as info:
        run_md(start.copy(), NeuralPotentialCalculator(model), steps=6, interval=2, trajectory=str(traj))
    assert (info.value.step, info.value.frames) == (4, 3) and isinstance(info.value, KeyboardInterrupt)
    assert len(read(traj, ":")) == 3
    # Ctrl-C before the first frame leaves an existing file as it was
    _stop_after(monkeypatch, 1)
    with pytest.raises(MDInterrupted):
        run_md(start.copy(), NeuralPotentialCalculator(model), steps=6, interval=2, trajectory=str(traj))
    assert len(read(traj, ":")) == 3


def test_cli_md_interrupted_keeps_its_frames_and_writes_no_summary(setup, tmp_path, monkeypatch, capsys):
    import ml4ms.cli as cli

    _, _, folder = setup
    traj, summary = tmp_path / "t.extxyz", tmp_path / "md.json"
    _stop_after(monkeypatch, 6)
    assert cli.main(["md", str(folder / "pot"), str(folder / "start.extxyz"), "--steps", "10", "--interval", "2",
                     "-o", str(traj), "--json", str(summary), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ml4ms: interrupted at step 4 of 10; {traj} holds its 3 frames (step 0 and every 2 steps); "
                   "no summary written"]
    assert len(read(traj, ":")) == 3 and not summary.exists()


def test_cli_md_lines_and_progress(setup, tmp_path, capsys):
    import ml4ms.cli as cli

    _, _, folder = setup
    md = ["md", str(folder / "pot"), str(folder / "start.extxyz"), "--steps", "4", "--dt", "0.5", "-o",
          str(tmp_path / "t.extxyz"), "--json", str(tmp_path / "md.json")]
    assert cli.main(md + ["--ensemble", "nvt"]) == 0
    captured = capsys.readouterr()
    assert "md nvt" in captured.err  # the progress bar
    line = captured.out.splitlines()[0]
    assert line.startswith("4 steps of 8 atoms (nvt): mean temperature ") and "drift" not in line
    assert "energy_drift_mev_per_atom_per_ps" not in json.loads((tmp_path / "md.json").read_text())
    assert cli.main(md + ["--ensemble", "nve", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "(nve): energy drift " in captured.out
    assert cli.main(md + ["--ensemble", "npt", "--quiet"]) == 0
    assert "mean volume" in capsys.readouterr().out
    assert cli.main(md + ["--interval", "0"]) == 2
    assert "--interval: must be an integer >= 1" in capsys.readouterr().err


def test_a_run_that_leaves_physics_stops_and_keeps_its_frames(setup, tmp_path, monkeypatch):
    from ml4ms.potentials.md import MDUnstable

    model, start, _ = setup
    real = NeuralPotentialCalculator.calculate
    calls = []

    def calculate(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) > 4:  # from the fifth force call on, the energy is lost
            self.results["energy"] = float("nan")

    monkeypatch.setattr(NeuralPotentialCalculator, "calculate", calculate)
    traj = tmp_path / "t.extxyz"
    with pytest.raises(MDUnstable, match="became unstable at step .* non-finite energy") as info:
        run_md(start.copy(), NeuralPotentialCalculator(model), steps=20, interval=1, trajectory=str(traj))
    assert info.value.frames == len(read(traj, ":")) > 0 and "keeps the" in str(info.value)


@pytest.mark.parametrize("kwargs, match", [({"timestep": 50.0}, "timestep 50.0 fs is outside"),
                                           ({"ensemble": "nvt", "friction": 5.0}, "friction 5.0 1/fs"),
                                           ({"ensemble": "npt", "pressure": -2000.0}, "beyond ±1000 GPa")])
def test_unphysical_settings_are_refused_before_the_run(setup, kwargs, match):
    model, start, _ = setup
    with pytest.raises(InputError, match=match):
        run_md(start.copy(), NeuralPotentialCalculator(model), steps=2, **kwargs)
    with pytest.raises(InputError, match="at least 2 atoms"):
        run_md(start[:1].copy(), NeuralPotentialCalculator(model), steps=2)
