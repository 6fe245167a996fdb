"""ProcessStream and open_stream on every backend: data, stderr, closing, errors, limits."""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import trio_exec as tx
from trio_exec._log import DEFAULT_RETAINED_BYTES
from trio_exec._remote import RemoteBackend, connect
from trio_exec._server import serve_websocket
from trio_exec._stream import (
    STDERR_LINE_BYTES,
    STDERR_LOGGER_NAME,
    ProcessStream,
    open_stream,
)

from .helpers import TIMEOUT

PATTERN_BYTES = 100_000


def python(code: str) -> list[str]:
    """The argv that runs ``code`` in a fresh interpreter."""
    return [sys.executable, "-c", code]


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


WRITE_PATTERN = python(
    "import random, sys\n"
    f"data = random.Random(0).randbytes({PATTERN_BYTES})\n"
    "for i in range(0, len(data), 1000):\n"
    "    sys.stdout.buffer.write(data[i : i + 1000]); sys.stdout.buffer.flush()\n"
)


async def send_until_error(stream: trio.abc.SendStream) -> None:
    """Send until ``send_all`` raises (the pipe is full and the stream is closed, or broken)."""
    while True:
        await stream.send_all(b"x" * 65536)


async def receive_until_error(stream: trio.abc.ReceiveStream) -> None:
    """Receive until ``receive_some`` raises."""
    while True:
        await stream.receive_some()


async def receive_all(stream: trio.abc.ReceiveStream, max_bytes: int | None = None) -> bytes:
    got = bytearray()
    while chunk := await stream.receive_some(max_bytes):
        got += chunk
    return bytes(got)


# -- data ----------------------------------------------------------------------------------------


async def test_cat_echoes_and_ends_with_eof(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"]) as stream:
            assert isinstance(stream, trio.abc.HalfCloseableStream)
            await stream.send_all(b"hello ")
            await stream.send_all(bytearray(b"stream"))
            await stream.send_all(memoryview(b"!"))
            await stream.send_eof()
            assert await receive_all(stream) == b"hello stream!"
            assert await stream.receive_some() == b""  # and again
            assert await stream.process.wait() == 0
        assert stream.process.exit_code == 0


async def test_large_duplex_transfer_is_lossless_and_ordered(backend: tx.ExecBackend) -> None:
    data = pattern(3 * 1024 * 1024)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"]) as stream:
            received = bytearray()

            async def sender() -> None:
                rng = random.Random(1)
                view = memoryview(data)
                while view:
                    size = rng.randint(1, 200_000)
                    await stream.send_all(view[:size])
                    view = view[size:]
                await stream.send_eof()

            async def receiver() -> None:
                received.extend(await receive_all(stream))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                nursery.start_soon(receiver)
        assert bytes(received) == data


@pytest.mark.parametrize("max_bytes", [1, 7, 4096, 100_000])
async def test_receive_some_honours_max_bytes(backend: tx.ExecBackend, max_bytes: int) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, WRITE_PATTERN) as stream:
            await stream.send_eof()
            got = bytearray()
            while chunk := await stream.receive_some(max_bytes):
                assert 1 <= len(chunk) <= max_bytes
                got += chunk
        assert bytes(got) == pattern(PATTERN_BYTES)


async def test_cancelled_receives_lose_nothing(backend: tx.ExecBackend) -> None:
    """Receives cancelled at random points never drop or repeat a byte."""
    rng = random.Random(2)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, WRITE_PATTERN) as stream:
            got = bytearray()
            while True:
                with trio.move_on_after(rng.choice([0, 0, 0.0005, 0.01])):
                    chunk = await stream.receive_some(rng.randint(1, 5000))
                    if not chunk:
                        break
                    got += chunk
        assert bytes(got) == pattern(PATTERN_BYTES)


async def test_stdout_is_replayed_from_the_start(backend: tx.ExecBackend) -> None:
    """Output written before the first receive (even before the block's first checkpoint)."""
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sh", "-c", "echo early; exec cat"]) as stream:
            await stream.process.read(wait=TIMEOUT)  # the child has written something
            await stream.send_all(b"late\n")
            await stream.send_eof()
            assert await receive_all(stream) == b"early\nlate\n"


async def test_wait_send_all_might_not_block_returns(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"]) as stream:
            with trio.testing.assert_checkpoints():
                await stream.wait_send_all_might_not_block()
            await stream.send_eof()
            with pytest.raises(trio.ClosedResourceError):
                await stream.wait_send_all_might_not_block()


# -- stderr --------------------------------------------------------------------------------------


STDERR_SCRIPT = ["sh", "-c", "echo out; printf 'line 1\\nline 2\\r\\nno newline' >&2"]


async def test_stderr_goes_to_a_callback_not_to_stdout(backend: tx.ExecBackend) -> None:
    chunks: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, STDERR_SCRIPT, stderr=chunks.append) as stream:
            await stream.send_eof()
            assert await receive_all(stream) == b"out\n"
    assert b"".join(chunks) == b"line 1\nline 2\r\nno newline"


