"""The options of a potential's training run: :class:`TrainingOptions`, checked when it is made.

A recipe's ``[training]`` table, the keyword arguments of
:func:`~ml4ms.potentials.train.train_potential` and the overrides of
``ml4ms potential fit`` all become one frozen :class:`TrainingOptions`
before any data is read. Its values are checked once, against the rules of
:data:`TRAINING` (:func:`ml4ms.config.check`) and the checks that tie two
options together (:func:`check_training_options`), and a bad value is
refused on one line that names the key. The committee's own options
(``members``, ``jobs``) share the ``[training]`` table and its rules; they
are arguments of :func:`~ml4ms.potentials.train.train_committee`.
"""

import dataclasses

from ..config import Rule, boolean, check, integer, is_number, number, or_none
from ..errors import InputError

#: the rules of the training options: a potential recipe's [training] table and the keyword arguments of
#: :func:`~ml4ms.potentials.train.train_potential` and :func:`~ml4ms.potentials.train.train_committee` (None
#: passes where it is the default)
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
        Training options (a ``[training]`` table, or the fields of a
        :class:`TrainingOptions`); keys without a rule pass.
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


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """How one potential is trained; every value is checked when the options are made.

    Loss per mini-batch of structures::

        energy_weight * mean_s ((E_pred - E_ref) / N_s)^2  +  force_weight * mean_components (F_pred - F_ref)^2

    (eV/atom and eV/Å), minimised by Adam.

    Attributes
    ----------
    epochs, batch_size : int
        Passes over the training split; structures per Adam step.
    learning_rate, lr_decay, min_learning_rate : float
        Adam step size, multiplied by ``lr_decay`` (not below the minimum)
        after each epoch.
    energy_weight, force_weight : float
        Loss weights of the energy-per-atom and force-component squared errors.
        ``force_weight=0`` trains on energies only (faster: no second derivatives).
    valid_fraction : float
        Fraction of the structures kept apart for early stopping (0: none, no
        early stopping). Duplicate structures
        (:func:`ml4ms.duplicates.duplicate_groups`), or the caller's groups,
        stay on one side of the split.
    patience : int
        Stop after this many epochs without a better validation loss.
    seed : int
        Seeds the split, the shuffles and (through ``model.seed``) nothing else.
    max_energy_per_atom : float, optional
        Exclude structures whose binding energy per atom (relative to
        ``atomic_energies``) is above this (eV/atom), like ænet's MAXENERGY.
    atomic_energies : dict of str -> float, optional
        Free-atom energies (eV) by element symbol, needed by ``max_energy_per_atom``.
    time_limit : float, optional
        Seconds of training after which it stops: the current epoch ends
        early, is validated and checkpointed, and is the last. The clock starts
        with the first epoch of the run: the preparation before it (the
        split, the initialisation and the descriptor Jacobians) is not
        counted. When the Jacobians alone would take longer than the limit
        (estimated from their first passes,
        :class:`~ml4ms.potentials.precompute.JacobianSet`), a ``UserWarning``
        says so early; the run goes on, since its training still gets the
        whole limit.
    threads : int or None, default 1
        torch intra-op threads during training (restored afterwards); ``None``
        keeps the current setting. Batches of a few hundred atoms gain little
        from threads, and on a shared machine spin-waiting threads can be ~50x slower.
    precompute : bool, default True
        Compute the descriptor and its position Jacobian of every structure
        once (:class:`~ml4ms.potentials.precompute.JacobianSet`) and train
        through the networks only: several times faster, at the memory of
        the Jacobians (float32, ``Σ n_atoms² × n_features × 3`` numbers).
        ``False`` differentiates through the descriptor at every step. Only
        the descriptor network has this path (``has_precompute`` of the
        estimator): other kinds (the message-passing potential) always train
        through the whole model, and a recipe of such a kind that sets
        ``precompute = true`` is refused (:func:`~ml4ms.potentials.train.read_config`).
    restore_best : bool, default True
        Return the weights of the best validation loss; ``False`` returns the
        last epoch's. With a learning rate decayed to its minimum the last
        weights are converged, and on a small validation set a few unusual
        structures can make an early epoch look best.
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
    stage_two_energy_weight, stage_two_force_weight : float, optional
        The loss weights of the second stage.
    novelty_references : int, default 2000
        Training environments per element that the returned model keeps
        (:meth:`~ml4ms.potentials.model.NeuralPotential.fit_novelty`), so it can
        tell how far a structure lies from its training data; 0 keeps none.
    warm_start : bool, default False
        Continue from the model's fitted weights, descriptor standardisation
        and reference energies instead of initialising it from the training
        split: fine-tuning on a training set that grew (for example by the
        structures ``ml4ms potential select`` chose and DFT labelled). The
        model's elements must include those of the structures; its reference
        environments are replaced by those of the new structures. The model
        given is left as it was. The validation split is drawn anew, so it can
        hold structures the model was trained on before: its errors are then
        optimistic, and only the test set says how good it is.

    Raises
    ------
    InputError
        The first bad value, on one line that names its key.

    Examples
    --------
    >>> options = TrainingOptions(epochs=3, stage_two_start=0.5, stage_two_force_weight=0.0)
    >>> options.epochs, options.stage_two_weights
    (3, (1.0, 0.0))
    >>> TrainingOptions(lr_decay=0)
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: lr_decay must be in (0, 1], got 0
    """

    epochs: int = 100
    batch_size: int = 8
    learning_rate: float = 1e-3
    lr_decay: float = 0.98
    min_learning_rate: float = 1e-5
    energy_weight: float = 1.0
    force_weight: float = 0.1
    valid_fraction: float = 0.1
    patience: int = 20
    seed: int = 0
    max_energy_per_atom: float | None = None
    atomic_energies: dict | None = None
    time_limit: float | None = None
    threads: int | None = 1
    precompute: bool = True
    restore_best: bool = True
    ema_decay: float | None = None
    stage_two_start: float | None = None
    stage_two_energy_weight: float | None = None
    stage_two_force_weight: float | None = None
    novelty_references: int = 2000
    warm_start: bool = False

    def __post_init__(self):
        check_training_options(vars(self))

    @property
    def stage_two_weights(self):
        """``(energy_weight, force_weight)`` of the second stage: its own, or those of the first."""
        return (self.energy_weight if self.stage_two_energy_weight is None else float(self.stage_two_energy_weight),
                self.force_weight if self.stage_two_force_weight is None else float(self.stage_two_force_weight))
