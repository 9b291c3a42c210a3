"""Features in shards: one ``.npz`` per chunk of structures and an index, for data larger than memory.

``ml4ms featurize DATA --descriptor NAME --chunk N -o FOLDER`` (or
:func:`write_shards`) computes a descriptor chunk by chunk and writes, as each
chunk finishes (atomically),

* ``FOLDER/shard-000000.npz``, ... : ``features`` (rows x features) of the
  chunk's structures, and for ``--per-atom`` their ``structure_index``
  (counted over the whole data, as in a single ``.npz``);
* ``FOLDER/index.json``: ``format``, the ``descriptor`` settings, the
  ``feature_names``, ``per_atom``, the ``data`` read, the number of
  structures, the chunk size, the job's ``fingerprint``, the finished chunks
  (``done``) and, once all are finished, ``complete: true`` and ``shards``:
  each shard's ``file``, ``structures`` ``[start, stop)`` and ``rows``
  ``[start, stop)``.

A run that stops keeps its finished shards; the same command continues from
them (a different job in the folder starts over, removing only the shards and
the index). The descriptor is fitted on the first chunk, which is honest only
when its fitted state follows from its parameters alone
(:meth:`~ml4ms.descriptors.base.BaseDescriptor.learned_from_data` is empty):
species must be given (``species=[...]``), and descriptors that learn a
vocabulary or sizes from the data (``ngrams``, ``bag_of_bonds``,
``local_kernel``, ``coulomb_matrix`` without ``n_atoms_max``) are refused with
one line; write them to one ``.npz`` instead.

:func:`read_features` reads a folder of shards (or a ``.npz`` file) into the
arrays one ``.npz`` would hold, the features in memory or in a memory-mapped
``.npy`` file; :func:`iter_shards` gives them shard by shard.

Examples
--------
>>> import os, tempfile
>>> from ml4ms.datasets import load
>>> from ml4ms.descriptors import make_descriptor
>>> folder = os.path.join(tempfile.mkdtemp(), "feats")
>>> spec = {"name": "composition", "species": ["O", "Al", "Ga", "In"]}
>>> d = make_descriptor(**spec)
>>> summary = write_shards(d, spec, [load("nomad2018", "test")], folder, chunk=250, progress=False)
>>> summary["shards"], sorted(os.listdir(folder))[:2]
(3, ['index.json', 'shard-000000.npz'])
>>> f = read_features(folder)
>>> f["features"].shape[0], [len(s["features"]) for s in iter_shards(folder)]
(600, [250, 250, 100])
"""

import json
import os

import numpy as np

from .errors import InputError, from_source
from .outputs import atomic_path

#: what ``index.json`` declares itself to be
FORMAT = "ml4ms-feature-shards"
INDEX = "index.json"


def shard_name(key):
    """The file name of shard ``key``: ``shard-000007.npz``."""
    return f"shard-{key:06d}.npz"


class FeaturizeChunk:
    """The features of one chunk's pieces (``structure_index`` counted in the chunk for ``per_atom``); picklable.

    The structures are checked first; an error names the file and the
    structure's index in it.
    """

    def __init__(self, descriptor, per_atom=False):
        self.descriptor = descriptor
        self.per_atom = per_atom

    def __call__(self, pieces):
        from .datasets.sources import check_pieces, in_pieces, records_of

        check_pieces(pieces)
        records = records_of(pieces)
        try:
            if self.per_atom:
                return self.descriptor.transform_local(records)
            return self.descriptor.transform(records), None
        except InputError as exc:
            raise in_pieces(pieces, exc) from None


def _check_fit_on_part(descriptor, name):
    learned = descriptor.learned_from_data()
    if learned:
        raise InputError(f"descriptor '{name}' learns from the data ({', '.join(learned)}), so a fit on the first "
                         "chunk would not hold for the rest", hint="give species=[...] (n_atoms_max=N for "
                         "coulomb_matrix) where that is what it learns; else write one .npz (drop --chunk)")


