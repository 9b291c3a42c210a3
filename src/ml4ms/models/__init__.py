"""Learning: regressors on descriptor features, and the structure-level model.

Models are built by name from recipes through :func:`make_regressor`;
:data:`REGRESSORS` lists the names.
"""

import importlib

from ..errors import InputError

#: name -> "module:Class"; modules starting with "sklearn." are absolute
REGRESSORS = {
    "krr": "ml4ms.models.kernel:KernelRidge",
    "committee": "ml4ms.models.committee:CommitteeRegressor",
    "ensemble": "ml4ms.models.ensemble:EnsembleRegressor",
    "gp": "ml4ms.models.gp:GaussianProcessRegressor",
    "mpnn": "ml4ms.models.mpnn:MPNNRegressor",
    "ridge": "ml4ms.models.linear:Ridge",
    "lasso": "sklearn.linear_model:Lasso",
    "bayesian_ridge": "ml4ms.models.linear:BayesianRidge",
}


def regressor_class(name):
    """The class registered under ``name``."""
    if name not in REGRESSORS:
        raise InputError(f"unknown model '{name}'", hint=f"choose one of: {', '.join(sorted(REGRESSORS))}")
    module, cls = REGRESSORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_regressor(name, **params):
    """Build the regressor registered under ``name``."""
    cls = regressor_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"bad parameters for model '{name}': {exc}") from None


__all__ = ["REGRESSORS", "make_regressor", "regressor_class"]
