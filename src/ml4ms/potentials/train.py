"""Training a :class:`~ml4ms.potentials.model.NeuralPotential` on energies and forces.

Loss per mini-batch of structures::

    energy_weight * mean_s ((E_pred - E_ref) / N_s)^2  +  force_weight * mean_components (F_pred - F_ref)^2

(eV/atom and eV/Å). Adam with an exponential learning-rate decay per epoch,
early stopping on a validation split drawn (by ``seed``) from the training
structures only, and the best-validation weights kept. With
``checkpoint_dir`` the state is written after every epoch (``model/`` and
``best/`` in the potential-file format, ``optimizer.npz`` with the Adam
moments, ``state.json`` with epoch, history and split), and a call with the
same folder resumes from the last finished epoch. Epoch shuffles are seeded
by ``(seed, epoch)``, so a resumed run draws the same batches as an
uninterrupted one. Options: a moving average of the weights
(``ema_decay``; the checkpoint then also keeps the raw weights) and a second
stage with other loss weights for the end of the run (``stage_two_*``).
"""

import copy
import io
import json
import os
import time
import warnings

import numpy as np

from ..batch import AtomsBatch, _torch, torch_dtype
from ..config import ANY, Rule, any_keys, boolean, check, integer, is_number, number, or_none, read_toml
from ..duplicates import duplicate_groups
from ..errors import InputError, one_line_warnings
from ..model_selection import group_train_test_split
from ..outputs import write_bytes, write_json
from .committee import Committee, as_committee
from .precompute import JacobianSet

STATE = "state.json"
OPTIMIZER = "optimizer.npz"


def binding_energy_per_atom(frames, energies, atomic_energies):
    """``(E − Σ_a E_atom[t_a]) / N`` of each structure (eV/atom)."""
    from ase.data import chemical_symbols

    out = np.empty(len(frames))
    for k, (a, e) in enumerate(zip(frames, energies)):
        try:
            ref = sum(float(atomic_energies[chemical_symbols[z]]) for z in a.numbers)
        except KeyError as exc:
            raise InputError(f"no atomic reference energy for {exc.args[0]}", index=k,
                             hint="add it to atomic_energies") from None
        out[k] = (e - ref) / len(a)
    return out


def labels_of(frames, source="data"):
    """Total energies (n,) and force arrays of structures carrying them (ASE calculator or info/arrays).

    Raises
    ------
    InputError
        A structure without an energy or forces, forces of the wrong shape, or a
        label that is not a finite number, naming the structure.
    """
    energies, forces = [], []
    for k, a in enumerate(frames):
        try:
            e, f = a.get_potential_energy(), a.get_forces()
        except Exception:
            e = a.info.get("energy")
            f = a.arrays.get("forces")
            if e is None or f is None:
                raise InputError("structure has no energy and forces", source=source, index=k,
                                 hint="give structures with DFT energies and forces (e.g. extxyz)") from None
        try:
            e, f = float(e), np.asarray(f, dtype=float)
        except (TypeError, ValueError):
            raise InputError("energy or forces are not numbers", source=source, index=k,
                             hint="fix or remove the structure") from None
        if f.shape != (len(a), 3):
            raise InputError(f"forces have shape {f.shape}, expected ({len(a)}, 3)", source=source, index=k,
                             hint="give one force vector per atom")
        if not np.isfinite(e) or not np.all(np.isfinite(f)):
            raise InputError(f"{'the energy contains' if not np.isfinite(e) else 'the forces contain'} NaN or inf", source=source,
                             index=k, hint="fix or remove the structure")
        energies.append(e)
        forces.append(f)
    return np.asarray(energies), forces


def _rmse(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


def evaluate_errors(model, frames, energies, forces, batch_atoms=2000, predictions=None):
    """RMSE/MAE of energies per atom (meV/atom) and force components (eV/Å).

    ``model`` may be a committee (its mean is scored); ``predictions``
    (energies, forces) skips the prediction.
    """
    pred_e, pred_f = predictions or as_committee(model).predict(frames, batch_atoms=batch_atoms)
    n = np.array([len(a) for a in frames])
    de = (pred_e - np.asarray(energies)) / n
    df = np.concatenate([(p - f).ravel() for p, f in zip(pred_f, forces)]) if frames else np.zeros(0)
    return {
        "energy_rmse_mev_per_atom": 1000 * _rmse(de),
        "energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(de))),
        "force_rmse_ev_per_ang": _rmse(df),
        "force_mae_ev_per_ang": float(np.mean(np.abs(df))),
        "n_structures": int(len(frames)),
    }


def errors_by_formula(frames, energies, forces, predictions, max_groups=50):
    """:func:`evaluate_errors` per chemical formula of the cell (e.g. ``O14Ti8``), largest energy RMSE first.

    Returns ``{}`` when there are more than ``max_groups`` formulas (a
    breakdown of that size says little).

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> cells = [bulk("Si"), bulk("Si").repeat((2, 1, 1))]
    >>> forces = [np.zeros((2, 3)), np.zeros((4, 3))]
    >>> out = errors_by_formula(cells, [-10.0, -20.0], forces, ([-10.0, -19.996], forces))
    >>> list(out), round(out["Si4"]["energy_rmse_mev_per_atom"], 3)
    (['Si4', 'Si2'], 1.0)
    """
    pred_e, pred_f = predictions
    formulas = np.array([a.get_chemical_formula() for a in frames])
    names = np.unique(formulas)
    if len(names) > max_groups:
        return {}
    energies = np.asarray(energies, dtype=float)
    pred_e = np.asarray(pred_e, dtype=float)
    out = {}
    for name in names:
        idx = np.flatnonzero(formulas == name)
        out[str(name)] = evaluate_errors(None, [frames[k] for k in idx], energies[idx], [forces[k] for k in idx],
                                         predictions=(pred_e[idx], [pred_f[k] for k in idx]))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["energy_rmse_mev_per_atom"]))


