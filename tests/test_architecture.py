"""The package's shape: no import cycle anywhere (function-level imports included), the
Fit in its own module, and no module a reader cannot hold in their head."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pyro_genmodels"
MAX_LINES = 550  # "about 500": docstrings with the math count too


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set) -> set:
    """Every module of the package that ``name`` imports, at any depth of its code."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    out = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}  # never executed
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            subs = {f"{target}.{a.name}" for a in node.names} & known  # submodules by name
            out.update(subs)
            if len(subs) < len(node.names):  # a name defined in the module itself
                out.add(target)
    return {m for m in out if m in known and m != name}


def _cycle(graph: dict):
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    mods = _modules()
    graph = {n: _imports(n, p, set(mods)) for n, p in mods.items()}
    # the walk sees what it must: base needs fit and the engines, fit needs neither
    assert {"pyro_genmodels.fit", "pyro_genmodels.infer.engines"} <= graph["pyro_genmodels.base"]
    assert "pyro_genmodels.base" not in graph["pyro_genmodels.fit"]
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_inference_imports_no_model_family():
    mods = _modules()
    for name, path in mods.items():
        if name.startswith("pyro_genmodels.infer"):
            deps = _imports(name, path, set(mods))
            assert not {d for d in deps if d.startswith(("pyro_genmodels.models",
                                                          "pyro_genmodels.base"))}, name


def test_no_module_is_too_long_to_hold_in_ones_head():
    sizes = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert max(sizes.values()) <= MAX_LINES, max(sizes.items(), key=lambda kv: kv[1])
