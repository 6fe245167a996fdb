"""Processes as byte streams: :func:`open_stream`, :class:`ProcessStream`, :class:`LineReader`.

Theory of operation
-------------------
A :class:`ProcessStream` is a :class:`trio.abc.HalfCloseableStream` over a process session
started with a piped stdin. Writing goes to the child's stdin (:meth:`ExecProcess.write`);
reading comes from a subscription to the session's events, so stdout arrives in ``seq``
order with nothing lost or duplicated, exactly as the events carry it. The child's stdout
end of file is the session's ``Closed`` event: the child exited and every output pipe
reached end of file. A ``Failed`` event (a remote session broke) makes the receive side
raise :class:`trio.BrokenResourceError`. The subscription wants stdout (or the terminal)
only, so a stream nobody reads holds back the child's stdout and nothing else.

:func:`open_stream` owns the session: the stream is valid inside its ``async with`` block,
and leaving the block always leaves no process behind. Closing the stream
(:meth:`ProcessStream.aclose`) follows the MCP stdio shutdown sequence, which is also what
trio's graceful close means for a pipe: close stdin, give the child
:data:`DEFAULT_EOF_TIMEOUT` seconds to exit by itself, then terminate it (SIGTERM, SIGKILL
after ``grace``). A cancelled close kills the child at once. A second subscription, to
stderr only and read by a task of the block, hands the child's stderr to a callback or a
logger as it arrives, whether or not stdout is being read.

Why a context manager and not a plain ``await open_stream(...)``: a session runs tasks in a
nursery (the local pumps and reaper), and a Trio nursery must be left by the task that
entered it, in nesting order. A stream that owned its session could then only be closed by
the task that opened it, and only in reverse order of opening; trio's stream contract lets
any task close a stream. So the block owns the session and ``aclose`` only stops the child.

:class:`LineReader` splits any :class:`trio.abc.ReceiveStream` into lines, for JSON-lines
protocols such as MCP stdio: one message per line, a bounded line length.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Final, TypeAlias

import trio

from ._backend import DEFAULT_GRACE, Arg, ExecBackend, ExecProcess, check_seconds
from ._errors import ConnectionLost, TrioExecError, UnsupportedOperation
from ._events import Closed, Exited, Failed, Output, OutputStream, WriteStatus
from ._log import DEFAULT_RETAINED_BYTES, EventSubscription
from ._util import open_service_nursery

__all__ = [
    "DEFAULT_EOF_TIMEOUT",
    "KILL_TIMEOUT",
    "LINE_RECEIVE_BYTES",
    "MAX_LINE_BYTES",
    "STDERR_LINE_BYTES",
    "STDERR_LOGGER_NAME",
    "LineReader",
    "LineTooLongError",
    "ProcessStream",
    "StderrSink",
    "open_stream",
]

DEFAULT_EOF_TIMEOUT: Final = 2.0
"""Seconds :meth:`ProcessStream.aclose` gives the child to see its stdin closed and exit by
itself before it terminates it. The MCP stdio transport's shutdown uses the same 2 seconds."""

KILL_TIMEOUT: Final = 5.0
"""Bound, in seconds, on the shielded SIGKILL-and-wait of a cancelled
:meth:`ProcessStream.aclose` (only a remote server that stopped answering can use it up)."""

STDERR_LOGGER_NAME: Final = "trio_exec.stream"
"""The logger that receives the child's stderr lines when no ``stderr`` sink is given."""

STDERR_LINE_BYTES: Final = 64 * 1024
"""Longest stderr line logged as one record; a longer line is logged in pieces of this size."""

MAX_LINE_BYTES: Final = 1024 * 1024
"""Default bound on a line of :class:`LineReader` (1 MiB), not counting ``\\n`` or ``\\r\\n``."""

LINE_RECEIVE_BYTES: Final = 64 * 1024
"""Default ``max_bytes`` of each ``receive_some`` call of :class:`LineReader`."""

StderrSink: TypeAlias = Callable[[bytes], None] | logging.Logger | None
"""Where :func:`open_stream` sends the child's stderr: a callback that gets each chunk as
it arrives, a logger that gets each line (INFO), or None for the logger named
:data:`STDERR_LOGGER_NAME`."""


_STDOUT_STREAMS: Final = frozenset({OutputStream.STDOUT, OutputStream.PTY})
"""What :class:`ProcessStream` reads: stdout, or a terminal's merged output."""

