"""RemoteBackend: processes on an exec server, over any message transport.

Theory of operation
-------------------
One connection to an exec server (``trio-exec serve`` or the reference ``codex exec-server``
0.169) is one :class:`RemoteBackend`. :func:`open_remote_backend` runs, in one nursery:

* the **writer**, which sends queued requests one at a time, so a cancelled caller never
  leaves a half-sent message on the transport;
* the **reader**, which takes every incoming message in order: a response completes its
  call (matched by id through :class:`~trio_exec._protocol.RpcClientState`), a notification
  is routed by ``processId`` to its process, and an unexpected request from the server is
  answered with a -32601 error;
* one **publisher** per process, which moves the process's ordered events into its
  :class:`~trio_exec._retained.ProcessLog`.

These tasks are shielded from a cancellation of the scope around the backend block until
that block is left: the process blocks inside it shut down (shielded) through a working
connection, as a local process's pumps outlive the cancellation of its block.

Every request is an awaitable call of its own. At most :data:`MAX_IN_FLIGHT_REQUESTS`
are outstanding at once (a :class:`trio.Semaphore`): the reference server deadlocks when
about 230 requests are pipelined. A call holds its slot until the server answered it, even
when its caller was cancelled and abandoned it, so the cap is what the server sees.

Ordering. The route of a process is registered *before* ``process/start`` is sent, because
the reference sends output (even exit and close) before the start response. Per process,
an ordering buffer releases events strictly in ``seq`` order (like the reference client's
``OrderedSessionEvents``): an event that arrives early waits for the ones before it (at
most :data:`MAX_REORDER_EVENTS` / :data:`MAX_REORDER_BYTES`), a duplicate or an event at
or below the last ordered seq is dropped, and nothing is taken after ``closed``. The log
therefore numbers events exactly as the server did. Notifications for unknown processes
and unknown notification methods are ignored.

Backpressure. The publisher appends output the way a local pump does: it waits while a
subscription that wants the chunk's stream is ``retain_bytes`` behind (a subscription to
stdout only never holds back stderr, see :class:`~trio_exec._retained.ProcessLog`).
Ordered events wait for it in a queue; when the queues of a connection hold more than
:data:`READ_AHEAD_BYTES` of output, the reader stops reading, which holds back the
server and, through it, the child. Memory stays bounded and no output is lost, however
slow the consumer. Since a process's events are published in ``seq`` order, a chunk
that waits also delays the events after it, of any stream: an unread stdout holds back
stderr written after stdout went ``retain_bytes`` past the reader, where locally only
the stdout pipe would stop (a child blocked writing stdout writes no stderr either).

Failure. When the transport breaks (or the server breaks the protocol) and the session is
not resumed (below), every pending and every later call raises :class:`ConnectionLost`,
and every open process's log fails with ``exec-server transport disconnected: <reason>``
(after what was already received is put in the log: a process whose ``closed`` arrived
still ends with Closed), so its subscriptions yield ``Failed`` and end, and reads return
``closed=True`` with ``failure`` set. Nothing waits forever.

Resume. A backend made by :func:`connect` (websocket) survives a lost connection: the
**recovery** task reconnects and sends ``initialize {resumeSessionId}`` until it succeeds
or :data:`RESUME_DEADLINE` passes, waiting between attempts with exponential backoff and
jitter (:data:`RESUME_BACKOFF_INITIAL`, :data:`RESUME_BACKOFF_MAX`); -32010 (the server
has not noticed yet that the old connection is dead) is retried like a failed connect,
-32600 (the session expired) is final. Meanwhile the routes and logs stay as they are. Once
resumed, the server sends live notifications for new events, and for each open process the
recovery reads what was missed, ``process/read afterSeq=<last ordered seq>`` in pages of
:data:`CATCH_UP_READ_BYTES` until it meets the live events (then one more read, with
``maxBytes: 0``, tells a trio_exec server that it may stop holding the output back), and
pushes the result into the same ordering buffer, which drops duplicates: consumers see one
stream without gaps or duplicates. A seq that was neither returned nor explained by the read's exit status is
output the server evicted meanwhile: that process's log fails with ``... failed to recover
process ...`` and the process is terminated; so it does when the session cannot be resumed
in time (then for every process, and the backend is broken for good). Calls during the
outage:

* a call made during the outage waits for the resume and is then sent (or raises
  :class:`ConnectionLost` if the resume fails);
* a call in flight when the connection broke is sent again after the resume when that is
  safe: ``process/write`` (same ``writeId``: the server writes it once), ``process/read``,
  ``process/terminate`` and ``process/resize``; ``process/signal`` and
  ``process/closeStdin`` raise :class:`ConnectionLost`, since they may or may not have
  been carried out (a signal must not be delivered twice);
* a ``process/start`` in flight: after the resume, a read tells whether the server has
  the process; if it has, the start succeeded (the missed events are read), otherwise the
  start is sent again.

Transports given to :func:`open_remote_backend` (stdio, a command's pipes) are never
resumed: their session ends with them. Nor is a websocket that the server closed with
code 1001 (Going Away: a trio_exec server stopping gracefully, e.g. ``trio-exec serve``
on SIGTERM), since the server ended the session: it sent the final ``exited`` and
``closed`` of its processes first, so each process ends with them, or at once with
``exec-server transport disconnected: the exec server shut down ...``. A connection
dropped without a close handshake (1006, as the reference server does on SIGTERM) is
resumed as any lost connection.

Rules
-----
* ``read()`` is served from the local log, which mirrors what the server pushed: it is
  fast, needs no round trip, keeps the local read semantics exactly (including
  ``first_retained_seq``), and never blocks the connection (the reference processes one
  request at a time per connection, so a long-poll ``process/read`` would stall every
  other call).
* One connection carries every process and every response: a subscription that stays far
  behind eventually stalls the whole connection (see :data:`READ_AHEAD_BYTES`). Consume
  each process's events in their own task, or close a subscription you stopped reading.
* An operation needing a protocol extension the server did not advertise raises
  :class:`UnsupportedOperation` before anything is sent.
"""

from __future__ import annotations

import errno as _errno
import itertools
import math
import os
import random
import re
import signal as _signal
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Final, TypeVar

import attrs
import trio

from ._backend import (
    DEFAULT_GRACE,
    Arg,
    ExecBackend,
    ExecProcess,
    check_argv,
    check_dimensions,
    check_env,
    check_seconds,
    check_window,
    new_process_id,
)
from ._errors import (
    ConnectionLost,
    ProtocolError,
    RemoteError,
    SpawnError,
    TrioExecError,
    UnsupportedOperation,
)
from ._events import ReadResult, WriteStatus
from ._protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SESSION_ALREADY_ATTACHED,
    ClosedNotification,
    CloseStdinParams,
    CloseStdinResult,
    EnvironmentInfo,
    ErrorResponse,
    ExitedNotification,
    Extension,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    Notification,
    OutputNotification,
    ProcessNotification,
    ProcessSignal,
    ReadParams,
    Reply,
    Request,
    RequestParams,
    ResizeParams,
    ResizeResult,
    Response,
    RpcClientState,
    RpcDecodeError,
    SignalParams,
    SignalResult,
    StartParams,
    StartResult,
    TerminateParams,
    TerminateResult,
    WindowSize,
    WriteParams,
    WriteResult,
    decode_message,
    decode_notification,
    encode_message,
    make_error_response,
    make_notification,
    path_to_file_uri,
)
from ._retained import DEFAULT_RETAINED_BYTES, ProcessLog
from ._transport import WEBSOCKET_GOING_AWAY, MessageTransport, open_websocket_transport
from ._util import leaf_exceptions, open_service_nursery

__all__ = [
    "CATCH_UP_READ_BYTES",
    "CLOSE_TIMEOUT",
    "DISCONNECTED",
    "FALLBACK_CWD",
    "INITIALIZE_TIMEOUT",
    "MAX_IN_FLIGHT_REQUESTS",
    "MAX_REORDER_BYTES",
    "MAX_REORDER_EVENTS",
    "READ_AHEAD_BYTES",
    "RESUME_ATTEMPT_TIMEOUT",
    "RESUME_BACKOFF_INITIAL",
    "RESUME_BACKOFF_JITTER",
    "RESUME_BACKOFF_MAX",
    "RESUME_DEADLINE",
    "SHUTDOWN_TIMEOUT",
    "WRITE_CHUNK_BYTES",
    "RemoteBackend",
    "RemoteProcess",
    "RemoteStatistics",
    "connect",
    "open_remote_backend",
]

