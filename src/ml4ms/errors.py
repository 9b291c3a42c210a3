"""Exceptions with one-line, actionable messages.

Every error a user can cause with bad input is an :class:`InputError` (or a
:class:`ModelFileError` for model files). The CLI prints ``str(error)`` on one
line and exits with code 2; the Python API raises it. Warnings, under
:func:`one_line_warnings`, are one line each too.
"""

import contextlib
import sys


class Ml4msError(Exception):
    """Base class of the errors that ml4ms raises on purpose."""


class InputError(Ml4msError, ValueError):
    """Bad input data: names the source, the structure index and what to do.

    Parameters
    ----------
    message : str
        What is wrong.
    source : str, optional
        The file or dataset the data came from.
    index : int, optional
        The 0-based index of the offending structure or row.
    hint : str, optional
        What the user should do about it.
    item : str, default "structure"
        What ``index`` counts: ``"structure"``, or ``"row"`` for table rows.

    Examples
    --------
    >>> str(InputError("empty structure", source="a.xyz", index=3,
    ...                hint="remove it or give it atoms"))
    'a.xyz: structure 3: empty structure; remove it or give it atoms'
    >>> str(InputError("column 'b' is nan", source="t.csv", index=1, item="row"))
    "t.csv: row 1: column 'b' is nan"
    """

    def __init__(self, message, source=None, index=None, hint=None, item="structure"):
        self.message = message
        self.source = source
        self.index = index
        self.hint = hint
        self.item = item
        super().__init__(self._format())

    def __reduce__(self):  # keeps every field when the error crosses a process (a worker's task)
        return (type(self), (self.message, self.source, self.index, self.hint, self.item))

    def located(self, source):
        """The same error, from ``source`` unless it already names one.

        Examples
        --------
        >>> str(InputError("column 'b' is nan", index=1, item="row").located("t.csv"))
        "t.csv: row 1: column 'b' is nan"
        """
        return self._replace(source=self.source or source)

    def at(self, index, item=None):
        """The same error, naming the record ``index`` (an ``item``: "structure", "row") unless it names one.

        Examples
        --------
        >>> str(InputError("empty structure", source="a.xyz").at(3))
        'a.xyz: structure 3: empty structure'
        """
        if self.index is not None:
            return self
        return self._replace(index=index, item=item or self.item)

    def shifted(self, start):
        """The same error with its record index counted from ``start`` (a chunk's first record); unchanged
        when it names no record.

        Examples
        --------
        >>> str(InputError("empty structure", source="a.xyz", index=2).shifted(100))
        'a.xyz: structure 102: empty structure'
        """
        if self.index is None:
            return self
        return self._replace(index=self.index + start)

    def _replace(self, **changes):
        """A copy of this error with some of its fields changed."""
        fields = {"source": self.source, "index": self.index, "hint": self.hint, "item": self.item, **changes}
        return InputError(self.message, **fields)

    def _format(self):
        parts = []
        if self.source is not None:
            parts.append(str(self.source))
        if self.index is not None:
            parts.append(f"{self.item} {self.index}")
        text = ": ".join(parts + [self.message])
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # always one line


class ModelFileError(Ml4msError, ValueError):
    """A model file that cannot be read: missing, tampered or incompatible."""


@contextlib.contextmanager
def from_source(source):
    """Every :class:`InputError` of the block names ``source`` (the data it read) unless it names another.

    Examples
    --------
    >>> try:
    ...     with from_source("t.csv"):
    ...         raise InputError("column 'b' is nan", index=1, item="row")
    ... except InputError as exc:
    ...     print(exc)
    t.csv: row 1: column 'b' is nan
    """
    try:
        yield
    except InputError as exc:
        raise exc.located(source) from None


@contextlib.contextmanager
def one_line_warnings():
    """Show each warning of the block as one line ``ml4ms: warning: MESSAGE`` on stderr (the CLI's form).

    Filters and the previous display come back when the block ends.

    Examples
    --------
    >>> import contextlib, warnings
    >>> with one_line_warnings(), contextlib.redirect_stderr(sys.stdout):
    ...     warnings.warn("the spread is not\\n calibrated")
    ml4ms: warning: the spread is not calibrated
    """
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"ml4ms: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
