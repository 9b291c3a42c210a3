"""Molecular dynamics with ASE's integrators on a potential.

NVE: velocity Verlet. NVT: Langevin. NPT: isotropic MTK barostat with a
Nosé–Hoover chain thermostat (``ase.md.nose_hoover_chain.IsotropicMTKNPT``).

What a run reports depends on its ensemble (:func:`md_summary`). NVE
conserves the total energy, so its energy drift (the slope of a
least-squares line through the total energy per atom against time,
meV/atom/ps) and fluctuation measure the integration. A thermostat (NVT,
NPT) exchanges energy with its bath, so there the drift says nothing: those
runs report the mean temperature and its standard deviation instead, and NPT
also the mean volume and pressure. Throughput is atom-steps per second of
wall time (force calls included).

The trajectory is written as the run goes (:class:`~ml4ms.outputs.FrameAppender`):
after every frame the file is a valid trajectory, so an interrupted run keeps
its frames.
"""

import time

import numpy as np

from ..errors import InputError

ENSEMBLES = ("nve", "nvt", "npt")


class MDInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_md`: ``step`` steps done, ``frames`` frames kept in ``trajectory``."""

    def __init__(self, step, frames, trajectory):
        super().__init__(f"interrupted at step {step}: {frames} frames in {trajectory}")
        self.step, self.frames, self.trajectory = int(step), int(frames), trajectory


def md_summary(ensemble, times, totals, temperatures, volumes=None, pressures=None):
    """What an MD run reports about its ensemble, from per-step series.

    Parameters
    ----------
    ensemble : {"nve", "nvt", "npt"}
    times : array-like
        ps.
    totals : array-like
        Total energy per atom (eV/atom): NVE's drift and fluctuation.
    temperatures : array-like
        K.
    volumes, pressures : array-like, optional
        Å³ and GPa (NPT).

    Returns
    -------
    dict
        ``mean_temperature_k``, ``temperature_std_k``; NVE:
        ``energy_drift_mev_per_atom_per_ps``, ``energy_fluctuation_mev_per_atom``;
        NPT: ``mean_volume_a3``, ``volume_std_a3``, ``mean_pressure_gpa``,
        ``pressure_std_gpa``. No drift with a thermostat: it is not conserved.

    Examples
    --------
    >>> t = [0.0, 0.001, 0.002]
    >>> r = md_summary("nve", t, [-1.0, -0.999, -0.998], [300.0, 310.0, 290.0])
    >>> round(r["energy_drift_mev_per_atom_per_ps"], 6), r["mean_temperature_k"]
    (1000.0, 300.0)
    >>> sorted(md_summary("nvt", t, [-1.0, -0.9, -0.8], [300.0, 310.0, 290.0]))
    ['mean_temperature_k', 'temperature_std_k']
    """
    temperatures = np.asarray(temperatures, dtype=float)
    out = {"mean_temperature_k": float(temperatures.mean()), "temperature_std_k": float(temperatures.std())}
    if ensemble == "nve":
        times, totals = np.asarray(times, dtype=float), np.asarray(totals, dtype=float)
        slope = np.polyfit(times, totals, 1)[0] if len(times) > 1 else 0.0
        out["energy_drift_mev_per_atom_per_ps"] = float(1000 * slope)
        out["energy_fluctuation_mev_per_atom"] = float(1000 * np.std(totals))
    if ensemble == "npt":
        volumes, pressures = np.asarray(volumes, dtype=float), np.asarray(pressures, dtype=float)
        out.update({"mean_volume_a3": float(volumes.mean()), "volume_std_a3": float(volumes.std()),
                    "mean_pressure_gpa": float(pressures.mean()), "pressure_std_gpa": float(pressures.std())})
    return out


#: the largest time step (fs), temperature (K), Langevin friction (1/fs) and |pressure| (GPa) a run accepts:
#: beyond them an integrator follows no atomic motion (10 fs is several times a typical step; 1/fs damps the
#: velocities within a step), or the conditions are far outside anything a potential is trained for
LIMITS = {"timestep": 10.0, "temperature": 50000.0, "friction": 1.0, "pressure": 1000.0}


def _check(ensemble, steps, timestep, temperature, interval, friction=0.01, pressure=0.0, n_atoms=2):
    if ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble '{ensemble}'", hint=f"use one of {', '.join(ENSEMBLES)}")
    for name, value in (("steps", steps), ("interval", interval)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    for name, value, low, unit in (("timestep", timestep, 0.0, "fs"), ("temperature", temperature, -1e-300, "K"),
                                   ("friction", friction, 0.0, "1/fs"), ("pressure", abs(pressure), -1.0, "GPa")):
        if not low < value <= LIMITS[name]:
            shown = pressure if name == "pressure" else value
            raise InputError(f"{name} {shown!r} {unit} is outside (0, {LIMITS[name]:g}]"
                             if name != "pressure" else f"pressure {shown!r} GPa is beyond ±{LIMITS[name]:g} GPa",
                             hint=f"give a physical {name} (ml4ms.potentials.md.LIMITS)")
    if n_atoms < 2:
        raise InputError(f"MD needs at least 2 atoms, the structure has {n_atoms}",
                         hint="give a larger cell (a supercell of it)")


class MDUnstable(InputError):
    """The run left physics (a non-finite energy, a runaway temperature, a collapsed cell) at ``step``."""

    def __init__(self, step, frames, trajectory, reason):
        kept = f"; {trajectory} keeps the {frames} frames before it" if trajectory and frames else ""
        super().__init__(f"the run became unstable at step {step} ({reason}){kept}",
                         hint="lower --dt, or the temperature, friction or pressure")
        self.step, self.frames = int(step), int(frames)


def _integrator(atoms, ensemble, temperature, timestep, friction, pressure, rng):
    from ase import units

    dt = timestep * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(atoms, timestep=dt, temperature_K=temperature, friction=friction / units.fs, rng=rng,
                        fixcm=False)
    if not all(atoms.pbc):
        raise InputError("NPT needs a cell periodic in all three directions",
                         hint="use --ensemble nvt or nve for a molecule or a slab")
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=temperature, pressure_au=pressure * units.GPa,
                           tdamp=100 * dt, pdamp=1000 * dt)


def start_dynamics(atoms, calculator, *, ensemble="nve", temperature=300.0, timestep=1.0, friction=0.01,
                   pressure=0.0, seed=0):
    """Attach ``calculator``, draw Maxwell–Boltzmann velocities at ``temperature`` and return the integrator.

    The centre of mass is at rest; ``seed`` draws the velocities and, for
    ``"nvt"``, the Langevin noise. Units: K, fs, 1/fs, GPa.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> cell = bulk("Cu", cubic=True)
    >>> dyn = start_dynamics(cell, EMT(), ensemble="nvt", temperature=300, seed=0)
    >>> type(dyn).__name__, bool(abs(cell.get_momenta().sum(axis=0)).max() < 1e-8)
    ('Langevin', True)
    >>> dyn.run(2)
    True
    """
    from ase.md import velocitydistribution as vd

    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms)
    return _integrator(atoms, ensemble, temperature, timestep, friction, pressure, rng)


def run_md(atoms, calculator, *, ensemble="nve", temperature=300.0, steps=1000, timestep=1.0, friction=0.01,
           pressure=0.0, seed=0, trajectory=None, interval=10, progress=False):
    """Run MD and report what its ensemble makes meaningful (:func:`md_summary`) and its speed.

    Parameters
    ----------
    atoms : ase.Atoms
        Modified in place (positions, velocities; the cell for NPT).
    calculator : ase Calculator
    ensemble : {"nve", "nvt", "npt"}
    temperature : float
        Initial Maxwell–Boltzmann temperature (K), and the bath temperature for NVT/NPT.
    steps : int
    timestep : float
        fs.
    friction : float
        Langevin friction (1/fs).
    pressure : float
        NPT pressure (GPa).
    seed : int
        Seeds the initial velocities and the Langevin noise.
    trajectory : str, optional
        extxyz file of the frames at step 0 and every ``interval`` steps,
        appended as the run goes: after every frame it is a valid trajectory.
    interval : int
    progress : bool
        tqdm bar over the steps, with the temperature and the frames written.

    Returns
    -------
    dict
        ``steps``, ``atoms``, ``ensemble``, ``timestep_fs``,
        ``atom_steps_per_second``, ``final_temperature_k``, ``frames_written``
        and :func:`md_summary`'s (over every step, step 0 included): the
        energy drift for NVE only.

    Raises
    ------
    MDInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), with the step and the frames
        kept in ``trajectory``.

    Examples
    --------
    >>> from ase.calculators.emt import EMT
    >>> from ase.build import bulk
    >>> r = run_md(bulk("Cu", cubic=True) * (2, 2, 2), EMT(), steps=5, timestep=1.0)
    >>> r["steps"], r["atoms"], "energy_drift_mev_per_atom_per_ps" in r
    (5, 32, True)
    >>> r = run_md(bulk("Cu", cubic=True) * (2, 2, 2), EMT(), ensemble="nvt", steps=5)
    >>> "energy_drift_mev_per_atom_per_ps" in r, r["mean_temperature_k"] > 0
    (False, True)
    """
    from ase import units
    from tqdm.auto import tqdm

    from ..outputs import FrameAppender

    _check(ensemble, steps, timestep, temperature, interval, friction, pressure, len(atoms))
    dyn = start_dynamics(atoms, calculator, ensemble=ensemble, temperature=temperature, timestep=timestep,
                         friction=friction, pressure=pressure, seed=seed)
    n = len(atoms)
    series = {"times": [], "totals": [], "temperatures": [], "volumes": [], "pressures": []}

    def record():
        series["times"].append(dyn.get_time() / (1000 * units.fs))  # ps
        series["totals"].append(atoms.get_potential_energy() / n + atoms.get_kinetic_energy() / n)
        series["temperatures"].append(atoms.get_temperature())
        hot = max(10 * temperature, 10 * series["temperatures"][0], 1000.0)
        if not np.isfinite(series["totals"][-1]) or not series["temperatures"][-1] < hot:
            raise MDUnstable(dyn.nsteps, writer.count if writer else 0, trajectory,
                             f"temperature {series['temperatures'][-1]:.3g} K" if np.isfinite(series["totals"][-1])
                             else "a non-finite energy")
        if ensemble == "npt":
            series["volumes"].append(atoms.get_volume())
            series["pressures"].append(-np.mean(atoms.get_stress(include_ideal_gas=True)[:3]) / units.GPa)

    try:
        atoms.get_potential_energy()  # a structure the potential cannot take fails here, before any output
    except KeyboardInterrupt:
        raise MDInterrupted(0, 0, trajectory) from None
    writer = FrameAppender(trajectory) if trajectory else None
    bar = tqdm(total=steps, disable=not progress, desc=f"md {ensemble}", unit="step")

    def write():
        frame = atoms.copy()
        frame.calc = None
        writer.append(frame)

    def advance():
        bar.update(dyn.nsteps - bar.n)
        if dyn.nsteps % interval == 0:
            bar.set_postfix_str(f"T {series['temperatures'][-1]:.0f} K, {writer.count if writer else 0} frames",
                                refresh=False)  # shown at the bar's own pace

    dyn.attach(record, interval=1)
    if writer:
        dyn.attach(write, interval=interval)
    dyn.attach(advance, interval=1)
    t0 = time.perf_counter()
    try:
        with np.errstate(all="ignore"):  # a run that leaves physics is reported as MDUnstable, not as warnings
            dyn.run(steps)
    except KeyboardInterrupt:
        raise MDInterrupted(dyn.nsteps, writer.count if writer else 0, trajectory) from None
    except MDUnstable:
        raise
    except InputError as exc:  # e.g. a collapsed cell in the neighbour list
        raise MDUnstable(dyn.nsteps, writer.count if writer else 0, trajectory, exc.message) from None
    finally:
        bar.close()
        if writer:
            writer.close()
    wall = time.perf_counter() - t0
    return {
        "steps": int(steps),
        "atoms": int(n),
        "ensemble": ensemble,
        "timestep_fs": float(timestep),
        **md_summary(ensemble, **series),
        "atom_steps_per_second": float(n * steps / wall),
        "final_temperature_k": float(atoms.get_temperature()),
        "frames_written": writer.count if writer else 0,
    }
