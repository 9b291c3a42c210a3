"""One executor for every data-parallel step: in this process, on local processes, or on a Dask cluster.

:class:`Executor` maps a function over a list of items and returns the
results in input order, whichever way it runs:

* serially in this process (``n_jobs=1``, the default);
* on ``n_jobs`` local worker processes (joblib's loky pool; ``-1``: every core);
* on a Dask cluster (``dask.distributed``), chosen by ``scheduler="tcp://HOST:8786"``,
  by a ``distributed.Client``, by :func:`use_scheduler` around a block, or by
  the ``ML4MS_SCHEDULER`` environment variable. The command line's
  ``--scheduler`` sets it for one command.

Every task limits the BLAS, OpenMP and torch thread pools of the process it
runs in (threadpoolctl and ``torch.set_num_threads``, through
:func:`ml4ms.threads.limit_threads`), so that workers x threads never exceeds
the cores: a local process gets ``cores // n_workers`` threads; a Dask task
gets one thread per worker slot (a worker started with ``--nthreads 4`` on 4
cores runs 4 tasks of one thread each), as Dask's own workers assume.

A task that is already running inside a worker never starts another pool:
nested maps run serially there. Dask is imported only when a cluster is used.

Work whose calls end at different times, and that must be watched while it
runs (a time limit per call, a progress bar over long calls), starts one
task per call with :meth:`Executor.submit` and waits with
:func:`wait_first`; a :class:`Job` gives the call's result.

Examples
--------
>>> map_ordered(abs, [-2, 1, -3])
[2, 1, 3]
>>> with Executor(n_jobs=1) as ex:
...     list(ex.imap(len, ["ab", "c"]))
[2, 1]
"""

import contextlib
import itertools
import os
import re
import threading
import time

from .errors import InputError, Ml4msError

#: environment variable naming a Dask scheduler for every data-parallel step
SCHEDULER_VARIABLE = "ML4MS_SCHEDULER"
#: seconds to wait for a scheduler to answer
CONNECT_TIMEOUT = 10
_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/:]+(:\d{1,5})?$")
_clients = {}  # address -> distributed.Client, reused by later maps in this process
_chosen = []  # stack of schedulers set by use_scheduler
_task_state = threading.local()  # .running: this thread runs a task for a pool (Dask workers may be threads)


class ClusterError(Ml4msError):
    """The Dask scheduler went away in the middle of a job (a one-line message)."""


def check_address(address):
    """``address`` if it is a scheduler address (``tcp://HOST:PORT``), else a one-line :class:`InputError`.

    Examples
    --------
    >>> check_address("tcp://127.0.0.1:8786")
    'tcp://127.0.0.1:8786'
    >>> check_address("localhost")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: --scheduler: 'localhost' is not a Dask scheduler address; give tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786
    """
    text = str(address).strip()
    if not _ADDRESS.match(text):
        raise InputError(f"--scheduler: '{address}' is not a Dask scheduler address",
                         hint="give tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")
    return text


def in_task():
    """Whether this thread runs a task of a pool (then maps inside it run serially).

    Examples
    --------
    >>> in_task()
    False
    """
    return bool(getattr(_task_state, "running", False))


def chosen_scheduler(scheduler=None):
    """The scheduler to use: ``scheduler``, else :func:`use_scheduler`'s, else ``$ML4MS_SCHEDULER``, else None.

    Inside a running task it is always None (no pool inside a pool).

    Examples
    --------
    >>> chosen_scheduler() is None or "ML4MS_SCHEDULER" in os.environ
    True
    """
    if in_task():
        return None
    if scheduler is None and _chosen:
        scheduler = _chosen[-1]
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_VARIABLE) or None
    if scheduler is None or not isinstance(scheduler, str):
        return scheduler
    return check_address(scheduler)


@contextlib.contextmanager
def use_scheduler(scheduler):
    """Send the maps of the block to ``scheduler`` (an address or a ``distributed.Client``; None: no change).

    Examples
    --------
    >>> with use_scheduler(None):
    ...     map_ordered(abs, [-1])
    [1]
    """
    if scheduler is not None and isinstance(scheduler, str):
        scheduler = check_address(scheduler)
    _chosen.append(scheduler)
    try:
        yield
    finally:
        _chosen.pop()


def connect(address):
    """A ``distributed.Client`` of the scheduler at ``address`` (reused while it is alive).

    Raises a one-line :class:`InputError` when no scheduler answers there.
    """
    client = _clients.get(address)
    if client is not None and client.status == "running":
        return client
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs Dask, which is not installed",
                         hint="pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})",
                         hint="start one with `dask scheduler` or drop --scheduler") from None
    _clients[address] = client
    return client


