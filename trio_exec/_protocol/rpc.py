"""What both ends of a connection share, without I/O: the connection states, the events
that incoming frames become, and the matching of responses to requests (:class:`RpcEndpoint`).

The two roles, :class:`~trio_exec._protocol.connection.ClientConnection` and
:class:`~trio_exec._protocol.connection.ServerConnection`, build on it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

import attrs

from .._errors import ConnectionLost, ProtocolError, RemoteError, TrioExecError
from .codec import decode_message, decode_result, make_notification, make_request
from .envelope import (
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    RpcDecodeError,
)
from .messages import InitializeParams, NotificationParams, RequestParams, RequestResult

__all__ = [
    "Answered",
    "ConnectionEvent",
    "ConnectionState",
    "Ignored",
    "InitializeReceived",
    "InitializedReceived",
    "NotificationReceived",
    "Refusal",
    "Reply",
    "RequestReceived",
    "RpcEndpoint",
]

_R = TypeVar("_R")


class ConnectionState(enum.Enum):
    """Where a connection is, the same for both roles (the handshake mirrors itself).

    Client: NEW --send initialize--> INITIALIZING --its result--> INITIALIZED
    --send initialized--> READY. Server: NEW --initialize received--> INITIALIZING
    --answered--> INITIALIZED --initialized received--> READY. An error answer to
    ``initialize`` goes back to NEW on both sides (a refused resume may be retried on the
    same connection). Any open state goes to CLOSED when the owner closes the connection,
    and to ERROR when the peer breaks the protocol; both are final.
    """

    NEW = "new"
    """Nothing of the handshake happened yet."""
    INITIALIZING = "initializing"
    """``initialize`` is in flight (sent by the client, not yet answered by the server)."""
    INITIALIZED = "initialized"
    """``initialize`` succeeded; ``initialized`` is not sent (client) / received (server) yet."""
    READY = "ready"
    """The handshake is done: exec methods may be used."""
    CLOSED = "closed"
    """The owner closed the connection (or its transport was lost); nothing more is sent."""
    ERROR = "error"
    """The peer broke the protocol; the connection refuses to be used any more."""


_FINAL: frozenset[ConnectionState] = frozenset({ConnectionState.CLOSED, ConnectionState.ERROR})


@attrs.frozen(kw_only=True)
class Reply:
    """The outcome of one request, as matched by :class:`RpcEndpoint`.

    Exactly one of ``result`` and ``error`` is set.
    """

    request_id: int
    """The id of the request."""
    method: str
    """The method of the request."""
    result: RequestResult | None = None
    """The typed result on success."""
    error: TrioExecError | None = None
    """:class:`RemoteError` (the peer's error response), :class:`RpcDecodeError` (a result
    that did not decode) or :class:`ConnectionLost` (from :meth:`RpcEndpoint.close`)."""

    def expect(self, result_type: type[_R]) -> _R:
        """Return the result as ``result_type``, or raise the error.

        Raises:
            RemoteError, RpcDecodeError, ConnectionLost: the ``error``.
            ProtocolError: the result is not a ``result_type``.
        """
        if self.error is not None:
            raise self.error
        if not isinstance(self.result, result_type):
            raise ProtocolError(
                f"{self.method} returned {type(self.result).__name__}, not {result_type.__name__}"
            )
        return self.result


# -- events: what one incoming frame is to its owner ------------------------------------------


@attrs.frozen
class Answered:
    """A response to one of our requests arrived: its slot is free again.

    ``reply`` is None when the request was abandoned (its response is dropped).
    """

    request_id: int
    """The id of the request answered."""
    reply: Reply | None
    """The matched, typed reply, or None for an abandoned request."""


@attrs.frozen
class NotificationReceived:
    """A notification for the owner (the client's process events)."""

    notification: Notification
    """The notification, its params still plain JSON."""


@attrs.frozen
class InitializeReceived:
    """The server got ``initialize``: the owner answers it with
    :meth:`~trio_exec._protocol.connection.ServerConnection.accept_initialize` or
    :meth:`~trio_exec._protocol.connection.ServerConnection.refuse_initialize`."""

    request_id: RequestId
    """The id to answer."""
    params: InitializeParams
    """The typed params."""


@attrs.frozen
class InitializedReceived:
    """The server got ``initialized`` after a successful ``initialize``: it is READY."""


@attrs.frozen
class RequestReceived:
    """An exec request the handshake admits, for the owner to handle and answer."""

    request_id: RequestId
    """The id to answer."""
    params: RequestParams
    """The typed params."""


@attrs.frozen
class Refusal:
    """A request (or an unparsable frame) the rules refuse: send ``response`` back."""

    response: ErrorResponse
    """The error answer to send."""


@attrs.frozen
class Ignored:
    """A frame that needs nothing (a stray response or notification); ``reason`` says why,
    for a debug log."""

    reason: str
    """What was ignored."""


ConnectionEvent = (
    Answered
    | NotificationReceived
    | InitializeReceived
    | InitializedReceived
    | RequestReceived
    | Refusal
    | Ignored
)
"""What :meth:`RpcEndpoint.receive_frame` returns."""


class RpcEndpoint:
    """One end of a connection, without I/O: its state, and its requests and their responses.

    Request ids are integers from 1. The owner sends the :class:`Request` that
    :meth:`send_request` returns and feeds every incoming frame to :meth:`receive_frame`
    (defined by the role), which matches responses through :meth:`_match`. :meth:`close`
    ends the connection and fails what is pending.
    """

    def __init__(self) -> None:
        self._state = ConnectionState.NEW
        self._failure: str | None = None
        self._next_id = 1
        self._pending: dict[int, str] = {}
        self._abandoned: set[int] = set()

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._state

    @property
    def failure(self) -> str | None:
        """Why the connection is CLOSED or in ERROR, or None while it is open."""
        return self._failure

    @property
    def pending(self) -> Mapping[int, str]:
        """Read-only view of the pending requests: id -> method."""
        return MappingProxyType(self._pending)

    def receive_frame(self, frame: str | bytes) -> ConnectionEvent:
        """Decode one incoming frame and apply the rules of the role to it.

        Once CLOSED, frames are :class:`Ignored` (the owner's reader may hold one that
        arrived as the connection was closed).

        Raises:
            ProtocolError: the connection is in ERROR, or (client) the frame breaks the
                protocol, which enters ERROR.
        """
        if self._state is ConnectionState.CLOSED:
            return Ignored("a frame after the connection was closed")
        if self._state is ConnectionState.ERROR:
            raise ProtocolError(f"the connection is in state ERROR: {self._failure}")
        try:
            message = self._decode(frame)
        except RpcDecodeError as exc:
            return self._receive_malformed(exc)
        return self._receive_message(message)

    def _decode(self, frame: str | bytes) -> Message:
        """The message of one frame (a role may know frames of its own)."""
        return decode_message(frame)

    def send_request(self, params: RequestParams) -> Request:
        """Allocate an id, record the request as pending and return it (to be sent).

        Raises:
            ConnectionLost: the connection is CLOSED.
            ProtocolError: the connection is in ERROR, or the handshake does not allow
                this request yet (exec methods need READY).
        """
        self._check_open()
        if self._state is not ConnectionState.READY:
            raise ProtocolError(
                f"cannot send {params.METHOD} in state {self._state.name}: "
                "the handshake is not done"
            )
        return self._request(params)

    def send_notification(self, params: NotificationParams) -> Notification:
        """Return a notification to send.

        Raises:
            ConnectionLost: the connection is CLOSED.
            ProtocolError: the connection is in ERROR.
        """
        self._check_open()
        return make_notification(params)

    def abandon(self, request_id: RequestId) -> None:
        """Forget a pending request whose caller gave up (e.g. was cancelled).

        Its response, if it comes, is then dropped (:class:`Answered` without a reply).
        """
        if type(request_id) is int and self._pending.pop(request_id, None) is not None:
            self._abandoned.add(request_id)

    def close(self, reason: str) -> list[Reply]:
        """End the connection: every pending request fails with :class:`ConnectionLost`.

        The state becomes CLOSED (ERROR stays ERROR); returns the failed replies.
        Idempotent: a second call returns nothing.
        """
        if self._state not in _FINAL:
            self._state = ConnectionState.CLOSED
            self._failure = reason
        replies = [
            Reply(request_id=request_id, method=method, error=ConnectionLost(reason))
            for request_id, method in self._pending.items()
        ]
        self._pending.clear()
        self._abandoned.clear()
        return replies

    # -- for the roles -----------------------------------------------------------------------

    def _receive_malformed(self, exc: RpcDecodeError) -> ConnectionEvent:  # pragma: no cover
        """What an unparsable frame is to the role (it may raise :meth:`_error`)."""
        raise NotImplementedError

    def _receive_message(self, message: Message) -> ConnectionEvent:  # pragma: no cover
        """What a decoded message is to the role (it may raise :meth:`_error`)."""
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._state is ConnectionState.CLOSED:
            assert self._failure is not None
            raise ConnectionLost(self._failure)
        if self._state is ConnectionState.ERROR:
            raise ProtocolError(f"the connection is in state ERROR: {self._failure}")

    def _request(self, params: RequestParams) -> Request:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = params.METHOD
        return make_request(request_id, params)

    def _error(self, message: str) -> ProtocolError:
        """Enter ERROR (the peer broke the protocol); return the error to raise."""
        self._state = ConnectionState.ERROR
        self._failure = message
        return ProtocolError(message)

    def _match(self, message: Response | ErrorResponse) -> Answered | None:
        """Match a response to its pending request and type it; None if the id is unknown."""
        request_id = message.id
        method = self._pending.pop(request_id, None) if type(request_id) is int else None
        if method is None:
            if type(request_id) is int and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return Answered(request_id, None)
            return None
        assert type(request_id) is int
        if isinstance(message, ErrorResponse):
            error = RemoteError(message.error.code, message.error.message, message.error.data)
            reply = Reply(request_id=request_id, method=method, error=error)
        else:
            try:
                result = decode_result(method, message.result)
            except RpcDecodeError as exc:
                reply = Reply(request_id=request_id, method=method, error=exc)
            else:
                reply = Reply(request_id=request_id, method=method, result=result)
        return Answered(request_id, reply)
