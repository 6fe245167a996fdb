"""The RPC peer of one connection, for either role: its reader, writer and outbox, the
dispatch of what arrives, outgoing requests with their pending calls and in-flight cap, and
the failure of the connection.

:class:`RpcPeer` runs a sans-IO :class:`~trio_exec._protocol.RpcEndpoint` (a
:class:`~trio_exec._protocol.ClientConnection` or a
:class:`~trio_exec._protocol.ServerConnection`) over a
:class:`~trio_exec._transport.MessageTransport`:

* the **reader** receives each frame, feeds it to the endpoint and acts on the event it
  becomes, in arrival order: a response completes its call and frees its slot, a
  :class:`~trio_exec._protocol.Refusal` is queued as it is, and every other event goes to
  the role's ``on_event`` hook, which may hold the reader back (backpressure) or start a
  task (the server's handlers);
* the **writer** is the only task that sends on the transport: it sends the outbox's
  messages one at a time (so a cancelled sender never leaves half a message) and calls a
  message's ``on_sent`` once the transport took it;
* requests hold one of ``max_in_flight`` slots until their response comes, even when their
  caller gave up waiting, so the cap is what the other end sees.

The connection fails once, for the first of: the transport is lost (reading or writing),
the other end breaks the protocol (the transport is then closed, at most
``close_timeout`` seconds), the owner closes it (:meth:`RpcPeer.close`), or the outbox was
finished (:meth:`RpcPeer.finish`) and the writer sent what it held. Then every pending
call fails with :class:`ConnectionLost`, the tasks stop, and ``on_failure`` is called
with the message, synchronously. How a lost transport was lost is kept for the role
(:attr:`RpcPeer.resumable`, :attr:`RpcPeer.server_shut_down`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio

from ._errors import ConnectionLost, ProtocolError
from ._protocol import (
    Answered,
    ConnectionEvent,
    Message,
    NotificationParams,
    Refusal,
    Reply,
    RequestParams,
    RpcEndpoint,
    encode_message,
)
from ._transport import WEBSOCKET_GOING_AWAY, MessageTransport

__all__ = ["DISCONNECTED", "RpcPeer", "_PendingCall"]

DISCONNECTED: Final = "exec-server transport disconnected"
"""The start of every failure message of a broken connection (as the reference client)."""

_R = TypeVar("_R")


class _Binary:
    """A binary frame in the outbox: its payload's pieces."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        self.parts = parts


_Outgoing = tuple[str | bytes | _Binary, Callable[[], None] | None]
"""An encoded message (text, or its UTF-8 bytes), or a binary frame, with what to call once
the transport took it."""


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


