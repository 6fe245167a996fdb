"""``trio-exec run --tty`` inside a real terminal: the child starts at its size and follows it.

Each test runs the CLI as a process whose stdin, stdout and stderr are the slave of a
pseudo-terminal made here, with a size set through ``TIOCSWINSZ``, and which is that
terminal's controlling process (a session of its own). The child's terminal must have
that size from its first instruction on (no 24x80 first, then a resize that races it),
and follow the outer terminal when it changes (SIGWINCH).
"""

from __future__ import annotations

from typing import Final

import pytest
import trio

from trio_exec._server import serve_websocket

from ..conformance.helpers import TIMEOUT, python
from .helpers import cli_in_terminal, set_size

RUNS: Final = 5
"""Runs per backend: the old start-then-resize lost the race in most runs."""


@pytest.fixture(params=["local", "remote"])
async def remote_args(request: pytest.FixtureRequest, nursery: trio.Nursery) -> list[str]:
    """``[]`` for a local run, ``["--remote", URL]`` of our own server for a remote one."""
    if request.param == "local":
        return []
    url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
    return ["--remote", url]


async def test_the_child_starts_at_the_terminals_size(remote_args: list[str]) -> None:
    for _ in range(RUNS):
        with trio.fail_after(TIMEOUT):
            async with cli_in_terminal(
                ["run", *remote_args, "--tty", "--", "stty", "size"], 40, 120
            ) as terminal:
                output = await terminal.read_to_end()
                assert await terminal.process.wait() == 0, output
        assert output == b"40 120\r\n"


async def test_the_child_follows_the_terminals_size(remote_args: list[str]) -> None:
    code = (
        "import os, signal\n"
        "def show(*_):\n"
        "    size = os.get_terminal_size(0)\n"
        "    print(f'size {size.lines} {size.columns}', flush=True)\n"
        "    raise SystemExit(0)\n"
        "signal.signal(signal.SIGWINCH, show)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    signal.pause()\n"
    )
    args = ["run", *remote_args, "--tty", "--", *python(code)]
    with trio.fail_after(TIMEOUT):
        async with cli_in_terminal(args, 40, 120) as terminal:
            await terminal.read_until(b"ready\r\n")
            set_size(terminal.master, 50, 100)  # SIGWINCH to the CLI, the terminal's owner
            output = await terminal.read_to_end()
            assert await terminal.process.wait() == 0, output
    assert output == b"ready\r\nsize 50 100\r\n"
