"""connect_command over a local ``python -m trio_exec serve --listen stdio``."""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import AsyncExitStack

import pytest
import trio

import trio_exec as tx
import trio_exec._command
import trio_exec._remote.connection
from trio_exec._command import STDERR_LINE_BYTES, connect_command
from trio_exec.testing import check_event_stream

from ..conformance.helpers import TIMEOUT, collect, group_alive
from .helpers import GROUP_AND_SERVER, STDIO_SERVER, first_line_numbers, pid_alive

STDOUT, STDERR = tx.OutputStream.STDOUT, tx.OutputStream.STDERR

SHORT: float = 0.2
"""Shortened timeouts, for the tests that wait for them to run out."""


def serving_after(script: str) -> list[str]:
    """A command that runs shell ``script`` and then becomes the stdio server."""
    return ["sh", "-c", f'{script}; exec "$0" "$@"', *STDIO_SERVER]


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trio_exec._command, "COMMAND_EXIT_TIMEOUT", SHORT)
    monkeypatch.setattr(trio_exec._command, "COMMAND_TERMINATE_TIMEOUT", SHORT)
    monkeypatch.setattr(trio_exec._remote.connection, "INITIALIZE_TIMEOUT", 1.0)


# -- the session ----------------------------------------------------------------------------


async def test_start_output_exit_end_to_end() -> None:
    with trio.fail_after(TIMEOUT):
        async with connect_command(STDIO_SERVER) as backend:
            assert backend.session_id
            argv = ["sh", "-c", "echo hi; echo err >&2; exit 3"]
            async with backend.open_process(argv) as proc:
                events = await collect(proc)
            async with backend.open_process(["cat"], pipe_stdin=True) as cat:
                assert await cat.write(b"through the pipe") is tx.WriteStatus.ACCEPTED
                await cat.close_stdin()
                echoed = await collect(cat)
            completed = await tx.run_process(["echo", "done"], backend=backend)
    summary = check_event_stream(
        events, expected_output={STDOUT: b"hi\n", STDERR: b"err\n"}, output_before_exit=True
    )
    assert summary.exited == tx.Exited(seq=3, exit_code=3, signal=None)
    check_event_stream(echoed, expected_output={STDOUT: b"through the pipe"})
    assert completed.stdout == b"done\n"


async def test_output_travels_as_binary_records_whole_and_in_order() -> None:
    """Our client and our stdio server agree on binaryOutput: 8 MiB of output, each chunk
    a record of raw bytes; every byte arrives, in order, beside the stderr chunks and the
    text messages around them."""
    writer = (
        "import sys\n"
        "for i in range(32):\n"
        "    sys.stdout.buffer.write(bytes([i]) * 262144)\n"
        "    sys.stderr.write(f'{i}\\n')\n"
    )
    with trio.fail_after(TIMEOUT):
        async with connect_command(STDIO_SERVER) as backend:
            assert "binaryOutput" in backend.extensions
            async with backend.open_process([sys.executable, "-c", writer]) as proc:
                events = await collect(proc)
    summary = check_event_stream(events, output_before_exit=True)
    assert summary.output[STDOUT] == b"".join(bytes([i]) * 262144 for i in range(32))
    assert summary.output[STDERR] == b"".join(f"{i}\n".encode() for i in range(32))
    assert summary.exited is not None
    assert summary.exited.exit_code == 0


async def test_leaving_the_block_ends_the_session_and_its_processes() -> None:
    """End of file on the server's stdin kills a process whose block was never left."""
    stack = AsyncExitStack()
    with trio.fail_after(TIMEOUT):
        async with connect_command(STDIO_SERVER) as backend:
            proc = await stack.enter_async_context(backend.open_process(GROUP_AND_SERVER))
            pgid, server = await first_line_numbers(proc)
            assert group_alive(pgid)
            assert pid_alive(server)
        # Only the end of file reached the server: no terminate request was sent.
        assert not group_alive(pgid)
        assert not pid_alive(server)
        await stack.aclose()  # the abandoned process block has nothing left to do


async def test_cancellation_leaves_no_process() -> None:
    with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
        async with (
            connect_command(STDIO_SERVER) as backend,
            backend.open_process(GROUP_AND_SERVER, grace=0) as proc,
        ):
            pgid, server = await first_line_numbers(proc)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not group_alive(pgid)
    assert not pid_alive(server)


