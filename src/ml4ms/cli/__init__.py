"""The ``ml4ms`` command line: thin wrappers that parse, call the library, print.

Each command group lives in its own module of this package with two functions,
``add_parsers(subparsers)`` and the ``run`` functions it registers through
``parser.set_defaults(func=...)``. Errors that a user can cause end with one line
on stderr and exit code 2, never a traceback.
"""

import argparse
import importlib
import importlib.util
import sys

from .. import __version__
from ..errors import Ml4msError

#: command modules, in the order their commands appear in --help
_COMMAND_MODULES = ["data", "learn", "curve", "featurize", "insight", "sisso", "potential"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ml4ms",
        description="Machine learning for materials science: structures -> descriptor -> model -> prediction.",
    )
    parser.add_argument("--version", action="version", version=f"ml4ms {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        importlib.import_module(f"{__name__}.{name}").add_parsers(sub)
    return parser


def main(argv=None):
    """Entry point of the ``ml4ms`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except Ml4msError as exc:
        print(f"ml4ms: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ml4ms: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ml4ms duplicates ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
