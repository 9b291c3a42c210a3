"""The training loop of a potential: Adam steps over mini-batches, validation, early stopping.

:func:`run_training` trains a potential of any kind (a
:class:`~ml4ms.potentials.estimator.PotentialEstimator`) on energies and forces under one
:class:`~ml4ms.potentials.options.TrainingOptions`:
Adam with an exponential learning-rate decay per epoch, early stopping on a
validation split drawn (by ``seed``) from the training structures only, and
the best-validation weights kept. Options: a moving average of the weights
(``ema_decay``), a second stage with other loss weights for the end of the
run (``stage_two_*``) and a time limit. With a checkpoint folder the state
is written after every epoch and a call with the same folder resumes from
the last finished epoch (:mod:`ml4ms.potentials.checkpoint`); the epoch
shuffles are seeded by ``(seed, epoch)``, so a resumed run draws the same
batches as an unbroken one.

Started by torchrun as several processes, a run trains one potential with
all of them (:mod:`ml4ms.potentials.distributed`): each takes its share of
every batch, their gradients are summed before every step, and the run
follows the same course as in one process, to rounding. The potential's
``device`` is where the module, the batches and the precomputed Jacobians
live.
"""

import contextlib
import copy
import time
import warnings

import numpy as np
from tqdm.auto import tqdm

from ..batch import AtomsBatch, _torch, torch_dtype
from ..duplicates import duplicate_groups
from ..errors import InputError
from ..model_selection import group_train_test_split
from ..threads import per_process
from .checkpoint import Progress, fingerprint, load_optimizer, resume, save_checkpoint
from .distributed import process_group
from .metrics import binding_energy_per_atom, labels_of
from .precompute import JacobianSet


