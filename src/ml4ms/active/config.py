"""The config of an active-learning run: one TOML file, checked by :mod:`ml4ms.config` before any work.

.. code-block:: toml

    description = "what the run is for"

    [oracle]                    # what labels a structure
    calculator = "ase.calculators.emt:EMT"   # MODULE:CLASS of an ASE calculator (imported: your config only)
    parameters = {}             # its keyword arguments
    # replay = true             # instead: read the labels of the pool file ([pool] file)
    target = "energy_per_atom"  # "energy" or "energy_per_atom" (a calculator); any property of the pool (replay)
    workers = 2                 # calls at once, in worker processes
    timeout = 600.0             # seconds a call may take
    retries = 2                 # a failed call is tried again this often

    [pool]                      # the candidates: a structure file ...
    file = "candidates.extxyz"  # (relative to this config)
    keep_info = ["spacegroup"]  # info keys the model may see (numbers in info are taken for labels and hidden)
    [pool.generate]             # ... or random substitutional alloys (ml4ms.active.pool.random_alloys)
    elements = ["Cu", "Au"]
    n = 400
    lattice = "fcc"
    repeat = [2, 2, 1]
    rattle = 0.05               # Å
    strain = 0.03
    seed = 0

    [start]                     # the first labels, from the pool
    n = 8
    method = "random"           # or "fps": farthest-point sampling in descriptor space

    [recipe]                    # the model: a property recipe's [descriptor], [model], [target]
    descriptor = { name = "soap", r_cut = 4.5, n_max = 4, l_max = 3 }
    model = { name = "gp" }

    [strategy]
    name = "uncertainty"        # "uncertainty", "ei", "ucb", "random" or "fps" (descriptor space, no model)
    batch = 8                   # labels per round
    goal = "minimize"           # ei, ucb: the target's lowest or highest values
    xi = 0.0                    # ei: the least improvement that counts
    kappa = 2.0                 # ucb: the weight of the std
    diversity = true            # farthest-point sampling among the best-scored ...
    shortlist = 4.0             # ... shortlist * batch of them

    [loop]
    budget = 80                 # labels of the active-learning set, the start included
    seed = 0

    [evaluation]
    test = 100                  # pool structures held out and labelled once: the error of every round
    baseline = "random"         # also train on random picks of the same size (labels it too), or "none"

On-the-fly MD of a potential (``[strategy] name = "md"``, :mod:`ml4ms.active.otf`) takes the same
``[oracle]`` (a calculator with forces), ``[pool]`` (the starting structures: each is labelled in round 0
and starts the MD runs), ``[start]`` (``n``: how many of them round 0 labels, all by default) and
``[loop]``; ``[recipe]`` is a potential recipe and ``[strategy]`` says how the MD runs:

.. code-block:: toml

    [recipe]                    # a committee of potentials (ml4ms.potentials.train.read_config's tables)
    model = { hidden = [16], seed = 0 }
    descriptor = { radial_cutoff = 5.0, radial_order = 6, angular_cutoff = 4.0, angular_order = 3 }
    training = { members = 3, jobs = 1, epochs = 60, valid_fraction = 0.0 }

    [strategy]
    name = "md"
    threshold = 0.1             # eV/Å: a frame whose largest per-atom committee force std passes it is a candidate
    # novelty = 2.0             # also a frame whose novelty passes it (1: the 99th percentile of the training data)
    labels_per_round = 4        # candidates labelled per round at most (one per MD run: its first)
    steps = 2000                # the length of an MD run; the loop ends when every run of a round stays under
    temperature = 800.0         # K, Langevin
    timestep = 2.0              # fs
    friction = 0.02             # 1/fs
    interval = 10               # steps between two points of the recorded uncertainty trace
    # trajectories = 8          # MD runs per round (default: one per starting structure)
    # warm_epochs = 100         # epochs of the rounds that continue the last committee (default: training's)

Examples
--------
>>> doc = {"oracle": {"calculator": "ase.calculators.emt:EMT", "target": "energy"},
...        "pool": {"generate": {"elements": ["Cu", "Au"], "n": 50}},
...        "recipe": {"descriptor": {"name": "composition"}, "model": {"name": "gp"}},
...        "strategy": {"name": "uncertainty", "batch": 4}, "loop": {"budget": 20}}
>>> cfg = parse_config(doc)
>>> cfg.start["n"], cfg.oracle["retries"], cfg.evaluation["baseline"]
(4, 2, 'none')
>>> parse_config(dict(doc, loop={"budget": 0}), source="a.toml")
Traceback (most recent call last):
...
ml4ms.errors.InputError: a.toml: [loop] budget must be a positive integer, got 0; fix it in [loop]
"""

