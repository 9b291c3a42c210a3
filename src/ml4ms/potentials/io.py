"""Potential files: a folder with ``model.json`` (architecture, descriptor
settings, metadata) and ``arrays.npz`` (weights, statistics), checksummed.

The format is :mod:`ml4ms.serialize`'s (no pickle, no ``torch.load``): a
plain ASE script needs only ``from ml4ms.potentials import load_potential``.
A committee is a folder of member folders ``member0``, ``member1``, ... plus
``committee.json``.
"""

import json
import os

from ..errors import ModelFileError
from ..outputs import write_json
from ..serialize import load_model, save_model
from .model import NeuralPotential

KIND = "ml4ms-neural-potential"
COMMITTEE = "committee.json"


def save_potential(path, model, metadata=None):
    """Write a :class:`NeuralPotential` (or a list of them, a committee) to the folder ``path``."""
    if isinstance(model, (list, tuple)):
        os.makedirs(path, exist_ok=True)
        for k, member in enumerate(model):
            save_potential(os.path.join(path, f"member{k}"), member, metadata)
        write_json(os.path.join(path, COMMITTEE), {"kind": KIND, "members": len(model)})
        return
    meta = dict(metadata or {})
    meta["kind"] = KIND
    save_model(path, model, meta)


def load_potential(path, with_metadata=False):
    """Read a potential folder; a committee folder gives a list of models.

    Examples
    --------
    >>> import tempfile, os
    >>> from ase.build import bulk
    >>> a = bulk("MgO", "rocksalt", a=4.2)
    >>> m = NeuralPotential(hidden=(3,), descriptor_params={"radial_order": 2, "angular_order": 1})
    >>> m = m.initialize([a], [-10.0])
    >>> d = os.path.join(tempfile.mkdtemp(), "pot")
    >>> save_potential(d, m)
    >>> abs(load_potential(d).compute(a)[0] - m.compute(a)[0]) < 1e-12
    True
    """
    path = os.fspath(path)
    committee = os.path.join(path, COMMITTEE)
    if os.path.exists(committee):
        with open(committee, encoding="utf-8") as handle:
            doc = json.load(handle)
        out = [load_potential(os.path.join(path, f"member{k}"), with_metadata) for k in range(int(doc["members"]))]
        if with_metadata:
            return [m for m, _ in out], out[0][1]
        return out
    model, meta = load_model(path)
    if not isinstance(model, NeuralPotential) or meta.get("kind") != KIND:
        raise ModelFileError(f"{path}: not a neural-network potential; give a folder written by 'ml4ms potential fit'")
    return (model, meta) if with_metadata else model