_STDERR_STREAMS: Final = frozenset({OutputStream.STDERR})
"""What :func:`open_stream` forwards to its ``stderr`` sink."""


def _subscribe(process: ExecProcess, streams: frozenset[OutputStream]) -> EventSubscription:
    """A new subscription to ``streams`` of ``process``'s log (closable synchronously,
    pollable)."""
    events = process.subscribe(streams=streams)
    if not isinstance(events, EventSubscription):  # pragma: no cover - every backend's is
        raise TypeError(f"{type(process).__name__}.subscribe() must return an EventSubscription")
    return events


class ProcessStream(trio.abc.HalfCloseableStream):
    """A process as a byte stream: ``send_all`` feeds stdin, ``receive_some`` reads stdout.

    Usually obtained from :func:`open_stream`. It can also wrap a session opened by hand,
    which must have a writable stdin (``pipe_stdin=True``, or ``tty=True``: a terminal's
    output is then what ``receive_some`` reads)::

        async with backend.open_process(argv, pipe_stdin=True) as proc:
            stream = ProcessStream(proc)

    Build it before the first checkpoint after the block is entered, or output that was
    already evicted from the session's retained log is missed. The child's stderr is not
    read by the stream (:func:`open_stream` forwards it).

    The usual trio stream rules hold: one task at a time may use the send side
    (``send_all``, ``wait_send_all_might_not_block``, ``send_eof``) and one the receive side,
    or :class:`trio.BusyResourceError` is raised; after :meth:`aclose` every method raises
    :class:`trio.ClosedResourceError`, and a task blocked in one is woken with it.

    Args:
        process: the session to wrap.
        grace: seconds between SIGTERM and SIGKILL when :meth:`aclose` terminates the child.
        eof_timeout: seconds :meth:`aclose` gives the child to see its stdin closed and
            exit by itself before terminating it.
    """

    def __init__(
        self,
        process: ExecProcess,
        *,
        grace: float = DEFAULT_GRACE,
        eof_timeout: float = DEFAULT_EOF_TIMEOUT,
    ) -> None:
        check_seconds("grace", grace)
        check_seconds("eof_timeout", eof_timeout)
        self._process: Final = process
        self._grace: Final = grace
        self._eof_timeout: Final = eof_timeout
        # Stdout only: a reader that stops reading holds back stdout, not stderr.
        self._stdout = _subscribe(process, _STDOUT_STREAMS)
        # Receive side: the current chunk and how much of it was returned.
        self._chunk = b""
        self._offset = 0
        self._at_eof = False
        self._failure: str | None = None
        self._receiving = False
        self._receive_scope: trio.CancelScope | None = None
        # Send side.
        self._sending = False
        self._send_scope: trio.CancelScope | None = None
        self._eof_sent = False
        self._send_broken: str | None = None
        # Closing.
        self._closed = False
        self._close_done = trio.Event()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "eof sent" if self._eof_sent else "open"
        return f"<ProcessStream {self._process.process_id!r} {state}>"

    @property
    def process(self) -> ExecProcess:
        """The process session: its ``process_id``, ``exit_code``, ``wait()``, ``signal()``..."""
        return self._process

    # -- send side -------------------------------------------------------------------------

    def _enter_send(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is using this stream's send side")
        self._sending = True

    def _check_sendable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called: stdin is closed")
        if self._send_broken is not None:
            raise trio.BrokenResourceError(self._send_broken)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the child's stdin; return once the session accepted all of it.

        A child that does not read makes this wait once its stdin pipe is full
        (backpressure).

        Raises:
            trio.BrokenResourceError: the child's stdin is gone (it exited or closed it), or
                the session broke (the connection to a remote server was lost). The send
                side stays broken.
            trio.ClosedResourceError: the stream was closed, before or during the call, or
                :meth:`send_eof` was called.
            trio.BusyResourceError: another task is using the send side.

        **Cancellation:** part of ``data`` may have been written; the stream then holds an
        unknown amount of it, as with any trio stream.
        """
        payload = data if type(data) is bytes else bytes(memoryview(data))
        self._enter_send()
        try:
            await trio.lowlevel.checkpoint()
            self._check_sendable()
            if not payload:
                return
            status = await self._call_send_side(partial(self._process.write, payload))
            if status is not WriteStatus.ACCEPTED:
                self._send_broken = (
                    f"the child's stdin cannot be written ({status.value}); "
                    f"process {self._process.process_id!r}"
                )
                raise trio.BrokenResourceError(self._send_broken)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Return at once: whether the child's stdin pipe has room is not known in advance.

        Raises:
            trio.ClosedResourceError: the stream was closed or :meth:`send_eof` was called.
            trio.BusyResourceError: another task is using the send side.

        **Cancellation:** nothing to undo.
        """
        self._enter_send()
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed")
            if self._eof_sent:
                raise trio.ClosedResourceError("send_eof() was called: stdin is closed")
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Close the child's stdin, so that it reads end of file; idempotent.

        On a terminal this sends the EOF character (Ctrl-D). After it, ``send_all`` raises
        :class:`trio.ClosedResourceError`; receiving is unaffected.

        Raises:
            UnsupportedOperation: the session cannot close stdin: a remote server without
                the ``closeStdin`` extension (the reference ``codex exec-server`` 0.169).
                Nothing changed; :meth:`aclose` still works (it terminates the child).
            trio.BrokenResourceError: the session is gone or broke.
            trio.ClosedResourceError: the stream was closed.
            trio.BusyResourceError: another task is using the send side.

        **Cancellation:** stdin may or may not be closed; a later ``send_eof`` makes sure.
        """
        self._enter_send()
        try:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the stream was closed")
            if self._eof_sent:
                await trio.lowlevel.checkpoint()
                return
            status = await self._call_send_side(self._process.close_stdin)
            if status in (WriteStatus.ACCEPTED, WriteStatus.STDIN_CLOSED):
                self._eof_sent = True
            else:
                raise trio.BrokenResourceError(
                    f"stdin of process {self._process.process_id!r} cannot be closed "
                    f"({status.value})"
                )
        finally:
            self._sending = False

    async def _call_send_side(self, operation: Callable[[], Awaitable[WriteStatus]]) -> WriteStatus:
        """Run a send-side operation that :meth:`aclose` can interrupt."""
        status: WriteStatus | None = None
        with trio.CancelScope() as scope:
            self._send_scope = scope
            try:
                status = await operation()
            except ConnectionLost as exc:
                self._send_broken = str(exc)
                raise trio.BrokenResourceError(str(exc)) from exc
            finally:
                self._send_scope = None
        if status is None:  # aclose cancelled the scope
            raise trio.ClosedResourceError("the stream was closed during the call")
        return status

    # -- receive side ----------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return the next bytes of the child's stdout, at most ``max_bytes`` of them.

        Bytes come in the order the child wrote them, none lost or repeated. Without
        ``max_bytes`` the rest of the current output chunk is returned. Returns ``b""``
        once the session is closed (the child exited and its output reached end of file)
        and everything before was returned.

        Raises:
            trio.BrokenResourceError: the session broke (a remote connection was lost);
                raised again by every later call.
            trio.ClosedResourceError: the stream was closed, before or during the call.
            trio.BusyResourceError: another task is receiving.
            ValueError: ``max_bytes`` is below 1.
            TypeError: ``max_bytes`` is not an integer.

        **Cancellation:** no data is lost: what was not returned is returned by the next
        call.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed")
            if self._offset >= len(self._chunk) and not self._at_eof and self._failure is None:
                await self._fill()
            if self._offset < len(self._chunk):
                end = len(self._chunk) if max_bytes is None else self._offset + max_bytes
                data = self._chunk[self._offset : end]
                self._offset += len(data)
                return data
            if self._failure is not None:
                raise trio.BrokenResourceError(
                    f"the session of process {self._process.process_id!r} broke: {self._failure}"
                )
            return b""
        finally:
            self._receiving = False

    async def _fill(self) -> None:
        """Receive events until a stdout chunk, the end, or a failure; :meth:`aclose` wakes it."""
        with trio.CancelScope() as scope:
            self._receive_scope = scope
            try:
                while True:
                    try:
                        event = await self._stdout.receive()
                    except trio.EndOfChannel:
                        self._at_eof = True
                        return
                    except trio.ClosedResourceError:
                        break
                    match event:
                        case Output(stream=OutputStream.STDOUT | OutputStream.PTY, data=data):
                            self._chunk = data
                            self._offset = 0
                            return
                        case Closed():
                            self._at_eof = True
                            return
                        case Failed(message=message):
                            self._failure = message
                            return
                        case Output() | Exited():
                            pass  # not subscribed to other streams; the exit is not data
                        case _:  # pragma: no cover - the subscription yields only events
                            raise AssertionError(f"unexpected event {event!r}")
            finally:
                self._receive_scope = None
        raise trio.ClosedResourceError("the stream was closed during receive_some")

    # -- closing ---------------------------------------------------------------------------

    def _mark_closed(self) -> bool:
        """Close synchronously: wake blocked callers, release the log. False if closed."""
        if self._closed:
            return False
        self._closed = True
        self._stdout.close()
        for scope in (self._send_scope, self._receive_scope):
            if scope is not None:
                scope.cancel()
        return True

    async def aclose(self) -> None:
        """Close the stream and stop the child; idempotent.

        Unless the child already exited: close its stdin and let the child exit by itself,
        both within ``eof_timeout`` seconds, then terminate it (SIGTERM to its process group,
        SIGKILL after ``grace``) and wait for its exit. A remote server that cannot close
        stdin skips the wait. Tasks blocked in another method of the stream are woken with
        :class:`trio.ClosedResourceError`. The child is reaped, and what is left of its
        process group killed, when the :func:`open_stream` block (or the process block of
        a wrapped session) is left.

        **Cancellation:** the stream is closed, and the child is killed (SIGKILL, shielded,
        at most :data:`KILL_TIMEOUT` seconds) before Cancelled propagates.
        """
        if not self._mark_closed():
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._stop_child()
        finally:
            self._close_done.set()

    async def _stop_child(self) -> None:
        proc = self._process
        try:
            # Closing stdin is bounded too: a remote server performs it after the writes
            # before it, and one of them may wait on a child that does not read.
            with trio.move_on_after(self._eof_timeout):
                try:
                    if proc.exit_code is None:
                        if not self._eof_sent:
                            await proc.close_stdin()
                        await proc.wait()
                except UnsupportedOperation:
                    pass  # a server without closeStdin: terminate without the wait
            await proc.terminate(self._grace)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(KILL_TIMEOUT):
                try:
                    await proc.terminate(0.0)
                except TrioExecError:
                    pass
            raise
        except TrioExecError:
            pass  # the session broke: there is nothing left to stop from here
        await trio.lowlevel.checkpoint()

    def _abandon(self) -> None:
        """Close synchronously when the owning block is left by an exception."""
        self._mark_closed()
        self._close_done.set()


# -- open_stream -------------------------------------------------------------------------------


class _StderrForwarder:
    """Hands the child's stderr to a callback (chunks) or a logger (lines)."""

    def __init__(self, events: EventSubscription, sink: StderrSink, process_id: str) -> None:
        self._events = events
        self._process_id = process_id
        self._line = bytearray()
        if sink is None:
            sink = logging.getLogger(STDERR_LOGGER_NAME)
        self._logger: logging.Logger | None = sink if isinstance(sink, logging.Logger) else None
        self._callback: Callable[[bytes], None] | None = (
            None if isinstance(sink, logging.Logger) else sink
        )

    async def run(self) -> None:
        try:
            async for event in self._events:
                self._handle(event)
        except trio.ClosedResourceError:
            pass

    def finish(self) -> None:
        """Forward what is still in the log, then the last unterminated line."""
        events = self._events
        try:
            while True:
                self._handle(events.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass
        events.close()
        if self._line:
            self._log_line(bytes(self._line))
            self._line.clear()

    def _handle(self, event: object) -> None:
        if not isinstance(event, Output) or event.stream is not OutputStream.STDERR:
            return
        if self._callback is not None:
            self._callback(event.data)
            return
        line = self._line
        line += event.data
        start = 0
        while True:
            end = line.find(b"\n", start)
            if end < 0:
                break
            self._log_line(bytes(line[start:end]))
            start = end + 1
        del line[:start]
        while len(line) >= STDERR_LINE_BYTES:
            self._log_line(bytes(line[:STDERR_LINE_BYTES]))
            del line[:STDERR_LINE_BYTES]

    def _log_line(self, raw: bytes) -> None:
        assert self._logger is not None
        text = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        self._logger.info("%s: %s", self._process_id, text)


def open_stream(
    backend: ExecBackend,
    argv: Sequence[Arg],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    stderr: StderrSink = None,
    grace: float = DEFAULT_GRACE,
    eof_timeout: float = DEFAULT_EOF_TIMEOUT,
    process_id: str | None = None,
    retain_bytes: int = DEFAULT_RETAINED_BYTES,
) -> AbstractAsyncContextManager[ProcessStream]:
    """Start ``argv`` with piped stdin on ``backend`` and yield it as a :class:`ProcessStream`.

    ``send_all`` writes to its stdin, ``receive_some`` reads its stdout, ``send_eof``
    closes its stdin and ``aclose`` stops it; local and remote backends alike::

        async with open_stream(backend, ["cat"]) as stream:
            await stream.send_all(b"hello")
            await stream.send_eof()
            assert await stream.receive_some() == b"hello"

    Args:
        backend: where to run the child.
        argv, cwd, env, process_id, retain_bytes: as for :meth:`ExecBackend.open_process`.
        stderr: where the child's stderr goes, as it arrives: a callable gets every chunk
            (it must not block, and an exception it raises cancels the block and
            propagates); a :class:`logging.Logger` gets every line at INFO level, as
            ``"<process id>: <line>"`` (decoded as UTF-8 with replacement, lines above
            :data:`STDERR_LINE_BYTES` split); None (the default) is the logger
            :data:`STDERR_LOGGER_NAME`. Stderr flows to it whether or not stdout is read:
            an unread stdout holds back only the child's writes to stdout.
        grace: seconds between SIGTERM and SIGKILL when the child is terminated.
        eof_timeout: seconds ``aclose`` gives the child to see its stdin closed and exit
            by itself (see :meth:`ProcessStream.aclose`).

    Raises:
        SpawnError: the program could not be started.
        ValueError, TypeError: bad arguments.

    Leaving the block normally closes the stream (:meth:`ProcessStream.aclose`: stdin
    closed, ``eof_timeout`` for the child to exit, then terminate). Leaving it by an
    exception closes the stream at once and terminates the child (SIGTERM, SIGKILL after
    ``grace``). Either way the child is reaped and what is left of its process group
    killed: no process is left behind. The stream must not be used after the block.

    **Cancellation:** as for an exception: the child is terminated and reaped before
    Cancelled propagates.
    """
    if not (stderr is None or isinstance(stderr, logging.Logger) or callable(stderr)):
        raise TypeError(f"stderr must be a callable, a logging.Logger or None, not {stderr!r}")
    check_seconds("grace", grace)
    check_seconds("eof_timeout", eof_timeout)
    return _open_stream(
        backend,
        argv,
        cwd=cwd,
        env=env,
        stderr=stderr,
        grace=grace,
        eof_timeout=eof_timeout,
        process_id=process_id,
        retain_bytes=retain_bytes,
    )


@asynccontextmanager
async def _open_stream(
    backend: ExecBackend,
    argv: Sequence[Arg],
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    stderr: StderrSink,
    grace: float,
    eof_timeout: float,
    process_id: str | None,
    retain_bytes: int,
) -> AsyncIterator[ProcessStream]:
    body_error: BaseException | None = None
    forwarder: _StderrForwarder | None = None
    async with open_service_nursery() as nursery:  # a failing stderr callback as itself
        try:
            async with backend.open_process(
                argv,
                cwd=cwd,
                env=env,
                pipe_stdin=True,
                process_id=process_id,
                grace=grace,
                retain_bytes=retain_bytes,
            ) as proc:
                # Both subscriptions are taken before the first checkpoint: nothing is missed.
                stream = ProcessStream(proc, grace=grace, eof_timeout=eof_timeout)
                forwarder = _StderrForwarder(
                    _subscribe(proc, _STDERR_STREAMS), stderr, proc.process_id
                )
                nursery.start_soon(forwarder.run)
                try:
                    yield stream
                except BaseException:
                    stream._abandon()
                    raise
                await stream.aclose()
        except BaseException as exc:  # re-raised below, after the nursery closed
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if forwarder is not None:
        forwarder.finish()
    if body_error is not None:
        try:
            raise body_error
        finally:
            body_error = None


# -- lines -------------------------------------------------------------------------------------


class LineTooLongError(TrioExecError, ValueError):
    """A line exceeded the :class:`LineReader`'s ``max_line_bytes``.

    The reader stays usable: the rest of the offending line is skipped, and the next
    ``receive`` returns the line after it.
    """

    def __init__(self, max_line_bytes: int) -> None:
        super().__init__(f"a line is longer than {max_line_bytes} bytes")
        self.max_line_bytes = max_line_bytes
        """The bound that was exceeded."""


class LineReader(trio.abc.ReceiveChannel[bytes]):
    """Splits a :class:`trio.abc.ReceiveStream` into lines: one message per line.

    ``receive()`` returns the next line without its terminator: ``\\n``, or ``\\r\\n``
    (a lone ``\\r`` elsewhere is kept). At end of stream, a final line without a
    terminator is returned too (``b"x"`` at the end gives ``b"x"``, a trailing ``\\r``
    stripped), then :class:`trio.EndOfChannel` is raised, by every later call as well.
    ``async for line in reader`` iterates until then. Empty lines are returned as ``b""``.

    A line longer than ``max_line_bytes`` (not counting its terminator) raises
    :class:`LineTooLongError` as soon as it is known to be too long, without waiting for
    its end; the rest of it is then skipped. Memory is bounded by ``max_line_bytes`` plus
    ``receive_bytes``.

    Errors of the underlying stream propagate. ``aclose`` closes the underlying stream.

    Args:
        stream: where the bytes come from (a :class:`ProcessStream`, a socket, ...).
        max_line_bytes: the longest line accepted (default :data:`MAX_LINE_BYTES`).
        receive_bytes: ``max_bytes`` of each ``receive_some`` (default
            :data:`LINE_RECEIVE_BYTES`).
    """

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        receive_bytes: int = LINE_RECEIVE_BYTES,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, not {max_line_bytes}")
        if receive_bytes < 1:
            raise ValueError(f"receive_bytes must be >= 1, not {receive_bytes}")
        self.stream: Final = stream
        """The underlying stream."""
        self.max_line_bytes: Final = max_line_bytes
        """The longest line accepted, without its terminator."""
        self._receive_bytes = receive_bytes
        self._buffer = bytearray()
        self._start = 0  # the buffer before this index was consumed
        self._scanned = 0  # no b"\n" between _start and this index
        self._skipping = False  # dropping the rest of a line that was too long
        self._at_eof = False
        self._receiving = False

    async def receive(self) -> bytes:
        """Return the next line, without its ``\\n`` or ``\\r\\n``.

        Raises:
            trio.EndOfChannel: the stream ended and every line was returned.
            LineTooLongError: the next line exceeds ``max_line_bytes``; it is skipped.
            trio.BusyResourceError: another task is receiving.

        **Cancellation:** nothing is lost: bytes received but not returned yet are kept
        for the next call.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving lines")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            while True:
                line = self._next_line()
                if line is not None:
                    return line
                if self._at_eof:
                    return self._final_line()
                data = await self.stream.receive_some(self._receive_bytes)
                if data:
                    self._buffer += data
                else:
                    self._at_eof = True
        finally:
            self._receiving = False

    def _consume(self, end: int) -> None:
        """Drop the buffer up to ``end``, compacting it once half of it is consumed."""
        self._start = self._scanned = end
        if self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = self._scanned = 0

    def _next_line(self) -> bytes | None:
        buffer = self._buffer
        if self._skipping:
            end = buffer.find(b"\n", self._start)
            if end < 0:
                self._consume(len(buffer))
                return None
            self._consume(end + 1)
            self._skipping = False
        end = buffer.find(b"\n", self._scanned)
        if end >= 0:
            line = bytes(buffer[self._start : end])
            self._consume(end + 1)
            line = line.removesuffix(b"\r")
            if len(line) > self.max_line_bytes:
                raise LineTooLongError(self.max_line_bytes)
            return line
        self._scanned = len(buffer)
        pending = len(buffer) - self._start
        # One byte more may be the \r of a \r\n terminator.
        if pending > self.max_line_bytes and not (
            pending == self.max_line_bytes + 1 and buffer[-1] == ord("\r")
        ):
            self._consume(len(buffer))
            self._skipping = True
            raise LineTooLongError(self.max_line_bytes)
        return None

    def _final_line(self) -> bytes:
        if self._skipping or self._start == len(self._buffer):
            self._consume(len(self._buffer))
            self._skipping = False
            raise trio.EndOfChannel
        line = bytes(self._buffer[self._start :]).removesuffix(b"\r")
        self._consume(len(self._buffer))
        if len(line) > self.max_line_bytes:  # pragma: no cover - caught when it arrived
            raise LineTooLongError(self.max_line_bytes)
        return line

    async def aclose(self) -> None:
        """Close the underlying stream.

        **Cancellation:** as for the stream's ``aclose`` (a trio stream is closed even
        then).
        """
        await self.stream.aclose()
