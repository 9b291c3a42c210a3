"""Training a committee of potentials: one seeded run per member, in parallel worker processes.

Member *k* is the template potential with weight seed ``model.seed + k``,
trained by :func:`~ml4ms.potentials.loop.run_training` with training seed
``seed + k``: its own validation split, shuffles and initial weights, so the
members differ as a committee's should. Each member checkpoints in a folder
of its own (``member<k>``), which the progress bar of the parent process
reads while the workers train.
"""

import contextlib
import copy
import dataclasses
import os
import tempfile
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from tqdm.auto import tqdm

from ..errors import InputError, one_line_warnings
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
    total, shared among the processes that run at once).

    Returns
    -------
    models : Committee
    histories : list of list of dict
    """
    check_training_options({"members": members, "jobs": jobs})
    models = member_models(model, members, options.warm_start)
    members = len(models)
    jobs = int(members if jobs is None else jobs)
    if jobs > 1 and options.threads is not None:
        options = dataclasses.replace(options, threads=max(1, int(options.threads) // min(jobs, members)))
    with tempfile.TemporaryDirectory(prefix="ml4ms-committee-") if checkpoint_dir is None \
            else contextlib.nullcontext(checkpoint_dir) as folder:
        runs = [dict(options=dataclasses.replace(options, seed=int(options.seed) + k),
                     checkpoint_dir=os.path.join(folder, f"member{k}"), groups=groups, source=source)
                for k in range(members)]
        if jobs == 1:
            out = [run_training(m, frames, energies, forces, progress=progress, **run)
                   for m, run in zip(models, runs)]
        else:
            out = _in_processes(models, frames, energies, forces, runs, min(jobs, members), progress)
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


def _in_processes(models, frames, energies, forces, runs, workers, progress):
    """The members' runs in ``workers`` processes, with one progress bar over their epochs."""
    folders = [run["checkpoint_dir"] for run in runs]
    bar = tqdm(total=len(models) * runs[0]["options"].epochs, disable=not progress,
               desc=f"fit committee of {len(models)}", unit="epoch")
    # spawn, not fork: a forked torch process can hang on the parent's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_train_member, k > 0, m, frames, energies, forces, **run)
                   for k, (m, run) in enumerate(zip(models, runs))]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            status = [member_status(f) for f in folders]
            bar.update(sum(s[0] if s else 0 for s in status) - bar.n)
            bar.set_postfix_str("val E/F " + " | ".join(s[1] if s else "-" for s in status))
        out = [f.result() for f in futures]
    bar.close()
    return out


def _train_member(quiet, *args, **kwargs):
    """:func:`run_training` in a worker process, its warnings on one line each; ``quiet``: without the
    precomputation's (every member precomputes the same structures: member 0 says it once)."""
    with one_line_warnings():
        if quiet:
            warnings.filterwarnings("ignore", message="descriptor Jacobians")
        return run_training(*args, progress=False, **kwargs)

