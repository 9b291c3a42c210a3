"""Potential files: a folder with ``model.json`` (architecture, descriptor
settings, metadata) and ``arrays.npz`` (weights, statistics), checksummed.

The format is :mod:`ml4ms.serialize`'s (no pickle, no ``torch.load``): a
plain ASE script needs only ``from ml4ms.potentials import load_potential``.
A committee is a folder of member folders ``member0``, ``member1``, ... plus
``committee.json``, which records the checksum of every member's
``model.json`` and is checksummed itself (:func:`ml4ms.serialize.seal`): a
member swapped, added or removed is refused like an edited model file.
"""

import os

from ..errors import InputError, ModelFileError
from ..outputs import write_json
from ..serialize import JSON_NAME, check_seal, load_model, read_json, save_model, seal
from .committee import Committee, as_committee
from .model import NeuralPotential

KIND = "ml4ms-neural-potential"
COMMITTEE = "committee.json"
#: the most members a committee file may declare (a sanity bound against a damaged file)
MAX_MEMBERS = 1000


def save_potential(path, model, metadata=None):
    """Write a :class:`NeuralPotential` (or a :class:`~ml4ms.potentials.committee.Committee`) to the folder ``path``."""
    if isinstance(model, (Committee, list, tuple)):
        model = as_committee(model)
        os.makedirs(path, exist_ok=True)
        sums = []
        for k, member in enumerate(model):
            save_potential(os.path.join(path, f"member{k}"), member, metadata)
            sums.append(read_json(os.path.join(path, f"member{k}", JSON_NAME))["sha256"])
        write_json(os.path.join(path, COMMITTEE), seal({"kind": KIND, "members": len(model), "members_sha256": sums}))
        return
    meta = dict(metadata or {})
    meta["kind"] = KIND
    save_model(path, model, meta)


def load_potential(path, with_metadata=False):
    """Read a potential folder; a committee folder gives a :class:`~ml4ms.potentials.committee.Committee`.

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
    if not os.path.exists(committee) and not os.path.exists(os.path.join(path, JSON_NAME)):
        members = os.path.isdir(path) and any(e.startswith("member") for e in os.listdir(path))
        raise ModelFileError(f"{path}: not a potential folder (no {COMMITTEE if members else JSON_NAME})"
                             + ("; the committee folder is incomplete" if members else
                                "; give a folder written by 'ml4ms potential fit -o'"))
    if os.path.exists(committee):
        out = [load_potential(member, True) for member in _committee_members(path)]
        try:
            committee = Committee([m for m, _ in out])
        except InputError as exc:
            raise ModelFileError(f"{path}: {exc.message}; the committee folder was edited") from None
        return (committee, out[0][1]) if with_metadata else committee
    model, meta = load_model(path)
    if not isinstance(model, NeuralPotential) or meta.get("kind") != KIND:
        raise ModelFileError(f"{path}: not a neural-network potential; give a folder written by 'ml4ms potential fit'")
    return (model, meta) if with_metadata else model


def _committee_members(path):
    """The member folders of the committee folder ``path``, checked against ``committee.json``."""
    where = os.path.join(path, COMMITTEE)
    doc = read_json(where, "committee file")
    check_seal(doc, where)
    n, sums = doc.get("members"), doc.get("members_sha256")
    if doc.get("kind") != KIND or isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_MEMBERS \
            or not isinstance(sums, list) or len(sums) != n:
        raise ModelFileError(f"{where}: not a committee of potentials (kind, members or their checksums are wrong); "
                             "give a folder written by 'ml4ms potential fit --members N'")
    members = [os.path.join(path, f"member{k}") for k in range(n)]
    for k, member in enumerate(members):
        if not os.path.exists(os.path.join(member, JSON_NAME)):
            raise ModelFileError(f"{path}: member{k} is missing ({n} members declared); the committee folder is "
                                 "incomplete")
        doc = read_json(os.path.join(member, JSON_NAME))
        if not isinstance(doc, dict) or doc.get("sha256") != sums[k]:
            raise ModelFileError(f"{member}: not the member {COMMITTEE} was written with (checksum differs); "
                                 "obtain the original committee or refit it")
    extra = sorted(e for e in os.listdir(path) if e.startswith("member") and e not in {f"member{k}" for k in range(n)})
    if extra:
        raise ModelFileError(f"{path}: {extra[0]} is not among the {n} members {COMMITTEE} declares; remove it")
    return members