MAX_IN_FLIGHT_REQUESTS: Final = 64
"""Most requests one connection has outstanding at once; further calls wait for a slot.

The reference server deadlocks when about 230 requests are pipelined on one connection
(its inbound queue holds 128); 64 stays well clear of that.
"""

INITIALIZE_TIMEOUT: Final = 10.0
"""Seconds the ``initialize`` handshake may take (as the reference client)."""

SHUTDOWN_TIMEOUT: Final = 5.0
"""Seconds that leaving a process block waits, after the terminate request (and after the
grace when the server terminates gracefully), for the server to report the exit and the
end of output. When it passes, the process's log fails and the block is left anyway."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds that leaving a process block waits for ``closed`` when the child had already
exited (a grandchild may hold its output open) and the server cannot be asked to kill the
rest of the group (no ``signals`` extension; with it the wait is :data:`SHUTDOWN_TIMEOUT`).
When it passes, the log fails."""

WRITE_CHUNK_BYTES: Final = 1024 * 1024
"""Largest ``process/write`` payload (1 MiB, about 1.4 MB of base64); a larger
:meth:`RemoteProcess.write` is sent as several requests, in order."""

MAX_REORDER_EVENTS: Final = 4096
"""Most events of one process held back while an earlier seq has not arrived."""

MAX_REORDER_BYTES: Final = 8 * 1024 * 1024
"""Most output bytes of one process held back while an earlier seq has not arrived.

A conforming server sends every seq, so the buffer only ever holds what one scheduling
race reordered; exceeding either bound fails the process instead of growing memory."""

READ_AHEAD_BYTES: Final = 4 * 1024 * 1024
"""Most output bytes of a connection received but not yet in their process's log.

Output goes into a log as fast as its subscriptions take it (a subscription that is
``retain_bytes`` behind holds the log back, as with a local process). Beyond this bound
the client stops reading the connection, which holds back the server and, through it, the
children: a slow consumer slows the child instead of growing memory or losing output.
Since one connection carries every process and every response, a subscription that stays
far behind also delays the other processes and the calls of that connection: consume
events in their own task, or close a subscription you stopped reading."""

DISCONNECTED: Final = "exec-server transport disconnected"
"""The start of every failure message of a broken connection (as the reference client)."""

RESUME_DEADLINE: Final = 25.0
"""Seconds a :func:`connect` backend keeps trying to resume its session after the
connection was lost (as the reference client), before it gives up: then every open
process fails and every call raises :class:`ConnectionLost`. It fits inside the server's
detach time (``trio-exec serve``: 30 s, the reference: 80 s)."""

RESUME_ATTEMPT_TIMEOUT: Final = 5.0
"""Seconds one resume attempt may take to connect (TCP, TLS, upgrade) and to get the
answer to ``initialize``; then the next attempt starts. Shorter than a first connection's
timeouts: after a blip, a fresh attempt is likelier to get through than a hanging one
(trio-websocket 0.12 even waits for its handshake forever when the peer resets the
connection during it)."""

RESUME_BACKOFF_INITIAL: Final = 0.1
"""Seconds before the second resume attempt (the first one is immediate); each further
wait doubles, up to :data:`RESUME_BACKOFF_MAX`."""

RESUME_BACKOFF_MAX: Final = 2.0
"""The longest wait between two resume attempts, in seconds."""

RESUME_BACKOFF_JITTER: Final = 0.5
"""Each wait is drawn uniformly from ``[(1 - JITTER) * wait, wait]``, so clients cut off
together do not come back in lockstep."""

CATCH_UP_READ_BYTES: Final = 1024 * 1024
"""``maxBytes`` of each catch-up ``process/read`` after a resume (1 MiB, about 1.4 MB of
base64, well under the 16 MiB message limit however much the server retains)."""

FALLBACK_CWD: Final = "/"
"""Where a child runs when neither the caller nor the server names a directory.

A server tells its working directory in the ``initialize`` result (``environmentInfo.cwd``),
and a child started without ``cwd`` runs there. A server that does not (older releases of
the reference) gets the root directory, which exists on every POSIX host, rather than this
client's directory, which may not exist there (in a container, say) and would make every
spawn fail with a misleading "No such file or directory"."""

_R = TypeVar("_R")

_OS_ERROR: Final = re.compile(r"\s*\(os error (\d+)\)\s*$")


# -- RPC ----------------------------------------------------------------------------------


class _PendingCall:
    """One request awaiting its response."""

    __slots__ = ("done", "method", "reply", "request_id")

    def __init__(self, request_id: int, method: str) -> None:
        self.request_id = request_id
        self.method = method
        self.reply: Reply | None = None
        self.done = trio.Event()

    def complete(self, reply: Reply) -> None:
        self.reply = reply
        self.done.set()

    def result(self, result_type: type[_R]) -> _R:
        assert self.reply is not None
        return self.reply.expect(result_type)


