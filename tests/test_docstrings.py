"""The documented arguments agree with the signatures.

Every public function, class and public method of every public module (a module whose
dotted name has no part starting with ``_``), defined in that module, with a Google-style
``Args:`` section: each documented name is a parameter (a renamed or removed argument
leaves a stale name behind), and each parameter is documented (``self``/``cls`` and
``*args``/``**kwargs`` only where the section names them). A class's arguments are those
of its constructor, documented in the class docstring or in ``__init__``'s.

Only the object's own ``__doc__`` is read (``inspect.getdoc`` would hand a subclass its
parent's docstring, to check against the subclass's signature). Not checked: the
``Attributes:`` of records, and a ``Keyword Args:`` section, where a method that takes
``**options`` lists the options it passes on (``EnergySampling.sample_chains``): those
are not parameters of its signature. An ``Args:`` entry is ``name: ...``, ``a, b: ...``,
``*args: ...`` or ``**options: ...``, the stars matching the parameter's kind.
"""

import ast
import importlib
import inspect
import pkgutil
import re

import pytest

import pyro_genmodels

HEADER = re.compile(r"^(\s*)Args:\s*$")
# an entry: "name: ...", "a, b: ...", "*args: ...", "**options: ..."
ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:, \*{0,2}[A-Za-z_]\w*)*):(?:\s|$)")
# a section that follows Args at the same indent as its entries (not only at the header's)
SECTION = re.compile(r"^(Returns|Yields|Raises|Attributes|Examples?|References|Notes?|"
                     r"See Also|Warns|Warnings?|Todo|Keyword Args|Keyword Arguments|"
                     r"Other Parameters)\b:?\s*$")
KIND = {0: (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY),
        1: (inspect.Parameter.VAR_POSITIONAL,), 2: (inspect.Parameter.VAR_KEYWORD,)}


def documented_args(doc: str):
    """The names an ``Args:`` section documents, in order (stars kept), or None when the
    docstring has no such section. A line at the entries' indent that is not an entry
    is an error: the section's end was misread or an entry is malformed."""
    lines = inspect.cleandoc(doc).splitlines()
    start = next((i for i, line in enumerate(lines) if HEADER.match(line)), None)
    if start is None:
        return None
    header_indent = len(HEADER.match(lines[start]).group(1))
    names, indent = [], None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        here = len(line) - len(line.lstrip())
        if indent is None:
            if here <= header_indent:
                raise ValueError("an empty Args: section")
            indent = here
        if here < indent or SECTION.match(line.strip()):
            break
        if here > indent:  # an entry's continuation
            continue
        entry = ENTRY.match(line.strip())
        if entry is None:
            raise ValueError(f"not an Args entry: {line.strip()!r}")
        names += entry.group(1).split(", ")
    return names


def _public_modules():
    yield pyro_genmodels
    for info in pkgutil.walk_packages(pyro_genmodels.__path__, "pyro_genmodels."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def _documented_callables():
    """{qualified name: (docstring, signature)} of each public function, class and
    public method of the package, defined where it is found, whose docstring has
    ``Args:`` (a class: its constructor's signature; a method: without self or cls)."""
    out = {}

    def add(qualname, doc, call, drop_first):
        if not doc or documented_args(doc) is None:
            return
        signature = inspect.signature(call)
        if drop_first:  # self or cls
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        out[qualname] = (doc, signature)

    def visit_class(cls, qualname):
        add(qualname, cls.__doc__, cls, False)  # the constructor's signature
        for name, attr in vars(cls).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(attr, property):
                continue
            func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
            if inspect.isclass(func) and func.__qualname__ == f"{cls.__qualname__}.{name}":
                visit_class(func, f"{qualname}.{name}")
            elif (inspect.isfunction(func)
                  and func.__qualname__ == f"{cls.__qualname__}.{name}"):
                add(f"{qualname}.{name}", func.__doc__, func,
                    not isinstance(attr, staticmethod))

    for module in _public_modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            qualname = f"{module.__name__}.{name}"
            if inspect.isclass(obj) and obj.__qualname__ == name:
                visit_class(obj, qualname)
            elif inspect.isfunction(obj) and obj.__qualname__ == name:
                add(qualname, obj.__doc__, obj, False)
    return out


DOCUMENTED = _documented_callables()


def _sections_in_source():
    """The qualified names of the public functions, classes and methods whose docstring
    has ``Args:``, read from the source (the syntax tree), not by importing."""
    out = set()

    def visit(body, prefix):
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_") and node.name != "__init__":
                continue
            name = f"{prefix}.{node.name}"
            doc = ast.get_docstring(node, clean=False)
            if doc and documented_args(doc) is not None:
                out.add(name)
            if isinstance(node, ast.ClassDef):
                visit(node.body, name)

    for module in _public_modules():
        visit(ast.parse(inspect.getsource(module)).body, module.__name__)
    return out


def test_the_walk_finds_every_args_section():
    """The objects checked are those the source documents with ``Args:`` (a walk that
    skipped some, say decorated ones, would pass them unchecked)."""
    assert len(DOCUMENTED) >= 40
    assert set(DOCUMENTED) == _sections_in_source()


def test_the_parser():
    doc = """Summary.

    Args:
        a: the first,
            continued.
        b, *rest: two at once.
        **options: passed on.

    Returns:
        c: not an argument.
    """
    assert documented_args(doc) == ["a", "b", "*rest", "**options"]
    assert documented_args("Summary.\n\nReturns:\n    x: y\n") is None
    assert documented_args("Summary.\n\nArgs:\n    a: one.\nText: after.\n") == ["a"]
    assert documented_args("Summary.\n\nArgs:\n    a: one.\n    Returns:\n    b: c.\n") == ["a"]
    with pytest.raises(ValueError, match="not an Args entry"):
        documented_args("Summary.\n\nArgs:\n    a: one.\n    a description with no name\n")


@pytest.mark.parametrize("qualname", sorted(DOCUMENTED))
def test_the_documented_args_are_the_parameters(qualname):
    doc, signature = DOCUMENTED[qualname]
    params = signature.parameters
    documented = documented_args(doc)
    stale = [name for name in documented
             if name.lstrip("*") not in params
             or params[name.lstrip("*")].kind not in KIND[len(name) - len(name.lstrip("*"))]]
    assert not stale, f"{qualname}{signature}: documented but not parameters: {stale}"
    named = {name.lstrip("*") for name in documented}
    missing = [name for name, p in params.items() if name not in named
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not missing, f"{qualname}{signature}: parameters not documented: {missing}"
    assert len(named) == len(documented), f"{qualname}: documented twice: {documented}"
