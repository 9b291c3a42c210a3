"""Chunked, resumable jobs: the chunks of the data through a task, each result kept as soon as it is done.

:func:`run_chunks` is the loop that ``ml4ms predict``, ``ml4ms screen``
(:mod:`ml4ms.screening`) and ``ml4ms featurize`` into a folder
(:mod:`ml4ms.shards`) share: the parts of the data
(:mod:`ml4ms.datasets.sources`) are cut into chunks, the chunks not finished
by an earlier run of the same job are sent one at a time to the executor
(:mod:`ml4ms.parallel`), whose process reads and computes each (a file's chunk
travels as where its records are: :class:`ReadThen`), and each result is handed
to ``save`` (which writes it atomically and records it in a state file) as
soon as it arrives. The process holds the chunks in flight only, never the
whole data.

A state file names the job by a fingerprint (:func:`fingerprint` of what makes
it the same job) and the finished chunks; :func:`read_state` gives them back
only to the same job.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "state.json")
>>> write_state(path, fingerprint(["job", 1]), {"0": {"n": 2}})
>>> read_state(path, fingerprint(["job", 1]))["done"]
{'0': {'n': 2}}
>>> read_state(path, fingerprint(["job", 2])) is None
True
"""

import hashlib
import json

#: changes when the files of a chunked job change meaning (older folders start over)
FORMAT = 2


def fingerprint(identity):
    """A hex digest of ``identity`` (anything JSON can write, sorted keys)."""
    text = json.dumps([FORMAT, identity], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_state(path, fingerprint):
    """The state (a dict, ``done`` among its keys) that ``path`` holds for this job, else None."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    if not (isinstance(state, dict) and state.get("fingerprint") == fingerprint
            and isinstance(state.get("done"), dict)):
        return None
    return state


def write_state(path, fingerprint, done, **extra):
    """Write the state of a job atomically: its fingerprint, the finished chunks ``done`` and ``extra``."""
    from .outputs import write_json

    write_json(path, {"fingerprint": fingerprint, **extra, "done": done})


class ReadThen:
    """``task`` on a chunk's records, read where it runs (:func:`~ml4ms.datasets.sources.read_pieces`); picklable.

    Examples
    --------
    >>> from ml4ms.datasets.sources import records_of
    >>> ReadThen(records_of)([("in memory", 0, ["a", "b"]), ("more", 0, ["c"])])
    ['a', 'b', 'c']
    """

    def __init__(self, task):
        self.task = task

    def __call__(self, pieces):
        from .datasets.sources import read_pieces

        return self.task(read_pieces(pieces))


def run_chunks(task, parts, plan, done, save, state_path, job, extra=None, scheduler=None, max_chunks=None,
               progress=True, desc=None, n_jobs=1):
    """Compute the chunks of ``plan`` not in ``done`` with ``task``, in order, and ``save`` each result.

    After each chunk the state file ``state_path`` names it among the finished
    ones (:func:`write_state` with the fingerprint ``job`` and ``extra``), so a
    run killed at any moment keeps every chunk it finished. A chunk travels to
    its process as pieces (:func:`~ml4ms.datasets.sources.chunk_pieces`): a
    file's pieces say where its records are, and that process reads them
    (:class:`ReadThen`), so this one parses no structure of an XYZ file or
    an ASE database.

    Parameters
    ----------
    task : callable
        Picklable; takes a chunk's pieces with their records
        ``[(label, start, records)]`` (:func:`ml4ms.datasets.sources.read_pieces`)
        and returns its result.
    parts : list
        The parts the plan refers to.
    plan : list
        The chunks (:func:`ml4ms.datasets.sources.plan_chunks`).
    done : dict
        ``str(key) -> info`` of the finished chunks; updated in place.
    save : callable
        ``save(key, result)`` keeps a result (writes its file atomically) and returns its ``info``.
    state_path, job : str
        The state file and the job's :func:`fingerprint`.
    extra : dict, optional
        More to write in the state file.
    max_chunks : int, optional
        Compute at most this many chunks.
    n_jobs : int, default 1
        Local worker processes when no scheduler is chosen (:class:`ml4ms.parallel.Executor`).

    Returns
    -------
    int
        The chunks computed by this call.
    """
    from .datasets.sources import chunk_pieces
    from .parallel import Executor

    pending = [key for key in range(len(plan)) if str(key) not in done]
    if max_chunks is not None:
        pending = pending[:int(max_chunks)]
    pieces = chunk_pieces(parts, (plan[key] for key in pending))
    results = Executor(n_jobs=n_jobs, scheduler=scheduler, chunk=1).imap(
        ReadThen(task), pieces, progress=progress and len(pending) > 1, desc=desc, total=len(pending))
    for key, result in zip(pending, results):
        done[str(key)] = save(key, result)
        write_state(state_path, job, done, **(extra or {}))
    return len(pending)