def worst_structures(frames, energies, forces, predictions, count=5):
    """The ``count`` structures with the largest energy error per atom, worst first.

    Each is a dict: ``index`` (into ``frames``), ``formula``,
    ``energy_error_mev_per_atom`` (predicted minus reference),
    ``share_of_energy_mse`` (its part of the summed squared energy errors),
    ``force_rmse_ev_per_ang`` and ``max_reference_force_ev_per_ang``. A few
    structures often carry much of an RMSE; these are the ones to look at.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> cells = [bulk("Si"), bulk("Si").repeat((2, 1, 1))]
    >>> forces = [np.zeros((2, 3)), np.zeros((4, 3))]
    >>> out = worst_structures(cells, [-10.0, -20.0], forces, ([-10.002, -19.996], forces), count=1)
    >>> out[0]["index"], round(out[0]["energy_error_mev_per_atom"], 3), round(out[0]["share_of_energy_mse"], 3)
    (0, -1.0, 0.5)
    """
    pred_e, pred_f = predictions
    n = np.array([len(a) for a in frames])
    de = 1000 * (np.asarray(pred_e, dtype=float) - np.asarray(energies, dtype=float)) / n
    total = float(np.sum(de ** 2))
    out = []
    for k in np.argsort(-np.abs(de), kind="stable")[:count]:
        k = int(k)
        out.append({"index": k, "formula": frames[k].get_chemical_formula(),
                    "energy_error_mev_per_atom": float(de[k]),
                    "share_of_energy_mse": float(de[k] ** 2 / total) if total > 0 else 0.0,
                    "force_rmse_ev_per_ang": _rmse(np.asarray(pred_f[k]) - np.asarray(forces[k])),
                    "max_reference_force_ev_per_ang": float(np.abs(forces[k]).max()) if len(forces[k]) else 0.0})
    return out


#: the rules of the training options: a potential recipe's [training] table and the keyword arguments of
#: :func:`train_potential` (None passes where it is the default)
TRAINING = {
    "epochs": integer(1),
    "batch_size": integer(1),
    "patience": integer(1),
    "novelty_references": integer(0, note="0 keeps none"),
    "members": integer(1),
    "jobs": or_none(integer(1)),
    "threads": or_none(integer(1)),
    "seed": integer(0),
    "learning_rate": number(">= 0"),
    "min_learning_rate": number(">= 0"),
    "lr_decay": number("(0, 1]"),
    "energy_weight": number(">= 0"),
    "force_weight": number(">= 0"),
    "stage_two_energy_weight": or_none(number(">= 0")),
    "stage_two_force_weight": or_none(number(">= 0")),
    "valid_fraction": number("[0, 1)"),
    "time_limit": or_none(number("> 0", note="seconds")),
    "max_energy_per_atom": or_none(number(note="eV/atom above the free atoms")),
    "atomic_energies": or_none(Rule("a table of element = energy (eV)",
                                    lambda v: isinstance(v, dict) and all(is_number(x) for x in v.values()))),
    "precompute": boolean(),
    "warm_start": boolean(),
    "restore_best": boolean(),
    "ema_decay": or_none(number("[0, 1)", note="the decay of the moving average of the weights, for example 0.999")),
    "stage_two_start": or_none(number("(0, 1]", note="the fraction of the epochs (or of the time limit) before "
                                                     "the loss weights change")),
}


def check_training_options(options, source=None, hint=None):
    """Raise :class:`~ml4ms.errors.InputError` for the first bad value among training ``options``.

    Only the values are checked (:data:`TRAINING`), so a recipe fails before any data is read.

    Parameters
    ----------
    options : dict
        Keyword arguments of :func:`train_potential` / :func:`train_committee`
        (or a ``[training]`` table); keys without a rule (``groups``,
        ``progress``, ...) pass.
    source : str, optional
        The config file the options came from, for the message.
    hint : str, optional
        What to do about a ``max_energy_per_atom`` without ``atomic_energies``.

    Examples
    --------
    >>> check_training_options({"epochs": 10, "ema_decay": 0.99})
    >>> check_training_options({"epochs": 0})
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: epochs must be a positive integer, got 0
    """
    check({k: v for k, v in options.items() if k in TRAINING}, TRAINING, source)
    if options.get("max_energy_per_atom") is not None and options.get("atomic_energies") is None:
        raise InputError("max_energy_per_atom needs atomic_energies (free-atom energies by element)", source=source,
                         hint=hint or "give atomic_energies, or leave max_energy_per_atom out")
    for stage in ("", "stage_two_"):
        weights = [options.get(f"{stage}{kind}_weight") for kind in ("energy", "force")]
        if all(w is not None for w in weights) and not sum(weights) > 0:
            raise InputError(f"{stage}energy_weight and {stage}force_weight are both 0: there is nothing to fit",
                             source=source, hint="give one of them a positive weight")


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


