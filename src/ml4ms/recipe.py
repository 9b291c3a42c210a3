"""Recipes: the whole learning set-up in one TOML file.

A recipe names the descriptor, the model, the target transform and the
evaluation settings. Every table is optional; command-line flags override it.

.. code-block:: toml

    targets = ["formation_energy_ev_natom", "bandgap_energy_ev"]

    [descriptor]            # any descriptor name of ml4ms.descriptors.DESCRIPTORS
    name = "ngrams"         # other keys are the descriptor's parameters

    [model]                 # any name of ml4ms.models.REGRESSORS
    name = "krr"
    kernel = "laplacian"
    alpha = [1e-4, 1e-3, 1e-2]   # lists are searched (grouped CV)

    [graph]                 # graph models only ([model] name = "mpnn"): how structures become graphs
    kind = "radius"         # "radius", "knn" or "voronoi"; see ml4ms.models.mpnn.GRAPH

    [target]
    transform = "log1p"     # "none" or "log1p"
    per_atom = false
    baseline = ""           # key of a baseline property: Δ-learning

    [cv]
    n_splits = 5
    seeds = [0, 1, 2]
    duplicate_tol = 1e-3    # Å; duplicates stay in one fold

    [learning_curve]
    train_sizes = [0.1, 0.2, 0.4, 0.7, 1.0]
"""

import copy
from dataclasses import dataclass, field

from .config import (assign, boolean, bundled_recipe_path, bundled_recipes, check, check_value, integer, list_of,
                     named, number, one_of, read_toml, string)
from .descriptors import descriptor_class
from .errors import InputError
from .model_selection import SEEDS, TRAIN_SIZES
from .models import regressor_class
from .models.mpnn import GRAPH
from .transforms import FUNCTIONS

DEFAULT_CV = {"n_splits": 5, "seeds": [0, 1, 2], "duplicate_tol": 1e-3}
DEFAULT_LEARNING_CURVE = {"train_sizes": [0.1, 0.2, 0.4, 0.7, 1.0]}
DEFAULT_MODEL = {"name": "krr", "kernel": "gaussian"}
DEFAULT_STRUCTURE_DESCRIPTOR = {"name": "soap", "r_cut": 5.0, "n_max": 6, "l_max": 4}
#: the descriptor of models that read structures themselves (graph models): the structures, row by row
STRUCTURES_DESCRIPTOR = {"name": "structures"}

#: the tables and keys of a recipe (:func:`ml4ms.config.check`); [descriptor] and [model] take the parameters
#: of the class they name
SCHEMA = {
    "name": string(),
    "description": string(),
    "targets": one_of(string(), list_of(string(), min_length=1, unique=True)),  # --target: the list
    "descriptor": named(descriptor_class),
    "model": named(regressor_class),
    "graph": GRAPH,
    "target": {"transform": string(*FUNCTIONS), "per_atom": boolean(), "baseline": string()},
    "cv": {"n_splits": integer(2), "seeds": SEEDS, "duplicate_tol": number(">= 0")},
    "learning_curve": {"train_sizes": TRAIN_SIZES},
}

#: command-line flag -> the rule of its value (the recipe's), for :func:`apply_overrides`
FLAG_RULES = {"--target": list_of(string(), min_length=1, unique=True), "--n-splits": SCHEMA["cv"]["n_splits"],
              "--seeds": SCHEMA["cv"]["seeds"], "--sizes": SCHEMA["learning_curve"]["train_sizes"]}

__all__ = ["FLAG_RULES", "Recipe", "SCHEMA", "apply_overrides", "build_model", "bundled_recipe_path",
           "bundled_recipes", "check_consistent", "default_descriptor", "graph_models", "read_recipe",
           "recipe_from_dict"]


@dataclass
class Recipe:
    """A parsed recipe; ``descriptor`` and ``model`` are ``{"name": ..., **params}``."""

    descriptor: dict = None
    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL))
    graph: dict = None
    targets: list = field(default_factory=list)
    transform: str = "none"
    per_atom: bool = False
    baseline: str = None
    cv: dict = field(default_factory=lambda: dict(DEFAULT_CV))
    learning_curve: dict = field(default_factory=lambda: dict(DEFAULT_LEARNING_CURVE))
    source: str = None

    def to_dict(self):
        return {
            "descriptor": self.descriptor,
            "model": self.model,
            "graph": self.graph,
            "targets": list(self.targets) or None,  # None: not given
            "target": {"transform": self.transform, "per_atom": self.per_atom, "baseline": self.baseline},
            "cv": self.cv,
            "learning_curve": self.learning_curve,
        }


def read_recipe(path=None):
    """Parse and check a TOML recipe (or return the defaults when ``path`` is None).

    ``path`` is a file or the name of a bundled recipe (:func:`ml4ms.config.read_toml`).

    Examples
    --------
    >>> read_recipe("nomad2018_demo").transform
    'log1p'
    """
    if path is None:
        return Recipe()
    doc, path = read_toml(path)
    return recipe_from_dict(doc, source=path)