import copy
import inspect
import os
from dataclasses import dataclass

from ..config import (FINITE, Rule, any_keys, boolean, check, integer, list_of, named, number, read_toml, required,
                      string)
from ..errors import InputError
from .pool import LATTICES
from .strategies import GOALS, STRATEGIES

#: the strategy name of on-the-fly MD (:mod:`ml4ms.active.otf`)
MD = "md"


def _element(value):
    from ase.data import chemical_symbols

    return isinstance(value, str) and value in chemical_symbols[1:]


def _recipe_rules():
    from ..descriptors import descriptor_class
    from ..models import regressor_class
    from ..transforms import FUNCTIONS

    return {"descriptor": required(named(descriptor_class)), "model": required(named(regressor_class)),
            "target": {"transform": string(*FUNCTIONS), "per_atom": boolean()}}


def _md_rules():
    """The [strategy] of on-the-fly MD; the upper limits of temperature, timestep and friction are
    :data:`ml4ms.potentials.md.LIMITS` (checked by :func:`parse_config`)."""
    return {"name": required(string(*STRATEGIES, MD)), "threshold": required(number("> 0", note="eV/Å")),
            "novelty": number("> 0", note="1 is the 99th percentile of the training structures' own"),
            "labels_per_round": required(integer(1)), "steps": required(integer(1)),
            "temperature": required(number("> 0", note="K")), "timestep": number("> 0", note="fs"),
            "friction": number("> 0", note="1/fs"), "interval": integer(1), "trajectories": integer(1),
            "warm_epochs": integer(1, note="the epochs of a round that continues the last round's committee")}


def strategy_name(doc):
    """The ``[strategy] name`` a parsed config gives (None where it gives none)."""
    table = doc.get("strategy") if isinstance(doc, dict) else None
    return table.get("name") if isinstance(table, dict) else None


def schema(doc=None):
    """The tables and keys of a config (:func:`ml4ms.config.check`).

    [recipe] takes those of a property recipe, and for on-the-fly MD (``doc``'s ``[strategy] name = "md"``)
    those of a potential recipe (:func:`ml4ms.potentials.train.recipe_schema`), with the MD's own [strategy].
    """
    md = strategy_name(doc) == MD
    if md:
        from ..potentials.train import recipe_schema

        table = doc.get("recipe") if isinstance(doc.get("recipe"), dict) else {}
        recipe, strategy = required(recipe_schema(table, where="recipe.")), required(_md_rules())
    else:
        recipe = required(_recipe_rules())
        strategy = required({"name": required(string(*STRATEGIES, MD)), "batch": required(integer(1)),
                             "goal": string(*GOALS), "xi": number(">= 0"), "kappa": number("> 0"),
                             "diversity": boolean(), "shortlist": number(">= 1")})
    return {
        "description": string(),
        "oracle": required({
            "calculator": string(note="MODULE:CLASS of an ASE calculator, e.g. ase.calculators.emt:EMT"),
            "parameters": any_keys(FINITE), "replay": boolean(), "target": required(string()),
            "workers": integer(1), "timeout": number("> 0", note="seconds"), "retries": integer(0)}),
        "pool": required({
            "file": string(),
            "keep_info": list_of(string(), unique=True,
                                 note="info keys of the pool file that describe a structure, not label it"),
            "generate": {"elements": required(list_of(Rule("a chemical symbol", _element), min_length=1, unique=True)),
                         "n": required(integer(1)), "lattice": string(*LATTICES),
                         "repeat": Rule("a list of 3 positive integers",
                                        lambda v: isinstance(v, list) and len(v) == 3
                                        and all(integer(1).test(x) for x in v)),
                         "a": number("> 0", note="Å"), "rattle": number(">= 0", note="Å"),
                         "strain": number("[0, 0.5)"), "seed": integer(0)}}),
        "start": {"n": integer(1), "method": string("random", "fps")},
        "recipe": recipe,
        "strategy": strategy,
        "loop": required({"budget": required(integer(1)), "seed": integer(0)}),
        "evaluation": {"test": integer(0), "baseline": string("none", "random")},
    }

