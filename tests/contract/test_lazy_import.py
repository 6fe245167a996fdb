"""``import trio_exec`` loads the local layer only; the remote client, the server, streams
and the supervisor load on first use of one of their names (PEP 562)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Final

import pytest

import trio_exec

IMPORT_TIMEOUT: Final = 60.0
"""Seconds a fresh interpreter may take to import the package (generous: a loaded machine)."""

NOT_LOADED_BY_IMPORT: Final = (
    "trio_exec._command",
    "trio_exec._protocol",
    "trio_exec._remote",
    "trio_exec._server",
    "trio_exec._stream",
    "trio_exec._supervisor",
    "trio_exec._transport",
    "trio_websocket",
    "wsproto",
    "h11",
    "cattrs",
    "importlib.metadata",
)
"""Modules a local-only ``import trio_exec`` must not load: the remote stack and the
protocol's model layer."""


def _loaded_after(code: str) -> set[str]:
    """The modules loaded in a fresh interpreter after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=IMPORT_TIMEOUT,
    )
    modules: list[str] = json.loads(done.stdout)
    return set(modules)


def test_import_loads_no_remote_stack() -> None:
    loaded = _loaded_after("import trio_exec\ntrio_exec.open_process, trio_exec.run_process")
    assert "trio_exec._local" in loaded
    assert sorted(loaded & set(NOT_LOADED_BY_IMPORT)) == []


def test_the_pytest_plugin_loads_no_remote_stack() -> None:
    """pytest loads the plugin (an entry point) in every run of a project that has
    trio_exec installed: it pays for the local layer only."""
    loaded = _loaded_after("import trio_exec.testing.pytest_plugin")
    remote_stack = set(NOT_LOADED_BY_IMPORT) - {"importlib.metadata"}  # pytest's own
    assert sorted(loaded & remote_stack) == []


def test_a_remote_name_loads_the_remote_stack() -> None:
    loaded = _loaded_after("import trio_exec\ntrio_exec.connect")
    assert {"trio_exec._remote", "trio_websocket"} <= loaded


@pytest.mark.parametrize("name", sorted(trio_exec._LAZY_NAMES))
def test_a_lazy_name_is_its_module_s_object(name: str) -> None:
    value = getattr(trio_exec, name)
    module = sys.modules[f"trio_exec{trio_exec._LAZY_NAMES[name]}"]
    assert value is getattr(module, name)
    assert name in trio_exec.__all__
    assert name in dir(trio_exec)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="'trio_exec' has no attribute 'no_such_name'"):
        _ = trio_exec.no_such_name  # type: ignore[attr-defined]
