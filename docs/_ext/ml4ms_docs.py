"""Directives that write parts of the ml4ms documentation from the code itself, at build time.

``.. ml4ms-help:: potential fit`` renders ``ml4ms potential fit --help``; ``.. ml4ms-datasets::`` a table of the
bundled datasets (:data:`ml4ms.datasets.CARDS`); ``.. ml4ms-registry:: descriptors`` the names a recipe may use.
So these pages cannot drift from the code. :class:`ExampleNumberSortKey` orders the gallery by the number in each
example's file name.
"""

import os
import re

from docutils import nodes
from docutils.parsers.rst import Directive

HELP_WIDTH = "100"


def _subparser(parser, words):
    import argparse

    for word in words:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


class HelpDirective(Directive):
    """The ``--help`` text of an ``ml4ms`` command."""

    required_arguments = 0
    optional_arguments = 3

    def run(self):
        from ml4ms.cli import build_parser

        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = HELP_WIDTH
        try:
            text = _subparser(build_parser(), self.arguments).format_help()
        finally:
            if old is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def _list_table(directive, header, rows, widths):
    """Parse a ``list-table`` of ``rows`` (reStructuredText cells) into nodes."""
    from docutils.statemachine import StringList

    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}", ""]
    for cells in [header] + rows:
        for k, cell in enumerate(cells):
            lines.append(f"   {'*' if k == 0 else ' '} - {cell}")
    container = nodes.container()
    directive.state.nested_parse(StringList(lines, source="ml4ms_docs"), directive.content_offset, container)
    return container.children


class DatasetsDirective(Directive):
    """A table of the bundled datasets, from their cards."""

    def run(self):
        from ml4ms.datasets import CARDS

        rows = []
        for card in CARDS.values():
            splits = ", ".join(f"``{name}`` ({n})" for name, n in card.splits.items())
            targets = ", ".join(f"``{key}`` ({unit})" for key, unit in card.targets.items())
            rows.append([f"``{card.name}``", card.description, splits, targets, card.citation])
        return _list_table(self, ["name", "what", "splits (records)", "targets (unit)", "citation"], rows,
                           [10, 35, 20, 25, 20])


class RegistryDirective(Directive):
    """The names a recipe may give, with the class each one builds."""

    required_arguments = 1

    def run(self):
        kind = self.arguments[0]
        if kind == "descriptors":
            from ml4ms.descriptors import DESCRIPTORS as registry

            prefix = "ml4ms.descriptors."
        elif kind == "models":
            from ml4ms.models import REGRESSORS as registry

            prefix = ""
        else:
            raise self.error(f"unknown registry '{kind}'")
        rows = []
        for name, target in registry.items():
            module, cls = target.split(":")
            full = f"{prefix}{module}.{cls}"
            ref = f":class:`~{full}`" if full.startswith("ml4ms") else f"``{full}`` (scikit-learn)"
            rows.append([f"``{name}``", ref])
        return _list_table(self, ["name", "class"], rows, [20, 60])


class ExampleNumberSortKey:
    """Gallery order by the number after ``plot_`` (plot_2 before plot_10), for ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        match = re.match(r"plot_(\d+)", os.path.basename(str(filename)))
        return (int(match.group(1)) if match else float("inf"), str(filename))

    def __repr__(self):
        return f"{type(self).__name__}()"


def setup(app):
    app.add_directive("ml4ms-help", HelpDirective)
    app.add_directive("ml4ms-datasets", DatasetsDirective)
    app.add_directive("ml4ms-registry", RegistryDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