class _RpcClient:
    """Requests and responses of one connection; see the module docstring.

    Args:
        on_notification: awaited by the reader for every notification (it may hold the
            reader back: that is how backpressure reaches the server).
        on_failure: called once, synchronously, with the failure message.
    """

    def __init__(
        self,
        transport: MessageTransport,
        *,
        on_notification: Callable[[Notification], Awaitable[None]],
        on_failure: Callable[[str], None],
        max_in_flight: int = MAX_IN_FLIGHT_REQUESTS,
    ) -> None:
        self._transport = transport
        self._on_notification = on_notification
        self._on_failure = on_failure
        self._state = RpcClientState()
        self.max_in_flight: Final = max_in_flight
        self._slots = trio.Semaphore(max_in_flight)
        self._holding: set[int] = set()  # ids whose response has not come (slot held)
        self._calls: dict[int, _PendingCall] = {}  # ids someone still waits for
        # Unbounded, but never holds more than max_in_flight requests (one per slot)
        # plus the `initialized` notification.
        self._outbox, self._outbox_receive = trio.open_memory_channel[str](math.inf)
        self._scope = trio.CancelScope()
        self.failure: str | None = None
        """Why the connection broke (``exec-server transport disconnected: ...``), or None."""
        self.resumable = False
        """Whether it broke because the transport was lost (not a protocol error, not closed
        by us, not closed by a server that shut down): a session that may be resumed on a
        new connection."""
        self.server_shut_down = False
        """Whether the server closed the connection because it shut down (websocket close
        code 1001, Going Away): its sessions are over, so there is nothing to resume."""

    @property
    def in_flight(self) -> int:
        """Requests sent (or queued) whose response has not come yet."""
        return len(self._holding)

    def check(self) -> None:
        """Raise :class:`ConnectionLost` if the connection broke."""
        if self.failure is not None:
            raise ConnectionLost(self.failure)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and the writer until the connection breaks or is closed."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._read_loop)
                task_status.started()

    def close(self, reason: str) -> None:
        """Fail everything with ``reason`` and stop the tasks; idempotent."""
        self._fail(f"{DISCONNECTED}: {reason}")

    async def start_call(self, params: RequestParams) -> _PendingCall:
        """Queue a request once a slot is free; return its pending call.

        **Cancellation:** if cancelled, nothing was queued.
        """
        self.check()
        await self._slots.acquire()
        if self.failure is not None:
            self._slots.release()  # wake the next waiter, which fails the same way
            raise ConnectionLost(self.failure)
        request = self._state.send_request(params)
        assert type(request.id) is int
        try:
            encoded = encode_message(request)
        except BaseException:
            self._state.abandon(request.id)
            self._slots.release()
            raise
        call = _PendingCall(request.id, request.method)
        self._holding.add(request.id)
        self._calls[request.id] = call
        self._outbox.send_nowait(encoded)
        return call

    async def wait(self, call: _PendingCall, result_type: type[_R]) -> _R:
        """Wait for a call's response and return its typed result.

        Raises:
            RemoteError: the server answered with an error.
            ConnectionLost: the connection broke first.
            ProtocolError: the result did not decode.

        **Cancellation:** the call is abandoned: its response, if it comes, is dropped.
        """
        try:
            await call.done.wait()
        except BaseException:
            if not call.done.is_set():
                self.abandon(call)
            raise
        return call.result(result_type)

    def abandon(self, call: _PendingCall) -> None:
        """Stop waiting for ``call``; its slot is freed when its response comes."""
        if self._calls.pop(call.request_id, None) is not None:
            self._state.abandon(call.request_id)

    async def call(self, params: RequestParams, result_type: type[_R]) -> _R:
        """Send a request and return its typed result; see :meth:`wait`.

        **Cancellation:** the request may or may not have been sent (and acted on);
        its response is dropped.
        """
        return await self.wait(await self.start_call(params), result_type)

    def notify(self, params: InitializedNotification) -> None:
        """Queue a notification to the server."""
        self.check()
        self._outbox.send_nowait(encode_message(make_notification(params)))

    # -- tasks -----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            async for message in self._outbox_receive:
                await self._transport.send(message)
        except ConnectionLost as exc:
            self._lost(exc)

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self._transport.receive()
                await self._handle(frame)
        except ConnectionLost as exc:
            self._lost(exc)
        except ProtocolError as exc:
            self._fail(f"{DISCONNECTED}: protocol error: {exc}")
            # The stream cannot be trusted any more: close it so the server notices.
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await self._transport.aclose()

    async def _handle(self, frame: str | bytes) -> None:
        try:
            message = decode_message(frame)
        except RpcDecodeError as exc:
            raise ProtocolError(f"malformed message from the server: {exc.message}") from None
        match message:
            case Response() | ErrorResponse():
                self._receive_response(message)
            case Notification():
                await self._on_notification(message)
            case Request():
                # Server-to-client requests (the reference's network/policyRequest) are
                # never asked for; answer so that the server does not wait.
                reply = make_error_response(
                    message.id,
                    METHOD_NOT_FOUND,
                    f"trio-exec client does not implement `{message.method[:200]}`",
                )
                await self._transport.send(encode_message(reply))

    def _lost(self, exc: ConnectionLost) -> None:
        if self.failure is None:
            if exc.close_code == WEBSOCKET_GOING_AWAY:
                self.server_shut_down = True
                self._fail(f"{DISCONNECTED}: the exec server shut down ({exc})")
                return
            self.resumable = True
        self._fail(f"{DISCONNECTED}: {exc}")

    def _receive_response(self, message: Response | ErrorResponse) -> None:
        reply = self._state.receive_response(message)  # ProtocolError for an unknown id
        request_id = message.id
        if type(request_id) is int and request_id in self._holding:
            self._holding.discard(request_id)
            self._slots.release()
        if reply is None:  # abandoned by its caller
            return
        call = self._calls.pop(reply.request_id, None)
        if call is not None:
            call.complete(reply)

    def _fail(self, message: str) -> None:
        if self.failure is not None:
            return
        self.failure = message
        for reply in self._state.fail_all(message):
            call = self._calls.pop(reply.request_id, None)
            if call is not None:
                call.complete(reply)
        for call in self._calls.values():  # pragma: no cover - fail_all covers them all
            call.complete(
                Reply(request_id=call.request_id, method=call.method, error=ConnectionLost(message))
            )
        self._calls.clear()
        # Wake every task waiting for a slot; each sees the failure and passes it on.
        for _ in self._holding:
            self._slots.release()
        self._holding.clear()
        self._outbox.close()
        self._scope.cancel()
        self._on_failure(message)


# -- ordering and routing -------------------------------------------------------------------


