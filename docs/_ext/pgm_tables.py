"""Tables generated from the code at build time, so the site cannot drift from it.

``.. pgm-capabilities::``
    one row per registered family: ``model.capabilities`` (log_prob kind, sampling,
    methods, conditional), the fit class, and whether ``fit.distribution()`` works.
``.. pgm-options::``
    one table per options record (every field: type, default, meaning from the record's
    ``Attributes:`` docstring), then one table per family of the engine each method runs
    and the defaults the family changes.

A field without a meaning in its record's docstring is a build warning (an error under
``-W``): a new option must be documented where it is defined.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Dict, List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

_ENTRY = re.compile(r"^(\s*)(\w+(?:,\s*\w+)*)\s*(\([^)]*\))?:\s*(.*)$")


def attribute_docs(cls: type) -> Dict[str, str]:
    """``{name: meaning}`` from the ``Attributes:`` sections of ``cls`` and its bases
    (the nearest class wins), joined into one line each."""
    found: Dict[str, str] = {}
    for klass in reversed(inspect.getmro(cls)):
        doc = inspect.cleandoc(klass.__dict__.get("__doc__") or "")
        lines = doc.splitlines()
        try:
            start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
        except StopIteration:
            continue
        name, indent = None, None
        for line in lines[start + 1:]:
            if not line.strip():
                name = None if indent is None else name
                continue
            depth = len(line) - len(line.lstrip())
            if indent is None:
                indent = depth
            if depth < indent:
                break
            match = _ENTRY.match(line)
            if depth == indent and match:
                name = match.group(2)  # "a, b: meaning" documents both
                for each in name.split(","):
                    found[each.strip()] = match.group(4).strip()
            elif name is not None:
                for each in name.split(","):
                    found[each.strip()] = f"{found[each.strip()]} {line.strip()}"
    return found


def _literal(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return "``" + text.replace("`", "'") + "``"


def _type(field: dataclasses.Field) -> str:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__",
                                                                  str(field.type))
    return "``" + kind.replace("typing.", "") + "``"


def _list_table(header: List[str], rows: List[List[str]], widths: str) -> List[str]:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header] + rows:
        out.append("   * - " + (row[0] or " "))
        out.extend("     - " + (cell or " ") for cell in row[1:])
    return out + [""]


def _families() -> List[type]:
    import pyro_genmodels as pgm
    return [pgm.registry()[name] for name in sorted(pgm.registry())]


def _qualified(obj: type) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


class _Generated(SphinxDirective):
    has_content = False

    def lines(self) -> List[str]:
        raise NotImplementedError

    def run(self) -> List[nodes.Node]:
        node = nodes.container()
        content = StringList(self.lines(), source="<generated from the code>")
        nested_parse_with_titles(self.state, content, node, self.content_offset)
        return node.children


def has_distribution(cls: type) -> bool:
    """Whether ``cls``'s fits have ``fit.distribution()``: its model implements the density
    hook (a family that says why it has none sets ``no_distribution`` instead)."""
    from pyro_genmodels.base import GenerativeModel
    return cls.distribution is not GenerativeModel.distribution


class CapabilitiesTable(_Generated):
    """The capability table of every registered family."""

    def lines(self) -> List[str]:
        rows = []
        for cls in _families():
            caps = cls.capabilities
            density = has_distribution(cls)
            rows.append([f":class:`~{_qualified(cls)}` (``{cls.registry_name}``)",
                         f"``{caps.log_prob}``", caps.sampling,
                         ", ".join(f"``{m}``" for m in caps.methods),
                         "yes" if caps.conditional else "no",
                         f":class:`~{_qualified(cls.fit_class)}`",
                         "yes" if density else "no"])
        return _list_table(["family", "log_prob", "sampling", "methods", "conditional",
                            "fit class", "``fit.distribution()``"], rows,
                           "22 10 14 22 8 16 8")


class OptionsTables(_Generated):
    """The options record of every engine, and each family's engines and defaults."""

    def lines(self) -> List[str]:
        records: Dict[str, type] = {}
        families = []
        for cls in _families():
            rows = []
            for method in cls.capabilities.methods:
                engine = cls.engine(method)
                record = type(engine.options(method))
                records[record.__name__] = record
                base = record()
                changed = {k: v for k, v in engine.defaults.items() if getattr(base, k) != v}
                rows.append([f"``{method}``", f":class:`~{_qualified(type(engine))}`",
                             f":class:`~{_qualified(record)}`",
                             ", ".join(f"``{k}={v!r}``" for k, v in changed.items())
                             or "the record's"])
            families.append((cls, rows))
        out: List[str] = []
        for name in sorted(records):
            record = records[name]
            meaning = attribute_docs(record)
            defaults = record()
            rows = []
            for field in dataclasses.fields(record):
                if field.name not in meaning:
                    logger.warning(f"{_qualified(record)}.{field.name} has no meaning in the "
                                   f"record's 'Attributes:' docstring",
                                   location=(self.env.docname, self.lineno))
                rows.append([f"``{field.name}``", _type(field),
                             _literal(getattr(defaults, field.name)),
                             meaning.get(field.name, "")])
            title = f"``{name}``"
            out += [title, "~" * len(title), "",
                    f"The options record :class:`~{_qualified(record)}`.", ""]
            if rows:
                out += _list_table(["option", "type", "default", "meaning"], rows, "16 18 16 50")
            else:
                out += ["No options (a closed form).", ""]
        out += ["Families: engines and defaults", "~" * 30, ""]
        for cls, rows in families:
            out += [f"**{cls.__name__}** (:class:`~{_qualified(cls)}`)", ""]
            out += _list_table(["method", "engine", "options record", "defaults it changes"],
                               rows, "12 26 26 36")
        return out


def setup(app):
    app.add_directive("pgm-capabilities", CapabilitiesTable)
    app.add_directive("pgm-options", OptionsTables)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
