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


def _element(value):
    from ase.data import chemical_symbols

    return isinstance(value, str) and value in chemical_symbols[1:]


def _recipe_rules():
    from ..descriptors import descriptor_class
    from ..models import regressor_class
    from ..transforms import FUNCTIONS

    return {"descriptor": required(named(descriptor_class)), "model": required(named(regressor_class)),
            "target": {"transform": string(*FUNCTIONS), "per_atom": boolean()}}


def schema():
    """The tables and keys of a config (:func:`ml4ms.config.check`); [recipe] takes those of a property recipe."""
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
        "recipe": required(_recipe_rules()),
        "strategy": required({"name": required(string(*STRATEGIES)), "batch": required(integer(1)),
                              "goal": string(*GOALS), "xi": number(">= 0"), "kappa": number("> 0"),
                              "diversity": boolean(), "shortlist": number(">= 1")}),
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
    check(doc, schema(), source)
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