class _Budget:
    """Output bytes of a connection not yet in a log; see :data:`READ_AHEAD_BYTES`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lot = trio.lowlevel.ParkingLot()

    def take(self, size: int) -> None:
        self.used += size

    def give(self, size: int) -> None:
        self.used -= size
        if self.used <= self.limit:
            self._lot.unpark_all()

    async def wait_below_limit(self) -> None:
        """Wait until no more than ``limit`` bytes are held.

        **Cancellation:** nothing to undo.
        """
        while self.used > self.limit:
            await self._lot.park()


class _Route:
    """Takes one process's notifications and publishes them into its log in ``seq`` order.

    Two stages:

    * :meth:`push` (the reader, synchronous) orders: it mirrors the reference client's
      ``OrderedSessionEvents``. Events are buffered by seq; a duplicate or a seq at or
      below the last ordered one is dropped; nothing is taken once ``closed`` was ordered
      or the route failed. Ordered events go to the ready queue.
    * :meth:`publish` (a task per process) moves the ready queue into the log, waiting
      while a subscription that wants the next chunk's stream is behind (backpressure).
      Queued output counts toward the connection's :class:`_Budget`, which stops the
      reader when full.

    When the block is left (:meth:`release`) the publisher stops waiting. On a failure
    (:meth:`fail`) it publishes what is queued, then fails the log unless it closed.
    """

    def __init__(self, process_id: str, log: ProcessLog, budget: _Budget) -> None:
        self.process_id = process_id
        self.log = log
        self._budget = budget
        self.last_seq = 0
        """The seq of the last event ordered (queued or published)."""
        self.receiving = True
        """False once Closed was ordered or the route failed: nothing more is taken."""
        self._exited = False
        self._pending: dict[int, ProcessNotification] = {}
        self._pending_bytes = 0
        self._ready: deque[ProcessNotification] = deque()
        self._wake = trio.lowlevel.ParkingLot()
        self._released = False
        self._append_scope: trio.CancelScope | None = None
        self.failure: str | None = None
        """Why the route ended early; the log fails with it once the queue is published."""
        self.publishing = True
        """Until the publisher task returns (it is started with the route)."""
        self.started = False
        """True once the server answered ``process/start``: a resume catches it up."""
        self.catching_up = False
        """Between a resume attempt and the end of this process's catch-up reads."""
        self.first_live_seq: int | None = None
        """While catching up: the seq of the first notification of the new connection."""
        self.lost: str | None = None
        """Why the process could not be recovered after a resume; its calls raise this."""

    # -- ordering (the reader) -------------------------------------------------------------

    def push(self, event: ProcessNotification, *, live: bool = True) -> None:
        """Take one notification; queue it and every buffered one it unblocks.

        ``live``: it came as a notification (not from a catch-up read).
        """
        seq = event.seq
        if live and self.catching_up and self.first_live_seq is None:
            self.first_live_seq = seq
        if not self.receiving or seq <= self.last_seq or seq in self._pending:
            return
        self._pending[seq] = event
        if isinstance(event, OutputNotification):
            self._pending_bytes += len(event.chunk)
        while self.receiving:
            ready = self._pending.pop(self.last_seq + 1, None)
            if ready is None:
                break
            if isinstance(ready, OutputNotification):
                self._pending_bytes -= len(ready.chunk)
            self._order(ready)
        self._check_reorder_bounds()

    def _check_reorder_bounds(self) -> None:
        # While catching up, live events wait for the reads by design; what the server
        # retains bounds them (our server holds the child back meanwhile).
        if (
            self.receiving
            and not self.catching_up
            and (len(self._pending) > MAX_REORDER_EVENTS or self._pending_bytes > MAX_REORDER_BYTES)
        ):
            self.fail(
                f"protocol error: event seq {self.last_seq + 1} of process "
                f"{self.process_id!r} never arrived while {len(self._pending)} later events "
                f"({self._pending_bytes} bytes) were held back"
            )

    def _order(self, event: ProcessNotification) -> None:
        match event:
            case OutputNotification(chunk=chunk):
                if not chunk:
                    self.fail(f"protocol error: empty output chunk at seq {event.seq}")
                    return
                self._budget.take(len(chunk))
            case ExitedNotification():
                if self._exited:
                    self.fail(f"protocol error: a second exited event at seq {event.seq}")
                    return
                self._exited = True
            case ClosedNotification():
                if not self._exited:
                    self.fail(f"protocol error: closed before exited at seq {event.seq}")
                    return
                self._stop_receiving()
        self.last_seq = event.seq
        self._ready.append(event)
        self._wake.unpark_all()

    def _stop_receiving(self) -> None:
        self.receiving = False
        self._pending.clear()
        self._pending_bytes = 0
        self._wake.unpark_all()

    # -- catching up after a resume --------------------------------------------------------

    def begin_catch_up(self) -> None:
        """A new connection is being set up: note where its live events start."""
        self.catching_up = True
        self.first_live_seq = None

    def stopped(self) -> bool:
        """Whether the route takes no more events (Closed was ordered, or it failed)."""
        return not self.receiving

    def end_catch_up(self) -> None:
        self.catching_up = False
        self.first_live_seq = None
        self._check_reorder_bounds()

    @property
    def caught_up(self) -> bool:
        """Whether every event before the first live one is ordered."""
        return self.first_live_seq is not None and self.last_seq >= self.first_live_seq - 1

    def _exit_known(self) -> bool:
        return self._exited or any(
            isinstance(event, ExitedNotification) for event in self._pending.values()
        )

    def splice(self, result: ReadResult, after_seq: int) -> str | None:
        """Order what a catch-up ``process/read`` (with ``maxBytes``) after ``after_seq``
        returned.

        The read covers every seq from ``after_seq + 1`` up to its ``next_seq``: the last
        chunk's seq + 1 when chunks came, else the process's next seq (past exited and
        closed). A seq in that range that is neither a chunk nor a buffered live event
        must be the exit (once, when the result says it exited) or, when no chunk came,
        the close (the last seq); anything else was evicted. Returns why history is
        missing, or None.
        """
        if result.failure is not None:
            return f"the server reports the process failed: {result.failure}"
        for chunk in result.chunks:
            if chunk.seq > after_seq:
                self.push(
                    OutputNotification(
                        process_id=self.process_id,
                        seq=chunk.seq,
                        stream=chunk.stream,
                        chunk=chunk.data,
                    ),
                    live=False,
                )
        end = result.next_seq  # the first seq the read does not cover
        whole = not result.chunks
        seq = self.last_seq + 1
        while self.receiving:
            seq = max(seq, self.last_seq + 1)  # pushing may order buffered events
            while seq in self._pending:
                seq += 1
            if seq >= end:
                break
            event: ProcessNotification
            if whole and result.closed and seq == end - 1 and self._exit_known():
                event = ClosedNotification(process_id=self.process_id, seq=seq)
            elif result.exited and result.exit_code is not None and not self._exit_known():
                event = ExitedNotification(
                    process_id=self.process_id, seq=seq, exit_code=result.exit_code
                )
            else:
                first = result.first_retained_seq
                retained = "" if first is None else f" (it retains seq {first} on)"
                return (
                    f"its events from seq {seq} on are no longer retained by the server"
                    f"{retained}: they were evicted while the connection was down"
                )
            self.push(event, live=False)
            seq += 1
        return None

    # -- publishing (a task) ---------------------------------------------------------------

    async def publish(self) -> None:
        """Move ordered events into the log until Closed or failure; the route's task."""
        try:
            while True:
                while self._ready:
                    event = self._ready[0]
                    if isinstance(event, OutputNotification) and not self._released:
                        appended = False
                        with trio.CancelScope() as self._append_scope:
                            # Waits while a subscription is behind: the backpressure.
                            await self.log.append_output(event.stream, event.chunk)
                            appended = True
                        self._append_scope = None
                        if not self._ready or self._ready[0] is not event:
                            continue  # finish_now() or stop() took it meanwhile
                        if appended:
                            self._ready.popleft()
                            self._budget.give(len(event.chunk))
                            continue
                    self._publish_now(self._ready.popleft())
                if not self.receiving:
                    if self.failure is not None:
                        self.log.fail(self.failure)
                    return
                await self._wake.park()
        finally:
            self.publishing = False

    def _publish_now(self, event: ProcessNotification) -> None:
        log = self.log
        match event:
            case OutputNotification(stream=stream, chunk=chunk):
                self._budget.give(len(chunk))
                log.append_output_nowait(stream, chunk)  # None once the log is finished
            case ExitedNotification():
                if not log.finished:
                    exited = event.to_event()
                    log.set_exited(exited.exit_code, exited.signal)
            case ClosedNotification():
                if not log.finished:
                    log.set_closed()

    def release(self) -> None:
        """Stop holding the publisher back (the block was left): publish without waiting."""
        self._released = True
        self.log.release_backpressure()
        if self._append_scope is not None:
            self._append_scope.cancel()

    def stop(self) -> None:
        """Stop taking events and drop what is queued; the publisher ends.

        For a start that failed, and after the block was left and the log finished.
        """
        self.release()
        self._stop_receiving()
        self._drop_ready()

    def fail(self, message: str) -> None:
        """End the route after what is already ordered.

        The publisher puts the queued events in the log (in order, still holding back
        for slow subscriptions), then fails the log with ``message`` unless it closed: a
        subscription sees everything that arrived, then ``Failed``.
        """
        if self.failure is None:
            self.failure = message
        self._stop_receiving()
        if not self.publishing:
            self.finish_now(message)

    def finish_now(self, message: str) -> None:
        """Put what is queued in the log at once, then fail it unless it closed."""
        self.release()
        self._stop_receiving()
        while self._ready:
            self._publish_now(self._ready.popleft())
        self.log.fail(self.failure or message)

    def _drop_ready(self) -> None:
        while self._ready:
            event = self._ready.popleft()
            if isinstance(event, OutputNotification):
                self._budget.give(len(event.chunk))


# -- the backend ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RemoteStatistics:
    """What :meth:`RemoteBackend.statistics` returns."""

    requests_in_flight: int
    """Requests sent (or queued) whose response has not come yet."""
    max_requests_in_flight: int
    """The cap on :attr:`requests_in_flight` (:data:`MAX_IN_FLIGHT_REQUESTS`)."""
    open_processes: int
    """Process blocks currently open on this backend."""
    routed_processes: int
    """Processes whose events are still being received (not yet closed or failed)."""
    failure: str | None
    """Why the connection broke for good, or None while it works (or is being resumed)."""
    recovering: bool = False
    """Whether the connection was lost and the session is being resumed."""
    resumes: int = 0
    """Sessions resumed successfully on a new connection so far."""


class _Retry(Exception):
    """A resume attempt failed in a way that another attempt may fix."""


class _GiveUp(Exception):
    """The session cannot be resumed."""


_Connector = Callable[[], AbstractAsyncContextManager[MessageTransport]]
"""Opens a transport to the server; :func:`connect` reopens one to resume."""


@asynccontextmanager
async def _borrowed(transport: MessageTransport) -> AsyncIterator[MessageTransport]:
    """A connector for a transport the caller owns (and closes)."""
    yield transport


