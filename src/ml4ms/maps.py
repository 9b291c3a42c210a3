"""Maps to explore, not only to look at: a self-contained HTML page and a chemiscope file.

:func:`map_page` turns 2-D map coordinates (``ml4ms map``) into one HTML file
that works offline: its script and style are inline, the points are drawn on a
canvas (thousands of points stay fluid), hovering a point shows its id and
properties, clicking one picks it (``selected: id``, with a button that copies
the id), the wheel zooms and a drag pans. The colours are those of the PNG map:
viridis and a colour bar for numbers, tab10/tab20 and a legend for labels, grey
rings for records without a value.

:func:`write_chemiscope` writes the same map as a chemiscope input file (the
optional ``chemiscope`` package, ``pip install chemiscope``), with the
structures, to open at chemiscope.org or in a notebook.

Everything taken from the user's files (ids, property names and values) goes
into the page as JSON that cannot end the script it sits in
(:func:`script_json`) and is shown with ``textContent``, never parsed as HTML.
"""

import html
import json
import math
import re
from importlib import resources

import numpy as np

from .errors import InputError

#: at most this many properties of each record are shown on hover (the first ones, in the order of the file)
MAX_HOVER_KEYS = 24
#: longer text values are cut to this many characters on hover
MAX_TEXT = 200


def _json_scalar(value):
    """A numpy scalar as a Python one; NaN and infinities as None."""
    if hasattr(value, "item") and np.ndim(value) == 0:
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _plain(value):
    """A JSON-ready scalar (:func:`_json_scalar`), with long text cut to ``MAX_TEXT`` characters."""
    value = _json_scalar(value)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT - 1] + "…"
    return value


def script_json(obj):
    """``obj`` as JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as ``\\u003c`` ... (the same string to
    a JSON parser), so no value can close the element (``</script>``) or open
    a comment; NaN and infinities become ``null``.

    Examples
    --------
    >>> script_json({"id": "</script><b>"})
    '{"id": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    >>> json.loads(script_json([float("nan"), 1.5]))
    [None, 1.5]
    """
    def clean(value):
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [clean(v) for v in value]
        return _json_scalar(value)

    text = json.dumps(clean(obj), ensure_ascii=False, allow_nan=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _scalar(value):
    """True for a number, a bool or a string (what a hover box can show)."""
    if isinstance(value, (str, bool, int, float, np.generic)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0


def record_properties(record):
    """The scalar properties of one record, in order: a table row's columns, or a structure's formula,
    number of atoms, ``info`` and calculator results.

    Examples
    --------
    >>> from ase import Atoms
    >>> record_properties(Atoms("H2O", info={"id": 7, "tags": [1, 2], "bandgap": 2.5}))
    {'formula': 'H2O', 'n_atoms': 3, 'id': 7, 'bandgap': 2.5}
    >>> record_properties({"formula": "NaCl", "Z_A": 11})
    {'formula': 'NaCl', 'Z_A': 11}
    """
    if isinstance(record, dict):
        items = list(record.items())
    else:
        items = [("formula", record.get_chemical_formula()), ("n_atoms", len(record))]
        items += list(record.info.items())
        items += list(getattr(record.calc, "results", {}).items()) if record.calc is not None else []
    out = {}
    for key, value in items:
        if str(key) not in out and _scalar(value):
            out[str(key)] = _plain(value)
    return out


def hover_columns(records, max_keys=MAX_HOVER_KEYS):
    """``{key: [value of each record]}`` of the first ``max_keys`` scalar properties (None where a record has none).

    Examples
    --------
    >>> hover_columns([{"a": 1, "b": "x"}, {"a": 2.5, "c": True}])
    {'a': [1, 2.5], 'b': ['x', None], 'c': [None, True]}
    """
    rows = [record_properties(r) for r in records]
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys][:max_keys - len(keys)]
        if len(keys) >= max_keys:
            break
    return {k: [row.get(k) for row in rows] for k in keys}


def palette(name, n):
    """``n`` colours of the matplotlib colour map ``name`` as ``#rrggbb``, evenly spaced (listed maps: their colours).

    Examples
    --------
    >>> palette("viridis", 2)
    ['#440154', '#fde725']
    >>> palette("tab10", 3)
    ['#1f77b4', '#ff7f0e', '#2ca02c']
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, to_hex

    cmap = colormaps[name]
    if isinstance(cmap, ListedColormap) and cmap.N <= 20:
        return [to_hex(cmap(k % cmap.N)) for k in range(n)]
    return [to_hex(cmap(t)) for t in np.linspace(0, 1, n)]


def _asset(name):
    return resources.files("ml4ms").joinpath("assets", name).read_text(encoding="utf-8")


def map_data(Z, ids, values=None, labels=None, color_label="", properties=None, highlight=None,
             axis_names=None):
    """What the page's script draws, as one JSON-ready dict (see :func:`map_page` for the arguments)."""
    Z = np.asarray(Z, dtype=float)
    data = {"x": [float(f"{v:.6g}") for v in Z[:, 0]], "y": [float(f"{v:.6g}") for v in Z[:, 1]],
            "ids": [str(i) for i in ids], "color_label": color_label,
            "axis_names": list(axis_names or ("component 1", "component 2")),
            "highlight": [int(k) for k in (highlight if highlight is not None else [])],
            "properties": properties or {}}
    if values is not None:
        values = np.asarray(values, dtype=float)
        present = values[np.isfinite(values)]
        data["values"] = [float(f"{v:.6g}") if np.isfinite(v) else None for v in values]
        data["vmin"], data["vmax"] = (float(present.min()), float(present.max())) if len(present) else (0.0, 1.0)
        data["palette"] = palette("viridis", 64)
    else:
        cats = sorted({label for label in labels if label is not None})
        colours = palette("tab10" if len(cats) <= 10 else "tab20", len(cats))
        data["categories"] = [{"name": c, "colour": colours[k]} for k, c in enumerate(cats)]
        index = {c: k for k, c in enumerate(cats)}
        data["labels"] = [None if label is None else index[label] for label in labels]
    return data


def map_page(Z, ids, values=None, labels=None, color_label="", properties=None, highlight=None, title=None,
             axis_names=None):
    """One self-contained HTML page of an interactive 2-D map.

    Parameters
    ----------
    Z : array of shape (n, 2)
        Map coordinates.
    ids : list of n str
        What identifies each point (shown on hover, copied on a click).
    values : array of n floats, optional
        Numbers to colour by (viridis, colour bar); NaN: no value (a grey ring).
    labels : list of n str or None, optional
        Categories to colour by instead (legend); None: no value.
    color_label : str
        The colour bar's or legend's title, e.g. ``band gap (eV)``.
    properties : dict of lists, optional
        ``{name: [value of each point]}`` shown on hover (:func:`hover_columns`).
    highlight : list of int, optional
        Points to circle (``--highlight``).
    title, axis_names : str, (str, str)
        As on the PNG map.

    Returns
    -------
    str
        The HTML text.

    Examples
    --------
    >>> page = map_page(np.eye(2), ["a", "</script>"], values=[1.0, float("nan")], color_label="y (eV)")
    >>> page.startswith("<!DOCTYPE html>") and page.count("</script>") == 2
    True
    """
    data = map_data(Z, ids, values=values, labels=labels, color_label=color_label, properties=properties,
                    highlight=highlight, axis_names=axis_names)
    parts = {"title": html.escape(title or "ml4ms map"), "style": _asset("map.css"), "script": _asset("map.js"),
             "data": script_json(data)}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("map.html"))  # one pass: no re-reading