def close_clients():
    """Close the clients :func:`connect` opened (the scheduler and its workers keep running)."""
    for client in list(_clients.values()):
        with contextlib.suppress(Exception):
            client.close()
    _clients.clear()


def threads_per_task(n_workers, cores=None):
    """Threads each of ``n_workers`` tasks may use on ``cores`` cores (default: the usable cores); at least 1.

    Examples
    --------
    >>> threads_per_task(2, cores=8), threads_per_task(16, cores=2)
    (4, 1)
    """
    from .threads import usable_cores

    return max(1, int(cores or usable_cores()) // max(1, int(n_workers)))


class _Task:
    """``func`` over a chunk of items, run with the process's thread pools capped at ``threads``."""

    def __init__(self, func, threads):
        self.func = func
        self.threads = threads

    def __call__(self, chunk):
        from .threads import limit_threads

        if _limited.get(os.getpid()) != self.threads:
            limit_threads(self.threads)
            if os.environ.get("MALLOC_TRIM_THRESHOLD_"):
                restore_large_allocations()
            _limited[os.getpid()] = self.threads
        before = in_task()
        _task_state.running = True
        try:
            return [self.func(item) for item in chunk]
        finally:
            _task_state.running = before

    def one(self, item):
        """``func(item)``, as a task of its own (:meth:`Executor.submit`)."""
        return self([item])[0]


_limited = {}  # pid -> threads already set in that process
#: bytes: arrays up to this size come from the heap and are reused, not mapped afresh (glibc's own upper limit)
HEAP_ARRAYS = 32 * 1024 * 1024


def restore_large_allocations():
    """Let this process reuse the memory of large temporary arrays again (glibc only; elsewhere nothing).

    Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
    also switches off glibc's adaptive mmap threshold: every array above 128 kB
    is then mapped from the kernel and zeroed afresh, and numpy-heavy descriptors
    (SOAP: arrays of a few MB per batch) ran 1.9x slower in a Dask worker than in
    a plain process (``benchmarks/scaling.py``). This sets the mmap threshold to
    :data:`HEAP_ARRAYS` and the trim threshold to twice that, where the adaptive
    rule would take them; memory above that is still given back. Returns whether
    it could.

    Examples
    --------
    >>> restore_large_allocations() in (True, False)
    True
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, HEAP_ARRAYS)) and bool(mallopt(m_trim_threshold, 2 * HEAP_ARRAYS))


def chunks(items, size):
    """Consecutive lists of at most ``size`` items.

    Examples
    --------
    >>> chunks([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    """
    size = max(1, int(size))
    return [items[k:k + size] for k in range(0, len(items), size)]


def _batches(items, size):
    """Consecutive lists of at most ``size`` items of an iterable, read only as each list is asked for."""
    items, size = iter(items), max(1, int(size))
    while True:
        part = list(itertools.islice(items, size))
        if not part:
            return
        yield part


def _lost(address, exc):
    return ClusterError(f"lost the Dask scheduler at {address} in the middle of the job ({type(exc).__name__}); "
                        "finished chunks are kept: start the scheduler again and rerun the command")


#: distributed's errors that mean the scheduler is gone (by name: distributed is imported only on a cluster)
_LOST = ("CommClosedError", "FutureCancelledError", "StreamClosedError")


def _dask_submit(client, address, *args):
    """``client.submit(*args)`` (not pure); a gone scheduler raises :class:`ClusterError`."""
    from concurrent.futures import CancelledError

    try:
        return client.submit(*args, pure=False)
    except Exception as exc:
        if isinstance(exc, (CancelledError, OSError, TimeoutError)) or type(exc).__name__ in _LOST:
            raise _lost(address, exc) from None
        raise


def _dask_result(future, address):
    """``future.result()`` of a Dask task: the task's own error (any type, ``KilledWorker`` too) as it is, and
    :class:`ClusterError` when the scheduler is gone."""
    try:
        return future.result()
    except Exception as exc:
        if future.status == "error":
            raise
        raise _lost(address, exc) from None


class Job:
    """One call started by :meth:`Executor.submit`: ``done()``, ``result()`` (the call's value or its error),
    ``cancel()``.

    On a cluster a gone scheduler makes ``result()`` raise :class:`ClusterError`, and a call whose worker died
    more often than Dask allows raises ``distributed``'s ``KilledWorker``.

    Examples
    --------
    >>> job = Executor().submit(abs, -3)
    >>> job.done(), job.result()
    (True, 3)
    """

    def __init__(self, future, address=None):
        self.future = future
        self.address = address

    def done(self):
        """Whether the call has ended (with a value or an error)."""
        return self.future.done()

    def result(self):
        """The call's value; its error is raised here."""
        if self.address is None:
            return self.future.result()
        return _dask_result(self.future, self.address)

    def cancel(self):
        """Drop the call: not started, it never starts; a running one is no longer waited for."""
        self.future.cancel()

    def stop(self):
        """Drop the call, and on a cluster restart the worker that runs it.

        A Python call cannot be stopped inside its thread; a new worker process ends it (Dask runs that
        worker's other tasks again elsewhere). A call on a local process runs on (:meth:`Executor.stop` ends
        the pool).
        """
        if self.address is None:
            self.cancel()
            return
        client, key = self.future.client, self.future.key

        def running():
            # the workers whose threads run it now (asked of the workers: the scheduler's view can lag)
            with contextlib.suppress(Exception):  # the scheduler may be gone: then there is nothing to restart
                return [w for w, stacks in client.call_stack(keys=[key]).items() if stacks]
            return []

        workers = running()
        self.cancel()
        # restart only once the scheduler has dropped the task: else it gives it to another worker
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while workers and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not client.run_on_scheduler(_scheduler_has, key):
                    break
            time.sleep(0.05)
        # a restarted worker's tasks go to another worker: one that the cancellation has not reached yet may
        # start the call again there, so look again after each restart
        for _ in range(3):
            if not workers:
                return
            with contextlib.suppress(Exception):  # a worker without a nanny cannot be restarted: it runs on
                _restart(client, workers)
            workers = running()


def _restart(client, workers):
    """Restart ``workers`` (their nannies start new processes) without waiting for them to come back: the job
    goes on with the others, and a worker that takes long to return does not hold it up."""
    try:
        client.sync(client.scheduler.restart_workers, workers=list(workers), timeout=CONNECT_TIMEOUT * 3,
                    wait_for_workers=False, on_error="return", stimulus_id=f"ml4ms-stop-{time.time()}")
    except TypeError:  # a scheduler without that option: the client's call, which waits
        client.restart_workers(workers, timeout=CONNECT_TIMEOUT * 3, raise_for_error=False)


def _scheduler_has(key, dask_scheduler=None):
    """Whether the scheduler still holds the task ``key`` (run on the scheduler)."""
    return key in dask_scheduler.tasks


def wait_first(jobs, timeout=None):
    """The :class:`Job` objects of ``jobs`` that have ended, waiting until one has or ``timeout`` seconds have passed.

    Examples
    --------
    >>> jobs = [Executor().submit(len, "ab")]
    >>> [job.result() for job in wait_first(jobs, timeout=1)]
    [2]
    """
    from concurrent.futures import FIRST_COMPLETED, Future, wait

    jobs = list(jobs)
    futures = [job.future for job in jobs]
    if all(isinstance(f, Future) for f in futures):
        wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
    elif not any(job.done() for job in jobs):
        import distributed

        with futures[0].client.as_current(), contextlib.suppress(TimeoutError):  # TimeoutError: nothing ended
            distributed.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
    return [job for job in jobs if job.done()]


class Executor:
    """Maps in input order: serial, on local processes, or on a Dask cluster.

    Parameters
    ----------
    n_jobs : int, default 1
        Local worker processes when no scheduler is chosen (1: this process;
        -1: every core). Ignored on a cluster.
    scheduler : str or distributed.Client, optional
        ``tcp://HOST:PORT`` of a Dask scheduler, or a client. Default:
        :func:`chosen_scheduler` (``use_scheduler``, then ``$ML4MS_SCHEDULER``).
    chunk : int, optional
        Items per task (default: about four tasks per worker, at most 256).

    Examples
    --------
    >>> Executor(n_jobs=1).map(str.upper, ["a", "b"])
    ['A', 'B']
    >>> Executor(n_jobs=1).kind
    'serial'
    """

    def __init__(self, n_jobs=1, scheduler=None, chunk=None):
        self.scheduler = chosen_scheduler(scheduler)
        self.n_jobs = 1 if in_task() else int(n_jobs or 1)
        self.chunk = chunk
        self._pool = None  # the local pool of submit, which stop ends

    @property
    def kind(self):
        """``"dask"``, ``"processes"`` or ``"serial"``."""
        if self.scheduler is not None:
            return "dask"
        return "serial" if self._local_workers() == 1 else "processes"

    @property
    def address(self):
        """The scheduler's address (None when it runs locally)."""
        if self.scheduler is None or isinstance(self.scheduler, str):
            return self.scheduler
        return getattr(getattr(self.scheduler, "scheduler", None), "address", None)

    def _local_workers(self):
        from joblib import effective_n_jobs

        return max(1, effective_n_jobs(self.n_jobs))

    def client(self):
        """The ``distributed.Client`` of the chosen scheduler (None when it runs locally)."""
        if self.scheduler is None:
            return None
        return connect(self.scheduler) if isinstance(self.scheduler, str) else self.scheduler

    def workers(self):
        """How many tasks run at once: worker threads of the cluster, local processes, or 1."""
        if self.scheduler is None:
            return self._local_workers()
        return max(1, sum(self.client().nthreads().values()))

    def _chunk_size(self, n):
        if self.chunk:
            return int(self.chunk)
        return max(1, min(256, n // (4 * self.workers()) or 1))

    def map(self, func, items, progress=False, desc=None, serial_below=0):
        """``[func(x) for x in items]``, computed by the pool; ``serial_below``: fewer items run in this process.

        Examples
        --------
        >>> Executor().map(len, ["abc", ""])
        [3, 0]
        """
        return list(self.imap(func, items, progress=progress, desc=desc, serial_below=serial_below))

    def imap(self, func, items, progress=False, desc=None, serial_below=0, ahead=None, total=None):
        """Yield ``func(x)`` for every item, in input order, as the pool finishes them.

        ``items`` may be a generator: it is read as the pool takes work, so
        only the items in flight are in memory (give ``total``, the number of
        items, for the progress bar and the task size). ``ahead``: at most this
        many chunks are submitted and not yet yielded (default: two per
        worker), so memory stays bounded by the chunk size.
        """
        from tqdm.auto import tqdm

        if total is None:
            items = list(items)
            total = len(items)
        bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
        try:
            kind = self.kind  # a property that asks joblib (or the cluster): once
            if kind == "serial" or total < max(2, serial_below):
                for item in items:
                    yield func(item)
                    bar.update(1)
                return
            threads = 1 if kind == "dask" else threads_per_task(self._local_workers())
            task = _Task(func, threads)
            parts = _batches(items, self._chunk_size(total))
            run = self._dask_chunks if kind == "dask" else self._local_chunks
            for part in run(task, parts, ahead):
                yield from part
                bar.update(len(part))
        finally:
            bar.close()

    def submit(self, func, item):
        """Start ``func(item)`` as a task of its own; a :class:`Job` (wait with :func:`wait_first`).

        Serially the call runs here, at once (its error is kept in the job); on local processes it runs in
        joblib's loky pool; on a cluster as one Dask task. The task caps its threads as :meth:`map`'s do.

        Examples
        --------
        >>> Executor().submit(str.upper, "a").result()
        'A'
        """
        from concurrent.futures import Future

        kind = self.kind
        if kind == "serial":
            future = Future()
            try:
                future.set_result(func(item))
            except Exception as exc:
                future.set_exception(exc)
            return Job(future)
        workers = self._local_workers() if kind == "processes" else None
        task = _Task(func, 1 if kind == "dask" else threads_per_task(workers))
        if kind == "dask":
            address = self.address or "the cluster"
            return Job(_dask_submit(self.client(), address, task.one, item), address)
        from joblib.executor import get_memmapping_executor  # joblib's own pool: the one its Parallel reuses

        self._pool = get_memmapping_executor(workers)
        return Job(self._pool.submit(task.one, item))

    def stop(self):
        """End the local worker processes that :meth:`submit` started, at once (their running calls are lost).

        A cluster's workers go on: a call that is running there ends on its own (a cancelled :class:`Job` is
        no longer waited for).
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, kill_workers=True)

    def _local_chunks(self, task, parts, ahead):
        from joblib import Parallel, delayed

        pool = Parallel(n_jobs=self.n_jobs, return_as="generator")
        yield from pool(delayed(task)(part) for part in parts)

    def _dask_chunks(self, task, parts, ahead):
        from collections import deque

        client = self.client()
        ahead = int(ahead or 2 * self.workers())
        address = self.address
        # the function reaches the workers once, as a task the scheduler can recompute if its worker dies
        shared = _dask_submit(client, address, _identity, task)
        waiting = deque()
        for part in parts:
            waiting.append(_dask_submit(client, address, _run_shared, shared, part))
            if len(waiting) >= ahead:
                yield _dask_result(waiting.popleft(), address)
        while waiting:
            yield _dask_result(waiting.popleft(), address)

    def close(self):
        """Nothing to release: clients are shared (:func:`close_clients`), loky's pool is reused."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _identity(value):
    return value


def _run_shared(task, part):
    return task(part)


def map_ordered(func, items, n_jobs=1, scheduler=None, progress=False, desc=None, chunk=None, serial_below=0):
    """``[func(x) for x in items]`` on the chosen executor (:class:`Executor`), in input order.

    Examples
    --------
    >>> map_ordered(len, ["a", "bc"], n_jobs=1)
    [1, 2]
    """
    return Executor(n_jobs=n_jobs, scheduler=scheduler, chunk=chunk).map(
        func, items, progress=progress, desc=desc, serial_below=serial_below)
