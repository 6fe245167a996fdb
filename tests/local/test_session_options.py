"""LocalBackend(start_new_session=False) and LocalBackend(inherit_stderr=True).

The Ctrl-C test runs its backend in a child interpreter that leads a group of its own, so
that the SIGINT sent to "the caller's group" reaches that interpreter and its child and
nothing of the test run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio

import trio_exec as tx
from trio_exec._local_process import CLOSE_DRAIN_TIMEOUT

from ..conformance.helpers import TIMEOUT, collect
from ..transports.helpers import first_line_numbers, pid_alive

STDERR = tx.OutputStream.STDERR

CTRL_C_PROGRAM = r"""
import os, signal, sys
import trio
import trio_exec as tx

# A handler, not SIG_IGN: the child gets the default disposition back at exec.
signal.signal(signal.SIGINT, lambda signum, frame: print("caller got SIGINT", flush=True))
CHILD = ["sh", "-c", "trap 'echo child got SIGINT; exit 7' INT; echo $$; "
         "while :; do sleep 1; done"]

async def main() -> None:
    backend = tx.LocalBackend(start_new_session=sys.argv[1] == "new-session")
    with trio.fail_after(20):
        async with open_child(backend) as proc:
            async for event in proc.events:
                if isinstance(event, tx.Output):
                    pid = int(event.data)
                    print("child", pid, os.getpgid(pid) == os.getpgrp(), flush=True)
                    break
            with trio.move_on_after(float(sys.argv[2])):
                await proc.wait_closed()
            output = await proc.read(0, wait=False)
            print("output", b"".join(c.data for c in output.chunks[1:]), flush=True)
            print("exit", proc.exit_code, flush=True)
        print("left", os.path.exists(f"/proc/{pid}"), flush=True)

def open_child(backend):
    return backend.open_process(CHILD)

trio.run(main)
"""


def reaped(pid: int) -> bool:
    """Whether process ``pid`` is gone, not even a zombie."""
    return not os.path.exists(f"/proc/{pid}")


async def run_ctrl_c_program(mode: str, wait: float) -> list[str]:
    """Run :data:`CTRL_C_PROGRAM` in a group of its own, send SIGINT to that group once
    its child runs (a terminal's Ctrl-C), and return its output lines."""
    argv = [sys.executable, "-c", CTRL_C_PROGRAM, mode, str(wait)]
    lines: list[str] = []
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, start_new_session=True
        )
        assert process.stdout is not None
        try:
            buffered = b""
            async for data in process.stdout:
                buffered += data
                *complete, buffered = buffered.split(b"\n")
                for line in complete:
                    lines.append(line.decode())
                    if line.startswith(b"child "):
                        os.killpg(process.pid, signal.SIGINT)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await process.wait()
        assert process.returncode == 0, lines
    return lines


async def test_sigint_to_the_callers_group_reaches_the_child() -> None:
    lines = await run_ctrl_c_program("caller-group", TIMEOUT)
    assert lines[0].split()[::2] == ["child", "True"], lines
    assert "caller got SIGINT" in lines
    assert "output b'child got SIGINT\\n'" in lines
    assert "exit 7" in lines
    assert lines[-1] == "left False"


async def test_a_child_in_a_new_session_does_not_get_the_callers_sigint() -> None:
    """The default, for contrast: the caller's Ctrl-C is not the child's."""
    lines = await run_ctrl_c_program("new-session", 1.0)
    assert lines[0].split()[::2] == ["child", "False"], lines
    assert "caller got SIGINT" in lines
    assert "output b''" in lines
    assert "exit None" in lines  # the end of the block terminated it after the wait
    assert lines[-1] == "left False"


async def test_the_child_stays_in_our_session_and_group() -> None:
    backend = tx.LocalBackend(start_new_session=False)
    assert not backend.start_new_session
    assert tx.LocalBackend().start_new_session
    with trio.fail_after(TIMEOUT):
        async with backend.open_process(["sh", "-c", "echo $$; exec sleep 60"]) as proc:
            [pid] = await first_line_numbers(proc)
            assert pid == proc.pid
            assert os.getpgid(pid) == os.getpgrp()
            assert os.getsid(pid) == os.getsid(0)


