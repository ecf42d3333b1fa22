"""Sphinx configuration of the skanomaly documentation.

Build (from the repository root; the build needs no network)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery in ``examples/`` is executed once per build with the bundled
EfficientNet-Lite0 weights on small subsets of the ELPV solar cells.
"""

import datetime
import glob
import os
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.directives.other import Include
from sphinx.util.docutils import SphinxDirective

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))  # for _gallery_order

import skanomaly  # noqa: E402

# -- Project -----------------------------------------------------------------
project = "skanomaly"
author = "The skanomaly developers"
copyright = f"{datetime.date.today().year}, The skanomaly developers"
release = skanomaly.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
# No sphinx.ext.intersphinx: the build machine has no network, and a failed
# inventory fetch is a warning, which -W turns into an error.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    # Markdown written by the benchmarks: pulled into benchmarks.rst by the
    # optional-include directive below, not pages of their own.
    "*.md",
    "**/*.md",
]
default_role = "literal"
# Markdown tables written by the benchmark scripts are included into
# sections of .rst pages, so their headings need not start at level 1.
suppress_warnings = ["myst.header"]
pygments_style = "sphinx"
# MathJax (formulas) is loaded by the reader's browser, never by the build.

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# Keep docstring checks to what the build can enforce without network access.
numpydoc_validation_checks = set()

# -- sphinx-gallery ----------------------------------------------------------
os.environ.setdefault("MPLBACKEND", "agg")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "_gallery_order.ExampleOrder",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skanomaly",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 1,
}

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skanomaly {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    # Nothing that the build would have to fetch: no external icon links,
    # no version switcher JSON, no analytics.
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "icon_links": [],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "install": [], "cli": [], "benchmarks": []}
html_context = {"default_mode": "auto"}


# -- Local directives --------------------------------------------------------
class OptionalInclude(Include):
    """``.. optional-include:: pattern``: include files that may not exist.

    The argument is a glob relative to the current document (or absolute
    from the source folder with a leading ``/``). Every matching file is
    included in name order, Markdown ones through MyST; when nothing matches,
    the ``:missing:`` text is shown as a note instead of failing the build.
    """

    option_spec = {**Include.option_spec, "missing": directives.unchanged}  # noqa: RUF012 (docutils' API)

    def run(self):
        env = self.state.document.settings.env
        pattern = self.arguments[0]
        _, abs_pattern = env.relfn2path(pattern)
        matches = sorted(glob.glob(abs_pattern))
        if not matches:
            text = self.options.get("missing", f"No file matches {pattern} yet.")
            note = nodes.note()
            self.state.nested_parse(
                self.content.__class__([text], source=pattern), self.content_offset, note
            )
            if not note.children:
                note += nodes.paragraph(text=text)
            return [note]
        result = []
        for path in matches:
            for key in ("parser", "missing"):
                self.options.pop(key, None)
            if path.endswith(".md"):
                self.options["parser"] = directives.parser_name("myst_parser.sphinx_")
            # Sphinx reads a leading "/" as the source folder.
            self.arguments = ["/" + os.path.relpath(path, env.srcdir)]
            env.note_dependency(path)
            result.extend(Include.run(self))
        return result


class CommandHelp(SphinxDirective):
    """``.. command-help:: [subcommand]``: the ``skanomaly`` CLI's ``--help``.

    Generated from :func:`skanomaly.cli.build_parser` at build time, so it is
    always that of the installed version; a note replaces it if the CLI
    cannot be imported.
    """

    optional_arguments = 1
    has_content = False

    def run(self):
        name = self.arguments[0] if self.arguments else None
        old_columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"
        try:
            from skanomaly.cli import build_parser

            parser = build_parser()
            if name is not None:
                subparsers = next(
                    action
                    for action in parser._actions
                    if action.__class__.__name__ == "_SubParsersAction"
                )
                parser = subparsers.choices[name]
            text = parser.format_help().rstrip()
        except Exception as exc:  # pragma: no cover - shown in the page
            para = nodes.paragraph(
                text=f"(The help of 'skanomaly {name or ''}' could not be generated: {exc!r}.)"
            )
            return [nodes.note("", para)]
        finally:
            if old_columns is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old_columns
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("optional-include", OptionalInclude)
    app.add_directive("command-help", CommandHelp)
    return {"parallel_read_safe": True}