def _precompute_notice(n_structures, time_limit, progress):
    """The ``on_estimate`` of :class:`JacobianSet`: print the estimate (``progress``); warn if over the time limit."""
    from tqdm.auto import tqdm

    def notice(seconds):
        text, over = precompute_notice(seconds, n_structures, time_limit)
        if over:
            warnings.warn(text, stacklevel=2)
        elif progress:
            tqdm.write(text)

    return notice


def _save_checkpoint(folder, model, best, optimizer, params, state, raw=False):
    from .io import save_potential

    save_potential(os.path.join(folder, "model"), model)
    if best is not None:
        save_potential(os.path.join(folder, "best"), best)
    arrays = {}
    flat = [p for layers in params for p in layers]
    for k, p in enumerate(flat):
        st = optimizer.state.get(p, {})
        if "exp_avg" in st:
            arrays[f"m{k}"] = st["exp_avg"].detach().double().numpy()
            arrays[f"v{k}"] = st["exp_avg_sq"].detach().double().numpy()
            arrays[f"step{k}"] = np.asarray(float(st["step"]))
        if raw:  # the model holds the averaged weights; these are the optimizer's own
            arrays[f"w{k}"] = p.detach().double().numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(os.path.join(folder, OPTIMIZER), buf.getvalue())
    write_json(os.path.join(folder, STATE), state)  # last: marks the checkpoint complete


def _load_optimizer(folder, optimizer, params):
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
                    "exp_avg": torch.as_tensor(npz[f"m{k}"], dtype=p.dtype).clone(),
                    "exp_avg_sq": torch.as_tensor(npz[f"v{k}"], dtype=p.dtype).clone(),
                }
            if f"w{k}" in npz.files:
                with torch.no_grad():
                    p.copy_(torch.as_tensor(npz[f"w{k}"], dtype=p.dtype))


