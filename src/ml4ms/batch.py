"""The typed batch: structures as torch tensors for descriptors and potentials, built once by :func:`collate`.

An :class:`AtomsBatch` holds one or several structures side by side: the
positions and species of every atom, the cell of every atom's structure, the
periodic directions, the neighbour pairs within a cutoff with their cell
shifts, and the structure index of every atom. Descriptors, potentials and
their training read its fields by name; nothing else builds such tensors.

Also here, the geometry every torch descriptor shares: the neighbour list on
arrays (:func:`neighbor_list`), pair vectors under a homogeneous strain
(:func:`pair_vectors`), and the torch plumbing (:func:`torch_dtype`,
:class:`single_thread`). torch is imported only when a function needs it.
"""

import dataclasses

import numpy as np

from .errors import InputError


def _torch():
    import torch

    return torch


def torch_dtype(dtype):
    """``"float64"``/``"float32"`` (or a torch dtype) -> torch dtype.

    Examples
    --------
    >>> torch_dtype("float32")
    torch.float32
    """
    torch = _torch()
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in ("float64", "double", np.float64, float):
        return torch.float64
    if dtype in ("float32", "float", np.float32):
        return torch.float32
    raise InputError(f"unknown dtype '{dtype}'", hint="use 'float64' or 'float32'")


#: what a ``device`` option may say
DEVICE_HINT = "use 'cpu' (the default), 'cuda' or 'cuda:N'"