DEFAULTS = {
    "oracle": {"parameters": {}, "replay": False, "workers": 1, "timeout": 3600.0, "retries": 2},
    "pool": {},
    "start": {"method": "random"},
    "strategy": {"goal": "minimize", "xi": 0.0, "kappa": 2.0, "diversity": True, "shortlist": 4.0},
    "loop": {"seed": 0},
    "evaluation": {"test": 0, "baseline": "none"},
}
GENERATE_DEFAULTS = {"lattice": "fcc", "repeat": [2, 2, 1], "rattle": 0.05, "strain": 0.03, "seed": 0}

#: keys a rerun may change (besides the description): how the oracle runs, the budget (raise it to go on)
RUNTIME_KEYS = {"oracle": ("workers", "timeout", "retries"), "loop": ("budget",)}

#: models whose predict gives a standard deviation (for the strategies that need one)
_NEEDS_STD = ("uncertainty", "ei", "ucb")


@dataclass
class ActiveConfig:
    """A checked config: its tables with defaults filled in, and the recipe it names."""

    oracle: dict
    pool: dict
    start: dict
    recipe: object  # ml4ms.recipe.Recipe
    strategy: dict
    loop: dict
    evaluation: dict
    doc: dict  # the document as written
    source: str = None

    @property
    def identity(self):
        """What must not change when a run is continued: the settings (defaults filled in) but for
        :data:`RUNTIME_KEYS` and the pool file's name (the pool is compared by its fingerprint)."""
        tables = {"oracle": self.oracle, "pool": self.pool, "start": self.start, "recipe": self.recipe.to_dict(),
                  "strategy": self.strategy, "loop": self.loop, "evaluation": self.evaluation}
        out = {name: {k: v for k, v in table.items() if k not in RUNTIME_KEYS.get(name, ()) and
                      not (name == "pool" and k == "file")} for name, table in tables.items()}
        return copy.deepcopy(out)


def read_config(path):
    """Read and check an active-learning config (a file, or the name of a bundled recipe).

    A relative ``[pool] file`` is found beside the config (or, failing that, from the working folder).
    """
    doc, path = read_toml(path)
    return parse_config(doc, source=path)