async def test_stderr_lines_go_to_a_logger(
    backend: tx.ExecBackend, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("tests.stream.child")
    caplog.set_level(logging.INFO, logger=logger.name)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, STDERR_SCRIPT, stderr=logger) as stream:
            await receive_all(stream)
    pid = stream.process.process_id
    records = [r for r in caplog.records if r.name == logger.name]
    assert [r.getMessage() for r in records] == [
        f"{pid}: line 1",
        f"{pid}: line 2",
        f"{pid}: no newline",  # the last, unterminated line is flushed at the end
    ]
    assert all(r.levelno == logging.INFO for r in records)


async def test_stderr_defaults_to_the_stream_logger(
    backend: tx.ExecBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=STDERR_LOGGER_NAME)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sh", "-c", "echo oops >&2"]) as stream:
            assert await receive_all(stream) == b""
    messages = [r.getMessage() for r in caplog.records if r.name == "trio_exec.stream"]
    assert messages == [f"{stream.process.process_id}: oops"]


async def test_stderr_is_forwarded_while_nobody_reads_stdout(backend: tx.ExecBackend) -> None:
    seen = trio.Event()

    def on_stderr(data: bytes) -> None:
        if b"hello" in data:
            seen.set()

    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sh", "-c", "echo hello >&2; exec cat"], stderr=on_stderr):
            await seen.wait()


STDERR_FLOOD_BYTES = 2 * DEFAULT_RETAINED_BYTES
"""More stderr than a session retains: it must flow to the sink, not wait for stdout."""
FLOOD_STDOUT_BYTES = 256 * 1024
"""Stdout written between the stderr pieces: within the retention, so it waits unread."""
FLOOD_PIECES = 32

FLOOD_SCRIPT = python(
    "import random, sys\n"
    f"out = random.Random(1).randbytes({FLOOD_STDOUT_BYTES})\n"
    f"err = random.Random(2).randbytes({STDERR_FLOOD_BYTES})\n"
    f"o, e = len(out) // {FLOOD_PIECES}, len(err) // {FLOOD_PIECES}\n"
    f"for i in range({FLOOD_PIECES}):\n"
    "    sys.stdout.buffer.write(out[i * o : (i + 1) * o]); sys.stdout.buffer.flush()\n"
    "    sys.stderr.buffer.write(err[i * e : (i + 1) * e]); sys.stderr.buffer.flush()\n"
)


async def test_stderr_flows_whether_or_not_stdout_is_read(backend: tx.ExecBackend) -> None:
    """2 MiB of stderr reach the callback while nobody reads stdout; stdout stays whole."""
    expected_err = pattern(STDERR_FLOOD_BYTES, seed=2)
    err = bytearray()
    all_of_it = trio.Event()

    def on_stderr(data: bytes) -> None:
        err.extend(data)
        if len(err) >= STDERR_FLOOD_BYTES:
            all_of_it.set()

    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, FLOOD_SCRIPT, stderr=on_stderr) as stream:
            await all_of_it.wait()  # stdout not read yet
            assert bytes(err) == expected_err
            assert await receive_all(stream) == pattern(FLOOD_STDOUT_BYTES, seed=1)
            assert await stream.process.wait() == 0
    assert bytes(err) == expected_err


async def test_long_stderr_lines_are_logged_in_pieces(
    backend: tx.ExecBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=STDERR_LOGGER_NAME)
    size = 2 * STDERR_LINE_BYTES + 100
    code = f"import sys; sys.stderr.write('x' * {size}); sys.stderr.flush()"
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, python(code)) as stream:
            await receive_all(stream)
    prefix = f"{stream.process.process_id}: "
    messages = [r.getMessage() for r in caplog.records if r.name == STDERR_LOGGER_NAME]
    assert [len(m) - len(prefix) for m in messages] == [STDERR_LINE_BYTES] * 2 + [100]


