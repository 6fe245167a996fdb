"""The client's RPC peer of one connection (:class:`_RpcClient`): a
:class:`~trio_exec._rpc.RpcPeer` with the client's rules, its cap on requests in flight and
its handling of notifications (see the package docstring)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, final

from .._protocol import ClientConnection, ConnectionEvent, Notification, NotificationReceived
from .._rpc import DISCONNECTED, RpcPeer, _PendingCall
from .._transport import MessageTransport

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


@final
class _RpcClient(RpcPeer):
    """Requests and responses of one connection to an exec server; see the package docstring.

    Its outbox is unbounded, but never holds more than ``max_in_flight`` requests (one
    per slot), the ``initialized`` notification and the refusals of the server's requests.

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
        super().__init__(
            transport,
            ClientConnection(offer_binary_output=transport.carries_binary),
            on_event=self._notified,
            on_failure=on_failure,
            max_in_flight=max_in_flight,
            close_timeout=CLOSE_TIMEOUT,
        )
        self._on_notification = on_notification

    async def _notified(self, event: ConnectionEvent) -> None:
        # The client's rules raise for what it does not expect; once closed a frame is
        # Ignored, which needs nothing.
        if isinstance(event, NotificationReceived):
            await self._on_notification(event.notification)
