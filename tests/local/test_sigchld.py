"""A program that ignores SIGCHLD: the kernel reaps its children, and sessions still end.

The program runs in a child interpreter, so that this test process keeps its own SIGCHLD
disposition.
"""

from __future__ import annotations

import sys

import trio

from ..conformance.helpers import TIMEOUT, group_alive

PROGRAM = r"""
import signal, subprocess
import trio
import trio_exec as tx

signal.signal(signal.SIGCHLD, signal.SIG_IGN)

async def main() -> None:
    print("subprocess", subprocess.run(["sh", "-c", "exit 3"]).returncode)
    with trio.fail_after(10):
        done = await tx.run_process(["true"])
        print("true", done.exit_code)
        done = await tx.run_process(["sh", "-c", "echo out; exit 3"], check=False)
        print("pipes", done.exit_code, done.stdout)
        done = await tx.run_process(["sh", "-c", "echo term"], tty=True)
        print("tty", done.exit_code, done.stdout)
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with tx.open_process(["sh", "-c", "echo $$; exec sleep 60"]) as proc:
                async for event in proc.events:
                    print("group", int(event.data), flush=True)
                    scope.cancel()
        print("cancelled", scope.cancelled_caught)

trio.run(main)
"""


async def test_sessions_end_when_sigchld_is_ignored() -> None:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-c", PROGRAM], capture_stdout=True, capture_stderr=True
        )
    lines = done.stdout.decode().splitlines()
    # The status is lost (the kernel reaped the child): 0, as subprocess reports it.
    assert lines[:4] == [
        "subprocess 0",
        "true 0",
        "pipes 0 b'out\\n'",
        "tty 0 b'term\\r\\n'",
    ], done.stderr
    group = lines[4].split()
    assert group[0] == "group"
    assert lines[5:] == ["cancelled True"]
    assert not group_alive(int(group[1]))
