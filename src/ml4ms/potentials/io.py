"""Potential files: a folder with ``model.json`` and ``arrays.npz``, checksummed; no pickle, no ``torch.load``.

A potential is stored as its torch module: the module's class (a registered :class:`AtomisticModel` kind), its
configuration of plain values and its ``state_dict``, so that ``Kind(**config)`` and ``load_state_dict`` rebuild
it. Beside the module, ``model.json`` keeps the settings of the estimator that trains it, its training record and
its novelty scale; ``arrays.npz`` keeps the state (``state.<name>``) and the novelty reference environments
(``novelty.<element>``). Loading builds nothing but the kinds in :func:`model_kinds`: a file names a class, never
a function. A plain ASE script needs only ``from ml4ms.potentials import load_potential``.

A committee is a folder of member folders ``member0``, ``member1``, ... plus ``committee.json``, which records
the checksum of every member's ``model.json`` and is checksummed itself (:func:`ml4ms.serialize.seal`): a
member swapped, added or removed is refused like an edited model file.

Folders written by earlier versions (the estimator's arrays in the property-model format) are refused in one
line that names the converter, ``ml4ms potential convert OLD -o NEW`` (:func:`convert_potential`).

A file does not depend on the device that wrote it: the state is saved from the CPU and the estimator's
``device`` setting is not kept, so a potential trained on a GPU loads on a machine without one.
:func:`load_potential` puts it on the CPU unless asked for another device.
"""

import inspect
import os

import numpy as np

from ..errors import InputError, ModelFileError
from ..outputs import write_json
from ..serialize import (FORMAT as MODEL_FORMAT, JSON_NAME, check_seal, load_model, read_arrays, read_json, seal,
                         write_folder)
from .committee import Committee, as_committee
from .descriptor_network import DescriptorNetwork
from .message_passing import MessagePassingNetwork, MessagePassingPotential
from .model import NeuralPotential

#: what ``model.json`` of a potential says it is
FORMAT = "ml4ms-potential"
FORMAT_VERSION = 1
#: the ``kind`` in a potential's metadata
KIND = "ml4ms-neural-potential"
COMMITTEE = "committee.json"
#: the most members a committee file may declare (a sanity bound against a damaged file)
MAX_MEMBERS = 1000


def model_kinds():
    """The kinds a potential file may hold: module class name -> (module class, estimator class).

    The estimator builds the module (``network()``), takes a loaded one's state (``from_network``) and trains it.
    """
    return {"DescriptorNetwork": (DescriptorNetwork, NeuralPotential),
            "MessagePassingNetwork": (MessagePassingNetwork, MessagePassingPotential)}


def convert_hint(path):
    """The converter command for the old potential folder ``path``."""
    return f"convert it with 'ml4ms potential convert {path} -o NEW'"


def save_potential(path, model, metadata=None):
    """Write a potential (or a :class:`~ml4ms.potentials.committee.Committee`) to the folder ``path``."""
    if isinstance(model, (Committee, list, tuple)):
        model = as_committee(model)
        os.makedirs(path, exist_ok=True)
        sums = []
        for k, member in enumerate(model):
            save_potential(os.path.join(path, f"member{k}"), member, metadata)
            sums.append(read_json(os.path.join(path, f"member{k}", JSON_NAME))["sha256"])
        write_json(os.path.join(path, COMMITTEE), seal({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                       "kind": KIND, "members": len(model),
                                                       "members_sha256": sums}))
        return
    net = model.network()
    name = type(net).__name__
    if model_kinds().get(name, (None, None))[1] is not type(model):
        raise InputError(f"{type(model).__name__} with a {name} is not a registered kind of potential",
                         hint="register it in ml4ms.potentials.io.model_kinds")
    state = net.state_dict()
    arrays = {f"state.{k}": v.detach().cpu().numpy() for k, v in state.items()}
    novelty = None
    if hasattr(model, "novelty_references_"):
        novelty = {"scale": float(model.novelty_scale_), "elements": len(model.novelty_references_)}
        arrays.update({f"novelty.{s}": np.asarray(ref) for s, ref in enumerate(model.novelty_references_)})
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": {**(metadata or {}), "kind": KIND},
           "model": {"class": name, "config": net.config(), "state": list(state)},
           "estimator": {"class": type(model).__name__, "params": _plain(saved_settings(model))},
           "training": _plain(getattr(model, "training_", None)), "novelty": novelty}
    write_folder(path, doc, arrays)