async def test_cancelled_blocks_are_left_promptly() -> None:
    """The backend's RPC tasks outlive the cancellation until the process block shut
    down: its terminate request is answered at once instead of timing out."""
    with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
        async with (
            connect_command(STDIO_SERVER) as backend,
            backend.open_process(GROUP_AND_SERVER, grace=0.5) as proc,
        ):
            await first_line_numbers(proc)
            scope.cancel()
            cancelled_at = trio.current_time()
            await trio.sleep_forever()
    assert trio.current_time() - cancelled_at < 2.0


async def test_cancellation_with_an_abandoned_process_leaves_no_process() -> None:
    stack = AsyncExitStack()
    with trio.fail_after(TIMEOUT), trio.CancelScope() as scope:
        async with connect_command(STDIO_SERVER) as backend:
            proc = await stack.enter_async_context(backend.open_process(GROUP_AND_SERVER))
            pgid, server = await first_line_numbers(proc)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not group_alive(pgid)
    assert not pid_alive(server)
    await stack.aclose()


@pytest.mark.usefixtures("short_timeouts")
async def test_cancellation_during_startup_stops_the_command() -> None:
    """A command that ignores end of file and SIGTERM is killed, even when cancelled."""
    pids: list[int] = []
    scope = trio.CancelScope()

    def on_stderr(data: bytes) -> None:
        pids.append(int(data))
        scope.cancel()

    argv = ["sh", "-c", "trap '' TERM; echo $$ >&2; exec sleep 60"]  # sleep ignores TERM
    with trio.fail_after(TIMEOUT):
        with scope:
            async with connect_command(argv, stderr=on_stderr):
                pytest.fail("the command never answers initialize")
        assert scope.cancelled_caught
    assert len(pids) == 1
    assert not pid_alive(pids[0])


# -- failures -------------------------------------------------------------------------------


async def test_command_that_exits_at_once() -> None:
    argv = ["sh", "-c", "echo 'trio-exec: command not found' >&2; exit 127"]
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
        async with connect_command(argv, stderr=lambda data: None):
            pytest.fail("connected to nothing")
    message = str(caught.value)
    assert message.startswith("no exec-server session over the command's stdio (")
    # How the pipes told (end of file on its stdout, or a broken pipe when initialize is
    # written after it exited) is a race; how the command ended is not.
    assert "end of file" in message or "Broken pipe" in message
    assert "exited with code 127" in message
    assert message.endswith("its stderr ended with:\ntrio-exec: command not found")


async def test_command_that_prints_garbage() -> None:
    argv = ["sh", "-c", "echo 'Welcome to the host!'; echo 'a banner' >&2; cat >/dev/null"]
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
        async with connect_command(argv, stderr=lambda data: None):
            pytest.fail("connected to a banner")
    message = str(caught.value)
    assert "protocol error" in message
    assert "exited with code 0" in message  # cat saw end of file
    assert message.endswith("its stderr ended with:\na banner")


@pytest.mark.usefixtures("short_timeouts")
@pytest.mark.parametrize(
    ("script", "ending"),
    [
        ("exec sleep 60", "was killed by SIGTERM (sent SIGTERM"),
        ("trap '' TERM; exec sleep 60", "was killed by SIGKILL (sent SIGKILL"),
    ],
)
async def test_command_that_never_answers(script: str, ending: str) -> None:
    argv = ["sh", "-c", f"echo silent >&2; {script}"]
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
        async with connect_command(argv, stderr=lambda data: None):
            pytest.fail("connected to sleep")
    message = str(caught.value)
    assert "no answer to initialize within 1.0 s" in message
    assert ending in message
    assert message.endswith("its stderr ended with:\nsilent")


async def test_inherited_stderr_is_not_in_the_message() -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
        async with connect_command(["sh", "-c", "exit 5"]):
            pytest.fail("connected to nothing")
    assert str(caught.value).endswith(
        "exited with code 5; its stderr went to this process's stderr"
    )


async def test_missing_command() -> None:
    with pytest.raises(tx.ConnectionLost, match="cannot run the command no-such-command-x"):
        async with connect_command(["no-such-command-x", "serve"]):
            pytest.fail("ran a missing command")


async def test_empty_argv() -> None:
    with pytest.raises(ValueError, match="empty"):
        async with connect_command([]):
            pytest.fail("ran nothing")


