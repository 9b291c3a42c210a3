"""SISSO: sure independence screening and sparsifying operator (Ouyang et al. 2018).

Interpretable descriptor formulas from a table of primary features with units:
a feature space built by operators (with dimensional analysis), SIS screening
streamed over it, and exhaustive l0 regression or the domain-overlap
classification loss.

>>> from ml4ms.sisso import SISSORegressor, SISSOClassifier, FeatureSpace
"""

from .classify import l0_classification, overlap
from .estimators import SISSOClassifier, SISSORegressor
from .expressions import evaluate, to_latex
from .features import OPERATORS, FeatureSpace
from .solver import l0_regression, screen
from .units import format_unit, parse_unit

__all__ = [
    "OPERATORS",
    "FeatureSpace",
    "SISSOClassifier",
    "SISSORegressor",
    "evaluate",
    "format_unit",
    "l0_classification",
    "l0_regression",
    "overlap",
    "parse_unit",
    "screen",
    "to_latex",
]
