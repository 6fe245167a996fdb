"""The sans-IO protocol layer: typed messages, the wire codec and request matching.

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
* **Matching.** :class:`RpcClientState` allocates request ids and matches responses.
* **Framing.** :class:`LineDecoder` splits a byte stream into NDJSON lines (stdio).

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
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import os
import re
import signal as _signal
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import (
    Any,
    ClassVar,
    Final,
    TypeAlias,
    TypeVar,
    assert_never,
    cast,
    get_args,
    get_origin,
)
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, mapping_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import ConnectionLost, ProtocolError, RemoteError, TrioExecError
from ._events import Closed, Exited, Output, OutputStream, ReadResult, WriteStatus, signal_name

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_ECHOED_CHARS",
    "MAX_JSON_NUMBER_CHARS",
    "MAX_WINDOW_DIMENSION",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "REQUEST_ID_MAX",
    "REQUEST_ID_MIN",
    "SESSION_ALREADY_ATTACHED",
    "UNKNOWN_REQUEST_ID",
    "WIRE_INT_MAX",
    "WIRE_INT_MIN",
    "CloseStdinParams",
    "CloseStdinResult",
    "ClosedNotification",
    "EnvironmentInfo",
    "ErrorObject",
    "ErrorResponse",
    "ExitedNotification",
    "Extension",
    "InitializeParams",
    "InitializeResult",
    "InitializedNotification",
    "LineDecoder",
    "LineTooLong",
    "ListParams",
    "ListResult",
    "Message",
    "Notification",
    "NotificationParams",
    "OutputNotification",
    "ProcessInfo",
    "ProcessNotification",
    "ProcessSignal",
    "ReadParams",
    "Reply",
    "Request",
    "RequestId",
    "RequestParams",
    "RequestResult",
    "ResizeParams",
    "ResizeResult",
    "Response",
    "RpcClientState",
    "RpcDecodeError",
    "ShellInfo",
    "SignalParams",
    "SignalResult",
    "StartParams",
    "StartResult",
    "TerminateParams",
    "TerminateResult",
    "WindowSize",
    "WriteParams",
    "WriteResult",
    "decode_message",
    "decode_notification",
    "decode_params",
    "decode_result",
    "encode_line",
    "encode_message",
    "file_uri_to_path",
    "make_error_response",
    "make_notification",
    "make_request",
    "make_response",
    "path_to_file_uri",
]

# -- error codes and limits ----------------------------------------------------------------

PARSE_ERROR: Final = -32700
"""JSON-RPC "parse error". Defined for completeness: like the reference server,
:func:`decode_message` answers unparsable frames with :data:`INVALID_REQUEST`."""
INVALID_REQUEST: Final = -32600
"""Unparsable or malformed frame, request out of order (not initialized), unknown process."""
METHOD_NOT_FOUND: Final = -32601
"""The method is not implemented."""
INVALID_PARAMS: Final = -32602
"""The params (or, client side, a result) did not decode: wrong types, empty argv, ..."""
INTERNAL_ERROR: Final = -32603
"""Spawn failure (the message is the OS error text) or another server-side failure."""
SESSION_ALREADY_ATTACHED: Final = -32010
"""``initialize {resumeSessionId}`` named a session still attached to another connection."""

UNKNOWN_REQUEST_ID: Final = -1
"""The id of the error response to a frame that could not be parsed (as the reference)."""

REQUEST_ID_MIN: Final = -(2**63)
"""The smallest integer request id accepted (ids are signed 64-bit integers or strings)."""
REQUEST_ID_MAX: Final = 2**63 - 1
"""The largest integer request id accepted."""
WIRE_INT_MIN: Final = -(2**63)
"""The smallest integer accepted in a typed field (a signed 64-bit integer)."""
WIRE_INT_MAX: Final = 2**64 - 1
"""The largest integer accepted in a typed field (an unsigned 64-bit integer, as ``seq``)."""
MAX_JSON_NUMBER_CHARS: Final = 64
"""The longest number literal :func:`decode_message` parses; longer ones are an error.

It keeps a hostile frame from making the decoder convert thousands of digits.
"""
MAX_WINDOW_DIMENSION: Final = 0xFFFF
"""The largest terminal row or column count ``process/resize`` accepts (a ``u16``)."""
MAX_ECHOED_CHARS: Final = 200
"""The longest piece of a peer's input an error message repeats; longer ones are clipped."""
DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""Default bound on one NDJSON line of the stdio transport (16 MiB, without its newline).

A ``process/write`` of up to about 12 MiB of data fits (base64 grows bytes by 4/3).
"""

# -- errors --------------------------------------------------------------------------------


class RpcDecodeError(ProtocolError):
    """A received frame or its params could not be decoded.

    Carries the JSON-RPC error to answer with: ``code`` is :data:`INVALID_REQUEST` for a
    bad frame, :data:`METHOD_NOT_FOUND` for an unknown method and :data:`INVALID_PARAMS`
    for params (or results) that do not match their type.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        """The JSON-RPC error code."""
        self.message = message
        """The error message, reference-like (``missing field `writeId```)."""

    def error_object(self) -> ErrorObject:
        """The error as the ``error`` member of a response."""
        return ErrorObject(code=self.code, message=self.message)

    def to_response(self, request_id: RequestId = UNKNOWN_REQUEST_ID) -> ErrorResponse:
        """The error response to send; by default with the id of an unparsable frame."""
        return ErrorResponse(id=request_id, error=self.error_object())


class LineTooLong(ProtocolError):
    """An NDJSON line exceeded :attr:`LineDecoder.max_line_bytes`; the stream is unusable."""

    def __init__(self, max_line_bytes: int) -> None:
        super().__init__(f"line longer than {max_line_bytes} bytes")
        self.max_line_bytes = max_line_bytes
        """The bound that was exceeded."""


class _WireError(ValueError):
    """A JSON value of the wrong type or form; the message is complete."""


