"""Oracles: what gives a structure its label. An ASE calculator by import path, or a labelled pool replayed.

:class:`CalculatorOracle` runs an ASE calculator named ``module:Class``
(``ase.calculators.emt:EMT`` for examples and tests; GPAW, VASP or Quantum
ESPRESSO through their ASE calculators), built with the keyword arguments of
the config. :class:`ReplayOracle` reads the labels of a labelled pool file
instead of computing them, for benchmarks.

**Import paths run code.** Importing a module runs it, so ml4ms imports only
the one calculator path that the user wrote in the ``[oracle]`` table of their
own config (:func:`load_calculator`); a config is the user's own set-up, like
a script, not a file to take from a stranger. The path is checked before any
work: the module imports, the attribute exists and is an ASE calculator class,
and the parameters fit its constructor.

:class:`OracleRunner` runs the calls in worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`, the "spawn" context), each
call in a fresh temporary working folder, with a per-call time limit. A call
that raises, runs past the limit or returns NaN ends as a failed
:class:`Outcome` with its reason and is tried again, up to the number of
attempts given; it never stops the other calls. A call past its time limit
ends its worker (the pool is restarted; calls that were running beside it
start again without counting as a failure).

On a Dask cluster (:mod:`ml4ms.parallel`: ``--scheduler`` or
``$ML4MS_SCHEDULER``) every call is a task of its own, as many at once as the
cluster has worker threads (``workers`` is for local processes), with the
same outcomes: a call that raises or returns NaN fails with its reason, a
call past its time limit fails and its worker is restarted (Dask runs the
tasks that were beside it again), and a call whose worker died fails as a
dead worker's does here. A scheduler that goes away stops the run with one
line; the labels written so far are kept.

Examples
--------
>>> from ase.build import bulk
>>> oracle = CalculatorOracle("ase.calculators.emt:EMT", target="energy_per_atom")
>>> with OracleRunner(oracle, workers=1, timeout=60) as runner:
...     outcomes = list(runner.run([(0, bulk("Cu", a=3.6), 1, 1)]))
>>> outcomes[0].ok, round(outcomes[0].value, 4)
(True, -0.0067)
"""

import contextlib
import importlib
import inspect
import math
import os
import tempfile
import time
from collections import deque, namedtuple
from functools import partial

import numpy as np

from ..errors import InputError

#: targets a calculator oracle can give: its energy, or the energy per atom
CALCULATOR_TARGETS = ("energy", "energy_per_atom")

Outcome = namedtuple("Outcome", "key ok value results reason seconds attempt")
Outcome.__doc__ = """How one oracle call ended.

``key``: the caller's name for the structure (the candidate's index);
``ok``: labelled; ``value``: the target (float, or None); ``results``: the
ASE properties computed (``energy``, ``forces``; empty on a failure);
``reason``: why it failed (one line, or None); ``seconds``: wall time;
``attempt``: which attempt this was (1 the first)."""