def _clear(folder):
    """Remove the shards and the index of another job from ``folder`` (nothing else)."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name == INDEX or (name.startswith("shard-") and name.endswith(".npz")):
                os.remove(os.path.join(folder, name))


def write_shards(descriptor, spec, sources, folder, chunk=1000, per_atom=False, scheduler=None, progress=True,
                 max_chunks=None):
    """Compute ``descriptor`` on ``sources`` chunk by chunk into ``folder``: one shard per chunk and an index.

    Parameters
    ----------
    descriptor : descriptor
        Not fitted; it is fitted on the first chunk, so nothing it learns
        may come from the data (a one-line error otherwise).
    spec : dict
        Its settings (``{"name": ..., **params}``), written to the index.
    sources : list of Dataset or parts
        The structures (:func:`ml4ms.datasets.sources.open_parts`).
    folder : str
        Where the shards go (created; a finished shard of the same job is kept).
    chunk : int
        Structures per shard.
    per_atom : bool
        Per-atom rows (local descriptors), with ``structure_index``.
    scheduler : str or distributed.Client, optional
        Where the shards are computed (:class:`ml4ms.parallel.Executor`).
    max_chunks : int, optional
        Stop after this many shards; a later call continues.

    Returns
    -------
    dict
        ``n_structures``, ``n_rows`` (of the finished shards), ``n_features``,
        ``shards`` (total), ``done``, ``resumed``, ``complete``.
    """
    from .datasets.sources import as_part, check_pieces, plan_chunks, read_chunks, records_of
    from .outputs import write_npz
    from .streaming import fingerprint, read_state, run_chunks, write_state

    name = spec.get("name", type(descriptor).__name__)
    if per_atom and not hasattr(descriptor, "transform_local"):
        raise InputError(f"descriptor '{name}' is global: it has no per-atom rows", hint="drop --per-atom")
    _check_fit_on_part(descriptor, name)
    parts = [as_part(s) for s in sources]
    chunk = int(chunk)
    plan = plan_chunks(parts, chunk)
    [first] = read_chunks(parts, plan[:1])
    check_pieces(first)
    with from_source(first[0][0]):
        descriptor.fit(records_of(first))
    del first
    names = [str(n) for n in descriptor.get_feature_names_out()]
    job = fingerprint({"descriptor": spec, "per_atom": bool(per_atom), "data": [p.identity() for p in parts],
                       "chunk": chunk})
    index_path = os.path.join(folder, INDEX)
    state = read_state(index_path, job)
    if state is None:
        _clear(folder)
    done = {k: v for k, v in (state or {"done": {}})["done"].items()
            if os.path.exists(os.path.join(folder, v["file"]))}
    resumed = len(done)
    n_structures = sum(len(p) for p in parts)
    extra = {"format": FORMAT, "descriptor": spec, "feature_names": names, "per_atom": bool(per_atom),
             "data": [[p.label, len(p)] for p in parts], "n_structures": n_structures, "chunk": chunk,
             "chunks": len(plan), "complete": False}

    def save(key, result):
        features, index = result
        start = key * chunk  # every chunk but the last holds `chunk` structures
        n = sum(b - a for _, a, b in plan[key])
        arrays = {"features": np.asarray(features)}
        if per_atom:
            arrays["structure_index"] = np.asarray(index, dtype=np.int64) + start
        write_npz(os.path.join(folder, shard_name(key)), arrays, compress=False)  # floats: zlib saves little
        return {"file": shard_name(key), "structures": [start, start + n], "rows": int(len(features))}

    if hasattr(descriptor, "progress"):
        descriptor.set_params(progress=False)
    run_chunks(FeaturizeChunk(descriptor, per_atom), parts, plan, done, save, index_path, job, extra=extra,
               scheduler=scheduler, max_chunks=max_chunks, progress=progress, desc="featurize")
    complete = len(done) == len(plan)
    if complete:
        shards, row = [], 0
        for key in range(len(plan)):
            info = done[str(key)]
            shards.append({"file": info["file"], "structures": info["structures"], "rows": [row, row + info["rows"]]})
            row += info["rows"]
        write_state(index_path, job, done, **{**extra, "complete": True, "shards": shards})
    return {"n_structures": n_structures, "n_rows": sum(d["rows"] for d in done.values()),
            "n_features": len(names), "shards": len(plan), "done": len(done), "resumed": resumed,
            "complete": complete}


def read_index(folder):
    """The index of a folder of shards (a dict), checked to be complete.

    Raises
    ------
    InputError
        If ``folder`` holds no index of shards, or not all of them yet.
    """
    path = os.path.join(os.fspath(folder), INDEX)
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except (OSError, ValueError):
        raise InputError("not a folder of feature shards (no readable index.json)", source=os.fspath(folder),
                         hint="give a folder written by 'ml4ms featurize --chunk N', or a .npz file") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise InputError("index.json is not an index of feature shards", source=os.fspath(folder),
                         hint="give a folder written by 'ml4ms featurize --chunk N'")
    if not index.get("complete"):
        raise InputError(f"the shards are not complete ({len(index.get('done', {}))} of {index.get('chunks')})",
                         source=os.fspath(folder), hint="run the same featurize command again to finish them")
    return index


def iter_shards(folder):
    """Yield the arrays of each shard in order: ``features`` (and ``structure_index``), ``structures``, ``rows``.

    One shard is in memory at a time.
    """
    folder = os.fspath(folder)
    for shard in read_index(folder)["shards"]:
        path = os.path.join(folder, shard["file"])
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the shard {shard['file']} ({type(exc).__name__})", source=folder,
                             hint="run the featurize command again (a different job rewrites the folder)") from None
        yield {**arrays, "structures": tuple(shard["structures"]), "rows": tuple(shard["rows"])}


def read_features(path, mmap=None):
    """The arrays of ``ml4ms featurize``: from a ``.npz`` file or a folder of shards, the same keys either way.

    Parameters
    ----------
    path : str
        A ``.npz`` file or a folder of shards.
    mmap : str, optional
        For a folder: write the features to this ``.npy`` file and return
        them memory-mapped (read-only), so they need not fit in memory.

    Returns
    -------
    dict
        ``features``, ``feature_names``, ``descriptor`` (its settings as JSON
        text) and, for per-atom rows, ``structure_index``.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read features ({type(exc).__name__})", source=path,
                             hint="give a .npz file or a folder written by 'ml4ms featurize'") from None
    index = read_index(path)
    n_rows = index["shards"][-1]["rows"][1]
    out = {"feature_names": np.asarray(index["feature_names"], dtype=str),
           "descriptor": np.asarray(json.dumps(index["descriptor"]))}
    if index["per_atom"]:
        out["structure_index"] = np.empty(n_rows, np.int64)
    with np.load(os.path.join(path, index["shards"][0]["file"]), allow_pickle=False) as f:
        dtype = f["features"].dtype
    shape = (n_rows, len(index["feature_names"]))
    if mmap is None:
        out["features"] = _concatenate(path, np.empty(shape, dtype), out.get("structure_index"))
        return out
    with atomic_path(mmap) as tmp:
        _concatenate(path, np.lib.format.open_memmap(tmp, "w+", dtype, shape), out.get("structure_index")).flush()
    out["features"] = np.load(mmap, mmap_mode="r")
    return out


def _concatenate(folder, features, structure_index):
    """Fill ``features`` (and ``structure_index``) with the rows of every shard; returns ``features``."""
    for shard in iter_shards(folder):
        a, b = shard["rows"]
        features[a:b] = shard["features"]
        if structure_index is not None:
            structure_index[a:b] = shard["structure_index"]
    return features
