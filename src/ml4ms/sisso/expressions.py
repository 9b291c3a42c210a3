"""Formula strings of SISSO features: evaluation on new data and LaTeX.

Every feature of a SISSO space is written as a Python-syntax expression over
the primary feature names, using ``+ - * / **`` and the functions ``abs exp
log sqrt cbrt sin cos``. The string is the serializable form of a fitted model:
:func:`evaluate` re-computes it on new data without ``eval``.

>>> import numpy as np
>>> evaluate("abs(a - b) / c**2", {"a": np.array([1.0]), "b": np.array([3.0]), "c": np.array([2.0])})
array([0.5])
>>> to_latex("abs(IP_B - EA_B) / r_p_A**2")
'\\\\frac{\\\\left|IP_{B} - EA_{B}\\\\right|}{r_{p,A}^{2}}'
"""

import ast
import functools

import numpy as np

from ..errors import InputError

FUNCTIONS = {
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "cbrt": np.cbrt,
    "sin": np.sin,
    "cos": np.cos,
}


@functools.lru_cache(maxsize=4096)
def parse(expr):
    """Parse an expression string into a Python AST (cached)."""
    try:
        tree = ast.parse(str(expr), mode="eval").body
    except SyntaxError:
        raise InputError(f"cannot read formula '{expr}'", hint="use + - * / ** and abs exp log sqrt cbrt sin cos") from None
    return tree


def variables(expr):
    """Names of the primary features used in ``expr`` (sorted)."""
    return sorted({n.id for n in ast.walk(parse(expr)) if isinstance(n, ast.Name)} - set(FUNCTIONS))


def evaluate(expr, data):
    """Evaluate ``expr`` with ``data`` mapping names to arrays (no ``eval``).

    Raises
    ------
    InputError
        If a name is missing from ``data`` or the syntax is not allowed.
    """
    with np.errstate(all="ignore"):
        return np.asarray(_eval(parse(expr), data, expr), dtype=float)


def _eval(node, data, expr):
    if isinstance(node, ast.Name):
        if node.id not in data:
            raise InputError(f"formula '{expr}' needs the feature '{node.id}'", hint="give that column")
        return np.asarray(data[node.id], dtype=float)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, data, expr)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        a = _eval(node.left, data, expr)
        b = _eval(node.right, data, expr)
        ops = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}
        for kind, fn in ops.items():
            if isinstance(node.op, kind):
                if kind is ast.Pow:
                    return _power(a, b)
                return fn(a, b)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and len(node.args) == 1:
        return FUNCTIONS[node.func.id](_eval(node.args[0], data, expr))
    raise InputError(f"formula '{expr}' uses a construct that is not allowed", hint="use + - * / ** and abs exp log sqrt cbrt sin cos")


def _power(a, b):
    if np.ndim(b) == 0 and float(b) == int(b):
        return np.power(a, int(b)) if int(b) >= 0 else 1.0 / np.power(a, -int(b))
    return np.power(a, b)


def _latex_name(name):
    head, _, tail = name.partition("_")
    return f"{head}_{{{tail.replace('_', ',')}}}" if tail else head


_LEVEL = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 3}


def _level(node):
    if isinstance(node, ast.BinOp):
        return _LEVEL[type(node.op)]
    if isinstance(node, ast.UnaryOp):
        return 1
    return 4


def to_latex(expr):
    """LaTeX form of an expression string."""
    return _latex(parse(expr))


def _latex(node):
    if isinstance(node, ast.Name):
        return _latex_name(node.id)
    if isinstance(node, ast.Constant):
        return f"{node.value:g}"
    if isinstance(node, ast.UnaryOp):
        inner = _latex(node.operand)
        return f"-\\left({inner}\\right)" if _level(node.operand) < 3 else f"-{inner}"
    if isinstance(node, ast.BinOp):
        a, b = _latex(node.left), _latex(node.right)
        if isinstance(node.op, ast.Div):
            return f"\\frac{{{a}}}{{{b}}}"
        if isinstance(node.op, ast.Pow):
            if _level(node.left) < 4:
                a = f"\\left({a}\\right)"
            return f"{a}^{{{b}}}"
        if isinstance(node.op, ast.Mult):
            a = a if _level(node.left) >= 2 else f"\\left({a}\\right)"
            b = b if _level(node.right) >= 2 else f"\\left({b}\\right)"
            return f"{a} \\cdot {b}"
        sign = "+" if isinstance(node.op, ast.Add) else "-"
        if isinstance(node.op, ast.Sub) and _level(node.right) < 2:
            b = f"\\left({b}\\right)"
        return f"{a} {sign} {b}"
    if isinstance(node, ast.Call):
        inner = _latex(node.args[0])
        name = node.func.id
        if name == "abs":
            return f"\\left|{inner}\\right|"
        if name == "sqrt":
            return f"\\sqrt{{{inner}}}"
        if name == "cbrt":
            return f"\\sqrt[3]{{{inner}}}"
        if name == "log":
            return f"\\ln\\left({inner}\\right)"
        return f"\\{name}\\left({inner}\\right)"
    return ast.unparse(node)
