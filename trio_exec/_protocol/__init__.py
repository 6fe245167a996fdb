"""The sans-IO protocol layer: typed messages, the wire codec, connection rules, event order.

Theory of operation
-------------------
Nothing here does I/O (the h11 / wsproto style). Bytes or text frames come in, typed
objects come out, and back:

* **Envelope.** :func:`decode_message` turns one frame into a :class:`Request`,
  :class:`Notification`, :class:`Response` or :class:`ErrorResponse`, whose ``params`` /
  ``result`` are still plain JSON values; :func:`encode_message` does the reverse.
  JSON-RPC 2.0 shapes without the ``"jsonrpc"`` member (ignored when a peer sends it).
* **Typed messages.** :func:`decode_params` (server), :func:`decode_result` (client) and
  :func:`decode_notification` (both) turn those JSON values into frozen attrs classes;
  :func:`make_request`, :func:`make_response` and :func:`make_notification` go the
  other way. The classes know nothing of JSON: one private cattrs converter owns the
  camelCase renames, base64, enums and optional fields.
* **Connection rules.** :class:`ClientConnection` and :class:`ServerConnection` are the
  two ends of one connection, as state machines in h11's style: the owner feeds each
  incoming frame, whole, to ``receive_frame`` and gets one event back
  (:data:`ConnectionEvent`): a matched response (:class:`Answered`, with its typed
  :class:`Reply`), a notification, an ``initialize`` / ``initialized`` / exec request
  the handshake admits, a :class:`Refusal` (the error answer to send, with the exact
  codes and messages of the reference), or :class:`Ignored`. What the owner sends comes
  from calls too (``send_request`` allocates the id, ``accept_initialize`` answers the
  handshake). Both walk the same :class:`ConnectionState`: NEW -> INITIALIZING ->
  INITIALIZED -> READY (``initialize`` once, then ``initialized``; exec methods only
  when READY), CLOSED once the owner closed it, ERROR once the other end broke the
  protocol (the client's view of a malformed frame or a response to an unknown id), after
  which it refuses to be used. The server never enters ERROR: it answers or ignores
  every frame. Limits that need the server's state (its session table, requests in
  flight, a stop under way) are the owner's; the trio layer, :class:`trio_exec._rpc.RpcPeer`,
  does the I/O.
* **Ordering.** :class:`EventOrder` releases one process's notifications in ``seq`` order
  (duplicates dropped, bounds on what waits for a missing seq) and splices a catch-up
  ``process/read`` into them after a resume.
* **Framing.** :class:`LineDecoder` splits a byte stream into NDJSON lines (stdio);
  :class:`StreamDecoder` also takes the binary records of extension ``binaryOutput``.

Every decoding failure raises :class:`RpcDecodeError`, a :class:`ProtocolError` that
carries the JSON-RPC ``code`` and ``message`` to answer with; malformed input never
raises anything else.

Wire rules (see PROTOCOL.md and the reference notes)
----------------------------------------------------
* Missing ``params`` is ``null``; a method whose params have no required field also
  takes ``null``. Unknown extra fields are ignored.
* Strict types: a string is never taken for a number, a number never for a bool.
* Bytes are standard, padded, canonical base64.
* Core optional fields are sent as ``null`` (like the reference client); extension
  fields and ``resumeSessionId`` / ``envPolicy`` are left out when ``None``.
* Output is compact, pure-ASCII JSON: a lone surrogate a peer sent in a string is
  escaped on the way back instead of breaking the UTF-8 encoding of the transport.

Modules, each importing only those above it
-------------------------------------------
* ``codes``: JSON-RPC error codes, :class:`Extension`, :class:`ProcessSignal`.
* ``uris``: :func:`path_to_file_uri`, :func:`file_uri_to_path`.
* ``rules``: the value rules of typed fields (attrs validators).
* ``envelope``: :class:`Request`, :class:`Notification`, :class:`Response`,
  :class:`ErrorResponse`, :class:`RpcDecodeError`.
* ``environment``: the typed messages of the environment methods (``environment/*``,
  ``environmentConfig/read``, ``fs/getMetadata``, ``fs/watchMissing``).
* ``messages``: the typed params, results and notifications, and the method tables.
* ``converter``: the one cattrs converter (camelCase, base64, strict types, error paths).
* ``codec``: :func:`decode_message` / :func:`encode_message` and the typed ``decode_*`` /
  ``make_*`` functions.
* ``rpc``: :class:`ConnectionState`, the events, :class:`Reply` and :class:`RpcEndpoint`
  (what both roles share: request ids and matching, CLOSED and ERROR).
* ``connection``: :class:`ClientConnection`, :class:`ServerConnection` (the handshake and
  admission of each role).
* ``ordering``: :class:`EventOrder`, one process's ``seq`` order and the splice of a
  catch-up read after a resume; :class:`Ordered`, what it releases, with a
  :class:`ProtocolViolation` or :class:`HistoryLost` when a rule broke.
* ``output``: the hot path of ``process/output`` (:func:`encode_output_notification`) and
  the binary frames of extension ``binaryOutput``.
* ``framing``: :class:`LineDecoder`, on the one line splitter of ``trio_exec._lines``
  (imports nothing else of the package).

None of them imports trio, a socket or a websocket library.
"""

from __future__ import annotations

