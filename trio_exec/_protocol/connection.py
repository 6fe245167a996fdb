"""The rules of a connection for each role, without I/O: :class:`ClientConnection` and
:class:`ServerConnection` (the h11 style: frames in, events out; calls return what to send).

Both build on :class:`~trio_exec._protocol.rpc.RpcEndpoint` (states, request matching, CLOSED
and ERROR). The roles differ in every branch of what an incoming frame means, so each is a
class of its own rather than one class switching on a role:

* the **client** treats whatever the server should not send (an unparsable frame, a
  response to an unknown id) as a protocol violation: the connection enters ERROR and the
  frame raises :class:`ProtocolError`. It refuses the server's requests (-32601).
* the **server** answers or ignores every frame, and never enters ERROR: an unparsable
  frame, bad params or a request the handshake does not admit yet get an error answer
  (:class:`~trio_exec._protocol.rpc.Refusal`); stray responses and notifications are
  :class:`~trio_exec._protocol.rpc.Ignored` (the reference drops the connection instead).
"""

from __future__ import annotations

from typing import Final, final

import attrs

from .._errors import ProtocolError
from .codec import decode_params, make_error_response, make_response
from .codes import INVALID_REQUEST, METHOD_NOT_FOUND, UNKNOWN_REQUEST_ID, Extension
from .envelope import (
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    RpcDecodeError,
)
from .messages import (
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    NotificationParams,
    OutputNotification,
    RequestParams,
)
from .output import decode_binary_output
from .rpc import (
    ConnectionEvent,
    ConnectionState,
    Ignored,
    InitializedReceived,
    InitializeReceived,
    NotificationReceived,
    Refusal,
    RequestReceived,
    RpcEndpoint,
)

__all__ = ["PROTOCOL_PARSE_PREFIX", "ClientConnection", "ServerConnection"]

PROTOCOL_PARSE_PREFIX: Final = "failed to parse JSON-RPC message: "
"""How :func:`~trio_exec._protocol.decode_message` starts the message of an unparsable
frame; a :class:`ServerConnection` with a ``parse_error_prefix`` replaces it (as the
reference names its transport there)."""

_State = ConnectionState


@final
class ClientConnection(RpcEndpoint):
    """The client's end: ``initialize``, then ``initialized``, then exec requests.

    :meth:`send_request` takes :class:`InitializeParams` in NEW only (-> INITIALIZING) and
    exec methods in READY only. The initialize result moves to INITIALIZED (an error answer
    back to NEW), and :meth:`send_notification` of :class:`InitializedNotification` to
    READY. Notifications from the server are passed on in every open state (the server's
    live notifications may follow its initialize result before ``initialized`` is sent).

    Args:
        offer_binary_output: the transport carries binary messages (a websocket, a stream):
            ``initialize`` lists :attr:`Extension.BINARY_OUTPUT` in its ``extensions``, and
            if the server's result lists it too, :attr:`binary_output` is set from then on.
    """

    def __init__(self, *, offer_binary_output: bool = False) -> None:
        super().__init__()
        self._initialize_id: int | None = None
        self._offer_binary_output = offer_binary_output
        self.binary_output = False
        """Whether extension ``binaryOutput`` was agreed: every binary frame is then a
        ``process/output`` (:func:`~trio_exec._protocol.decode_binary_output`)."""

    def send_request(self, params: RequestParams) -> Request:
        """Allocate an id, record the request as pending and return it (to be sent).

        Raises:
            ConnectionLost: the connection is CLOSED.
            ProtocolError: the connection is in ERROR, or the handshake does not allow
                the request now (``initialize`` needs NEW, exec methods READY).
        """
        if not isinstance(params, InitializeParams):
            return super().send_request(params)
        self._check_open()
        if self._state is not _State.NEW:
            raise ProtocolError(f"cannot send initialize in state {self._state.name}")
        if self._offer_binary_output and params.extensions is None:
            params = attrs.evolve(params, extensions=(Extension.BINARY_OUTPUT.value,))
        request = self._request(params)
        assert type(request.id) is int
        self._initialize_id = request.id
        self._state = _State.INITIALIZING
        return request

    def send_notification(self, params: NotificationParams) -> Notification:
        """Return a notification to send; ``initialized`` completes the handshake.

        Raises:
            ConnectionLost: the connection is CLOSED.
            ProtocolError: the connection is in ERROR, or ``initialized`` does not follow
                a successful ``initialize`` (state INITIALIZED).
        """
        notification = super().send_notification(params)
        if isinstance(params, InitializedNotification):
            if self._state is not _State.INITIALIZED:
                raise ProtocolError(f"cannot send initialized in state {self._state.name}")
            self._state = _State.READY
        return notification

    def _decode(self, frame: str | bytes) -> Message:
        if self.binary_output and type(frame) is bytes:
            return Notification(
                method=OutputNotification.METHOD, params=decode_binary_output(frame)
            )
        return super()._decode(frame)

    def _receive_malformed(self, exc: RpcDecodeError) -> ConnectionEvent:
        raise self._error(f"malformed message from the server: {exc.message}")

    def _receive_message(self, message: Message) -> ConnectionEvent:
        """Responses are :class:`~trio_exec._protocol.rpc.Answered`, notifications
        :class:`~trio_exec._protocol.rpc.NotificationReceived`, and a request of the server
        gets a :class:`~trio_exec._protocol.rpc.Refusal` (-32601). An unparsable frame
        or a response to an unknown request id enters ERROR (:class:`ProtocolError`)."""
        match message:
            case Response() | ErrorResponse():
                answered = self._match(message)
                if answered is None:
                    detail = ""
                    if isinstance(message, ErrorResponse):
                        detail = f" ([{message.error.code}] {message.error.message})"
                    raise self._error(f"response to unknown request id {message.id!r}{detail}")
                if answered.request_id == self._initialize_id:
                    self._initialize_id = None
                    reply = answered.reply
                    if reply is None:  # abandoned: the server's answer still counts
                        succeeded = isinstance(message, Response)
                    else:
                        succeeded = isinstance(reply.result, InitializeResult)
                    self._state = _State.INITIALIZED if succeeded else _State.NEW
                    self.binary_output = (
                        succeeded and self._offer_binary_output and _lists_binary_output(message)
                    )
                return answered
            case Notification():
                return NotificationReceived(message)
            case Request():
                # Server-to-client requests (the reference's network/policyRequest) are
                # never asked for; answer so that the server does not wait.
                return Refusal(
                    make_error_response(
                        message.id,
                        METHOD_NOT_FOUND,
                        f"trio-exec client does not implement `{message.method[:200]}`",
                    )
                )


