"""One connection: the server's side of the RPC peer, its admission, handlers and forwarders.

The reader, writer and outbox are a :class:`~trio_exec._rpc.RpcPeer`, the handshake rules a
:class:`~trio_exec._protocol.ServerConnection`; see :mod:`trio_exec._server` for how the
tasks of a connection work together.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Final

import trio
import trio_websocket

from .._errors import RemoteError
from .._events import Closed, Exited, Failed, Output
from .._log import EventSubscription
from .._protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    SESSION_ALREADY_ATTACHED,
    ClosedNotification,
    CloseStdinParams,
    ConnectionEvent,
    ExitedNotification,
    Extension,
    Ignored,
    InitializeParams,
    InitializeReceived,
    InitializeResult,
    Notification,
    NotificationParams,
    RequestId,
    RequestParams,
    RequestReceived,
    ServerConnection,
    StartParams,
    StartResult,
    WriteParams,
    binary_output_head,
    encode_output_notification,
    make_error_response,
    make_notification,
    make_response,
)
from .._pump import largest_chunk
from .._rpc import RpcPeer
from .._transport import (
    WEBSOCKET_DISCONNECT_TIMEOUT,
    MessageTransport,
    StreamTransport,
    WebSocketTransport,
)
from .environment import _environment_info
from .methods import call, start_process
from .session import _advance, _Entry, _Session, _subscribe, _Unsent

if TYPE_CHECKING:  # the server creates connections
    from .server import ExecServer

__all__ = [
    "END_OF_INPUT_REPLY_TIMEOUT",
    "MAX_IN_FLIGHT_REQUESTS",
    "OUTBOUND_QUEUE_MESSAGES",
    "SERVER_EXTENSIONS",
    "_GOING_AWAY_REASON",
    "_STDIO_PARSE_PREFIX",
    "_Connection",
    "_parse_error_prefix",
    "_websocket_parse_prefix",
]

_logger = logging.getLogger("trio_exec.server")

MAX_IN_FLIGHT_REQUESTS: Final = 1024
"""Requests of one connection that are being handled at once (long-polls included).

A request beyond the bound is answered at once with -32600 ``too many requests in flight``
and not handled; the client may send it again once answers came back. Memory per
connection is bounded by this times the largest response (a ``process/read`` returns at
most the retained output of one process, 1 MiB by default).
"""

OUTBOUND_QUEUE_MESSAGES: Final = 16
"""Encoded messages waiting for the writer task, per connection.

Responses and notifications wait for room; since notifications wait, a client that reads
slowly slows the children (through the event subscriptions) instead of growing memory.
"""

END_OF_INPUT_REPLY_TIMEOUT: Final = 5.0
"""Seconds a connection whose input ended while its session lives on only through it
(stdio: end of file on stdin) still takes to answer the requests it read (``echo REQUEST |
trio-exec serve --listen stdio`` answers). A request still unanswered then (a long-poll)
gets no answer; the answers given are sent, then the session ends."""

SERVER_EXTENSIONS: Final = tuple(
    extension.value for extension in Extension if extension is not Extension.BINARY_OUTPUT
)
"""The extensions this server advertises in the ``initialize`` result: all of them, and
on a transport with binary messages (a websocket, a byte stream)
:attr:`Extension.BINARY_OUTPUT` too."""

_GOING_AWAY_REASON: Final = "the exec server is shutting down"
_STDIO_PARSE_PREFIX: Final = "failed to parse JSON-RPC message from exec-server stdio"


def _parse_error_prefix(transport: MessageTransport) -> str | None:
    """The reference's prefix of malformed-frame errors for this kind of transport."""
    if isinstance(transport, WebSocketTransport):
        remote = transport.websocket.remote
        if isinstance(remote, trio_websocket.Endpoint):
            return _websocket_parse_prefix(str(remote.address), remote.port)
        return None
    if isinstance(transport, StreamTransport):
        return _STDIO_PARSE_PREFIX
    return None


