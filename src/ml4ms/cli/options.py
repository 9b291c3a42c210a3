"""The command line's shared vocabulary and the checks every command runs before it works.

One place per kind of check:

- :class:`Parser` ends a usage error (an unknown option, a missing argument,
  a bad value) with one line and exit code 2, never argparse's usage block;
- the number types (:func:`positive_int`, :func:`positive_float`, ...) refuse
  zero, negative or non-finite values while the command line is parsed;
- :func:`add_output` declares a file or folder a command writes, and
  :func:`check_paths` checks every declared output (an existing folder where a
  file is expected, an unwritable place, the output equal to an input, a wrong
  suffix) before the command starts its work.

The words mean the same in every command: ``-o/--output`` is the main thing a
command writes, ``--json`` its summary as JSON, ``--plot`` a picture it draws
besides, ``-n/--n`` how many to choose, ``--seed`` one random stream and
``--seeds`` the repeats to average over, ``--quiet`` no progress bars,
``--threads`` the threads of BLAS and torch (default: the cores that are free),
``--scheduler`` the Dask cluster that runs a data-parallel command
(:mod:`ml4ms.parallel`), ``--chunk`` the records per unit of streamed work.
"""

import argparse
import math
import os

from ..errors import InputError


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line and exit code 2.

    Examples
    --------
    >>> p = Parser(prog="ml4ms demo")
    >>> _ = p.add_argument("--steps", type=positive_int)
    >>> try:
    ...     p.parse_args(["--steps", "0"])
    ... except SystemExit as exc:
    ...     exc.code
    2
    """

    def error(self, message):
        message = " ".join(message.split())
        command = self.prog.partition(" ")[2]
        self.exit(2, f"ml4ms: error: {command + ': ' if command else ''}{message}; see '{self.prog} --help'\n")


def _number(kind, test, wanted):
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got '{text}'") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got '{text}'")
        return value

    parse.__name__ = wanted
    return parse


#: an integer >= 1 (counts: splits, steps, structures to choose, epochs, members)
positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
#: an integer >= 0 (seeds, repeats that may be off)
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
#: a finite number > 0 (time steps, temperatures, minutes, rates, tolerances, cutoffs)
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
#: a finite number >= 0
non_negative_float = _number(float, lambda v: v >= 0, "a finite number >= 0")
#: any finite number
finite_float = _number(float, lambda v: True, "a finite number")


def in_range(low, high, unit, low_open=True):
    """A number type for ``low < x <= high`` (``low <= x`` with ``low_open=False``), named with its ``unit``.

    Examples
    --------
    >>> in_range(0, 10, "fs")("2.5")
    2.5
    """
    test = (lambda v: low < v <= high) if low_open else (lambda v: low <= v <= high)
    bracket = "(" if low_open else "["
    return _number(float, test, f"a number in {bracket}{low:g}, {high:g}] {unit}")


def fraction(text):
    """A number in (0, 1)."""
    return _number(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")(text)


def _declare(parser, key, spec):
    specs = list(parser.get_default(key) or [])
    specs.append(spec)
    parser.set_defaults(**{key: specs})


def add_output(parser, *flags, suffixes=None, folder=False, what="output", switched=None, **kwargs):
    """``parser.add_argument(*flags, **kwargs)`` for a path the command writes, checked by :func:`check_paths`.

    Parameters
    ----------
    suffixes : tuple of str, optional
        Allowed endings (case-insensitive), e.g. ``(".csv",)``.
    folder : {False, "model", "potential", "files"}, default False
        The output is a file (False), a folder replaced as a whole by a
        property model ("model") or a potential ("potential"), which may only
        replace a folder of its own kind, or a folder that files are written
        into ("files").
    what : str
        What is written, for messages ("the model", "the trajectory").
    switched : dict, optional
        ``{dest: {"suffixes": ..., "folder": ..., "what": ...}}``: what the output is instead when the option
        ``dest`` is set (``export --lammps`` writes a folder where ``export`` writes a ``.pt`` file).
    """
    action = parser.add_argument(*flags, **kwargs)
    _declare(parser, "_outputs", {"dest": action.dest, "suffixes": suffixes, "folder": folder, "what": what,
                                  "flag": next((f for f in flags if f.startswith("--")), flags[0]), "flags": flags,
                                  "switched": switched or {}})
    return action


def add_input(parser, *flags, **kwargs):
    """``parser.add_argument`` for a path (or dataset name) the command reads; outputs may not equal it."""
    action = parser.add_argument(*flags, **kwargs)
    _declare(parser, "_inputs", action.dest)
    return action


def _writable_folder(path):
    """The nearest existing ancestor of ``path`` if a file can be created in it (tried, and removed), else None.

    Trying beats ``os.access``, which says yes to root everywhere (``/sys``, ``/proc``, read-only mounts).
    """
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    if not os.path.isdir(folder):
        return None
    try:
        fd, probe = tempfile.mkstemp(prefix=".ml4ms-probe-", dir=folder)
    except OSError:
        return None
    os.close(fd)
    os.remove(probe)
    return folder


def folder_kind(path):
    """What an existing folder holds: ``"potential"``, ``"model"``, ``"other"`` (not ml4ms's), or None (empty)."""
    if not os.listdir(path):
        return None
    if os.path.exists(os.path.join(path, "committee.json")):
        return "potential"
    if not os.path.exists(os.path.join(path, "model.json")):
        return "other"
    import json

    try:
        with open(os.path.join(path, "model.json"), encoding="utf-8") as handle:
            kind = json.load(handle)["metadata"].get("kind")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "other"
    return "potential" if kind == "ml4ms-neural-potential" else "model"


def _same(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path != folder and os.path.commonpath([path, folder]) == folder


def check_output(path, flag="-o", suffixes=None, folder=False, what="output", inputs=()):
    """Raise :class:`~ml4ms.errors.InputError` if ``path`` cannot take the output; writes nothing.

    Examples
    --------
    >>> check_output("traj.csv", "-o", suffixes=(".extxyz", ".xyz"), what="the trajectory")
    Traceback (most recent call last):
    ...
    ml4ms.errors.InputError: traj.csv: -o must end in .extxyz or .xyz (the trajectory); give a name ending in .extxyz
    """
    path = os.fspath(path)
    if suffixes and not folder and not path.lower().endswith(tuple(suffixes)):
        raise InputError(f"{flag} must end in {' or '.join(suffixes)} ({what})", source=path,
                         hint=f"give a name ending in {suffixes[0]}")
    for other in inputs:
        if other and os.path.exists(other) and _same(path, other):
            raise InputError(f"{flag} is also an input of this command", source=path,
                             hint="choose another output name, so the input is not overwritten")
    if folder:
        if os.path.isfile(path):
            raise InputError(f"{flag}: {what} is a folder, but a file of that name exists", source=path,
                             hint="choose another name")
        held = folder_kind(path) if folder in ("model", "potential") and os.path.isdir(path) else None
        if held == "other":
            raise InputError(f"{flag}: exists and is not an ml4ms model folder", source=path,
                             hint="choose another name; ml4ms replaces only its own model folders")
        if held is not None and held != folder:
            raise InputError(f"{flag}: holds {'a potential' if held == 'potential' else 'a property model'}, which "
                             f"{what} would replace", source=path, hint="choose another name, or remove it first")
    elif os.path.isdir(path):
        raise InputError(f"{flag}: is a folder, but {what} is a file", source=path,
                         hint="give a file name (inside the folder, if you like)")
    if _writable_folder(path) is None:
        raise InputError(f"{flag}: cannot write {what} here", source=path,
                         hint="choose a writable folder")


def check_paths(args):
    """Check every output a command declared (:func:`add_output`) before it runs."""
    inputs = [getattr(args, dest, None) for dest in getattr(args, "_inputs", None) or []]
    inputs = [p for value in inputs for p in (value if isinstance(value, list) else [value]) if isinstance(p, str)]
    written, replaced = {}, {}
    for spec in getattr(args, "_outputs", None) or []:
        path = getattr(args, spec["dest"], None)
        if path is None:
            continue
        for dest, instead in spec.get("switched", {}).items():
            if getattr(args, dest, None):
                spec = {**spec, **instead}
        check_output(path, spec["flag"], spec["suffixes"], spec["folder"], spec["what"], inputs)
        same = [flag for flag, other in written.items() if _same(path, other)]
        if same:
            raise InputError(f"{spec['flag']} and {same[0]} are the same file", source=path,
                             hint="give each output its own name")
        written[spec["flag"]] = path
        if spec["folder"] in ("model", "potential"):
            replaced[spec["flag"]] = path
    for flag, folder in replaced.items():  # a model folder is replaced whole: nothing else may live in it
        inside = [f for f, p in written.items() if f != flag and _inside(p, folder)]
        if inside:
            raise InputError(f"{inside[0]} is inside {flag}, a folder that is replaced as a whole",
                             source=written[inside[0]], hint=f"put it beside {flag}, not inside")


def add_old_name(parser, flag, dest):
    """Accept ``flag``, a name an option had before, without showing it in ``--help``."""
    parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_quiet(parser):
    """The options every command takes: ``--quiet`` and ``--threads``."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="BLAS/OpenMP/torch threads (default: the cores not busy with other jobs, measured at "
                             "the start; more threads than free cores slow a run down several times)")


def scheduler_address(text):
    """An argparse type: a Dask scheduler address (``tcp://HOST:PORT``).

    Examples
    --------
    >>> scheduler_address("tcp://10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    """
    from ..parallel import check_address

    try:
        return check_address(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"must be a Dask scheduler address tcp://HOST:PORT, got '{text}'") from None


def add_scheduler(parser):
    """``--scheduler ADDRESS``: run the command's data-parallel work on a Dask cluster (:mod:`ml4ms.parallel`)."""
    parser.add_argument("--scheduler", type=scheduler_address, metavar="tcp://HOST:PORT",
                        help="run the data-parallel work (descriptors, duplicate search, predictions, the chunks "
                             "of a streamed fit, CV folds, learning-curve points, committee members, oracle calls) on "
                             "the Dask cluster of this scheduler (default: $ML4MS_SCHEDULER, else this machine); "
                             "results are the same, in the same order")


#: what ``--device`` says of a property model's file
MODEL_DEVICE = "default: the device its graph models were trained on, which the model file keeps"


def add_device(parser, what, note):
    """``--device``: where a command's torch model computes (``note``: what the model file keeps)."""
    parser.add_argument("--device", metavar="DEVICE", help=f"the device to {what}: cpu, cuda or cuda:N ({note})")


def checked_device(args):
    """The ``--device`` of a command, checked on this machine (None: not given)."""
    from ..batch import torch_device

    if args.device is not None:
        torch_device(args.device, "--device")
    return args.device


def add_chunk(parser, default):
    """``--chunk N``: records per unit of streamed work (memory, resuming and cluster tasks)."""
    parser.add_argument("--chunk", type=positive_int, default=default, metavar="N",
                        help=f"records per chunk: the unit of work, memory and resuming (default {default}); "
                             "the same chunk gives the same numbers on any executor")