def _lists_binary_output(message: Response | ErrorResponse) -> bool:
    """Whether a successful initialize result lists extension ``binaryOutput``."""
    result = message.result if isinstance(message, Response) else None
    extensions = result.get("extensions") if isinstance(result, dict) else None
    return isinstance(extensions, list) and Extension.BINARY_OUTPUT.value in extensions


@final
class ServerConnection(RpcEndpoint):
    """The server's end: admits ``initialize`` once, then exec methods after ``initialized``.

    Args:
        parse_error_prefix: replaces :data:`PROTOCOL_PARSE_PREFIX` in the answer to an
            unparsable frame (the reference's wording names the transport); None keeps it.

    An ``initialize`` in NEW becomes :class:`~trio_exec._protocol.rpc.InitializeReceived`
    (-> INITIALIZING); the owner decides (the session table is its own) and answers with
    :meth:`accept_initialize` (-> INITIALIZED) or :meth:`refuse_initialize` (-> NEW: the
    client may try again), before it feeds the next frame. ``initialized`` in INITIALIZED
    moves to READY; only then are exec requests
    :class:`~trio_exec._protocol.rpc.RequestReceived`. Limits that need the server's state
    (requests in flight, a stop under way) are the owner's: it answers with :meth:`refuse`.
    """

    def __init__(self, *, parse_error_prefix: str | None = None) -> None:
        super().__init__()
        self._parse_error_prefix = parse_error_prefix
        self._initialize_id: RequestId | None = None

    def _receive_malformed(self, exc: RpcDecodeError) -> ConnectionEvent:
        return Refusal(make_error_response(UNKNOWN_REQUEST_ID, exc.code, self._frame_error(exc)))

    def _receive_message(self, message: Message) -> ConnectionEvent:
        match message:
            case Request():
                return self._receive_request(message)
            case Notification():
                return self._receive_notification(message)
            case Response() | ErrorResponse():
                answered = self._match(message)
                if answered is None:
                    return Ignored(f"ignored a response from the client (id {message.id!r})")
                return answered

    def accept_initialize(self, request_id: RequestId, result: InitializeResult) -> Response:
        """Answer the ``initialize`` of :class:`InitializeReceived` with success.

        Raises:
            ProtocolError: no such ``initialize`` is waiting for its answer.
        """
        self._take_initialize(request_id)
        self._state = _State.INITIALIZED
        return make_response(request_id, result)

    def refuse_initialize(
        self, request_id: RequestId, code: int, message: str, data: object = None
    ) -> ErrorResponse:
        """Answer the ``initialize`` of :class:`InitializeReceived` with an error.

        Raises:
            ProtocolError: no such ``initialize`` is waiting for its answer.
        """
        self._take_initialize(request_id)
        self._state = _State.NEW
        return make_error_response(request_id, code, message, data)

    def refuse(
        self, request_id: RequestId, code: int, message: str, data: object = None
    ) -> ErrorResponse:
        """An error answer to an exec request (the state does not change)."""
        return make_error_response(request_id, code, message, data)

    def _take_initialize(self, request_id: RequestId) -> None:
        if self._state is not _State.INITIALIZING or request_id != self._initialize_id:
            raise ProtocolError(f"no initialize with id {request_id!r} waits for its answer")
        self._initialize_id = None

    def _frame_error(self, exc: RpcDecodeError) -> str:
        prefix = self._parse_error_prefix
        if prefix is None or not exc.message.startswith(PROTOCOL_PARSE_PREFIX):
            return exc.message
        return f"{prefix}: {exc.message.removeprefix(PROTOCOL_PARSE_PREFIX)}"

    def _receive_request(self, request: Request) -> ConnectionEvent:
        try:
            params = decode_params(request.method, request.params)
        except RpcDecodeError as exc:
            return Refusal(make_error_response(request.id, exc.code, exc.message))
        if isinstance(params, InitializeParams):
            if self._state is not _State.NEW:
                message = "initialize may only be sent once per connection"
                return Refusal(make_error_response(request.id, INVALID_REQUEST, message))
            self._state = _State.INITIALIZING
            self._initialize_id = request.id
            return InitializeReceived(request.id, params)
        if self._state is not _State.READY:
            word = "send initialized" if self._state is _State.INITIALIZED else "call initialize"
            message = f"client must {word} before using exec methods"
            return Refusal(make_error_response(request.id, INVALID_REQUEST, message))
        return RequestReceived(request.id, params)

    def _receive_notification(self, notification: Notification) -> ConnectionEvent:
        if notification.method != "initialized":
            return Ignored(f"ignored notification {notification.method!r}")
        if self._state is _State.INITIALIZED:
            self._state = _State.READY
            return InitializedReceived()
        if self._state is _State.READY:
            return Ignored("ignored a repeated `initialized`")
        return Ignored("ignored `initialized` before `initialize`")
