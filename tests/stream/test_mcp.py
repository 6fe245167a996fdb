"""MCP stdio over trio_exec, with the official ``mcp`` SDK as the client and the server.

``examples/mcp_remote.py`` bridges a :class:`ProcessStream` to ``mcp.ClientSession``; it is
run as a program (remote through an in-process exec server, and local), and its bridge is
used in-process on every backend.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import trio

import trio_exec as tx

from .helpers import TIMEOUT

EXAMPLES = Path(__file__).parent.parent.parent / "examples"

EXPECTED_REPORT = [
    "server: trio-exec-demo 1.0.0",
    'add({"a": 2, "b": 3}) -> 5',
    'shout({"text": "trio"}) -> TRIO!',
    "tools: add, shout",
    "server exit code: 0",  # it exited by itself when the stream closed its stdin
]


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run_example(*args: str) -> tuple[int, list[str]]:
    with trio.fail_after(2 * TIMEOUT):
        done = await trio.run_process(
            [sys.executable, str(EXAMPLES / "mcp_remote.py"), *args],
            capture_stdout=True,
            check=False,
        )
    return done.returncode, done.stdout.decode().splitlines()


async def test_the_example_drives_a_remote_mcp_server() -> None:
    code, lines = await run_example()
    assert lines[0].startswith("exec server listening on ws://127.0.0.1:")
    for expected in EXPECTED_REPORT:
        assert expected in lines
    assert any(line.endswith(": mcp_server: serving on stdio") for line in lines)  # stderr, logged
    assert code == 0


async def test_the_example_drives_a_local_mcp_server() -> None:
    code, lines = await run_example("--local")
    for expected in EXPECTED_REPORT:
        assert expected in lines
    assert code == 0


async def test_mcp_session_over_a_process_stream(backend: tx.ExecBackend) -> None:
    example = load_example("mcp_remote")
    with trio.fail_after(2 * TIMEOUT):
        report: list[str] = await example.talk_to_mcp_server(backend)
    for expected in EXPECTED_REPORT:
        assert expected in report
