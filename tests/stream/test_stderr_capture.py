"""StderrCapture on every backend: the end of stderr, its end, a sink's held-back error;
and ProcessStream.terminated."""

from __future__ import annotations

import logging

import pytest
import trio

import trio_exec as tx
from trio_exec._stream import open_stream

from ..conformance.helpers import python
from .helpers import TIMEOUT

SCRIPT = ["sh", "-c", "printf 'first\\nsecond\\nlast' >&2; exec cat"]


async def test_the_tail_keeps_the_end_of_stderr(backend: tx.ExecBackend) -> None:
    chunks: list[bytes] = []
    capture = tx.StderrCapture(chunks.append, tail_bytes=10)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, SCRIPT, stderr=capture) as stream:
            await stream.send_eof()
            assert await stream.receive_some() == b""
            await capture.ended.wait()  # while the block runs: the session closed
    assert b"".join(chunks) == b"first\nsecond\nlast"
    assert capture.tail() == b"econd\nlast"
    assert capture.error is None


async def test_ended_is_set_when_the_session_closes(backend: tx.ExecBackend) -> None:
    capture = tx.StderrCapture(lambda data: None)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["sh", "-c", "echo x >&2; exec cat"], stderr=capture):
            assert not capture.ended.is_set()
        assert capture.ended.is_set()  # the block was left
        async with open_stream(backend, ["true"], stderr=tx.StderrCapture()) as stream:
            await stream.process.wait_closed()
    assert capture.tail() == b""  # no tail_bytes, nothing kept


async def test_a_deferred_sink_error_is_kept_and_stderr_still_flows(
    backend: tx.ExecBackend,
) -> None:
    calls: list[bytes] = []

    def explode(data: bytes) -> None:
        calls.append(data)
        raise KeyError("the sink broke")

    size = 512 * 1024  # more than a pipe holds: the child blocks unless stderr is drained
    code = f"import sys; sys.stderr.buffer.write(b'e' * {size}); sys.stderr.flush()"
    capture = tx.StderrCapture(explode, tail_bytes=4, defer_errors=True)
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, python(code), stderr=capture) as stream:
            assert await stream.process.wait() == 0
            await stream.process.wait_closed()
    assert len(calls) == 1
    assert isinstance(capture.error, KeyError)
    assert capture.tail() == b"eeee"


async def test_a_logger_capture_labels_its_lines(
    backend: tx.ExecBackend, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("tests.stream.capture")
    capture = tx.StderrCapture(logger, label="prog")
    with caplog.at_level(logging.INFO, logger=logger.name), trio.fail_after(TIMEOUT):
        async with open_stream(backend, SCRIPT, stderr=capture) as stream:
            await stream.send_eof()
            assert await stream.receive_some() == b""
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert messages == ["prog: first", "prog: second", "prog: last"]


async def test_a_capture_serves_one_stream(backend: tx.ExecBackend) -> None:
    capture = tx.StderrCapture()
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["true"], stderr=capture):
            pass
        with pytest.raises(RuntimeError, match="already serves a stream"):
            async with open_stream(backend, ["true"], stderr=capture):
                pytest.fail("one capture served two streams")


def test_bad_capture_arguments() -> None:
    with pytest.raises(TypeError, match="stderr must be"):
        tx.StderrCapture(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tail_bytes"):
        tx.StderrCapture(tail_bytes=-1)


async def test_terminated_tells_whether_aclose_signalled(backend: tx.ExecBackend) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_stream(backend, ["cat"], eof_timeout=5.0) as stream:
            await stream.aclose()
            assert not stream.terminated  # cat exited on end of file
        argv = ["sh", "-c", "trap '' TERM; exec sleep 60"]  # sleep ignores TERM too
        async with open_stream(backend, argv, eof_timeout=0.1, grace=0.1) as stream:
            await stream.aclose()
            assert stream.terminated
            assert stream.process.exit_code == 128 + 9
