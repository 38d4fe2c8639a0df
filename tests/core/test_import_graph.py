"""ebmcore's modules import each other without a cycle.

The graph is read from the source with ``ast``: an edge for every import a module runs when
it is imported (at module level, in a class body, under ``if``/``try``), and none for imports
inside functions or under ``if TYPE_CHECKING:``, which run later or never. ``from pkg import
name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``; the
implicit import of a package's ``__init__`` by its submodules is not an edge (every package
that re-exports its submodules would otherwise be a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ebmcore

ROOT = Path(ebmcore.__file__).resolve().parent


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_nodes(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of ``body`` that run at import, nested blocks included."""
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _import_time_nodes(node.body)
            found += _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *[h.body for h in node.handlers]):
                found += _import_time_nodes(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            found += _import_time_nodes(node.body)
        else:
            found.append(node)
    return found


def _all_nodes(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node of ``body``, function bodies included, except under ``TYPE_CHECKING``."""
    found: list[ast.AST] = []
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            found += _all_nodes(node.orelse)
            continue
        found.append(node)
        for child in ast.iter_child_nodes(node):
            found += _all_nodes([child]) if isinstance(child, ast.stmt) else [child]
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path], *,
               lazy: bool = False) -> set[str]:
    """The ebmcore modules ``name`` (at ``path``) imports when it is imported (with
    ``lazy``, also those its functions import when they run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    body = ast.parse(path.read_text(), str(path)).body
    for node in _all_nodes(body) if lazy else _import_time_nodes(body):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                edges.add(full if full in modules else base)
    return {edge for edge in edges if edge in modules and edge != name}


def import_graph(root: Path = ROOT, *, lazy: bool = False) -> dict[str, set[str]]:
    """Each module of the package under ``root`` and the package's modules it imports."""
    modules = module_names(root)
    return {name: imports_of(name, path, modules, lazy=lazy) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_ebmcore_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20 and "ebmcore.training.loop" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_the_imports_that_run_at_import_time(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from pkg.sub import c\n"
        "if TYPE_CHECKING:\n    from pkg import b\n"
        "def later():\n    import pkg.b\n")
    (pkg / "b.py").write_text("try:\n    from . import a\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import b\nclass K:\n    from pkg.sub import d\n")
    (pkg / "sub" / "d.py").write_text("import pkg.sub\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.c"}, "pkg.b": {"pkg.a"},
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.b", "pkg.sub.d"},
                     "pkg.sub.d": {"pkg.sub"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_lazy_imports_count_when_asked(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("if TYPE_CHECKING:\n    import pkg.a\n")
    assert import_graph(pkg)["pkg.a"] == set()
    assert import_graph(pkg, lazy=True) == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": set()}


@pytest.mark.parametrize("one, other", [
    ("ebmcore.launch", "ebmcore.distributed"),
    ("ebmcore.launch", "ebmcore.ranks"),
    ("ebmcore.sampler", "ebmcore.distributed"),
    ("ebmcore.sampler", "ebmcore.sharded_sampling"),
    ("ebmcore.sampler", "ebmcore.ranks"),
])
def test_the_cut_cycles_stay_cut_even_through_lazy_imports(one, other):
    # launch <-> distributed and sampler <-> distributed were cycles through imports inside
    # functions; one direction at most may remain
    graph = import_graph(lazy=True)
    assert not (other in graph[one] and one in graph[other])
