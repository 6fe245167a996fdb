"""Run processes as Trio structured-concurrency sessions, here or on other machines.

Start with :func:`open_process` (local) or :func:`connect` (an exec server), then
iterate over ``proc.events``. See the README for a tour.
"""

from __future__ import annotations

from ._backend import (
    DEFAULT_GRACE,
    CompletedProcess,
    ExecBackend,
    ExecProcess,
    ProcessStatistics,
    run_process,
)
from ._errors import (
    CalledProcessError,
    ConnectionLost,
    ProtocolError,
    RemoteError,
    SpawnError,
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
from ._retained import DEFAULT_RETAINED_BYTES

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_RETAINED_BYTES",
    "CalledProcessError",
    "Closed",
    "CompletedProcess",
    "ConnectionLost",
    "Event",
    "ExecBackend",
    "ExecProcess",
    "Exited",
    "Failed",
    "LocalBackend",
    "LocalProcess",
    "Output",
    "OutputStream",
    "ProcessId",
    "ProcessStatistics",
    "ProtocolError",
    "ReadResult",
    "RemoteError",
    "SpawnError",
    "TrioExecError",
    "UnsupportedOperation",
    "WriteStatus",
    "open_process",
    "run_process",
    "signal_name",
]

__version__ = "0.1.0"
