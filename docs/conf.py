"""Sphinx configuration of the pyro-genmodels site.

Build it (offline, from the repository) with::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

Why Sphinx: autodoc imports the package and reads the docstrings it already has
(Google style, read by napoleon), resolves ``:class:`` / ``:mod:`` cross-references
and renders math, the toolchain Pyro, NumPyro, ArviZ and zuko document themselves
with; MyST lets the existing Markdown pages stay Markdown. The capability and options
tables are generated from the code at build time by ``_ext/pgm_tables.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import pyro_genmodels  # noqa: E402

project = "pyro-genmodels"
author = "the pyro-genmodels developers"
copyright = "2026, the pyro-genmodels developers"
release = version = pyro_genmodels.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "pgm_tables",
    "pgm_checks",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

# Markdown: $...$ / $$...$$ math, heading anchors for [text](page.md#anchor) links
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# the API reference: every documented member, at the module that defines it (a
# module's __all__ may re-export; each object is documented once); a public one
# without a docstring fails the build (pgm_checks); a record's fields are in its
# "Attributes:" section
autodoc_default_options = {"members": True, "show-inheritance": True,
                           "member-order": "bysource", "ignore-module-all": True}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_inherit_docstrings = False  # pgm_checks inherits methods' docstrings
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# every cross-reference must resolve (-n); names of other packages are not ours to
# document, and the build is offline (no intersphinx inventories to fetch)
nitpicky = True
_FOREIGN = r"(torch|pyro|numpy|np|pandas|pd|arviz|az|zuko|matplotlib|sklearn|scipy|" \
           r"safetensors|collections|typing|typing_extensions|os|pathlib|dataclasses|" \
           r"threading|concurrent|tqdm|torchdiffeq|enum|abc|io|argparse|types)"
nitpick_ignore_regex = [
    (r"py:.*", _FOREIGN + r"(\..*)?"),
    # builtins and typing names as they appear in annotations
    (r"py:class", r"(int|float|str|bool|bytes|dict|list|tuple|set|frozenset|type|object|"
                  r"callable|None|NoneType|Ellipsis|Any|Callable|Optional|Union|Sequence|"
                  r"Mapping|Iterable|Iterator|Tuple|Dict|List|ClassVar|Literal|"
                  r"array-like|optional|Tensor|ndarray|DataFrame|InferenceData|"
                  r"Distribution|PathLike|Figure|Axes|Module|Parameter|Generator|device|dtype)"),
    # private names (a TypeVar, a private class in an annotation, a mixin base from a
    # private module such as _context) are not documented
    (r"py:.*", r"(.*\.)?_[A-Za-z]\w*(\.\w+)?"),
]

html_theme = "furo"
html_title = f"pyro-genmodels {release}"
html_static_path: list[str] = []
# MathJax renders the math in the browser (no LaTeX needed to build)
