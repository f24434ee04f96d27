"""Build checks of the API reference, and the resolution of two kinds of reference.

A public function, class, method or property without a docstring (its own or
inherited) is a warning, an error under ``-W``. Methods inherit docstrings here, not
by autodoc's ``autodoc_inherit_docstrings``.

Autodoc lists documented members only (fields are documented in their class's
``Attributes:`` section); it asks ``autodoc-skip-member`` about every member, so an
undocumented public one is caught there and named by its qualified name.
"""

from __future__ import annotations

import inspect
import re

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _target(obj):
    """The function or class behind ``obj`` (a property's getter), else ``None``."""
    if isinstance(obj, property):
        return obj.fget
    if isinstance(obj, (classmethod, staticmethod)):
        return obj.__func__
    if inspect.isroutine(obj) or inspect.isclass(obj):
        return inspect.unwrap(obj)
    return None


def _check(app, what, name, obj, skip, options):
    target = _target(obj)
    if (not skip or name.startswith("_") or target is None
            or not getattr(target, "__module__", "").startswith("pyro_genmodels")
            or "._" in target.__module__):
        return None
    if (inspect.getdoc(obj) or inspect.getdoc(target) or "").strip():
        # documented by a base class: a hook a family overrides keeps its docstring
        return False if what == "class" and not inspect.isclass(obj) else None
    logger.warning(f"public {what} member {target.__module__}.{target.__qualname__} "
                   f"has no docstring", type="pgm", subtype="missing-docstring")
    return None


def _inherit(app, what, name, obj, options, lines):
    """A method or property without its own docstring shows its base class's
    (``autodoc_inherit_docstrings`` is off: it would also give a field whose default is
    ``1500`` the docstring of ``int``)."""
    if what in ("method", "property") and not any(line.strip() for line in lines):
        doc = inspect.getdoc(obj) or ""
        target = _target(obj)
        if not doc and target is not None:
            doc = inspect.getdoc(target) or ""
        lines.extend(doc.splitlines())


def _resolve(app, env, node, contnode):
    """Resolve two kinds of Python reference the domain alone does not:

    - a public alias, ``pyro_genmodels.Fit``: imported, then looked up at the object's
      defining module (``pyro_genmodels.fit.Fit``), where autodoc documents it;
    - a name unqualified in a module other than its own, ``Fit.save``: resolved when
      exactly one documented object's full name ends with ``.Fit.save``;
    - a method a class inherits, ``:meth:`sample``` in ``EnergyModel``'s docstring or
      ``EnergyModel.sample``: looked up along the class's MRO, where it is documented.

    Anything else (ambiguous, or not ours) stays a missing reference, a warning."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    domain = env.get_domain("py")
    names = []
    if target.startswith("pyro_genmodels."):
        obj = _import(target)
        owner = getattr(obj, "__module__", None)
        qual = getattr(obj, "__qualname__", None)
        if isinstance(owner, str) and isinstance(qual, str):
            names = [f"{owner}.{qual}"]
    if not names:
        names = [name for name in domain.objects if name.endswith("." + target)]
        names = [n for n in names if not domain.objects[n].aliased]
    if len(names) != 1:
        names = _along_mro(domain, node, target)
    if len(names) != 1 or names[0] not in domain.objects:
        return None
    entry = domain.objects[names[0]]
    from sphinx.util.nodes import make_refnode
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode,
                        names[0])


def _along_mro(domain, node, target):
    """``[full name]`` of ``target``'s attribute on the first class of the MRO that
    documents it; the class is named by ``target`` (``Cls.attr``) or is the context."""
    if "." in target:
        owner, attr = target.rsplit(".", 1)
        owners = [n for n, e in domain.objects.items()
                  if e.objtype == "class" and (n == owner or n.endswith("." + owner))]
    else:
        attr = target
        context = ".".join(p for p in (node.get("py:module"), node.get("py:class")) if p)
        owners = [context] if node.get("py:class") else []
    if len(owners) != 1:
        return []
    cls = _import(owners[0])
    for base in getattr(cls, "__mro__", ()):
        full = f"{base.__module__}.{base.__qualname__}.{attr}"
        if full in domain.objects:
            return [full]
    return []


def _import(dotted):
    import importlib
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _prose_as_type(app, what, name, obj, options, lines):
    """Napoleon reads ``words: more`` on the first line of an attribute's or property's
    docstring as ``type: description``; prose there would render as a type."""
    if what not in ("attribute", "data", "property"):
        return
    for line in lines:
        if line.startswith(":type:") and re.search(r"[A-Za-z)]\s+[A-Za-z(]", line[6:]):
            logger.warning(f"the docstring of {what} {name} starts with prose and a colon, "
                           f"which napoleon reads as a type: {line[6:].strip()!r}",
                           type="pgm", subtype="prose-type")


def setup(app):
    app.connect("autodoc-skip-member", _check)
    app.connect("autodoc-process-docstring", _inherit, priority=400)
    app.connect("autodoc-process-docstring", _prose_as_type, priority=600)
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