def _websocket_parse_prefix(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"failed to parse websocket JSON-RPC message from exec-server websocket {host}:{port}"


class _Connection:
    """One connection: its peer, its admission of requests and its session."""

    def __init__(
        self,
        server: ExecServer,
        transport: MessageTransport,
        parse_error_prefix: str | None,
        *,
        detachable: bool = False,
    ) -> None:
        self._server = server
        self._rules = ServerConnection(parse_error_prefix=parse_error_prefix)
        self._peer = RpcPeer(
            transport,
            self._rules,
            on_event=self._dispatch,
            on_failure=self._ended,
            outbox_messages=OUTBOUND_QUEUE_MESSAGES,
            close_timeout=WEBSOCKET_DISCONNECT_TIMEOUT,  # as ExecServer closes transports
            # A session that lives only through this connection (stdio): end of input
            # still gets the answers to what was read.
            on_end_of_input=None if detachable else self._answer_what_was_read,
        )
        self.detachable = detachable
        """Whether losing this connection detaches its session (websocket) or ends it."""
        self.session: _Session | None = None
        """Set by ``initialize``; kept after the connection ended (its tasks wind down)."""
        self.host: trio.Nursery | None = None
        """Where a session created on this connection runs (set by ``ExecServer._serve``)."""
        self._slots = trio.Semaphore(server.max_in_flight)
        self._write_tails: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._forwarders = 0
        self._forwarders_changed = trio.lowlevel.ParkingLot()
        self._handled = trio.lowlevel.ParkingLot()
        self._binary_output = False  # extension binaryOutput agreed at initialize
        self.ended = trio.Event()
        """Set once the connection ended and its transport was closed."""

    @property
    def in_flight(self) -> int:
        return self._server.max_in_flight - self._slots.value

    @property
    def queued_messages(self) -> int:
        return self._peer.queued_messages

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._peer.run()
            finally:
                self._leave()
            nursery.cancel_scope.cancel()

    async def _answer_what_was_read(self) -> None:
        """After the end of input: wait (at most :data:`END_OF_INPUT_REPLY_TIMEOUT`
        seconds) until every request read was answered."""
        with trio.move_on_after(END_OF_INPUT_REPLY_TIMEOUT):
            while self.in_flight:
                await self._handled.park()

    def _ended(self, message: str) -> None:
        """The peer is gone (or the outbox was finished and sent): detach (or end) the
        session; the connection ends as :meth:`run` returns."""
        _logger.debug("connection ended: %s", message)
        self._leave()

    def _leave(self) -> None:
        """The connection ends: detach (or end) the session, before the forwarders stop."""
        if self.session is not None:
            self.session.detach(self)

    def abort(self) -> None:
        """End this connection (its session ended under it)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def start_forwarder(self, entry: _Entry, subscription: EventSubscription) -> None:
        assert self._nursery is not None
        self._forwarders += 1
        self._nursery.start_soon(self._forward_counted, entry, subscription)

    async def _forward_counted(self, entry: _Entry, subscription: EventSubscription) -> None:
        try:
            await self._forward(entry, subscription)
        finally:
            self._forwarders -= 1
            self._forwarders_changed.unpark_all()

    async def go_away(self) -> None:
        """The server stops gracefully: end the session's processes, send every final
        notification, then end the connection (``ExecServer._serve`` closes it with 1001).

        **Cancellation:** the connection is left as it is, for ``abort``.
        """
        session = self.session
        if session is not None and session.connection is self:
            await session.finish_processes()
            # Each forwarder ends once it queued its process's `closed`.
            while self._forwarders:
                await self._forwarders_changed.park()
        # The writer sends what is queued, then ends the connection.
        self._peer.finish()
        await self.ended.wait()

    async def send_notification(self, params: NotificationParams) -> None:
        """Send a notification of the session's own (not a process's events) to the client;
        dropped once the connection ended.

        **Cancellation:** nothing was queued.
        """
        await self._peer.send(make_notification(params))

    async def _reply_error(
        self, request_id: RequestId, code: int, message: str, data: object = None
    ) -> None:
        await self._peer.send(make_error_response(request_id, code, message, data))

    # -- dispatch (in the reader task, in arrival order) ---------------------------------

    async def _dispatch(self, event: ConnectionEvent) -> None:
        """Act on what the rules made of a frame (they answered what they refuse)."""
        match event:
            case InitializeReceived():
                await self._initialize(event.request_id, event.params)
            case RequestReceived():
                await self._admit(event.request_id, event.params)
            case Ignored():
                _logger.debug("%s", event.reason)

    async def _admit(self, request_id: RequestId, params: RequestParams) -> None:
        """Start a handler for an exec request, unless the server's limits refuse it."""
        if self._slots.value == 0:
            limit = self._server.max_in_flight
            message = (
                f"too many requests in flight: at most {limit} per connection; "
                "send more once answers came back"
            )
            await self._reply_error(request_id, INVALID_REQUEST, message)
            return
        if isinstance(params, StartParams) and self._server._stopping.is_set():
            await self._reply_error(request_id, INVALID_REQUEST, _GOING_AWAY_REASON)
            return
        self._slots.acquire_nowait()
        turn: tuple[trio.Event | None, trio.Event] | None = None
        if isinstance(params, WriteParams | CloseStdinParams):
            turn = self._take_write_turn(params.process_id)
        assert self._nursery is not None
        self._nursery.start_soon(self._handle, request_id, params, turn)

    def _take_write_turn(self, process_id: str) -> tuple[trio.Event | None, trio.Event]:
        """Queue a write to ``process_id`` behind the writes that arrived before it."""
        previous = self._write_tails.get(process_id)
        mine = trio.Event()
        self._write_tails[process_id] = mine
        return previous, mine

    async def _initialize(self, request_id: RequestId, params: InitializeParams) -> None:
        """Answer ``initialize`` (the rules admitted it: the first of the connection)."""
        if self._server._stopping.is_set():
            await self._refuse_initialize(request_id, INVALID_REQUEST, _GOING_AWAY_REASON)
            return
        resume_id = params.resume_session_id
        if resume_id is None:
            session = _Session(self._server)
            assert self.host is not None
            await self.host.start(session.run)
        else:
            # As in the reference, a failed resume leaves the connection free to
            # initialize again (the client retries -32010 until the old connection is
            # noticed as dead).
            found = self._server._sessions.get(resume_id)
            if found is None or found.ended:
                message = f"unknown session id {resume_id}"
                await self._refuse_initialize(request_id, INVALID_REQUEST, message)
                return
            if found.connection is not None:
                message = f"session {resume_id} is already attached to another connection"
                await self._refuse_initialize(request_id, SESSION_ALREADY_ATTACHED, message)
                return
            session = found
            _logger.info("session %s resumed", resume_id)
        session.attach(self)  # no checkpoint since the checks: no other connection raced us
        self.session = session
        self._binary_output = self._peer.carries_binary and Extension.BINARY_OUTPUT.value in (
            params.extensions or ()
        )
        result = InitializeResult(
            session_id=session.session_id,
            extensions=(
                (*SERVER_EXTENSIONS, Extension.BINARY_OUTPUT.value)
                if self._peer.carries_binary
                else SERVER_EXTENSIONS
            ),
            environment_info=_environment_info(self._server.backend),
        )
        await self._peer.send(self._rules.accept_initialize(request_id, result))
        # Live notifications follow the response; what happened while detached is read.
        session.forward_all(self)

    async def _refuse_initialize(self, request_id: RequestId, code: int, message: str) -> None:
        await self._peer.send(self._rules.refuse_initialize(request_id, code, message))

    # -- handlers (one task per request) ---------------------------------------------------

    async def _handle(
        self,
        request_id: RequestId,
        params: RequestParams,
        turn: tuple[trio.Event | None, trio.Event] | None,
    ) -> None:
        try:
            try:
                if turn is not None:
                    previous, _ = turn
                    if previous is not None:
                        await previous.wait()
                if isinstance(params, StartParams):
                    await self._start(request_id, params)
                    return
                assert self.session is not None
                result = await call(self.session, params)
            except RemoteError as exc:
                await self._reply_error(request_id, exc.code, exc.message, exc.data)
                return
            except Exception as exc:
                _logger.exception("internal error handling %s", type(params).__name__)
                await self._reply_error(request_id, INTERNAL_ERROR, f"internal error: {exc}")
                return
            finally:
                if turn is not None:
                    self._end_write_turn(params, turn[1])
            await self._peer.send(make_response(request_id, result))
        finally:
            self._slots.release()
            self._handled.unpark_all()

    def _end_write_turn(self, params: RequestParams, mine: trio.Event) -> None:
        mine.set()
        assert isinstance(params, WriteParams | CloseStdinParams)
        if self._write_tails.get(params.process_id) is mine:
            del self._write_tails[params.process_id]

    async def _start(self, request_id: RequestId, params: StartParams) -> None:
        assert self.session is not None
        entry = await start_process(self.session, params, self)
        await self._peer.send(make_response(request_id, StartResult(process_id=params.process_id)))
        entry.announced.set()

    async def _forward(self, entry: _Entry, events: EventSubscription) -> None:
        """Send the process's events as notifications, after the start response.

        For a resume after a lost connection, output the client may not have received
        must stay retained. A second subscription trails ``events`` (see :class:`_Unsent`):
        it pins what waits in the outbound queue, at most half of ``retain_bytes``, and
        the last output that the transport took, which may still be in flight (in socket
        buffers) when the connection breaks: at most half of ``retain_bytes``, and little
        enough that the largest chunk (:func:`~trio_exec._pump.largest_chunk`) still fits
        beside it.
        """
        assert entry.proc is not None
        retain = self._server.retain_bytes
        unsent = _Unsent(
            _subscribe(entry.proc),
            limit=max(retain // 2, 1),
            sent_limit=max(min(retain // 2, retain - largest_chunk(retain)), 0),
        )
        _advance(unsent.pin, events.cursor - 1)
        try:
            async with events:
                await entry.announced.wait()
                async for event in events:
                    if isinstance(event, Output):
                        # The hot path: no model layer, no JSON encoder, no str; a binary
                        # frame's header and chunk are written unjoined.
                        size = len(event.data)
                        await unsent.wait_for_room(size)
                        unsent.bytes += size
                        on_sent = partial(unsent.sent, event.seq, size)
                        pid, seq, stream = entry.process_id, event.seq, event.stream
                        if self._binary_output:
                            head = binary_output_head(pid, seq, stream)
                            await self._peer.send_binary((head, event.data), on_sent)
                        else:
                            text = encode_output_notification(pid, seq, stream, event.data)
                            await self._peer.send_encoded(text, on_sent)
                        continue
                    assert isinstance(event, Exited | Closed | Failed)
                    notification = _notification(entry.process_id, event)
                    if notification is None:
                        break
                    seq = event.seq if isinstance(event, Exited | Closed) else 0
                    await unsent.wait_for_room(0)
                    await self._peer.send(notification, partial(unsent.sent, seq, 0))
        finally:
            unsent.pin.close()


def _notification(process_id: str, event: Exited | Closed | Failed) -> Notification | None:
    """The notification of an event other than output (:meth:`_Connection._forward` encodes
    output itself), or None for the end of the subscription."""
    match event:
        case Exited():
            return make_notification(ExitedNotification.from_event(process_id, event))
        case Closed():
            return make_notification(ClosedNotification.from_event(process_id, event))
        case Failed():
            return None
