"""The exception tree.

::

    TrioExecError
     ├─ SpawnError (also OSError)       the child could not be started
     │   ├─ SpawnFileNotFoundError       ... also a FileNotFoundError (ENOENT)
     │   ├─ SpawnPermissionError         ... also a PermissionError (EACCES, EPERM)
     │   ├─ SpawnNotADirectoryError      ... also a NotADirectoryError (ENOTDIR)
     │   └─ SpawnIsADirectoryError       ... also an IsADirectoryError (EISDIR)
     ├─ CalledProcessError              run_process(check=True) saw a non-zero exit
     ├─ UnsupportedOperation            the peer lacks the extension an operation needs
     ├─ ProtocolError                   a peer broke the wire protocol
     ├─ RemoteError(code, message)      a JSON-RPC error answer, one subclass per wire code
     │   ├─ ParseError                   -32700
     │   ├─ InvalidRequestError          -32600
     │   ├─ MethodNotFoundError          -32601
     │   ├─ InvalidParamsError           -32602
     │   ├─ InternalError                -32603
     │   └─ SessionAlreadyAttachedError  -32010
     └─ ConnectionLost                  the transport to the server is gone

Closing a resource that is already closed uses trio's ``ClosedResourceError``;
a concurrent use that is not allowed uses ``BusyResourceError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

__all__ = [
    "CalledProcessError",
    "ConnectionLost",
    "InternalError",
    "InvalidParamsError",
    "InvalidRequestError",
    "MethodNotFoundError",
    "ParseError",
    "ProtocolError",
    "RemoteError",
    "SessionAlreadyAttachedError",
    "SpawnError",
    "SpawnFileNotFoundError",
    "SpawnIsADirectoryError",
    "SpawnNotADirectoryError",
    "SpawnPermissionError",
    "TrioExecError",
    "UnsupportedOperation",
]


class TrioExecError(Exception):
    """Base class of every error trio_exec raises."""


class SpawnError(TrioExecError, OSError):
    """The child could not be started: missing program, bad cwd, not executable.

    It is an :class:`OSError`, so ``errno`` and ``strerror`` are set when the OS
    gave them, and ``filename`` is the program or directory involved (None when the
    server did not say which).

    Like :class:`OSError`, ``SpawnError(errno, ...)`` builds the subclass for that
    errno, so that ``except FileNotFoundError`` catches a missing program or directory,
    locally and remotely: :class:`SpawnFileNotFoundError` (ENOENT),
    :class:`SpawnPermissionError` (EACCES, EPERM), :class:`SpawnNotADirectoryError`
    (ENOTDIR) and :class:`SpawnIsADirectoryError` (EISDIR). Other errnos give a plain
    SpawnError.
    """

    def __new__(cls, errno: int | None, strerror: str, filename: str | None = None) -> SpawnError:
        if errno is None:
            return super().__new__(cls, strerror)
        if cls is SpawnError:
            # The OSError subclass the interpreter picks for this errno, on this platform.
            cls = _SPAWN_SUBCLASSES.get(type(OSError(errno, strerror)), SpawnError)
        return super().__new__(cls, errno, strerror, filename)

    def __init__(self, errno: int | None, strerror: str, filename: str | None = None) -> None:
        if errno is None:
            OSError.__init__(self, strerror)
        else:
            OSError.__init__(self, errno, strerror, filename)
        self.program = filename
        """The program (or path) that could not be used."""

    def __reduce__(self) -> tuple[object, ...]:
        strerror = str(self) if self.errno is None else self.strerror
        return (type(self), (self.errno, strerror, self.program), self.__dict__)


class SpawnFileNotFoundError(SpawnError, FileNotFoundError):
    """A :class:`SpawnError` for ENOENT: the program or the working directory is missing."""


class SpawnPermissionError(SpawnError, PermissionError):
    """A :class:`SpawnError` for EACCES or EPERM: the program cannot be executed, or the
    working directory cannot be entered."""


class SpawnNotADirectoryError(SpawnError, NotADirectoryError):
    """A :class:`SpawnError` for ENOTDIR: the working directory, or a directory in the
    program's path, is not a directory."""


class SpawnIsADirectoryError(SpawnError, IsADirectoryError):
    """A :class:`SpawnError` for EISDIR."""


_SPAWN_SUBCLASSES: Final[Mapping[type[OSError], type[SpawnError]]] = {
    FileNotFoundError: SpawnFileNotFoundError,
    PermissionError: SpawnPermissionError,
    NotADirectoryError: SpawnNotADirectoryError,
    IsADirectoryError: SpawnIsADirectoryError,
}


