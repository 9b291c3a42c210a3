"""Neural-network interatomic potentials: model, committee, training, ASE calculator, model files, MD, label
checks, novelty.

The names below are imported from their modules when first used, so that ``import ml4ms.potentials.md`` (the
command line's option limits) does not load scikit-learn, ASE's calculators or torch.
"""

import importlib

#: public name -> module that defines it
_NAMES = {
    "Committee": "committee",
    "NeuralPotential": "model",
    "NeuralPotentialCalculator": "calculator",
    "PotentialEstimator": "estimator",
    "AtomisticModel": "base",
    "DescriptorNetwork": "descriptor_network",
    "energy_force_consistency": "checks",
    "load_potential": "io",
    "MessagePassingNetwork": "message_passing",
    "MessagePassingPotential": "message_passing",
    "run_md": "md",
    "start_dynamics": "md",
    "save_potential": "io",
    "train_potential": "train",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
