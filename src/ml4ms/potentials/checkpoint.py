"""Checkpoints of a training run, written after every epoch, from which a run resumes exactly.

A checkpoint folder holds ``model/`` (the weights after the last finished
epoch; with a moving average of the weights, the averaged ones) and
``best/`` (those of the best validation loss) in the potential-file format
(:mod:`ml4ms.potentials.io`), ``optimizer.npz`` with the Adam moments (and,
with a moving average, the optimizer's own weights) and ``state.json``: the
epoch, the history, the early-stopping and learning-rate state, the split
and where the run started. ``state.json`` is written last, so a folder with
one holds a whole epoch. Epoch shuffles are seeded by ``(seed, epoch)``
(:mod:`ml4ms.potentials.loop`), so a resumed run draws the same batches, and
ends with the same weights, as an unbroken one.

A committee's run keeps one such folder per member, ``member0``,
``member1``, ... (:func:`checkpoint_epochs`).
"""

import dataclasses
import hashlib
import io
import json
import os

import numpy as np

from ..batch import _torch
from ..errors import InputError
from ..outputs import write_bytes, write_json
from .io import load_potential, save_potential

STATE = "state.json"
OPTIMIZER = "optimizer.npz"

#: what to do about a checkpoint that does not belong to the run
NEW_FOLDER = "use a new checkpoint folder (a new -o, or --checkpoint)"


@dataclasses.dataclass
class Progress:
    """Where a run stands after its last finished epoch: what ``state.json`` keeps besides the split.

    Attributes
    ----------
    epoch : int
        Epochs finished.
    history : list of dict
        One row per finished epoch (:func:`~ml4ms.potentials.train.train_potential`).
    best_loss : float
        The best validation loss (of the current stage).
    stale : int
        Epochs since it.
    lr : float
        The learning rate of the next epoch.
    ema_steps : int
        Adam steps taken into the moving average of the weights.
    stage_two : bool
        The second stage of the loss weights has begun.
    """

    epoch: int = 0
    history: list = dataclasses.field(default_factory=list)
    best_loss: float = float("inf")
    stale: int = 0
    lr: float = 0.0
    ema_steps: int = 0
    stage_two: bool = False

    @classmethod
    def from_state(cls, state):
        """The progress that a ``state.json`` records."""
        return cls(epoch=int(state["epoch"]), history=state["history"], best_loss=float(state["best_loss"]),
                   stale=int(state["stale"]), lr=float(state["lr"]), ema_steps=int(state.get("ema_steps", 0)),
                   stage_two=bool(state.get("stage_two", False)))

    def state(self, has_best, n_frames, train_idx, val_idx, start):
        """The ``state.json`` of this progress, of a run on ``n_frames`` structures with this split and start."""
        return {"epoch": self.epoch, "history": self.history, "best_loss": self.best_loss, "stale": self.stale,
                "lr": self.lr, "has_best": has_best, "n_frames": n_frames, "train_idx": train_idx.tolist(),
                "val_idx": val_idx.tolist(), "ema_steps": self.ema_steps, "start": start,
                "stage_two": self.stage_two}


def save_checkpoint(folder, model, best, optimizer, params, state, raw=False):
    """Write a finished epoch to ``folder``: the model, the best model, the optimizer and ``state``.

    Parameters
    ----------
    folder : str
        The checkpoint folder (made if missing).
    model, best : NeuralPotential
        The potential after the epoch, and that of the best validation loss (``None``: none yet).
    optimizer : torch.optim.Adam
        Its moments of ``params`` are kept.
    params : list of list of torch.Tensor
        The weights the optimizer trains (per element, as
        :meth:`~ml4ms.potentials.model.NeuralPotential.torch_parameters`).
    state : dict
        The run's state (``state.json``, :meth:`Progress.state`), written last: it marks the checkpoint complete.
    raw : bool
        ``model`` holds averaged weights: keep the optimizer's own ``params`` too.
    """
    save_potential(os.path.join(folder, "model"), model)
    if best is not None:
        save_potential(os.path.join(folder, "best"), best)
    arrays = {}
    flat = [p for layers in params for p in layers]
    for k, p in enumerate(flat):
        st = optimizer.state.get(p, {})
        if "exp_avg" in st:
            arrays[f"m{k}"] = st["exp_avg"].detach().cpu().double().numpy()
            arrays[f"v{k}"] = st["exp_avg_sq"].detach().cpu().double().numpy()
            arrays[f"step{k}"] = np.asarray(float(st["step"]))
        if raw:  # the model holds the averaged weights; these are the optimizer's own
            arrays[f"w{k}"] = p.detach().cpu().double().numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(os.path.join(folder, OPTIMIZER), buf.getvalue())
    write_json(os.path.join(folder, STATE), state)  # last: marks the checkpoint complete


