"""Dimensional analysis for SISSO feature spaces.

A unit is a vector of rational exponents over named base units (``eV``,
``angstrom``, ...). Units are symbolic: ``eV`` and ``angstrom`` are independent
bases and no conversion factors are applied; what matters is that sums and
differences only combine like units and that products and powers propagate
exponents.

>>> u = parse_unit("eV/angstrom^2")
>>> format_unit(u)
'eV angstrom^-2'
>>> format_unit(unit_power(parse_unit("angstrom"), 0.5))
'angstrom^1/2'
>>> is_dimensionless(parse_unit(""))
True
"""

import re
from fractions import Fraction

import numpy as np

from ..errors import InputError

#: the base units: one per kind of quantity, symbolic (no conversion), so a unit outside them
#: (a typo, or a second unit of a kind already here) would silently be a dimension of its own
BASE_UNITS = ("eV", "angstrom", "amu", "e", "K", "fs")

#: spellings that mean the same base unit
ALIASES = {
    "å": "angstrom",
    "ang": "angstrom",
    "angstroem": "angstrom",
    "a": "angstrom",
    "ev": "eV",
    "ev/atom": "eV",
    "u": "amu",
    "kelvin": "K",
}

_DIMENSIONLESS = {"", "1", "-", "none", "dimensionless"}
_TOKEN = re.compile(r"^([A-Za-zÅå_][A-Za-z0-9Åå_]*)(?:\^\(?(-?\d+(?:/\d+)?)\)?)?$")


def _canonical(name):
    return ALIASES.get(name.lower(), ALIASES.get(name, name))


def parse_unit(text):
    """Parse ``"eV"``, ``"eV/angstrom^2"``, ``"eV*angstrom^-1"`` or ``""`` into a dict.

    Returns
    -------
    dict of str -> Fraction
        Non-zero exponents of the base units (empty for dimensionless).

    Raises
    ------
    InputError
        For text that is not a product of powers of :data:`BASE_UNITS` (or their aliases).

    Examples
    --------
    >>> parse_unit("furlong")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: unknown unit 'furlong'; use the base units eV, angstrom, amu, e, K, fs (e.g. eV/angstrom^2), or '' for none
    """
    text = "" if text is None else str(text).strip()
    if text.lower() in _DIMENSIONLESS:
        return {}
    out = {}
    # split on * and /, keeping the operator
    parts = re.split(r"\s*([*/])\s*|\s+", text)
    sign = 1
    for part in parts:
        if part is None or part == "":
            continue
        if part in "*/":
            sign = -1 if part == "/" else 1
            continue
        if part == "1":
            continue
        match = _TOKEN.match(part)
        if not match:
            raise InputError(f"cannot read unit '{text}'", hint="write e.g. eV, angstrom, eV/angstrom^2 or '' for none")
        name = _canonical(match.group(1))
        if name not in BASE_UNITS:
            raise InputError(f"unknown unit '{match.group(1)}'" + (f" in '{text}'" if text != part else ""),
                             hint=f"use the base units {', '.join(BASE_UNITS)} (e.g. eV/angstrom^2), or '' for none")
        power = Fraction(match.group(2)) if match.group(2) else Fraction(1)
        out[name] = out.get(name, Fraction(0)) + sign * power
        sign = 1
    return {k: v for k, v in out.items() if v != 0}


def format_unit(unit):
    """Human-readable form of a unit dict (``"1"`` when dimensionless)."""
    if not unit:
        return "1"
    parts = []
    for name in sorted(unit, key=lambda k: (unit[k] < 0, k)):
        power = Fraction(unit[name]).limit_denominator(1000)
        parts.append(name if power == 1 else f"{name}^{power}")
    return " ".join(parts)


def unit_power(unit, power):
    """The unit raised to ``power`` (a number or Fraction)."""
    power = Fraction(power).limit_denominator(1000)
    return {k: Fraction(v) * power for k, v in unit.items() if Fraction(v) * power != 0}


def is_dimensionless(unit):
    """True if the unit dict has no base-unit exponents."""
    return not unit


def unit_matrix(units, bases=None):
    """Stack unit dicts into an ``(n, n_bases)`` float array of exponents.

    Returns
    -------
    matrix : ndarray
    bases : list of str
    """
    if bases is None:
        bases = sorted({k for u in units for k in u})
    matrix = np.zeros((len(units), len(bases)))
    for i, unit in enumerate(units):
        for k, v in unit.items():
            matrix[i, bases.index(k)] = float(v)
    return matrix, list(bases)


def matrix_row_to_unit(row, bases):
    """Inverse of :func:`unit_matrix` for one row."""
    return {b: Fraction(float(v)).limit_denominator(1000) for b, v in zip(bases, row) if abs(v) > 1e-9}