def run_training(model, frames, energies, forces, options, *, groups=None, checkpoint_dir=None, progress=True,
                 source="data"):
    """Train ``model`` on structures with energies and forces under ``options``.

    Parameters
    ----------
    model : PotentialEstimator
        Initialised here from the training split (unless resuming, or with ``options.warm_start``). The
        descriptor Jacobians (``options.precompute``) are used where the kind has them (``model.has_precompute``).
    frames : list of ase.Atoms
    energies, forces : optional
        Total energies (eV) and force arrays (eV/Å); read from the frames if ``None``.
    options : TrainingOptions
    groups : array-like of int (n_frames,), optional
        Structures with the same label stay on one side of the validation
        split (for example frames of one MD trajectory); default: duplicate groups.
    checkpoint_dir : str, optional
        Folder for per-epoch checkpoints; an existing checkpoint is resumed.
    progress : bool
        tqdm progress bar with train/validation energy (meV/atom) and force (eV/Å) RMSE, and a line with the
        estimated time of the descriptor Jacobians (:func:`precompute_notice`).
    source : str
        The name of the data, for messages.

    Returns
    -------
    model : NeuralPotential
        See :func:`~ml4ms.potentials.train.train_potential`.
    history : list of dict

    Notes
    -----
    In a process started by torchrun with others (:mod:`ml4ms.potentials.distributed`) the run is one of
    several that train the same potential: every one returns it, only rank 0 writes the checkpoints and shows
    the progress, and ``options.threads`` is shared by the processes on a machine.
    """
    threads = None if options.threads is None else per_process(options.threads)
    ranks = process_group(getattr(model, "device", "cpu"))
    with _torch_threads(threads):
        progress = progress and ranks.main
        t_call = time.time()
        frames, energies, forces = _labelled(frames, energies, forces, groups, source)
        start = None
        if options.warm_start:  # before the slow steps: a model that cannot continue on these frames fails at once
            _check_warm_start(model, frames, source)
            start = fingerprint(model)
        keep, train_idx, val_idx = training_split(frames, energies, options, groups, progress, source)
        resumed = resume(checkpoint_dir, model, len(frames), train_idx, start)
        if resumed is not None:
            done, model, best = resumed
        else:
            done, best = Progress(lr=float(options.learning_rate)), None
            if options.warm_start:
                model = _continued(model)
            else:
                model.initialize([frames[k] for k in train_idx], energies[train_idx])
        adam = _Adam(model, options)
        if resumed is not None:
            load_optimizer(checkpoint_dir, adam.optimizer, adam.params)
        errors = _BatchErrors(model, frames, energies, forces, ranks)
        precompute_seconds = None
        if options.precompute and model.has_precompute:  # kinds without the fast path train through the model
            t0 = time.time()
            errors.precompute(np.concatenate([train_idx, val_idx]), options.time_limit, progress)
            precompute_seconds = time.time() - t0

        n_batches = -(-len(train_idx) // options.batch_size)
        bar = tqdm(total=options.epochs * n_batches, initial=done.epoch * n_batches, disable=not progress,
                   desc="fit potential", unit="batch")
        last_val = "-"
        cut = False
        t_start = time.time()  # the time limit counts training only, not the preparation and precomputation above

        def out_of_time():  # rank 0's clock: the processes stop at the same batch
            return ranks.agree(time.time() - t_start > options.time_limit)

        def report(se_e, n_e, se_f, n_f):
            bar.update(1)
            f_txt = f"{np.sqrt(se_f / n_f):.3f}" if n_f else "-"
            bar.set_postfix_str(f"epoch {done.epoch + 1}: train E {1000 * np.sqrt(se_e / n_e):.2f} meV/atom "
                                f"F {f_txt} eV/Å | val {last_val}")

        def step(loss):
            adam.step(loss, ranks)
            if adam.averaged is not None:
                adam.average(ema_weight(options.ema_decay, done.ema_steps))
                done.ema_steps += 1

        try:
            while done.epoch < options.epochs:
                t0 = time.time()
                if not done.stage_two and ranks.agree(stage_two_due(options, done.epoch, t0 - t_start)):
                    done.stage_two, done.best_loss, done.stale = True, float("inf"), 0  # a new loss: a new best
                w_e, w_f = options.stage_two_weights if done.stage_two else (options.energy_weight,
                                                                              options.force_weight)
                adam.set_learning_rate(done.lr)
                order = np.random.default_rng([options.seed, done.epoch]).permutation(train_idx)
                tr_e, tr_f, stopped = sweep(errors, order, options.batch_size, w_e, w_f, adam.params, step=step,
                                            out_of_time=None if options.time_limit is None else out_of_time,
                                            report=report, ranks=ranks)
                cut = cut or stopped
                model.set_parameters(adam.kept)
                if len(val_idx):
                    va_e, va_f, _ = sweep(errors, val_idx, options.batch_size, w_e, w_f, adam.kept, ranks=ranks)
                    val_loss = w_e * (va_e / 1000) ** 2 + w_f * va_f ** 2
                else:
                    va_e = va_f = float("nan")
                    val_loss = w_e * (tr_e / 1000) ** 2 + (w_f * tr_f ** 2 if w_f > 0 else 0)
                if val_loss < done.best_loss:
                    done.best_loss, done.stale = float(val_loss), 0
                    best = _snapshot(model)
                else:
                    done.stale += 1
                done.epoch += 1
                done.history.append({"epoch": done.epoch, "lr": done.lr, "train_energy_rmse": tr_e,
                                     "train_force_rmse": tr_f, "val_energy_rmse": va_e, "val_force_rmse": va_f,
                                     "val_loss": float(val_loss), "seconds": time.time() - t0,
                                     "stage": 2 if done.stage_two else 1})
                done.lr = max(done.lr * options.lr_decay, options.min_learning_rate)
                last_val = f"E {va_e:.2f} meV/atom F {va_f:.3f} eV/Å"
                if checkpoint_dir and ranks.main:
                    save_checkpoint(checkpoint_dir, model, best, adam.optimizer, adam.params,
                                    done.state(best is not None, len(frames), train_idx, val_idx, start),
                                    raw=adam.averaged is not None)
                if len(val_idx) and done.stale >= options.patience:
                    break
                if options.time_limit is not None and out_of_time():
                    cut = cut or done.epoch < options.epochs
                    break
        finally:
            bar.close()
        t_end = time.time()
        result = best if best is not None and options.restore_best else model
        validated = len(val_idx) > 0
        result.training_ = {"epochs": done.epoch, "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                            "n_excluded": int(len(frames) - len(keep)), "best_val_loss": float(done.best_loss),
                            "stopped_by": stop_reason(done.epoch, options.epochs, done.stale,
                                                      options.patience if validated else None, cut),
                            "epoch_limit": int(options.epochs),
                            "patience": int(options.patience) if validated else None,
                            "time_limit_seconds": None if options.time_limit is None else float(options.time_limit),
                            "training_seconds": t_end - t_start, "preparation_seconds": t_start - t_call,
                            "precompute_seconds": precompute_seconds}
        if options.novelty_references:
            try:
                result.fit_novelty([frames[k] for k in train_idx], int(options.novelty_references))
            except InputError as exc:  # never lose a trained model to its novelty
                warnings.warn(f"the potential keeps no reference environments (no novelty): {exc.message}; "
                              f"{exc.hint}", stacklevel=2)
        return result, done.history


def sweep(errors, indices, batch_size, w_e, w_f, params, step=None, out_of_time=None, report=None, ranks=None):
    """One pass over ``indices`` in batches: a training epoch (with ``step``) or a validation pass.

    The loss of a batch of ``b`` structures with ``c`` force components is
    ``w_e Σ de² / b + w_f Σ df² / c``. With several processes (``ranks``) each sums over its share of the batch
    and the step sums their gradients: the gradient of the whole batch's loss.

    Parameters
    ----------
    errors : callable
        ``errors(batch_indices, use_forces, create_graph, params) -> (energy errors per atom, force errors)``
        of this process's share of the batch (``(None, None)`` for an empty share); ``errors.components(batch)``:
        the force components of the whole batch.
    indices : array of int
        The structures, in the order of the pass.
    batch_size : int
    w_e, w_f : float
        Loss weights of the energy and force terms. Training with ``w_f = 0`` takes no forces.
    params : list of list of torch.Tensor
        The weights to evaluate.
    step : callable, optional
        Takes each batch's loss (``None`` for an empty share) and steps the optimizer: a training pass. Without
        it, a validation pass.
    out_of_time : callable, optional
        True when the time limit has passed: the pass stops before its next batch (never before its first).
    report : callable, optional
        Called after each training batch with this process's running sums ``(se_e, n_e, se_f, n_f)``.
    ranks : Ranks, optional
        The processes of the run (:class:`~ml4ms.potentials.distributed.Ranks`; default: this one alone).

    Returns
    -------
    energy_rmse : float
        meV/atom.
    force_rmse : float
        eV/Å; NaN when no forces were taken.
    cut : bool
        The time limit ended the pass early.
    """
    train = step is not None
    se_e = se_f = 0.0  # this process's sums of squares
    n_e = n_f = 0  # structures and force components of the whole batches
    own_e = own_f = 0  # of this process's shares (the progress report)
    cut = False
    for b0 in range(0, len(indices), batch_size):
        if train and b0 and out_of_time is not None and out_of_time():
            cut = True
            break  # out of time: this partial epoch is the last
        idx = indices[b0:b0 + batch_size]
        use_f = w_f > 0 or not train
        de, df = errors(idx, use_f, train and w_f > 0, params)
        n_e += len(idx)
        loss = None
        if de is not None:
            sq_e = (de ** 2).sum()
            loss = w_e * (sq_e / len(idx))
            se_e += float(sq_e.detach())
            own_e += len(de)
        if use_f:
            components = errors.components(idx)
            n_f += components
            if df is not None:
                sq_f = (df ** 2).sum()
                loss = loss + w_f * (sq_f / components)
                se_f += float(sq_f.detach())
                own_f += df.numel()
        if train:
            step(loss)
            if report is not None:
                report(se_e, max(own_e, 1), se_f, own_f)
    if ranks is not None:
        se_e, se_f = ranks.sum([se_e, se_f])
    e_rmse = float(1000 * np.sqrt(se_e / max(n_e, 1)))
    f_rmse = float(np.sqrt(se_f / n_f)) if n_f else float("nan")
    return e_rmse, f_rmse, cut


def training_split(frames, energies, options, groups=None, progress=False, source="data"):
    """The structures a run trains on: ``(kept, train_idx, val_idx)``, indices into ``frames``.

    Structures above ``options.max_energy_per_atom`` are left out; of the
    rest, ``options.valid_fraction`` (drawn by ``options.seed``) is the
    validation split, with duplicate structures (or the caller's ``groups``)
    on one side of it.

    Raises
    ------
    InputError
        Fewer than 2 structures left, or fewer than 2 distinct ones (or groups) to split.
    """
    keep = np.arange(len(frames))
    if options.max_energy_per_atom is not None:  # with atomic_energies (TrainingOptions)
        eb = binding_energy_per_atom(frames, energies, options.atomic_energies)
        keep = keep[eb <= float(options.max_energy_per_atom)]
    if len(keep) < 2:
        excluded = len(keep) < len(frames)
        raise InputError(f"fewer than 2 structures left to train on (of {len(frames)}"
                         + (f", after max_energy_per_atom = {options.max_energy_per_atom:g}" if excluded else "")
                         + ")", source=source, hint="a potential needs many labelled structures: give more"
                         + (", or raise max_energy_per_atom" if excluded else ""))
    if not options.valid_fraction > 0:
        return keep, keep, keep[:0]
    # duplicates (found here, or the caller's groups) stay on one side of the split
    sub = duplicate_groups([frames[k] for k in keep], progress=progress) if groups is None \
        else np.asarray(groups)[keep]
    if len(np.unique(sub)) < 2:
        raise InputError("fewer than 2 distinct structures (or groups) to split into training and validation",
                         source=source, hint="add structures, or set valid_fraction = 0")
    tr, va = group_train_test_split(sub, options.valid_fraction, random_state=options.seed)
    return keep, keep[tr], keep[va]


def stage_two_due(options, epoch, seconds):
    """Whether the second stage of the loss weights has begun before ``epoch``, ``seconds`` into training.

    Examples
    --------
    >>> from ml4ms.potentials.options import TrainingOptions
    >>> options = TrainingOptions(epochs=10, stage_two_start=0.5, time_limit=60.0)
    >>> stage_two_due(options, 4, 10.0), stage_two_due(options, 5, 10.0), stage_two_due(options, 1, 30.0)
    (False, True, True)
    """
    share = options.stage_two_start
    return share is not None and (epoch >= share * options.epochs or (
        options.time_limit is not None and seconds >= share * options.time_limit))


def ema_weight(decay, steps):
    """The weight ``d`` of the old average after ``steps`` Adam steps: ``min(decay, (1 + steps) / (10 + steps))``.

    Examples
    --------
    >>> ema_weight(0.999, 0), ema_weight(0.5, 100)
    (0.1, 0.5)
    """
    return min(float(decay), (1.0 + steps) / (10.0 + steps))


def stop_reason(epoch, epochs, stale, patience, cut):
    """Which limit ended a training run: ``"patience"``, ``"time_limit"`` or ``"epochs"``.

    Parameters
    ----------
    epoch, epochs : int
        Epochs done (the resumed ones included) and the epoch limit.
    stale : int
        Epochs since the best validation loss.
    patience : int or None
        ``None`` without a validation split (no early stopping).
    cut : bool
        The time limit ended an epoch early, or came before the epoch limit.

    Examples
    --------
    >>> stop_reason(200, 200, 3, 20, False), stop_reason(57, 200, 20, 20, False), stop_reason(80, 200, 0, 20, True)
    ('epochs', 'patience', 'time_limit')
    >>> stop_reason(200, 200, 50, None, True)  # the last epoch was cut short by the time limit
    'time_limit'
    """
    if patience is not None and stale >= patience:
        return "patience"
    return "time_limit" if cut or epoch < epochs else "epochs"


def format_duration(seconds):
    """``"0.25 s"``, ``"40 s"``, ``"3.1 min"`` or ``"2.5 h"``.

    Examples
    --------
    >>> format_duration(0.254), format_duration(40.2), format_duration(186), format_duration(9000)
    ('0.25 s', '40 s', '3.1 min', '2.5 h')
    """
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def precompute_notice(seconds, n_structures, time_limit=None):
    """The line announcing the descriptor-Jacobian precomputation; ``(text, longer_than_the_time_limit)``.

    The time limit counts training only (it starts after the precomputation),
    so a precomputation longer than the whole limit more than doubles the
    wall time the user planned: the text says so, and how to avoid it.

    Examples
    --------
    >>> precompute_notice(95, 6937, 600)
    ('descriptor Jacobians of 6937 structures: about 1.6 min (the time limit of 10.0 min starts after them)', False)
    >>> text, over = precompute_notice(1500, 6937, 600)
    >>> over, text[:72]
    (True, 'descriptor Jacobians of 6937 structures: about 25.0 min, longer than the')
    """
    head = f"descriptor Jacobians of {n_structures} structures: about {format_duration(seconds)}"
    if time_limit is None:
        return head, False
    if seconds <= time_limit:
        return f"{head} (the time limit of {format_duration(time_limit)} starts after them)", False
    return (f"{head}, longer than the time limit of {format_duration(time_limit)} itself (it counts training only "
            "and starts after them); set precompute = false in [training] to train without them (slower epochs), "
            "or train on fewer structures"), True


class _BatchErrors:
    """Energy errors per atom and force errors of batches of structures, through the descriptor or its Jacobians.

    Calling it with ``(batch_indices, use_forces, create_graph, params)`` gives the energy errors per atom
    (b,) and the force errors (flattened; ``None`` without forces) of this process's share of the batch
    (:class:`~ml4ms.potentials.distributed.Ranks`) with the weights ``params``; ``(None, None)`` for an empty
    share. Everything it keeps is on the potential's device.
    """

    def __init__(self, model, frames, energies, forces, ranks):
        self.model, self.frames, self.energies, self.forces, self.ranks = model, frames, energies, forces, ranks
        self.dtype = torch_dtype(model.dtype)
        self.device = model.torch_device()
        self.n_atoms = np.array([len(a) for a in frames], dtype=np.int64)
        self.cache = {}  # neighbour lists once per structure; batches concatenate them
        self.jacobians = self.position = self.owner = None

    def components(self, indices):
        """Force components of the structures ``indices`` (all of them, whichever process holds them)."""
        return 3 * int(self.n_atoms[indices].sum())

    def precompute(self, used, time_limit, progress):
        """Compute the descriptors and their Jacobians of the structures ``used`` once (:class:`JacobianSet`).

        With several processes each keeps those of every ``size``-th structure of ``used``, and its share of a
        batch is the structures it keeps.
        """
        ranks = self.ranks
        if ranks.size > 1:
            self.owner = np.full(len(self.frames), -1, dtype=np.int64)
            self.owner[used] = np.arange(len(used)) % ranks.size
            used = used[self.owner[used] == ranks.rank]
        notice = _precompute_notice(len(used), time_limit, progress) \
            if ranks.main and (progress or time_limit is not None) else None
        self.jacobians = JacobianSet(self.model, [self.frames[k] for k in used], self.energies[used],
                                     [self.forces[k] for k in used], progress=progress, on_estimate=notice)
        self.position = np.empty(len(self.frames), dtype=np.int64)
        self.position[used] = np.arange(len(used))

    def batch(self, indices):
        """The batch of the structures ``indices``, their energies, forces and atom counts as tensors."""
        torch = _torch()
        for k in indices:
            if int(k) not in self.cache:
                self.cache[int(k)] = self.model.tensors([self.frames[k]])
        t = AtomsBatch.concat(self.cache[int(k)] for k in indices)
        e_ref = torch.as_tensor(self.energies[indices], dtype=torch.float64,  # totals ~1e4 eV: float64, as predicted
                                device=self.device)
        f_ref = torch.as_tensor(np.concatenate([self.forces[k] for k in indices]), dtype=self.dtype,
                                device=self.device)
        return t, e_ref, f_ref, torch.as_tensor(self.n_atoms[indices], dtype=torch.float64, device=self.device)

    def __call__(self, idx, use_f, create_graph, params):
        torch = _torch()
        idx = self.ranks.share(idx, self.owner)
        if not len(idx):
            return None, None
        jac = self.jacobians
        if jac is None:
            t, e_ref, f_ref, n = self.batch(idx)
            e, F, _ = self.model.energies_forces(t, params, forces=use_f, create_graph=create_graph)
            return (e - e_ref) / n, (F - f_ref if use_f else None)
        position = self.position[idx]
        parts = jac.groups(position)
        e, F = jac.energies_forces(self.model, params, parts, forces=use_f, create_graph=create_graph)
        de = torch.cat([(ei - jac.residual[position[w]]) / blk["n"] for (blk, _, w), ei in zip(parts, e)])
        df = torch.cat([(Fi - blk["forces"][slots]).reshape(-1) for (blk, slots, _), Fi in zip(parts, F)]) \
            if use_f else None
        return de, df


class _Adam:
    """The weights a run trains, their Adam optimizer and (with ``ema_decay``) their moving average."""

    def __init__(self, model, options):
        torch = _torch()
        self.params = model.torch_parameters(requires_grad=True)
        self.flat = [p for layers in self.params for p in layers]
        self.optimizer = torch.optim.Adam(self.flat, lr=options.learning_rate)
        # the moving average starts from the weights (of a resumed run: the saved average)
        self.averaged = model.torch_parameters(requires_grad=False) if options.ema_decay is not None else None
        self.averaged_flat = [a for layers in self.averaged for a in layers] if self.averaged is not None else None

    @property
    def kept(self):
        """What validation, checkpoints and the result use: the moving average, or the weights themselves."""
        return self.averaged if self.averaged is not None else self.params

    def set_learning_rate(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, loss, ranks):
        """One Adam step on ``loss`` (``None``: this process had no structures), its gradients summed over the
        processes ``ranks``."""
        self.optimizer.zero_grad()
        if loss is not None:
            loss.backward()
        ranks.sum_gradients(self.flat)
        self.optimizer.step()

    def average(self, d):
        """``w_avg <- d w_avg + (1 - d) w``."""
        with _torch().no_grad():
            for a, p in zip(self.averaged_flat, self.flat):
                a.mul_(d).add_(p, alpha=1.0 - d)


def _labelled(frames, energies, forces, groups, source):
    """``(frames, energies, forces)`` as a list, an array and a list; the labels read from the frames if not given."""
    frames = list(frames)
    if energies is None or forces is None:
        energies, forces = labels_of(frames, source)
    energies = np.asarray(energies, dtype=float)
    if len(frames) != len(energies) or len(frames) != len(forces):
        raise InputError("frames, energies and forces differ in length", source=source)
    if groups is not None and len(groups) != len(frames):
        raise InputError(f"groups has {len(groups)} labels for {len(frames)} structures", source=source)
    return frames, energies, forces


def _check_warm_start(model, frames, source):
    """A warm start needs a fitted potential that knows every element of ``frames``."""
    from sklearn.exceptions import NotFittedError

    try:
        model.require_fitted()
    except NotFittedError:
        raise InputError("warm_start needs a fitted potential to continue from", source=source,
                         hint="train it first, or set warm_start=False") from None
    try:
        model._check_species(frames)
    except InputError as exc:
        raise InputError(exc.message, source=source, index=exc.index,
                         hint="a warm start keeps the potential's elements: train a new potential") from None


def _continued(model):
    """The potential a warm start trains: a copy of ``model`` (the caller's stays as it was)."""
    model = copy.deepcopy(model)
    for name in ("novelty_references_", "novelty_scale_"):  # they describe the old training data
        model.__dict__.pop(name, None)
    return model


def _snapshot(model):
    """A copy of ``model``'s settings and fitted state (its arrays shared): the best one so far."""
    best = model.__class__(**model.get_params()).set_params()
    best.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    return best


def _precompute_notice(n_structures, time_limit, progress):
    """The ``on_estimate`` of :class:`JacobianSet`: print the estimate (``progress``); warn if over the time limit."""

    def notice(seconds):
        text, over = precompute_notice(seconds, n_structures, time_limit)
        if over:
            warnings.warn(text, stacklevel=2)
        elif progress:
            tqdm.write(text)

    return notice


@contextlib.contextmanager
def _torch_threads(threads):
    """torch on ``threads`` intra-op threads inside the block (``None``: as it is), restored after."""
    torch = _torch()
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