async def test_a_stderr_line_cut_at_the_limit_does_not_log_an_empty_line(
    backend: tx.ExecBackend,
) -> None:
    """The child writes a line of exactly :data:`STDERR_LINE_BYTES`, and its newline only
    once the piece was logged: the newline ends that line, it makes no empty record."""
    logger = logging.getLogger("tests.stream.cut_stderr")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    messages: list[str] = []
    logged = trio.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())
            logged.set()

    handler = Collect()
    logger.addHandler(handler)
    code = (
        "import sys; err = sys.stderr; "
        f"err.write('x' * {STDERR_LINE_BYTES}); err.flush(); "
        "sys.stdin.readline(); err.write('\\nnext\\n'); err.flush()"
    )
    try:
        with trio.fail_after(TIMEOUT):
            async with open_stream(backend, python(code), stderr=logger) as stream:
                await logged.wait()
                await stream.send_all(b"go\n")
                assert await receive_all(stream) == b""
    finally:
        logger.removeHandler(handler)
    prefix = f"{stream.process.process_id}: "
    assert [m.removeprefix(prefix) for m in messages] == ["x" * STDERR_LINE_BYTES, "next"]


async def test_an_error_in_the_stderr_callback_propagates(backend: tx.ExecBackend) -> None:
    def broken(data: bytes) -> None:
        raise ValueError("bad callback")

    with trio.fail_after(TIMEOUT), pytest.raises(ValueError, match="bad callback") as info:
        async with open_stream(backend, ["sh", "-c", "echo x >&2; exec cat"], stderr=broken) as s:
            await s.receive_some()
    assert type(info.value) is ValueError  # as itself, not in an exception group


# -- closing -------------------------------------------------------------------------------------


async def test_aclose_lets_a_child_exit_on_eof(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"], eof_timeout=TIMEOUT) as stream:
            await stream.send_all(b"x")
            start = trio.current_time()
            await stream.aclose()
            assert trio.current_time() - start < TIMEOUT / 2
            assert stream.process.exit_code == 0


async def test_aclose_terminates_a_child_that_ignores_eof(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sleep", "60"], eof_timeout=0.1) as stream:
            await stream.aclose()
            assert stream.process.exit_code == 128 + 15


async def test_aclose_kills_a_child_that_ignores_sigterm(backend: tx.ExecBackend) -> None:
    argv = ["sh", "-c", "trap '' TERM; echo ready; sleep 60"]
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, argv, eof_timeout=0.05, grace=0.2) as stream:
            assert await stream.receive_some() == b"ready\n"
            await stream.aclose()
            assert stream.process.exit_code == 128 + 9


async def test_cancelled_aclose_kills_at_once(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT / 2):
        async with open_stream(backend, ["sleep", "60"], eof_timeout=60, grace=60) as stream:
            await trio.aclose_forcefully(stream)
            assert stream.process.exit_code in (128 + 9, 128 + 15)
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()


async def test_everything_raises_closed_after_aclose(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"]) as stream:
            await stream.aclose()
            await stream.aclose()  # idempotent
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"x")
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"")
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_eof()
            with pytest.raises(trio.ClosedResourceError):
                await stream.wait_send_all_might_not_block()
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()


async def test_aclose_wakes_blocked_senders_and_receivers(backend: tx.ExecBackend) -> None:
    """A child that reads nothing: send_all blocks on the full pipe, receive_some on silence."""
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sleep", "60"], eof_timeout=0) as stream:

            async def send_forever() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await send_until_error(stream)

            async def receive() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await stream.receive_some()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_forever)
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked(0.05)
                await stream.aclose()


async def test_send_side_is_one_task_at_a_time(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_stream(backend, ["sleep", "60"], eof_timeout=0) as stream,
            trio.open_nursery() as nursery,
        ):

            async def fill() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await send_until_error(stream)

            nursery.start_soon(fill)
            await trio.testing.wait_all_tasks_blocked(0.05)
            with pytest.raises(trio.BusyResourceError):
                await stream.send_all(b"y")
            with pytest.raises(trio.BusyResourceError):
                await stream.send_eof()
            with pytest.raises(trio.BusyResourceError):
                await stream.wait_send_all_might_not_block()
            await stream.aclose()


