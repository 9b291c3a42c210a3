"""Where a property model's torch parts compute: read and change the ``device`` of every estimator inside a model.

A model file keeps each graph model's ``device``; :func:`set_device` moves a loaded model (the fitted members of
its committees and ensembles included) to another one, as ``ml4ms predict --device cpu`` does for a model
trained on a GPU.
"""

from sklearn.base import BaseEstimator


def _parts(obj):
    """``obj`` and every estimator inside it: its fitted attributes (``estimators_``, ``descriptor_``, ...) and its
    estimator parameters (a wrapper's ``regressor``), nested lists and tuples included."""
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _parts(item)
    elif isinstance(obj, BaseEstimator):
        yield obj
        inside = [v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")]
        for value in inside + list(obj.get_params(deep=False).values()):
            if isinstance(value, (list, tuple, BaseEstimator)):
                yield from _parts(value)


def _with_device(model):
    return [p for p in _parts(model) if "device" in p.get_params(deep=False)]


def model_devices(model):
    """The devices the torch parts of ``model`` compute on, sorted (empty for a model without any).

    Examples
    --------
    >>> from ml4ms.models.mpnn import MPNNRegressor
    >>> model_devices([MPNNRegressor(), MPNNRegressor(device="cuda")])
    ['cpu', 'cuda']
    """
    return sorted({str(p.device) for p in _with_device(model)})


def set_device(model, device):
    """Set ``device`` on every estimator inside ``model`` that has one; returns ``model``.

    The members an ensemble describes as tables (``members = [{"regressor": {...}}]``) keep theirs until they are
    fitted: a refit ensemble trains them where its recipe says; its fitted members move.

    Examples
    --------
    >>> from ml4ms.models.mpnn import MPNNRegressor
    >>> from ml4ms.models.committee import CommitteeRegressor
    >>> model_devices(set_device(CommitteeRegressor(regressor=MPNNRegressor(device="cuda")), "cpu"))
    ['cpu']
    """
    for part in _with_device(model):
        part.set_params(device=device)
    return model