async def test_leaving_the_block_kills_and_reaps_a_child_that_ignores_sigterm() -> None:
    backend = tx.LocalBackend(start_new_session=False)
    argv = ["sh", "-c", "trap '' TERM; echo $$; exec sleep 60"]  # sleep ignores TERM too
    with trio.fail_after(TIMEOUT):
        async with backend.open_process(argv, grace=0.1) as proc:
            [pid] = await first_line_numbers(proc)
        assert proc.exit_code == 128 + signal.SIGKILL
    assert reaped(pid)


async def test_terminate_reaches_the_child() -> None:
    backend = tx.LocalBackend(start_new_session=False)
    with trio.fail_after(TIMEOUT):
        async with backend.open_process(["sh", "-c", "echo $$; exec sleep 60"]) as proc:
            await first_line_numbers(proc)
            assert await proc.terminate(grace=5.0)
            assert proc.exit_code == 128 + signal.SIGTERM


async def test_signals_reach_the_child_alone() -> None:
    """The documented limit: a process the child leaves behind is in our group, which
    nothing may kill; it survives the child's SIGKILL and the end of the block."""
    backend = tx.LocalBackend(start_new_session=False)
    argv = ["sh", "-c", "sleep 60 & echo $$ $!; wait"]
    orphan = 0
    try:
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(argv) as proc:
                child, orphan = await first_line_numbers(proc)
                await proc.signal(signal.SIGKILL)
                assert await proc.wait() == 128 + signal.SIGKILL
            assert reaped(child)
            assert pid_alive(orphan)
            assert os.getpgid(orphan) == os.getpgrp()
    finally:
        if orphan:
            os.kill(orphan, signal.SIGKILL)


async def test_the_end_of_the_block_does_not_wait_long_for_a_left_behind_process() -> None:
    """A process that holds the child's pipes is waited for at most CLOSE_DRAIN_TIMEOUT
    after the child was killed, then the session closes."""
    backend = tx.LocalBackend(start_new_session=False)
    argv = ["sh", "-c", "sleep 60 & echo $$ $!; exec sleep 60"]
    orphan = 0
    try:
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(argv, grace=0) as proc:
                _, orphan = await first_line_numbers(proc)
                entered = trio.current_time()
            took = trio.current_time() - entered
            assert took < 2 * CLOSE_DRAIN_TIMEOUT
            assert proc.exit_code in (128 + signal.SIGTERM, 128 + signal.SIGKILL)
            assert pid_alive(orphan)
    finally:
        if orphan:
            os.kill(orphan, signal.SIGKILL)


def test_no_keeper_for_children_without_a_group() -> None:
    with pytest.raises(ValueError, match="kill_orphans needs start_new_session=True"):
        tx.LocalBackend(kill_orphans=True, start_new_session=False)


async def test_no_terminal_for_children_without_a_session() -> None:
    backend = tx.LocalBackend(start_new_session=False)
    with pytest.raises(ValueError, match="tty=True needs a new session"):
        async with backend.open_process(["true"], tty=True):
            pytest.fail("opened a terminal without a session")


async def test_inherited_stderr_goes_to_our_descriptor_2(capfd: pytest.CaptureFixture[str]) -> None:
    backend = tx.LocalBackend(inherit_stderr=True)
    assert backend.inherit_stderr
    assert not tx.LocalBackend().inherit_stderr
    argv = ["sh", "-c", "echo out; echo 'straight to fd 2' >&2"]
    with trio.fail_after(TIMEOUT):
        async with backend.open_process(argv) as proc:
            events = await collect(proc)
    assert [e.data for e in events if isinstance(e, tx.Output)] == [b"out\n"]
    assert not any(isinstance(e, tx.Output) and e.stream is STDERR for e in events)
    assert "straight to fd 2" in capfd.readouterr().err


async def test_inherited_stderr_leaves_a_terminal_alone() -> None:
    backend = tx.LocalBackend(inherit_stderr=True)
    with trio.fail_after(TIMEOUT):
        done = await tx.run_process(["sh", "-c", "echo err >&2"], tty=True, backend=backend)
    assert done.stdout == b"err\r\n"