def recipe_from_dict(doc, source=None):
    """Check a dict with the TOML layout (:data:`SCHEMA`) and build a :class:`Recipe` from it.

    None values mean "not given" (as in :meth:`Recipe.to_dict`).

    Examples
    --------
    >>> recipe_from_dict({"model": {"name": "ridge", "alpha": 0.1}}).model
    {'name': 'ridge', 'alpha': 0.1}
    >>> recipe_from_dict({"cv": {"n_splits": "5"}}, source="r.toml")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: r.toml: [cv] n_splits must be an integer >= 2, got '5' (a string); fix it in [cv]
    """
    doc = {k: v for k, v in copy.deepcopy(doc).items() if v is not None}
    if isinstance(doc.get("target"), dict):
        doc["target"] = {k: v for k, v in doc["target"].items() if v is not None}
    check(doc, SCHEMA, source)
    recipe = Recipe(source=source)
    recipe.descriptor = doc.get("descriptor")
    recipe.model = doc.get("model", recipe.model)
    recipe.graph = doc.get("graph")
    targets = doc.get("targets", [])
    recipe.targets = [targets] if isinstance(targets, str) else list(targets)
    target = doc.get("target", {})
    recipe.transform = target.get("transform", "none")
    recipe.per_atom = target.get("per_atom", False)
    recipe.baseline = target.get("baseline") or None
    recipe.cv = {**DEFAULT_CV, **doc.get("cv", {})}
    recipe.learning_curve = {**DEFAULT_LEARNING_CURVE, **doc.get("learning_curve", {})}
    check_consistent(recipe, source)
    return recipe


def check_consistent(recipe, source=None):
    """Refuse a recipe whose parts contradict each other: a baseline that is also a target.

    Examples
    --------
    >>> check_consistent(Recipe(targets=["e"], baseline="e"), source="r.toml")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: r.toml: the baseline 'e' is also a target: learning e minus itself gives 0; choose another baseline property (--baseline, [target] baseline), or none
    """
    if recipe.baseline and recipe.baseline in recipe.targets:
        raise InputError(f"the baseline '{recipe.baseline}' is also a target: learning {recipe.baseline} minus "
                         "itself gives 0", source=source,
                         hint="choose another baseline property (--baseline, [target] baseline), or none")
    _check_graph(recipe, source)
    features = _feature_columns(recipe.descriptor or {})
    leaked = [t for t in recipe.targets if t in features]
    if leaked:
        raise InputError(f"the target '{leaked[0]}' is also a feature column of the descriptor: the model would "
                         "read the answer", source=source, hint="remove it from the descriptor's columns")


def graph_models(spec):
    """The tables of ``spec`` (a [model] table, searched through committees and ensemble members) that name a
    model taking structures (:class:`~ml4ms.models.mpnn.MPNNRegressor`).

    Examples
    --------
    >>> [t["name"] for t in graph_models({"name": "committee", "regressor": {"name": "mpnn"}})]
    ['mpnn']
    """
    found = []
    if isinstance(spec, dict):
        name = spec.get("name")
        try:
            if isinstance(name, str) and getattr(regressor_class(name), "takes_structures", False):
                found.append(spec)
        except InputError:
            pass
        for value in spec.values():
            found.extend(graph_models(value))
    elif isinstance(spec, (list, tuple)):
        for value in spec:
            found.extend(graph_models(value))
    return found


def _descriptor_names(spec):
    """The descriptor names of a [descriptor] table, parts of ``concat`` included."""
    if not isinstance(spec, dict):
        return set()
    return {spec.get("name")}.union(*[_descriptor_names(part) for part in spec.get("parts", [])])


def _check_graph(recipe, source):
    """A [graph] table needs a graph model, and a graph model needs the structures descriptor."""
    graphs = graph_models(recipe.model)
    if recipe.graph is not None and not graphs:
        raise InputError("[graph] is for graph models, and [model] has none", source=source,
                         hint="set [model] name = \"mpnn\" (or a committee or ensemble member of it), "
                              "or remove [graph]")
    if recipe.graph is not None:
        from .models.mpnn import graph_settings

        graph_settings(recipe.graph, source)
    if graphs and recipe.descriptor and "structures" not in _descriptor_names(recipe.descriptor):
        raise InputError(f"the mpnn model reads structures, but [descriptor] is '{recipe.descriptor.get('name')}'",
                         source=source, hint="remove [descriptor] (a graph model needs none), or add a part "
                                             "name = \"structures\" to a concat descriptor for an ensemble")


def _for_graph_models(spec, **defaults):
    """A copy of a [model] table whose graph models get ``defaults`` (the values not None) for the keys they leave
    out (``graph``: the [graph] table, ``species``: the data's elements, ``progress``)."""
    spec = copy.deepcopy(spec)
    for table in graph_models(spec):
        for key, value in defaults.items():
            if value is not None:
                table.setdefault(key, copy.deepcopy(value))
    return spec