def train_potential(model, frames, energies=None, forces=None, *, epochs=100, batch_size=8, learning_rate=1e-3,
                    lr_decay=0.98, min_learning_rate=1e-5, energy_weight=1.0, force_weight=0.1,
                    valid_fraction=0.1, patience=20, seed=0, max_energy_per_atom=None, atomic_energies=None,
                    checkpoint_dir=None, time_limit=None, progress=True, source="data", threads=1,
                    precompute=True, restore_best=True, groups=None, ema_decay=None, stage_two_start=None,
                    stage_two_energy_weight=None, stage_two_force_weight=None, novelty_references=2000,
                    warm_start=False):
    """Train ``model`` (a :class:`NeuralPotential`) on structures with energies and forces.

    Parameters
    ----------
    model : NeuralPotential
        Initialised here from the training split (unless resuming).
    frames : list of ase.Atoms
    energies, forces : optional
        Total energies (eV) and force arrays (eV/Å); read from the frames if ``None``.
    epochs, batch_size : int
        Passes over the training split; structures per Adam step.
    learning_rate, lr_decay, min_learning_rate : float
        Adam step size, multiplied by ``lr_decay`` (not below the minimum)
        after each epoch.
    energy_weight, force_weight : float
        Loss weights of the energy-per-atom and force-component squared errors.
        ``force_weight=0`` trains on energies only (faster: no second derivatives).
    valid_fraction : float
        Fraction of ``frames`` kept apart for early stopping (0: none, no early stopping).
        Duplicate structures (:func:`ml4ms.duplicates.duplicate_groups`) stay
        on one side of the split.
    groups : array-like of int (n_frames,), optional
        Structures with the same label stay on one side of the validation
        split (for example frames of one MD trajectory); default: duplicate groups.
    patience : int
        Stop after this many epochs without a better validation loss.
    restore_best : bool, default True
        Return the weights of the best validation loss; ``False`` returns the
        last epoch's. With a learning rate decayed to its minimum the last
        weights are converged, and on a small validation set a few unusual
        structures can make an early epoch look best.
    seed : int
        Seeds the split, the shuffles and (through ``model.seed``) nothing else.
    max_energy_per_atom : float, optional
        Exclude structures whose binding energy per atom (relative to
        ``atomic_energies``) is above this (eV/atom), like ænet's MAXENERGY.
    atomic_energies : dict of str -> float, optional
        Free-atom energies (eV) by element symbol, needed by ``max_energy_per_atom``.
    checkpoint_dir : str, optional
        Folder for per-epoch checkpoints; an existing checkpoint is resumed.
    time_limit : float, optional
        Seconds of training after which it stops: the current epoch ends
        early, is validated and checkpointed, and is the last. The clock starts
        with the first epoch of this call: the preparation before it (the
        split, the initialisation and the descriptor Jacobians) is not
        counted. When the Jacobians alone would take longer than the limit
        (estimated from their first passes, :class:`JacobianSet`), a
        ``UserWarning`` says so early; the run goes on, since its training
        still gets the whole limit.
    progress : bool
        tqdm progress bar with train/validation energy (meV/atom) and force (eV/Å) RMSE, and a line with the
        estimated time of the descriptor Jacobians (:func:`precompute_notice`).
    threads : int or None, default 1
        torch intra-op threads during training (restored afterwards); ``None``
        keeps the current setting. Batches of a few hundred atoms gain little
        from threads, and on a shared machine spin-waiting threads can be ~50x slower.
    precompute : bool, default True
        Compute the descriptor and its position Jacobian of every structure
        once (:class:`~ml4ms.potentials.precompute.JacobianSet`) and train
        through the networks only: several times faster, at the memory of
        the Jacobians (float32, ``Σ n_atoms² × n_features × 3`` numbers).
        ``False`` differentiates through the descriptor at every step.
    ema_decay : float, optional
        Keep an exponential moving average of the weights over Adam steps,
        ``w_avg <- d w_avg + (1 - d) w`` with ``d = min(ema_decay, (1 + t) / (10 + t))``
        after step ``t`` (as in MACE's training): validation, checkpoints and
        the returned model use the averaged weights, which smooth out the
        step-to-step noise of mini-batch training. ``None`` (default) keeps the
        last step's weights.
    stage_two_start : float in (0, 1], optional
        Switch the loss weights to ``stage_two_energy_weight`` and
        ``stage_two_force_weight`` (defaults: the first-stage weights) for the
        rest of the run once this fraction of ``epochs``, or of
        ``time_limit``, is spent, as in MACE's two-stage training: a force
        weight that shapes the energy surface early, then mostly the energies
        at the small final learning rates. The validation loss uses the current
        weights, so the best-validation record restarts at the switch.
    novelty_references : int, default 2000
        Training environments per element that the returned model keeps
        (:meth:`~ml4ms.potentials.model.NeuralPotential.fit_novelty`), so it can
        tell how far a structure lies from its training data; 0 keeps none.
    warm_start : bool, default False
        Continue from ``model``'s fitted weights, descriptor standardisation
        and reference energies instead of initialising it from the training
        split: fine-tuning on a training set that grew (for example by the
        structures ``ml4ms potential select`` chose and DFT labelled). The
        model's elements must include those of ``frames``; its reference
        environments are replaced by those of ``frames``. ``model`` itself is
        left as it was. The validation split is drawn anew over ``frames``, so
        it can hold structures the model was trained on before: its errors
        are then optimistic, and only the test set says how good it is.

    Returns
    -------
    model : NeuralPotential
        With the best-validation weights (the last ones with ``restore_best=False``)
        and a record ``training_``: ``epochs`` (done, resumed ones included),
        ``n_train``, ``n_val``, ``n_excluded``, ``best_val_loss``,
        ``stopped_by`` (``"epochs"``, ``"patience"`` or ``"time_limit"``:
        :func:`stop_reason`), the limits ``epoch_limit``, ``patience``
        (``None`` without validation) and ``time_limit_seconds``, and the
        seconds of this call: ``training_seconds`` (what the time limit
        counts), ``preparation_seconds`` (everything before the first epoch)
        and ``precompute_seconds`` (its descriptor Jacobians; ``None`` without).
    history : list of dict
        Per epoch: ``epoch``, ``lr``, ``train_energy_rmse``, ``train_force_rmse``,
        ``val_energy_rmse``, ``val_force_rmse``, ``val_loss``, ``seconds``, ``stage`` (1 or 2).
    """
    check_training_options(dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_decay=lr_decay,
                                min_learning_rate=min_learning_rate, energy_weight=energy_weight,
                                force_weight=force_weight, valid_fraction=valid_fraction, patience=patience,
                                seed=seed, max_energy_per_atom=max_energy_per_atom, atomic_energies=atomic_energies,
                                time_limit=time_limit, threads=threads, precompute=precompute,
                                restore_best=restore_best, ema_decay=ema_decay, stage_two_start=stage_two_start,
                                stage_two_energy_weight=stage_two_energy_weight,
                                stage_two_force_weight=stage_two_force_weight,
                                novelty_references=novelty_references, warm_start=warm_start))
    torch = _torch()
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _train(model, frames, energies, forces, epochs, batch_size, learning_rate, lr_decay,
                      min_learning_rate, energy_weight, force_weight, valid_fraction, patience, seed,
                      max_energy_per_atom, atomic_energies, checkpoint_dir, time_limit, progress, source,
                      precompute, restore_best, groups, ema_decay,
                      (stage_two_start, stage_two_energy_weight, stage_two_force_weight), novelty_references,
                      warm_start)
    finally:
        torch.set_num_threads(previous)


