"""Helpers of the transport tests: the stdio server command and process checks."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Final

import trio

import trio_exec as tx

from ..conformance.helpers import TIMEOUT

STDIO_SERVER: Final = (sys.executable, "-m", "trio_exec", "serve", "--listen", "stdio")
"""Our exec server on stdin / stdout, run by this very interpreter."""

GROUP_AND_SERVER: Final = ("sh", "-c", "echo $$ $PPID; exec sleep 60")
"""A child that prints its process group (it leads it) and its parent (the server), then
sleeps; see :func:`first_line_numbers`."""


def ssh_argv(ssh: list[str]) -> list[str]:
    """The command that runs :data:`STDIO_SERVER` over ``ssh`` (the argv prefix ending in
    the destination); ssh joins the remote command with spaces, so it goes quoted."""
    return [*ssh, shlex.join(STDIO_SERVER)]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


async def first_line_numbers(proc: tx.ExecProcess) -> list[int]:
    """The numbers in the first output event of ``proc``."""
    events = proc.events
    with trio.fail_after(TIMEOUT):
        event = await events.receive()
    assert isinstance(event, tx.Output), event
    return [int(word) for word in event.data.split()]
