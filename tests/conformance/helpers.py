"""Helpers of the conformance suite."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Final, Protocol

import trio

import trio_exec as tx

TIMEOUT: Final = 30.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""


def python(code: str) -> list[str]:
    """The argv that runs ``code`` in a fresh interpreter."""
    return [sys.executable, "-c", code]


async def collect(proc: tx.ExecProcess, timeout: float = TIMEOUT) -> list[tx.Event]:
    """Every event of ``proc.events`` until the channel ends."""
    with trio.fail_after(timeout):
        return [event async for event in proc.events]


async def wait_failed(proc: tx.ExecProcess) -> None:
    """Wait until the session's log failed (the connection broke for good)."""
    with trio.fail_after(TIMEOUT):
        async with proc.subscribe() as events:
            async for event in events:
                if isinstance(event, tx.Failed):
                    return
    raise AssertionError("the session ended without Failed")


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is alive (a zombie is not), asked of ``ps``."""
    listing = subprocess.run(
        ["ps", "-A", "-o", "pgid=", "-o", "stat="], capture_output=True, check=True, text=True
    ).stdout
    for line in listing.splitlines():
        group, _, state = line.strip().partition(" ")
        if group and int(group) == pgid and not state.strip().startswith("Z"):
            return True
    return False


class ProcessTable(Protocol):
    """The processes of the side that runs a backend's children, as a test looks at them."""

    def group_alive(self, pgid: int) -> bool:
        """Whether any process of group ``pgid`` is alive (a zombie is not)."""
        ...

    def getpgid(self, pid: int) -> int:
        """The process group of process ``pid``."""
        ...

    def kill(self, pid: int, signum: int) -> None:
        """Send ``signum`` to process ``pid``."""
        ...


class HostProcesses:
    """This machine's processes: ``ps`` and the ``os`` functions."""

    def group_alive(self, pgid: int) -> bool:
        """Whether any process of group ``pgid`` is alive, asked of ``ps``."""
        return group_alive(pgid)

    def getpgid(self, pid: int) -> int:
        """:func:`os.getpgid`."""
        return os.getpgid(pid)

    def kill(self, pid: int, signum: int) -> None:
        """:func:`os.kill`."""
        os.kill(pid, signum)


HOST_PROCESSES: Final = HostProcesses()
"""The process table of the backends whose children run on this machine."""
