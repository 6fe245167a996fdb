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
subscription is ``retain_bytes`` behind. Ordered events wait for it in a queue; when the
queues of a connection hold more than :data:`READ_AHEAD_BYTES` of output, the reader
stops reading, which holds back the server and, through it, the child. Memory stays
bounded and no output is lost, however slow the consumer.

Failure. When the transport breaks (or the server breaks the protocol), every pending and
every later call raises :class:`ConnectionLost`, and every open process's log fails with
``exec-server transport disconnected: <reason>`` (after what was already received is put
in the log: a process whose ``closed`` arrived still ends with Closed), so its
subscriptions yield ``Failed`` and end, and reads return ``closed=True`` with ``failure``
set. Nothing waits forever.

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

import itertools
import math
import os
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
    ExecBackend,
    ExecProcess,
    check_argv,
    check_dimensions,
    check_env,
    check_seconds,
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
    ClosedNotification,
    CloseStdinParams,
    CloseStdinResult,
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
from ._transport import MessageTransport, open_websocket_transport

__all__ = [
    "CLOSE_TIMEOUT",
    "DISCONNECTED",
    "INITIALIZE_TIMEOUT",
    "MAX_IN_FLIGHT_REQUESTS",
    "MAX_REORDER_BYTES",
    "MAX_REORDER_EVENTS",
    "READ_AHEAD_BYTES",
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
exited (a grandchild may hold its output open). When it passes, the log fails."""

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
            self._fail(f"{DISCONNECTED}: {exc}")

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self._transport.receive()
                await self._handle(frame)
        except ConnectionLost as exc:
            self._fail(f"{DISCONNECTED}: {exc}")
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
      while a subscription is behind (backpressure). Queued output counts toward the
      connection's :class:`_Budget`, which stops the reader when full.

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

    # -- ordering (the reader) -------------------------------------------------------------

    def push(self, event: ProcessNotification) -> None:
        """Take one notification; queue it and every buffered one it unblocks."""
        seq = event.seq
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
        if self.receiving and (
            len(self._pending) > MAX_REORDER_EVENTS or self._pending_bytes > MAX_REORDER_BYTES
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
    """Why the connection broke, or None while it works."""


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
    """

    def __init__(self, transport: MessageTransport) -> None:
        self._rpc = _RpcClient(
            transport, on_notification=self._dispatch, on_failure=self._fail_routes
        )
        self._budget = _Budget(READ_AHEAD_BYTES)
        self._routes: dict[str, _Route] = {}  # taking notifications
        self._publishing: set[_Route] = set()  # publisher task running
        self._nursery: trio.Nursery | None = None  # for the publishers
        self._live: set[str] = set()
        self.session_id: str | None = None
        """The server's session id (for a future resume), once initialized."""
        self.extensions: frozenset[str] = frozenset()
        """The protocol extensions the server advertised (see :class:`Extension`)."""

    def __repr__(self) -> str:
        state = "broken" if self._rpc.failure is not None else "connected"
        return (
            f"<RemoteBackend {state} session={self.session_id!r} "
            f"extensions={sorted(self.extensions)} with {len(self._live)} open sessions>"
        )

    def supports(self, extension: Extension) -> bool:
        """Whether the server advertised ``extension``."""
        return extension.value in self.extensions

    @property
    def failure(self) -> str | None:
        """Why the connection broke, or None while it works."""
        return self._rpc.failure

    def statistics(self) -> RemoteStatistics:
        """Counters of this connection, for tests and monitoring."""
        return RemoteStatistics(
            requests_in_flight=self._rpc.in_flight,
            max_requests_in_flight=self._rpc.max_in_flight,
            open_processes=len(self._live),
            routed_processes=len(self._routes),
            failure=self._rpc.failure,
        )

    def _require(self, extension: Extension, what: str) -> None:
        if not self.supports(extension):
            raise UnsupportedOperation(
                f"{what} needs the exec server's `{extension.value}` protocol extension, "
                f"which this server does not advertise (codex exec-server 0.169 has none)"
            )

    async def _initialize(self, client_name: str) -> None:
        with trio.move_on_after(INITIALIZE_TIMEOUT):
            result = await self._rpc.call(
                InitializeParams(client_name=client_name), InitializeResult
            )
            self.session_id = result.session_id
            self.extensions = frozenset(result.extensions)
            self._rpc.notify(InitializedNotification())
            return
        self._rpc.close(f"no answer to initialize within {INITIALIZE_TIMEOUT} s")
        self._rpc.check()

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
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        tty: bool = False,
        pipe_stdin: bool = False,
        arg0: str | None = None,
        process_id: str | None = None,
        grace: float = DEFAULT_GRACE,
        retain_bytes: int = DEFAULT_RETAINED_BYTES,
    ) -> AbstractAsyncContextManager[RemoteProcess]:
        """See :meth:`ExecBackend.open_process`. Differences on a remote server:

        Args:
            cwd: an absolute path *on the server*; default: this client's current
                directory (``os.getcwd()``), since the protocol requires one. It is sent
                as a ``file://`` URI. A relative path raises ValueError.
            env: the child's exact environment, sent as is; default: a copy of this
                client's ``os.environ`` (not the server's environment).
            grace: used only when the server advertises ``gracefulTerminate``; otherwise
                leaving the block with the child running kills its group at once.

        Raises:
            SpawnError: the server could not start the program (JSON-RPC error -32603);
                ``errno`` is parsed from the message's ``(os error N)`` when present.
            ValueError: bad arguments, here or on the server (-32602); a process id that is
                already open on this backend.
            RemoteError: any other error answer (e.g. a process id the server still
                retains).
            ConnectionLost: the connection is broken.

        Leaving the block with the child running sends ``process/terminate`` (with
        ``graceMs`` when supported) and waits for the exit and the end of output, at most
        ``grace`` (when graceful) plus :data:`SHUTDOWN_TIMEOUT` seconds; if the child had
        already exited, it waits at most :data:`CLOSE_TIMEOUT` seconds for the end of
        output. With the ``signals`` extension, the server is also asked to SIGKILL what
        is left of the process group (grandchildren) once the child exited, as a local
        session does; without it (the reference) grandchildren that outlive the child are
        the server's to clean up (the reference kills them when the session expires). If
        the server does not answer in time, the process's log fails and the block is left
        anyway. After a connection loss, leaving never waits.

        **Cancellation:** if cancelled while starting, the client waits (shielded, at most
        :data:`SHUTDOWN_TIMEOUT` seconds) for the start to finish and terminates the
        process.
        """
        args = check_argv(argv)
        check_seconds("grace", grace)
        if arg0 is not None and (not isinstance(arg0, str) or "\0" in arg0):
            raise ValueError("arg0 must be a str without NUL")
        if process_id is not None and not isinstance(process_id, str):
            raise TypeError(f"process_id must be a str, not {type(process_id).__name__}")
        directory = os.getcwd() if cwd is None else os.fspath(cwd)
        if not isinstance(directory, str):
            raise TypeError("cwd must be a str path")
        if not os.path.isabs(directory):
            raise ValueError(f"cwd must be an absolute path on the server, not {directory!r}")
        params = StartParams(
            process_id=new_process_id() if process_id is None else process_id,
            argv=tuple(args),
            cwd=path_to_file_uri(directory),
            env=check_env(os.environ if env is None else env),
            tty=bool(tty),
            pipe_stdin=bool(pipe_stdin),
            arg0=arg0,
        )
        return self._open(params, grace=grace, log=ProcessLog(retain_bytes=retain_bytes))

    @asynccontextmanager
    async def _open(
        self, params: StartParams, *, grace: float, log: ProcessLog
    ) -> AsyncIterator[RemoteProcess]:
        process_id = params.process_id
        if process_id in self._live:
            raise ValueError(f"process id {process_id!r} is already open on this backend")
        self._rpc.check()
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
                yield proc
            finally:
                with trio.CancelScope(shield=True):
                    await proc._shutdown(grace)
        finally:
            self._live.discard(process_id)

    async def _start(self, proc: RemoteProcess, params: StartParams) -> None:
        call = await self._rpc.start_call(params)
        try:
            await call.done.wait()
        except BaseException:
            # Cancelled: the server may be starting it. Wait (bounded) for the answer,
            # then make sure nothing is left running.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(SHUTDOWN_TIMEOUT):
                    await call.done.wait()
                if call.reply is None:
                    self._rpc.abandon(call)
                if call.reply is None or call.reply.error is None:
                    await proc._shutdown(0.0, started=call.reply is not None)
            raise
        try:
            call.result(StartResult)
        except RemoteError as exc:
            raise _start_error(exc, params) from None


