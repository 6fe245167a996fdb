"""The protocol package is sans-IO: neither it nor what it imports loads trio or a network stack.

``trio_exec/__init__.py`` imports the whole library (trio, sockets, websockets), so importing
``trio_exec._protocol`` the usual way would load all of them whatever the protocol modules
import. Two checks look past that:

* at run time, a fresh interpreter imports the package under a stub ``trio_exec`` parent
  (its real directory, without running ``trio_exec/__init__.py``) and reports what is in
  ``sys.modules`` afterwards;
* statically, every import statement of the package (function bodies included) and of the
  library modules it reaches is read with :mod:`ast`.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Final

import trio_exec

PACKAGE: Final = "trio_exec._protocol"
LIBRARY_DIR: Final = pathlib.Path(trio_exec.__file__).parent
PROTOCOL_DIR: Final = LIBRARY_DIR / "_protocol"
FORBIDDEN: Final = ("trio", "socket", "trio_websocket", "h11", "wsproto", "ssl")
"""Top-level modules that a sans-IO layer has no use for."""
IMPORT_TIMEOUT: Final = 60.0
"""Seconds the fresh interpreter gets to import the package (it takes well under one)."""

_PROBE: Final = """
import importlib, json, pkgutil, sys, types
before = sorted(sys.modules)
parent = types.ModuleType("trio_exec")
parent.__path__ = [sys.argv[1]]  # the real directory, without running its __init__.py
sys.modules["trio_exec"] = parent
package = importlib.import_module(sys.argv[2])
for info in pkgutil.iter_modules(package.__path__, prefix=sys.argv[2] + "."):
    importlib.import_module(info.name)
files = {
    name: getattr(module, "__file__", None)
    for name, module in sys.modules.items()
    if name.startswith("trio_exec.")
}
print(json.dumps({"before": before, "after": sorted(sys.modules), "files": files}))
"""


def _forbidden(names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if any(name == top or name.startswith(f"{top}.") for top in FORBIDDEN)
    ]


def _protocol_modules() -> list[str]:
    return sorted(
        PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"
        for path in PROTOCOL_DIR.glob("*.py")
    )


def test_importing_the_package_loads_no_io_library() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(LIBRARY_DIR), PACKAGE],
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    # The probe means something only if the interpreter starts without them.
    assert _forbidden(report["before"]) == []
    # The stub parent kept trio_exec/__init__.py out, and the package's own files were loaded.
    files: dict[str, str | None] = report["files"]
    assert "trio_exec._remote" not in files
    assert set(_protocol_modules()) <= set(files)
    for name, file in files.items():
        assert file is not None, name
        assert pathlib.Path(file).is_relative_to(LIBRARY_DIR), (name, file)
    assert _forbidden(report["after"]) == []


def _module_file(name: str) -> pathlib.Path:
    relative = pathlib.Path(*name.split(".")[1:])
    package = LIBRARY_DIR / relative / "__init__.py"
    return package if package.exists() else (LIBRARY_DIR / relative).with_suffix(".py")


def _imports(name: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import statement of module ``name``."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                base = package.rsplit(".", node.level - 1)[0]
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:  # from x import y: y may be a module of x
                module = f"{base}.{alias.name}"
                library = module.startswith("trio_exec.") and _module_file(module).exists()
                yield node.lineno, module if library else base


def test_no_import_statement_reaches_an_io_library() -> None:
    to_read = _protocol_modules()
    read: set[str] = set()
    found: list[str] = []
    while to_read:
        name = to_read.pop()
        if name in read:
            continue
        read.add(name)
        for line, imported in _imports(name):
            # trio_exec itself: its __init__.py imports the whole library.
            if _forbidden([imported]) or imported == "trio_exec":
                found.append(f"{_module_file(name).relative_to(LIBRARY_DIR)}:{line}: {imported}")
            elif imported.startswith("trio_exec.") and _module_file(imported).exists():
                to_read.append(imported)  # a library module the package relies on
    assert set(_protocol_modules()) <= read
    assert found == []
