"""Process-tree snapshots, asked of ``ps``, and the wait for a dead owner's tree to die."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Final

import attrs
import trio

from ..conformance.helpers import TIMEOUT

CLEANUP_DEADLINE: Final = 2.0
"""Seconds after its owner's death within which nothing the owner started may be alive."""

TREE: Final = "sleep 60 & echo $$ $PPID; sleep 60"
"""A ``sh -c`` script: starts a sleep in the background, then prints its group and its parent
(so the group has two members when the line arrives), then sleeps in the foreground."""


@attrs.frozen(kw_only=True)
class Process:
    """One line of ``ps``."""

    pid: int
    ppid: int
    pgid: int
    state: str


def processes() -> list[Process]:
    """Every process of the machine, zombies included."""
    listing = subprocess.run(
        ["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "pgid=", "-o", "stat="],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    found = []
    for line in listing.splitlines():
        pid, ppid, pgid, state = line.split(maxsplit=3)
        found.append(Process(pid=int(pid), ppid=int(ppid), pgid=int(pgid), state=state))
    return found


def descendants(root: int) -> list[Process]:
    """The live processes under ``root`` (its children, theirs, ...), without ``root``."""
    listing = processes()
    found: list[Process] = []
    parents = {root}
    while True:
        layer = [p for p in listing if p.ppid in parents and p not in found and p.state[:1] != "Z"]
        if not layer:
            return found
        found += layer
        parents = {p.pid for p in layer}


def survivors(tree: list[Process]) -> list[Process]:
    """The live processes that have the pid of one of ``tree`` or are in one of its groups
    (but for the group of this test process)."""
    pids = {p.pid for p in tree}
    groups = {p.pgid for p in tree} - {os.getpgrp()}
    return [
        p
        for p in processes()
        if (p.pid in pids or p.pgid in groups) and p.state[:1] not in ("Z", "X")
    ]


async def wait_dead(tree: list[Process], since: float) -> float:
    """Wait until nothing of ``tree`` is alive; return the seconds elapsed from ``since``
    (a :func:`time.monotonic` reading taken when the owner was killed)."""
    with trio.fail_after(TIMEOUT):
        while alive := survivors(tree):  # other processes' state: poll it
            if time.monotonic() - since > CLEANUP_DEADLINE:
                raise AssertionError(f"alive {CLEANUP_DEADLINE} s after the owner died: {alive}")
            await trio.sleep(0.01)
    return time.monotonic() - since


def kill_all(tree: list[Process]) -> None:
    """Clean up after a failed test: SIGKILL whatever of ``tree`` is left."""
    for process in survivors(tree):
        subprocess.run(["kill", "-KILL", str(process.pid)], check=False, capture_output=True)
