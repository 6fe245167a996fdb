"""Run processes as Trio structured-concurrency sessions, here or on other machines.

Start with :func:`open_process` (local) or :func:`connect` (an exec server), then
iterate over ``proc.events``. See the README for a tour.
"""

from __future__ import annotations

from ._backend import DEFAULT_GRACE, ExecBackend, ExecProcess, ProcessOptions, ProcessStatistics
from ._cgroup import Containment, ContainmentCheck, containment
from ._command import CommandStderr, connect_command
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
from ._remote import RemoteBackend, RemoteProcess, connect, open_remote_backend
from ._run import CompletedProcess, run_process
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
