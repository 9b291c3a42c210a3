"""Screening: a property model's predictions, with their uncertainty, through filters, streamed to disk.

:func:`stream` cuts the records into chunks, predicts each chunk on the
executor of :mod:`ml4ms.parallel` (this process, or a Dask cluster), passes
the rows through the filters in order and writes each chunk's survivors to
a folder beside the output (``OUT.partial``) as soon as the chunk is done,
with a state file naming the finished chunks. A run that stops (interrupted,
killed, the scheduler gone, or ``max_chunks`` reached) keeps them, and the
same call again continues where it stopped. When every chunk is done the
survivors are written to the output at once (a temporary file renamed into
place), ranked by a column, and the folder is removed. ``ml4ms predict`` is
the same stream with no filter and no ranking.

Filters are conditions on the prediction columns, such as
``bandgap_energy_ev > 2 and bandgap_energy_ev_std < 0.2``: :class:`Filter`
parses them with Python's :mod:`ast` and evaluates only column names,
numbers, comparisons, ``and``/``or``/``not`` and ``+ - * /``; anything
else is a one-line error naming the expression. Text is never evaluated.

Examples
--------
>>> import numpy as np
>>> keep = Filter("y > 2 and y_std < 0.2", ["y", "y_std"])
>>> keep({"y": np.array([1.0, 3.0, 3.0]), "y_std": np.array([0.1, 0.1, 0.5])}).tolist()
[False, True, False]
"""

import ast
import csv
import heapq
import os
import shutil

import numpy as np

from .errors import InputError

#: what a filter may contain
ALLOWED = "column names, numbers, comparisons, and/or/not, + - * /"
#: records per chunk unless told otherwise
CHUNK = 1000
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
            ast.Eq: np.equal, ast.NotEq: np.not_equal}
_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_REFUSED = {ast.Call: "calls are not allowed", ast.Attribute: "attribute access is not allowed",
            ast.Subscript: "subscripts are not allowed", ast.Lambda: "lambdas are not allowed"}


class Filter:
    """A condition on prediction columns, checked when it is made and evaluated on arrays.

    Parameters
    ----------
    text : str
        The condition, e.g. ``"formation_energy_ev_natom < 0.1"``.
    columns : list of str
        The names it may use.

    Examples
    --------
    >>> Filter("__import__('os').system('ls') > 0", ["y"])
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: --where '__import__('os').system('ls') > 0': calls are not allowed; use column names, numbers, comparisons, and/or/not, + - * /
    >>> Filter("z < 1", ["y", "y_std"])
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: --where 'z < 1': unknown name 'z'; use the prediction columns: y, y_std
    """

    def __init__(self, text, columns):
        self.text = str(text)
        self.columns = list(columns)
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise self._error(f"is not an expression ({exc.msg})") from None
        self.tree = tree.body
        if self._kind(self.tree) != "condition":
            raise self._error("is not a condition", hint="compare a column, e.g. 'bandgap_energy_ev > 2'")

    def _error(self, what, hint=None):
        return InputError(f"--where '{self.text}': {what}", hint=hint or f"use {ALLOWED}")

    def _kind(self, node):
        """``"condition"`` or ``"number"`` for an allowed node; a one-line error for anything else."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise self._error(f"the constant {node.value!r} is not a number")
            return "number"
        if isinstance(node, ast.Name):
            if node.id not in self.columns:
                raise self._error(f"unknown name '{node.id}'",
                                  hint=f"use the prediction columns: {', '.join(self.columns)}")
            return "number"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self._expect(node.operand, "condition", "not")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self._expect(node.operand, "number", "a sign")
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            self._expect(node.left, "number", "arithmetic")
            return self._expect(node.right, "number", "arithmetic")
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._expect(value, "condition", "and/or")
            return "condition"
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for value in [node.left, *node.comparators]:
                self._expect(value, "number", "a comparison")
            return "condition"
        for kind, why in _REFUSED.items():
            if isinstance(node, kind):
                raise self._error(why)
        raise self._error(f"{type(node).__name__} is not allowed")

    def _expect(self, node, wanted, where):
        kind = self._kind(node)
        if kind != wanted:
            raise self._error(f"{where} needs {'a condition' if wanted == 'condition' else 'numbers'}, "
                              f"got '{ast.unparse(node)}'")
        return kind

    def names(self):
        """The columns the condition reads, in order of appearance.

        Examples
        --------
        >>> Filter("a < b + 1", ["a", "b"]).names()
        ['a', 'b']
        """
        return list(dict.fromkeys(n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)))

    def __call__(self, columns):
        """Boolean array: the rows of ``columns`` (name -> float array) that meet the condition (NaN: never)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self._eval(self.tree, columns), dtype=bool)

    def _eval(self, node, cols):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return cols[node.id]
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, cols)
            return {ast.Not: np.logical_not, ast.USub: np.negative, ast.UAdd: np.positive}[type(node.op)](value)
        if isinstance(node, ast.BinOp):
            return _ARITH[type(node.op)](self._eval(node.left, cols), self._eval(node.right, cols))
        if isinstance(node, ast.BoolOp):
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            values = [self._eval(v, cols) for v in node.values]
            out = values[0]
            for value in values[1:]:
                out = combine(out, value)
            return out
        left, out = self._eval(node.left, cols), True
        for op, right_node in zip(node.ops, node.comparators):
            right = self._eval(right_node, cols)
            out = np.logical_and(out, _COMPARE[type(op)](left, right))
            left = right
        return out