def torch_device(device="cpu", option="device"):
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (or a torch device) -> torch device, checked against this machine.

    A CUDA device that torch cannot see (no GPU, a CPU build of torch, an index beyond the GPUs) is an
    :class:`~ml4ms.errors.InputError` on one line that names ``option``.

    Examples
    --------
    >>> torch_device("cpu")
    device(type='cpu')
    >>> torch_device("gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'; use 'cpu' (the default), ...
    """
    torch = _torch()
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or (
            device.startswith("cuda:") and device[5:].isdigit())):
        raise InputError(f"{option} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}", hint=DEVICE_HINT)
    if device == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device[5:]) if ":" in device else None
    if count == 0 or (index is not None and index >= count):
        found = "no CUDA GPU" if count == 0 else f"{count} CUDA GPU{'s' if count > 1 else ''}"
        raise InputError(f"{option} is '{device}', but torch finds {found} on this machine",
                         hint=f"set {option} to 'cpu'" + ("" if count == 0 else f" or 'cuda:0' ... 'cuda:{count - 1}'"))
    return torch.device(device)


class single_thread:
    """Run torch on one intra-op thread inside the block (restored after).

    The per-structure tensors are small: extra threads only add spin-waiting,
    which is very slow on a loaded machine. Parallelism comes from ``n_jobs``.
    """

    def __enter__(self):
        torch = _torch()
        self._n = torch.get_num_threads()
        if self._n != 1:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self._n != 1:
            _torch().set_num_threads(self._n)
        return False


def neighbor_list(positions, cell, pbc, cutoff):
    """Ordered pairs (i, j, S) with ``|r_j + S·cell − r_i| < cutoff``, sorted by ``i``.

    :func:`ml4ms.neighbors.neighbor_pairs` on arrays; cells smaller than the
    cutoff are handled and the zero-shift self pair is excluded.

    Examples
    --------
    >>> from ase.build import bulk
    >>> a = bulk("Cu", "fcc", a=3.6)
    >>> i, j, S = neighbor_list(a.positions, a.cell.array, a.pbc, 3.0)
    >>> len(i)
    12
    """
    from ase import Atoms

    from .neighbors import neighbor_pairs

    atoms = Atoms(positions=np.asarray(positions, dtype=float).reshape(-1, 3), cell=cell, pbc=pbc)
    if atoms.pbc.all() and abs(np.linalg.det(atoms.cell.array)) < 1e-12:
        raise InputError("periodic cell has zero volume", hint="give a full-rank cell or set pbc=False")
    i, j, _, S = neighbor_pairs(atoms, cutoff)
    order = np.argsort(i, kind="stable")
    return i[order], j[order], S[order]


def pair_vectors(positions, cell, i, j, shifts, strain=None):
    """Vectors ``D_ij = r_j + S·cell − r_i`` as a torch tensor (n_pairs, 3).

    ``cell`` is (3, 3), or (n_atoms, 3, 3) to batch several structures in one
    call (row *a* is the cell of the structure that owns atom *a*). With
    ``strain`` (a 3×3 tensor ε, or (n_atoms, 3, 3) when batching; usually
    zeros with ``requires_grad``), positions and cell are deformed by
    ``(1 + ε)``, so ``dE/dε`` at ε = 0 is the virial (−stress × volume).
    """
    torch = _torch()
    D = positions[j] - positions[i]
    if shifts.shape[0] and bool(shifts.any()):
        S = shifts.to(positions.dtype)
        if cell.dim() == 3:
            D = D + torch.einsum("px,pxy->py", S, cell[i])
        else:
            D = D + S @ cell
    if strain is not None:
        if strain.dim() == 3:
            D = D + torch.einsum("px,pxy->py", D, strain[i])
        else:
            D = D @ (torch.eye(3, dtype=positions.dtype, device=positions.device) + strain)
    return D


@dataclasses.dataclass(frozen=True)
class AtomsBatch:
    """Structures side by side as torch tensors (see :func:`collate`).

    Attributes
    ----------
    positions : torch.Tensor (n_atoms, 3)
        Å, in the batch's float dtype.
    numbers : torch.Tensor of int64 (n_atoms,)
        Atomic numbers.
    species_index : torch.Tensor of int64 (n_atoms,)
        Index of every atom's element in the species list the batch was built for.
    cell : torch.Tensor (n_atoms, 3, 3)
        The cell of the structure that owns each atom (rows are lattice vectors).
    pbc : torch.Tensor of bool (n_structures, 3)
    i, j : torch.Tensor of int64 (n_pairs,)
        Neighbour pairs (centre, neighbour) within the cutoff, sorted by ``i``;
        indices into the batch's atoms.
    shifts : torch.Tensor of int64 (n_pairs, 3)
        Cell shift S of each neighbour image: ``D = r_j + S·cell − r_i``.
    structure : torch.Tensor of int64 (n_atoms,)
        The structure of every atom, non-decreasing.
    counts : torch.Tensor of int64 (n_structures,)
        Atoms per structure.
    cutoff : float
        The cutoff the pairs were found with (with a graph: see :func:`collate`).
    edge_weights : torch.Tensor (n_pairs, n_weights) or None
        Per-edge weights of the graph the pairs came from (e.g. Voronoi face
        areas, columns named by the graph's ``weight_names``); None without.
    """

    positions: object
    numbers: object
    species_index: object
    cell: object
    pbc: object
    i: object
    j: object
    shifts: object
    structure: object
    counts: object
    cutoff: float
    edge_weights: object = None

    @property
    def n_atoms(self):
        return int(self.positions.shape[0])

    @property
    def n_structures(self):
        return int(self.counts.shape[0])

    def replace(self, **changes):
        """A copy with some fields replaced, e.g. ``batch.replace(positions=p)``."""
        return dataclasses.replace(self, **changes)

    def to(self, device):
        """This batch on ``device`` (a torch device); the batch itself when it is there already (no copies)."""
        if self.positions.device == device:
            return self
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self)
                                            if f.name != "cutoff" and getattr(self, f.name) is not None})

    def split(self, values):
        """Per-atom rows (numpy or torch, first axis n_atoms) split into one array per structure.

        Examples
        --------
        >>> from ase.build import bulk, molecule
        >>> b = collate([bulk("Cu"), molecule("H2O")], 3.0, [1, 8, 29])
        >>> [len(part) for part in b.split(np.arange(b.n_atoms))]
        [1, 3]
        """
        return list(np.split(np.asarray(values), np.cumsum(self.counts.cpu().numpy())[:-1])) \
            if isinstance(values, np.ndarray) else list(values.split(self.counts.tolist()))

    @classmethod
    def concat(cls, batches):
        """One batch of several batches (built with the same species, cutoff and dtype), in order."""
        torch = _torch()
        batches = list(batches)
        atom_offsets = np.cumsum([0] + [b.n_atoms for b in batches])[:-1]
        structure_offsets = np.cumsum([0] + [b.n_structures for b in batches])[:-1]
        cat = {name: torch.cat([getattr(b, name) for b in batches])
               for name in ("positions", "numbers", "species_index", "cell", "pbc", "shifts", "counts")}
        weights = [b.edge_weights for b in batches]
        if any(w is None for w in weights) and not all(w is None for w in weights):
            raise InputError("some batches have edge weights and some have none",
                             hint="build them all with the same graph")
        return cls(i=torch.cat([b.i + int(o) for b, o in zip(batches, atom_offsets)]),
                   j=torch.cat([b.j + int(o) for b, o in zip(batches, atom_offsets)]),
                   structure=torch.cat([b.structure + int(o) for b, o in zip(batches, structure_offsets)]),
                   cutoff=batches[0].cutoff, edge_weights=None if weights[0] is None else torch.cat(weights),
                   **cat)


def collate(frames, cutoff, species, dtype="float64", graph=None):
    """The :class:`AtomsBatch` of ``frames``, with the neighbour pairs within ``cutoff`` Å.

    Parameters
    ----------
    frames : list of ase.Atoms
    cutoff : float or None
        None only with ``graph``: the batch's ``cutoff`` is then the longest
        edge (0.0 without edges).
    species : sequence of int
        Atomic numbers; ``species_index`` indexes into it. An element outside
        it is an :class:`~ml4ms.errors.InputError` naming the structure.
    dtype : {"float64", "float32"}
    graph : object with ``edges(atoms)`` and ``weight_names``, optional
        A graph builder of :mod:`ml4ms.graphs` (``RadiusGraph``, ``KNNGraph``,
        ``VoronoiGraph``): its edges replace the pairs within ``cutoff`` and
        its weights, if it names any, fill ``edge_weights`` (columns in the
        order of ``graph.weight_names``).

    Examples
    --------
    >>> from ase.build import bulk
    >>> b = collate([bulk("Cu", "fcc", a=3.6), bulk("Cu", "fcc", a=3.7)], 3.0, [29])
    >>> b.n_structures, b.n_atoms, len(b.i), b.structure.tolist()
    (2, 2, 24, [0, 1])
    >>> from ml4ms.graphs import VoronoiGraph
    >>> v = collate([bulk("Fe", "bcc", a=2.87)], None, [26], graph=VoronoiGraph(weights="area"))
    >>> len(v.i), tuple(v.edge_weights.shape)
    (14, (14, 1))
    """
    torch = _torch()
    dt = torch_dtype(dtype)
    if cutoff is None and graph is None:
        raise InputError("collate needs a cutoff or a graph", hint="give cutoff in Å or graph=")
    frames = list(frames)
    index = species_indices(frames, species)
    pairs = [neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff) if graph is None
             else _graph_edges(graph, atoms, k) for k, atoms in enumerate(frames)]
    counts = np.array([len(a) for a in frames], dtype=np.int64)
    offsets = np.cumsum(counts) - counts

    def cat(arrays, dtype=np.int64, width=None):
        arrays = [np.asarray(a, dtype=dtype).reshape((-1,) + ((width,) if width else ())) for a in arrays]
        return np.concatenate(arrays) if arrays else np.zeros((0,) + ((width,) if width else ()), dtype)

    cells = np.repeat(np.array([np.asarray(a.cell.array, dtype=float) for a in frames]).reshape(-1, 3, 3),
                      counts, axis=0)
    return AtomsBatch(
        positions=torch.as_tensor(cat([a.positions for a in frames], float, 3), dtype=dt),
        numbers=torch.from_numpy(cat([a.numbers for a in frames])),
        species_index=torch.from_numpy(cat(index)),
        cell=torch.as_tensor(cells, dtype=dt),
        pbc=torch.from_numpy(np.array([np.asarray(a.pbc, dtype=bool) for a in frames]).reshape(-1, 3)),
        i=torch.from_numpy(cat([p[0] + o for p, o in zip(pairs, offsets)])),
        j=torch.from_numpy(cat([p[1] + o for p, o in zip(pairs, offsets)])),
        shifts=torch.from_numpy(cat([p[2] for p in pairs], width=3)),
        structure=torch.from_numpy(np.repeat(np.arange(len(frames), dtype=np.int64), counts)),
        counts=torch.from_numpy(counts),
        cutoff=float(cutoff) if cutoff is not None else
        max([float(p.distances.max(initial=0.0)) for p in pairs], default=0.0),
        edge_weights=None if not getattr(graph, "weight_names", ()) else
        torch.as_tensor(cat([p.weights for p in pairs], float, len(graph.weight_names)), dtype=dt),
    )


def species_indices(frames, species):
    """The index in ``species`` of every atom's element, one int64 array per structure.

    An element outside ``species`` is an :class:`~ml4ms.errors.InputError` naming the structure.

    Examples
    --------
    >>> from ase.build import molecule
    >>> [a.tolist() for a in species_indices([molecule("H2O")], [1, 8])]
    [[1, 0, 0]]
    """
    lookup = {int(z): k for k, z in enumerate(species)}
    out = []
    for k, atoms in enumerate(frames):
        try:
            out.append(np.array([lookup[int(z)] for z in atoms.numbers], dtype=np.int64))
        except KeyError as exc:
            from ase.data import chemical_symbols

            raise InputError(f"element {chemical_symbols[exc.args[0]]} is not among the elements "
                             f"({', '.join(chemical_symbols[int(z)] for z in species)})", index=k,
                             hint="add it to species or refit") from None
    return out


def _graph_edges(graph, atoms, index):
    """``graph.edges(atoms)``; an :class:`~ml4ms.errors.InputError` names the structure ``index``."""
    try:
        return graph.edges(atoms)
    except InputError as exc:
        raise exc.at(index) from None