def parse_config(doc, source=None):
    """Check a parsed config and return an :class:`ActiveConfig`; :class:`InputError` of one line otherwise.

    Besides the schema: the oracle's calculator is imported and checked (the
    import path is the user's own), the pool file exists, the strategy's needs
    are met by the model, and the numbers fit together (budget, start, test, pool).
    """
    check(doc, schema(doc), source)
    cfg = {table: {**DEFAULTS.get(table, {}), **copy.deepcopy(doc.get(table, {}))} for table in DEFAULTS}
    oracle, pool, start, strategy = cfg["oracle"], cfg["pool"], cfg["start"], cfg["strategy"]
    loop, evaluation = cfg["loop"], cfg["evaluation"]

    def refuse(message, hint):
        raise InputError(message, source=source, hint=hint)

    # the oracle
    if oracle["replay"] == ("calculator" in oracle):
        refuse("[oracle] needs either calculator = \"MODULE:CLASS\" or replay = true",
               "give one of them: a calculator computes labels, replay reads them from the [pool] file")
    if "calculator" in oracle:
        from .oracles import CALCULATOR_TARGETS, CalculatorOracle

        if oracle["target"] not in CALCULATOR_TARGETS:
            refuse(f"[oracle] target must be {' or '.join(map(repr, CALCULATOR_TARGETS))} for a calculator, got "
                   f"'{oracle['target']}'", "choose one of them")
        try:
            CalculatorOracle(oracle["calculator"], oracle["parameters"], oracle["target"])
        except InputError as exc:
            refuse(f"[oracle] {exc.message}", exc.hint)
    elif oracle["parameters"]:
        refuse("[oracle] parameters apply to a calculator, not to replay", "leave them out")

    # the pool
    if ("file" in pool) == ("generate" in pool):
        refuse("[pool] needs either file = \"...\" or a [pool.generate] table", "give one of them")
    if "file" in pool:
        pool["file"] = _beside(pool["file"], source)
        if not os.path.isfile(pool["file"]):
            refuse(f"[pool] file '{doc['pool']['file']}': file not found",
                   "check the path (a relative path is read beside the config)")
        if oracle["target"] in pool.get("keep_info", ()):
            refuse(f"[pool] keep_info names the target '{oracle['target']}': the model would see the labels",
                   "leave the target out of keep_info")
    else:
        if "keep_info" in pool:
            refuse("[pool] keep_info applies to a pool file, not to a generated pool", "leave it out")
        pool["generate"] = {**GENERATE_DEFAULTS, **pool["generate"]}
        if oracle["replay"]:
            refuse("[oracle] replay reads the labels of a pool file, but the pool is generated",
                   "give [pool] file = \"labelled.extxyz\", or a calculator")
        if "a" not in pool["generate"]:
            from .pool import lattice_constant

            gen = pool["generate"]
            try:
                lattice_constant(gen["elements"], [1 / len(gen["elements"])] * len(gen["elements"]), gen["lattice"])
            except InputError as exc:
                refuse(f"[pool.generate] {exc.message}", exc.hint)

    if strategy_name(doc) == MD:
        return _parse_md(doc, oracle, pool, start, loop, source)

    # the model and the strategy
    from ..recipe import recipe_from_dict

    rdoc = doc["recipe"]
    recipe = recipe_from_dict({"targets": [oracle["target"]], "descriptor": rdoc["descriptor"],
                               "model": rdoc["model"], "target": rdoc.get("target", {})}, source=source)
    name = strategy["name"]
    if name in _NEEDS_STD and not _has_std(recipe.model["name"]):
        refuse(f"[strategy] name = '{name}' needs a model with an uncertainty, and [recipe.model] "
               f"'{recipe.model['name']}' has none",
               "use [recipe.model] name = \"gp\", \"committee\", \"ensemble\" or \"bayesian_ridge\", or name = "
               "\"random\"")
    for key, owners in (("goal", ("ei", "ucb")), ("xi", ("ei",)), ("kappa", ("ucb",))):
        if key in doc["strategy"] and name not in owners:
            refuse(f"[strategy] {key} applies to {' and '.join(owners)} only, not to '{name}'", f"leave out {key}")
    if "shortlist" in doc["strategy"] and not strategy["diversity"]:
        refuse("[strategy] shortlist applies with diversity = true only", "leave it out, or set diversity = true")
    if name in ("random", "fps") and strategy["diversity"] and "diversity" in doc["strategy"]:
        refuse(f"[strategy] diversity does not apply to '{name}'", "leave it out")
    if name in ("random", "fps"):
        strategy["diversity"] = False

    # the numbers
    start.setdefault("n", max(2, strategy["batch"]))
    if loop["budget"] < start["n"]:
        refuse(f"[loop] budget ({loop['budget']}) is smaller than [start] n ({start['n']})",
               "raise the budget: it counts the starting labels too")
    if evaluation["baseline"] != "none" and evaluation["test"] < 2:
        refuse(f"[evaluation] baseline = '{evaluation['baseline']}' needs a test set to compare on",
               "give [evaluation] test = N (held-out structures, N >= 2)")
    if "generate" in pool:
        _check_sizes(pool["generate"]["n"], start["n"], evaluation["test"], source)
    return ActiveConfig(oracle=oracle, pool=pool, start=start, recipe=recipe, strategy=strategy, loop=loop,
                        evaluation=evaluation, doc=copy.deepcopy(doc), source=source)


#: defaults of on-the-fly MD's [strategy]
MD_DEFAULTS = {"timestep": 1.0, "friction": 0.02, "interval": 10}
#: defaults of its committee's training ([recipe] training): members trained one after the other in this process
#: (a worker process's start-up costs more than a small network's epochs), no early stopping on a split of a few
#: structures, no novelty references unless [strategy] novelty asks for them (they would fill the store)
MD_TRAINING_DEFAULTS = {"members": 3, "jobs": 1, "valid_fraction": 0.0}


@dataclass
class PotentialRecipe:
    """The model of on-the-fly MD: the committee's template potential and its training options."""

    model: object  # ml4ms.potentials.NeuralPotential
    training: dict

    def to_dict(self):
        """The recipe as plain values (the run's identity)."""
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.model.get_params().items()}
        return {"model": params, "training": dict(self.training)}