def load_calculator(path):
    """The ASE calculator class named ``module:Class``; :class:`InputError` of one line otherwise.

    Only call it with a path the user wrote in their own config: importing a
    module runs its code.

    Examples
    --------
    >>> load_calculator("ase.calculators.emt:EMT").__name__
    'EMT'
    >>> load_calculator("ase.calculators.emt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: calculator 'ase.calculators.emt' is not MODULE:CLASS; write it as MODULE:CLASS, ...
    """
    from ase.calculators.calculator import BaseCalculator

    example = "e.g. ase.calculators.emt:EMT"
    module_name, sep, name = str(path).partition(":")
    if not sep or not module_name or not name.isidentifier():
        raise InputError(f"calculator '{path}' is not MODULE:CLASS", hint=f"write it as MODULE:CLASS, {example}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InputError(f"calculator '{path}': no module named '{exc.name}'",
                         hint=f"check the spelling, or install the package; {example}") from None
    except Exception as exc:  # the module exists but fails on import
        raise InputError(f"calculator '{path}': importing {module_name} failed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})", hint="fix the module or its installation") from None
    cls = getattr(module, name, None)
    if cls is None:
        have = sorted(k for k, v in vars(module).items()
                      if isinstance(v, type) and issubclass(v, BaseCalculator) and not k.startswith("_"))
        raise InputError(f"calculator '{path}': {module_name} has no '{name}'",
                         hint=f"calculators there: {', '.join(have) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, BaseCalculator)):
        raise InputError(f"calculator '{path}' is not an ASE calculator class",
                         hint=f"name a subclass of ase.calculators.calculator.BaseCalculator, {example}")
    return cls


def check_parameters(cls, parameters, path):
    """Refuse keyword arguments that the calculator's constructor cannot take (unless it takes ``**kwargs``).

    Examples
    --------
    >>> from ase.calculators.lj import LennardJones
    >>> check_parameters(LennardJones, {"sigma": 2.0}, "ase.calculators.lj:LennardJones")
    """
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    try:
        signature.bind_partial(**parameters)
    except TypeError as exc:
        raise InputError(f"parameters of '{path}': {exc}",
                         hint=f"give only keyword arguments of {cls.__name__}: "
                              f"{', '.join(p for p in signature.parameters if p not in ('self', 'kwargs'))}") \
            from None


class CalculatorOracle:
    """Label a structure with an ASE calculator given by import path.

    Parameters
    ----------
    calculator : str
        ``module:Class`` of an ASE calculator, written by the user in their own
        config (imported: see the module's note).
    parameters : dict, optional
        Keyword arguments of the calculator.
    target : {"energy", "energy_per_atom"}
        The label.

    Examples
    --------
    >>> from ase.build import bulk
    >>> oracle = CalculatorOracle("ase.calculators.emt:EMT", target="energy")
    >>> results, value = oracle.compute(bulk("Cu", a=3.6))
    >>> sorted(results), round(value, 4)
    (['energy', 'forces'], -0.0067)
    """

    in_process = False

    def __init__(self, calculator, parameters=None, target="energy_per_atom"):
        self.calculator = calculator
        self.parameters = dict(parameters or {})
        self.target = target
        if target not in CALCULATOR_TARGETS:
            raise InputError(f"a calculator oracle gives {' or '.join(CALCULATOR_TARGETS)}, not '{target}'",
                             hint="choose one of them as the target")
        check_parameters(load_calculator(calculator), self.parameters, calculator)

    @property
    def name(self):
        return self.calculator

    @property
    def settings(self):
        """What the store keeps with every label: the calculator, its parameters and the target."""
        return {"calculator": self.calculator, "parameters": self.parameters, "target": self.target}

    def compute(self, atoms, key=None):
        """``(results, value)``: the calculator's energy (and forces, where it has them), and the target."""
        cls = load_calculator(self.calculator)
        atoms = atoms.copy()
        atoms.calc = cls(**self.parameters)
        energy = float(atoms.get_potential_energy())
        results = {"energy": energy}
        if "forces" in getattr(cls, "implemented_properties", ()):
            results["forces"] = np.asarray(atoms.get_forces(), dtype=float)
        value = energy / len(atoms) if self.target == "energy_per_atom" else energy
        return results, value


class ReplayOracle:
    """Read the labels of a labelled pool instead of computing them (benchmarks).

    Parameters
    ----------
    records : list of ase.Atoms
        The labelled pool, in the order of the candidates.
    target : str
        The label: a key of ``info``, an array or the calculator's results, or
        ``energy_per_atom`` (:func:`ml4ms.structures.get_property`).
    source : str, optional
        Where the pool was read from (for the settings and messages).

    Examples
    --------
    >>> from ase import Atoms
    >>> oracle = ReplayOracle([Atoms("H", info={"gap": 1.5})], "gap", source="pool.extxyz")
    >>> oracle.compute(None, key=0)
    ({}, 1.5)
    """

    in_process = True

    def __init__(self, records, target, source=None):
        self.records = records
        self.target = target
        self.source = source

    @property
    def name(self):
        return f"replay:{os.path.basename(self.source or 'pool')}"

    @property
    def settings(self):
        return {"replay": self.source, "target": self.target}

    def compute(self, atoms, key=None):
        """``(results, value)`` of candidate ``key``: the pool's energy and forces where it has them, the target."""
        from ..structures import get_property

        record = self.records[key]
        calc = record.calc
        results = {k: v for k, v in (getattr(calc, "results", None) or {}).items() if k in ("energy", "forces")}
        value = get_property(record, self.target)
        if value is None:
            raise KeyError(f"the pool has no '{self.target}' for this structure")
        return results, float(value)


def _watch_parent():
    """Worker initializer: end this worker when the process that started it dies (a SIGKILLed loop).

    Ctrl-C is the loop's to handle (it ends the workers), so a worker ignores it.
    """
    import multiprocessing
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    parent = multiprocessing.parent_process()
    if parent is None:  # pragma: no cover
        return

    def watch():
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _call(oracle, atoms, key):
    """One oracle call, in a fresh temporary working folder (calculators that write files do not collide)."""
    start = time.perf_counter()
    if oracle.in_process:
        results, value = oracle.compute(atoms, key)
        return results, value, time.perf_counter() - start
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ml4ms-oracle-") as scratch:
        os.chdir(scratch)
        try:
            results, value = oracle.compute(atoms, key)
        finally:
            os.chdir(here)
    return results, value, time.perf_counter() - start


def _call_task(oracle, item):
    """:func:`_call` of ``item = (atoms, key)``, as a task of the executor."""
    atoms, key = item
    return _call(oracle, atoms, key)


#: why a call failed when its worker process died
_DIED = "the worker process died (killed, out of memory, or crashed in native code)"


def _one_line(exc):
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def _not_finite(results, value):
    """Why a call's output is no label (NaN or inf in the target or a result), or None."""
    if value is None or not math.isfinite(value):
        return f"returned {value} as the target"
    for name, result in results.items():
        if not np.all(np.isfinite(np.asarray(result, dtype=float))):
            return f"returned NaN or inf in {name}"
    return None


class OracleRunner:
    """Run oracle calls in worker processes with a time limit per call; failures are outcomes, not errors.

    Parameters
    ----------
    oracle : CalculatorOracle or ReplayOracle
        A replay oracle is called in this process (a look-up needs no worker).
    workers : int, default 1
        Calls at once.
    timeout : float, optional
        Seconds a call may take (None: no limit).

    Use it as a context manager, so the workers end with the block.
    """

    def __init__(self, oracle, workers=1, timeout=None):
        self.oracle = oracle
        self.workers = int(workers)
        self.timeout = timeout
        self._pool = None
        self._jobs = {}  # on a cluster: job -> (key, atoms, attempt, attempts, started) of the running calls

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(kill=exc_type is not None)

    def close(self, kill=False):
        """End the workers (``kill``: at once, without waiting for running calls); on a cluster the running calls
        are dropped (``kill``: their workers restarted, so that nothing runs on)."""
        for job in self._jobs:
            if kill:
                job.stop()
            else:
                job.cancel()
        self._jobs = {}
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    process.kill()
        pool.shutdown(wait=not kill, cancel_futures=True)

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_watch_parent)
        return self._pool

    def _ended(self, key, attempt, output=None, error=None, seconds=0.0):
        if error is not None:
            return Outcome(key, False, None, {}, error, seconds, attempt)
        results, value, seconds = output
        reason = _not_finite(results, value)
        if reason:
            return Outcome(key, False, None, {}, reason, seconds, attempt)
        return Outcome(key, True, float(value), results, None, seconds, attempt)

    def run(self, tasks):
        """Label ``tasks``, yielding an :class:`Outcome` as each attempt ends.

        Parameters
        ----------
        tasks : iterable of (key, atoms, attempt, attempts)
            ``attempt`` is the number of this try (1 the first; more after
            failures recorded earlier), ``attempts`` the most allowed: a failed
            try is repeated while ``attempt < attempts``.

        Yields
        ------
        Outcome
            Every attempt, failed ones too, in the order they end.
        """
        from ..parallel import Executor

        pending = deque(tasks)
        executor = None if self.oracle.in_process else Executor()
        if executor is not None and executor.kind == "dask":
            yield from self._on_cluster(executor, pending)
            return
        if self.oracle.in_process:
            while pending:
                key, atoms, attempt, attempts = pending.popleft()
                start = time.perf_counter()
                try:
                    outcome = self._ended(key, attempt, output=_call(self.oracle, atoms, key))
                except Exception as exc:
                    outcome = self._ended(key, attempt, error=_one_line(exc), seconds=time.perf_counter() - start)
                yield outcome
                if not outcome.ok and attempt < attempts:
                    pending.append((key, atoms, attempt + 1, attempts))
            return
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        running = {}  # future -> (key, atoms, attempt, attempts, started)
        while pending or running:
            while pending and len(running) < self.workers:  # no more calls than workers: each starts at once
                key, atoms, attempt, attempts = pending.popleft()
                future = self._executor().submit(_call, self.oracle, atoms, key)
                running[future] = (key, atoms, attempt, attempts, time.monotonic())
            done, _ = wait(list(running), timeout=self._limit(running), return_when=FIRST_COMPLETED)
            ended = []
            for future in done:
                key, atoms, attempt, attempts, started = running.pop(future)
                seconds = time.monotonic() - started
                try:
                    outcome = self._ended(key, attempt, output=future.result())
                except BrokenProcessPool:
                    self.close(kill=True)
                    outcome = self._ended(key, attempt, error=_DIED, seconds=seconds)
                except Exception as exc:
                    outcome = self._ended(key, attempt, error=_one_line(exc), seconds=seconds)
                ended.append((outcome, atoms, attempts))
            late = self._late(running)
            now = time.monotonic()
            if late:  # a worker cannot be stopped in the middle of a call: end the pool, start the others again
                self.close(kill=True)
                for future, (key, atoms, attempt, attempts, started) in running.items():
                    if future in late:
                        ended.append((self._ended(key, attempt, error=f"timed out after {self.timeout:g} s",
                                                  seconds=now - started), atoms, attempts))
                    else:
                        pending.appendleft((key, atoms, attempt, attempts))
                running.clear()
            for outcome, atoms, attempts in ended:
                yield outcome
                if not outcome.ok and outcome.attempt < attempts:
                    pending.append((outcome.key, atoms, outcome.attempt + 1, attempts))

    def _late(self, running):
        """The calls of ``running`` (``{handle: (key, atoms, attempt, attempts, started)}``) past the time limit."""
        now = time.monotonic()
        return {handle for handle, task in running.items() if self.timeout and now - task[4] >= self.timeout}

    def _limit(self, running):
        """Seconds to wait for a call to end: until the earliest running call reaches the time limit."""
        if not self.timeout:
            return None
        first = min(task[4] for task in running.values())
        return max(0.0, first + self.timeout - time.monotonic()) + 0.01

    def _on_cluster(self, executor, pending):
        """:meth:`run` on a Dask cluster: one task per call, as many at once as it has worker threads."""
        from ..parallel import ClusterError, wait_first

        call = partial(_call_task, self.oracle)
        slots = executor.workers()
        running = self._jobs
        while pending or running:
            while pending and len(running) < slots:
                key, atoms, attempt, attempts = pending.popleft()
                running[executor.submit(call, (atoms, key))] = (key, atoms, attempt, attempts, time.monotonic())
            ended = []
            for job in wait_first(list(running), timeout=self._limit(running)):
                key, atoms, attempt, attempts, started = running.pop(job)
                seconds = time.monotonic() - started
                try:
                    outcome = self._ended(key, attempt, output=job.result())
                except ClusterError:
                    raise
                except Exception as exc:  # distributed's KilledWorker: the call's worker died, too often
                    reason = _DIED if type(exc).__name__ == "KilledWorker" else _one_line(exc)
                    outcome = self._ended(key, attempt, error=reason, seconds=seconds)
                ended.append((outcome, atoms, attempts))
            for job in self._late(running):  # a call cannot be stopped in its thread: its worker is restarted
                key, atoms, attempt, attempts, started = running.pop(job)
                job.stop()
                ended.append((self._ended(key, attempt, error=f"timed out after {self.timeout:g} s",
                                          seconds=time.monotonic() - started), atoms, attempts))
            for outcome, atoms, attempts in ended:
                yield outcome
                if not outcome.ok and outcome.attempt < attempts:
                    pending.append((outcome.key, atoms, outcome.attempt + 1, attempts))
