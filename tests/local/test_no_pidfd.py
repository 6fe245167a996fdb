"""Without pidfds (Linux before 5.3): a worker thread's ``waitid`` signals the exit.

``os.pidfd_open`` is made to fail as such a kernel fails it; the rest is real (the child,
its pipes, the thread's ``waitid`` and the eventfd that wakes the session's task).
"""

from __future__ import annotations

import errno
import os
import sys

import pytest
import trio

import trio_exec as tx
from trio_exec.testing import check_event_stream

from ..conformance.helpers import TIMEOUT
from .test_sigchld import PROGRAM


def _no_pidfd(pid: int, flags: int = 0) -> int:
    raise OSError(errno.ENOSYS, "Function not implemented")


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.pidfd_open`` fails as on a kernel before 5.3."""
    monkeypatch.setattr(os, "pidfd_open", _no_pidfd)


@pytest.mark.usefixtures("no_pidfd")
async def test_exit_and_output_without_pidfd() -> None:
    events = []
    with trio.fail_after(TIMEOUT):
        async with tx.open_process(["sh", "-c", "echo out; echo err >&2; exit 3"]) as proc:
            async for event in proc.events:
                events.append(event)
    check_event_stream(events)
    exited = [event for event in events if isinstance(event, tx.Exited)]
    assert [event.exit_code for event in exited] == [3]
    output = {event.stream: event.data for event in events if isinstance(event, tx.Output)}
    assert output == {tx.OutputStream.STDOUT: b"out\n", tx.OutputStream.STDERR: b"err\n"}


@pytest.mark.usefixtures("no_pidfd")
async def test_leaving_the_block_without_pidfd_kills_and_reaps() -> None:
    with trio.fail_after(TIMEOUT):
        async with tx.open_process(["sleep", "60"]) as proc:
            pid = proc.pid
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - reaped by the session, never blocks


async def test_sessions_end_when_sigchld_is_ignored_without_pidfd() -> None:
    program = (
        "import errno, os\n"
        "def _no(pid, flags=0):\n"
        "    raise OSError(errno.ENOSYS, 'Function not implemented')\n"
        "os.pidfd_open = _no\n" + PROGRAM
    )
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-c", program], capture_stdout=True, capture_stderr=True
        )
    lines = done.stdout.decode().splitlines()
    assert lines[1:4] == ["true 0", "pipes 0 b'out\\n'", "tty 0 b'term\\r\\n'"], done.stderr
    assert lines[-1] == "cancelled True"
