"""Target transforms applied around a model: log1p, per-atom, baseline (Δ-learning).

The transform is stateless and uses only the records (atom counts, baseline
values), so it can be applied identically in training, cross-validation and
prediction. Order in :meth:`TargetTransform.forward`: subtract the baseline,
divide by the number of atoms, then ``log1p``; :meth:`~TargetTransform.inverse`
undoes them in reverse order.
"""

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .structures import get_targets, item_of, n_atoms

FUNCTIONS = ("none", "log1p")


@dataclass(frozen=True)
class TargetTransform:
    """How a raw target ``y`` becomes the learned quantity ``z``.

    Parameters
    ----------
    function : {"none", "log1p"}
        ``log1p`` suits non-negative targets scored by RMSLE; its inverse
        clips predictions at 0.
    per_atom : bool
        Learn ``y / n_atoms`` (extensive targets such as total energies).
    baseline : str, optional
        Key of a cheap baseline property; learn ``y - baseline`` (Δ-learning).

    Examples
    --------
    >>> t = TargetTransform(function="log1p")
    >>> z = t.forward(np.array([0.0, 1.0]), [{}, {}])
    >>> np.allclose(t.inverse(z, [{}, {}]), [0.0, 1.0])
    True
    """

    function: str = "none"
    per_atom: bool = False
    baseline: str = None

    def __post_init__(self):
        if self.function not in FUNCTIONS:
            raise InputError(
                f"unknown target transform '{self.function}'", hint=f"choose one of: {', '.join(FUNCTIONS)}"
            )

    def _atoms(self, records):
        return np.array([n_atoms(r) for r in records], dtype=float)

    def _baseline(self, records, source=None):
        return get_targets(records, [self.baseline], source=source, what="baseline")[:, 0]

    def forward(self, y, records, source=None, name="target"):
        """Raw targets (n,) -> learned quantity (n,); ``source`` and ``name`` (of the target) are for messages.

        Examples
        --------
        >>> TargetTransform(function="log1p").forward(np.array([0.5, -2.0]), [{}, {}], source="t.csv", name="y")
        Traceback (most recent call last):
        ...
        ml4ms.errors.InputError: t.csv: row 1: log1p transform needs values > -1, but y is -2; use transform 'none' for targets that can be negative
        """
        z = np.asarray(y, dtype=float).copy()
        if self.baseline:
            z = z - self._baseline(records, source)
        if self.per_atom:
            z = z / self._atoms(records)
        if self.function == "log1p":
            if np.any(z <= -1):
                i = int(np.argmax(z <= -1))
                learned = name + (f" minus {self.baseline}" if self.baseline else "") + (
                    " per atom" if self.per_atom else "")
                raise InputError(
                    f"log1p transform needs values > -1, but {learned} is {z[i]:.6g}",
                    source=source,
                    index=i,
                    hint="use transform 'none' for targets that can be negative",
                    item=item_of(records[i]) if i < len(records) else "structure",
                )
            z = np.log1p(z)
        return z

    def inverse(self, z, records, std=None, source=None):
        """Learned quantity -> raw targets; with ``std`` also maps the uncertainty.

        Uncertainties go through the first-order (delta-method) derivative of
        the inverse.
        """
        y = np.asarray(z, dtype=float).copy()
        s = None if std is None else np.asarray(std, dtype=float).copy()
        if self.function == "log1p":
            y = np.expm1(y)
            if s is not None:
                s = s * (1.0 + y)
            y = np.clip(y, 0.0, None)
        if self.per_atom:
            atoms = self._atoms(records)
            y = y * atoms
            if s is not None:
                s = s * atoms
        if self.baseline:
            y = y + self._baseline(records, source)
        return y if s is None else (y, s)

    def to_dict(self):
        return {"function": self.function, "per_atom": self.per_atom, "baseline": self.baseline}