def write_map_html(path, Z, ids, **kwargs):
    """Write :func:`map_page` to ``path`` atomically (the arguments are those of :func:`map_page`)."""
    from .outputs import write_text

    write_text(path, map_page(Z, ids, **kwargs))


def chemiscope_properties(Z, axis_names, color_key, values=None, labels=None, unit=None, properties=None):
    """The ``properties`` of a chemiscope input: the map coordinates, the colour property and the other
    numeric ``properties`` (:func:`hover_columns`) that every record has."""
    props = {"map x": {"target": "structure", "values": np.asarray(Z[:, 0], dtype=float),
                       "description": axis_names[0]},
             "map y": {"target": "structure", "values": np.asarray(Z[:, 1], dtype=float),
                       "description": axis_names[1]}}
    for key, column in (properties or {}).items():
        if key in props or key == color_key:
            continue
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None for v in column):
            props[key] = {"target": "structure", "values": np.asarray(column, dtype=float)}
        elif all(isinstance(v, str) for v in column):
            props[key] = {"target": "structure", "values": list(column)}
    if values is not None:
        props[color_key] = {"target": "structure", "values": np.asarray(values, dtype=float)}
        if unit:
            props[color_key]["units"] = unit
    else:
        props[color_key] = {"target": "structure", "values": ["no value" if v is None else v for v in labels]}
    return props


def import_chemiscope(source=None):
    """The optional ``chemiscope`` module; :class:`~ml4ms.errors.InputError` (naming ``source``) if it is missing."""
    try:
        import chemiscope
    except ImportError:
        raise InputError("--chemiscope needs the chemiscope package, which is not installed", source=source,
                         hint="pip install chemiscope") from None
    return chemiscope


def write_chemiscope(path, records, Z, axis_names, color_key, values=None, labels=None, unit=None,
                     properties=None, title=None):
    """Write the map as a chemiscope input file (``.json`` or ``.json.gz``) with ``chemiscope.write_input``.

    Structures (``ase.Atoms``) go in as they are; table rows give a map
    without structures. Raises :class:`~ml4ms.errors.InputError` when the
    optional ``chemiscope`` package is not installed.
    """
    import inspect
    import warnings

    from .outputs import atomic_path

    chemiscope = import_chemiscope(path)
    props = chemiscope_properties(Z, axis_names, color_key, values=values, labels=labels, unit=unit,
                                  properties=properties)
    structures = None if any(isinstance(r, dict) for r in records) else list(records)
    settings = chemiscope.quick_settings(x="map x", y="map y", map_color=color_key,
                                         periodic=bool(structures and any(r.pbc.any() for r in structures)))
    kwargs = {"metadata": {"name": title or "ml4ms map"}, "properties": props, "settings": settings}
    if structures is not None:  # 'structures' since chemiscope 1.0; 'frames' before
        key = "structures" if "structures" in inspect.signature(chemiscope.write_input).parameters else "frames"
        kwargs[key] = structures
    suffix = ".json.gz" if str(path).lower().endswith(".gz") else ".json"
    with atomic_path(path, suffix=suffix) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # chemiscope's notes on skipped keys and the like: not the user's problem
        chemiscope.write_input(tmp, **kwargs)
