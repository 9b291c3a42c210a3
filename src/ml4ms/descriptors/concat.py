"""Several descriptors side by side: their features concatenated per structure."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError
from .base import as_records


class ConcatDescriptor(TransformerMixin, BaseEstimator):
    """Concatenate the per-structure features of several descriptors.

    Parameters
    ----------
    parts : list of dict
        Each ``{"name": NAME, **params}`` as in a recipe's ``[descriptor]``
        table (in TOML: ``[[descriptor.parts]]`` tables).
    weights : list of float, optional
        Multiply each part's block (useful with scaled kernels to balance blocks).

    Examples
    --------
    >>> d = ConcatDescriptor(parts=[{"name": "columns", "columns": ["a"]},
    ...                             {"name": "columns", "columns": ["b"]}])
    >>> d.fit_transform([{"a": 1, "b": 2}])
    array([[1., 2.]])
    """

    def __init__(self, *, parts=None, weights=None):
        self.parts = parts
        self.weights = weights

    def fit(self, X, y=None):
        from . import make_descriptor

        if not self.parts:
            raise InputError("descriptor 'concat' needs parts = [{name = ...}, ...]")
        if self.weights is not None and len(self.weights) != len(self.parts):
            raise InputError("descriptor 'concat': one weight per part")
        records = as_records(X)
        self.descriptors_ = []
        for part in self.parts:
            params = {k: v for k, v in part.items() if k != "name"}
            self.descriptors_.append(make_descriptor(part["name"], **params).fit(records))
        self.n_features_out_ = int(sum(d.n_features_out_ for d in self.descriptors_))
        species = set()
        for d in self.descriptors_:
            species.update(getattr(d, "species_", []))
        self.species_ = sorted(species)
        return self

    def transform(self, X):
        check_is_fitted(self, "descriptors_")
        records = as_records(X)
        blocks = [d.transform(records) for d in self.descriptors_]
        if self.weights is not None:
            blocks = [w * b for w, b in zip(self.weights, blocks)]
        return np.hstack(blocks)
