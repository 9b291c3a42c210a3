"""The one reader of TOML files: property recipes, SISSO configs, potential recipes.

:func:`read_toml` reads a file, or a recipe bundled with ml4ms by its name
(``--config qm7``). :func:`check` holds the parsed document against a schema,
before any work starts. A schema is a dict of key -> :class:`Rule` (a value)
or :class:`Table` (a table; a plain dict is a table too) or :class:`Tables`
(a list of tables, TOML's ``[[name]]``), built from :func:`boolean`,
:func:`integer`, :func:`number`, :func:`string`, :func:`list_of`,
:func:`one_of`, :func:`any_keys`, :func:`tables_of` and :func:`named`. The first
unknown table, unknown key or wrong value raises an
:class:`~ml4ms.errors.InputError` of one line that names the file, the table
and the key, and says what to do.

Examples
--------
>>> schema = {"cv": {"n_splits": integer(2), "shuffle": boolean()}}
>>> check({"cv": {"n_splits": 3, "shuffle": True}}, schema)
{'cv': {'n_splits': 3, 'shuffle': True}}
>>> check({"cv": {"shuffle": "yes"}}, schema, source="r.toml")
Traceback (most recent call last):
...
ml4ms.errors.InputError: r.toml: [cv] shuffle must be true or false, got 'yes' (a string); fix it in [cv]
>>> check({"cv": {"n_split": 3}}, schema, source="r.toml")
Traceback (most recent call last):
...
ml4ms.errors.InputError: r.toml: [cv] unknown key 'n_split'; did you mean 'n_splits'? allowed: n_splits, shuffle
"""

import copy
import difflib
import numbers
import os
from collections import namedtuple

import numpy as np

from .errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

#: the package whose ``*.toml`` files are the bundled recipes
RECIPES = "ml4ms.recipes"

Rule = namedtuple("Rule", "what test note required", defaults=(None, False))
Rule.__doc__ = """The rule of one value: ``test(value)`` is true for a good one; ``what`` says what it must be.

``note`` explains the key in the error message; a ``required`` key must be present."""

Table = namedtuple("Table", "fields required", defaults=(False,))
Table.__doc__ = """The rule of a table: ``fields`` maps its keys to rules, or is a function of the table that does.

A ``required`` table must be present."""

Tables = namedtuple("Tables", "table required", defaults=(False,))
Tables.__doc__ = """The rule of a list of tables (TOML's ``[[name]]``): each is checked under ``table``.

A ``required`` list must be present."""


# ----------------------------------------------------------------------------------------------- reading files
def read_toml(path):
    """Read a TOML file, or the bundled recipe named ``path``.

    Parameters
    ----------
    path : str or path-like
        A TOML file, or the name of a recipe that ships with ml4ms (see
        :func:`bundled_recipes`; with or without ``.toml``). An existing file
        wins over a bundled name.

    Returns
    -------
    doc : dict
        The parsed document.
    path : str
        The file read (the bundled recipe's path for a name).

    Raises
    ------
    InputError
        On one line naming the file: missing, unreadable, not UTF-8 or not TOML.

    Examples
    --------
    >>> doc, path = read_toml("nomad2018_demo")
    >>> doc["model"]["name"], os.path.basename(path)
    ('krr', 'nomad2018_demo.toml')
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        bundled = bundled_recipe_path(path)
        if bundled is None:
            names = bundled_recipes()
            guess = difflib.get_close_matches(os.path.basename(path).removesuffix(".toml"), names, n=1)
            hint = (f"did you mean the bundled recipe '{guess[0]}'? " if guess else "") + (
                f"check the path, or name a bundled recipe: {', '.join(names)}")
            raise InputError("config file not found", source=path, hint=hint)
        path = bundled
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle), path
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML ({' '.join(str(exc).split())})", source=path,
                         hint="fix the syntax there (https://toml.io)") from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=path, hint="save the file as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", source=path,
                         hint="check that it is a file you may read") from None


def bundled_recipes():
    """Names of the recipes that ship inside the package (``ml4ms.recipes``)."""
    from importlib import resources

    return sorted(p.name[:-5] for p in resources.files(RECIPES).iterdir() if p.name.endswith(".toml"))


def bundled_recipe_path(name):
    """Path of the bundled recipe ``name`` (with or without ``.toml``), or None."""
    from importlib import resources

    name = name.removesuffix(".toml")
    if name not in bundled_recipes():
        return None
    return os.fspath(resources.files(RECIPES).joinpath(f"{name}.toml"))


# ------------------------------------------------------------------------------------------ KEY=VALUE settings
def parse_assignment(item):
    """``"KEY=VALUE"`` -> ``(KEY, value)``, the value in TOML syntax; a bare word is a string.

    Examples
    --------
    >>> parse_assignment("model.alpha=[0.1, 1]"), parse_assignment("reduce=mean")
    (('model.alpha', [0.1, 1]), ('reduce', 'mean'))
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set needs KEY=VALUE, got '{item}'")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value.strip()  # a bare word is a string