def _fingerprint(model):
    """A short hash of a fitted potential's weights: which model a warm-started checkpoint continues."""
    import hashlib

    digest = hashlib.sha256()
    for layers in model.weights_:
        for w in layers:
            digest.update(np.ascontiguousarray(w, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def _check_warm_start(model, frames, source):
    """A warm start needs a fitted potential that knows every element of ``frames``."""
    if not hasattr(model, "weights_"):
        raise InputError("warm_start needs a fitted potential to continue from", source=source,
                         hint="train it first, or set warm_start=False")
    try:
        model._check_species(frames)
    except InputError as exc:
        raise InputError(exc.message, source=source, index=exc.index,
                         hint="a warm start keeps the potential's elements: train a new potential") from None


def _train(model, frames, energies, forces, epochs, batch_size, learning_rate, lr_decay, min_learning_rate,
           energy_weight, force_weight, valid_fraction, patience, seed, max_energy_per_atom, atomic_energies,
           checkpoint_dir, time_limit, progress, source, precompute, restore_best, groups, ema_decay, stage_two,
           novelty_references, warm_start):
    torch = _torch()
    from tqdm.auto import tqdm

    from .io import load_potential

    t_call = time.time()
    frames = list(frames)
    if energies is None or forces is None:
        energies, forces = labels_of(frames, source)
    energies = np.asarray(energies, dtype=float)
    if len(frames) != len(energies) or len(frames) != len(forces):
        raise InputError("frames, energies and forces differ in length", source=source)
    if groups is not None and len(groups) != len(frames):
        raise InputError(f"groups has {len(groups)} labels for {len(frames)} structures", source=source)
    stage_two_start = stage_two[0]
    weights_two = (energy_weight if stage_two[1] is None else float(stage_two[1]),
                   force_weight if stage_two[2] is None else float(stage_two[2]))
    start = None
    if warm_start:  # before the slow steps: a model that cannot continue on these frames fails at once
        _check_warm_start(model, frames, source)
        start = _fingerprint(model)
    keep = np.arange(len(frames))
    if max_energy_per_atom is not None:  # with atomic_energies (check_training_options)
        eb = binding_energy_per_atom(frames, energies, atomic_energies)
        keep = keep[eb <= float(max_energy_per_atom)]
    if len(keep) < 2:
        raise InputError(f"fewer than 2 structures left to train on (of {len(frames)}"
                         + (f", after max_energy_per_atom = {max_energy_per_atom:g}" if len(keep) < len(frames) else "")
                         + ")", source=source, hint="a potential needs many labelled structures: give more"
                         + (", or raise max_energy_per_atom" if len(keep) < len(frames) else ""))
    if valid_fraction > 0:
        # duplicates (found here, or the caller's groups) stay on one side of the split
        sub = duplicate_groups([frames[k] for k in keep], progress=progress) if groups is None \
            else np.asarray(groups)[keep]
        if len(np.unique(sub)) < 2:
            raise InputError("fewer than 2 distinct structures (or groups) to split into training and validation",
                             source=source, hint="add structures, or set valid_fraction = 0")
        tr, va = group_train_test_split(sub, valid_fraction, random_state=seed)
        train_idx, val_idx = keep[tr], keep[va]
    else:
        train_idx, val_idx = keep, keep[:0]

    state = None
    if checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, STATE)):
        with open(os.path.join(checkpoint_dir, STATE), encoding="utf-8") as handle:
            state = json.load(handle)
        if state.get("n_frames") != len(frames) or state.get("train_idx") != train_idx.tolist():
            raise InputError("checkpoint is from other data or another split", source=checkpoint_dir,
                             hint="use a new checkpoint folder (a new -o, or --checkpoint)")
        if state.get("start") != start:
            raise InputError("checkpoint is of a run that started "
                             + ("from another potential" if state.get("start") else "anew, not from a potential"),
                             source=checkpoint_dir, hint="use a new checkpoint folder (a new -o, or --checkpoint)")
        saved = load_potential(os.path.join(checkpoint_dir, "model"))

        def same(v):  # tuples and lists alike
            return json.loads(json.dumps(v, default=str))

        changed = ", ".join(sorted(k for k, v in model.get_params().items() if same(saved.get_params()[k]) != same(v)))
        if changed:
            raise InputError(f"checkpoint was written with other model settings ({changed})", source=checkpoint_dir,
                             hint="use a new checkpoint folder, or the settings it was started with")
        model = saved
        best = load_potential(os.path.join(checkpoint_dir, "best")) if state.get("has_best") else None
    elif warm_start:
        model = copy.deepcopy(model)  # the caller's potential stays as it was
        for name in ("novelty_references_", "novelty_scale_"):  # they describe the old training data
            model.__dict__.pop(name, None)
        best = None
    else:
        model.initialize([frames[k] for k in train_idx], energies[train_idx])
        best = None
    dt = torch_dtype(model.dtype)
    params = model.torch_parameters(requires_grad=True)
    flat = [p for layers in params for p in layers]
    optimizer = torch.optim.Adam(flat, lr=learning_rate)
    # the moving average starts from the weights (of a resumed run: the saved average)
    averaged = model.torch_parameters(requires_grad=False) if ema_decay is not None else None
    ema_steps = 0
    in_stage_two = False
    start_epoch, history = 0, []
    best_loss, stale = float("inf"), 0
    lr = float(learning_rate)
    if state is not None:
        _load_optimizer(checkpoint_dir, optimizer, params)
        start_epoch, history = int(state["epoch"]), state["history"]
        best_loss, stale, lr = float(state["best_loss"]), int(state["stale"]), float(state["lr"])
        ema_steps = int(state.get("ema_steps", 0))
        in_stage_two = bool(state.get("stage_two", False))
    weights = averaged if averaged is not None else params  # what validation, checkpoints and the result use

    # neighbour lists once per structure; batches concatenate them
    cache = {}

    def batch(indices):
        for k in indices:
            if int(k) not in cache:
                cache[int(k)] = model.tensors([frames[k]])
        t = AtomsBatch.concat(cache[int(k)] for k in indices)
        counts = t.counts.numpy()
        e_ref = torch.as_tensor(energies[indices], dtype=torch.float64)  # totals ~1e4 eV: float64, as predicted
        f_ref = torch.as_tensor(np.concatenate([forces[k] for k in indices]), dtype=dt)
        return t, e_ref, f_ref, torch.as_tensor(counts, dtype=torch.float64)

    jac = precompute_seconds = None
    if precompute:
        used = np.concatenate([train_idx, val_idx])
        t0 = time.time()
        notice = _precompute_notice(len(used), time_limit, progress) if progress or time_limit is not None else None
        jac = JacobianSet(model, [frames[k] for k in used], energies[used], [forces[k] for k in used],
                          progress=progress, on_estimate=notice)
        precompute_seconds = time.time() - t0
        position = np.empty(len(frames), dtype=np.int64)
        position[used] = np.arange(len(used))

    def errors(idx, use_f, create_graph, w):
        """Energy errors per atom (b,) and force errors (flattened) of a batch with weights ``w``."""
        if jac is None:
            t, e_ref, f_ref, n = batch(idx)
            e, F, _ = model.energies_forces(t, w, forces=use_f, create_graph=create_graph)
            return (e - e_ref) / n, (F - f_ref if use_f else None)
        parts = jac.groups(position[idx])
        e, F = jac.energies_forces(model, w, parts, forces=use_f, create_graph=create_graph)
        de = torch.cat([(ei - jac.residual[position[idx][w]]) / blk["n"] for (blk, _, w), ei in zip(parts, e)])
        df = torch.cat([(Fi - blk["forces"][slots]).reshape(-1) for (blk, slots, _), Fi in zip(parts, F)]) \
            if use_f else None
        return de, df

    def run_epoch(indices, train):
        nonlocal ema_steps, cut
        se_e = se_f = 0.0
        n_e = n_f = 0
        for b0 in range(0, len(indices), batch_size):
            if train and b0 and time_limit is not None and time.time() - t_start > time_limit:
                cut = True
                break  # out of time: this partial epoch is the last
            idx = indices[b0:b0 + batch_size]
            use_f = w_f > 0 or not train
            de, df = errors(idx, use_f, train and w_f > 0, params if train else weights)
            loss_e = (de ** 2).mean()
            loss = w_e * loss_e
            if use_f:
                loss_f = (df ** 2).mean()
                loss = loss + w_f * loss_f
                se_f += float(loss_f.detach()) * df.numel()
                n_f += df.numel()
            if train:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if averaged is not None:
                    d = min(float(ema_decay), (1.0 + ema_steps) / (10.0 + ema_steps))
                    with torch.no_grad():
                        for a, p in zip(averaged_flat, flat):
                            a.mul_(d).add_(p, alpha=1.0 - d)
                    ema_steps += 1
            se_e += float(loss_e.detach()) * len(idx)
            n_e += len(idx)
            if train:
                bar.update(1)
                f_txt = f"{np.sqrt(se_f / n_f):.3f}" if n_f else "-"
                bar.set_postfix_str(f"epoch {epoch + 1}: train E {1000 * np.sqrt(se_e / n_e):.2f} meV/atom "
                                    f"F {f_txt} eV/Å | val {last_val}")
        e_rmse = float(1000 * np.sqrt(se_e / max(n_e, 1)))
        f_rmse = float(np.sqrt(se_f / n_f)) if n_f else float("nan")
        return e_rmse, f_rmse

    averaged_flat = [a for layers in averaged for a in layers] if averaged is not None else None
    n_batches = -(-len(train_idx) // batch_size)
    bar = tqdm(total=epochs * n_batches, initial=start_epoch * n_batches, disable=not progress,
               desc="fit potential", unit="batch")
    epoch = start_epoch
    last_val = "-"
    cut = False
    t_start = time.time()  # the time limit counts training only, not the preparation and precomputation above
    try:
        while epoch < epochs:
            t0 = time.time()
            if stage_two_start is not None and not in_stage_two and (
                    epoch >= stage_two_start * epochs
                    or (time_limit is not None and t0 - t_start >= stage_two_start * time_limit)):
                in_stage_two, best_loss, stale = True, float("inf"), 0  # a new loss: a new best record
            w_e, w_f = weights_two if in_stage_two else (energy_weight, force_weight)
            for g in optimizer.param_groups:
                g["lr"] = lr
            order = np.random.default_rng([seed, epoch]).permutation(train_idx)
            tr_e, tr_f = run_epoch(order, True)
            model.set_parameters(weights)
            if len(val_idx):
                va_e, va_f = run_epoch(val_idx, False)
                val_loss = w_e * (va_e / 1000) ** 2 + w_f * va_f ** 2
            else:
                va_e = va_f = float("nan")
                val_loss = w_e * (tr_e / 1000) ** 2 + (w_f * tr_f ** 2 if w_f > 0 else 0)
            if val_loss < best_loss:
                best_loss, stale = float(val_loss), 0
                best = model.__class__(**model.get_params()).set_params()
                best.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
            else:
                stale += 1
            epoch += 1
            history.append({"epoch": epoch, "lr": lr, "train_energy_rmse": tr_e, "train_force_rmse": tr_f,
                            "val_energy_rmse": va_e, "val_force_rmse": va_f, "val_loss": float(val_loss),
                            "seconds": time.time() - t0, "stage": 2 if in_stage_two else 1})
            lr = max(lr * lr_decay, min_learning_rate)
            last_val = f"E {va_e:.2f} meV/atom F {va_f:.3f} eV/Å"
            if checkpoint_dir:
                _save_checkpoint(checkpoint_dir, model, best, optimizer, params, {
                    "epoch": epoch, "history": history, "best_loss": best_loss, "stale": stale, "lr": lr,
                    "has_best": best is not None, "n_frames": len(frames), "train_idx": train_idx.tolist(),
                    "val_idx": val_idx.tolist(), "ema_steps": ema_steps, "start": start,
                    "stage_two": in_stage_two}, raw=averaged is not None)
            if len(val_idx) and stale >= patience:
                break
            if time_limit is not None and time.time() - t_start > time_limit:
                cut = cut or epoch < epochs
                break
    finally:
        bar.close()
    t_end = time.time()
    result = best if best is not None and restore_best else model
    result.training_ = {"epochs": epoch, "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                        "n_excluded": int(len(frames) - len(keep)), "best_val_loss": float(best_loss),
                        "stopped_by": stop_reason(epoch, epochs, stale, patience if len(val_idx) else None, cut),
                        "epoch_limit": int(epochs), "patience": int(patience) if len(val_idx) else None,
                        "time_limit_seconds": None if time_limit is None else float(time_limit),
                        "training_seconds": t_end - t_start, "preparation_seconds": t_start - t_call,
                        "precompute_seconds": precompute_seconds}
    if novelty_references:
        try:
            result.fit_novelty([frames[k] for k in train_idx], int(novelty_references))
        except InputError as exc:  # never lose a trained model to its novelty
            warnings.warn(f"the potential keeps no reference environments (no novelty): {exc.message}; {exc.hint}",
                          stacklevel=2)
    return result, history


def _read_state(folder):
    """The ``state.json`` of a checkpoint folder, or ``None`` (none yet, or unreadable)."""
    try:
        with open(os.path.join(folder, STATE), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _member_status(folder):
    """``(epoch, "val E/F")`` from a member's checkpoint (``None`` before its first epoch)."""
    try:
        last = _read_state(folder)["history"][-1]
    except (TypeError, KeyError, IndexError):
        return None
    return last["epoch"], f"{last['val_energy_rmse']:.2f}/{last['val_force_rmse']:.3f}"


def checkpoint_epochs(folder):
    """The finished epochs that a checkpoint folder holds: ``{"": E}`` for one potential's run,
    ``{"member0": E0, ...}`` for a committee's (:func:`train_committee`), ``{}`` for none.

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
    state = _read_state(folder)
    if state is not None:
        return {"": int(state.get("epoch", 0))}
    out = {}
    names = sorted(os.listdir(folder), key=lambda n: (len(n), n)) if os.path.isdir(folder) else []
    for name in names:
        state = _read_state(os.path.join(folder, name)) if name.startswith("member") else None
        if state is not None:
            out[name] = int(state.get("epoch", 0))
    return out


def _train_member(quiet, *args, **kwargs):
    """:func:`train_potential` in a committee's worker process, its warnings on one line each; ``quiet``: without
    the precomputation's (every member precomputes the same structures: member 0 says it once)."""
    with one_line_warnings():
        if quiet:
            warnings.filterwarnings("ignore", message="descriptor Jacobians")
        return train_potential(*args, **kwargs)


def train_committee(model, frames, energies=None, forces=None, *, members=2, jobs=None, checkpoint_dir=None,
                    progress=True, seed=0, **kwargs):
    """Train a committee of ``members`` potentials, in parallel processes.

    Member *k* is ``model`` with weight seed ``model.seed + k``, trained by
    :func:`train_potential` with ``seed + k``: its own validation split,
    shuffles and initial weights, so the members differ as a committee's
    should. Their mean is the committee's prediction and their spread its
    uncertainty (:class:`~ml4ms.potentials.calculator.NeuralPotentialCalculator`).
    On a machine with as many cores as members, members with ``threads=1``
    in parallel train about as many epochs in the same wall time as one
    model on all cores (small batches gain little from threads).

    Parameters
    ----------
    model : NeuralPotential or list of NeuralPotential
        The template of the members; with ``warm_start=True`` (in
        ``kwargs``) a fitted committee, each member continuing from its own
        weights (``members`` is then its length).
    frames, energies, forces
        As in :func:`train_potential`.
    members : int, default 2
    jobs : int, optional
        Processes at once (default: ``members``). With 1 the members train
        one after the other in this process.
    checkpoint_dir : str, optional
        Member *k* checkpoints in ``checkpoint_dir/member<k>`` (resumed if
        present). Without it, a temporary folder holds the checkpoints that
        the progress bar reads.
    progress : bool
        One tqdm bar over the members' epochs, with each member's latest
        validation energy (meV/atom) / force (eV/Å) RMSE.
    seed : int
        Training seed of member 0.
    **kwargs
        Further arguments of :func:`train_potential`. ``time_limit`` applies
        to every member's training (after its own preparation). ``threads`` is the total: with ``jobs`` processes at
        once each gets ``max(1, threads // jobs)``.

    Returns
    -------
    models : Committee
    histories : list of list of dict

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ml4ms.potentials import NeuralPotential
    >>> cells = [bulk("MgO", "rocksalt", a=4.1 + 0.05 * k) for k in range(4)]
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> models, _ = train_committee(m, cells, [-10.0, -10.2, -10.3, -10.25], [np.zeros((2, 3))] * 4,
    ...                             members=2, jobs=1, epochs=2, batch_size=2, valid_fraction=0.25, progress=False)
    >>> len(models), models[1].seed - models[0].seed
    (2, 1)
    """
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    check_training_options(dict(kwargs, members=members, jobs=jobs, seed=seed))
    if isinstance(model, (Committee, list, tuple)):
        if not kwargs.get("warm_start"):
            raise InputError("a committee is given to continue: set warm_start=True")
        members = len(model)
        clones = [copy.deepcopy(m) for m in as_committee(model)]  # copies: the caller's are left as they were
    else:
        clones = [model.__class__(**model.get_params()).set_params(seed=int(model.seed) + k) for k in range(members)]
    jobs = int(members if jobs is None else jobs)
    temporary = None
    if checkpoint_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="ml4ms-committee-")
        checkpoint_dir = temporary.name
    folders = [os.path.join(checkpoint_dir, f"member{k}") for k in range(members)]
    if jobs > 1 and kwargs.get("threads", 1) is not None:
        kwargs = dict(kwargs, threads=max(1, int(kwargs.get("threads", 1)) // min(jobs, members)))
    calls = [dict(kwargs, seed=int(seed) + k, checkpoint_dir=folders[k]) for k in range(members)]
    try:
        if jobs == 1:
            out = [train_potential(m, frames, energies, forces, progress=progress, **c) for m, c in zip(clones, calls)]
        else:
            epochs = int(kwargs.get("epochs", 100))
            bar = tqdm(total=members * epochs, disable=not progress, desc=f"fit committee of {members}",
                       unit="epoch")
            # spawn, not fork: a forked torch process can hang on the parent's thread pools
            with ProcessPoolExecutor(max_workers=min(jobs, members), mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_train_member, k > 0, m, frames, energies, forces, **dict(c, progress=False))
                           for k, (m, c) in enumerate(zip(clones, calls))]
                pending = set(futures)
                while pending:
                    _, pending = wait(pending, timeout=5.0, return_when=FIRST_COMPLETED)
                    status = [_member_status(f) for f in folders]
                    done = sum(s[0] if s else 0 for s in status)
                    bar.update(done - bar.n)
                    bar.set_postfix_str("val E/F " + " | ".join(s[1] if s else "-" for s in status))
                out = [f.result() for f in futures]
            bar.close()
    finally:
        if temporary is not None:
            temporary.cleanup()
    return Committee([m for m, _ in out]), [h for _, h in out]


def read_config(path=None, doc=None):
    """A potential recipe (TOML) -> ``(NeuralPotential, training keyword arguments)``.

    Tables: ``[model]`` (the parameters of :class:`~ml4ms.potentials.model.NeuralPotential`: descriptor, hidden,
    dtype, seed, cell_mean, linear), ``[descriptor]`` (settings of the descriptor) and
    ``[training]`` (arguments of :func:`train_potential`, :data:`TRAINING`; ``atomic_energies`` a table of
    element -> eV). Unknown tables and keys, and wrong values, fail here, before any data is read.

    Parameters
    ----------
    path : str, optional
        A TOML file or the name of a bundled recipe (``"tio2_potential"``; :func:`ml4ms.config.read_toml`).
    doc : dict, optional
        The parsed document instead of a file.

    Examples
    --------
    >>> m, kw = read_config(doc={"model": {"hidden": [8]}, "training": {"epochs": 3}})
    >>> m.hidden, kw
    ([8], {'epochs': 3})
    >>> read_config("tio2_committee")[1]["members"]
    3
    """
    from .model import NeuralPotential

    source = "config"
    if doc is None:
        doc, source = read_toml(path)
    model_keys = [p for p in NeuralPotential._get_param_names() if p != "descriptor_params"]
    training_keys = {k: rule for k, rule in TRAINING.items() if k != "warm_start"}  # --init sets it
    check(doc, {"model": dict.fromkeys(model_keys, ANY), "descriptor": any_keys(ANY), "training": training_keys},
          source)
    training = dict(doc.get("training", {}))
    check_training_options(training, source=source, hint="fix it in [training]")
    model = NeuralPotential(descriptor_params=dict(doc.get("descriptor", {})) or None, **doc.get("model", {}))
    try:
        model.check_settings()
    except InputError as exc:
        raise InputError(exc.message, source=source,
                         hint=exc.hint or "fix it in the [model] or [descriptor] table") from None
    return model, training
