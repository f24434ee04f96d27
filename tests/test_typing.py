"""The package type-checks (``mypy``, configured in pyproject.toml) and its public API is
fully annotated: every parameter and return of every public function and method, with
annotations that resolve at run time (``typing.get_type_hints``)."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import pyro_genmodels as pgm
import pyro_genmodels.infer as pgm_infer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pyro_genmodels"
#: dunder methods that belong to the public API when a package class defines them
PUBLIC_DUNDERS = ("__init__", "__call__")


@pytest.mark.slow
def test_mypy_reports_no_errors():
    """mypy (a test dependency) with the project's configuration: no error."""
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}\n{proc.stderr}"


# ---------------------------------------------------------------------- the public API
def _ours(obj: Any) -> bool:
    """Whether ``obj`` (a function, class or module) is defined inside the package."""
    name = getattr(inspect.unwrap(obj) if callable(obj) else obj, "__module__", None)
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
    return isinstance(name, str) and (name == PACKAGE or name.startswith(PACKAGE + "."))


def _class_members(cls: type) -> List[Tuple[str, Callable[..., Any]]]:
    """The public callables of ``cls`` defined in the package (inherited ones included):
    methods, classmethods, staticmethods, property accessors, ``__init__``, ``__call__``."""
    out = []
    for name in sorted(dir(cls)):
        if name.startswith("_") and name not in PUBLIC_DUNDERS:
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not _ours(owner):
            continue
        raw = vars(owner)[name]
        if isinstance(raw, (classmethod, staticmethod)):
            found = [(name, raw.__func__)]
        elif isinstance(raw, property):
            found = [(f"{name}.{part}", fn) for part, fn in
                     (("fget", raw.fget), ("fset", raw.fset), ("fdel", raw.fdel))
                     if fn is not None]
        elif callable(raw) and inspect.isfunction(inspect.unwrap(raw)):
            found = [(name, raw)]
        else:  # data, nested classes (an engine's Options), ...
            continue
        out += [(f"{owner.__module__}.{owner.__qualname__}.{n}", fn)
                for n, fn in found if _ours(fn)]
    return out


def _module_members(module: types.ModuleType) -> List[Any]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
    return [getattr(module, n) for n in names]


def _public_api() -> Dict[str, Callable[..., Any]]:
    """``{qualified name: function}`` over the public API."""
    objects: List[Any] = [getattr(pgm, n) for n in pgm.__all__]
    objects += [cls.fit_class for cls in pgm.registry().values()]
    objects += [getattr(pgm_infer, n) for n in getattr(pgm_infer, "__all__", ())]
    out: Dict[str, Callable[..., Any]] = {}
    seen: set = set()

    def add(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            if _ours(obj):
                for member in _module_members(obj):
                    add(member)
        elif not _ours(obj):
            return
        elif inspect.isclass(obj):
            for name, fn in _class_members(obj):
                out.setdefault(name, fn)
        elif callable(obj) and inspect.isfunction(inspect.unwrap(obj)):
            out.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)

    for obj in objects:
        add(obj)
    return out


API = _public_api()


def test_the_public_api_is_found():
    """The walk sees what it must (a broken walk would check nothing)."""
    assert "pyro_genmodels.base.GenerativeModel.fit" in API
    assert "pyro_genmodels.fit.Fit.log_prob" in API
    assert "pyro_genmodels.fit.Fit.params.fget" in API
    assert "pyro_genmodels.compare.compare" in API
    assert any(name.startswith("pyro_genmodels.metrics.") for name in API)
    assert any(name.startswith("pyro_genmodels.infer.") for name in API)
    assert len(API) > 200


def test_the_lock_wrapper_keeps_annotations():
    """A fit class's public methods run under the process lock (``Fit.__init_subclass__``
    wraps them); the wrapper carries the method's annotations and signature."""
    from pyro_genmodels.models.vae import VAEFit

    wrapped = vars(VAEFit)["encode"]
    assert getattr(wrapped, "__serialized__", False)
    original = inspect.unwrap(wrapped)
    assert original is not wrapped
    assert wrapped.__annotations__ == original.__annotations__
    assert inspect.signature(wrapped) == inspect.signature(original)


@pytest.mark.parametrize("name", sorted(API))
def test_public_api_is_annotated(name):
    fn = API[name]
    sig = inspect.signature(fn)  # follows __wrapped__ (the lock wrapper, torch.no_grad)
    missing = []
    for i, (pname, param) in enumerate(sig.parameters.items()):
        if i == 0 and pname in ("self", "cls"):
            continue
        if param.annotation is inspect.Parameter.empty:
            missing.append(pname)
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    assert not missing, f"{name}: not annotated: {', '.join(missing)}"
    target = inspect.unwrap(fn)  # the wrapper's globals are not the module's
    hints = typing.get_type_hints(target, localns=_typing_only_names(target.__module__))
    assert "return" in hints, name


@functools.lru_cache(maxsize=None)
def _typing_only_names(module_name: str) -> Dict[str, Any]:
    """The names that ``module_name`` imports under ``if TYPE_CHECKING:`` (to break an
    import cycle), imported here: an annotation may name them and still resolve. Any
    other name must be in the module's namespace."""
    module = sys.modules[module_name]
    out: Dict[str, Any] = {}
    for block in ast.walk(ast.parse(inspect.getsource(module))):
        if not (isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"):
            continue
        for stmt in block.body:
            if isinstance(stmt, ast.ImportFrom):
                source = importlib.import_module(importlib.util.resolve_name(
                    "." * stmt.level + (stmt.module or ""), module.__package__))
                for alias in stmt.names:
                    out[alias.asname or alias.name] = getattr(source, alias.name)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    imported = importlib.import_module(alias.name)
                    out[alias.asname or alias.name.split(".")[0]] = (
                        imported if alias.asname else sys.modules[alias.name.split(".")[0]])
    return out
