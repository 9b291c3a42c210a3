"""Molecular dynamics with ASE's integrators on a potential.

NVE: velocity Verlet. NVT: Langevin. NPT: isotropic MTK barostat with a
Nosé–Hoover chain thermostat (``ase.md.nose_hoover_chain.IsotropicMTKNPT``).
The energy drift is the slope of a least-squares line through the total
energy per atom against time (meV/atom/ps); throughput is atom-steps per
second of wall time (force calls included).
"""

import time

import numpy as np

from ..errors import InputError

ENSEMBLES = ("nve", "nvt", "npt")


def run_md(atoms, calculator, *, ensemble="nve", temperature=300.0, steps=1000, timestep=1.0, friction=0.01,
           pressure=0.0, seed=0, trajectory=None, interval=10):
    """Run MD and report energy conservation and speed.

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
        extxyz file written every ``interval`` steps.

    Returns
    -------
    dict
        ``steps``, ``atoms``, ``energy_drift_mev_per_atom_per_ps``,
        ``energy_fluctuation_mev_per_atom`` (std of the total energy per atom),
        ``atom_steps_per_second``, ``final_temperature_k``.

    Examples
    --------
    >>> from ase.calculators.emt import EMT
    >>> from ase.build import bulk
    >>> r = run_md(bulk("Cu", cubic=True) * (2, 2, 2), EMT(), steps=5, timestep=1.0)
    >>> r["steps"], r["atoms"]
    (5, 32)
    """
    from ase import units
    from ase.md import velocitydistribution as vd

    if ensemble not in ENSEMBLES:
        raise InputError(f"unknown ensemble '{ensemble}'", hint=f"use one of {', '.join(ENSEMBLES)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps!r}")
    if not timestep > 0:
        raise InputError(f"timestep must be positive (fs), got {timestep!r}")
    if not temperature >= 0:
        raise InputError(f"temperature must be >= 0 K, got {temperature!r}")
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=temperature, rng=rng)
    vd.Stationary(atoms)
    dt = timestep * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        dyn = VelocityVerlet(atoms, timestep=dt)
    elif ensemble == "nvt":
        from ase.md.langevin import Langevin

        dyn = Langevin(atoms, timestep=dt, temperature_K=temperature, friction=friction / units.fs, rng=rng,
                       fixcm=False)
    else:
        if not all(atoms.pbc):
            raise InputError("NPT needs a periodic cell")
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        dyn = IsotropicMTKNPT(atoms, timestep=dt, temperature_K=temperature, pressure_au=pressure * units.GPa,
                              tdamp=100 * dt, pdamp=1000 * dt)
    n = len(atoms)
    times, totals = [], []

    def record():
        times.append(dyn.get_time() / (1000 * units.fs))  # ps
        totals.append(atoms.get_potential_energy() / n + atoms.get_kinetic_energy() / n)

    writer = None
    if trajectory:
        frames = []

        def writer():
            frames.append(atoms.copy())
            frames[-1].calc = None

    dyn.attach(record, interval=1)
    if writer:
        dyn.attach(writer, interval=interval)
    t0 = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t0
    if trajectory:
        from ..outputs import write_structures

        write_structures(trajectory, frames)
    times, totals = np.asarray(times), np.asarray(totals)
    slope = np.polyfit(times, totals, 1)[0] if len(times) > 1 else 0.0
    return {
        "steps": int(steps),
        "atoms": int(n),
        "ensemble": ensemble,
        "timestep_fs": float(timestep),
        "energy_drift_mev_per_atom_per_ps": float(1000 * slope),
        "energy_fluctuation_mev_per_atom": float(1000 * np.std(totals)),
        "atom_steps_per_second": float(n * steps / wall),
        "final_temperature_k": float(atoms.get_temperature()),
    }
