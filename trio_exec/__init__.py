"""Run processes as Trio structured-concurrency sessions, here or on other machines.

Start with :func:`open_process` (local) or :func:`connect` (an exec server), then
iterate over ``proc.events``. See the README for a tour.

``import trio_exec`` loads the local layer only (processes, events, errors,
:func:`run_process`). The remote client, the server, streams and the supervisor, with
what they need (trio_websocket, wsproto, h11, cattrs and the protocol's converter), load
on first use of one of their names (:pep:`562`), so a program that runs local processes
does not pay for them.
"""

from __future__ import annotations

import typing as _typing
from importlib import import_module as _import_module

from ._backend import DEFAULT_GRACE, ExecBackend, ExecProcess, ProcessOptions, ProcessStatistics
from ._cgroup import Containment, ContainmentCheck, containment
from ._errors import (
    CalledProcessError,
    ConnectionLost,
    InternalError,
    InvalidParamsError,
    InvalidRequestError,
    MethodNotFoundError,
    ParseError,
    ProtocolError,
    RemoteError,
    SessionAlreadyAttachedError,
    SpawnError,
    SpawnFileNotFoundError,
    SpawnIsADirectoryError,
    SpawnNotADirectoryError,
    SpawnPermissionError,
    TrioExecError,
    UnsupportedOperation,
)
from ._events import (
    Closed,
    Event,
    Exited,
    Failed,
    Output,
    OutputStream,
    ProcessId,
    ReadResult,
    WriteStatus,
    signal_name,
)
from ._local import LocalBackend, LocalProcess, open_process
from ._log import DEFAULT_RETAINED_BYTES
from ._run import CompletedProcess, run_process

if _typing.TYPE_CHECKING:
    from ._command import CommandStderr, connect_command
    from ._remote import RemoteBackend, RemoteProcess, connect, open_remote_backend
    from ._server import ExecServer, serve_stdio, serve_websocket
    from ._stream import (
        LineReader,
        LineTooLongError,
        ProcessStream,
        StderrCapture,
        StderrSink,
        open_stream,
    )
    from ._supervisor import (
        ChildError,
        ChildHandle,
        ChildRun,
        ChildSpec,
        ChildState,
        ChildStatus,
        OutputLine,
        Readiness,
        ReadyOnCheck,
        ReadyOnOutput,
        ReadyOnPort,
        RestartPolicy,
        Supervisor,
        open_supervisor,
    )

_LAZY_MODULES: _typing.Final[dict[str, tuple[str, ...]]] = {
    "._command": ("CommandStderr", "connect_command"),
    "._remote": ("RemoteBackend", "RemoteProcess", "connect", "open_remote_backend"),
    "._server": ("ExecServer", "serve_stdio", "serve_websocket"),
    "._stream": (
        "LineReader",
        "LineTooLongError",
        "ProcessStream",
        "StderrCapture",
        "StderrSink",
        "open_stream",
    ),
    "._supervisor": (
        "ChildError",
        "ChildHandle",
        "ChildRun",
        "ChildSpec",
        "ChildState",
        "ChildStatus",
        "OutputLine",
        "Readiness",
        "ReadyOnCheck",
        "ReadyOnOutput",
        "ReadyOnPort",
        "RestartPolicy",
        "Supervisor",
        "open_supervisor",
    ),
}
"""The submodules loaded on first use, with the public names each provides (the same
names as the ``TYPE_CHECKING`` imports above, which type checkers read instead)."""

_LAZY_NAMES: _typing.Final = {
    name: module for module, names in _LAZY_MODULES.items() for name in names
}
"""Each lazily loaded public name and the submodule that defines it."""

if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: they see the imports above, and a module __getattr__
    # would make them accept any attribute of the package.

    def __getattr__(name: str) -> object:
        """Load a lazily exported name from its submodule on first use (PEP 562)."""
        module = _LAZY_NAMES.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_import_module(module, __name__), name)
        globals()[name] = value  # later lookups find it without this function
        return value

    def __dir__() -> list[str]:
        """The package's attributes, lazily exported names included."""
        return sorted({*globals(), *_LAZY_NAMES})


__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_RETAINED_BYTES",
    "CalledProcessError",
    "ChildError",
    "ChildHandle",
    "ChildRun",
    "ChildSpec",
    "ChildState",
    "ChildStatus",
    "Closed",
    "CommandStderr",
    "CompletedProcess",
    "ConnectionLost",
    "Containment",
    "ContainmentCheck",
    "Event",
    "ExecBackend",
    "ExecProcess",
    "ExecServer",
    "Exited",
    "Failed",
    "InternalError",
    "InvalidParamsError",
    "InvalidRequestError",
    "LineReader",
    "LineTooLongError",
    "LocalBackend",
    "LocalProcess",
    "MethodNotFoundError",
    "Output",
    "OutputLine",
    "OutputStream",
    "ParseError",
    "ProcessId",
    "ProcessOptions",
    "ProcessStatistics",
    "ProcessStream",
    "ProtocolError",
    "ReadResult",
    "Readiness",
    "ReadyOnCheck",
    "ReadyOnOutput",
    "ReadyOnPort",
    "RemoteBackend",
    "RemoteError",
    "RemoteProcess",
    "RestartPolicy",
    "SessionAlreadyAttachedError",
    "SpawnError",
    "SpawnFileNotFoundError",
    "SpawnIsADirectoryError",
    "SpawnNotADirectoryError",
    "SpawnPermissionError",
    "StderrCapture",
    "StderrSink",
    "Supervisor",
    "TrioExecError",
    "UnsupportedOperation",
    "WriteStatus",
    "connect",
    "connect_command",
    "containment",
    "open_process",
    "open_remote_backend",
    "open_stream",
    "open_supervisor",
    "run_process",
    "serve_stdio",
    "serve_websocket",
    "signal_name",
]

__version__ = "0.1.0"