from .codec import (
    MAX_JSON_NUMBER_CHARS,
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    decode_message,
    decode_notification,
    decode_params,
    decode_result,
    encode_line,
    encode_message,
    make_error_response,
    make_notification,
    make_request,
    make_response,
)
from .codes import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_ECHOED_CHARS,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    SESSION_ALREADY_ATTACHED,
    UNKNOWN_REQUEST_ID,
    Extension,
    ProcessSignal,
)
from .connection import (
    PROTOCOL_PARSE_PREFIX,
    ClientConnection,
    ServerConnection,
)
from .converter import (
    WIRE_INT_MAX,
    WIRE_INT_MIN,
)
from .envelope import (
    ErrorObject,
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    RpcDecodeError,
)
from .environment import (
    ConfigLayer,
    ConfigLayers,
    EnvironmentConfig,
    EnvironmentConfigReadParams,
    EnvironmentInfoParams,
    EnvironmentStatusParams,
    EnvironmentStatusResult,
    FileMetadata,
    GetMetadataParams,
    MissingChangedNotification,
    WatchMissingParams,
    WatchMissingResult,
)
from .framing import (
    DEFAULT_MAX_LINE_BYTES,
    RECORD_MARK,
    LineDecoder,
    LineTooLong,
    StreamDecoder,
    record_head,
)
from .messages import (
    ClosedNotification,
    CloseStdinParams,
    CloseStdinResult,
    EnvironmentInfo,
    ExitedNotification,
    InitializedNotification,
    InitializeParams,
    InitializeResult,
    ListParams,
    ListResult,
    NotificationParams,
    OutputNotification,
    ProcessInfo,
    ProcessNotification,
    ReadParams,
    RequestParams,
    RequestResult,
    ResizeParams,
    ResizeResult,
    ShellInfo,
    SignalParams,
    SignalResult,
    StartParams,
    StartResult,
    TerminateParams,
    TerminateResult,
    WindowSize,
    WriteParams,
    WriteResult,
)
from .ordering import (
    MAX_REORDER_BYTES,
    MAX_REORDER_EVENTS,
    EventOrder,
    HistoryLost,
    Ordered,
    OrderFailure,
    ProtocolViolation,
)
from .output import (
    BINARY_OUTPUT_SEPARATOR,
    binary_output_head,
    decode_binary_output,
    encode_binary_output,
    encode_output_notification,
)
from .rpc import (
    Answered,
    ConnectionEvent,
    ConnectionState,
    Ignored,
    InitializedReceived,
    InitializeReceived,
    NotificationReceived,
    Refusal,
    Reply,
    RequestReceived,
    RpcEndpoint,
)
from .rules import (
    MAX_WINDOW_DIMENSION,
)
from .uris import (
    file_uri_to_path,
    path_to_file_uri,
)

__all__ = [
    "BINARY_OUTPUT_SEPARATOR",
    "DEFAULT_MAX_LINE_BYTES",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_ECHOED_CHARS",
    "MAX_JSON_NUMBER_CHARS",
    "MAX_REORDER_BYTES",
    "MAX_REORDER_EVENTS",
    "MAX_WINDOW_DIMENSION",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "PROTOCOL_PARSE_PREFIX",
    "RECORD_MARK",
    "REQUEST_ID_MAX",
    "REQUEST_ID_MIN",
    "SESSION_ALREADY_ATTACHED",
    "UNKNOWN_REQUEST_ID",
    "WIRE_INT_MAX",
    "WIRE_INT_MIN",
    "Answered",
    "ClientConnection",
    "CloseStdinParams",
    "CloseStdinResult",
    "ClosedNotification",
    "ConfigLayer",
    "ConfigLayers",
    "ConnectionEvent",
    "ConnectionState",
    "EnvironmentConfig",
    "EnvironmentConfigReadParams",
    "EnvironmentInfo",
    "EnvironmentInfoParams",
    "EnvironmentStatusParams",
    "EnvironmentStatusResult",
    "ErrorObject",
    "ErrorResponse",
    "EventOrder",
    "ExitedNotification",
    "Extension",
    "FileMetadata",
    "GetMetadataParams",
    "HistoryLost",
    "Ignored",
    "InitializeParams",
    "InitializeReceived",
    "InitializeResult",
    "InitializedNotification",
    "InitializedReceived",
    "LineDecoder",
    "LineTooLong",
    "ListParams",
    "ListResult",
    "Message",
    "MissingChangedNotification",
    "Notification",
    "NotificationParams",
    "NotificationReceived",
    "OrderFailure",
    "Ordered",
    "OutputNotification",
    "ProcessInfo",
    "ProcessNotification",
    "ProcessSignal",
    "ProtocolViolation",
    "ReadParams",
    "Refusal",
    "Reply",
    "Request",
    "RequestId",
    "RequestParams",
    "RequestReceived",
    "RequestResult",
    "ResizeParams",
    "ResizeResult",
    "Response",
    "RpcDecodeError",
    "RpcEndpoint",
    "ServerConnection",
    "ShellInfo",
    "SignalParams",
    "SignalResult",
    "StartParams",
    "StartResult",
    "StreamDecoder",
    "TerminateParams",
    "TerminateResult",
    "WatchMissingParams",
    "WatchMissingResult",
    "WindowSize",
    "WriteParams",
    "WriteResult",
    "binary_output_head",
    "decode_binary_output",
    "decode_message",
    "decode_notification",
    "decode_params",
    "decode_result",
    "encode_binary_output",
    "encode_line",
    "encode_message",
    "encode_output_notification",
    "file_uri_to_path",
    "make_error_response",
    "make_notification",
    "make_request",
    "make_response",
    "path_to_file_uri",
    "record_head",
]