class _FieldError(ValueError):
    """A field value broke a model rule (``argv must not be empty``).

    The message names the field; the decoder renders it with the wire name.
    """

    def __init__(self, field: str, render: Callable[[str], str]) -> None:
        super().__init__(render(field))
        self.field = field
        self.render = render


# -- enums ---------------------------------------------------------------------------------


class Extension(enum.StrEnum):
    """The trio_exec protocol extensions a server advertises in ``initialize``."""

    CLOSE_STDIN = "closeStdin"
    """``process/closeStdin``: half-close the child's stdin."""
    RESIZE = "resize"
    """``process/resize``: PTY window size."""
    SIGNALS = "signals"
    """``process/signal`` takes every :class:`ProcessSignal`, not only ``interrupt``."""
    GRACEFUL_TERMINATE = "gracefulTerminate"
    """``process/terminate`` takes ``graceMs``: SIGTERM first, SIGKILL after the grace."""
    EXIT_SIGNAL = "exitSignal"
    """``process/exited`` carries ``signal`` when a signal ended the child."""
    READ_GAP = "readGap"
    """``process/read`` results carry ``firstRetainedSeq``."""
    LIST = "list"
    """``process/list``."""
    RESUME = "resume"
    """Sessions outlive a lost websocket connection for a detach time and are taken back with
    ``initialize {resumeSessionId}``; output retained at the loss is kept for the catch-up
    reads (see PROTOCOL.md, "Connection loss and resume")."""
    WINDOW_SIZE = "windowSize"
    """``process/start`` takes ``windowSize {rows, cols}``: a terminal child starts at that
    size instead of 24x80."""


class ProcessSignal(enum.Enum):
    """A signal name of ``process/signal``. Only ``interrupt`` is core protocol."""

    INTERRUPT = "interrupt"
    """SIGINT (core protocol)."""
    TERMINATE = "terminate"
    """SIGTERM (extension ``signals``)."""
    KILL = "kill"
    """SIGKILL (extension ``signals``)."""
    HANGUP = "hangup"
    """SIGHUP (extension ``signals``)."""
    QUIT = "quit"
    """SIGQUIT (extension ``signals``)."""
    USER1 = "user1"
    """SIGUSR1 (extension ``signals``)."""
    USER2 = "user2"
    """SIGUSR2 (extension ``signals``)."""

    @property
    def signum(self) -> int:
        """The POSIX signal number."""
        return _SIGNUMS[self]

    @property
    def extension(self) -> Extension | None:
        """The extension a server must advertise for this signal, or None (core)."""
        return None if self is ProcessSignal.INTERRUPT else Extension.SIGNALS

    @classmethod
    def from_signum(cls, signum: int) -> ProcessSignal:
        """The wire name of a signal number; ValueError if the protocol cannot send it."""
        for member, number in _SIGNUMS.items():
            if number == signum:
                return member
        raise ValueError(f"signal {signal_name(signum)} cannot be sent through the protocol")


_SIGNUMS: Final[Mapping[ProcessSignal, int]] = {
    ProcessSignal.INTERRUPT: _signal.SIGINT,
    ProcessSignal.TERMINATE: _signal.SIGTERM,
    ProcessSignal.KILL: _signal.SIGKILL,
    ProcessSignal.HANGUP: _signal.SIGHUP,
    ProcessSignal.QUIT: _signal.SIGQUIT,
    ProcessSignal.USER1: _signal.SIGUSR1,
    ProcessSignal.USER2: _signal.SIGUSR2,
}

# -- field rules ---------------------------------------------------------------------------


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise _FieldError(
            attribute.name, lambda name: f"invalid number: {name} must be >= 0, not {value}"
        )


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str | tuple) and not value:
        raise _FieldError(attribute.name, lambda name: f"{name} must not be empty")