async def test_server_dying_mid_session_fails_with_its_story() -> None:
    chunks: list[bytes] = []
    argv = serving_after("echo 'about to serve' >&2")
    pgid = 0
    try:
        with trio.fail_after(TIMEOUT):
            async with (
                connect_command(argv, stderr=chunks.append) as backend,
                backend.open_process(GROUP_AND_SERVER) as proc,
            ):
                pgid, server = await first_line_numbers(proc)
                os.kill(server, signal.SIGKILL)
                events = await collect(proc)
                with pytest.raises(tx.ConnectionLost) as caught:
                    await tx.run_process(["true"], backend=backend)
    finally:
        if pgid and group_alive(pgid):  # a killed server leaves its processes behind
            os.killpg(pgid, signal.SIGKILL)
    failed = events[-1]
    assert isinstance(failed, tx.Failed), events
    for message in (failed.message, str(caught.value)):
        assert message.startswith("exec-server transport disconnected: ")
        assert "was killed by SIGKILL; its stderr ended with:\nabout to serve" in message


# -- stderr and environment -----------------------------------------------------------------


async def test_stderr_callback_gets_the_commands_stderr_and_env_is_passed() -> None:
    chunks: list[bytes] = []
    argv = serving_after('echo "hello from $WHO" >&2')
    env = {**os.environ, "WHO": "the command"}
    with trio.fail_after(TIMEOUT):
        async with connect_command(argv, env=env, stderr=chunks.append) as backend:
            await tx.run_process(["true"], backend=backend)
    assert b"".join(chunks).startswith(b"hello from the command\n")


async def test_stderr_logger_gets_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.transports.command")
    argv = serving_after("printf 'one\\ntwo\\n' >&2")
    with caplog.at_level(logging.INFO, logger=logger.name), trio.fail_after(TIMEOUT):
        async with connect_command(argv, stderr=logger):
            pass
        argv = ["sh", "-c", "printf 'unterminated' >&2"]
        with pytest.raises(tx.ConnectionLost):
            async with connect_command(argv, stderr=logger):
                pass
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert messages[:2] == ["sh: one", "sh: two"]
    assert messages[-1] == "sh: unterminated"
    assert {r.levelno for r in caplog.records if r.name == logger.name} == {logging.INFO}


async def test_a_flood_of_stderr_never_blocks_the_command() -> None:
    size = 4 * 1024 * 1024  # far more than a pipe holds
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)

    argv = serving_after(f"head -c {size} /dev/zero >&2")
    with trio.fail_after(TIMEOUT):
        async with connect_command(argv, stderr=count) as backend:
            code = f"import os\nos.write(2, bytes({size}))"
            completed = await tx.run_process([sys.executable, "-c", code], backend=backend)
    assert received == size
    assert len(completed.stderr) == size


async def test_a_failing_stderr_callback_is_raised_once_the_command_is_reaped() -> None:
    def explode(data: bytes) -> None:
        raise KeyError("the callback broke")

    argv = serving_after("echo 'a line for the callback' >&2")
    numbers: list[int] = []

    async def session() -> None:
        # The session goes on: stderr is still drained, only no longer delivered.
        async with (
            connect_command(argv, stderr=explode) as backend,
            backend.open_process(GROUP_AND_SERVER) as proc,
        ):
            numbers.extend(await first_line_numbers(proc))

    with trio.fail_after(TIMEOUT), pytest.raises(KeyError, match="the callback broke"):
        await session()
    pgid, server = numbers
    assert not group_alive(pgid)
    assert not pid_alive(server)


async def test_a_long_stderr_line_in_one_chunk_is_logged_in_pieces() -> None:
    logger = logging.getLogger("tests.command.long_stderr")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    capture = tx.StderrCapture(logger, label="cmd", defer_errors=True)
    try:
        capture._feed(b"x" * (STDERR_LINE_BYTES + 10) + b"\r\nend\r")
        capture._finish()
    finally:
        logger.removeHandler(handler)
    assert messages == [f"cmd: {'x' * STDERR_LINE_BYTES}", f"cmd: {'x' * 10}", "cmd: end"]
    assert capture.error is None


async def test_the_command_runs_in_our_process_group() -> None:
    """So that a terminal's Ctrl-C reaches ``ssh`` too."""
    pids: list[int] = []
    argv = serving_after("echo $$ >&2")
    with trio.fail_after(TIMEOUT):
        async with connect_command(argv, stderr=lambda data: pids.append(int(data))):
            assert os.getpgid(pids[0]) == os.getpgrp()
    assert not pid_alive(pids[0])
