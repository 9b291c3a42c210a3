"""A message-passing regressor of structure properties: :class:`MPNNRegressor`, a scikit-learn estimator.

The network is :class:`~ml4ms.models.graph_network.EdgeUpdateNetwork` (invariant message passing with edge
updates, Jørgensen, Jacobsen and Schmidt, arXiv:1806.03146) on a graph of every structure built by
:mod:`ml4ms.graphs` from the ``graph`` settings (a recipe's ``[graph]`` table, :data:`GRAPH`):

.. code-block:: toml

    [graph]
    kind = "radius"          # "radius", "knn" or "voronoi"
    cutoff = 5.0             # Å: the radius; for knn the farthest neighbour; the range of the distance basis
    k = 12                   # knn only
    weights = ["area", "solid_angle"]   # voronoi only: edge weights ([] for none)
    topology_only = false    # edges carry connectivity only: no distance, no weights

The regressor takes structures: a list of :class:`ase.Atoms`, or the rows of the ``structures`` descriptor
(:class:`~ml4ms.descriptors.structure_rows.StructureRows`), which is how recipes, committees and stacked
ensembles hand them over. Graphs are built once per structure and kept (a bounded cache keyed by the
structure and the graph settings), so cross-validation folds, committee members and an ensemble's
out-of-sample fits reuse them; with ``n_jobs`` they are built in parallel (:mod:`ml4ms.parallel`).

Training (:meth:`MPNNRegressor.fit`): every target is first reduced by a least-squares composition baseline
(element counts for ``readout = "sum"``, element fractions for ``"mean"``) and standardised; the network learns
the rest, all targets at once, with Adam on the mean squared error, the learning rate halved when the validation
loss stalls, and early stopping on a seeded validation split (whole groups; the best epoch's weights are kept).
``max_epochs`` and ``max_minutes`` bound the work. Every random step follows ``random_state``: the same seed
gives the same model.
"""

import hashlib
import math
import time
from collections import OrderedDict

import numpy as np
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..config import Table, boolean, check, check_value, integer, list_of, number, one_of, or_none, string
from ..descriptors.base import PROGRESS_MIN
from ..errors import InputError
from ..graphs import VORONOI_WEIGHTS

#: graph kinds of the ``[graph]`` table
GRAPH_KINDS = ("radius", "knn", "voronoi")
#: the keys of a ``[graph]`` table and their rules
GRAPH = {"kind": string(*GRAPH_KINDS), "cutoff": number("> 0", note="Å"), "k": integer(1),
         "weights": list_of(string(*VORONOI_WEIGHTS), unique=True), "min_area": number(">= 0"),
         "symmetric": boolean(), "topology_only": boolean()}
#: the keys that belong to one kind only
_KIND_KEYS = {"k": "knn", "symmetric": "knn", "weights": "voronoi", "min_area": "voronoi"}
#: the defaults of each kind
_GRAPH_DEFAULTS = {"radius": {"cutoff": 5.0}, "knn": {"k": 12, "cutoff": 8.0, "symmetric": False},
                   "voronoi": {"cutoff": 8.0, "weights": list(VORONOI_WEIGHTS), "min_area": 1e-6}}
#: structures per forward pass when predicting
PREDICT_BATCH = 256
#: an epoch whose validation loss is not finite or above this many times the best one diverged: training goes on
#: from the best weights with half the learning rate and a fresh optimiser
DIVERGED = 10.0
#: graphs kept between fits (edges in all); the oldest are dropped first
CACHE_EDGES = 20_000_000
_cache = OrderedDict()  # (graph key, structure key) -> (i, j, distances, weights)
_cache_edges = [0]


def graph_settings(graph=None, source=None):
    """The complete settings of a ``[graph]`` table (defaults filled in), checked; one-line errors.

    Examples
    --------
    >>> graph_settings({"kind": "knn", "k": 8})
    {'kind': 'knn', 'topology_only': False, 'k': 8, 'cutoff': 8.0, 'symmetric': False}
    >>> graph_settings({"kind": "radius", "k": 8})
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: [graph] k is a setting of kind 'knn', not 'radius'; remove it, or set kind = "knn"
    """
    graph = dict(graph or {})
    check(graph, GRAPH, source, table=("graph",))
    kind = graph.get("kind", "radius")
    for key, owner in _KIND_KEYS.items():
        if key in graph and owner != kind:
            raise InputError(f"[graph] {key} is a setting of kind '{owner}', not '{kind}'", source=source,
                             hint=f"remove it, or set kind = \"{owner}\"")
    if graph.get("topology_only") and graph.get("weights"):
        raise InputError("[graph] topology_only graphs carry no edge weights", source=source,
                         hint="remove weights, or set topology_only = false")
    out = {"kind": kind, "topology_only": bool(graph.get("topology_only", False))}
    out.update({**_GRAPH_DEFAULTS[kind], **{k: v for k, v in graph.items() if k not in ("kind", "topology_only")}})
    if kind == "voronoi" and out["topology_only"]:
        out["weights"] = []
    return out


