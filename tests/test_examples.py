"""Every example runs, and says what it should; what the examples import beyond the library
is in the ``examples`` extra."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import trio

from .conformance.helpers import TIMEOUT

EXAMPLES = Path(__file__).parent.parent / "examples"


async def run_example(name: str, *args: str) -> tuple[int, str]:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, str(EXAMPLES / name), *args], capture_stdout=True, check=False
        )
    return done.returncode, done.stdout.decode()


async def test_embedded_server_runs_a_process_remotely() -> None:
    code, out = await run_example("embedded_server.py")
    lines = out.splitlines()
    assert lines[0].startswith("exec server listening on ws://127.0.0.1:")
    assert "stream=<OutputStream.STDOUT: 'stdout'>, data=b'hello from" in out
    assert "stream=<OutputStream.STDERR: 'stderr'>, data=b'a line on stderr\\n')" in out
    assert "Exited(seq=4, exit_code=0, signal=None)" in out
    assert lines[-2] == "  Closed(seq=5)"
    assert lines[-1] == "exit code 0"
    assert code == 0


async def test_embedded_server_takes_a_command() -> None:
    code, out = await run_example("embedded_server.py", "sh", "-c", "printf x; exit 5")
    assert "Output(seq=1, stream=<OutputStream.STDOUT: 'stdout'>, data=b'x')" in out
    assert code == 5


def _requirement_names(requirements: list[str]) -> set[str]:
    """The normalized distribution names of PEP 508 requirement strings."""
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match is not None, requirement
        names.add(re.sub(r"[-_.]+", "-", match[0]).lower())
    return names


def _imported_distributions(path: Path) -> set[str]:
    """The distributions (normalized names) whose modules an example imports, other than the
    standard library, trio_exec itself and the examples next to it."""
    tree = ast.parse(path.read_text())
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    local = {sibling.stem for sibling in EXAMPLES.glob("*.py")} | {"trio_exec", "__future__"}
    top = {module.partition(".")[0] for module in modules} - local - sys.stdlib_module_names
    by_module = importlib.metadata.packages_distributions()
    found = set()
    for name in top:
        assert name in by_module, f"{path.name} imports {name}, which no distribution provides"
        found |= _requirement_names(by_module[name])
    return found


def test_every_example_says_what_it_needs_and_the_examples_extra_installs_it() -> None:
    """What an example imports is a dependency of the library or in the ``examples`` extra,
    and an example that needs the extra says so in its docstring."""
    project = tomllib.loads((EXAMPLES.parent / "pyproject.toml").read_text())["project"]
    base = _requirement_names(project["dependencies"])
    extra = _requirement_names(project["optional-dependencies"]["examples"])
    needing = []
    for path in sorted(EXAMPLES.glob("*.py")):
        beyond = _imported_distributions(path) - base
        assert beyond <= extra, f"{path.name} needs {sorted(beyond - extra)}, not in the extra"
        if beyond:
            needing.append(path.name)
            docstring = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
            assert "pip install '.[examples]'" in docstring, f"{path.name} does not say so"
    assert {"mcp_remote.py", "property_test_consumer.py"} <= set(needing)
