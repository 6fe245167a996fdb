"""ProcessStream: a process session as a :class:`trio.abc.HalfCloseableStream`."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final, final

import trio

from .._backend import DEFAULT_GRACE, ExecProcess, check_seconds
from .._errors import ConnectionLost, TrioExecError, UnsupportedOperation
from .._events import Closed, Exited, Failed, Output, OutputStream, WriteStatus
from .._log import EventSubscription

__all__ = [
    "DEFAULT_EOF_TIMEOUT",
    "KILL_TIMEOUT",
    "ProcessStream",
]

DEFAULT_EOF_TIMEOUT: Final = 2.0
"""Seconds :meth:`ProcessStream.aclose` gives the child to see its stdin closed and exit by
itself before it terminates it. The MCP stdio transport's shutdown uses the same 2 seconds."""

KILL_TIMEOUT: Final = 5.0
"""Bound, in seconds, on the shielded SIGKILL-and-wait of a cancelled
:meth:`ProcessStream.aclose` (only a remote server that stopped answering can use it up)."""


_STDOUT_STREAMS: Final = frozenset({OutputStream.STDOUT, OutputStream.PTY})
"""What :class:`ProcessStream` reads: stdout, or a terminal's merged output."""


_UNWRITABLE: Final = {WriteStatus.STDIN_CLOSED: ": Broken pipe, the child exited or closed it"}
"""What a write status other than ACCEPTED means for a stream that did not send EOF."""


def _subscribe(process: ExecProcess, streams: frozenset[OutputStream]) -> EventSubscription:
    """A new subscription to ``streams`` of ``process``'s log (closable synchronously,
    pollable)."""
    events = process.subscribe(streams=streams)
    if not isinstance(events, EventSubscription):  # pragma: no cover - every backend's is
        raise TypeError(f"{type(process).__name__}.subscribe() must return an EventSubscription")
    return events


@final
class ProcessStream(trio.abc.HalfCloseableStream):
    """A process as a byte stream: ``send_all`` feeds stdin, ``receive_some`` reads stdout.

    Usually obtained from :func:`open_stream`. It can also wrap a session opened by hand,
    which must have a writable stdin (``pipe_stdin=True``, or ``tty=True``: a terminal's
    output is then what ``receive_some`` reads)::

        async with backend.open_process(argv, pipe_stdin=True) as p:
            stream = ProcessStream(p)

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
        self._terminated = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "eof sent" if self._eof_sent else "open"
        return f"<ProcessStream {self._process.process_id!r} {state}>"

    @property
    def process(self) -> ExecProcess:
        """The process session: its ``process_id``, ``exit_code``, ``wait()``, ``signal()``..."""
        return self._process

    @property
    def terminated(self) -> bool:
        """Whether :meth:`aclose` had to terminate the child (SIGTERM, then SIGKILL after
        ``grace``) because it had not exited by itself within ``eof_timeout`` seconds."""
        return self._terminated

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
                why = _UNWRITABLE.get(status, "")
                self._send_broken = (
                    f"the child's stdin cannot be written ({status.value}{why}); "
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
            self._terminated = await proc.terminate(self._grace)
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(KILL_TIMEOUT):
                try:
                    self._terminated |= await proc.terminate(0.0)
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
