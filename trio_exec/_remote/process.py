"""RemoteProcess: one process on an exec server, its calls, and the end of its block."""

from __future__ import annotations

import itertools
import math
import signal as _signal
import uuid
from typing import TYPE_CHECKING, Final, TypeVar, final

import trio

from .._backend import DEFAULT_GRACE, ExecProcess, check_dimensions, check_seconds
from .._errors import ConnectionLost, TrioExecError, UnsupportedOperation
from .._events import ReadResult, WriteStatus
from .._log import ProcessLog
from .._protocol import (
    CloseStdinParams,
    CloseStdinResult,
    Extension,
    ProcessSignal,
    ReadParams,
    RequestParams,
    ResizeParams,
    ResizeResult,
    SignalParams,
    SignalResult,
    TerminateParams,
    TerminateResult,
    WriteParams,
    WriteResult,
)
from .route import _Route
from .rpc import CLOSE_TIMEOUT

if TYPE_CHECKING:
    from .backend import RemoteBackend

__all__ = ["SHUTDOWN_TIMEOUT", "WRITE_CHUNK_BYTES", "RemoteProcess"]

SHUTDOWN_TIMEOUT: Final = 5.0
"""Seconds that leaving a process block waits, after the terminate request (and after the
grace when the server terminates gracefully), for the server to report the exit and the
end of output. When it passes, the process's log fails and the block is left anyway."""

WRITE_CHUNK_BYTES: Final = 1024 * 1024
"""Largest ``process/write`` payload (1 MiB, about 1.4 MB of base64); a larger
:meth:`RemoteProcess.write` is sent as several requests, in order."""

_R = TypeVar("_R")