class RemoteProcess(ExecProcess):
    """A process running on an exec server; see :class:`ExecProcess`.

    Obtained from :meth:`RemoteBackend.open_process`, never built directly.

    * :meth:`read` is answered from the local log, which holds what the server pushed
      (``process/read`` is never sent): no round trip, the same semantics as a local
      process, and ``first_retained_seq`` is always known.
    * :meth:`write` sends ``process/write`` with a fresh ``writeId`` per request; the id
      and bytes of a write that got no answer are kept, so that a resumed session could
      resend them without the child reading them twice (resume is not implemented yet).
      After a connection loss it raises :class:`ConnectionLost`; after the block was left
      it returns ``UNKNOWN_PROCESS`` (no request is sent).
    * :meth:`close_stdin` needs the ``closeStdin`` extension; :meth:`resize` needs
      ``resize``; :meth:`signal` with anything but SIGINT needs ``signals``. Without them
      they raise :class:`UnsupportedOperation` (the reference server has none of them;
      on a terminal, ``write(b"\\x04")`` ends a read like Ctrl-D).
    * :meth:`terminate` uses ``graceMs`` when the server supports ``gracefulTerminate``;
      otherwise the server kills the process group at once and ``grace`` is ignored.
    * Every operation raises :class:`ConnectionLost` once the connection is broken.
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
        self._rpc = backend._rpc
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
        return await self._rpc.call(params, ReadResult)

    # -- operations ------------------------------------------------------------------------

    async def write(self, data: bytes) -> WriteStatus:
        """See :meth:`ExecProcess.write`.

        Writes are sent one at a time per process, in order, never interleaved; data
        above :data:`WRITE_CHUNK_BYTES` goes in several requests (stopping at the first
        that is not accepted). The status is the server's.

        Raises:
            ConnectionLost: the connection is broken (the bytes may or may not have
                reached the child if it broke during the call).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        payload = bytes(data)
        if self._gone:
            await trio.lowlevel.checkpoint()
            return WriteStatus.UNKNOWN_PROCESS
        self._rpc.check()
        async with self._write_lock:
            offset = 0
            while True:
                piece = payload[offset : offset + WRITE_CHUNK_BYTES]
                write_id = self._new_write_id()
                # Kept until answered: after a lost connection, a resumed session could
                # resend it under the same id, which the server never writes twice.
                self._unacknowledged_write = (write_id, piece)
                result = await self._rpc.call(
                    WriteParams(process_id=self.process_id, chunk=piece, write_id=write_id),
                    WriteResult,
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
            ConnectionLost: the connection is broken.
        """
        self._backend._require(Extension.CLOSE_STDIN, "closing stdin")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return WriteStatus.UNKNOWN_PROCESS
        self._rpc.check()
        async with self._write_lock:
            result = await self._rpc.call(
                CloseStdinParams(process_id=self.process_id), CloseStdinResult
            )
        return result.status

    async def signal(self, sig: int | _signal.Signals) -> None:
        """See :meth:`ExecProcess.signal`.

        Raises:
            UnsupportedOperation: the protocol has no name for ``sig``, or ``sig`` is not
                SIGINT and the server lacks the ``signals`` extension.
            ConnectionLost: the connection is broken.
        """
        signum = _signal.Signals(sig)
        try:
            name = ProcessSignal.from_signum(signum)
        except ValueError as exc:
            raise UnsupportedOperation(str(exc)) from None
        if name.extension is not None:
            self._backend._require(name.extension, f"sending {signum.name}")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return
        await self._rpc.call(SignalParams(process_id=self.process_id, signal=name), SignalResult)

    async def resize(self, rows: int, cols: int) -> None:
        """See :meth:`ExecProcess.resize`.

        Raises:
            UnsupportedOperation: no terminal, or the server lacks the ``resize``
                extension.
            ConnectionLost: the connection is broken.
        """
        check_dimensions(rows, cols)
        if not self.tty:
            raise UnsupportedOperation("resize needs a process started with tty=True")
        self._backend._require(Extension.RESIZE, "resizing the terminal")
        if self._gone:
            await trio.lowlevel.checkpoint()
            return
        await self._rpc.call(
            ResizeParams(process_id=self.process_id, rows=rows, cols=cols), ResizeResult
        )

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
            if self._log.exited is None and self._rpc.failure is None:
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
        return (await self._rpc.call(params, TerminateResult)).running

    async def _shutdown(self, grace: float, *, started: bool = True) -> None:
        """Leave the block: terminate, wait (bounded) for the end, stop routing. Shielded."""
        log = self._log
        self._route.release()  # nobody will consume the subscriptions any more
        try:
            if not log.finished and self._rpc.failure is None:
                if log.exited is None or not started:
                    graceful = self._backend.supports(Extension.GRACEFUL_TERMINATE)
                    with trio.move_on_after((grace if graceful else 0.0) + SHUTDOWN_TIMEOUT):
                        await self._send_terminate(grace)
                        if started:
                            await self._wait_finished()
                else:
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        if self._backend.supports(Extension.SIGNALS):
                            # Grandchildren may still hold the output open: end the group.
                            await self._rpc.call(
                                SignalParams(process_id=self.process_id, signal=ProcessSignal.KILL),
                                SignalResult,
                            )
                        await self._wait_finished()
            elif started and log.closed is not None and self._backend.supports(Extension.SIGNALS):
                # The output ended, but a grandchild that closed its output may live on:
                # end the group, as a local session does when its block is left.
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._rpc.call(
                        SignalParams(process_id=self.process_id, signal=ProcessSignal.KILL),
                        SignalResult,
                    )
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

    async def _wait_finished(self) -> None:
        while not self._log.finished:
            await self._log.wait_changed()


# -- helpers --------------------------------------------------------------------------------


def _start_error(exc: RemoteError, params: StartParams) -> Exception:
    """Map an error answer to ``process/start`` to the exception to raise."""
    if exc.code == INTERNAL_ERROR:
        match = _OS_ERROR.search(exc.message)
        if match is None:
            return SpawnError(None, exc.message, params.argv[0])
        return SpawnError(int(match.group(1)), exc.message[: match.start()], params.argv[0])
    if exc.code == INVALID_PARAMS:
        return ValueError(f"the exec server rejected the arguments: {exc.message}")
    return exc


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

    **Cancellation:** the connection's tasks are stopped; nothing else is left behind.
    """
    backend = RemoteBackend(transport)
    rpc = backend._rpc
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        backend._nursery = nursery
        await nursery.start(rpc.run)
        try:
            await backend._initialize(client_name)
            yield backend
        except BaseException as exc:  # re-raised below, after the nursery closed
            body_error = exc
        finally:
            reason = "the client closed the connection"
            rpc.close(reason)
            backend._finish_routes(f"{DISCONNECTED}: {reason}")
            nursery.cancel_scope.cancel()
    if body_error is not None:
        try:
            raise body_error
        finally:
            body_error = None


@asynccontextmanager
async def connect(
    url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    client_name: str = "trio-exec",
) -> AsyncIterator[RemoteBackend]:
    """Connect to an exec server's websocket and yield a :class:`RemoteBackend`.

    Args:
        url: ``ws://host:port`` or ``wss://host:port``.
        token: sent as ``Authorization: Bearer <token>``.
        ssl_context: for ``wss://``; default: the system's trust store.
        client_name: sent in ``initialize``.

    Raises:
        ConnectionLost: the server cannot be reached, refused the upgrade, or did not
            answer ``initialize`` in time.
        ValueError: ``url`` is not a websocket URL.

    Processes opened on the backend must be left before the ``connect`` block is (the
    usual nesting does this). If the connection breaks, every pending and later call
    raises :class:`ConnectionLost` and every open process's events end with ``Failed``.

    **Cancellation:** the connection is closed.
    """
    async with (
        open_websocket_transport(url, token=token, ssl_context=ssl_context) as transport,
        open_remote_backend(transport, client_name=client_name) as backend,
    ):
        yield backend