def graph_builder(settings):
    """The :mod:`ml4ms.graphs` builder of complete settings (:func:`graph_settings`).

    Examples
    --------
    >>> graph_builder(graph_settings({"kind": "voronoi", "weights": ["area"]}))
    VoronoiGraph(weights=('area',), min_area=1e-06)
    """
    from ..graphs import KNNGraph, RadiusGraph, VoronoiGraph

    if settings["kind"] == "radius":
        return RadiusGraph(settings["cutoff"])
    if settings["kind"] == "knn":
        return KNNGraph(settings["k"], max_cutoff=settings["cutoff"], symmetric=settings["symmetric"])
    return VoronoiGraph(weights=tuple(settings["weights"]) or None, min_area=settings["min_area"])


def _structure_key(atoms):
    """A digest of everything a graph depends on: numbers, positions, cell, pbc."""
    h = hashlib.sha1()
    for part in (atoms.numbers.astype(np.int64), np.asarray(atoms.positions, dtype=float),
                 np.asarray(atoms.cell.array, dtype=float), np.asarray(atoms.pbc, dtype=bool)):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.digest()


class _EdgeArrays:
    """``builder.edges(atoms)`` reduced to what the network reads: ``(i, j, distances, weights)``."""

    def __init__(self, builder):
        self.builder = builder

    def __call__(self, atoms):
        e = self.builder.edges(atoms)
        return (e.i.astype(np.int32), e.j.astype(np.int32), e.distances,
                None if e.weights is None else np.asarray(e.weights, dtype=float))


def structure_graphs(frames, settings, n_jobs=1, progress=False):
    """The graph of every structure, ``(i, j, distances, weights)`` each; built once, then kept (see the notes).

    Errors of a structure (:class:`~ml4ms.errors.InputError`) name its index in ``frames``.
    """
    from ..descriptors.base import Indexed
    from ..parallel import Executor

    graph_key = repr(sorted(settings.items()))
    keys = [(graph_key, _structure_key(a)) for a in frames]
    missing = list(dict.fromkeys(k for k in keys if k not in _cache))
    if missing:
        first = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        todo = [(first[k], frames[first[k]]) for k in missing]
        built = Executor(n_jobs=n_jobs).map(Indexed(_EdgeArrays(graph_builder(settings))), todo,
                                            progress=progress, desc="graphs", serial_below=400)
        for key, graph in zip(missing, built):
            _cache[key] = graph
            _cache_edges[0] += len(graph[0])
    out = [_cache[k] for k in keys]
    for key in keys:
        _cache.move_to_end(key)
    while _cache_edges[0] > CACHE_EDGES and len(_cache) > len(set(keys)):
        _, graph = _cache.popitem(last=False)
        _cache_edges[0] -= len(graph[0])
    return out


def _ranges(starts, counts):
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    begin = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(np.asarray(starts, dtype=np.int64) - begin,
                                                                     counts)


