"""Several descriptors side by side: their features concatenated per structure."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError
from .base import as_records, check_finite_params


class ConcatDescriptor(TransformerMixin, BaseEstimator):
    """Concatenate the per-structure features of several descriptors.

    Parameters
    ----------
    parts : list of dict
        Each ``{"name": NAME, **params}`` as in a recipe's ``[descriptor]``
        table (in TOML: ``[[descriptor.parts]]`` tables).
    weights : list of float, optional
        Multiply each part's block (useful with scaled kernels to balance blocks).
    progress : bool, default True
        Passed on to the parts that show progress bars.

    Attributes
    ----------
    descriptors_ : list
        The fitted parts.
    blocks_ : list of [str, int, int]
        ``[name, start, stop]`` of each part's columns in the output (e.g. for
        the ``blocks`` of :class:`~ml4ms.models.ensemble.EnsembleRegressor`).
    n_features_out_ : int

    Examples
    --------
    >>> d = ConcatDescriptor(parts=[{"name": "columns", "columns": ["a"]},
    ...                             {"name": "columns", "columns": ["b"]}])
    >>> d.fit_transform([{"a": 1, "b": 2}])
    array([[1., 2.]])
    >>> d.blocks_
    [['columns', 0, 1], ['columns', 1, 2]]
    >>> d.get_feature_names_out().tolist()
    ['columns0__a', 'columns1__b']
    """

    def __init__(self, *, parts=None, weights=None, progress=True):
        self.parts = parts
        self.weights = weights
        self.progress = progress

    def fit(self, X, y=None):
        self._fit(X, transform=False)
        return self

    def learned_from_data(self):
        """What the parts' ``fit`` learn from the data, each named with its part (empty when nothing)."""
        from . import make_descriptor

        return [f"{part['name']} {what}" for part in self.parts or []
                for what in make_descriptor(part["name"], **{k: v for k, v in part.items() if k != "name"})
                .learned_from_data()]

    def fit_transform(self, X, y=None):
        """Fit every part and return the concatenated features (each part computed once)."""
        return self._weighted(self._fit(X, transform=True))

    def _weighted(self, blocks):
        if self.weights is not None:
            blocks = [w * b for w, b in zip(self.weights, blocks)]
        return np.hstack(blocks)

    def _fit(self, X, transform):
        from . import make_descriptor

        check_finite_params(self)
        if not self.parts:
            raise InputError("descriptor 'concat' needs parts = [{name = ...}, ...]")
        if self.weights is not None and len(self.weights) != len(self.parts):
            raise InputError("descriptor 'concat': one weight per part")
        records = as_records(X)
        self.descriptors_ = []
        blocks = []
        for part in self.parts:
            params = {k: v for k, v in part.items() if k != "name"}
            descriptor = make_descriptor(part["name"], **params)
            if "progress" in descriptor.get_params() and "progress" not in params:
                descriptor.set_params(progress=self.progress)
            if transform:
                blocks.append(descriptor.fit_transform(records))
            else:
                descriptor.fit(records)
            self.descriptors_.append(descriptor)
        self.n_features_out_ = int(sum(d.n_features_out_ for d in self.descriptors_))
        stops = np.cumsum([int(d.n_features_out_) for d in self.descriptors_]).tolist()
        self.blocks_ = [[part["name"], start, stop] for part, start, stop in zip(self.parts, [0] + stops[:-1], stops)]
        species = set()
        for d in self.descriptors_:
            species.update(getattr(d, "species_", []))
        self.species_ = sorted(species)
        return blocks

    def transform(self, X):
        check_is_fitted(self, "descriptors_")
        records = as_records(X)
        for part, d in zip(self.parts, self.descriptors_):  # progress switched after fitting reaches the parts
            if "progress" in d.get_params() and "progress" not in part:
                d.set_params(progress=self.progress)
        return self._weighted([d.transform(records) for d in self.descriptors_])

    def get_feature_names_out(self, input_features=None):
        """Every part's feature names, prefixed with the part's name: ``"soap__soap_O_O_l0_n0_n0"``.

        A name shared by several parts gets the part's position, ``"columns0__a"``,
        so that names stay unique.
        """
        check_is_fitted(self, "descriptors_")
        names = [part["name"] for part in self.parts]
        out = []
        for k, (name, descriptor) in enumerate(zip(names, self.descriptors_)):
            prefix = f"{name}{k}" if names.count(name) > 1 else name
            out += [f"{prefix}__{feature}" for feature in descriptor.get_feature_names_out()]
        return np.asarray(out, dtype=object)
