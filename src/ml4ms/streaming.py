"""Chunked, resumable jobs: the chunks of the data through a task, each result kept as soon as it is done.

:func:`run_chunks` is the loop that ``ml4ms predict``, ``ml4ms screen``
(:mod:`ml4ms.screening`) and ``ml4ms featurize`` into a folder
(:mod:`ml4ms.shards`) share: the parts of the data
(:mod:`ml4ms.datasets.sources`) are cut into chunks, the chunks not finished
by an earlier run of the same job are read one at a time and computed on the
executor (:mod:`ml4ms.parallel`), and each result is handed to ``save`` (which
writes it atomically and records it in a state file) as soon as it arrives. The
process holds the chunks in flight only, never the whole data.

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


def run_chunks(task, parts, plan, done, save, state_path, job, extra=None, scheduler=None, max_chunks=None,
               progress=True, desc=None):
    """Compute the chunks of ``plan`` not in ``done`` with ``task``, in order, and ``save`` each result.

    After each chunk the state file ``state_path`` names it among the finished
    ones (:func:`write_state` with the fingerprint ``job`` and ``extra``), so a
    run killed at any moment keeps every chunk it finished.

    Parameters
    ----------
    task : callable
        Picklable; takes a chunk's pieces ``[(label, start, records)]``
        (:func:`ml4ms.datasets.sources.read_chunks`) and returns its result.
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

    Returns
    -------
    int
        The chunks computed by this call.
    """
    from .datasets.sources import read_chunks
    from .parallel import Executor

    pending = [key for key in range(len(plan)) if str(key) not in done]
    if max_chunks is not None:
        pending = pending[:int(max_chunks)]
    reading = read_chunks(parts, (plan[key] for key in pending))
    results = Executor(scheduler=scheduler, chunk=1).imap(task, reading, progress=progress and len(pending) > 1,
                                                          desc=desc, total=len(pending))
    for key, result in zip(pending, results):
        done[str(key)] = save(key, result)
        write_state(state_path, job, done, **(extra or {}))
    return len(pending)
