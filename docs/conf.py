"""Sphinx configuration of the ml4ms documentation (``make docs`` builds it into ``docs/_build/html``).

Everything is built offline: no intersphinx inventories are fetched, the gallery runs on the bundled datasets.
"""

import os
import sys
import warnings

sys.path.insert(0, os.path.abspath("_ext"))

import ml4ms  # noqa: E402

project = "ml4ms"
author = "the ml4ms developers"
copyright = "the ml4ms developers"
version = release = ml4ms.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "ml4ms_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]

# -- API reference ---------------------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False  # a name is documented once, in the module that defines it
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc sections give the types
numpydoc_show_class_members = False  # the class template lists the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False


def _exports():
    """Package -> [(name, full path)] of the names a package re-exports from its modules (its ``__all__``).

    The package pages list them with links to where they are documented, so that ``ml4ms.sisso.SISSORegressor``
    is found from ``ml4ms.sisso``.
    """
    import importlib
    import inspect

    out = {}
    for package in ("ml4ms.descriptors", "ml4ms.models", "ml4ms.potentials", "ml4ms.sisso"):
        module = importlib.import_module(package)
        names = []
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            where = getattr(obj, "__module__", None)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and where and where != package:
                names.append((name, f"{where}.{obj.__qualname__}"))
        if names:
            out[package] = sorted(names)
    return out


autosummary_context = {"ml4ms_exports": _exports()}

# -- Markdown pages (docs/benchmarks.md, docs/studies/) -------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 4

# -- Gallery ---------------------------------------------------------------------------------------------------------
# ML4MS_GALLERY=plot_sisso builds only the examples whose file name matches (quick iteration);
# the default executes every example.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": os.environ.get("ML4MS_GALLERY", r"/plot_"),
    "ignore_pattern": r"__init__\.py|/_",
    "within_subsection_order": "ml4ms_docs.ExampleNumberSortKey",  # plot_2 before plot_10
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,  # an example that raises fails the build
    "show_memory": False,
    "capture_repr": ("_repr_html_",),
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "min_reported_time": 0,
    "doc_module": ("ml4ms",),  # "Examples using ..." on the API pages
    "backreferences_dir": "_gallery_backreferences",
}
# The examples run in this process. As the command line does, use only the cores that are free when the build starts:
# on a machine another job keeps busy, more BLAS/torch threads than free cores spin-wait and run several times slower.
from ml4ms.threads import limit_threads  # noqa: E402

limit_threads(int(os.environ["ML4MS_DOCS_THREADS"]) if os.environ.get("ML4MS_DOCS_THREADS") else None)
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg", category=UserWarning)

# -- HTML ------------------------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ml4ms {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path = []
html_show_sourcelink = False


# -- Hooks -----------------------------------------------------------------------------------------------------------
import re  # noqa: E402

_METADATA_REQUEST = re.compile(r"^set_\w+_request$")
_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")


def _skip_member(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods scikit-learn generates on every estimator (its metadata routing)."""
    if _METADATA_REQUEST.match(name):
        return True
    return None


def _escape_bars(app, what, name, obj, options, lines):
    """Show ``|x|`` (an absolute value) in the docstrings of ml4ms.potentials as text, not a substitution.

    ml4ms.potentials is being rebuilt elsewhere, so its docstrings are not edited for the docs; elsewhere the
    docstrings avoid the bars.
    """
    if not name.startswith("ml4ms.potentials"):
        return
    for k, line in enumerate(lines):
        if "|" not in line or line.lstrip().startswith(("|", "+")):
            continue
        parts = _LITERAL.split(line)
        lines[k] = "".join(p if i % 2 else p.replace("|", r"\|") for i, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _escape_bars)
