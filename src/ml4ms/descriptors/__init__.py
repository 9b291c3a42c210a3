"""Descriptors: scikit-learn transformers from structures to fixed-shape arrays.

Use a class directly, or build one by name (as the TOML recipes do)::

    >>> from ml4ms.descriptors import make_descriptor
    >>> make_descriptor("columns", columns=["a", "b"]).fit_transform([{"a": 1, "b": 2}])
    array([[1., 2.]])

Names and their classes are listed in :data:`DESCRIPTORS`; modules are imported
only when used.
"""

import importlib

from ..errors import InputError

#: name -> "module:Class" (relative to ml4ms.descriptors)
DESCRIPTORS = {
    "columns": "columns:ColumnFeatures",
    "concat": "concat:ConcatDescriptor",
    "composition": "composition:CompositionFeatures",
    "ngrams": "ngrams:BondTopologyNGrams",
    "soap": "soap:SOAP",
    "acsf": "acsf:ACSF",
    "chebyshev": "chebyshev:Chebyshev",
    "coulomb_matrix": "coulomb:CoulombMatrix",
    "bag_of_bonds": "coulomb:BagOfBonds",
    "local_kernel": "local_kernel:LocalKernelFeatures",
    "structures": "structure_rows:StructureRows",
}


def descriptor_class(name):
    """The class registered under ``name``."""
    if name not in DESCRIPTORS:
        raise InputError(
            f"unknown descriptor '{name}'", hint=f"choose one of: {', '.join(sorted(DESCRIPTORS))}"
        )
    module, cls = DESCRIPTORS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make_descriptor(name, **params):
    """Build the descriptor registered under ``name`` with keyword parameters."""
    cls = descriptor_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"bad parameters for descriptor '{name}': {exc}") from None


#: names of :mod:`.base` this package exports, imported on first use so that reading :data:`DESCRIPTORS`
#: (the command line's help) does not import scikit-learn
_FROM_BASE = ("GlobalDescriptor", "LocalDescriptor", "as_records", "species_numbers")


def __getattr__(name):
    if name in _FROM_BASE:
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DESCRIPTORS",
    "GlobalDescriptor",
    "LocalDescriptor",
    "as_records",
    "descriptor_class",
    "make_descriptor",
    "species_numbers",
]
