"""The ``ml4ms`` command line: thin wrappers that parse, call the library, print.

Each command group lives in its own module of this package with two functions,
``add_parsers(subparsers)`` and the ``run`` functions it registers through
``parser.set_defaults(func=...)``. Errors that a user can cause end with one line
on stderr and exit code 2, never a traceback: usage errors through
:class:`~ml4ms.cli.options.Parser`, the outputs a command declares are checked
(:func:`~ml4ms.cli.options.check_paths`) before it runs, and the library's
:class:`~ml4ms.errors.Ml4msError` are printed as they are.
"""

import contextlib
import importlib
import importlib.util
import os
import sys

from .. import __version__
from ..errors import Ml4msError
from ..threads import limit_threads
from .options import Parser, check_paths

#: command modules, in the order their commands appear in --help
_COMMAND_MODULES = ["data", "learn", "screen", "curve", "featurize", "insight", "sisso", "potential", "active"]


def build_parser():
    parser = Parser(
        prog="ml4ms",
        description="Machine learning for materials science: structures -> descriptor -> model -> prediction.",
    )
    parser.add_argument("--version", action="version", version=f"ml4ms {__version__}")
    parser.set_defaults(_parser=parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        importlib.import_module(f"{__name__}.{name}").add_parsers(sub)
    return parser


@contextlib.contextmanager
def _cluster(scheduler):
    """The command's data-parallel work goes to ``scheduler`` (else ``$ML4MS_SCHEDULER``); its client closes after."""
    from ..parallel import SCHEDULER_VARIABLE, chosen_scheduler, close_clients, connect, use_scheduler

    if scheduler is None and not os.environ.get(SCHEDULER_VARIABLE):
        yield
        return
    try:
        with use_scheduler(scheduler):
            connect(chosen_scheduler())  # an unreachable scheduler stops the command before any work
            yield
    finally:
        close_clients()


def main(argv=None):
    """Entry point of the ``ml4ms`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (one line, Parser.error) and --help/--version
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "func", None) is None:  # a command group alone lists its commands
        args._parser.print_help()
        print(f"ml4ms: error: choose a command (listed above); '{args._parser.prog} COMMAND --help' describes one",
              file=sys.stderr)
        return 2
    args._argv = list(sys.argv[1:] if argv is None else argv)  # what a command that starts itself again repeats
    try:
        check_paths(args)
        limit_threads(getattr(args, "threads", None))
        with _cluster(getattr(args, "scheduler", None)):
            result = args.func(args)
    except Ml4msError as exc:
        print(f"ml4ms: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ml4ms: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a write the checks could not foresee (a full disk, a file system gone read-only)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ml4ms: error: {where}{exc.strerror or exc}; check the path, its permissions and the free space",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ml4ms duplicates ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