def _window_dimension(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= MAX_WINDOW_DIMENSION:
        raise _FieldError(
            attribute.name,
            lambda name: (
                f"invalid number: {name} must be in 1..{MAX_WINDOW_DIMENSION}, not {value}"
            ),
        )


def _file_uri(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        file_uri_to_path(value)
    except ValueError as exc:
        problem = str(exc)
        raise _FieldError(
            attribute.name, lambda name: f"{problem} (`{name}` is {_clip(repr(value))})"
        ) from None


# -- envelope ------------------------------------------------------------------------------

RequestId: TypeAlias = int | str
"""A JSON-RPC request id: a signed 64-bit integer or a string, echoed unchanged."""


@attrs.frozen(kw_only=True)
class Request:
    """A JSON-RPC request; ``params`` is a plain JSON value (None when absent)."""

    id: RequestId
    """The id the response must echo."""
    method: str
    """The method name, e.g. ``"process/start"``."""
    params: object = None
    """The params as decoded JSON; :func:`decode_params` types them."""


@attrs.frozen(kw_only=True)
class Notification:
    """A JSON-RPC notification (no id, no response)."""

    method: str
    """The method name, e.g. ``"process/output"``."""
    params: object = None
    """The params as decoded JSON (None when absent); :func:`decode_notification` types them."""


@attrs.frozen(kw_only=True)
class Response:
    """A successful JSON-RPC response."""

    id: RequestId
    """The id of the request this answers."""
    result: object
    """The result as decoded JSON; :func:`decode_result` types it."""


@attrs.frozen(kw_only=True)
class ErrorObject:
    """The ``error`` member of an error response."""

    code: int
    """The JSON-RPC error code (see the ``*_ERROR`` / ``INVALID_*`` constants)."""
    message: str
    """For people."""
    data: object = None
    """Optional extra JSON value; None when absent."""


@attrs.frozen(kw_only=True)
class ErrorResponse:
    """A JSON-RPC error response."""

    error: ErrorObject
    """What went wrong."""
    id: RequestId
    """The id of the failed request, or :data:`UNKNOWN_REQUEST_ID` for an unparsable frame."""


Message: TypeAlias = Request | Notification | Response | ErrorResponse
"""Any JSON-RPC message."""

# -- typed params and results --------------------------------------------------------------


@attrs.frozen(kw_only=True)
class InitializeParams:
    """``initialize``: open (or, with ``resume_session_id``, resume) a session."""

    METHOD: ClassVar[str] = "initialize"
    client_name: str
    """Free-form name of the client."""
    resume_session_id: str | None = None
    """The session to take back after a disconnect, or None for a new session."""


@attrs.frozen(kw_only=True)
class ShellInfo:
    """The server user's default shell, in :class:`EnvironmentInfo`."""

    name: str
    """Its kind: ``bash``, ``zsh``, ``sh``, ..."""
    path: str
    """Its executable."""


@attrs.frozen(kw_only=True)
class EnvironmentInfo:
    """Facts about the server's side that a client needs for its defaults.

    The reference's ``environmentInfo`` (of ``initialize`` and ``environment/info``), limited
    to the fields trio_exec fills or reads; paths are ``file://`` URIs. Every field is
    optional on the wire; other fields of the reference (``executorVersion``,
    ``capabilities``, ...) are dropped.
    """

    shell: ShellInfo | None = None
    """The user's default shell (required by the reference's schema, sent by both servers)."""
    cwd: str | None = None
    """The server's working directory: where a child runs when the client gives no ``cwd``."""
    user_home_dir: str | None = None
    """The home directory of the user the server runs as."""
    platform_os: str | None = None
    """The server's operating system, as Rust names it: ``linux``, ``macos``, ..."""
    temporary_directories: tuple[str, ...] | None = None
    """The temporary directories the server's environment names (``TMPDIR``)."""
    temp_dir: str | None = None
    """The server's temporary directory (``TMPDIR``, else ``/tmp``)."""


@attrs.frozen(kw_only=True)
class InitializeResult:
    """Result of ``initialize``."""

    session_id: str
    """The session id, to pass as ``resume_session_id`` after a disconnect."""
    extensions: tuple[str, ...] = ()
    """The trio_exec extensions the server offers (see :class:`Extension`); empty for the reference."""
    environment_info: EnvironmentInfo | None = None
    """The server's side (its working directory, ...); None from a server that sends none."""


@attrs.frozen(kw_only=True)
class InitializedNotification:
    """``initialized``: the client finished the handshake. Its params are ignored."""

    METHOD: ClassVar[str] = "initialized"


@attrs.frozen(kw_only=True)
class WindowSize:
    """A terminal's size, the ``windowSize`` of ``process/start`` (extension ``windowSize``)."""

    rows: int = attrs.field(validator=_window_dimension)
    """Rows, 1 to :data:`MAX_WINDOW_DIMENSION`."""
    cols: int = attrs.field(validator=_window_dimension)
    """Columns, 1 to :data:`MAX_WINDOW_DIMENSION`."""


@attrs.frozen(kw_only=True)
class StartParams:
    """``process/start``."""

    METHOD: ClassVar[str] = "process/start"
    process_id: str
    """Client-chosen id, unique within the session."""
    argv: tuple[str, ...] = attrs.field(validator=_non_empty)
    """The command; ``argv[0]`` is looked up in ``PATH``. Never empty."""
    cwd: str = attrs.field(validator=_file_uri)
    """The working directory as a ``file://`` URI (see :func:`path_to_file_uri`)."""
    env: dict[str, str]
    """The child's exact environment (overlaid on ``env_policy``'s result when given)."""
    tty: bool
    """Run the child on a pseudo-terminal."""
    pipe_stdin: bool = False
    """Give a non-tty child a writable stdin (else it reads /dev/null)."""
    arg0: str | None = None
    """Override ``argv[0]`` as the child sees it."""
    env_policy: dict[str, Any] | None = None
    """The reference's environment-inheritance policy, kept as an opaque JSON object."""
    window_size: WindowSize | None = None
    """Extension ``windowSize``: the terminal's size from the start (``tty`` only)."""

    @property
    def cwd_path(self) -> str:
        """The working directory as a local path."""
        return file_uri_to_path(self.cwd)


@attrs.frozen(kw_only=True)
class StartResult:
    """Result of ``process/start``."""

    process_id: str
    """The id of the started process."""
    sandbox_type: str = "none"
    """The reference's sandbox kind; trio_exec never sandboxes."""


@attrs.frozen(kw_only=True)
class ReadParams:
    """``process/read``: retained output after a cursor, optionally long-polling.

    The result is an :class:`~trio_exec.ReadResult` (``sandboxDenied`` is dropped when
    decoding and sent as ``false``).
    """

    METHOD: ClassVar[str] = "process/read"
    process_id: str
    """The process to read."""
    after_seq: int | None = attrs.field(default=None, validator=_non_negative)
    """Return chunks with ``seq`` above this; None means 0."""
    max_bytes: int | None = attrs.field(default=None, validator=_non_negative)
    """Soft byte budget (at least one chunk is returned); None means no limit."""
    wait_ms: int | None = attrs.field(default=None, validator=_non_negative)
    """Long-poll up to this many milliseconds for something new; None means 0."""


@attrs.frozen(kw_only=True)
class WriteParams:
    """``process/write``: bytes for the child's stdin, deduplicated by ``write_id``."""

    METHOD: ClassVar[str] = "process/write"
    process_id: str
    """The process to write to."""
    chunk: bytes
    """The bytes (base64 on the wire); empty writes nothing."""
    write_id: str = attrs.field(validator=_non_empty)
    """Non-empty id; a repeated id is acknowledged and not written again."""


@attrs.frozen(kw_only=True)
class WriteResult:
    """Result of ``process/write``."""

    status: WriteStatus
    """What happened to the bytes."""


@attrs.frozen(kw_only=True)
class SignalParams:
    """``process/signal``."""

    METHOD: ClassVar[str] = "process/signal"
    process_id: str
    """The process to signal."""
    signal: ProcessSignal
    """Which signal; anything but ``interrupt`` needs the ``signals`` extension."""


@attrs.frozen(kw_only=True)
class SignalResult:
    """Result of ``process/signal`` (``{}``)."""


@attrs.frozen(kw_only=True)
class TerminateParams:
    """``process/terminate``."""

    METHOD: ClassVar[str] = "process/terminate"
    process_id: str
    """The process to terminate."""
    grace_ms: int | None = attrs.field(default=None, validator=_non_negative)
    """Extension ``gracefulTerminate``: SIGTERM, then SIGKILL after this; None kills at once."""


@attrs.frozen(kw_only=True)
class TerminateResult:
    """Result of ``process/terminate``."""

    running: bool
    """Whether the process was running (and was signalled)."""


@attrs.frozen(kw_only=True)
class CloseStdinParams:
    """``process/closeStdin`` (extension ``closeStdin``)."""

    METHOD: ClassVar[str] = "process/closeStdin"
    process_id: str
    """The process whose stdin to close."""


@attrs.frozen(kw_only=True)
class CloseStdinResult:
    """Result of ``process/closeStdin``."""

    status: WriteStatus
    """``accepted`` when stdin was closed now, otherwise why not."""


@attrs.frozen(kw_only=True)
class ResizeParams:
    """``process/resize`` (extension ``resize``): the PTY window size."""

    METHOD: ClassVar[str] = "process/resize"
    process_id: str
    """The process whose terminal to resize."""
    rows: int = attrs.field(validator=_window_dimension)
    """Rows, 1 to :data:`MAX_WINDOW_DIMENSION`."""
    cols: int = attrs.field(validator=_window_dimension)
    """Columns, 1 to :data:`MAX_WINDOW_DIMENSION`."""


@attrs.frozen(kw_only=True)
class ResizeResult:
    """Result of ``process/resize`` (``{}``)."""


@attrs.frozen(kw_only=True)
class ListParams:
    """``process/list`` (extension ``list``); no params."""

    METHOD: ClassVar[str] = "process/list"


@attrs.frozen(kw_only=True)
class ProcessInfo:
    """One process of a ``process/list`` result."""

    process_id: str
    """Its id."""
    argv: tuple[str, ...]
    """Its command."""
    running: bool
    """Whether its exit status is still unknown."""
    exit_code: int | None
    """Its exit code, once known."""


@attrs.frozen(kw_only=True)
class ListResult:
    """Result of ``process/list``."""

    processes: tuple[ProcessInfo, ...]
    """The session's processes, including finished ones still retained."""


# -- typed notifications -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OutputNotification:
    """``process/output``: a chunk the child wrote."""

    METHOD: ClassVar[str] = "process/output"
    process_id: str
    """The process."""
    seq: int = attrs.field(validator=_non_negative)
    """The event's sequence number."""
    stream: OutputStream
    """Which stream."""
    chunk: bytes
    """The bytes (base64 on the wire)."""

    def to_event(self) -> Output:
        """The event it carries."""
        return Output(seq=self.seq, stream=self.stream, data=self.chunk)

    @classmethod
    def from_event(cls, process_id: str, event: Output) -> OutputNotification:
        """The notification for an event of process ``process_id``."""
        return cls(process_id=process_id, seq=event.seq, stream=event.stream, chunk=event.data)


@attrs.frozen(kw_only=True)
class ExitedNotification:
    """``process/exited``: the exit status is known (output may still follow)."""

    METHOD: ClassVar[str] = "process/exited"
    process_id: str
    """The process."""
    seq: int = attrs.field(validator=_non_negative)
    """The event's sequence number."""
    exit_code: int
    """The exit code, ``128 + N`` for signal N."""
    sandbox_denied: bool = False
    """The reference's sandbox heuristic; always false from trio_exec."""
    signal: str | None = None
    """Extension ``exitSignal``: the name of the signal that ended the child (``"SIGKILL"``)."""

    def to_event(self) -> Exited:
        """The event it carries (an unknown signal name gives ``signal=None``)."""
        return Exited(seq=self.seq, exit_code=self.exit_code, signal=_signum_of(self.signal))

    @classmethod
    def from_event(cls, process_id: str, event: Exited) -> ExitedNotification:
        """The notification for an event of process ``process_id``."""
        name = None if event.signal is None else signal_name(event.signal)
        return cls(process_id=process_id, seq=event.seq, exit_code=event.exit_code, signal=name)


@attrs.frozen(kw_only=True)
class ClosedNotification:
    """``process/closed``: end of output; always the last event of a process."""

    METHOD: ClassVar[str] = "process/closed"
    process_id: str
    """The process."""
    seq: int = attrs.field(validator=_non_negative)
    """The event's sequence number."""

    def to_event(self) -> Closed:
        """The event it carries."""
        return Closed(seq=self.seq)

    @classmethod
    def from_event(cls, process_id: str, event: Closed) -> ClosedNotification:
        """The notification for an event of process ``process_id``."""
        return cls(process_id=process_id, seq=event.seq)


def _signum_of(name: str | None) -> int | None:
    if name is None:
        return None
    try:
        return _signal.Signals[name].value
    except KeyError:
        pass
    if name.startswith("SIG") and name[3:].isdigit():
        return int(name[3:])
    return None


RequestParams: TypeAlias = (
    InitializeParams
    | StartParams
    | ReadParams
    | WriteParams
    | SignalParams
    | TerminateParams
    | CloseStdinParams
    | ResizeParams
    | ListParams
)
"""The params of any request method."""

RequestResult: TypeAlias = (
    InitializeResult
    | StartResult
    | ReadResult
    | WriteResult
    | SignalResult
    | TerminateResult
    | CloseStdinResult
    | ResizeResult
    | ListResult
)
"""The result of any request method."""

ProcessNotification: TypeAlias = OutputNotification | ExitedNotification | ClosedNotification
"""A notification about one process (route it by ``process_id``)."""

NotificationParams: TypeAlias = InitializedNotification | ProcessNotification
"""Any typed notification."""

_METHODS: Final[Mapping[str, tuple[type[RequestParams], type[RequestResult]]]] = {
    InitializeParams.METHOD: (InitializeParams, InitializeResult),
    StartParams.METHOD: (StartParams, StartResult),
    ReadParams.METHOD: (ReadParams, ReadResult),
    WriteParams.METHOD: (WriteParams, WriteResult),
    SignalParams.METHOD: (SignalParams, SignalResult),
    TerminateParams.METHOD: (TerminateParams, TerminateResult),
    CloseStdinParams.METHOD: (CloseStdinParams, CloseStdinResult),
    ResizeParams.METHOD: (ResizeParams, ResizeResult),
    ListParams.METHOD: (ListParams, ListResult),
}
_NOTIFICATIONS: Final[Mapping[str, type[NotificationParams]]] = {
    cls.METHOD: cls
    for cls in (
        InitializedNotification,
        OutputNotification,
        ExitedNotification,
        ClosedNotification,
    )
}

# -- the converter -------------------------------------------------------------------------

_RENAMES: Final[Mapping[tuple[type, str], str]] = {(Output, "data"): "chunk"}
"""Wire names that are not the camelCase of the attribute name."""

_OMITTED_WHEN_NONE: Final[frozenset[tuple[type, str]]] = frozenset(
    {
        (InitializeParams, "resume_session_id"),
        (InitializeResult, "environment_info"),
        (EnvironmentInfo, "shell"),
        (EnvironmentInfo, "cwd"),
        (EnvironmentInfo, "user_home_dir"),
        (EnvironmentInfo, "platform_os"),
        (EnvironmentInfo, "temporary_directories"),
        (EnvironmentInfo, "temp_dir"),
        (StartParams, "env_policy"),
        (StartParams, "window_size"),
        (TerminateParams, "grace_ms"),
        (ExitedNotification, "signal"),
        (ReadResult, "first_retained_seq"),
    }
)
"""Optional fields left out of the JSON when None (extensions, and a few core ones)."""

_CONSTANT_WIRE_FIELDS: Final[Mapping[type, Mapping[str, object]]] = {
    ReadResult: {"sandboxDenied": False},
}
"""Fields the wire has and the model lacks: sent with this value, ignored when read."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _wire_name(cls: type, name: str) -> str:
    return _RENAMES.get((cls, name)) or _camel(name)


def _clip(text: str) -> str:
    """Shorten a peer's text for an error message (:data:`MAX_ECHOED_CHARS`)."""
    if len(text) <= MAX_ECHOED_CHARS:
        return text
    return f"{text[: MAX_ECHOED_CHARS - 3]}..."


def _describe(value: object) -> str:
    """Name a JSON value the way serde does in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        text = json.dumps(value)
        if len(text) > 40:
            text = text[:36] + '..."'
        return f"string {text}"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _structure_str(value: object, _: object) -> str:
    if type(value) is str:
        return value
    raise _WireError(f"invalid type: {_describe(value)}, expected a string")


def _structure_int(value: object, _: object) -> int:
    if type(value) is int:
        if WIRE_INT_MIN <= value <= WIRE_INT_MAX:
            return value
        raise _WireError(f"invalid value: integer `{value}` is out of range")
    raise _WireError(f"invalid type: {_describe(value)}, expected an integer")


def _structure_bool(value: object, _: object) -> bool:
    if type(value) is bool:
        return value
    raise _WireError(f"invalid type: {_describe(value)}, expected a boolean")


_NOT_BASE64: Final = re.compile(r"[^A-Za-z0-9+/=]")


def _structure_bytes(value: object, _: object) -> bytes:
    if type(value) is not str:
        raise _WireError(f"invalid type: {_describe(value)}, expected a base64 string")
    # Strict mode still accepts padding past a whole quantum ("1CBA=", "AAAA===="): canonical
    # base64 is a whole number of quanta, with at most two padding symbols.
    if len(value) % 4 or value.endswith("==="):
        raise _WireError(_base64_problem(value))
    try:
        data = binascii.a2b_base64(value, strict_mode=True)  # validates in C
    except (binascii.Error, ValueError):
        raise _WireError(_base64_problem(value)) from None
    # Python accepts non-zero padding bits ("aGl=" for b"hi"); the reference does not.
    tail = value[-4:]
    if tail and base64.b64encode(base64.b64decode(tail)) != tail.encode("ascii"):
        raise _WireError(f"invalid base64: invalid last symbol {ord(tail.rstrip('=')[-1])}")
    return data


def _base64_problem(value: str) -> str:
    bad = _NOT_BASE64.search(value)
    if bad is not None:
        return f"invalid base64: invalid symbol {ord(bad.group())}, offset {bad.start()}"
    padding = value.find("=")
    # Padding inside the data, or starting a quantum of its own, is a misplaced symbol.
    if padding >= 0 and ("=" in value.rstrip("=") or padding % 4 == 0):
        return f"invalid base64: invalid symbol 61, offset {padding}"
    return "invalid base64: invalid padding or length"


def _unstructure_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _is_enum(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, enum.Enum)


def _enum_structure_factory(
    cls: type[enum.Enum], converter: object
) -> Callable[[object, object], enum.Enum]:
    members = {member.value: member for member in cls}
    expected = ", ".join(f"`{value}`" for value in members)

    def structure(value: object, _: object) -> enum.Enum:
        if type(value) is not str:
            raise _WireError(f"invalid type: {_describe(value)}, expected a string")
        try:
            return members[value]
        except KeyError:
            raise _WireError(
                f"unknown variant `{_clip(value)}`, expected one of {expected}"
            ) from None

    return structure


def _is_variadic_tuple(tp: object) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _tuple_structure_factory(
    tp: Any, converter: cattrs.Converter
) -> Callable[[object, object], object]:
    inner = homogenous_tuple_structure_factory(tp, converter)

    def structure(value: object, _: object) -> object:
        if type(value) is not list:
            raise _WireError(f"invalid type: {_describe(value)}, expected a sequence")
        return inner(value, tp)

    return structure


def _is_dict(tp: object) -> bool:
    return get_origin(tp) is dict


def _dict_structure_factory(
    tp: Any, converter: cattrs.Converter
) -> Callable[[object, object], object]:
    inner = mapping_structure_factory(tp, converter)

    def structure(value: object, _: object) -> object:
        if type(value) is not dict:
            raise _WireError(f"invalid type: {_describe(value)}, expected a map")
        return inner(value, tp)

    return structure


def _attrs_structure_factory(
    cls: type, converter: cattrs.Converter
) -> Callable[[object, object], object]:
    renames: dict[str, Any] = {
        a.name: override(rename=_wire_name(cls, a.name)) for a in attrs.fields(cls)
    }
    inner: Callable[[Any, Any], object] = make_dict_structure_fn(cls, converter, **renames)
    expected = f"expected struct {cls.__name__}"

    def structure(value: object, _: object) -> object:
        if type(value) is not dict:
            raise _WireError(f"invalid type: {_describe(value)}, {expected}")
        return inner(value, cls)

    return structure


def _attrs_unstructure_factory(
    cls: type, converter: cattrs.Converter
) -> Callable[[Any], dict[str, Any]]:
    overrides: dict[str, Any] = {
        a.name: override(
            rename=_wire_name(cls, a.name),
            omit_if_default=(cls, a.name) in _OMITTED_WHEN_NONE,
        )
        for a in attrs.fields(cls)
    }
    inner: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, converter, **overrides)
    constants = _CONSTANT_WIRE_FIELDS.get(cls)
    if constants is None:
        return inner

    def unstructure(value: Any) -> dict[str, Any]:
        result = inner(value)
        result.update(constants)
        return result

    return unstructure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(bytes, _structure_bytes)
    converter.register_unstructure_hook(bytes, _unstructure_bytes)
    converter.register_structure_hook_factory(_is_enum, _enum_structure_factory)
    converter.register_structure_hook_factory(_is_variadic_tuple, _tuple_structure_factory)
    converter.register_structure_hook_factory(_is_dict, _dict_structure_factory)
    converter.register_structure_hook_factory(attrs.has, _attrs_structure_factory)
    converter.register_unstructure_hook_factory(attrs.has, _attrs_unstructure_factory)
    return converter


_converter: Final = _make_converter()
"""The one converter between typed messages and JSON values."""

_T = TypeVar("_T")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _at(path: str) -> str:
    return f" at `{path}`" if path else ""


def _note(exc: BaseException) -> object:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote | IterableValidationNote):
            return note
    return None


def _problems(exc: BaseException, path: str, cls: type | None = None) -> Iterator[str]:
    """Render a cattrs error tree as reference-like messages with JSON paths."""
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            note = _note(sub)
            if isinstance(note, AttributeValidationNote):
                wire = _wire_name(exc.cl, note.name)
                if isinstance(sub, KeyError):
                    yield f"missing field `{wire}`{_at(path)}"
                else:
                    yield from _problems(sub, _join(path, wire))
            else:
                yield from _problems(sub, path, exc.cl)
    elif isinstance(exc, IterableValidationError):
        for sub in exc.exceptions:
            note = _note(sub)
            index = note.index if isinstance(note, IterableValidationNote) else "?"
            key = str(index) if isinstance(index, int) else _clip(json.dumps(str(index)))
            yield from _problems(sub, f"{path}[{key}]" if path else f"[{key}]")
    elif isinstance(exc, _FieldError):
        name = exc.field if cls is None else _wire_name(cls, exc.field)
        yield exc.render(name) + _at(path)
    elif isinstance(exc, _WireError):
        yield f"{exc}{_at(path)}"
    else:
        yield f"invalid value: {_clip(str(exc))}{_at(path)}"


def _structure(raw: object, cls: type[_T], code: int) -> _T:
    if raw is None:
        if any(a.default is attrs.NOTHING for a in attrs.fields(cast(Any, cls))):
            raise RpcDecodeError(code, f"invalid type: null, expected struct {cls.__name__}")
        raw = {}
    try:
        return _converter.structure(raw, cls)
    except ClassValidationError as exc:
        message = "; ".join(_problems(exc, ""))
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, _WireError) else f"invalid value: {_clip(str(exc))}"
    raise RpcDecodeError(code, message)


# -- envelope codec ------------------------------------------------------------------------


class _BadJson(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _BadJson(f"number too long ({len(text)} characters)")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _BadJson(f"number too long ({len(text)} characters)")
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"number out of range: {text}")
    return value


def _reject_constant(text: str) -> object:
    raise _BadJson(f"{text} is not JSON")


_json_decoder: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant
)
_json_encode: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
).encode


def _bad_frame(detail: str) -> RpcDecodeError:
    return RpcDecodeError(INVALID_REQUEST, f"failed to parse JSON-RPC message: {detail}")


def _request_id(value: object) -> RequestId:
    if type(value) is str or (type(value) is int and REQUEST_ID_MIN <= value <= REQUEST_ID_MAX):
        return value
    raise _bad_frame(
        f"invalid id {_describe(value)}: data did not match any variant of untagged enum RequestId"
    )


def decode_message(frame: str | bytes | bytearray | memoryview) -> Message:
    """Decode one frame (a websocket message or an NDJSON line) into a JSON-RPC message.

    A ``"jsonrpc"`` member is ignored. Typed params / results are decoded separately
    (:func:`decode_params`, :func:`decode_result`, :func:`decode_notification`).

    Raises:
        RpcDecodeError: code :data:`INVALID_REQUEST` (as the reference) for anything that
            is not one JSON-RPC object: invalid UTF-8, bad JSON, deep nesting, overlong
            numbers, a non-object, a null / float / boolean id, a missing member.
            Answer it with ``exc.to_response()`` (id -1) and keep the connection.
    """
    if isinstance(frame, str):
        text = frame
    else:
        try:
            text = bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad_frame(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = _json_decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise _bad_frame(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _BadJson as exc:
        raise _bad_frame(str(exc)) from None
    except RecursionError:
        raise _bad_frame("recursion limit exceeded (too deeply nested)") from None
    except ValueError as exc:  # anything else the JSON decoder may raise
        raise _bad_frame(str(exc)) from None
    if type(value) is not dict:
        raise _bad_frame("expected a JSON-RPC object")
    method = value.get("method")
    if "method" in value:
        if type(method) is not str:
            raise _bad_frame(f"invalid type for `method`: {_describe(method)}, expected a string")
        params = value.get("params")
        if "id" in value:
            return Request(id=_request_id(value["id"]), method=method, params=params)
        return Notification(method=method, params=params)
    if "id" in value:
        if "result" in value:
            return Response(id=_request_id(value["id"]), result=value["result"])
        if "error" in value:
            return ErrorResponse(id=_request_id(value["id"]), error=_error_object(value["error"]))
    raise _bad_frame("data did not match any variant of untagged enum JSONRPCMessage")


def _error_object(value: object) -> ErrorObject:
    if type(value) is not dict:
        raise _bad_frame(f"invalid type for `error`: {_describe(value)}, expected a map")
    code = value.get("code")
    message = value.get("message")
    if type(code) is not int or not WIRE_INT_MIN <= code <= WIRE_INT_MAX:
        raise _bad_frame(f"invalid `error.code`: {_describe(code)}, expected an integer")
    if type(message) is not str:
        raise _bad_frame(f"invalid `error.message`: {_describe(message)}, expected a string")
    return ErrorObject(code=code, message=message, data=value.get("data"))


def encode_message(message: Message) -> str:
    """Encode a message as one compact, pure-ASCII JSON text (no newline).

    ``params`` of None is left out; ``error.data`` of None is left out.
    Raises TypeError / ValueError if ``params`` / ``result`` is not JSON-serialisable.
    """
    obj: dict[str, object]
    match message:
        case Request():
            obj = {"id": message.id, "method": message.method}
            if message.params is not None:
                obj["params"] = message.params
        case Notification():
            obj = {"method": message.method}
            if message.params is not None:
                obj["params"] = message.params
        case Response():
            obj = {"id": message.id, "result": message.result}
        case ErrorResponse():
            error: dict[str, object] = {
                "code": message.error.code,
                "message": message.error.message,
            }
            if message.error.data is not None:
                error["data"] = message.error.data
            obj = {"error": error, "id": message.id}
        case _:
            assert_never(message)
    return _json_encode(obj)


def encode_line(message: Message) -> bytes:
    """Encode a message as one NDJSON line for the stdio transport (ends with ``\\n``)."""
    return encode_message(message).encode("ascii") + b"\n"


# -- typed messages ------------------------------------------------------------------------


def decode_params(method: str, raw_params: object) -> RequestParams:
    """Type the params of a request (server side).

    Raises:
        RpcDecodeError: :data:`METHOD_NOT_FOUND` with the reference's message
            (``exec-server stub does not implement `<method>` yet``) for an unknown
            method; :data:`INVALID_PARAMS` for params that do not fit, e.g.
            ``missing field `writeId```, ``argv must not be empty``, ``invalid type:
            integer `5`, expected a string at `processId```.
    """
    spec = _METHODS.get(method)
    if spec is None:
        raise RpcDecodeError(
            METHOD_NOT_FOUND, f"exec-server stub does not implement `{_clip(method)}` yet"
        )
    return _structure(raw_params, spec[0], INVALID_PARAMS)


def decode_result(method: str, raw_result: object) -> RequestResult:
    """Type the result of a request to ``method`` (client side).

    Unknown fields (the reference's ``sandboxDenied``, most of ``environmentInfo``) are
    dropped.

    Raises:
        RpcDecodeError: :data:`INVALID_PARAMS` if the result does not fit its type,
            :data:`METHOD_NOT_FOUND` if ``method`` is not a known request method.
    """
    spec = _METHODS.get(method)
    if spec is None:
        raise RpcDecodeError(METHOD_NOT_FOUND, f"no result type for method `{_clip(method)}`")
    return _structure(raw_result, spec[1], INVALID_PARAMS)


def decode_notification(notification: Notification) -> NotificationParams:
    """Type a notification. The params of ``initialized`` are ignored.

    Raises:
        RpcDecodeError: :data:`METHOD_NOT_FOUND` for an unknown method (a client ignores
            it; the reference server drops the connection), :data:`INVALID_PARAMS` for
            params that do not fit.
    """
    cls = _NOTIFICATIONS.get(notification.method)
    if cls is None:
        raise RpcDecodeError(
            METHOD_NOT_FOUND, f"unknown notification `{_clip(notification.method)}`"
        )
    if cls is InitializedNotification:
        return InitializedNotification()
    return _structure(notification.params, cls, INVALID_PARAMS)


def make_request(request_id: RequestId, params: RequestParams) -> Request:
    """The request for typed params (the method comes from the params type)."""
    return Request(id=request_id, method=params.METHOD, params=_converter.unstructure(params))


def make_response(request_id: RequestId, result: RequestResult) -> Response:
    """The response carrying a typed result."""
    return Response(id=request_id, result=_converter.unstructure(result))


def make_error_response(
    request_id: RequestId, code: int, message: str, data: object = None
) -> ErrorResponse:
    """An error response (``request_id`` is :data:`UNKNOWN_REQUEST_ID` for bad frames)."""
    return ErrorResponse(id=request_id, error=ErrorObject(code=code, message=message, data=data))


def make_notification(params: NotificationParams) -> Notification:
    """The notification for typed params (the method comes from the params type)."""
    return Notification(method=params.METHOD, params=_converter.unstructure(params))


# -- request / response matching -----------------------------------------------------------

_R = TypeVar("_R")


@attrs.frozen(kw_only=True)
class Reply:
    """The outcome of one request, as matched by :class:`RpcClientState`.

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
    that did not decode) or :class:`ConnectionLost` (from :meth:`RpcClientState.fail_all`)."""

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


class RpcClientState:
    """Request ids and pending requests of one connection, without I/O.

    Ids are integers from 1. The owner sends the :class:`Request` that
    :meth:`send_request` returns, feeds every :class:`Response` / :class:`ErrorResponse`
    to :meth:`receive_response`, and calls :meth:`fail_all` when the connection is lost.
    A server (which sends no requests) can use one to reject stray responses.
    """

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: dict[int, str] = {}
        self._abandoned: set[int] = set()

    @property
    def pending(self) -> Mapping[int, str]:
        """Read-only view of the pending requests: id -> method."""
        return MappingProxyType(self._pending)

    def send_request(self, params: RequestParams) -> Request:
        """Allocate an id, record the request as pending and return it (to be sent)."""
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = params.METHOD
        return make_request(request_id, params)

    def abandon(self, request_id: RequestId) -> None:
        """Forget a pending request whose caller gave up (e.g. was cancelled).

        Its response, if it comes, is then dropped by :meth:`receive_response`.
        """
        if type(request_id) is int and self._pending.pop(request_id, None) is not None:
            self._abandoned.add(request_id)

    def receive_response(self, message: Response | ErrorResponse) -> Reply | None:
        """Match a response to its pending request and type it.

        Returns the :class:`Reply`, or None when the request was abandoned.

        Raises:
            ProtocolError: the id matches no pending request (the connection is broken).
        """
        request_id = message.id
        method = self._pending.pop(request_id, None) if type(request_id) is int else None
        if method is None:
            if type(request_id) is int and request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return None
            detail = ""
            if isinstance(message, ErrorResponse):
                detail = f" ([{message.error.code}] {message.error.message})"
            raise ProtocolError(f"response to unknown request id {request_id!r}{detail}")
        assert type(request_id) is int
        if isinstance(message, ErrorResponse):
            error = RemoteError(message.error.code, message.error.message, message.error.data)
            return Reply(request_id=request_id, method=method, error=error)
        try:
            result = decode_result(method, message.result)
        except RpcDecodeError as exc:
            return Reply(request_id=request_id, method=method, error=exc)
        return Reply(request_id=request_id, method=method, result=result)

    def fail_all(self, reason: str) -> list[Reply]:
        """Fail every pending request with :class:`ConnectionLost` and forget them all."""
        replies = [
            Reply(request_id=request_id, method=method, error=ConnectionLost(reason))
            for request_id, method in self._pending.items()
        ]
        self._pending.clear()
        self._abandoned.clear()
        return replies


# -- NDJSON framing ------------------------------------------------------------------------


class LineDecoder:
    """Split a byte stream into NDJSON lines, sans-IO.

    :meth:`feed` takes chunks of any size and returns the complete lines, without
    their ``\\n`` or ``\\r\\n``; blank (whitespace-only) lines are skipped.
    :meth:`feed_eof` returns a final unterminated line.

    Args:
        max_line_bytes: bound on one line, without its terminator. A longer line raises
            :class:`LineTooLong` as soon as it is detected; the decoder is then unusable
            (every later call raises again), because the stream cannot be resynchronised
            safely.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, not {max_line_bytes}")
        self.max_line_bytes: Final = max_line_bytes
        """The bound on one line."""
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no newline
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held back."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add bytes; return the lines they completed, oldest first.

        Raises:
            LineTooLong: a line exceeds ``max_line_bytes``.
        """
        if self._failed:
            raise LineTooLong(self.max_line_bytes)
        buffer = self._buffer
        buffer += data
        lines: list[bytes] = []
        start = 0
        newline = buffer.find(b"\n", self._scanned)
        while newline >= 0:
            end = newline - 1 if newline > start and buffer[newline - 1] == 0x0D else newline
            self._check(end - start)
            line = bytes(buffer[start:end])
            if line.strip():
                lines.append(line)
            start = newline + 1
            newline = buffer.find(b"\n", start)
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        # An incomplete line may end with the \r of its terminator.
        self._check(len(buffer) - (1 if buffer.endswith(b"\r") else 0))
        return lines

    def feed_eof(self) -> list[bytes]:
        """End of stream: return the final line if it had no newline (and is not blank)."""
        if self._failed:
            raise LineTooLong(self.max_line_bytes)
        line = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        if line.endswith(b"\r"):
            line = line[:-1]
        return [line] if line.strip() else []

    def _check(self, length: int) -> None:
        if length > self.max_line_bytes:
            self._failed = True
            self._buffer.clear()
            raise LineTooLong(self.max_line_bytes)


# -- file URIs -----------------------------------------------------------------------------


def path_to_file_uri(path: str | os.PathLike[str]) -> str:
    """Turn an absolute local path into a ``file://`` URI (percent-encoded, exact).

    Bytes that are not UTF-8 (surrogate-escaped in ``path``) are percent-encoded as they
    are, so :func:`file_uri_to_path` gives back the same string.

    Raises:
        ValueError: the path is relative or contains a NUL.
    """
    text = os.fspath(path)
    if not text.startswith("/"):
        raise ValueError(f"path must be absolute: {text!r}")
    if "\0" in text:
        raise ValueError("path must not contain NUL")
    return "file://" + quote_from_bytes(os.fsencode(text), safe="/")


def file_uri_to_path(uri: str) -> str:
    """Turn a ``file://`` URI for this machine into a local path.

    The host must be empty or ``localhost``; a query or fragment is refused.

    Raises:
        ValueError: not a URI (``invalid URI: relative URL without a base``, as the
            reference says for ``/tmp``), another scheme, another host, or a bad path.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ValueError(f"invalid URI: {exc}") from None
    if not parts.scheme:
        raise ValueError("invalid URI: relative URL without a base")
    if parts.scheme.lower() != "file":
        raise ValueError(f"not a file:// URI: scheme `{parts.scheme}`")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URI names another host: `{_clip(parts.netloc)}`")
    if parts.query or parts.fragment:
        raise ValueError("file URI must not have a query or fragment")
    path = os.fsdecode(unquote_to_bytes(parts.path))
    if not path.startswith("/"):
        raise ValueError("file URI has no absolute path")
    if "\0" in path:
        raise ValueError("file URI path contains NUL")
    return path
