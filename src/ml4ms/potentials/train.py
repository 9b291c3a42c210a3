"""Training potentials: the entry points, with the training options as keyword arguments, and recipes.

:func:`train_potential` trains one :class:`~ml4ms.potentials.model.NeuralPotential`
and :func:`train_committee` a committee, on energies and forces; their
keyword arguments are the fields of :class:`~ml4ms.potentials.options.TrainingOptions`,
checked before any data is read. :func:`read_config` reads a potential recipe
(TOML). The work is done elsewhere: the loop in :mod:`ml4ms.potentials.loop`,
checkpoints in :mod:`ml4ms.potentials.checkpoint`, the committee's processes
in :mod:`ml4ms.potentials.committee_runner`, and the labels and error
metrics in :mod:`ml4ms.potentials.metrics`.
"""

from ..config import ANY, any_keys, check, read_toml
from ..errors import InputError
from .committee_runner import run_committee
from .loop import run_training
from .model import NeuralPotential
from .options import TRAINING, TrainingOptions, check_training_options


def train_potential(model, frames, energies=None, forces=None, *, groups=None, checkpoint_dir=None, progress=True,
                    source="data", **options):
    """Train ``model`` (a :class:`NeuralPotential`) on structures with energies and forces.

    Parameters
    ----------
    model : NeuralPotential
        Initialised here from the training split (unless resuming, or with ``warm_start``).
    frames : list of ase.Atoms
    energies, forces : optional
        Total energies (eV) and force arrays (eV/Å); read from the frames if ``None``.
    groups : array-like of int (n_frames,), optional
        Structures with the same label stay on one side of the validation
        split (for example frames of one MD trajectory); default: duplicate groups.
    checkpoint_dir : str, optional
        Folder for per-epoch checkpoints (:mod:`ml4ms.potentials.checkpoint`); an existing checkpoint is resumed.
    progress : bool
        tqdm progress bar with train/validation energy (meV/atom) and force (eV/Å) RMSE, and a line with the
        estimated time of the descriptor Jacobians (:func:`~ml4ms.potentials.loop.precompute_notice`).
    source : str
        The name of the data, for messages.
    **options
        The training options, :class:`~ml4ms.potentials.options.TrainingOptions`: ``epochs``,
        ``batch_size``, ``learning_rate``, ``lr_decay``, ``min_learning_rate``, ``energy_weight``,
        ``force_weight``, ``valid_fraction``, ``patience``, ``seed``, ``max_energy_per_atom``,
        ``atomic_energies``, ``time_limit``, ``threads``, ``precompute``, ``restore_best``, ``ema_decay``,
        ``stage_two_start``, ``stage_two_energy_weight``, ``stage_two_force_weight``,
        ``novelty_references`` and ``warm_start``.

    Returns
    -------
    model : NeuralPotential
        With the best-validation weights (the last ones with ``restore_best=False``)
        and a record ``training_``: ``epochs`` (done, resumed ones included),
        ``n_train``, ``n_val``, ``n_excluded``, ``best_val_loss``,
        ``stopped_by`` (``"epochs"``, ``"patience"`` or ``"time_limit"``:
        :func:`~ml4ms.potentials.loop.stop_reason`), the limits ``epoch_limit``, ``patience``
        (``None`` without validation) and ``time_limit_seconds``, and the
        seconds of this call: ``training_seconds`` (what the time limit
        counts), ``preparation_seconds`` (everything before the first epoch)
        and ``precompute_seconds`` (its descriptor Jacobians; ``None`` without).
    history : list of dict
        Per epoch: ``epoch``, ``lr``, ``train_energy_rmse``, ``train_force_rmse``,
        ``val_energy_rmse``, ``val_force_rmse``, ``val_loss``, ``seconds``, ``stage`` (1 or 2).

    Raises
    ------
    InputError
        A bad option (before any work), or data that cannot be trained on.
    """
    return run_training(model, frames, energies, forces, TrainingOptions(**options), groups=groups,
                        checkpoint_dir=checkpoint_dir, progress=progress, source=source)


