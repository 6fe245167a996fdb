"""A server's descriptors do not grow with the processes it retains after they closed."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Final

import trio

import trio_exec as tx

from .helpers import TIMEOUT

PROCESSES: Final = 2000
"""Sequential processes on one connection: far more than the table retains (256)."""

SLACK: Final = 5
"""How far the server's descriptor count may stray from where it started."""


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_closed_processes_hold_no_descriptors() -> None:
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_exec", "serve", "--listen", "ws://127.0.0.1:0"],
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        with trio.fail_after(TIMEOUT):
            url = (await server.stdout.receive_some()).decode().strip()
        async with tx.connect(url) as backend:
            with trio.fail_after(TIMEOUT):
                await tx.run_process(["true"], backend=backend)  # the keeper starts
            before = descriptors(server.pid)
            counts = []
            for i in range(PROCESSES):
                with trio.fail_after(TIMEOUT):
                    await tx.run_process(["true"], backend=backend)
                if i % 100 == 0:
                    counts.append(descriptors(server.pid))
            counts.append(descriptors(server.pid))
    finally:
        with trio.CancelScope(shield=True):
            server.kill()
            await server.wait()
            await server.stdout.aclose()
    assert all(abs(count - before) <= SLACK for count in counts), (before, counts)