def saved_settings(model):
    """The settings of ``model`` that a potential file keeps: all but ``device``, which belongs to the machine.

    Examples
    --------
    >>> sorted(saved_settings(MessagePassingPotential(device="cpu")))
    ['dtype', 'features', 'interactions', 'r_cut', 'radial_basis', 'seed']
    """
    return {k: v for k, v in model.get_params(deep=False).items() if k != "device"}


def load_potential(path, with_metadata=False, device="cpu"):
    """Read a potential folder; a committee folder gives a :class:`~ml4ms.potentials.committee.Committee`.

    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) is where the potential computes (its ``device`` setting);
    the file itself does not say.

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
        out = [load_potential(member, True, device) for member in _committee_members(path)]
        try:
            committee = Committee([m for m, _ in out])
        except InputError as exc:
            raise ModelFileError(f"{path}: {exc.message}; the committee folder was edited") from None
        return (committee, out[0][1]) if with_metadata else committee
    model, meta = _load_member(path)
    model.set_params(device=device)
    model.torch_device()  # a device this machine lacks: one line naming it
    return (model, meta) if with_metadata else model


def _load_member(path):
    """``(estimator, metadata)`` of one potential folder, every part checked."""
    where = os.path.join(path, JSON_NAME)
    doc = read_json(where)
    if not isinstance(doc, dict):
        raise ModelFileError(f"{where}: not a potential file; give a folder written by 'ml4ms potential fit'")
    if doc.get("format") == MODEL_FORMAT:
        meta = doc.get("metadata")
        if isinstance(meta, dict) and meta.get("kind") == KIND:
            raise ModelFileError(f"{path}: a potential in the file format of earlier ml4ms versions; "
                                 + convert_hint(path))
        raise ModelFileError(f"{path}: a property model, not a potential; use it with 'ml4ms predict'")
    if doc.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a potential file; give a folder written by 'ml4ms potential fit'")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ModelFileError(f"{where}: potential format {version} is newer than this ml4ms supports "
                             f"({FORMAT_VERSION}); upgrade ml4ms")
    check_seal(doc, where)
    arrays = read_arrays(path, doc)
    try:
        model = _build(doc, arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise ModelFileError(f"{where}: metadata is not a potential's; the file is damaged")
    meta.setdefault("ml4ms_version", doc.get("ml4ms_version"))
    return model, meta


def _build(doc, arrays):
    """The estimator a checked potential file describes (:class:`ModelFileError` for anything out of place)."""
    import torch

    section, estimator = doc.get("model"), doc.get("estimator")
    if not isinstance(section, dict) or not isinstance(estimator, dict):
        raise ModelFileError("the model or estimator table is missing; the file is damaged")
    kinds = model_kinds()
    name = section.get("class")
    if not isinstance(name, str) or name not in kinds:
        raise ModelFileError(f"class '{str(name)[:80]}' is not a registered kind of potential "
                             f"({', '.join(sorted(kinds))}); do not use this file")
    module_class, estimator_class = kinds[name]
    if estimator.get("class") != estimator_class.__name__:
        raise ModelFileError(f"estimator '{str(estimator.get('class'))[:80]}' does not train a {name}; "
                             "do not use this file")
    config, params = section.get("config"), estimator.get("params")
    _check_keywords(module_class, config, "model config")
    _check_keywords(estimator_class, params, "estimator settings")
    try:
        net = module_class(**config)
        model = estimator_class(**params)
        model.check_settings()
    except (InputError, TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"the settings cannot build a {name} ({_reason(exc)}); the file is damaged") from None
    names = section.get("state")
    own = net.state_dict()
    if not isinstance(names, list) or sorted(map(str, names)) != sorted(own) \
            or sorted(k for k in arrays if k.startswith("state.")) != sorted(f"state.{k}" for k in own):
        raise ModelFileError(f"the stored state does not match a {name} of these settings; the file is damaged")
    try:
        net.load_state_dict({k: torch.as_tensor(arrays[f"state.{k}"]) for k in own})
        model.from_network(net)
    except (RuntimeError, InputError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the stored state does not fit the {name} ({_reason(exc)}); the file is "
                             "damaged") from None
    training = doc.get("training")
    if training is not None:
        if not isinstance(training, dict):
            raise ModelFileError("training is not a table; the file is damaged")
        model.training_ = training
    novelty = doc.get("novelty")
    if novelty is not None:
        n = len(model.species_)
        scale = novelty.get("scale") if isinstance(novelty, dict) else None
        refs = [arrays.get(f"novelty.{s}") for s in range(n)]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0 \
                or novelty.get("elements") != n or any(r is None or r.ndim != 2 or r.dtype.kind != "f" for r in refs):
            raise ModelFileError("the novelty references are damaged; refit them with 'ml4ms potential fit-novelty'")
        model.novelty_references_, model.novelty_scale_ = refs, float(scale)
    return model


def _check_keywords(cls, table, what):
    """``table`` is a dict of ``cls``'s keyword arguments (and nothing else)."""
    if not isinstance(table, dict):
        raise ModelFileError(f"the {what} is not a table; the file is damaged")
    allowed = {p.name for p in inspect.signature(cls.__init__).parameters.values()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
    unknown = sorted(set(map(str, table)) - allowed)
    if unknown:
        raise ModelFileError(f"'{unknown[0][:60]}' is not a setting of {cls.__name__} ({what}); do not use "
                             "this file")


def _reason(exc):
    return str(getattr(exc, "message", exc)).splitlines()[0][:120]


def _plain(value):
    """``value`` with numpy scalars and tuples made plain JSON values (lists, ints, floats)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _committee_members(path):
    """The member folders of the committee folder ``path``, checked against ``committee.json``."""
    where = os.path.join(path, COMMITTEE)
    doc = read_json(where, "committee file")
    if isinstance(doc, dict) and "format" not in doc and doc.get("kind") == KIND:
        raise ModelFileError(f"{path}: a committee in the file format of earlier ml4ms versions; "
                             + convert_hint(path))
    n, sums = _declared_members(doc, where, FORMAT)
    if n is None:
        raise ModelFileError(f"{where}: not a committee of potentials (kind, members or their checksums are wrong); "
                             "give a folder written by 'ml4ms potential fit --members N'")
    return _member_folders(path, n, sums)


def _declared_members(doc, where, file_format):
    """``(n, checksums)`` of the members a sealed committee file ``doc`` of ``file_format`` declares (None for an
    earlier version's file), or ``(None, None)`` when it declares nothing sound."""
    check_seal(doc, where)
    n, sums = doc.get("members"), doc.get("members_sha256")
    if doc.get("kind") != KIND or doc.get("format") != file_format or isinstance(n, bool) or not isinstance(n, int) \
            or not 1 <= n <= MAX_MEMBERS or not isinstance(sums, list) or len(sums) != n:
        return None, None
    return n, sums


def _member_folders(path, n, sums):
    """``member0`` ... ``member{n-1}`` of ``path``, each the one its checksum in ``sums`` says, and no others."""
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


def convert_potential(path, output):
    """Rewrite a potential folder of earlier ml4ms versions (a single potential or a committee) in this format.

    The old files are checked as they always were (checksums, registered classes, removed options); the new
    folder computes the same energies and forces.

    Returns
    -------
    NeuralPotential or Committee
        The potential, as written.
    """
    path, output = os.fspath(path), os.fspath(output)
    where = os.path.join(path, COMMITTEE)
    if os.path.exists(where):
        doc = read_json(where, "committee file")
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            raise ModelFileError(f"{path}: already in the current format; nothing to convert")
        n, sums = _declared_members(doc, where, None)
        if n is None:
            raise ModelFileError(f"{where}: not a committee of potentials; nothing to convert")
        loaded = [_load_old(member) for member in _member_folders(path, n, sums)]
        model, meta = Committee([m for m, _ in loaded]), loaded[0][1]
    else:
        model, meta = _load_old(path)
    save_potential(output, model, meta)
    return model


def _load_old(path):
    """``(potential, metadata)`` of a potential folder in the property-model format of earlier versions."""
    doc = read_json(os.path.join(path, JSON_NAME)) if os.path.exists(os.path.join(path, JSON_NAME)) else None
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        raise ModelFileError(f"{path}: already in the current format; nothing to convert")
    model, meta = load_model(path)
    if not isinstance(model, NeuralPotential) or meta.get("kind") != KIND:
        raise ModelFileError(f"{path}: not a neural-network potential; nothing to convert")
    return model, meta