def _feature_columns(spec):
    """The table columns a descriptor spec reads as features (``columns``, also inside ``concat`` parts)."""
    if spec.get("name") == "columns" and isinstance(spec.get("columns"), (list, tuple)):
        return set(spec["columns"])
    return set().union(*[_feature_columns(part) for part in spec.get("parts", []) if isinstance(part, dict)])


def apply_overrides(recipe, targets=None, descriptor=None, model=None, transform=None, per_atom=None, baseline=None,
                    n_splits=None, seeds=None, train_sizes=None, values=None):
    """Command-line flags override the recipe (None leaves a field alone), then ``values`` do.

    Parameters
    ----------
    recipe : Recipe
    targets, descriptor, model, transform, per_atom, baseline
        The flags; ``descriptor`` and ``model`` replace the whole table by ``{"name": ...}``.
    n_splits, seeds, train_sizes
        The flags ``--n-splits``, ``--seeds`` and ``--sizes``: ``[cv] n_splits``, ``[cv] seeds`` and
        ``[learning_curve] train_sizes``. Flags with a value are checked like the recipe's keys
        (:data:`FLAG_RULES`), the message naming the flag.
    values : dict, optional
        Values by dotted key (``{"model.alpha": 0.1}``, from ``--set model.alpha=0.1``), set after the flags
        and checked like the recipe file.

    Examples
    --------
    >>> recipe = apply_overrides(read_recipe("nomad2018_demo"), model="ridge", values={"model.alpha": 0.5})
    >>> recipe.model
    {'name': 'ridge', 'alpha': 0.5}
    >>> apply_overrides(recipe, values={"model.alpah": 0.5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: --set model.alpah: [model] unknown key 'alpah'; did you mean 'alpha'? allowed: ...
    >>> apply_overrides(recipe, seeds=[0, 0])
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: --seeds must be a non-empty list of distinct values, each a non-negative integer, got [0, 0]; give each --seeds value once
    """
    recipe = copy.deepcopy(recipe)
    for flag, given, key in (("--descriptor", descriptor, "descriptor.name"), ("--model", model, "model.name")):
        if given and key in (values or {}):
            raise InputError(f"{flag} {given} and --set {key}={values[key]} name two different things",
                             hint="give one of them")
    for flag, value in (("--target", targets), ("--n-splits", n_splits), ("--seeds", seeds),
                        ("--sizes", train_sizes)):
        if value is not None:
            check_value(value, FLAG_RULES[flag], flag, hint=f"give each {flag} value once" if flag != "--n-splits"
                        else None)
    if targets:
        recipe.targets = list(targets)
    if n_splits is not None:
        recipe.cv["n_splits"] = n_splits
    if seeds is not None:
        recipe.cv["seeds"] = list(seeds)
    if train_sizes is not None:
        recipe.learning_curve["train_sizes"] = list(train_sizes)
    if descriptor:
        recipe.descriptor = {"name": descriptor}
    if model:
        recipe.model = {"name": model}
    if transform:
        recipe.transform = transform
    if per_atom is not None:
        recipe.per_atom = per_atom
    if baseline:
        recipe.baseline = baseline
    for key, value in (values or {}).items():
        source = recipe.source
        recipe = recipe_from_dict(assign(recipe.to_dict(), key, value), source=f"--set {key}")
        recipe.source = source
    check_consistent(recipe, None if targets or baseline else recipe.source)
    return recipe


def default_descriptor(records):
    """The descriptor used when a recipe names none: SOAP for structures, composition for formulas."""
    from .structures import is_atoms

    if records and is_atoms(records[0]):
        return dict(DEFAULT_STRUCTURE_DESCRIPTOR)
    if records and isinstance(records[0], dict) and "formula" in records[0]:
        return {"name": "composition"}
    raise InputError(
        "a table without a 'formula' column needs a descriptor",
        hint="give --config with [descriptor] name = \"columns\" and columns = [...]",
    )


def build_model(recipe, records=None, progress=None):
    """The :class:`~ml4ms.models.structure.StructureRegressor` a recipe describes.

    Graph models get the [graph] table and the elements of ``records`` (unless they name their own), and
    ``progress`` (if not None) switches their progress bars on or off, as ``--quiet`` does.
    """
    from .descriptors import make_descriptor
    from .models import make_regressor
    from .models.structure import StructureRegressor

    from ase.data import chemical_symbols

    from .structures import is_atoms

    found = sorted({int(z) for r in records or [] if is_atoms(r) for z in r.numbers})
    model = _for_graph_models(recipe.model, graph=recipe.graph, progress=progress,
                              species=[chemical_symbols[z] for z in found] or None)
    desc = recipe.descriptor or (dict(STRUCTURES_DESCRIPTOR) if graph_models(model) else
                                 default_descriptor(records or []))
    desc_params = {k: v for k, v in desc.items() if k != "name"}
    model_params = {k: v for k, v in model.items() if k != "name"}
    return StructureRegressor(
        descriptor=make_descriptor(desc["name"], **desc_params),
        regressor=make_regressor(model["name"], **model_params),
        target_transform=recipe.transform,
        per_atom=recipe.per_atom,
        baseline=recipe.baseline,
    )
