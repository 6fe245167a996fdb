"""The package layout: no import cycle between trio_exec's modules, none over 500 lines.

The import graph is read from the source with :mod:`ast`. An edge ``A -> B`` is an import
of module ``B`` by module ``A`` that runs: at module level (also inside ``if`` or ``try``
there), or inside a function. Imports under ``if TYPE_CHECKING:`` never run and are left
out. An import inside a function runs late, so it cannot deadlock the import of a module,
but it is still a dependency: the graph counts it, and the few that close a cycle are
listed in :data:`LAZY_CYCLE_EDGES`, each of which must still close one.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import trio_exec
from trio_exec._backend import _OPTION_DEFAULTS, ProcessOptions

PACKAGE_DIR: Final = Path(trio_exec.__file__).parent
MAX_MODULE_LINES: Final = 500

OVERSIZE_MODULES: Final[frozenset[str]] = frozenset()
"""Library modules still over :data:`MAX_MODULE_LINES`: this set may only shrink."""

LAZY_CYCLE_EDGES: Final = frozenset({("trio_exec._backend", "trio_exec._stream")})
"""Function-level imports that close a cycle, allowed because they are unavoidable:
:meth:`ExecBackend.open_stream` is part of the interface, while ``open_stream`` is built
on that interface (it imports ``_backend``)."""

CONNECTION_LAYERS: Final = (
    ("trio_exec._protocol",),
    ("trio_exec._transport",),
    ("trio_exec._rpc",),
    ("trio_exec._remote", "trio_exec._server"),
)
"""The layers of a connection, lowest first (a name covers its subpackage): the sans-IO
rules, the transports, the symmetric RPC peer, then the two roles that run it. A module
of one layer imports none of a higher layer."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Yield each import that can run, with whether it is inside a function."""

    def visit(
        node: ast.AST, in_function: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: list[ast.AST] = list(node.orelse)
        else:
            children = list(ast.iter_child_nodes(node))
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in children:
            yield from visit(child, inner)

    yield from visit(tree, False)


def _targets(
    module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]
) -> Iterator[str]:
    """The trio_exec modules an import statement imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    if node.level:
        base = module.split(".")
        if not is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    if source not in known:
        return
    submodules = [f"{source}.{alias.name}" for alias in node.names]
    found = [name for name in submodules if name in known]
    yield from found
    if len(found) < len(submodules):
        yield source


def import_graph() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """Return the graph of module-level imports and the set of function-level edges."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    lazy: set[tuple[str, str]] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, in_function in _imports(tree):
            for target in _targets(name, path.name == "__init__.py", node, known):
                if target == name:
                    continue
                if in_function:
                    lazy.add((name, target))
                else:
                    graph[name].add(target)
    return graph, lazy - {(a, b) for a, targets in graph.items() for b in targets}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def _with_edges(graph: dict[str, set[str]], edges: set[tuple[str, str]]) -> dict[str, set[str]]:
    merged = {name: set(targets) for name, targets in graph.items()}
    for source, target in edges:
        merged[source].add(target)
    return merged


def test_no_module_level_import_cycle() -> None:
    graph, _ = import_graph()
    assert find_cycle(graph) is None


def test_function_level_imports_close_only_the_known_cycles() -> None:
    graph, lazy = import_graph()
    allowed = {edge for edge in lazy if edge in LAZY_CYCLE_EDGES}
    assert find_cycle(_with_edges(graph, lazy - allowed)) is None
    for source, target in LAZY_CYCLE_EDGES:
        assert (source, target) in lazy, f"{source} no longer imports {target} in a function"
        assert find_cycle(_with_edges(graph, {(source, target)})) is not None, (
            f"{source} -> {target} closes no cycle any more: drop it from LAZY_CYCLE_EDGES"
        )


def test_the_graph_sees_imports() -> None:
    """The graph is not empty by mistake: a few edges every layout has."""
    graph, _ = import_graph()
    assert "trio_exec._backend" in graph["trio_exec._local"]
    assert "trio_exec._local" in graph["trio_exec._run"]
    assert "trio_exec._pty" in graph["trio_exec._spawn"]  # from . import _pty
    assert "trio_exec._log" in graph["trio_exec._backend"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _layer(module: str) -> int | None:
    for index, names in enumerate(CONNECTION_LAYERS):
        if any(module == name or module.startswith(f"{name}.") for name in names):
            return index
    return None


def test_connection_layers_import_downwards() -> None:
    graph, lazy = import_graph()
    edges = {(a, b) for a, targets in graph.items() for b in targets} | lazy
    upwards = [
        (source, target)
        for source, target in sorted(edges)
        if (low := _layer(source)) is not None
        and (high := _layer(target)) is not None
        and high > low
    ]
    assert upwards == []
    # Both roles run the one peer, which runs the rules over a transport.
    assert {"trio_exec._protocol", "trio_exec._transport"} <= graph["trio_exec._rpc"]
    assert "trio_exec._rpc" in graph["trio_exec._remote.rpc"]
    assert "trio_exec._rpc" in graph["trio_exec._server.connection"]


def test_module_sizes() -> None:
    """No library module over 500 lines, but the listed ones, which must stay listed only
    while they are over."""
    sizes = {
        path.relative_to(PACKAGE_DIR.parent).as_posix(): len(
            path.read_text(encoding="utf-8").splitlines()
        )
        for path in PACKAGE_DIR.rglob("*.py")
    }
    oversize = {name for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert oversize - OVERSIZE_MODULES == set(), "new modules over the limit"
    assert OVERSIZE_MODULES - oversize == set(), "now within the limit: drop from the list"


def test_open_process_options_are_declared_once() -> None:
    """Every ``open_process`` takes ``argv`` and the options of :class:`ProcessOptions`."""
    functions: list[Callable[..., object]] = [
        trio_exec.ExecBackend.open_process,
        trio_exec.LocalBackend.open_process,
        trio_exec.RemoteBackend.open_process,
        trio_exec.open_process,
    ]
    for function in functions:
        parameters = [
            (p.name, p.kind, p.annotation)
            for p in inspect.signature(function).parameters.values()
            if p.name != "self"
        ]
        assert parameters == [
            ("argv", inspect.Parameter.POSITIONAL_OR_KEYWORD, "Sequence[Arg]"),
            ("options", inspect.Parameter.VAR_KEYWORD, "Unpack[ProcessOptions]"),
        ], function.__qualname__
    assert set(_OPTION_DEFAULTS) == ProcessOptions.__optional_keys__
    assert not ProcessOptions.__required_keys__
