"""How many BLAS/OpenMP/torch threads to use: the cores that are free, not the cores that exist.

NumPy's BLAS, scikit-learn and torch start one thread per core. When another
job already keeps a core busy, those threads spin-wait for each other and a
2-core fit runs several times slower than on one thread
(``benchmarks/threads.py`` measures it). :func:`free_cores` reads the load of
the machine over a short interval from ``/proc/stat``, and
:func:`limit_threads` caps every thread pool (through threadpoolctl, and
torch's own) at that number, or at what the user asked for.

The command line does this before every command (``--threads N`` to choose);
the Python API leaves the pools alone unless :func:`limit_threads` is called.
Processes that share a machine as one job (torchrun's ``LOCAL_WORLD_SIZE``:
distributed training) share its threads too: :func:`per_process`.
"""

import os
import sys
import time

#: environment variables that thread pools read when they start
_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_limits = []  # keeps the threadpoolctl limit alive for the process
_measured = []


def usable_cores():
    """Cores this process may run on (its CPU affinity), else all cores."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_times():
    """``{cpu id: (busy, total)}`` jiffies from ``/proc/stat``, or None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = [line.split() for line in handle if line.startswith("cpu") and line[3:4].isdigit()]
    except OSError:
        return None
    out = {}
    for fields in lines:
        values = [int(v) for v in fields[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        out[int(fields[0][3:])] = (sum(values) - idle, sum(values))
    return out


def local_processes():
    """Processes of this job on this machine: torchrun's ``LOCAL_WORLD_SIZE`` (1 for a process started alone)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def per_process(n):
    """This process's part of ``n`` threads for the job: ``max(1, n // local_processes())``.

    Examples
    --------
    >>> per_process(4) == max(1, 4 // local_processes())
    True
    """
    return max(1, int(n) // local_processes())


def free_cores(interval=0.1):
    """The usable cores not kept busy by other processes, measured over ``interval`` seconds (at least 1).

    Examples
    --------
    >>> 1 <= free_cores(0.05) <= usable_cores()
    True
    """
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        allowed = None
    first = _cpu_times()
    if not first:
        return usable_cores()
    time.sleep(interval)
    second = _cpu_times() or first
    busy = 0.0
    cpus = [c for c in first if allowed is None or c in allowed]
    for cpu in cpus:
        (b1, t1), (b2, t2) = first[cpu], second.get(cpu, first[cpu])
        if t2 > t1:
            busy += (b2 - b1) / (t2 - t1)
    return max(1, int(round(len(cpus) - busy)))


def limit_threads(n=None):
    """Cap BLAS, OpenMP and torch thread pools at ``n`` threads (default: :func:`free_cores`); returns the cap.

    Pools already started are limited through threadpoolctl and
    ``torch.set_num_threads``; pools started later read the environment.
    ``n`` is for the whole job: a process of several on this machine
    (:func:`local_processes`) takes its part (:func:`per_process`).

    Examples
    --------
    >>> limit_threads(1)
    1
    """
    if n is None:
        n = _measured[0] if _measured else free_cores()
        _measured[:] = [n]  # one measurement per process: later commands in it reuse it
    n = per_process(n)
    for name in _POOL_VARIABLES:
        os.environ[name] = str(n)
    from threadpoolctl import threadpool_limits

    _limits[:] = [threadpool_limits(limits=n)]
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n