def prediction_columns(meta):
    """The columns a model's predictions have: each target, then its ``_std`` when the model has one.

    Examples
    --------
    >>> prediction_columns({"targets": ["y"], "has_uncertainty": True})
    ['y', 'y_std']
    """
    out = []
    for t in meta["targets"]:
        out += [t, f"{t}_std"] if meta.get("has_uncertainty") else [t]
    return out


def apply_filters(rows, filters):
    """``(survivors, passed)``: the rows that pass every filter, and how many are left after each one.

    Examples
    --------
    >>> rows = [{"y": 1.0}, {"y": 3.0}, {"y": 5.0}]
    >>> apply_filters(rows, [Filter("y > 2", ["y"]), Filter("y < 4", ["y"])])
    ([{'y': 3.0}], [2, 1])
    """
    passed = []
    for condition in filters:
        cols = {name: np.asarray([row[name] for row in rows], dtype=float) for name in condition.names()}
        mask = condition(cols) if rows else np.zeros(0, dtype=bool)
        rows = [row for row, keep in zip(rows, np.broadcast_to(mask, (len(rows),))) if keep]
        passed.append(len(rows))
    return rows, passed


class PredictChunk:
    """The prediction rows of one chunk's pieces ``[(label, start, records)]``; picklable, so a worker runs it.

    The structures are checked first (:func:`ml4ms.datasets.sources.check_pieces`);
    an error names the file and the structure's index in it. ``index`` counts
    the records of each part; ``several``: a ``data`` column names the part.
    """

    def __init__(self, model, meta, several=False):
        self.model = model
        self.meta = meta
        self.several = several

    def __call__(self, pieces):
        from .datasets.sources import check_pieces, in_pieces, records_of
        from .workflow import prediction_rows

        check_pieces(pieces)
        try:
            rows = iter(prediction_rows(self.model, self.meta, records_of(pieces)))
        except InputError as exc:
            raise in_pieces(pieces, exc) from None
        out = []
        for label, start, records in pieces:
            for k, row in zip(range(start, start + len(records)), rows):
                row["index"] = k
                out.append({"index": k, "data": label, **row} if self.several else row)
        return out


def partial_folder(output):
    """The folder beside ``output`` where finished chunks wait: ``OUTPUT.partial``."""
    return os.fspath(output) + ".partial"


#: the most chunk files merged at once when ranking (more are merged in rounds)
FAN_IN = 64


def _chunk_path(folder, key):
    return os.path.join(folder, f"chunk-{key:06d}.csv")


def _rank_key(column, descending):
    """Sort key of a row by ``column``: smallest first (``descending``: largest), NaN last."""
    sign = -1.0 if descending else 1.0

    def key(row):
        value = float(row[column])
        return (True, 0.0) if np.isnan(value) else (False, sign * value)

    return key


def _rows(path):
    """The dict rows of a CSV file, read one at a time."""
    with open(path, newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _write_rows(handle, columns, rows):
    writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)


def _merged(folder, paths, columns, key):
    """The rows of the sorted files ``paths`` in one sorted stream, never more than :data:`FAN_IN` files open.

    Ties keep the order of the files, then of the rows (the order of a stable sort of all rows).
    """
    level = 0
    while len(paths) > FAN_IN:  # merge consecutive groups into sorted runs, in rounds
        runs = []
        for g in range(0, len(paths), FAN_IN):
            runs.append(os.path.join(folder, f"run-{level}-{g // FAN_IN:06d}.csv"))
            with open(runs[-1], "w", newline="", encoding="utf-8") as out:
                _write_rows(out, columns, heapq.merge(*map(_rows, paths[g:g + FAN_IN]), key=key))
        paths, level = runs, level + 1
    return heapq.merge(*map(_rows, paths), key=key)