async def test_receive_side_is_one_task_at_a_time(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"]) as stream, trio.open_nursery() as nursery:
            nursery.start_soon(stream.receive_some)
            await trio.testing.wait_all_tasks_blocked(0.05)
            with pytest.raises(trio.BusyResourceError):
                await stream.receive_some()
            await stream.send_eof()


async def test_leaving_the_block_by_an_exception(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(KeyError):  # as itself, not in a group
        async with open_stream(backend, ["sleep", "60"], grace=0.1) as stream:
            raise KeyError("boom")
    assert stream.process.exit_code == 128 + 15
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


async def test_cancelling_the_block_terminates_the_child(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        with trio.move_on_after(0.2) as scope:
            async with open_stream(backend, ["sleep", "60"], grace=0.1) as stream:
                await stream.receive_some()
        assert scope.cancelled_caught
        assert stream.process.exit_code == 128 + 15


async def test_leaving_the_block_normally_closes_gracefully(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sh", "-c", "cat >/dev/null; exit 3"]) as stream:
            await stream.send_all(b"data")
        assert stream.process.exit_code == 3  # it saw EOF and exited by itself


# -- errors --------------------------------------------------------------------------------------


async def test_send_all_to_an_exited_child_is_broken(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["true"]) as stream:
            assert await stream.receive_some() == b""
            await stream.process.wait_closed()
            with pytest.raises(trio.BrokenResourceError):
                await send_until_error(stream)
            with pytest.raises(trio.BrokenResourceError):  # and it stays broken
                await stream.send_all(b"x")


async def test_spawn_errors_propagate_as_themselves(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(tx.SpawnError):
        async with open_stream(backend, ["/nonexistent/program"]):
            raise AssertionError("not reached")  # pragma: no cover


def test_bad_arguments_are_rejected_at_once() -> None:
    backend = tx.LocalBackend()
    with pytest.raises(TypeError, match="stderr"):
        open_stream(backend, ["cat"], stderr=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eof_timeout"):
        open_stream(backend, ["cat"], eof_timeout=-1)
    with pytest.raises(ValueError, match="grace"):
        open_stream(backend, ["cat"], grace=float("nan"))


async def test_receive_some_checks_max_bytes(backend: tx.ExecBackend) -> None:
    async with open_stream(backend, ["cat"]) as stream:
        for bad in (0, -1):
            with pytest.raises(ValueError, match="max_bytes"):
                await stream.receive_some(bad)
        with pytest.raises(TypeError):
            await stream.receive_some(1.5)  # type: ignore[arg-type]


@pytest.fixture
async def served_remote() -> AsyncIterator[tuple[trio.CancelScope, RemoteBackend]]:
    """A remote backend and the cancel scope of its server (cancel it to lose the server).

    The backend does not try to resume its session (``resume_deadline=0``): a lost server
    breaks it at once.
    """
    server_scope = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        with server_scope:
            await serve_websocket("127.0.0.1", 0, task_status=task_status)

    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve)
        async with connect(url, resume_deadline=0) as remote:
            yield server_scope, remote
        nursery.cancel_scope.cancel()


async def test_a_lost_connection_breaks_the_stream(
    served_remote: tuple[trio.CancelScope, RemoteBackend],
) -> None:
    server_scope, remote = served_remote
    with trio.fail_after(TIMEOUT):
        async with open_stream(remote, ["sh", "-c", "echo hi; exec cat"]) as stream:
            assert await stream.receive_some() == b"hi\n"
            server_scope.cancel()
            with pytest.raises(trio.BrokenResourceError, match="disconnected"):
                await receive_until_error(stream)
            with pytest.raises(trio.BrokenResourceError):  # stays broken
                await stream.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"x")


async def test_send_eof_without_the_close_stdin_extension(
    served_remote: tuple[trio.CancelScope, RemoteBackend],
) -> None:
    """Against a server without ``closeStdin`` (the reference), send_eof says so clearly;
    the stream keeps working and aclose terminates without waiting for an exit."""
    _, remote = served_remote
    remote.extensions = frozenset(remote.extensions - {"closeStdin"})
    with trio.fail_after(TIMEOUT / 2):
        async with open_stream(remote, ["cat"], eof_timeout=TIMEOUT) as stream:
            with pytest.raises(tx.UnsupportedOperation, match="closeStdin"):
                await stream.send_eof()
            await stream.send_all(b"still works")
            assert await stream.receive_some() == b"still works"
            await stream.aclose()
            assert stream.process.exit_code is not None


# -- wrapping a session --------------------------------------------------------------------------


async def test_process_stream_over_a_terminal(backend: tx.ExecBackend) -> None:
    """ProcessStream wraps a session opened by hand; on a terminal send_eof sends Ctrl-D."""
    with trio.fail_after(TIMEOUT):
        async with backend.open_process(["cat"], tty=True) as proc:
            stream = ProcessStream(proc)
            await stream.send_all(b"typed\n")
            got = b""
            while got.count(b"typed") < 2:  # the terminal's echo, then cat's copy
                got += await stream.receive_some()
            await stream.send_eof()
            await receive_all(stream)
            assert await proc.wait() == 0
            await stream.aclose()


def test_process_stream_checks_its_arguments() -> None:
    class NoProcess:
        def subscribe(self) -> None:  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(ValueError, match="grace"):
        ProcessStream(NoProcess(), grace=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eof_timeout"):
        ProcessStream(NoProcess(), eof_timeout=-1)  # type: ignore[arg-type]
