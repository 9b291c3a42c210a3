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

from ..config import ANY, any_keys, check, read_toml, string
from ..errors import InputError
from .committee_runner import run_committee
from .loop import run_training
from .model import NeuralPotential
from .options import TRAINING, TrainingOptions, check_training_options


def train_potential(model, frames, energies=None, forces=None, *, groups=None, checkpoint_dir=None, progress=True,
                    source="data", **options):
    """Train ``model`` (a potential of any kind: :class:`NeuralPotential`,
    :class:`~ml4ms.potentials.message_passing.MessagePassingPotential`) on structures with energies and forces.

    Parameters
    ----------
    model : NeuralPotential or MessagePassingPotential
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


def recipe_kinds():
    """The kinds a recipe's ``[model] kind`` names: name -> estimator class (the registered kinds,
    :func:`~ml4ms.potentials.io.model_kinds`).

    Examples
    --------
    >>> sorted(recipe_kinds())
    ['descriptor_network', 'message_passing']
    """
    from .io import model_kinds

    return {estimator.recipe_kind: estimator for _, estimator in model_kinds().values()}


def read_config(path=None, doc=None):
    """A potential recipe (TOML) -> ``(potential, training keyword arguments)``.

    Tables: ``[model]``: ``kind`` (``"descriptor_network"``, the default: a
    :class:`~ml4ms.potentials.model.NeuralPotential`; or ``"message_passing"``: a
    :class:`~ml4ms.potentials.message_passing.MessagePassingPotential`; :func:`recipe_kinds`) and the parameters
    of that kind's estimator (descriptor network: descriptor, hidden, dtype, seed, device, cell_mean, linear;
    message passing: r_cut, features, interactions, radial_basis, dtype, seed, device), ``[descriptor]``
    (settings of the descriptor; the descriptor network only) and ``[training]`` (the options of
    :func:`train_potential` and :func:`train_committee`, :data:`~ml4ms.potentials.options.TRAINING`;
    ``atomic_energies`` a table of element -> eV; ``precompute = true`` only for a kind that has that path).
    Unknown tables and keys, and wrong values, fail here, before any data is read.

    Parameters
    ----------
    path : str, optional
        A TOML file or the name of a bundled recipe (``"tio2_potential"``; :func:`ml4ms.config.read_toml`).
    doc : dict, optional
        The parsed document instead of a file.

    Returns
    -------
    model : NeuralPotential or MessagePassingPotential
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
    >>> type(read_config(doc={"model": {"kind": "message_passing", "features": 16}})[0]).__name__
    'MessagePassingPotential'
    """
    source = "config"
    if doc is None:
        doc, source = read_toml(path)
    check(doc, recipe_schema(doc, source), source)
    return potential_from_doc(doc, source)


def recipe_schema(doc=None, source="config", where=""):
    """The tables of a potential recipe (:func:`ml4ms.config.check`): ``[model]`` (``kind`` and that kind's
    estimator's parameters), ``[descriptor]`` (the descriptor network's only) and ``[training]``.

    ``doc`` (the recipe) says the kind (the default: the descriptor network; a wrong kind is a one-line error);
    ``where`` is the recipe's place in its file (``"recipe."`` for a ``[recipe]`` table), for the messages.
    ``warm_start`` is no recipe key: the caller sets it (``--init``, or a loop that continues a committee).

    Examples
    --------
    >>> sorted(recipe_schema())
    ['descriptor', 'model', 'training']
    >>> sorted(recipe_schema({"model": {"kind": "message_passing"}}))
    ['model', 'training']
    """
    params = _estimator_of(doc or {}, source, where)._get_param_names()
    training_keys = {k: rule for k, rule in TRAINING.items() if k != "warm_start"}
    schema = {"model": dict.fromkeys(["kind"] + [p for p in params if p != "descriptor_params"], ANY),
              "training": training_keys}
    if "descriptor_params" in params:  # the [descriptor] table is the descriptor network's
        schema["descriptor"] = any_keys(ANY)
    return schema


def _estimator_of(doc, source="config", where=""):
    """The estimator class of the kind a recipe's ``[model] kind`` names (one-line error for another name)."""
    kinds = recipe_kinds()
    table = doc.get("model", {})
    kind = table.get("kind", NeuralPotential.recipe_kind) if isinstance(table, dict) else NeuralPotential.recipe_kind
    check({"kind": kind}, {"kind": string(*sorted(kinds))}, source, tuple(f"{where}model".split(".")))
    return kinds[kind]


def potential_from_doc(doc, source="config", where=""):
    """``(potential, training keyword arguments)`` of a potential recipe checked by :func:`recipe_schema`.

    ``where`` is the recipe's place in its file (``"recipe."`` for a ``[recipe]`` table), for the messages.

    Examples
    --------
    >>> m, kw = potential_from_doc({"model": {"hidden": [4]}, "training": {"members": 2}})
    >>> m.hidden, kw
    ([4], {'members': 2})
    """
    estimator = _estimator_of(doc, source, where)
    training = dict(doc.get("training", {}))
    check_training_options(training, source=source, hint=f"fix it in [{where}training]")
    if training.get("precompute") and not estimator.has_precompute:
        raise InputError(f"precompute = true, but the {estimator.recipe_kind} kind has no precomputed descriptor "
                         "Jacobians (only descriptor_network has)", source=source,
                         hint=f"remove precompute from [{where}training]")
    params = estimator._get_param_names()
    settings = {k: v for k, v in doc.get("model", {}).items() if k != "kind"}
    if "descriptor_params" in params:
        settings["descriptor_params"] = dict(doc.get("descriptor", {})) or None
    model = estimator(**settings)
    try:
        model.check_settings()
    except InputError as exc:
        raise InputError(exc.message, source=source,
                         hint=exc.hint or f"fix it in the [{where}model]"
                         + (f" or [{where}descriptor]" if "descriptor_params" in params else "") + " table") from None
    return model, training
