"""Training a committee of potentials: one seeded run per member, as tasks of the executor.

Member *k* is the template potential with weight seed ``model.seed + k``,
trained by :func:`~ml4ms.potentials.loop.run_training` with training seed
``seed + k``: its own validation split, shuffles and initial weights, so the
members differ as a committee's should, and are the same wherever they run.
The members run one after the other in this process (``jobs=1``), ``jobs``
at a time in local worker processes, or on the Dask cluster chosen with
:mod:`ml4ms.parallel` (``--scheduler``), one task each. Each member
checkpoints in a folder of its own (``member<k>``), which the progress bar
of this process reads while the members train (on a cluster: where the
workers write to this machine's file system; elsewhere the bar moves as
members end).
"""

import contextlib
import copy
import dataclasses
import os
import tempfile
import warnings
from functools import partial

from tqdm.auto import tqdm

from ..errors import InputError, one_line_warnings
from ..parallel import Executor, wait_first
from .checkpoint import read_state
from .committee import Committee, as_committee
from .loop import run_training
from .options import check_training_options

#: seconds between two looks at the members' checkpoints (the progress bar)
POLL_SECONDS = 5.0


def run_committee(model, frames, energies, forces, options, *, members, jobs=None, checkpoint_dir=None,
                  progress=True, groups=None, source="data"):
    """Train a committee of ``members`` potentials under ``options``, ``jobs`` processes at once.

    The arguments are those of :func:`~ml4ms.potentials.train.train_committee`, with the training options as
    one :class:`~ml4ms.potentials.options.TrainingOptions` (its ``seed`` is member 0's; its ``threads`` the
    total, shared among the processes that run at once). On a Dask cluster (:mod:`ml4ms.parallel`) ``jobs``
    does not matter: every member is a task, on one thread of its worker; without ``checkpoint_dir`` the
    members keep no checkpoints there (a worker may not see this machine's folders).

    Returns
    -------
    models : Committee
    histories : list of list of dict
    """
    check_training_options({"members": members, "jobs": jobs})
    models = member_models(model, members, options.warm_start)
    members = len(models)
    jobs = int(members if jobs is None else jobs)
    executor = Executor(n_jobs=min(jobs, members))
    kind = executor.kind
    if kind == "processes" and options.threads is not None:
        options = dataclasses.replace(options, threads=max(1, int(options.threads) // min(jobs, members)))
    elif kind == "dask":
        options = dataclasses.replace(options, threads=None)  # the task's one thread (ml4ms.parallel)
    keep = checkpoint_dir is not None or kind != "dask"
    with tempfile.TemporaryDirectory(prefix="ml4ms-committee-") if checkpoint_dir is None \
            else contextlib.nullcontext(checkpoint_dir) as folder:
        runs = [dict(options=dataclasses.replace(options, seed=int(options.seed) + k),
                     checkpoint_dir=os.path.join(folder, f"member{k}") if keep else None, groups=groups,
                     source=source)
                for k in range(members)]
        if kind == "serial":
            out = [run_training(m, frames, energies, forces, progress=progress, **run)
                   for m, run in zip(models, runs)]
        else:
            out = _on_executor(executor, models, frames, energies, forces, runs, progress)
    return Committee([m for m, _ in out]), [h for _, h in out]


def member_models(model, members, warm_start=False):
    """The potentials a committee run starts from: copies of ``model``, member *k* with weight seed ``seed + k``.

    A committee (or list of potentials) is continued member by member, and only with ``warm_start``.

    Examples
    --------
    >>> from ml4ms.potentials import NeuralPotential
    >>> [m.seed for m in member_models(NeuralPotential(seed=3), 2)]
    [3, 4]
    """
    if isinstance(model, (Committee, list, tuple)):
        if not warm_start:
            raise InputError("a committee is given to continue: set warm_start=True")
        return [copy.deepcopy(m) for m in as_committee(model)]  # copies: the caller's are left as they were
    return [model.__class__(**model.get_params()).set_params(seed=int(model.seed) + k) for k in range(members)]


def member_status(folder):
    """``(epoch, "val E/F")`` from a member's checkpoint (``None`` before its first epoch)."""
    try:
        last = read_state(folder)["history"][-1]
    except (TypeError, KeyError, IndexError):
        return None
    return last["epoch"], f"{last['val_energy_rmse']:.2f}/{last['val_force_rmse']:.3f}"


def _on_executor(executor, models, frames, energies, forces, runs, progress):
    """The members' runs as tasks of ``executor``, with one progress bar over their epochs.

    A running member counts the epochs its checkpoint holds, an ended one all of its epochs. An error ends the
    others that have not started (a local pool's workers at once) and is raised.
    """
    epochs = runs[0]["options"].epochs
    folders = [run["checkpoint_dir"] for run in runs]
    bar = tqdm(total=len(models) * epochs, disable=not progress, desc=f"fit committee of {len(models)}",
               unit="epoch")
    train = partial(_train_member, frames, energies, forces)
    jobs = [executor.submit(train, (k > 0, m, run)) for k, (m, run) in enumerate(zip(models, runs))]
    try:
        pending = jobs
        while pending:
            wait_first(pending, timeout=POLL_SECONDS)
            pending = [job for job in pending if not job.done()]
            status = [None if folder is None else member_status(folder) for folder in folders]
            bar.update(sum(epochs if job.done() else s[0] if s else 0 for job, s in zip(jobs, status)) - bar.n)
            bar.set_postfix_str("val E/F " + " | ".join(s[1] if s else ("done" if job.done() else "-")
                                                      for job, s in zip(jobs, status)))
        out = [job.result() for job in jobs]
    except BaseException:  # Ctrl-C included: members still running are ended (their checkpoints are kept)
        running = [job for job in jobs if not job.done()]
        for job in running:
            job.stop()
        if running:
            executor.stop()
        raise
    finally:
        bar.close()
    return out


def _train_member(frames, energies, forces, item):
    """:func:`run_training` of ``item = (quiet, model, run)`` in a task, its warnings on one line each;
    ``quiet``: without the precomputation's (every member precomputes the same structures: member 0 says it
    once)."""
    quiet, model, run = item
    with one_line_warnings():
        if quiet:
            warnings.filterwarnings("ignore", message="descriptor Jacobians")
        return run_training(model, frames, energies, forces, progress=False, **run)
