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
import os
from dataclasses import dataclass, field

from .errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CV = {"n_splits": 5, "seeds": [0, 1, 2], "duplicate_tol": 1e-3}
DEFAULT_LEARNING_CURVE = {"train_sizes": [0.1, 0.2, 0.4, 0.7, 1.0]}
DEFAULT_MODEL = {"name": "krr", "kernel": "gaussian"}
DEFAULT_STRUCTURE_DESCRIPTOR = {"name": "soap", "r_cut": 5.0, "n_max": 6, "l_max": 4}
_KNOWN = {"targets", "descriptor", "model", "target", "cv", "learning_curve", "name", "description"}


@dataclass
class Recipe:
    """A parsed recipe; ``descriptor`` and ``model`` are ``{"name": ..., **params}``."""

    descriptor: dict = None
    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL))
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
            "targets": list(self.targets),
            "target": {"transform": self.transform, "per_atom": self.per_atom, "baseline": self.baseline},
            "cv": self.cv,
            "learning_curve": self.learning_curve,
        }


def read_recipe(path=None):
    """Parse a TOML recipe (or return the defaults when ``path`` is None)."""
    if path is None:
        return Recipe()
    path = os.fspath(path)
    if not os.path.exists(path):
        bundled = bundled_recipe_path(path)
        if bundled is None:
            raise InputError("config file not found", source=path,
                             hint=f"check the path, or name a bundled recipe: {', '.join(bundled_recipes())}")
        path = bundled
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid TOML ({' '.join(str(exc).split())})", source=path) from None
    unknown = set(doc) - _KNOWN
    if unknown:
        raise InputError(f"unknown section(s) {', '.join(sorted(unknown))}", source=path,
                         hint=f"use: {', '.join(sorted(_KNOWN))}")
    return recipe_from_dict(doc, source=path)


def bundled_recipes():
    """Names of the recipes that ship inside the package."""
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files("ml4ms.recipes").iterdir() if p.name.endswith(".toml"))


def bundled_recipe_path(name):
    """Path of the bundled recipe ``name`` (with or without ``.toml``), or None."""
    from importlib import resources

    name = name[:-5] if name.endswith(".toml") else name
    if name not in bundled_recipes():
        return None
    return os.fspath(resources.files("ml4ms.recipes").joinpath(f"{name}.toml"))


def recipe_from_dict(doc, source=None):
    """Build a :class:`Recipe` from a dict with the TOML layout."""
    doc = copy.deepcopy(doc)
    recipe = Recipe(source=source)
    if "descriptor" in doc:
        recipe.descriptor = _named(doc["descriptor"], "descriptor", source)
    if "model" in doc:
        recipe.model = _named(doc["model"], "model", source)
    targets = doc.get("targets", [])
    recipe.targets = [targets] if isinstance(targets, str) else list(targets)
    target = doc.get("target", {})
    recipe.transform = target.get("transform", "none")
    recipe.per_atom = bool(target.get("per_atom", False))
    recipe.baseline = target.get("baseline") or None
    recipe.cv = {**DEFAULT_CV, **doc.get("cv", {})}
    recipe.learning_curve = {**DEFAULT_LEARNING_CURVE, **doc.get("learning_curve", {})}
    return recipe


def _named(table, what, source):
    if not isinstance(table, dict) or not table.get("name"):
        raise InputError(f"[{what}] needs a 'name'", source=source)
    return dict(table)


def apply_overrides(recipe, targets=None, descriptor=None, model=None, transform=None, per_atom=None, baseline=None):
    """Command-line flags override the recipe (None leaves a field alone)."""
    recipe = copy.deepcopy(recipe)
    if targets:
        recipe.targets = list(targets)
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


def build_model(recipe, records=None):
    """The :class:`~ml4ms.models.structure.StructureRegressor` a recipe describes."""
    from .descriptors import make_descriptor
    from .models import make_regressor
    from .models.structure import StructureRegressor

    desc = recipe.descriptor or default_descriptor(records or [])
    desc_params = {k: v for k, v in desc.items() if k != "name"}
    model_params = {k: v for k, v in recipe.model.items() if k != "name"}
    return StructureRegressor(
        descriptor=make_descriptor(desc["name"], **desc_params),
        regressor=make_regressor(recipe.model["name"], **model_params),
        target_transform=recipe.transform,
        per_atom=recipe.per_atom,
        baseline=recipe.baseline,
    )