class RemoteBackend(ExecBackend):
    """Runs processes on an exec server; obtained from :func:`connect` or
    :func:`open_remote_backend`, never built directly.

    It works with any server of the protocol, and uses a trio_exec extension only when the
    server advertises it (:attr:`extensions`). Against the reference ``codex exec-server``
    0.169, which advertises none: :meth:`RemoteProcess.close_stdin`, :meth:`~RemoteProcess.resize`
    and signals other than SIGINT raise :class:`UnsupportedOperation`; terminate is an
    immediate SIGKILL of the process group (no grace); ``Exited.signal`` is None (only the
    ``exitSignal`` extension reports it); and a child on a terminal killed by any signal
    reports exit code 1.

    A backend from :func:`connect` resumes its session after a lost connection (see the
    module docstring); an exit caught up by a read after a resume has ``signal=None``,
    since ``process/read`` does not report it.
    """

    def __init__(self, connector: _Connector, *, client_name: str, resume_deadline: float) -> None:
        self._connector = connector
        self._client_name = client_name
        self.resume_deadline: Final = resume_deadline
        """Seconds a lost connection is resumed for; 0: never (see :data:`RESUME_DEADLINE`)."""
        self._rpc: _RpcClient  # the current connection; set by _open_backend
        self._usable = trio.Event()  # set while self._rpc can take calls
        self._recovering = False
        self._closing = False
        self._final_failure: str | None = None
        self._resumes = 0
        self._budget = _Budget(READ_AHEAD_BYTES)
        self._routes: dict[str, _Route] = {}  # taking notifications
        self._publishing: set[_Route] = set()  # publisher task running
        self._nursery: trio.Nursery | None = None  # for the publishers and the recovery
        # For the connection tasks: not cancelled when the block is left, so that each
        # transport closes cleanly (with a close handshake) once its RPC client stopped.
        self._connections: trio.Nursery | None = None
        self._left = trio.Event()  # the backend block is left: _run_tasks ends the tasks
        self._live: set[str] = set()
        self.session_id: str | None = None
        """The server's session id (what a resume asks for), once initialized."""
        self.extensions: frozenset[str] = frozenset()
        """The protocol extensions the server advertised (see :class:`Extension`)."""
        self.environment_info: EnvironmentInfo | None = None
        """What the server told of its side in ``initialize`` (its working directory,
        home, shell, ...), or None if it told nothing."""

    def __repr__(self) -> str:
        state = (
            "broken"
            if self._final_failure is not None
            else "recovering"
            if self._recovering
            else "connected"
        )
        return (
            f"<RemoteBackend {state} session={self.session_id!r} "
            f"extensions={sorted(self.extensions)} with {len(self._live)} open sessions>"
        )

    def supports(self, extension: Extension) -> bool:
        """Whether the server advertised ``extension``."""
        return extension.value in self.extensions

    @property
    def failure(self) -> str | None:
        """Why the connection broke for good, or None while it works or is being resumed."""
        return self._final_failure

    def statistics(self) -> RemoteStatistics:
        """Counters of this connection, for tests and monitoring."""
        return RemoteStatistics(
            requests_in_flight=self._rpc.in_flight,
            max_requests_in_flight=self._rpc.max_in_flight,
            open_processes=len(self._live),
            routed_processes=len(self._routes),
            failure=self._final_failure,
            recovering=self._recovering,
            resumes=self._resumes,
        )

    async def _require(self, extension: Extension, what: str) -> None:
        """Raise :class:`UnsupportedOperation`, after a checkpoint, unless the server
        advertised ``extension``; return at once (no checkpoint) if it did."""
        if not self.supports(extension):
            await trio.lowlevel.checkpoint()
            raise UnsupportedOperation(
                f"{what} needs the exec server's `{extension.value}` protocol extension, "
                f"which this server does not advertise (codex exec-server 0.169 has none)"
            )

    def _check(self) -> None:
        """Raise :class:`ConnectionLost` if the connection broke for good."""
        if self._final_failure is not None:
            raise ConnectionLost(self._final_failure)

    # -- connections -----------------------------------------------------------------------

    async def _run_tasks(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Host the backend's tasks until its block is left; the task of :func:`_open_backend`.

        The connections (RPC reader and writer), the publishers and the recovery run in
        :attr:`_connections` and :attr:`_nursery`, shielded from a cancellation of the
        scope around the backend block, as a local process's pumps and reaper are: when
        that scope is cancelled, the process blocks nested in the backend block shut
        down (shielded), and their terminate requests, the answers and the exit events
        must still get through. Once the backend block is left (every process block in
        it was left before), the publishers and the recovery are cancelled, and the
        connections, whose RPC clients are closed by then, get :data:`CLOSE_TIMEOUT`
        seconds to close their transports.
        """
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as connections:
                self._connections = connections
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    task_status.started()
                    await self._left.wait()
                    nursery.cancel_scope.cancel()
                # A close handshake takes at most WEBSOCKET_DISCONNECT_TIMEOUT; bound it anyway.
                connections.cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT

    async def _run_connection(
        self,
        *,
        first: bool = False,
        task_status: trio.TaskStatus[_RpcClient] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open a transport and run an RPC client on it until it breaks; a backend task.

        ``first``: the backend's first connection, current from the start (a resume
        attempt's becomes current once the session is resumed).

        Raises (before ``task_status.started``): ConnectionLost if it cannot be opened.
        """
        started = False
        try:
            async with self._connector() as transport:
                rpc = _RpcClient(
                    transport,
                    on_notification=self._dispatch,
                    on_failure=lambda message: self._on_rpc_failure(rpc, message),
                )
                if first:
                    self._rpc = rpc  # it may fail as soon as it runs
                async with trio.open_nursery() as nursery:
                    await nursery.start(rpc.run)
                    task_status.started(rpc)
                    started = True
        except Exception as exc:
            # Once started, the RPC client has already failed for the same reason: closing
            # a dead transport may complain, which must not break the backend.
            if not started or not _is_transport_error(exc):
                raise

    async def _initialize(self, client_name: str) -> None:
        with trio.move_on_after(INITIALIZE_TIMEOUT):
            result = await self._rpc.call(
                InitializeParams(client_name=client_name), InitializeResult
            )
            self.session_id = result.session_id
            self.extensions = frozenset(result.extensions)
            self.environment_info = result.environment_info
            self._rpc.notify(InitializedNotification())
            self._usable.set()
            return
        self._rpc.close(f"no answer to initialize within {INITIALIZE_TIMEOUT} s")
        self._check()

    def _on_rpc_failure(self, rpc: _RpcClient, message: str) -> None:
        """A connection broke (synchronously, before any caller sees its error)."""
        if rpc is not getattr(self, "_rpc", None) or self._final_failure is not None:
            # A resume attempt's connection (the recovery task sees it), or the first
            # connection failing before it was installed (its opening raises).
            return
        if self._recovering:
            # The new connection broke during the catch-up: the recovery task retries.
            if self._usable.is_set():
                self._usable = trio.Event()
            return
        if (
            self._closing
            or self.resume_deadline <= 0
            or not rpc.resumable
            or self.session_id is None
            or self._nursery is None
        ):
            self._fail_for_good(message)
            return
        self._recovering = True
        self._usable = trio.Event()
        for route in self._routes.values():
            route.begin_catch_up()
        self._nursery.start_soon(self._recover, message)

    def _fail_for_good(self, message: str) -> None:
        """The session is lost: fail every process and every waiting and later call."""
        if self._final_failure is not None:
            return
        self._final_failure = message
        self._recovering = False
        rpc: _RpcClient | None = getattr(self, "_rpc", None)
        if rpc is not None:
            rpc.close(message.removeprefix(f"{DISCONNECTED}: "))
        self._fail_routes(message)
        self._usable.set()  # wake the waiting calls: they see the failure

    def _close(self, reason: str) -> None:
        """The block is left: no resume any more; everything fails with ``reason``."""
        self._closing = True
        rpc: _RpcClient | None = getattr(self, "_rpc", None)
        if rpc is not None:
            rpc.close(reason)  # reports the failure, unless the connection is down already
        message = f"{DISCONNECTED}: {reason}"
        self._fail_for_good(message)
        self._finish_routes(message)

    async def _usable_rpc(self) -> _RpcClient:
        """The connection to send a call on; waits while the session is being resumed.

        Raises:
            ConnectionLost: the connection broke for good.
        """
        while True:
            failure = self._final_failure
            if failure is not None:
                await trio.lowlevel.checkpoint()  # failing at once is a checkpoint too
                raise ConnectionLost(failure)
            if self._usable.is_set():
                return self._rpc
            await self._usable.wait()

    async def _call(
        self,
        params: RequestParams,
        result_type: type[_R],
        *,
        resend: bool = False,
        route: _Route | None = None,
    ) -> _R:
        """Send a request, on the current connection, and return its typed result.

        A call made while the session is being resumed waits for the resume. ``resend``:
        the call is safe to repeat, so if the connection breaks before the answer, it is
        sent again on the resumed session; otherwise that raises ConnectionLost.

        Raises:
            ConnectionLost: the connection broke (for good, or during a call that is not
                resent), or ``route``'s process could not be recovered after a resume.
            RemoteError: the server answered with an error.
        """
        while True:
            rpc = await self._usable_rpc()
            if route is not None and route.lost is not None:
                await trio.lowlevel.checkpoint()
                raise ConnectionLost(route.lost)
            try:
                call = await rpc.start_call(params)
            except ConnectionLost:
                continue  # nothing was sent; wait for the resume (or fail for good)
            try:
                return await rpc.wait(call, result_type)
            except ConnectionLost:
                if not resend or self._final_failure is not None or not self._recovering:
                    raise

    # -- resume ----------------------------------------------------------------------------

    async def _recover(self, lost: str) -> None:
        """Resume the session on a new connection, or fail it for good; a backend task."""
        deadline = trio.current_time() + self.resume_deadline
        last_error = "no attempt finished"
        attempt = 0
        with trio.move_on_at(deadline):
            while True:
                if attempt:
                    await trio.sleep(_backoff_delay(attempt))
                attempt += 1
                try:
                    await self._resume_once()
                except _Retry as exc:
                    last_error = str(exc)
                    continue
                except _GiveUp as exc:
                    self._fail_for_good(f"{lost}; {exc}")
                    return
                self._recovering = False
                self._resumes += 1
                for route in self._routes.values():
                    route.end_catch_up()
                return
        self._fail_for_good(
            f"{lost}; the session could not be resumed within {self.resume_deadline:g} s "
            f"({attempt} attempts; the last one: {last_error})"
        )

    async def _resume_once(self) -> None:
        """One attempt: connect, ``initialize {resumeSessionId}``, catch up every process.

        Raises:
            _Retry: worth another attempt (cannot connect, -32010, the connection broke).
            _GiveUp: the server no longer has the session.
        """
        assert self._connections is not None
        assert self.session_id is not None
        for route in self._routes.values():
            route.begin_catch_up()
        deadline = trio.current_time() + RESUME_ATTEMPT_TIMEOUT
        rpc: _RpcClient | None = None
        with trio.move_on_at(deadline):
            try:
                rpc = await self._connections.start(self._run_connection)
            except ConnectionLost as exc:
                raise _Retry(str(exc)) from None
        if rpc is None:
            raise _Retry(f"not connected within {RESUME_ATTEMPT_TIMEOUT} s")
        try:
            result: InitializeResult | None = None
            with trio.move_on_at(deadline):
                result = await rpc.call(
                    InitializeParams(
                        client_name=self._client_name, resume_session_id=self.session_id
                    ),
                    InitializeResult,
                )
            if result is None:
                raise _Retry(f"no answer to initialize within {RESUME_ATTEMPT_TIMEOUT} s")
            if result.session_id != self.session_id:
                raise _GiveUp(
                    f"the server answered the resume of session {self.session_id} with "
                    f"session {result.session_id}"
                )
            rpc.notify(InitializedNotification())
        except RemoteError as exc:
            rpc.close("the resume was refused")
            if exc.code == SESSION_ALREADY_ATTACHED:
                raise _Retry(exc.message) from None
            raise _GiveUp(
                f"the server refused to resume session {self.session_id}: {exc.message}"
            ) from None
        except ConnectionLost as exc:
            if rpc.server_shut_down:
                raise _GiveUp(str(exc)) from None
            raise _Retry(str(exc)) from None
        except BaseException:
            rpc.close("the resume attempt was abandoned")
            raise
        self.extensions = frozenset(result.extensions)
        self._rpc = rpc
        self._usable.set()  # calls go on the new connection, during the catch-up too
        broken = False

        async def catch_up(route: _Route) -> None:
            nonlocal broken
            try:
                await self._catch_up(rpc, route)
            except ConnectionLost:
                broken = True

        async with trio.open_nursery() as nursery:
            for route in list(self._routes.values()):
                if route.started:
                    nursery.start_soon(catch_up, route)
        if rpc.server_shut_down:
            raise _GiveUp(rpc.failure or "the exec server shut down")
        if broken or rpc.failure is not None:
            raise _Retry(rpc.failure or "the connection broke during the catch-up")

    async def _catch_up(self, rpc: _RpcClient, route: _Route) -> bool:
        """Read what ``route``'s process missed and splice it in; see the module docstring.

        Returns False if the server does not know the process (a start that did not
        reach it). A process whose history is gone is failed and terminated.

        Raises:
            ConnectionLost: the connection broke.
        """
        process_id = route.process_id
        while route.receiving:
            after = route.last_seq
            final = route.caught_up
            # The last read (one chunk at most) also tells the server that the client has
            # everything up to the live events, which releases what it held for us.
            params = ReadParams(
                process_id=process_id,
                after_seq=after,
                max_bytes=0 if final else CATCH_UP_READ_BYTES,
            )
            try:
                result = await rpc.call(params, ReadResult)
            except RemoteError as exc:
                if "is starting" in exc.message:  # the reference, still spawning it
                    await trio.sleep(0.01)
                    continue
                if not route.started:
                    return False
                self._lose(route, f"the server no longer knows it ({exc.message})")
                return True
            problem = route.splice(result, after)
            if problem is not None:
                self._lose(route, problem)
                return True
            if route.stopped():
                self._unroute(route)  # its Closed was ordered
            if final or not result.chunks:
                break
            await self._budget.wait_below_limit()
        route.started = True
        route.end_catch_up()
        return True

    def _lose(self, route: _Route, problem: str) -> None:
        """A process could not be recovered: fail it and terminate it on the server."""
        message = f"{DISCONNECTED}: failed to recover process {route.process_id!r}: {problem}"
        route.lost = message
        self._unroute(route)
        route.fail(message)
        assert self._nursery is not None
        self._nursery.start_soon(self._terminate_quietly, route.process_id)

    async def _terminate_quietly(self, process_id: str) -> None:
        with trio.move_on_after(SHUTDOWN_TIMEOUT):
            try:
                await self._call(TerminateParams(process_id=process_id), TerminateResult)
            except TrioExecError:
                pass

    # -- notifications ---------------------------------------------------------------------

    async def _dispatch(self, message: Notification) -> None:
        try:
            params = decode_notification(message)
        except RpcDecodeError as exc:
            if exc.code != METHOD_NOT_FOUND:  # unknown methods are ignored
                self._bad_notification(message, exc)
            return
        match params:
            case InitializedNotification():
                pass
            case OutputNotification() | ExitedNotification() | ClosedNotification():
                route = self._routes.get(params.process_id)
                if route is None:
                    return  # unknown or finished process
                route.push(params)
                if not route.receiving:
                    del self._routes[params.process_id]
                await self._budget.wait_below_limit()

    def _bad_notification(self, message: Notification, exc: RpcDecodeError) -> None:
        """A process notification that did not decode fails its process, if known."""
        params = message.params
        process_id = params.get("processId") if isinstance(params, dict) else None
        if not isinstance(process_id, str):
            return
        route = self._routes.pop(process_id, None)
        if route is not None:
            route.fail(f"protocol error: bad `{message.method}` notification: {exc.message}")

    def _fail_routes(self, message: str) -> None:
        for route in {*self._routes.values(), *self._publishing}:
            route.fail(message)
        self._routes.clear()

    def _finish_routes(self, message: str) -> None:
        """The backend is closing: every log gets what arrived, then fails (unless closed)."""
        for route in {*self._routes.values(), *self._publishing}:
            route.finish_now(message)
        self._routes.clear()

    def _route(self, process_id: str, log: ProcessLog) -> _Route:
        """Register a route for ``process_id`` and start its publisher."""
        route = _Route(process_id, log, self._budget)
        self._routes[process_id] = route
        self._publishing.add(route)
        assert self._nursery is not None, "the backend is not running"
        self._nursery.start_soon(partial(self._publish, route))
        return route

    async def _publish(self, route: _Route) -> None:
        try:
            await route.publish()
        finally:
            self._publishing.discard(route)

    def _unroute(self, route: _Route) -> None:
        if self._routes.get(route.process_id) is route:
            del self._routes[route.process_id]

    # -- processes -------------------------------------------------------------------------

    def open_process(
        self,
        argv: Sequence[Arg],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        tty: bool = False,
        pipe_stdin: bool = False,
        arg0: str | None = None,
        process_id: str | None = None,
        grace: float = DEFAULT_GRACE,
        retain_bytes: int = DEFAULT_RETAINED_BYTES,
        extra_env: Mapping[str, str] | None = None,
        window: tuple[int, int] | None = None,
    ) -> AbstractAsyncContextManager[RemoteProcess]:
        """See :meth:`ExecBackend.open_process`. Differences on a remote server:

        Args:
            cwd: an absolute path *on the server*, sent as a ``file://`` URI; a relative
                path raises ValueError. Default: the server's working directory, which
                it reported in ``initialize`` (:attr:`environment_info`); from a server
                that reported none, :data:`FALLBACK_CWD`. Never this client's directory.
            env: the child's exact environment, sent as is. Default: the *server's*
                environment, whole: the request carries ``env: {}`` and the ``envPolicy``
                ``{inherit: "all", ignoreDefaultExcludes: true}``, so the server does not
                drop its variables named like ``*KEY*``, ``*SECRET*`` or ``*TOKEN*``
                (the reference's default excludes); the reference still leaves out its
                own launch variables (``CODEX_EXEC_SERVER_*``, ``NODE_REPL_AUTH_TOKEN``,
                ...). Nothing of this client's environment is sent.
            extra_env: added over ``env`` when it is given; otherwise sent as the
                policy's ``set``: the server's environment plus these variables.
            window: with the ``windowSize`` extension, sent in ``process/start``. A
                server with ``resize`` but not ``windowSize`` (an older trio_exec) starts
                the terminal at 24x80 and is resized before the block is entered, so the
                child may see 24x80 first and then get SIGWINCH. A server with neither
                (the reference) raises :class:`UnsupportedOperation`.
            grace: used only when the server advertises ``gracefulTerminate``; otherwise
                leaving the block with the child running kills its group at once.

        Raises:
            SpawnError: the server could not start the program (JSON-RPC error -32603);
                ``errno`` is parsed from the message's ``(os error N)`` (the errno's
                subclass, as locally: ``FileNotFoundError``, ...). ``filename`` is the
                file at fault when the server says which (trio_exec's server does, in the
                error's data); the reference's message alone cannot tell a bad program
                from a bad ``cwd``, so then ``filename`` is None and the message names
                both.
            ValueError: bad arguments, here or on the server (-32602); an argv item that
                is not valid UTF-8 (the protocol carries text); a process id that is
                already open on this backend.
            UnsupportedOperation: ``window`` with a server that cannot size a terminal.
            RemoteError: any other error answer (e.g. a process id the server still
                retains).
            ConnectionLost: the connection is broken.

        Leaving the block with the child running sends ``process/terminate`` (with
        ``graceMs`` when supported) and waits for the exit and the end of output, at most
        ``grace`` (when graceful) plus :data:`SHUTDOWN_TIMEOUT` seconds. With the
        ``signals`` extension, the server is also asked to SIGKILL what is left of the
        process group (grandchildren) once the child exited, as a local session does,
        and a trio_exec server then ends the output within its ``CLOSE_DRAIN_TIMEOUT``
        even if a process that left the group holds it open; if the child had already
        exited, the wait is then at most :data:`SHUTDOWN_TIMEOUT` seconds. Without it
        (the reference) grandchildren that outlive the child are the server's to clean up
        (the reference kills them when the session expires), and if the child had already
        exited the wait for the end of output is at most :data:`CLOSE_TIMEOUT` seconds. If
        the server does not answer in time, the process's log fails and the block is left
        anyway. After a connection loss, leaving never waits.

        **Cancellation:** if cancelled while starting, the client waits (shielded, at most
        :data:`SHUTDOWN_TIMEOUT` seconds) for the start to finish and terminates the
        process.
        """
        args = check_argv(argv, text=True)
        check_seconds("grace", grace)
        if arg0 is not None and (not isinstance(arg0, str) or "\0" in arg0):
            raise ValueError("arg0 must be a str without NUL")
        if process_id is not None and not isinstance(process_id, str):
            raise TypeError(f"process_id must be a str, not {type(process_id).__name__}")
        size = check_window(window, bool(tty))
        resize_after_start: tuple[int, int] | None = None
        if size is not None and not self.supports(Extension.WINDOW_SIZE):
            if not self.supports(Extension.RESIZE):
                raise UnsupportedOperation(
                    "window= needs the exec server's `windowSize` (or `resize`) protocol "
                    "extension, which this server does not advertise (codex exec-server "
                    "0.169 has none: its terminals are 24x80)"
                )
            resize_after_start, size = size, None
        extra = {} if extra_env is None else check_env(extra_env)
        params = StartParams(
            process_id=new_process_id() if process_id is None else process_id,
            argv=tuple(args),
            cwd=self._cwd_uri(cwd),
            env={} if env is None else {**check_env(env), **extra},
            tty=bool(tty),
            pipe_stdin=bool(pipe_stdin),
            arg0=arg0,
            env_policy=None if env is not None else _inherit_server_environment(extra),
            window_size=None if size is None else WindowSize(rows=size[0], cols=size[1]),
        )
        return self._open(
            params,
            grace=grace,
            log=ProcessLog(retain_bytes=retain_bytes),
            resize_after_start=resize_after_start,
        )

    def _cwd_uri(self, cwd: str | os.PathLike[str] | None) -> str:
        """The ``cwd`` of ``process/start``: the caller's, else the server's own."""
        if cwd is None:
            info = self.environment_info
            if info is not None and info.cwd is not None:
                return info.cwd
            return path_to_file_uri(FALLBACK_CWD)
        directory = os.fspath(cwd)
        if not isinstance(directory, str):
            raise TypeError("cwd must be a str path")
        if not os.path.isabs(directory):
            raise ValueError(f"cwd must be an absolute path on the server, not {directory!r}")
        return path_to_file_uri(directory)

    @asynccontextmanager
    async def _open(
        self,
        params: StartParams,
        *,
        grace: float,
        log: ProcessLog,
        resize_after_start: tuple[int, int] | None = None,
    ) -> AsyncIterator[RemoteProcess]:
        process_id = params.process_id
        if process_id in self._live:
            raise ValueError(f"process id {process_id!r} is already open on this backend")
        if self._final_failure is not None:
            await trio.lowlevel.checkpoint()  # entering checkpoints even when it fails
            self._check()
        self._live.add(process_id)
        try:
            # Registered before the request: the server may send events before answering.
            route = self._route(process_id, log)
            proc = RemoteProcess(process_id, self, log, route, tty=params.tty)
            try:
                await self._start(proc, params)
            except BaseException:
                self._unroute(route)
                route.stop()
                raise
            try:
                if resize_after_start is not None:
                    await proc.resize(*resize_after_start)
                yield proc
            finally:
                with trio.CancelScope(shield=True):
                    await proc._shutdown(grace)
        finally:
            self._live.discard(process_id)

    async def _start(self, proc: RemoteProcess, params: StartParams) -> None:
        while True:
            rpc = await self._usable_rpc()
            try:
                call = await rpc.start_call(params)
            except ConnectionLost:
                continue  # not sent: wait for the resume (or fail for good)
            try:
                await call.done.wait()
            except BaseException:
                # Cancelled: the server may be starting it. Wait (bounded) for the answer,
                # then make sure nothing is left running.
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(SHUTDOWN_TIMEOUT):
                        await call.done.wait()
                    if call.reply is None:
                        rpc.abandon(call)
                    if call.reply is None or call.reply.error is None:
                        await proc._shutdown(0.0, started=call.reply is not None)
                raise
            try:
                call.result(StartResult)
            except RemoteError as exc:
                raise _start_error(exc, params, default_cwd=self._cwd_uri(None)) from None
            except ConnectionLost:
                if self._final_failure is not None or not self._recovering:
                    raise
                # The connection broke before the answer: once resumed, a read tells
                # whether the start reached the server (then its events are caught up).
                if await self._probe_start(proc._route):
                    return
                continue  # it did not: start it again
            proc._route.started = True
            return

    async def _probe_start(self, route: _Route) -> bool:
        """After a resume: whether the server has ``route``'s process (then caught up)."""
        while True:
            rpc = await self._usable_rpc()
            try:
                return await self._catch_up(rpc, route)
            except ConnectionLost:
                self._check()


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
      is being resumed, operations wait for it; see the module docstring for which calls
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
        self.tty: Final = tty
        """Whether the child runs on a pseudo-terminal."""
        self._backend = backend
        self._route = route
        self._write_lock = trio.Lock()
        self._write_prefix = uuid.uuid4().hex[:12]
        self._write_counter = itertools.count(1)
        self._unacknowledged_write: tuple[str, bytes] | None = None

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
                # Kept until answered: after a lost connection, the resumed session gets
                # it again under the same id, which the server never writes twice.
                self._unacknowledged_write = (write_id, piece)
                result = await self._call(
                    WriteParams(process_id=self.process_id, chunk=piece, write_id=write_id),
                    WriteResult,
                    resend=True,
                )
                self._unacknowledged_write = None
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


# -- helpers --------------------------------------------------------------------------------


def _backoff_delay(attempt: int) -> float:
    """Seconds to wait before resume attempt ``attempt + 1`` (``attempt`` >= 1)."""
    delay = min(RESUME_BACKOFF_MAX, RESUME_BACKOFF_INITIAL * 2.0 ** (attempt - 1))
    return delay * random.uniform(1 - RESUME_BACKOFF_JITTER, 1)


_TRANSPORT_ERRORS: Final = (
    ConnectionLost,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


def _is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) says the transport went away."""
    return all(
        isinstance(leaf, _TRANSPORT_ERRORS) or type(leaf).__module__.startswith("trio_websocket")
        for leaf in leaf_exceptions(exc)
    )


_PATH_ERRNOS: Final = frozenset(
    {_errno.ENOENT, _errno.ENOTDIR, _errno.EACCES, _errno.ELOOP, _errno.ENAMETOOLONG}
)
"""Errnos that a bad working directory gives as well as a bad program."""


def _inherit_server_environment(extra: dict[str, str]) -> dict[str, object]:
    """The ``envPolicy`` that gives a child the server's whole environment plus ``extra``.

    Every field is sent: the reference requires all five. ``ignoreDefaultExcludes``, since
    the reference's default excludes (``*KEY*``, ``*SECRET*``, ``*TOKEN*``) would also drop
    variables such as ``GPG_KEY``, ``KEYTIMEOUT`` or ``GITHUB_TOKEN`` that the user set on
    the server on purpose, which ``ssh`` and ``docker exec`` pass on.
    """
    return {
        "inherit": "all",
        "ignoreDefaultExcludes": True,
        "exclude": [],
        "set": extra,
        "includeOnly": [],
    }


def _start_error(exc: RemoteError, params: StartParams, *, default_cwd: str) -> Exception:
    """Map an error answer to ``process/start`` to the exception to raise.

    ``default_cwd`` is the directory sent when the caller gave none (the server's own).
    """
    if exc.code == INTERNAL_ERROR:
        return _spawn_error(exc, params, default_cwd=default_cwd)
    if exc.code == INVALID_PARAMS:
        return ValueError(f"the exec server rejected the arguments: {exc.message}")
    return exc


def _spawn_error(exc: RemoteError, params: StartParams, *, default_cwd: str) -> SpawnError:
    """The :class:`SpawnError` for a -32603 answer to ``process/start``.

    The message is the OS error text, ending in ``(os error N)``, the errno. trio_exec's
    server also sends ``data: {errno, filename}``, the file at fault. The reference sends
    the message only: then a path error may be the program's or the working directory's,
    and the error says so rather than guess, unless the directory is the server's own
    (``default_cwd``: the caller gave none), which names the program.
    """
    data = exc.data if isinstance(exc.data, dict) else {}
    match = _OS_ERROR.search(exc.message)
    text = exc.message if match is None else exc.message[: match.start()]
    code = data.get("errno")
    if type(code) is not int:
        code = None if match is None else int(match.group(1))
    filename = data.get("filename")
    if isinstance(filename, str):
        return SpawnError(code, text, filename)
    program = params.argv[0]
    directory = params.cwd_path if params.cwd and params.cwd != default_cwd else None
    if code in _PATH_ERRNOS and directory is not None:
        text += (
            f": the program {program!r} or the working directory {directory!r}"
            " (the exec server does not say which)"
        )
        return SpawnError(code, text)
    return SpawnError(code, text, program)


# -- entry points ---------------------------------------------------------------------------


@asynccontextmanager
async def open_remote_backend(
    transport: MessageTransport, *, client_name: str = "trio-exec"
) -> AsyncIterator[RemoteBackend]:
    """Run the protocol over an open transport and yield the :class:`RemoteBackend`.

    Performs ``initialize`` (at most :data:`INITIALIZE_TIMEOUT` seconds) and
    ``initialized``, and records the server's ``sessionId`` and advertised ``extensions``.
    The transport stays the caller's: it is not closed here.

    Raises:
        ConnectionLost: the transport broke, or initialize got no answer in time.
        RemoteError: the server refused ``initialize``.

    Leaving the block fails whatever still uses the connection with
    :class:`ConnectionLost` and stops its tasks. An exception of the block propagates
    as itself.

    **Cancellation:** the connection's tasks are shielded from it until the block is
    left, so that the process blocks inside shut down through a working connection (a
    running child is terminated, and leaving waits for the server's answer, not for a
    timeout); then they are stopped. Nothing is left behind.
    """
    async with _open_backend(
        partial(_borrowed, transport), client_name=client_name, resume_deadline=0.0
    ) as backend:
        yield backend


@asynccontextmanager
async def _open_backend(
    connector: _Connector, *, client_name: str, resume_deadline: float
) -> AsyncIterator[RemoteBackend]:
    """The body of :func:`open_remote_backend` and :func:`connect`."""
    backend = RemoteBackend(connector, client_name=client_name, resume_deadline=resume_deadline)
    # An exception of the block must not cut the close handshakes short: wait_on_error.
    async with open_service_nursery(wait_on_error=True) as host:
        await host.start(backend._run_tasks)
        try:
            assert backend._connections is not None
            # Until it reports started, the connecting task is cancelled with this one.
            await backend._connections.start(partial(backend._run_connection, first=True))
            await backend._initialize(client_name)
            yield backend
        finally:
            # The process blocks nested in this one are left: every RPC client is
            # closed, and the backend's tasks (shielded until now) end.
            backend._close("the client closed the connection")
            backend._left.set()


@asynccontextmanager
async def connect(
    url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    client_name: str = "trio-exec",
    resume_deadline: float = RESUME_DEADLINE,
) -> AsyncIterator[RemoteBackend]:
    """Connect to an exec server's websocket and yield a :class:`RemoteBackend`.

    Args:
        url: ``ws://host:port`` or ``wss://host:port``.
        token: sent as ``Authorization: Bearer <token>``.
        ssl_context: for ``wss://``; default: the system's trust store.
        client_name: sent in ``initialize``.
        resume_deadline: how long, in seconds, to try to resume the session after the
            connection is lost (:data:`RESUME_DEADLINE`); 0 never resumes.

    Raises:
        ConnectionLost: the server cannot be reached, refused the upgrade, or did not
            answer ``initialize`` in time.
        ValueError: ``url`` is not a websocket URL, or ``resume_deadline`` is negative.

    Processes opened on the backend must be left before the ``connect`` block is (the
    usual nesting does this). If the connection breaks, the backend reconnects and resumes
    the session (see the module docstring): consumers see no gap and no duplicate, calls
    wait for the resume. If that fails (or ``resume_deadline`` is 0), every pending and
    later call raises :class:`ConnectionLost` and every open process's events end with
    ``Failed``. A server that shut down gracefully (close code 1001) is not resumed: each
    process ends with the events the server sent before closing, and the failure says
    ``the exec server shut down``.

    **Cancellation:** as with :func:`open_remote_backend`, the connection keeps working,
    shielded, until the process blocks inside were left (their children terminated);
    then it is closed, the close handshake taking at most :data:`CLOSE_TIMEOUT` seconds.
    """
    check_seconds("resume_deadline", resume_deadline)
    connector = partial(open_websocket_transport, url, token=token, ssl_context=ssl_context)
    async with _open_backend(
        connector, client_name=client_name, resume_deadline=resume_deadline
    ) as backend:
        yield backend