def parse_assignments(items):
    """``["r_cut=5", "species=['O']"]`` -> ``{"r_cut": 5, "species": ["O"]}`` (:func:`parse_assignment`).

    Examples
    --------
    >>> parse_assignments(["r_cut=5.0", "species=['Ti', 'O']", "reduce=mean"])
    {'r_cut': 5.0, 'species': ['Ti', 'O'], 'reduce': 'mean'}
    """
    return dict(parse_assignment(item) for item in items)


def assign(doc, key, value):
    """A copy of ``doc`` with ``value`` at the dotted ``key`` (``"model.alpha"``); missing tables are added.

    Examples
    --------
    >>> assign({"model": {"name": "krr"}}, "model.alpha", 0.1)
    {'model': {'name': 'krr', 'alpha': 0.1}}
    """
    doc = copy.deepcopy(doc)
    *tables, last = key.split(".")
    node = doc
    for k, name in enumerate(tables):
        if node.get(name) is None:
            node[name] = {}
        node = node[name]
        if not isinstance(node, dict):
            raise InputError(f"'{'.'.join(tables[:k + 1])}' is not a table", source=f"--set {key}",
                             hint="set a key of a table, as TABLE.KEY=VALUE")
    node[last] = value
    return doc


# ------------------------------------------------------------------------------------------------- checking
def check(doc, schema, source=None, table=()):
    """Raise :class:`~ml4ms.errors.InputError` for the first problem of ``doc`` under ``schema``.

    Problems are, in this order: an unknown table or key, a missing required
    key or table, a value its rule refuses (tables in order, depth first).

    Parameters
    ----------
    doc : dict
        A parsed TOML document (or one of its tables).
    schema : dict or Table
        Key -> :class:`Rule` or :class:`Table` (or a plain dict: a table).
    source : str, optional
        The file the document came from, for the message.
    table : tuple of str
        Where ``doc`` sits in its file (``("training",)``); the messages name it.

    Returns
    -------
    dict
        ``doc``, unchanged.
    """
    spec = _table(schema)
    name = ".".join(table)
    where = f"[{name}] " if table else ""
    fix = f"fix it in [{name}]" if table else None
    try:
        fields = spec.fields(doc) if callable(spec.fields) else spec.fields
    except InputError as exc:  # e.g. a [model] that names no registered model
        raise InputError(where + exc.message, source=source, hint=exc.hint or fix) from None
    fields = {k: _table(r) if isinstance(r, dict) else r for k, r in fields.items()}
    for key, value in doc.items():
        if key not in fields:
            message = (f"unknown table [{'.'.join(table + (key,))}]" if isinstance(value, dict)
                       else f"{where}unknown key '{key}'")
            guess = difflib.get_close_matches(key, list(fields), n=1)
            allowed = ", ".join(f"[{k}]" if isinstance(r, Table) else k for k, r in sorted(fields.items()))
            raise InputError(message, source=source,
                             hint=(f"did you mean '{guess[0]}'? " if guess else "") + f"allowed: {allowed or 'none'}")
    for key, rule in fields.items():
        if rule.required and key not in doc:
            if isinstance(rule, Table):
                raise InputError(f"missing table [{'.'.join(table + (key,))}]", source=source, hint="add it")
            raise InputError(f"{where}needs '{key}'", source=source, hint=f"add it to [{name}]" if table else "add it")
    for key, value in doc.items():
        rule = fields[key]
        if isinstance(rule, Table):
            if not isinstance(value, dict):
                raise InputError(f"{where}{key} must be a table, got {_shown(value)}", source=source, hint=fix)
            check(value, rule, source, table + (key,))
        elif isinstance(rule, Tables):
            if not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                raise InputError(f"{where}{key} must be a list of tables, got {_shown(value)}", source=source,
                                 hint=fix)
            for k, item in enumerate(value):
                check(item, rule.table, source, table + (f"{key}[{k}]",))
        else:
            check_value(value, rule, f"{where}{key}", source=source, hint=fix)
    return doc