class RpcPeer:
    """One connection's tasks and calls, for either role; see the module docstring.

    Args:
        transport: the connection's transport (its owner closes it).
        endpoint: the sans-IO rules of the role.
        on_event: awaited by the reader for every event but :class:`Answered` and
            :class:`Refusal` (it may hold the reader back).
        on_failure: called once, synchronously, with the failure message.
        max_in_flight: most requests of ours outstanding at once; further calls wait
            for a slot. 0: this peer sends no requests.
        outbox_messages: encoded messages the outbox holds (senders of responses and
            notifications wait for room). Requests and notifications sent by
            :meth:`start_call` / :meth:`notify` do not wait: a peer that sends them
            needs the default, an unbounded outbox (``max_in_flight`` bounds it).
        close_timeout: seconds the transport gets to close after a protocol error.
        on_end_of_input: for a peer that answers what it read before it ends (a stdio
            server): awaited by the reader when the transport's input ends, instead of
            taking that as a lost connection; once it returns (it bounds its own wait),
            the outbox is finished: the writer sends what is queued, then the
            connection ends. None: the end of input is a lost connection.
    """

    def __init__(
        self,
        transport: MessageTransport,
        endpoint: RpcEndpoint,
        *,
        on_event: Callable[[ConnectionEvent], Awaitable[None]],
        on_failure: Callable[[str], None],
        max_in_flight: int = 0,
        outbox_messages: float = math.inf,
        close_timeout: float,
        on_end_of_input: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._on_event = on_event
        self._on_failure = on_failure
        self._close_timeout = close_timeout
        self._on_end_of_input = on_end_of_input
        self.max_in_flight: Final = max_in_flight
        """Most requests of ours outstanding at once."""
        self._slots = trio.Semaphore(max_in_flight)
        self._holding: set[int] = set()  # ids whose response has not come (slot held)
        self._calls: dict[int, _PendingCall] = {}  # ids someone still waits for
        self._outbox, self._outbox_receive = trio.open_memory_channel[_Outgoing](outbox_messages)
        self._scope = trio.CancelScope()
        self.failure: str | None = None
        """Why the connection broke (``exec-server transport disconnected: ...``), or None."""
        self.resumable = False
        """Whether it broke because the transport was lost (not a protocol error, not closed
        by us, not closed by a server that shut down): a session that may be resumed on a
        new connection."""
        self.server_shut_down = False
        """Whether the other end closed the connection because it shut down (websocket
        close code 1001, Going Away): its sessions are over, so there is nothing to resume."""

    @property
    def in_flight(self) -> int:
        """Requests sent (or queued) whose response has not come yet."""
        return len(self._holding)

    @property
    def queued_messages(self) -> int:
        """Messages in the outbox, waiting for the writer."""
        return self._outbox.statistics().current_buffer_used

    def check(self) -> None:
        """Raise :class:`ConnectionLost` if the connection broke."""
        if self.failure is not None:
            raise ConnectionLost(self.failure)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and the writer until the connection fails or is closed.

        **Cancellation:** both tasks stop; the connection is left as it is.
        """
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._read_loop)
                task_status.started()

    def close(self, reason: str) -> None:
        """Fail everything with ``reason`` and stop the tasks; idempotent."""
        self._fail(f"{DISCONNECTED}: {reason}")

    def finish(self) -> None:
        """Take no more messages: the writer sends what is queued, then the connection ends."""
        self._outbox.close()

    async def send(self, message: Message, on_sent: Callable[[], None] | None = None) -> None:
        """Queue a message once the outbox has room; ``on_sent`` is called once the
        transport took it. Once the connection ended, the message is dropped.

        **Cancellation:** nothing was queued.
        """
        try:
            await self._outbox.send((encode_message(message), on_sent))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The writer stopped: the connection is ending (and the sender is about to be
            # cancelled with it); nothing can be sent any more.
            await trio.lowlevel.checkpoint()

    async def send_encoded(self, data: bytes, on_sent: Callable[[], None] | None = None) -> None:
        """As :meth:`send`, for a message encoded already: its UTF-8 JSON text.

        **Cancellation:** nothing was queued.
        """
        await self._queue(data, on_sent)

    async def send_binary(
        self, parts: tuple[bytes, ...], on_sent: Callable[[], None] | None = None
    ) -> None:
        """As :meth:`send`, for a binary frame whose payload is the bytes of ``parts``, in
        order (only on a transport that
        :attr:`~trio_exec._transport.MessageTransport.carries_binary`; the transport may
        write the parts unjoined).

        **Cancellation:** nothing was queued.
        """
        await self._queue(_Binary(parts), on_sent)

    async def _queue(self, message: bytes | _Binary, on_sent: Callable[[], None] | None) -> None:
        try:
            await self._outbox.send((message, on_sent))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.lowlevel.checkpoint()  # the connection is ending, as in send()

    @property
    def carries_binary(self) -> bool:
        """Whether the transport carries binary messages (a websocket, a byte stream)."""
        return self._transport.carries_binary

    def notify(self, params: NotificationParams) -> None:
        """Queue a notification (see ``outbox_messages``).

        Raises:
            ConnectionLost: the connection broke.
        """
        self.check()
        notification = self._endpoint.send_notification(params)
        self._outbox.send_nowait((encode_message(notification), None))

    async def start_call(self, params: RequestParams) -> _PendingCall:
        """Queue a request once a slot is free; return its pending call.

        Raises:
            ConnectionLost: the connection broke.

        **Cancellation:** if cancelled, nothing was queued.
        """
        self.check()
        if self.max_in_flight == 0:
            raise RuntimeError("this peer sends no requests (max_in_flight is 0)")
        await self._slots.acquire()
        if self.failure is not None:
            self._slots.release()  # wake the next waiter, which fails the same way
            raise ConnectionLost(self.failure)
        try:
            request = self._endpoint.send_request(params)
        except BaseException:
            self._slots.release()
            raise
        assert type(request.id) is int
        try:
            encoded = encode_message(request)
        except BaseException:
            self._endpoint.abandon(request.id)
            self._slots.release()
            raise
        call = _PendingCall(request.id, request.method)
        self._holding.add(request.id)
        self._calls[request.id] = call
        self._outbox.send_nowait((encoded, None))
        return call

    async def wait(self, call: _PendingCall, result_type: type[_R]) -> _R:
        """Wait for a call's response and return its typed result.

        Raises:
            RemoteError: the other end answered with an error.
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
            self._endpoint.abandon(call.request_id)

    async def call(self, params: RequestParams, result_type: type[_R]) -> _R:
        """Send a request and return its typed result; see :meth:`wait`.

        **Cancellation:** the request may or may not have been sent (and acted on);
        its response is dropped.
        """
        return await self.wait(await self.start_call(params), result_type)

    # -- tasks -----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            async with self._outbox_receive:
                async for message, on_sent in self._outbox_receive:
                    if type(message) is str:
                        await self._transport.send(message)
                    elif type(message) is bytes:
                        await self._transport.send_encoded(message)
                    else:
                        assert isinstance(message, _Binary)
                        await self._transport.send_binary(*message.parts)
                    if on_sent is not None:
                        on_sent()
        except ConnectionLost as exc:
            self._lost(exc)
            return
        # The outbox was finished (or the connection failed already) and is empty.
        self._fail(f"{DISCONNECTED}: the connection was closed")

    async def _read_loop(self) -> None:
        while True:
            try:
                frame = await self._transport.receive()
            except ConnectionLost as exc:
                if self._on_end_of_input is None or self.failure is not None:
                    self._lost(exc)
                else:
                    await self._on_end_of_input()
                    self.finish()  # the writer sends the answers, then the connection ends
                return
            try:
                event = self._endpoint.receive_frame(frame)
            except ProtocolError as exc:
                self._fail(f"{DISCONNECTED}: protocol error: {exc}")
                # The stream cannot be trusted any more: close it so the other end notices.
                with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout):
                    await self._transport.aclose()
                return
            match event:
                case Answered():
                    self._answered(event)
                case Refusal():
                    await self.send(event.response)
                case _:
                    await self._on_event(event)

    def _answered(self, event: Answered) -> None:
        if event.request_id in self._holding:
            self._holding.discard(event.request_id)
            self._slots.release()
        if event.reply is None:  # abandoned by its caller
            return
        call = self._calls.pop(event.request_id, None)
        if call is not None:
            call.complete(event.reply)

    def _lost(self, exc: ConnectionLost) -> None:
        if self.failure is None:
            if exc.close_code == WEBSOCKET_GOING_AWAY:
                self.server_shut_down = True
                self._fail(f"{DISCONNECTED}: the exec server shut down ({exc})")
                return
            self.resumable = True
        self._fail(f"{DISCONNECTED}: {exc}")

    def _fail(self, message: str) -> None:
        if self.failure is not None:
            return
        self.failure = message
        for reply in self._endpoint.close(message):
            call = self._calls.pop(reply.request_id, None)
            if call is not None:
                call.complete(reply)
        for call in self._calls.values():  # pragma: no cover - close() covers them all
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