def train_committee(model, frames, energies=None, forces=None, *, members=2, jobs=None, checkpoint_dir=None,
                    progress=True, groups=None, source="data", **options):
    """Train a committee of ``members`` potentials, in parallel processes.

    Member *k* is ``model`` with weight seed ``model.seed + k``, trained as by
    :func:`train_potential` with ``seed + k``: its own validation split,
    shuffles and initial weights, so the members differ as a committee's
    should. Their mean is the committee's prediction and their spread its
    uncertainty (:class:`~ml4ms.potentials.calculator.NeuralPotentialCalculator`).
    On a machine with as many cores as members, members with ``threads=1``
    in parallel train about as many epochs in the same wall time as one
    model on all cores (small batches gain little from threads).

    Parameters
    ----------
    model : NeuralPotential or Committee
        The template of the members; with ``warm_start=True`` a fitted
        committee, each member continuing from its own weights (``members``
        is then its length).
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
    groups, source
        As in :func:`train_potential`.
    **options
        The training options of :func:`train_potential`; ``seed`` is member 0's. ``time_limit`` applies
        to every member's training (after its own preparation). ``threads`` is the total: with ``jobs``
        processes at once each gets ``max(1, threads // jobs)``.

    Returns
    -------
    models : Committee
    histories : list of list of dict

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> cells = [bulk("MgO", "rocksalt", a=4.1 + 0.05 * k) for k in range(4)]
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> models, _ = train_committee(m, cells, [-10.0, -10.2, -10.3, -10.25], [np.zeros((2, 3))] * 4,
    ...                             members=2, jobs=1, epochs=2, batch_size=2, valid_fraction=0.25, progress=False)
    >>> len(models), models[1].seed - models[0].seed
    (2, 1)
    """
    return run_committee(model, frames, energies, forces, TrainingOptions(**options), members=members, jobs=jobs,
                         checkpoint_dir=checkpoint_dir, progress=progress, groups=groups, source=source)


def read_config(path=None, doc=None):
    """A potential recipe (TOML) -> ``(NeuralPotential, training keyword arguments)``.

    Tables: ``[model]`` (the parameters of :class:`~ml4ms.potentials.model.NeuralPotential`: descriptor, hidden,
    dtype, seed, cell_mean, linear), ``[descriptor]`` (settings of the descriptor) and
    ``[training]`` (the options of :func:`train_potential` and :func:`train_committee`,
    :data:`~ml4ms.potentials.options.TRAINING`; ``atomic_energies`` a table of element -> eV). Unknown tables
    and keys, and wrong values, fail here, before any data is read.

    Parameters
    ----------
    path : str, optional
        A TOML file or the name of a bundled recipe (``"tio2_potential"``; :func:`ml4ms.config.read_toml`).
    doc : dict, optional
        The parsed document instead of a file.

    Returns
    -------
    model : NeuralPotential
    training : dict
        The ``[training]`` table as it is written: keyword arguments of :func:`train_potential` (and, for a
        committee, ``members`` and ``jobs`` of :func:`train_committee`).

    Examples
    --------
    >>> m, kw = read_config(doc={"model": {"hidden": [8]}, "training": {"epochs": 3}})
    >>> m.hidden, kw
    ([8], {'epochs': 3})
    >>> read_config("tio2_committee")[1]["members"]
    3
    """
    source = "config"
    if doc is None:
        doc, source = read_toml(path)
    check(doc, recipe_schema(), source)
    return potential_from_doc(doc, source)


def recipe_schema():
    """The tables of a potential recipe (:func:`ml4ms.config.check`): ``[model]``, ``[descriptor]``, ``[training]``.

    ``warm_start`` is no recipe key: the caller sets it (``--init``, or a loop that continues a committee).

    Examples
    --------
    >>> sorted(recipe_schema())
    ['descriptor', 'model', 'training']
    """
    model_keys = [p for p in NeuralPotential._get_param_names() if p != "descriptor_params"]
    training_keys = {k: rule for k, rule in TRAINING.items() if k != "warm_start"}
    return {"model": dict.fromkeys(model_keys, ANY), "descriptor": any_keys(ANY), "training": training_keys}


def potential_from_doc(doc, source="config", where=""):
    """``(NeuralPotential, training keyword arguments)`` of a potential recipe checked by :func:`recipe_schema`.

    ``where`` is the recipe's place in its file (``"recipe."`` for a ``[recipe]`` table), for the messages.

    Examples
    --------
    >>> m, kw = potential_from_doc({"model": {"hidden": [4]}, "training": {"members": 2}})
    >>> m.hidden, kw
    ([4], {'members': 2})
    """
    training = dict(doc.get("training", {}))
    check_training_options(training, source=source, hint=f"fix it in [{where}training]")
    model = NeuralPotential(descriptor_params=dict(doc.get("descriptor", {})) or None, **doc.get("model", {}))
    try:
        model.check_settings()
    except InputError as exc:
        raise InputError(exc.message, source=source,
                         hint=exc.hint or f"fix it in the [{where}model] or [{where}descriptor] table") from None
    return model, training
