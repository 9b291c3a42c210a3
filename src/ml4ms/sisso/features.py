"""SISSO feature spaces: operators, dimensional analysis and streaming evaluation.

A :class:`FeatureSpace` holds the features of the lower rungs in memory and
generates the highest rung in batches, so that screening (SIS) streams through
a space that need not fit in memory. Every feature is identified by a *key*
``(op, i, j)``: ``op == -1`` is a stored feature ``i``; otherwise ``op`` indexes
:data:`OPERATORS` applied to stored features ``i`` (and ``j``). Formula strings
and units are only built for the features that survive screening.

Two constructions are available:

* :meth:`FeatureSpace.generic` — operators applied rung by rung (SISSO):
  sums, differences and ``|x - y|`` only of like units, ``exp``/``log``/``sin``
  /``cos`` only of dimensionless features (unless allowed), products and
  powers propagate units; non-finite, constant and too-large features are
  removed; exact duplicates are removed from the stored rungs, and duplicates
  in the streamed rung (counted in ``n_features``) are dropped by the
  screening, which keeps one feature per affine-equivalence class.
* :meth:`FeatureSpace.prl2015` — the explicit construction of the NOMAD
  compressed-sensing tutorial that reproduces Ghiringhelli et al., PRL 114,
  105503 (2015): 3,391 features for the octet binaries.

>>> import numpy as np
>>> X = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0], [4.0, 4.0]])
>>> space = FeatureSpace.generic(X, ["a", "b"], [{}, {}], operators=["+", "*"], rung=1)
>>> sorted(space.describe(k)[0] for k in space.all_keys())
['a', 'a * b', 'a + b', 'b']
"""

import numpy as np

from ..errors import InputError
from .units import matrix_row_to_unit, parse_unit, unit_matrix

#: levels of precedence of formula strings (4 = atom/function call)
_ATOM, _POW, _MUL, _ADD = 4, 3, 2, 1


def _wrap(expr, level, need):
    return expr if level >= need else f"({expr})"


def _fmt_unary(template, need):
    def fmt(a, la):
        return template.format(a=_wrap(a, la, need))
    return fmt


#: the operators a feature space can apply, by name: (arity, numpy function, formatter, result level, unit rule);
#: unit rules: ("pow", p): exponents times p; ("dimless",): input must be dimensionless;
#: ("same",): inputs must share the unit; ("mul",), ("div",)
#:
#: :meta hide-value:
OPERATORS = {
    "+": (2, np.add, lambda a, la, b, lb: f"{a} + {b}", _ADD, ("same",)),
    "-": (2, np.subtract, lambda a, la, b, lb: f"{a} - {_wrap(b, lb, _MUL)}", _ADD, ("same",)),
    "|-|": (2, lambda a, b: np.abs(a - b), lambda a, la, b, lb: f"abs({a} - {_wrap(b, lb, _MUL)})", _ATOM, ("same",)),
    "*": (2, np.multiply, lambda a, la, b, lb: f"{_wrap(a, la, _MUL)} * {_wrap(b, lb, _MUL)}", _MUL, ("mul",)),
    "/": (2, np.divide, lambda a, la, b, lb: f"{_wrap(a, la, _MUL)} / {_wrap(b, lb, _POW)}", _MUL, ("div",)),
    "exp": (1, np.exp, _fmt_unary("exp({a})", 0), _ATOM, ("dimless",)),
    "exp(-x)": (1, lambda a: np.exp(-a), _fmt_unary("exp(-{a})", _POW), _ATOM, ("dimless",)),
    "log": (1, np.log, _fmt_unary("log({a})", 0), _ATOM, ("dimless",)),
    "sin": (1, np.sin, _fmt_unary("sin({a})", 0), _ATOM, ("dimless",)),
    "cos": (1, np.cos, _fmt_unary("cos({a})", 0), _ATOM, ("dimless",)),
    "abs": (1, np.abs, _fmt_unary("abs({a})", 0), _ATOM, ("pow", 1.0)),
    "sqrt": (1, np.sqrt, _fmt_unary("sqrt({a})", 0), _ATOM, ("pow", 0.5)),
    "cbrt": (1, np.cbrt, _fmt_unary("cbrt({a})", 0), _ATOM, ("pow", 1.0 / 3.0)),
    "^-1": (1, lambda a: 1.0 / a, _fmt_unary("1 / {a}", _POW), _MUL, ("pow", -1.0)),
    "^2": (1, np.square, _fmt_unary("{a}**2", _ATOM), _POW, ("pow", 2.0)),
    "^3": (1, lambda a: a * a * a, _fmt_unary("{a}**3", _ATOM), _POW, ("pow", 3.0)),
    "^6": (1, lambda a: (a * a * a) ** 2, _fmt_unary("{a}**6", _ATOM), _POW, ("pow", 6.0)),
}

