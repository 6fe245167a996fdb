"""The typed params, results and notifications of every method, as frozen attrs classes.

They know nothing of JSON (the converter maps them to the wire); each request and
notification class names its method in ``METHOD``, and ``_METHODS`` / ``_NOTIFICATIONS``
map a method name back to its types.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeAlias

import attrs

from .._events import Closed, Exited, Output, OutputStream, ReadResult, WriteStatus, signal_name
from .codes import ProcessSignal
from .environment import (
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
from .rules import _file_uri, _non_empty, _non_negative, _window_dimension
from .uris import file_uri_to_path

__all__ = [
    "CloseStdinParams",
    "CloseStdinResult",
    "ClosedNotification",
    "EnvironmentInfo",
    "ExitedNotification",
    "InitializeParams",
    "InitializeResult",
    "InitializedNotification",
    "ListParams",
    "ListResult",
    "NotificationParams",
    "OutputNotification",
    "ProcessInfo",
    "ProcessNotification",
    "ReadParams",
    "RequestParams",
    "RequestResult",
    "ResizeParams",
    "ResizeResult",
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
]

# -- typed params and results --------------------------------------------------------------


@attrs.frozen(kw_only=True)
class InitializeParams:
    """``initialize``: open (or, with ``resume_session_id``, resume) a session."""

    METHOD: ClassVar[str] = "initialize"
    client_name: str
    """Free-form name of the client."""
    resume_session_id: str | None = None
    """The session to take back after a disconnect, or None for a new session."""
    extensions: tuple[str, ...] | None = None
    """The trio_exec extensions the client takes that change what the server sends (only
    :attr:`Extension.BINARY_OUTPUT <trio_exec._protocol.Extension.BINARY_OUTPUT>`); left out
    when None. The reference ignores the field."""


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
    ``providerId``, ...) are dropped.
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
    capabilities: dict[str, bool] | None = None
    """The environment methods the server offers beyond the core ones, by the reference's
    names (``fsWatchMissing``, ``environmentConfigRead``, ...); codex uses a method only
    when its capability is true."""


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
    | EnvironmentStatusParams
    | EnvironmentInfoParams
    | EnvironmentConfigReadParams
    | GetMetadataParams
    | WatchMissingParams
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
    | EnvironmentStatusResult
    | EnvironmentInfo
    | EnvironmentConfig
    | FileMetadata
    | WatchMissingResult
)
"""The result of any request method."""

ProcessNotification: TypeAlias = OutputNotification | ExitedNotification | ClosedNotification
"""A notification about one process (route it by ``process_id``)."""

NotificationParams: TypeAlias = (
    InitializedNotification | ProcessNotification | MissingChangedNotification
)
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
    EnvironmentStatusParams.METHOD: (EnvironmentStatusParams, EnvironmentStatusResult),
    EnvironmentInfoParams.METHOD: (EnvironmentInfoParams, EnvironmentInfo),
    EnvironmentConfigReadParams.METHOD: (EnvironmentConfigReadParams, EnvironmentConfig),
    GetMetadataParams.METHOD: (GetMetadataParams, FileMetadata),
    WatchMissingParams.METHOD: (WatchMissingParams, WatchMissingResult),
}
_NOTIFICATIONS: Final[Mapping[str, type[NotificationParams]]] = {
    cls.METHOD: cls
    for cls in (
        InitializedNotification,
        OutputNotification,
        ExitedNotification,
        ClosedNotification,
        MissingChangedNotification,
    )
}