def _parse_md(doc, oracle, pool, start, loop, source):
    """The rest of :func:`parse_config` for on-the-fly MD: the potential recipe, [strategy] and the numbers."""
    from ..potentials.md import LIMITS
    from ..potentials.train import potential_from_doc

    def refuse(message, hint):
        raise InputError(message, source=source, hint=hint)

    if oracle["replay"]:
        refuse("[oracle] replay = true cannot label the frames of on-the-fly MD (they are not in a file)",
               "give [oracle] calculator = \"MODULE:CLASS\"")
    from .oracles import load_calculator

    if "forces" not in getattr(load_calculator(oracle["calculator"]), "implemented_properties", ()):
        refuse(f"[oracle] calculator '{oracle['calculator']}' gives no forces, and a potential is trained on them",
               "name a calculator that computes forces")
    if "evaluation" in doc:
        refuse("[evaluation] applies to the pool strategies, not to on-the-fly MD", "leave it out")
    if start.get("method") == "fps" and "method" in doc.get("start", {}):
        refuse("[start] method = 'fps' applies to the pool strategies, not to on-the-fly MD",
               "leave it out: round 0 labels [start] n of the starting structures, drawn at random")
    strategy = {**MD_DEFAULTS, **copy.deepcopy(doc["strategy"])}
    for name, unit in (("temperature", "K"), ("timestep", "fs"), ("friction", "1/fs")):
        if strategy[name] > LIMITS[name]:
            refuse(f"[strategy] {name} must be at most {LIMITS[name]:g} {unit}, got {strategy[name]!r}",
                   f"give a physical {name}")
    model, training = potential_from_doc(doc["recipe"], source, where="recipe.")
    training = {**MD_TRAINING_DEFAULTS, **training}
    if "novelty" not in strategy:
        training.setdefault("novelty_references", 0)
    elif training.get("novelty_references") == 0:
        refuse("[strategy] novelty needs reference environments, and [recipe.training] novelty_references is 0",
               "leave novelty_references out, or give it a positive number")
    if training["members"] < 2:
        refuse(f"[recipe.training] members must be at least 2 for on-the-fly MD, got {training['members']}: the "
               "committee's spread is the uncertainty", "give members = 3 (or more)")
    if "generate" in pool:
        n_pool = pool["generate"]["n"]
        start.setdefault("n", n_pool)
        if start["n"] > n_pool:
            refuse(f"[start] n ({start['n']}) is more than the {n_pool} starting structures of [pool.generate]",
                   "lower it, or leave it out to label them all")
    if "n" in start and loop["budget"] < start["n"]:
        refuse(f"[loop] budget ({loop['budget']}) is smaller than [start] n ({start['n']})",
               "raise the budget: it counts the starting labels too")
    runs = strategy.get("trajectories", pool["generate"]["n"] if "generate" in pool else None)
    if runs is not None and strategy["labels_per_round"] > runs:
        refuse(f"[strategy] labels_per_round ({strategy['labels_per_round']}) is more than trajectories "
               f"({runs}): each MD run gives one candidate, its first",
               "lower labels_per_round, or run more trajectories ([strategy] trajectories; default: one per "
               "starting structure)")
    return ActiveConfig(oracle=oracle, pool=pool, start=start, recipe=PotentialRecipe(model, training),
                        strategy=strategy, loop=loop, evaluation={"test": 0, "baseline": "none"},
                        doc=copy.deepcopy(doc), source=source)


def _check_sizes(n_pool, n_start, n_test, source, pool_source=None):
    """Refuse a pool that the start and test sets would use up."""
    if n_start + n_test >= n_pool:
        raise InputError(f"the pool has {n_pool} structures: [start] n ({n_start}) and [evaluation] test ({n_test}) "
                         "leave none to choose", source=pool_source or source,
                         hint="give a larger pool, or fewer start or test structures")


def _beside(path, source):
    """A relative path as written if it exists from here, else beside the config file."""
    if os.path.isabs(path) or os.path.exists(path) or source is None:
        return path
    candidate = os.path.join(os.path.dirname(os.path.abspath(source)), path)
    return candidate if os.path.exists(candidate) else path


def _has_std(model_name):
    from ..models import regressor_class

    try:
        return "return_std" in inspect.signature(regressor_class(model_name).predict).parameters
    except (TypeError, ValueError):
        return False