class GraphData:
    """The graphs of many structures side by side as torch tensors; :meth:`take` gives a batch of some of them.

    Built once per fit or predict. Only what the invariant network reads is kept: the species of every atom, the
    edges with their lengths and weights, and where every structure's atoms and edges start.
    """

    def __init__(self, frames, graphs, species, dtype, device, n_weights):
        import torch

        from ..batch import species_indices, torch_dtype

        index = species_indices(frames, species)
        self.counts = np.array([len(a) for a in frames], dtype=np.int64)
        self.atom_start = np.cumsum(self.counts) - self.counts
        self.edge_counts = np.array([len(g[0]) for g in graphs], dtype=np.int64)
        self.edge_start = np.cumsum(self.edge_counts) - self.edge_counts
        offsets = np.repeat(self.atom_start, self.edge_counts)
        dt = torch_dtype(dtype)
        self.device = device

        def tensor(values, dtype):
            return torch.as_tensor(values, dtype=dtype).to(device)

        cat = np.concatenate
        self.species_index = tensor(cat(index) if index else np.zeros(0), torch.int64)
        self.i = tensor(cat([g[0] for g in graphs] + [np.zeros(0, np.int32)]).astype(np.int64) + offsets,
                        torch.int64)
        self.j = tensor(cat([g[1] for g in graphs] + [np.zeros(0, np.int32)]).astype(np.int64) + offsets,
                        torch.int64)
        self.distances = tensor(cat([g[2] for g in graphs] + [np.zeros(0)]), dt)
        self.weights = None
        if n_weights:
            self.weights = tensor(cat([np.reshape(g[3], (-1, n_weights)) for g in graphs]
                                      + [np.zeros((0, n_weights))]), dt)

    @property
    def n_structures(self):
        return len(self.counts)

    def edge_weight_means(self):
        """The mean of every edge weight column (1 where there are none)."""
        if self.weights is None or not len(self.weights):
            return np.ones(1)
        return np.maximum(self.weights.double().mean(0).cpu().numpy(), 1e-12)

    def take(self, idx):
        """``(species_index, i, j, distances, weights, structure, counts)`` of the structures ``idx``."""
        import torch

        idx = np.asarray(idx, dtype=np.int64)
        counts, edge_counts = self.counts[idx], self.edge_counts[idx]
        atoms = _ranges(self.atom_start[idx], counts)
        edges = torch.from_numpy(_ranges(self.edge_start[idx], edge_counts)).to(self.device)
        shift = torch.from_numpy(np.repeat(self.atom_start[idx] - (np.cumsum(counts) - counts),
                                           edge_counts)).to(self.device)
        return (self.species_index[torch.from_numpy(atoms).to(self.device)], self.i[edges] - shift,
                self.j[edges] - shift, self.distances[edges],
                None if self.weights is None else self.weights[edges],
                torch.from_numpy(np.repeat(np.arange(len(idx)), counts)).to(self.device),
                torch.from_numpy(counts).to(self.device))


def composition_matrix(frames, species, readout):
    """Element counts (``readout = "sum"``) or fractions (``"mean"``) of every structure, (n, n_species).

    Examples
    --------
    >>> from ase.build import molecule
    >>> composition_matrix([molecule("H2O")], [1, 8], "mean").round(3).tolist()
    [[0.667, 0.333]]
    """
    column = {int(z): k for k, z in enumerate(species)}
    C = np.zeros((len(frames), len(species)))
    for n, atoms in enumerate(frames):
        for z in atoms.numbers:
            if int(z) in column:
                C[n, column[int(z)]] += 1.0
        if readout == "mean":
            C[n] /= len(atoms)
    return C


def _split(n, groups, fraction, rng):
    """Seeded training and validation indices, whole groups in one of them; no validation when too few."""
    if fraction <= 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    labels, inverse = np.unique(groups, return_inverse=True)
    n_val = int(round(fraction * len(labels)))
    if n_val < 1 or n_val >= len(labels):
        return np.arange(n), np.zeros(0, dtype=np.int64)
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[rng.permutation(len(labels))[:n_val]] = True
    return np.flatnonzero(~chosen[inverse]), np.flatnonzero(chosen[inverse])


def diverged(score, train_loss, best, factor=DIVERGED):
    """Whether an epoch diverged: a loss that is not finite, or a validation loss ``score`` above ``factor`` times
    ``best``, the best one so far (or the untrained network's, if lower).

    Examples
    --------
    >>> diverged(0.3, 0.2, 0.1), diverged(12.3, 13.8, 0.1), diverged(float("nan"), 0.2, float("inf"))
    (False, True, True)
    """
    return not (math.isfinite(score) and math.isfinite(train_loss)) or score > factor * best


class MPNNRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Invariant message passing with edge updates on graphs of structures (see the module notes).

    Parameters
    ----------
    graph : dict, optional
        The ``[graph]`` settings (:data:`GRAPH`); default a radius graph of 5 Å.
    species : list of str or int, optional
        The elements the model knows (symbols or atomic numbers); default: those of the training structures.
        Recipes give every element of the data, so that a committee member or a cross-validation fold that
        misses an element still predicts for it (from an untrained embedding: a committee shows it by its
        spread).
    features : int, default 64
        Width of the atom and edge states.
    interactions : int, default 3
        Message-passing layers.
    radial_basis : int, default 16
        Sine functions of the distance basis.
    readout : {"mean", "sum"}, default "mean"
        Average the atoms' outputs (intensive targets: per-atom energies, band gaps) or add them up
        (extensive ones: total or atomization energies).
    learning_rate : float, default 1e-3
        Adam's initial step; halved after ``patience // 3`` epochs without a better validation loss. An epoch
        that diverges (a validation loss not finite or above :data:`DIVERGED` times the best, or the untrained
        network's) sends training back to the best weights with half the step and a fresh optimiser
        (``history_["restarts"]``).
    batch_size : int, default 32
        Structures per step.
    max_epochs : int, default 300
    patience : int, default 30
        Stop after this many epochs without a better validation loss; the best epoch's weights are kept.
    validation_fraction : float, default 0.1
        Share of the training structures (whole groups) held out for early stopping; 0 trains on all for
        ``max_epochs`` and keeps the last weights.
    max_minutes : float, optional
        Stop after the first epoch that ends past this many minutes (the best weights so far are kept).
    random_state : int, default 0
        Seed of the weights, the validation split and the order of the batches.
    device : str, default "cpu"
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (:func:`ml4ms.batch.torch_device`): where the network trains and
        predicts. A model file keeps it: to predict on a machine without that GPU, ``set_params(device="cpu")``.
    dtype : {"float32", "float64"}, default "float32"
    n_jobs : int, default 1
        Processes that build the graphs.
    progress : bool, default True
        A progress bar of the epochs (on a terminal).

    Attributes
    ----------
    species_ : list of int
        The atomic numbers of ``species``, or those seen in training; sorted.
    graph_ : dict
        The complete graph settings.
    reference_ : ndarray (n_species, n_outputs)
        The composition baseline per element.
    scale_ : ndarray (n_outputs,)
        The standard deviation the network's outputs are multiplied by.
    state_ : dict of str -> ndarray
        The network's parameters and buffers.
    n_outputs_ : int
        Target columns (0 for a 1-D ``y``).
    best_epoch_, n_epochs_ : int
        The epoch whose weights were kept (-1: none improved on the untrained network, whose weights are kept) and
        the epochs run.
    history_ : dict
        ``{"train": [...], "validation": [...], "restarts": [...]}``: the mean squared error of the standardised
        targets per epoch, and the epochs that diverged and went back to the best weights.
    validation_indices_ : ndarray of int
        The structures held out for early stopping (empty without).

    Examples
    --------
    >>> from ase.build import bulk
    >>> frames = [bulk("Cu", "fcc", a=a) for a in (3.5, 3.6, 3.7, 3.8)]
    >>> model = MPNNRegressor(features=8, interactions=2, max_epochs=5, progress=False)
    >>> model.fit(frames, [0.3, 0.1, 0.0, 0.05]).predict(frames).shape
    (4,)
    """

    #: StructureRegressor gives all targets at once (one network learns them together)
    _per_output_search = True
    #: recipes hand this model the rows of the ``structures`` descriptor
    takes_structures = True
    _param_rules = {"graph": Table(GRAPH), "species": or_none(list_of(one_of(string(), integer(1)))),
                    "features": integer(1), "interactions": integer(1),
                    "radial_basis": integer(1), "readout": string("mean", "sum"),
                    "learning_rate": number("> 0"), "batch_size": integer(1), "max_epochs": integer(1),
                    "patience": integer(1), "validation_fraction": number("[0, 1)"),
                    "max_minutes": or_none(number("> 0")), "random_state": integer(0),
                    "device": string(), "dtype": string("float32", "float64"), "n_jobs": integer(),
                    "progress": boolean()}

    def __init__(self, *, graph=None, species=None, features=64, interactions=3, radial_basis=16, readout="mean",
                 learning_rate=1e-3, batch_size=32, max_epochs=300, patience=30, validation_fraction=0.1,
                 max_minutes=None, random_state=0, device="cpu", dtype="float32", n_jobs=1, progress=True):
        self.graph = graph
        self.species = species
        self.features = features
        self.interactions = interactions
        self.radial_basis = radial_basis
        self.readout = readout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.max_minutes = max_minutes
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.progress = progress

    # ------------------------------------------------------------------ set-up
    def _check_params(self):
        for name, rule in self._param_rules.items():
            if name != "graph" and (name != "species" or self.species is not None):
                check_value(getattr(self, name), rule, name, hint=f"fix {name} of the mpnn model")
        from ..batch import torch_device

        return graph_settings(self.graph), torch_device(self.device)

    def _network_config(self):
        return {"n_species": len(self.species_), "features": int(self.features),
                "interactions": int(self.interactions), "radial_basis": int(self.radial_basis),
                "cutoff": float(self.graph_["cutoff"]), "n_edge_weights": len(self._weight_names()),
                "topology_only": bool(self.graph_["topology_only"]), "n_outputs": len(self.scale_),
                "readout": str(self.readout), "dtype": str(self.dtype)}

    def _weight_names(self):
        return () if self.graph_["topology_only"] else tuple(self.graph_.get("weights", ()))

    def _data(self, frames, progress=False):
        graphs = structure_graphs(frames, self.graph_, n_jobs=self.n_jobs, progress=progress)
        from ..batch import torch_device

        return GraphData(frames, graphs, self.species_, self.dtype, torch_device(self.device),
                         len(self._weight_names()))

    def network(self):
        """The :class:`~ml4ms.models.graph_network.EdgeUpdateNetwork` of the fitted state (built once, reused)."""
        import torch

        from .graph_network import EdgeUpdateNetwork

        from ..batch import torch_device

        check_is_fitted(self, "state_")
        device = torch_device(self.device)
        key = (id(self.state_), repr(self.get_params(deep=False)))
        cached = self.__dict__.get("_network")
        if cached is not None and cached[0] == key:
            return cached[1]
        net = EdgeUpdateNetwork(**self._network_config())
        own = net.state_dict()
        if sorted(own) != sorted(self.state_) or any(np.size(self.state_[k]) != own[k].numel() for k in own):
            raise InputError("the weights do not match the settings (features, interactions, radial_basis, graph)",
                             hint="refit the model with these settings")
        net.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=own[k].dtype).reshape(own[k].shape)
                             for k, v in self.state_.items()})
        net.to(device).eval().requires_grad_(False)
        self.__dict__["_network"] = (key, net)
        return net

    # --------------------------------------------------------------------- fit
    def fit(self, X, y, groups=None):
        """Train on structures (a list of :class:`ase.Atoms` or ``structures`` rows) and targets ``y``.

        Parameters
        ----------
        X : list of ase.Atoms, or ndarray of structure rows
        y : array-like (n,) or (n, n_outputs)
        groups : array-like (n,), optional
            Structures with one label stay on one side of the validation split (duplicates).

        Returns
        -------
        self
        """
        import torch

        from ..descriptors.structure_rows import as_structures
        from ..structures import check_structures
        from .graph_network import EdgeUpdateNetwork

        self.graph_, device = self._check_params()
        frames = as_structures(X)
        check_structures(frames)
        y = np.asarray(y, dtype=float)
        if y.ndim not in (1, 2) or len(y) != len(frames):
            raise InputError(f"{len(frames)} structures but targets of shape {y.shape}",
                             hint="give one target row per structure")
        if not np.all(np.isfinite(y)):
            row = int(np.flatnonzero(~np.all(np.isfinite(y.reshape(len(y), -1)), axis=1))[0])
            raise InputError("target is NaN or infinite", index=row, hint="fix or drop the structure")
        self.n_outputs_ = 0 if y.ndim == 1 else y.shape[1]
        Y = y.reshape(len(y), -1)
        groups = np.arange(len(frames)) if groups is None else np.asarray(groups)
        if self.species is None:
            self.species_ = sorted({int(z) for a in frames for z in a.numbers})
        else:
            from ..descriptors.base import species_numbers

            self.species_ = species_numbers(self.species)
        C = composition_matrix(frames, self.species_, self.readout)
        self.reference_ = np.linalg.lstsq(C, Y, rcond=None)[0]
        residual = Y - C @ self.reference_
        if self.readout == "sum":
            sizes = np.array([len(a) for a in frames], dtype=float)[:, None]
            scale = np.sqrt(np.mean(residual ** 2 / sizes, axis=0))
        else:
            scale = residual.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        Z = residual / self.scale_

        rng = np.random.default_rng(int(self.random_state))
        data = self._data(frames, progress=bool(self.progress) and len(frames) >= PROGRESS_MIN)
        net = EdgeUpdateNetwork(**self._network_config())
        self.__dict__.pop("_network", None)
        from ..potentials.message_passing import initial_weights

        start = initial_weights(net, rng)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(torch.as_tensor(start[name], dtype=p.dtype))
            net.readout.outer.weight.zero_()  # training starts from the composition baseline
            net.neighbour_scale.fill_(math.sqrt(max(len(data.i) / max(int(data.counts.sum()), 1), 1.0)))
            net.weight_scale.copy_(torch.as_tensor(data.edge_weight_means(), dtype=torch.float64))
        net.to(device)
        train, val = _split(len(frames), groups, float(self.validation_fraction), rng)
        self.validation_indices_ = val
        targets = torch.as_tensor(Z, dtype=data.distances.dtype).to(device)
        self._train(net, data, targets, train, val, rng)
        self.state_ = {k: v.detach().cpu().double().numpy().copy() for k, v in net.state_dict().items()}
        return self

    def _train(self, net, data, targets, train, val, rng):
        """Adam with a plateau schedule and early stopping; sets ``best_epoch_``, ``n_epochs_``, ``history_``."""
        import copy

        import torch
        from tqdm.auto import tqdm

        def optimiser(lr):
            adam = torch.optim.Adam(net.parameters(), lr=lr)
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(adam, factor=0.5,
                                                                 patience=max(1, int(self.patience) // 3))
            return adam, plateau

        optimizer, schedule = optimiser(float(self.learning_rate))
        size = int(self.batch_size)
        began = time.monotonic()
        budget = math.inf if self.max_minutes is None else 60.0 * float(self.max_minutes)
        history = {"train": [], "validation": [], "restarts": []}
        best, best_state, best_epoch = math.inf, copy.deepcopy(net.state_dict()), -1
        untrained = self._loss(net, data, targets, val if len(val) else train)
        bar = tqdm(range(int(self.max_epochs)), desc="mpnn epochs", leave=False,
                   disable=None if self.progress else True)
        for epoch in bar:
            net.train()
            order = rng.permutation(train)
            total = 0.0
            for start in range(0, len(order), size):
                batch = order[start:start + size]
                optimizer.zero_grad()
                loss = torch.mean((net(*data.take(batch)) - targets[torch.as_tensor(batch).to(targets.device)]) ** 2)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            history["train"].append(total / max(len(order), 1))
            score = self._loss(net, data, targets, val) if len(val) else history["train"][-1]
            history["validation"].append(score if len(val) else math.nan)
            if diverged(score, history["train"][-1], min(best, untrained)):
                net.load_state_dict(best_state)
                optimizer, schedule = optimiser(optimizer.param_groups[0]["lr"] / 2)
                history["restarts"].append(epoch)
            else:
                if score < best or not len(val):
                    best, best_epoch = score, epoch
                    best_state = copy.deepcopy(net.state_dict())
                schedule.step(score)
            bar.set_postfix(train=f"{history['train'][-1]:.3g}", val=f"{score:.3g}", refresh=False)
            if epoch - best_epoch >= int(self.patience) or time.monotonic() - began > budget:
                break
        bar.close()
        net.load_state_dict(best_state)
        self.best_epoch_, self.n_epochs_, self.history_ = int(best_epoch), len(history["train"]), history

    @staticmethod
    def _loss(net, data, targets, idx, size=PREDICT_BATCH):
        """Mean squared error of the standardised targets of the structures ``idx``."""
        import torch

        net.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(idx), size):
                batch = idx[start:start + size]
                diff = net(*data.take(batch)) - targets[torch.as_tensor(batch).to(targets.device)]
                total += float(torch.sum(diff ** 2)) / targets.shape[1]
        return total / len(idx)

    # ----------------------------------------------------------------- predict
    def predict(self, X):
        """Predictions for structures (a list of :class:`ase.Atoms` or ``structures`` rows), (n,) or (n, n_outputs).

        Raises
        ------
        InputError
            A structure holds an element not seen in training (naming the structure).
        """
        import torch

        from ..descriptors.structure_rows import as_structures
        from ..structures import check_structures

        check_is_fitted(self, "state_")
        frames = as_structures(X)
        check_structures(frames)
        net = self.network()
        data = self._data(frames)
        out = [np.zeros((0, len(self.scale_)))]
        with torch.no_grad():
            for start in range(0, len(frames), PREDICT_BATCH):
                out.append(net(*data.take(np.arange(start, min(start + PREDICT_BATCH, len(frames)))))
                           .double().cpu().numpy())
        pred = composition_matrix(frames, self.species_, self.readout) @ self.reference_ \
            + np.concatenate(out) * self.scale_
        return pred[:, 0] if self.n_outputs_ == 0 else pred


__all__ = ["GRAPH", "GraphData", "MPNNRegressor", "composition_matrix", "graph_builder", "graph_settings",
           "structure_graphs"]