@final
class RemoteProcess(ExecProcess):
    """A process running on an exec server; see :class:`ExecProcess`.

    Obtained from :meth:`RemoteBackend.open_process`, never built directly.

    * :meth:`read` is answered from the local log, which holds what the server pushed
      (``process/read`` is never sent): no round trip, the same semantics as a local
      process, and ``first_retained_seq`` is always known.
    * :meth:`write` sends ``process/write`` with a fresh ``writeId`` per request; a write
      that got no answer when the connection broke is sent again, with the same id, once
      the session is resumed (the server writes it once). After a connection loss that is
      not resumed it raises :class:`ConnectionLost`; after the block was left it returns
      ``UNKNOWN_PROCESS`` (no request is sent).
    * :meth:`close_stdin` needs the ``closeStdin`` extension; :meth:`resize` needs
      ``resize``; :meth:`signal` with anything but SIGINT needs ``signals``. Without them
      they raise :class:`UnsupportedOperation` (the reference server has none of them;
      on a terminal, ``write(b"\\x04")`` ends a read like Ctrl-D).
    * :meth:`terminate` uses ``graceMs`` when the server supports ``gracefulTerminate``;
      otherwise the server kills the process group at once and ``grace`` is ignored.
    * Every operation raises :class:`ConnectionLost` once the connection is broken for
      good, or once this process could not be recovered after a resume. While the session
      is being resumed, operations wait for it; see the package docstring for which calls
      in flight at the break are sent again.
    """

    def __init__(
        self,
        process_id: str,
        backend: RemoteBackend,
        log: ProcessLog,
        route: _Route,
        *,
        tty: bool,
    ) -> None:
        super().__init__(process_id, log)
        self._tty: Final = tty
        self._backend = backend
        self._route = route
        self._write_lock = trio.Lock()
        self._write_prefix = uuid.uuid4().hex[:12]
        self._write_counter = itertools.count(1)

    @property
    def tty(self) -> bool:
        """See :attr:`ExecProcess.tty`."""
        return self._tty

    @property
    def backend(self) -> RemoteBackend:
        """The backend (connection) this process runs on."""
        return self._backend

    def _new_write_id(self) -> str:
        return f"{self._write_prefix}-{next(self._write_counter)}"

    async def _check(self) -> None:
        """Raise :class:`ConnectionLost`, after a checkpoint, if the connection broke for
        good or this process was lost; return at once (no checkpoint) otherwise."""
        lost = self._backend.failure
        if lost is None:
            lost = self._route.lost
        if lost is not None:
            await trio.lowlevel.checkpoint()
            raise ConnectionLost(lost)

    async def _call(self, params: RequestParams, result_type: type[_R], *, resend: bool) -> _R:
        return await self._backend._call(params, result_type, resend=resend, route=self._route)

    async def _server_read(
        self, after_seq: int = 0, max_bytes: int | None = None, wait: float = 0.0
    ) -> ReadResult:
        """Ask the server itself (``process/read``); for diagnostics and tests.

        Beware: the reference server processes one request at a time per connection, so a
        long-poll blocks every other call on the connection until it returns.
        """
        params = ReadParams(
            process_id=self.process_id,
            after_seq=after_seq,
            max_bytes=max_bytes,
            wait_ms=math.ceil(wait * 1000),
        )
        return await self._call(params, ReadResult, resend=True)

    # -- operations ------------------------------------------------------------------------

    async def write(self, data: bytes) -> WriteStatus:
        """See :meth:`ExecProcess.write`.

        Writes are sent one at a time per process, in order, never interleaved; data
        above :data:`WRITE_CHUNK_BYTES` goes in several requests (stopping at the first
        that is not accepted). The status is the server's.

        Raises:
            ConnectionLost: the connection is broken for good (the bytes may or may not
                have reached the child if it broke during the call). A connection lost
                and resumed is invisible: the unanswered request is sent again with its
                ``writeId``, and the server writes it once.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        payload = bytes(data)
        if self._gone:
            await trio.lowlevel.checkpoint()
            return WriteStatus.UNKNOWN_PROCESS
        await self._check()
        async with self._write_lock:
            offset = 0
            while True:
                piece = payload[offset : offset + WRITE_CHUNK_BYTES]
                write_id = self._new_write_id()
                # resend: after a lost connection, the resumed session gets it again under
                # the same id, which the server never writes twice.
                result = await self._call(
                    WriteParams(process_id=self.process_id, chunk=piece, write_id=write_id),
                    WriteResult,
                    resend=True,
                )
                offset += len(piece)
                if result.status is not WriteStatus.ACCEPTED or offset >= len(payload):
                    return result.status

    async def close_stdin(self) -> WriteStatus:
        """See :meth:`ExecProcess.close_stdin`; waits for queued writes first.

        Raises:
            UnsupportedOperation: the server lacks the ``closeStdin`` extension (the
                reference has no way to close stdin; on a terminal, write ``b"\\x04"``).
            ConnectionLost: the connection is broken, or broke during the call (which is
                not sent again after a resume: a second close could answer ``stdinClosed``).
        """
        await self._backend._require(Extension.CLOSE_STDIN, "closing stdin")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return WriteStatus.UNKNOWN_PROCESS
        await self._check()
        async with self._write_lock:
            result = await self._call(
                CloseStdinParams(process_id=self.process_id), CloseStdinResult, resend=False
            )
        return result.status

    async def signal(self, sig: int | _signal.Signals) -> None:
        """See :meth:`ExecProcess.signal`.

        Raises:
            UnsupportedOperation: the protocol has no name for ``sig``, or ``sig`` is not
                SIGINT and the server lacks the ``signals`` extension.
            ConnectionLost: the connection is broken, or broke during the call (which is
                not sent again after a resume: a signal must not be delivered twice).
        """
        signum = _signal.Signals(sig)
        try:
            name = ProcessSignal.from_signum(signum)
        except ValueError as exc:
            await trio.lowlevel.checkpoint()
            raise UnsupportedOperation(str(exc)) from None
        if name.extension is not None:
            await self._backend._require(name.extension, f"sending {signum.name}")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return
        params = SignalParams(process_id=self.process_id, signal=name)
        await self._call(params, SignalResult, resend=False)

    async def resize(self, rows: int, cols: int) -> None:
        """See :meth:`ExecProcess.resize`.

        Raises:
            UnsupportedOperation: no terminal, or the server lacks the ``resize``
                extension.
            ConnectionLost: the connection is broken.
        """
        check_dimensions(rows, cols)
        if not self.tty:
            await trio.lowlevel.checkpoint()
            raise UnsupportedOperation("resize needs a process started with tty=True")
        await self._backend._require(Extension.RESIZE, "resizing the terminal")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return
        params = ResizeParams(process_id=self.process_id, rows=rows, cols=cols)
        await self._call(params, ResizeResult, resend=True)

    async def terminate(self, grace: float = DEFAULT_GRACE) -> bool:
        """See :meth:`ExecProcess.terminate`. Returns once the exit was reported.

        With the ``gracefulTerminate`` extension the server sends SIGTERM and SIGKILL
        after ``grace``; without it (the reference) the group is killed at once.
        Returns the server's ``running``.

        Raises:
            ConnectionLost: the connection is broken (or broke before the exit was known).

        **Cancellation:** if cancelled while waiting for the exit, an immediate terminate
        is sent (shielded, at most :data:`SHUTDOWN_TIMEOUT` seconds), then Cancelled
        propagates.
        """
        check_seconds("grace", grace)
        if self._gone or self._log.exited is not None:
            await trio.lowlevel.checkpoint()
            return False
        try:
            running = await self._send_terminate(grace)
            if running:
                await self.wait()
            else:  # it had exited already: the exit event is (at most) in flight
                with trio.move_on_after(SHUTDOWN_TIMEOUT):
                    await self.wait()
        except trio.Cancelled:
            if self._log.exited is None and self._backend.failure is None:
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT):
                    try:
                        await self._send_terminate(None)
                    except TrioExecError:
                        pass
            raise
        return running

    async def _send_terminate(self, grace: float | None) -> bool:
        graceful = grace is not None and self._backend.supports(Extension.GRACEFUL_TERMINATE)
        grace_ms = round(grace * 1000) if graceful and grace is not None else None
        params = TerminateParams(process_id=self.process_id, grace_ms=grace_ms)
        return (await self._call(params, TerminateResult, resend=True)).running

    async def _shutdown(self, grace: float, *, started: bool = True) -> None:
        """Leave the block: terminate, wait (bounded) for the end, stop routing. Shielded."""
        log = self._log
        self._route.release()  # nobody will consume the subscriptions any more
        try:
            if not log.finished and self._backend.failure is None and self._route.lost is None:
                # As a local session: terminate a running child, then SIGKILL what is left
                # of its group (grandchildren may hold the output open), after which a
                # trio_exec server ends the output within its CLOSE_DRAIN_TIMEOUT.
                kill = started and self._backend.supports(Extension.SIGNALS)
                running = log.exited is None or not started
                if running:
                    graceful = self._backend.supports(Extension.GRACEFUL_TERMINATE)
                    bound = (grace if graceful else 0.0) + SHUTDOWN_TIMEOUT
                else:
                    bound = SHUTDOWN_TIMEOUT if kill else CLOSE_TIMEOUT
                with trio.move_on_after(bound):
                    if running:
                        await self._send_terminate(grace)
                    if kill:
                        await self._kill_group()
                    if started:
                        await self._wait_finished()
            elif started and log.closed is not None and self._backend.supports(Extension.SIGNALS):
                # The output ended, but a grandchild that closed its output may live on:
                # end the group, as a local session does when its block is left.
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._kill_group()
        except TrioExecError:
            pass  # the connection broke (the log failed with it) or the server refused
        finally:
            self._backend._unroute(self._route)
            if started and not log.finished:
                self._route.finish_now(
                    f"the exec server did not report the end of process {self.process_id!r} "
                    f"in time after its block was left"
                )
            self._route.stop()
            self._gone = True

    async def _kill_group(self) -> None:
        params = SignalParams(process_id=self.process_id, signal=ProcessSignal.KILL)
        await self._call(params, SignalResult, resend=True)  # killing twice is harmless

    async def _wait_finished(self) -> None:
        while not self._log.finished:
            await self._log.wait_changed()
