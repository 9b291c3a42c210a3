"""Tabular features: numeric columns of a table row or of ``atoms.info``."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError
from ..structures import get_property, item_of
from .base import GlobalDescriptor, as_records


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

    def _n_features(self):
        return len(self.columns)

    def transform(self, X):
        """The columns of every record, shape (n_records, n_columns); a bad value is named by its record."""
        check_is_fitted(self, "n_features_out_")
        records = as_records(X)
        out = np.empty((len(records), len(self.columns)))
        for i, record in enumerate(records):
            out[i] = self._featurize(record, i)
        return out

    def _featurize(self, record, index=None):
        row = np.empty(len(self.columns))
        for k, key in enumerate(self.columns):
            value = get_property(record, key)
            try:
                row[k] = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"feature column '{key}' is missing or not a number ({value!r})",
                    index=index, item=item_of(record), hint="check the column names and the value",
                ) from None
            if not np.isfinite(row[k]):
                raise InputError(f"feature column '{key}' is {row[k]}", index=index, item=item_of(record),
                                 hint="fix or drop the row")
        return row

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.columns, dtype=object)