class CalledProcessError(TrioExecError):
    """``run_process(..., check=True)`` ran a child that exited with a non-zero code."""

    def __init__(self, argv: Sequence[str], exit_code: int, stdout: bytes, stderr: bytes) -> None:
        super().__init__(argv, exit_code)
        self.argv = list(argv)
        """The command that ran."""
        self.exit_code = exit_code
        """Its exit code (``128 + N`` for signal N)."""
        self.stdout = stdout
        """Everything it wrote to stdout (or to its terminal)."""
        self.stderr = stderr
        """Everything it wrote to stderr."""

    def __str__(self) -> str:
        return f"command {self.argv!r} exited with code {self.exit_code}"


class UnsupportedOperation(TrioExecError):
    """The operation needs a protocol extension that the server does not offer."""


class ProtocolError(TrioExecError):
    """A message broke the wire protocol (bad JSON, bad shape, bad field)."""


class RemoteError(TrioExecError):
    """A JSON-RPC error answer: the server answered a request with an error.

    The exec server raises the same classes inside to answer with them, so a code has one
    class on both ends. Like :class:`SpawnError` for errnos, ``RemoteError(code, ...)``
    builds the subclass for that code: :class:`ParseError` (-32700),
    :class:`InvalidRequestError` (-32600), :class:`MethodNotFoundError` (-32601),
    :class:`InvalidParamsError` (-32602), :class:`InternalError` (-32603) and
    :class:`SessionAlreadyAttachedError` (-32010), each with its code as ``CODE``. Another
    code gives a plain RemoteError; ``except RemoteError`` catches them all.
    """

    def __new__(cls, code: int, message: str, data: object = None) -> RemoteError:
        if cls is RemoteError:
            cls = _REMOTE_SUBCLASSES.get(code, RemoteError)
        return super().__new__(cls, code, message)

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(code, message)
        self.code = code
        """The JSON-RPC error code (see PROTOCOL.md)."""
        self.message = message
        """The server's message."""
        self.data = data
        """The error's optional ``data`` member (decoded JSON), None when absent."""

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ParseError(RemoteError):
    """-32700, JSON-RPC "parse error" (the reference and trio_exec's server answer an
    unparsable frame with :class:`InvalidRequestError` instead)."""

    CODE: Final = -32700
    """The wire code."""


class InvalidRequestError(RemoteError):
    """-32600: a malformed or out-of-order request (not initialized), a duplicate process
    id, an unknown process, a full process table or too many requests in flight."""

    CODE: Final = -32600
    """The wire code."""


class MethodNotFoundError(RemoteError):
    """-32601: the server does not implement the method."""

    CODE: Final = -32601
    """The wire code."""


class InvalidParamsError(RemoteError):
    """-32602: the params did not decode (wrong types, empty ``argv``, a bad ``cwd``)."""

    CODE: Final = -32602
    """The wire code."""


class InternalError(RemoteError):
    """-32603: a spawn failure (the message is the OS error text) or another failure of
    the server. The client raises a :class:`SpawnError` for a failed ``process/start``."""

    CODE: Final = -32603
    """The wire code."""


class SessionAlreadyAttachedError(RemoteError):
    """-32010: ``initialize {resumeSessionId}`` named a session that is still attached to
    another connection."""

    CODE: Final = -32010
    """The wire code."""


_REMOTE_SUBCLASSES: Final[Mapping[int, type[RemoteError]]] = {
    ParseError.CODE: ParseError,
    InvalidRequestError.CODE: InvalidRequestError,
    MethodNotFoundError.CODE: MethodNotFoundError,
    InvalidParamsError.CODE: InvalidParamsError,
    InternalError.CODE: InternalError,
    SessionAlreadyAttachedError.CODE: SessionAlreadyAttachedError,
}
"""The class of each wire code (see :class:`RemoteError`)."""


class ConnectionLost(TrioExecError):
    """The transport to the exec server is gone; the call cannot complete.

    Args:
        close_code: the websocket close code when a websocket ended, e.g. 1001 (Going
            Away: the peer shut down), 1006 (dropped without a close handshake).
    """

    def __init__(self, *args: object, close_code: int | None = None) -> None:
        super().__init__(*args)
        self.close_code = close_code
        """The websocket close code, or None (another transport, or no code known)."""
