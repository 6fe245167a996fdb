"""The public API of ``trio_exec._server`` is documented, its limits are named, and its
modules keep one concern each and import downwards only."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from types import ModuleType

import trio_exec._server as server

LAYERS = (
    "environment",
    "env_methods",
    "session",
    "methods",
    "connection",
    "server",
    "websocket",
)
"""The modules of the package, each importing (at run time) only those before it."""

MAX_MODULE_LINES = 500


def _modules() -> dict[str, ModuleType]:
    return {
        info.name: importlib.import_module(f"{server.__name__}.{info.name}")
        for info in pkgutil.iter_modules(server.__path__)
    }


def test_every_public_name_is_documented() -> None:
    missing = []
    for name in server.__all__:
        value = getattr(server, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            if not inspect.getdoc(value):
                missing.append(name)
            for attr_name, member in vars(value).items() if inspect.isclass(value) else ():
                public = not attr_name.startswith("_") and inspect.isfunction(member)
                if public and not member.__doc__:
                    missing.append(f"{name}.{attr_name}")
    assert missing == []


def test_public_async_functions_document_cancellation() -> None:
    functions = [server.serve_websocket, server.serve_stdio, server.ExecServer.serve_connection]
    for function in functions:
        assert inspect.iscoroutinefunction(function)
        assert "**Cancellation:**" in (function.__doc__ or ""), function.__qualname__


def test_limits_are_final_constants_with_docstrings() -> None:
    sources = [inspect.getsource(module) for module in _modules().values()]
    constants = [name for name in server.__all__ if name.isupper()]
    assert constants
    for name in constants:
        head = f"\n{name}: Final = "
        defining = [source for source in sources if head in source]
        assert len(defining) == 1, name
        after = defining[0].split(head, 1)[1].split("\n")
        assert any(line.startswith('"""') for line in after[:4]), name


def test_each_module_has_one_concern_and_imports_downwards() -> None:
    modules = _modules()
    assert sorted(modules) == sorted(LAYERS)
    for name, module in modules.items():
        assert module.__doc__, name
        assert f":mod:`.{name}`" in (server.__doc__ or ""), name  # the package lists it
        exported = module.__all__
        assert all(hasattr(module, export) for export in exported), name
        source = inspect.getsource(module)
        assert source.count("\n") < MAX_MODULE_LINES, name
        below = LAYERS[: LAYERS.index(name)]
        for node in ast.parse(source).body:  # imports under `if TYPE_CHECKING:` excepted
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module in below, f"{name} imports {node.module}"