#: other spellings (SISSO++ names)
OPERATOR_ALIASES = {
    "add": "+", "sub": "-", "abs_diff": "|-|", "mult": "*", "mul": "*", "div": "/",
    "neg_exp": "exp(-x)", "inv": "^-1", "sq": "^2", "cb": "^3", "six_pow": "^6", "ln": "log",
    "exp(-)": "exp(-x)", "1/x": "^-1",
}

_OP_NAMES = list(OPERATORS)


def canonical_operator(name):
    """The canonical spelling of an operator name; raises InputError if unknown."""
    name = OPERATOR_ALIASES.get(str(name).strip(), str(name).strip())
    if name not in OPERATORS:
        raise InputError(f"unknown operator '{name}'", hint=f"choose from: {' '.join(OPERATORS)}")
    return name


def _value_hash(values):
    """Exact-duplicate keys of the columns of ``values`` (9 significant digits)."""
    mant, expo = np.frexp(values)
    mant = np.round(mant, 9)
    return [m.tobytes() + e.tobytes() for m, e in zip(mant.T, expo.T)]


class FeatureSpace:
    """A SISSO feature space: stored features plus a streamed highest rung.

    Use the constructors :meth:`generic` and :meth:`prl2015`.

    Attributes
    ----------
    values : ndarray of shape (n_samples, n_stored)
        Stored (lower-rung) features.
    exprs, units, levels, complexity : lists / arrays over stored features
    bases : list of str
        Base units of the unit exponent matrix.
    """

    def __init__(self, values, exprs, unit_rows, bases, levels, complexity, rungs, *, final_ops=(),
                 final_rung=None, batch_size=4096, max_abs_value=1e50, min_abs_value=0.0,
                 allow_transcendental_units=False, cache_gb=2.0):
        self.values = np.ascontiguousarray(values, dtype=float)
        self.exprs = list(exprs)
        self.unit_rows = np.asarray(unit_rows, dtype=float).reshape(len(self.exprs), len(bases))
        self.bases = list(bases)
        self.levels = np.asarray(levels, dtype=int)
        self.complexity = np.asarray(complexity, dtype=int)
        self.rungs = np.asarray(rungs, dtype=int)
        self.final_ops = [_OP_NAMES.index(op) for op in final_ops]
        self.final_rung = final_rung
        self.batch_size = int(batch_size)
        self.max_abs_value = float(max_abs_value)
        self.min_abs_value = float(min_abs_value)
        self.allow_transcendental_units = bool(allow_transcendental_units)
        self.cache_gb = float(cache_gb)
        self._cache = None
        self.n_features = None  # known after one full pass

    # ------------------------------------------------------------------ constructors
    @classmethod
    def generic(cls, X, names, units, *, operators, rung=1, batch_size=4096, max_abs_value=1e50,
                min_abs_value=0.0, allow_transcendental_units=False, cache_gb=2.0):
        """Operators applied rung by rung to the primary features.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_primary)
        names : list of str
            Names of the primary features (valid Python identifiers).
        units : list of dict
            Units of the primary features (see :func:`ml4ms.sisso.units.parse_unit`).
        operators : list of str
            Subset of :data:`OPERATORS` (SISSO++ names such as ``"abs_diff"`` accepted).
        rung : int
            0 to 3: how many times operators are applied.
        """
        X = np.asarray(X, dtype=float)
        ops = [canonical_operator(op) for op in operators]
        if rung not in (0, 1, 2, 3):
            raise InputError(f"rung must be 0, 1, 2 or 3, got {rung}")
        for name in names:
            if not str(name).isidentifier():
                raise InputError(f"feature name '{name}' is not an identifier", hint="use letters, digits and _")
        unit_rows, bases = unit_matrix(units)
        space = cls(np.empty((X.shape[0], 0)), [], np.empty((0, len(bases))), bases, [], [], [],
                    batch_size=batch_size, max_abs_value=max_abs_value, min_abs_value=min_abs_value,
                    allow_transcendental_units=allow_transcendental_units, cache_gb=cache_gb)
        keep = space._valid(X)
        seen = set()
        cols = []
        for c in np.flatnonzero(keep):
            h = _value_hash(X[:, [c]])[0]
            if h not in seen:
                seen.add(h)
                cols.append(c)
        space.values = X[:, cols].copy()
        space.exprs = [str(names[c]) for c in cols]
        space.unit_rows = unit_rows[cols]
        space.levels = np.full(len(cols), _ATOM)
        space.complexity = np.zeros(len(cols), dtype=int)
        space.rungs = np.zeros(len(cols), dtype=int)
        space.final_ops = [_OP_NAMES.index(op) for op in ops]
        for r in range(1, rung):  # materialise the lower rungs
            batches = list(space._generate(r))
            if not batches:
                continue
            vals = np.concatenate([b[0] for b in batches], axis=1)
            keys = np.concatenate([b[1] for b in batches], axis=0)
            hashes = _value_hash(vals)
            new = []
            for c, h in enumerate(hashes):
                if h not in seen:
                    seen.add(h)
                    new.append(c)
            info = [space._describe_generated(k) for k in keys[new]]
            space.values = np.concatenate([space.values, vals[:, new]], axis=1)
            space.exprs += [i[0] for i in info]
            space.unit_rows = np.concatenate([space.unit_rows, np.array([i[1] for i in info]).reshape(len(new), len(bases))])
            space.levels = np.concatenate([space.levels, [i[2] for i in info]]).astype(int)
            space.complexity = np.concatenate([space.complexity, [i[3] for i in info]]).astype(int)
            space.rungs = np.concatenate([space.rungs, np.full(len(new), r)]).astype(int)
        space.final_rung = rung if rung >= 1 else None
        return space

    @classmethod
    def prl2015(cls, X, names, units, *, radius_unit="angstrom", batch_size=4096):
        """The feature space of Ghiringhelli et al. (2015) as built by the NOMAD tutorial.

        Primary features are grouped by unit: the group with unit ``radius_unit``
        holds the radii, every other unit forms its own group (the energies).
        Within each group, every pair gives ``x + y`` and ``|x - y|``. For the
        radii and their pair sums ``s``: ``s**2``, ``exp(s)``, ``exp(s**2)``
        (the denominators; dimensions are ignored here, as in the paper). The
        numerators (primary and pair features) are divided by every
        denominator. With 4 energies and 6 radii this gives
        10 + 12 + 30 + 63 + 52 * 63 = 3,391 features.
        """
        X = np.asarray(X, dtype=float)
        unit_rows, bases = unit_matrix(units)
        groups = {}
        for c, unit in enumerate(units):
            groups.setdefault(tuple(sorted(unit.items())), []).append(c)
        radius_key = tuple(sorted(parse_unit(radius_unit).items()))
        if radius_key not in groups:
            raise InputError(f"no primary feature has the radius unit '{radius_unit}'",
                             hint="declare the radii with that unit or set radius_unit")
        cols = {str(n): X[:, c] for c, n in enumerate(names)}
        feats = []  # (expr, level, values, unit_row)

        def add(expr, level, vals, urow):
            feats.append((expr, level, vals, urow))

        for c, n in enumerate(names):
            add(str(n), _ATOM, cols[str(n)], unit_rows[c])
        pair_sums = {}
        for key in [k for k in groups if k != radius_key] + [radius_key]:
            members = groups[key]
            for a_pos, a in enumerate(members):
                for b in members[a_pos + 1:]:
                    na, nb = str(names[a]), str(names[b])
                    add(f"{na} + {nb}", _ADD, cols[na] + cols[nb], unit_rows[a])
                    if key == radius_key:
                        pair_sums[f"{na} + {nb}"] = cols[na] + cols[nb]
                    add(f"abs({na} - {nb})", _ATOM, np.abs(cols[na] - cols[nb]), unit_rows[a])
        n_num = len(feats)
        radii = [(str(names[c]), _ATOM, cols[str(names[c])]) for c in groups[radius_key]]
        radii += [(e, _ADD, v) for e, v in pair_sums.items()]
        r_row = unit_rows[groups[radius_key][0]]
        zero = np.zeros_like(r_row)
        dens = []
        for e, lv, v in radii:
            dens.append((f"{_wrap(e, lv, _ATOM)}**2", _POW, v ** 2, 2 * r_row))
        for e, lv, v in radii:
            dens.append((f"exp({e})", _ATOM, np.exp(v), zero))
        for e, lv, v in radii:
            dens.append((f"exp({_wrap(e, lv, _ATOM)}**2)", _ATOM, np.exp(v ** 2), zero))
        for d in dens:
            add(*d)
        for e1, l1, v1, u1 in feats[:n_num]:
            for e2, l2, v2, u2 in dens:
                add(f"{_wrap(e1, l1, _MUL)} / {_wrap(e2, l2, _POW)}", _MUL, v1 / v2, u1 - u2)
        values = np.column_stack([f[2] for f in feats])
        space = cls(values, [f[0] for f in feats], np.array([f[3] for f in feats]), bases,
                    [f[1] for f in feats], np.zeros(len(feats), dtype=int), np.zeros(len(feats), dtype=int),
                    batch_size=batch_size)
        keep = space._valid(values)
        space._select_stored(np.flatnonzero(keep))
        return space

    def _select_stored(self, idx):
        self.values = self.values[:, idx]
        self.exprs = [self.exprs[i] for i in idx]
        self.unit_rows = self.unit_rows[idx]
        self.levels = self.levels[idx]
        self.complexity = self.complexity[idx]
        self.rungs = self.rungs[idx]

    # ------------------------------------------------------------------ generation
    def _valid(self, vals):
        """Columns that are finite, not constant and within the value bounds."""
        with np.errstate(all="ignore"):
            hi = vals.max(axis=0)  # NaN and inf propagate into max/min
            lo = vals.min(axis=0)
            finite = np.isfinite(hi) & np.isfinite(lo)
            amax = np.maximum(np.abs(hi), np.abs(lo))
            ptp = hi - lo
        return finite & (amax <= self.max_abs_value) & (amax >= self.min_abs_value) & (amax > 0) & (ptp > 1e-9 * amax)

    def _unit_ok_unary(self, spec, idx):
        rule = spec[4]
        if rule[0] == "dimless" and not self.allow_transcendental_units:
            return np.all(np.abs(self.unit_rows[idx]) < 1e-9, axis=1)
        return np.ones(len(idx), dtype=bool)

    def _generate(self, rung):
        """Yield ``(values, keys)`` batches of the valid features of ``rung``."""
        n_stored = len(self.exprs)
        last = np.flatnonzero(self.rungs == rung - 1)
        if len(last) == 0:
            return
        VT = np.ascontiguousarray(self.values.T)  # row gathers are contiguous
        first_last = last[0]
        unary = [o for o in self.final_ops if OPERATORS[_OP_NAMES[o]][0] == 1]
        binary = [o for o in self.final_ops if OPERATORS[_OP_NAMES[o]][0] == 2]
        with np.errstate(all="ignore"):
            for o in unary:
                spec = OPERATORS[_OP_NAMES[o]]
                for start in range(0, len(last), self.batch_size):
                    idx = last[start:start + self.batch_size]
                    idx = idx[self._unit_ok_unary(spec, idx)]
                    if len(idx):
                        yield from self._finish(o, idx, np.full(len(idx), -1), spec[1](VT[idx]))
            # pairs (i, j), j < i, i in the last rung: every unordered pair with one member in it
            starts = [first_last]
            count = 0
            for i in range(first_last, n_stored):
                count += i
                if count >= self.batch_size:
                    starts.append(i + 1)
                    count = 0
            starts.append(n_stored)
            for lo, hi in zip(starts[:-1], starts[1:]):
                if hi <= lo:
                    continue
                I = np.concatenate([np.full(i, i) for i in range(lo, hi)]).astype(np.int64)
                J = np.concatenate([np.arange(i) for i in range(lo, hi)]).astype(np.int64)
                if len(I) == 0:
                    continue
                same = np.all(np.abs(self.unit_rows[I] - self.unit_rows[J]) < 1e-9, axis=1)
                for o in binary:
                    spec = OPERATORS[_OP_NAMES[o]]
                    if spec[4][0] == "same":
                        a, b = J[same], I[same]
                    else:
                        a, b = J, I
                    if len(a) == 0:
                        continue
                    Va, Vb = VT[a], VT[b]
                    yield from self._finish(o, a, b, spec[1](Va, Vb))
                    if _OP_NAMES[o] == "/":
                        yield from self._finish(o, b, a, spec[1](Vb, Va))

    def _finish(self, op, a, b, rows):
        """``rows``: values with one feature per row; yields ``(values (n, b), keys)``."""
        ok = self._valid(rows.T)
        if ok.any():
            keys = np.column_stack([np.full(ok.sum(), op), a[ok], b[ok]]).astype(np.int64)
            yield (rows if ok.all() else rows[ok]).T, keys

    @staticmethod
    def normalize(vals):
        """Centred, unit-norm columns (screening scores and l0 errors are invariant to this)."""
        rows = vals.T  # features along the contiguous axis when vals is a transposed view
        z = rows - rows.mean(axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            norm = np.sqrt(np.einsum("ij,ij->i", z, z))
            bad = ~((norm > 0) & np.isfinite(norm))
            if bad.any():  # under/overflow of the squares: rescale those rows first
                scaled = rows[bad] / np.abs(rows[bad]).max(axis=1, keepdims=True)
                z[bad] = scaled - scaled.mean(axis=1, keepdims=True)
                norm[bad] = np.sqrt(np.einsum("ij,ij->i", z[bad], z[bad]))
            z /= norm[:, None]
        z[~np.isfinite(z).all(axis=1)] = 0.0  # degenerate: never selected
        return z.T

    def iter_batches(self):
        """Yield ``(z, keys)``: all features, stored ones first, in batches.

        ``z`` (shape ``(n_samples, b)``) holds the feature values centred and
        scaled to unit norm (see :meth:`normalize`; :meth:`values_of` gives the
        raw values); ``keys`` has shape ``(b, 3)``. The highest rung is
        generated on the fly and cached in memory if it fits in ``cache_gb``.
        """
        n_stored = len(self.exprs)
        if getattr(self, "_stored_z", None) is None or self._stored_z.shape != self.values.shape:
            self._stored_z = self.normalize(self.values) if n_stored else self.values
        for start in range(0, n_stored, self.batch_size):
            stop = min(n_stored, start + self.batch_size)
            keys = np.column_stack([np.full(stop - start, -1), np.arange(start, stop), np.full(stop - start, -1)])
            yield self._stored_z[:, start:stop], keys.astype(np.int64)
        if self.final_rung is None:
            self.n_features = n_stored
            return
        if self._cache is not None:
            yield from self._cache
            return
        cache, size, total = [], 0, n_stored
        for vals, keys in self._generate(self.final_rung):
            vals = self.normalize(vals)
            total += vals.shape[1]
            if cache is not None:
                size += vals.nbytes + keys.nbytes
                if size <= self.cache_gb * 2**30:
                    cache.append((vals, keys))
                else:
                    cache = None
            yield vals, keys
        self.n_features = total
        self._cache = cache

    def all_keys(self):
        """Keys of every feature (fine for small spaces; large ones should stream)."""
        return [tuple(k) for _, keys in self.iter_batches() for k in keys]

    def count(self):
        """Number of features of the space (one streaming pass if not yet known)."""
        if self.n_features is None:
            for _ in self.iter_batches():
                pass
        return self.n_features

    # ------------------------------------------------------------------ description
    def _describe_generated(self, key):
        op, i, j = (int(k) for k in key)
        name = _OP_NAMES[op]
        arity, _, fmt, level, rule = OPERATORS[name]
        ui = self.unit_rows[i]
        if arity == 1:
            expr = fmt(self.exprs[i], self.levels[i])
            if rule[0] == "pow":
                unit = ui * rule[1]
            elif rule[0] == "dimless":
                unit = np.zeros_like(ui)
            cplx = self.complexity[i] + 1
        else:
            expr = fmt(self.exprs[i], self.levels[i], self.exprs[j], self.levels[j])
            unit = {"same": ui, "mul": ui + self.unit_rows[j], "div": ui - self.unit_rows[j]}[rule[0]]
            cplx = self.complexity[i] + self.complexity[j] + 1
        return expr, unit, level, cplx

    def describe(self, key):
        """``(formula, unit dict, complexity)`` of the feature with this key."""
        op, i, j = (int(k) for k in key)
        if op < 0:
            return self.exprs[i], matrix_row_to_unit(self.unit_rows[i], self.bases), int(self.complexity[i])
        expr, unit, _, cplx = self._describe_generated(key)
        return expr, matrix_row_to_unit(unit, self.bases), int(cplx)

    def key_complexity(self, keys):
        """Number of operators in the features with these keys (vectorised)."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, 3)
        base = self.complexity[keys[:, 1]] if len(self.complexity) else np.zeros(len(keys), dtype=int)
        second = np.where(keys[:, 2] >= 0, self.complexity[np.maximum(keys[:, 2], 0)], 0) if len(self.complexity) else 0
        return np.where(keys[:, 0] < 0, base, base + second + 1)

    def values_of(self, keys):
        """Values of the features with these keys, shape ``(n_samples, len(keys))``."""
        cols = []
        with np.errstate(all="ignore"):
            for key in keys:
                op, i, j = (int(k) for k in key)
                if op < 0:
                    cols.append(self.values[:, i])
                elif OPERATORS[_OP_NAMES[op]][0] == 1:
                    cols.append(OPERATORS[_OP_NAMES[op]][1](self.values[:, i]))
                else:
                    cols.append(OPERATORS[_OP_NAMES[op]][1](self.values[:, i], self.values[:, j]))
        return np.column_stack(cols) if cols else np.empty((self.values.shape[0], 0))


__all__ = ["OPERATORS", "FeatureSpace", "canonical_operator"]