def _merge(folder, keys, output, columns, rank_by=None, descending=False):
    """Write the rows of the chunk files ``keys`` to ``output`` atomically, ranked by ``rank_by`` if given.

    Each chunk file is read once, a row at a time: with ``rank_by`` its rows
    were sorted when it was written, and the files are merged
    (:func:`heapq.merge`), so memory does not grow with the number of rows.
    """
    from .outputs import atomic_path

    paths = [_chunk_path(folder, key) for key in keys]
    with atomic_path(output) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        if rank_by is None:
            _write_rows(out, columns, (row for path in paths for row in _rows(path)))
        else:
            ranked = _merged(folder, paths, columns, _rank_key(rank_by, descending))
            _write_rows(out, ["rank"] + columns, (dict(row, rank=k) for k, row in enumerate(ranked, 1)))


def stream(model, meta, sources, output, filters=(), chunk=CHUNK, rank_by=None, descending=False, identity=None,
           scheduler=None, progress=True, max_chunks=None, n_jobs=1):
    """Predict every record of ``sources`` chunk by chunk, filter, and write the survivors to ``output`` (CSV).

    Parameters
    ----------
    model, meta
        A fitted property model and its metadata (:func:`ml4ms.serialize.load_model`).
    sources : list of Dataset or parts
        The records to screen: datasets, or parts that read them chunk by chunk
        (:func:`ml4ms.datasets.sources.open_parts`). Rows name their ``index``
        in their part (and the part, in a ``data`` column, when there are several).
    output : str
        The CSV written when every chunk is done.
    filters : list of str or Filter
        Conditions applied in order (:class:`Filter`).
    chunk : int
        Records per chunk: the unit of work, of memory and of resuming.
    rank_by : str, optional
        Rank the survivors by this prediction column (a ``rank`` column first).
    descending : bool
        Rank the largest first.
    identity : optional
        What makes the job the same job (e.g. the model's path and a hash of its
        file); a rerun with the same identity, sources, filters and chunk continues.
    scheduler : str or distributed.Client, optional
        Where chunks run (:class:`ml4ms.parallel.Executor`).
    max_chunks : int, optional
        Stop after computing this many chunks; a later call continues.
    n_jobs : int, default 1
        Local worker processes for the chunks when no scheduler is chosen.

    Returns
    -------
    dict
        ``n_records``, ``stages`` (``[(filter, passed)]``), ``n_survivors``,
        ``chunks`` (total), ``done`` (finished), ``resumed`` (finished before
        this call), ``complete``.
    """
    from .datasets.sources import as_part, plan_chunks
    from .outputs import write_csv
    from .streaming import fingerprint, read_state, run_chunks
    from .workflow import _show_progress

    columns = prediction_columns(meta)
    filters = [f if isinstance(f, Filter) else Filter(f, columns) for f in filters]
    if rank_by is not None and rank_by not in columns:
        raise InputError(f"--rank-by: '{rank_by}' is not a prediction column",
                         hint=f"choose one of: {', '.join(columns)}")
    parts = [as_part(s) for s in sources]
    plan = plan_chunks(parts, int(chunk))
    job = fingerprint({"model": identity, "data": [p.identity() for p in parts], "filters": [f.text for f in filters],
                       "chunk": int(chunk), "rank_by": rank_by, "descending": bool(descending)})
    folder = partial_folder(output)
    state_path = os.path.join(folder, "state.json")
    state = read_state(state_path, job)
    if state is None:
        shutil.rmtree(folder, ignore_errors=True)
    done = {k: v for k, v in (state or {"done": {}})["done"].items() if os.path.exists(_chunk_path(folder, int(k)))}
    resumed = len(done)
    order = _rank_key(rank_by, descending) if rank_by is not None else None

    def save(key, rows):
        survivors, passed = apply_filters(rows, filters)
        if order is not None:
            survivors.sort(key=order)
        write_csv(_chunk_path(folder, key), survivors)
        return {"n": len(rows), "passed": passed, "columns": list(dict.fromkeys(c for r in survivors for c in r))}

    _show_progress(model, False)
    run_chunks(PredictChunk(model, meta, several=len(parts) > 1), parts, plan, done, save, state_path, job,
               scheduler=scheduler, max_chunks=max_chunks, progress=progress, desc="screen" if filters else "predict",
               n_jobs=n_jobs)
    stages = [(f.text, sum(d["passed"][i] for d in done.values())) for i, f in enumerate(filters)]
    summary = {"n_records": sum(d["n"] for d in done.values()), "stages": stages, "chunks": len(plan),
               "done": len(done), "resumed": resumed, "complete": len(done) == len(plan)}
    summary["n_survivors"] = stages[-1][1] if stages else summary["n_records"]
    if summary["complete"]:
        header = ["index"] + (["data"] if len(parts) > 1 else [])
        found = [c for key in range(len(plan)) for c in done[str(key)]["columns"]]
        names = list(dict.fromkeys(header + found))
        names += [c for c in columns if c not in names] if names == header else []
        _merge(folder, range(len(plan)), output, names, rank_by=rank_by, descending=descending)
        shutil.rmtree(folder, ignore_errors=True)
    return summary