def check_value(value, rule, name, source=None, hint=None):
    """Raise :class:`~ml4ms.errors.InputError` ``NAME must be WHAT, got VALUE`` unless ``rule`` passes ``value``.

    The check of one value, for values that do not come from a file (a command-line flag).

    Examples
    --------
    >>> check_value([0, 1], list_of(integer(0), unique=True), "--seeds")
    [0, 1]
    >>> check_value([0, 0], list_of(integer(0), unique=True), "--seeds")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: --seeds must be a list of distinct values, each a non-negative integer, got [0, 0]
    """
    if not rule.test(value):
        raise InputError(f"{name} must be {rule.what}, got {_shown(value)}", source=source,
                         hint="; ".join(h for h in (rule.note, hint) if h) or None)
    return value


def _table(schema):
    return schema if isinstance(schema, (Table, Tables)) else Table(schema)


def _shown(value):
    """A value as the message shows it: TOML spelling for booleans, the type where it is the likely mistake."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} (a string)" if isinstance(value, str) else text


# ------------------------------------------------------------------------------------------------ rules
ANY = Rule("any value", lambda value: True)


def required(spec):
    """``spec`` (a :class:`Rule`, :class:`Table` or dict) for a key that must be present."""
    return _table(spec)._replace(required=True) if isinstance(spec, dict) else spec._replace(required=True)


def is_integer(value):
    """True for an integer that is not a bool (numpy integers too)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    """True for a finite real number that is not a bool (integers too)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))


def all_finite(value):
    """False if ``value`` is, or holds (in lists, tuples, dicts and arrays), a NaN or an infinite number.

    TOML reads ``nan``, ``inf`` and ``1e400`` as floats; no parameter means them.

    Examples
    --------
    >>> all_finite({"r_cut": 5.0, "species": ["O", 8]}), all_finite([1.0, float("inf")]), all_finite("nan")
    (True, False, True)
    """
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return bool(np.all(np.isfinite(value)))
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_)):
        return bool(np.isfinite(value))
    return True


def boolean(note=None):
    """A real TOML boolean: ``true`` or ``false`` (not ``"yes"``, not 1)."""
    return Rule("true or false", lambda v: isinstance(v, (bool, np.bool_)), note)


def integer(minimum=None, note=None):
    """An integer (not a bool), at least ``minimum``."""
    what = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}")
    return Rule(what, lambda v: is_integer(v) and (minimum is None or v >= minimum), note)


_COMPARE = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__}


def number(bounds=None, note=None):
    """A finite number (an integer will do) within ``bounds``: ``">= 0"``, ``"> 0"``, ``"(0, 1]"``, ``"[0, 1)"``.

    Examples
    --------
    >>> rule = number("(0, 1]")
    >>> rule.what, rule.test(1), rule.test(0.0), rule.test(True)
    ('in (0, 1]', True, False, False)
    """
    if bounds is None:
        return Rule("a number", is_number, note)
    if bounds[0] in "[(":
        low, high = (float(x) for x in bounds[1:-1].split(","))
        above = _COMPARE[">=" if bounds[0] == "[" else ">"]
        below = _COMPARE["<=" if bounds[-1] == "]" else "<"]
        return Rule(f"in {bounds}", lambda v: is_number(v) and above(float(v), low) and below(float(v), high), note)
    op, limit = bounds.split()
    return Rule(f"a number {bounds}", lambda v: is_number(v) and _COMPARE[op](float(v), float(limit)), note)


def string(*choices, note=None):
    """A string; with ``choices``, one of them."""
    if not choices:
        return Rule("a string", lambda v: isinstance(v, str), note)
    quoted = [repr(c) for c in choices]
    what = " or ".join(quoted) if len(choices) <= 2 else f"one of {', '.join(quoted)}"
    return Rule(what, lambda v: isinstance(v, str) and v in choices, note)


def list_of(item, note=None, min_length=0, unique=False):
    """A list whose every element passes the rule ``item``; at least ``min_length`` long; ``unique``: no repeats.

    Examples
    --------
    >>> rule = list_of(integer(0), min_length=1, unique=True)
    >>> rule.what, rule.test([0, 1]), rule.test([]), rule.test([0, 0])
    ('a non-empty list of distinct values, each a non-negative integer', True, False, False)
    """
    what = "a " + ("non-empty " if min_length == 1 else "") + "list" + (" of distinct values" if unique else "")
    what += f" of at least {min_length} values" if min_length > 1 else ""

    def test(v):
        return (isinstance(v, list) and len(v) >= min_length and all(item.test(x) for x in v)
                and (not unique or len(set(v)) == len(v)))

    return Rule(f"{what}, each {item.what}", test, note)


def one_of(*rules, note=None):
    """A value that passes one of ``rules``."""
    return Rule(" or ".join(r.what for r in rules), lambda v: any(r.test(v) for r in rules), note)


def or_none(rule):
    """``rule``, or None (for keyword arguments of the Python API whose default is None)."""
    return rule._replace(test=lambda v: v is None or rule.test(v))


def any_keys(spec):
    """A table with keys of any name, each value under ``spec`` (a :class:`Rule`, :class:`Table` or dict)."""
    return Table(lambda table: dict.fromkeys(table, spec))


def tables_of(spec):
    """A list of tables (TOML's ``[[name]]``), each under ``spec`` (a :class:`Table` or dict)."""
    return Tables(_table(spec))


#: the rule of a parameter no class declares a rule for: any value, but no NaN or infinity in it
FINITE = Rule("finite (no nan or inf)", all_finite)


def named(lookup):
    """A table that names a registered class, ``{name = "...", **parameters}``.

    ``lookup(name)`` returns the class (or raises :class:`InputError` for an
    unknown name); its declared ``__init__`` parameters
    (scikit-learn's ``_get_param_names``) are the allowed keys. A class may
    declare the rules of its parameters in a dict ``_param_rules`` (name ->
    :class:`Rule`, :class:`Table` or :class:`Tables`); the others take any
    value that holds no NaN or infinity (:data:`FINITE`).

    Examples
    --------
    >>> class Model:
    ...     _param_rules = {"alpha": number("> 0")}
    ...     @classmethod
    ...     def _get_param_names(cls):
    ...         return ["alpha", "width"]
    >>> schema = {"model": named(lambda name: Model)}
    >>> check({"model": {"name": "m", "alpha": 0.0}}, schema, source="r.toml")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: r.toml: [model] alpha must be a number > 0, got 0.0; fix it in [model]
    >>> check({"model": {"name": "m", "width": float("inf")}}, schema, source="r.toml")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: r.toml: [model] width must be finite (no nan or inf), got inf; fix it in [model]
    """
    def fields(table):
        name = table.get("name")
        if not _NAME.test(name):
            return {"name": _NAME, **dict.fromkeys((k for k in table if k != "name"), ANY)}
        cls = lookup(name)
        rules = getattr(cls, "_param_rules", {})
        return {"name": _NAME, **{p: rules.get(p, FINITE) for p in cls._get_param_names() if p != "name"}}

    return Table(fields)


_NAME = Rule("a non-empty string", lambda v: isinstance(v, str) and bool(v), required=True)