def load_optimizer(folder, optimizer, params):
    """Restore the Adam moments of ``params`` (and, when kept, their raw weights) from ``folder``."""
    torch = _torch()
    path = os.path.join(folder, OPTIMIZER)
    if not os.path.exists(path):
        return
    with np.load(path, allow_pickle=False) as npz:
        flat = [p for layers in params for p in layers]
        for k, p in enumerate(flat):
            if f"m{k}" in npz.files:
                optimizer.state[p] = {
                    "step": torch.tensor(float(npz[f"step{k}"])),
                    "exp_avg": torch.as_tensor(npz[f"m{k}"], dtype=p.dtype, device=p.device).clone(),
                    "exp_avg_sq": torch.as_tensor(npz[f"v{k}"], dtype=p.dtype, device=p.device).clone(),
                }
            if f"w{k}" in npz.files:
                with torch.no_grad():
                    p.copy_(torch.as_tensor(npz[f"w{k}"], dtype=p.dtype, device=p.device))


def read_state(folder):
    """The ``state.json`` of a checkpoint folder, or ``None`` (none yet, or unreadable)."""
    try:
        with open(os.path.join(folder, STATE), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def checkpoint_epochs(folder):
    """The finished epochs that a checkpoint folder holds: ``{"": E}`` for one potential's run,
    ``{"member0": E0, ...}`` for a committee's (:func:`~ml4ms.potentials.train.train_committee`), ``{}`` for none.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> checkpoint_epochs(folder), checkpoint_epochs(os.path.join(folder, "missing"))
    ({}, {})
    >>> os.mkdir(os.path.join(folder, "member1"))
    >>> write_json(os.path.join(folder, "member1", STATE), {"epoch": 7})
    >>> checkpoint_epochs(folder)
    {'member1': 7}
    """
    state = read_state(folder)
    if state is not None:
        return {"": int(state.get("epoch", 0))}
    out = {}
    names = sorted(os.listdir(folder), key=lambda n: (len(n), n)) if os.path.isdir(folder) else []
    for name in names:
        state = read_state(os.path.join(folder, name)) if name.startswith("member") else None
        if state is not None:
            out[name] = int(state.get("epoch", 0))
    return out


def fingerprint(model):
    """A short hash of a fitted potential's weights: which model a warm-started checkpoint continues."""
    digest = hashlib.sha256()
    for layers in model.torch_parameters(requires_grad=False):
        for w in layers:
            digest.update(np.ascontiguousarray(w.detach().cpu().double().numpy()).tobytes())
    return digest.hexdigest()[:16]


def resume(folder, model, n_frames, train_idx, start):
    """The checkpoint of this run in ``folder``: ``(progress, model, best)``, or ``None`` when there is none.

    Parameters
    ----------
    folder : str or None
        The checkpoint folder (``None``: the run keeps no checkpoint).
    model : NeuralPotential
        The potential the run was given; the checkpoint's must have the same settings.
    n_frames : int
        Structures given to the run (before any were excluded).
    train_idx : numpy.ndarray
        The run's training split; the checkpoint's must be the same.
    start : str or None
        The :func:`fingerprint` of the potential a warm start continues; ``None`` for a run from scratch.

    Raises
    ------
    InputError
        The checkpoint is of other data, another split, another start or
        other model settings, naming the folder.
    """
    if not folder or not os.path.exists(os.path.join(folder, STATE)):
        return None
    with open(os.path.join(folder, STATE), encoding="utf-8") as handle:
        state = json.load(handle)
    if state.get("n_frames") != n_frames or state.get("train_idx") != train_idx.tolist():
        raise InputError("checkpoint is from other data or another split", source=folder, hint=NEW_FOLDER)
    if state.get("start") != start:
        raise InputError("checkpoint is of a run that started "
                         + ("from another potential" if state.get("start") else "anew, not from a potential"),
                         source=folder, hint=NEW_FOLDER)
    device = getattr(model, "device", "cpu")  # the run's: a checkpoint resumes on any device
    saved = load_potential(os.path.join(folder, "model"), device=device)
    changed = ", ".join(sorted(k for k, v in model.get_params().items() if _plain(saved.get_params()[k]) != _plain(v)))
    if changed:
        raise InputError(f"checkpoint was written with other model settings ({changed})", source=folder,
                         hint="use a new checkpoint folder, or the settings it was started with")
    best = load_potential(os.path.join(folder, "best"), device=device) if state.get("has_best") else None
    return Progress.from_state(state), saved, best


def _plain(value):
    """``value`` as JSON gives it back: tuples and lists alike."""
    return json.loads(json.dumps(value, default=str))
