"""A local session releases its descriptors as soon as Closed is sequenced."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

import trio_exec as tx

from ..conformance.helpers import TIMEOUT, group_alive
from ..transports.helpers import pid_alive


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(("tty", "pipe_stdin"), [(False, False), (False, True), (True, False)])
async def test_closed_session_holds_no_descriptor(tty: bool, pipe_stdin: bool) -> None:
    backend = tx.LocalBackend()
    before = open_descriptors()
    async with backend.open_process(
        ["sh", "-c", "echo hi"], tty=tty, pipe_stdin=pipe_stdin
    ) as proc:
        with trio.fail_after(TIMEOUT):
            await proc.wait_closed()
        assert open_descriptors() == before
        assert await proc.write(b"x") is tx.WriteStatus.STDIN_CLOSED
        assert await proc.close_stdin() is tx.WriteStatus.STDIN_CLOSED
        if tty:
            await proc.resize(30, 100)  # a no-op once the terminal is released
    assert open_descriptors() == before


async def test_stdin_a_job_still_reads_stays_open_after_closed(tmp_path: Path) -> None:
    # The child exits at once; a job of its group copies 4 bytes of stdin to a file (its
    # output elsewhere), so Closed comes while the job still reads: writes reach it.
    copy = tmp_path / "copy"
    script = 'exec 3<&0; head -c 4 <&3 >"$1" 2>/dev/null 3<&- & exec 3<&-'
    before = open_descriptors()
    async with tx.open_process(["sh", "-c", script, "sh", str(copy)], pipe_stdin=True) as proc:
        with trio.fail_after(TIMEOUT):
            await proc.wait_closed()
            assert await proc.write(b"late") is tx.WriteStatus.ACCEPTED
            while group_alive(proc.pid):  # noqa: ASYNC110 - another process's state
                await trio.sleep(0.01)
        assert copy.read_bytes() == b"late"
        # Its reader gone, a write finds no one and the pipe is released.
        assert await proc.write(b"x") is tx.WriteStatus.STDIN_CLOSED
        assert open_descriptors() == before


async def test_signal_reaches_the_group_after_closed() -> None:
    script = "sleep 60 >/dev/null 2>&1 </dev/null & echo $!"
    async with tx.open_process(["sh", "-c", script]) as proc:
        events = proc.events
        with trio.fail_after(TIMEOUT):
            first = await events.receive()
            assert isinstance(first, tx.Output)
            grandchild = int(first.data)
            await proc.wait_closed()
        assert pid_alive(grandchild)
        await proc.signal(signal.SIGKILL)  # returns once the group is gone
        assert not pid_alive(grandchild)
