"""Helpers of the remote client tests that look at processes on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def reference_server_pids(binary: Path) -> list[int]:
    """The pids of reference servers that this test process started (children of ours)."""
    wanted = os.fsencode(binary)
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and argv[0] == wanted and b"exec-server" in argv:
            pids.append(int(entry))
    return pids


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")
