"""The RPC client of one connection: the writer and the reader over a message transport,
requests matched to their responses, the cap on requests in flight, and the failure of
the connection (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio

from .._errors import ConnectionLost, ProtocolError
from .._protocol import (
    METHOD_NOT_FOUND,
    ErrorResponse,
    InitializedNotification,
    Notification,
    Reply,
    Request,
    RequestParams,
    Response,
    RpcClientState,
    RpcDecodeError,
    decode_message,
    encode_message,
    make_error_response,
    make_notification,
)
from .._transport import WEBSOCKET_GOING_AWAY, MessageTransport

__all__ = ["CLOSE_TIMEOUT", "DISCONNECTED", "MAX_IN_FLIGHT_REQUESTS", "_PendingCall", "_RpcClient"]

MAX_IN_FLIGHT_REQUESTS: Final = 64
"""Most requests one connection has outstanding at once; further calls wait for a slot.

The reference server deadlocks when about 230 requests are pipelined on one connection
(its inbound queue holds 128); 64 stays well clear of that.
"""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds that leaving a process block waits for ``closed`` when the child had already
exited (a grandchild may hold its output open) and the server cannot be asked to kill the
rest of the group (no ``signals`` extension; with it the wait is :data:`SHUTDOWN_TIMEOUT`).
When it passes, the log fails."""

DISCONNECTED: Final = "exec-server transport disconnected"
"""The start of every failure message of a broken connection (as the reference client)."""

_R = TypeVar("_R")


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
    """Requests and responses of one connection; see the package docstring.

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
