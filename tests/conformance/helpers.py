"""Helpers of the conformance suite."""

from __future__ import annotations

import subprocess
import sys
from typing import Final

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
