"""Supervisor: keep long-running children alive, the structured-concurrency way.

A :class:`Supervisor` runs inside a nursery (``await nursery.start(supervisor.run)``, or
``async with open_supervisor() as supervisor``) and owns one task per child. It only uses
the :class:`~trio_exec.ExecBackend` interface, so children run on this machine
(:class:`~trio_exec.LocalBackend`, the default) or on an exec server
(:class:`~trio_exec.RemoteBackend`) alike.

Theory of operation
-------------------
Each child is described by a frozen :class:`ChildSpec` and lives in a loop of *runs*.
A run opens a process session with the backend, consumes its events (the last lines of
output are kept, and an output readiness pattern is matched line by line), waits for
the readiness condition (``STARTING``), reports ``RUNNING``, and waits for the exit.
Leaving the session kills whatever is left of the child's process group and reaps it,
so a new run starts only once the previous one is entirely gone: no grandchildren left
behind, and no overlap with an old instance still in its SIGTERM-to-SIGKILL window.
Then the restart policy decides: ``EXITED`` (not restarted), ``FAILED`` (gave up), or
``BACKOFF`` (an exponential delay with jitter) and another run.

Stopping is cancellation. :meth:`Supervisor.stop` cancels the child's own scope;
cancelling the supervisor's scope cancels every child task. Either way the child is
terminated from a shielded ``finally`` (SIGTERM to its group, SIGKILL after the grace,
:meth:`~trio_exec.ExecProcess.terminate`), the session is left (which reaps the group),
and the cancellation propagates: the restart decision is never reached, so nothing is
restarted while stopping (not a child that crashed meanwhile, and not from a backoff
sleep, which the cancellation ends). Children are stopped concurrently, so shutting
down takes about the longest grace, not their sum.

Status is a frozen :class:`ChildStatus` snapshot. :meth:`ChildHandle.wait_until` evaluates
its predicate on every change as it happens, so it sees even states that last no time
at all (a ``BACKOFF`` of zero seconds): tests synchronise on it, never on sleeps.

Modules, each importing only from those listed before it: ``spec`` (:class:`ChildSpec`,
:class:`RestartPolicy`, the readiness conditions, their defaults), ``status`` (states, run
records, :class:`ChildStatus`, :class:`ChildError`), ``lines`` (the output line splitter),
``readiness`` (the port and check probes), ``child`` (the runner of one child: its task,
restarts and backoff), ``supervisor`` (:class:`Supervisor`, :func:`open_supervisor`,
:class:`ChildHandle`).
"""

from __future__ import annotations

from .child import EXIT_REPORT_TIMEOUT, KILL_TIMEOUT
from .lines import OUTPUT_LINE_BYTES
from .readiness import PORT_CONNECT_TIMEOUT
from .spec import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_JITTER,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_KEEP_LINES,
    DEFAULT_KEEP_RUNS,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_READY_INTERVAL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_RESTART_WINDOW,
    ChildSpec,
    Readiness,
    ReadyOnCheck,
    ReadyOnOutput,
    ReadyOnPort,
    RestartPolicy,
)
from .status import FINAL_STATES, ChildError, ChildRun, ChildState, ChildStatus, OutputLine
from .supervisor import ChildHandle, Supervisor, open_supervisor

__all__ = [
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_JITTER",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_KEEP_LINES",
    "DEFAULT_KEEP_RUNS",
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_READY_INTERVAL",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_RESTART_WINDOW",
    "EXIT_REPORT_TIMEOUT",
    "FINAL_STATES",
    "KILL_TIMEOUT",
    "OUTPUT_LINE_BYTES",
    "PORT_CONNECT_TIMEOUT",
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
]
