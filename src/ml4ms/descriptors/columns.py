"""Tabular features: numeric columns of a table row or of ``atoms.info``."""

import numpy as np

from ..errors import InputError
from ..structures import get_property
from .base import GlobalDescriptor


class ColumnFeatures(GlobalDescriptor):
    """Numeric columns taken as features, for tabular data and Δ-style baselines.

    Parameters
    ----------
    columns : list of str
        Keys looked up in each record (a CSV row, or ``atoms.info``).
    n_jobs : int, default 1
    progress : bool, default True

    Examples
    --------
    >>> ColumnFeatures(columns=["x"]).fit_transform([{"x": "1.5"}, {"x": 2}])
    array([[1.5],
           [2. ]])
    """

    _uses_species = False

    def __init__(self, *, columns=None, n_jobs=1, progress=True):
        self.columns = columns
        self.n_jobs = n_jobs
        self.progress = progress

    def _fit_extra(self, records):
        if not self.columns:
            raise InputError("ColumnFeatures needs columns=[...]", hint="name the feature columns")
        if isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns):
            raise InputError(f"columns must be a list of column names, got {self.columns!r}",
                             hint="e.g. --set \"columns=['a','b']\" (quote it for the shell), or columns = [\"a\", "
                                  "\"b\"] in the recipe")
        repeated = sorted({c for c in self.columns if list(self.columns).count(c) > 1})
        if repeated:
            raise InputError(f"column '{repeated[0]}' is listed twice in columns", hint="list every column once")

    def _n_features(self):
        return len(self.columns)

    def _featurize(self, record):
        row = np.empty(len(self.columns))
        for k, key in enumerate(self.columns):
            value = get_property(record, key)
            try:
                row[k] = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"feature column '{key}' is missing or not a number ({value!r})",
                    hint="check the column names and the value",
                ) from None
            if not np.isfinite(row[k]):
                raise InputError(f"feature column '{key}' is {row[k]}", hint="fix or drop the row")
        return row

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.columns, dtype=object)
