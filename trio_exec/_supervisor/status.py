"""Supervisor status: a child's states, run records, status snapshots, and ChildError.

:class:`ChildState`, :class:`ChildRun` (with its mutable counterpart while the run lasts),
:class:`OutputLine`, :class:`ChildStatus` and :class:`ChildError`.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from .._errors import TrioExecError
from .._events import OutputStream, signal_name
from .spec import ChildSpec

__all__ = [
    "FINAL_STATES",
    "ChildError",
    "ChildRun",
    "ChildState",
    "ChildStatus",
    "OutputLine",
    "_RunInfo",
]


class ChildState(enum.Enum):
    """Where a supervised child is in its life. The last three are final."""

    STARTING = "starting"
    """Being spawned, or waiting for its readiness condition."""
    RUNNING = "running"
    """Ready (its readiness condition held) and not exited yet."""
    BACKOFF = "backoff"
    """Ended; waiting before the next start (:attr:`ChildStatus.next_start`)."""
    STOPPING = "stopping"
    """Being terminated by :meth:`Supervisor.stop` or by the supervisor's shutdown."""
    STOPPED = "stopped"
    """Final: stopped by request or by the supervisor's shutdown."""
    EXITED = "exited"
    """Final: exited and the restart policy does not start it again."""
    FAILED = "failed"
    """Final: too many restarts within the window, or a failed start not to be retried."""


FINAL_STATES: Final = frozenset({ChildState.STOPPED, ChildState.EXITED, ChildState.FAILED})
"""The states a child never leaves (:attr:`ChildStatus.finished`)."""

# -- status -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OutputLine:
    """One line of a child's output, as kept in :attr:`ChildStatus.lines`."""

    run: int
    """The run (:attr:`ChildRun.run`) that wrote it."""
    stream: OutputStream
    """The stream it came from."""
    text: str
    """The line, decoded as UTF-8 with invalid bytes replaced, without its line end."""


@attrs.frozen(kw_only=True)
class ChildRun:
    """The record of one run (one start) of a child. Times are ``trio.current_time()``."""

    run: int
    """1 for the first start, 2 for the first restart, ..."""
    process_id: str | None
    """The session's process id (None if the spawn failed)."""
    started_at: float
    """When the start began."""
    ready_at: float | None
    """When the readiness condition held (None: it never did, the start failed)."""
    ended_at: float | None
    """When the session ended (None while it runs)."""
    exit_code: int | None
    """The exit code (``128 + N`` for signal N), once known."""
    signal: int | None
    """The signal that ended the child, if the backend reported one."""
    failure: str | None
    """Why the start failed or the session broke (spawn error, readiness timeout, ...);
    None for a child that became ready and exited, whatever its exit code."""
    stopped: bool
    """Whether the run was ended by a stop or the supervisor's shutdown."""
    backoff: float | None
    """The delay before the restart that followed (None if none followed)."""

    @property
    def ready(self) -> bool:
        """Whether this run became ready."""
        return self.ready_at is not None


@attrs.frozen(kw_only=True)
class ChildStatus:
    """A snapshot of a supervised child: state, counters, history and recent output."""

    name: str
    """The child's name."""
    spec: ChildSpec = attrs.field(repr=False)
    """Its spec."""
    state: ChildState
    """Its state."""
    reason: str | None
    """In a final state, why (e.g. ``"exited with code 3; 5 restarts within 60 s"``)."""
    process_id: str | None
    """The current session's process id, None between runs."""
    starts: int
    """Starts so far (the first start and every restart)."""
    restarts: int
    """Restarts so far (``starts - 1``, or 0)."""
    next_start: float | None
    """In ``BACKOFF``, when the next start is due (``trio.current_time()``)."""
    runs: tuple[ChildRun, ...]
    """The newest :attr:`ChildSpec.keep_runs` run records, oldest first (the current
    run last)."""
    lines: tuple[OutputLine, ...]
    """The newest :attr:`ChildSpec.keep_lines` lines of output, across runs, oldest first."""

    @property
    def finished(self) -> bool:
        """Whether the state is final (STOPPED, EXITED or FAILED)."""
        return self.state in FINAL_STATES

    @property
    def last_run(self) -> ChildRun | None:
        """The newest run record, if any."""
        return self.runs[-1] if self.runs else None

    def text(self) -> str:
        """The kept lines joined with newlines (handy in tests and logs)."""
        return "\n".join(line.text for line in self.lines)


class ChildError(TrioExecError):
    """A child reached a final state that makes the operation impossible.

    :meth:`Supervisor.start` raises it when the child never became ready and will not be
    started again; :meth:`ChildHandle.wait_until` when the child finished and the
    condition cannot hold any more.
    """

    def __init__(self, message: str, status: ChildStatus) -> None:
        super().__init__(message)
        self.status = status
        """The child's status at that moment."""


# -- internals --------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class _RunInfo:
    """The mutable record of the current run; frozen into :class:`ChildRun`."""

    run: int
    started_at: float
    process_id: str | None = None
    ready_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    failure: str | None = None
    stopped: bool = False
    backoff: float | None = None

    def freeze(self) -> ChildRun:
        return ChildRun(
            run=self.run,
            process_id=self.process_id,
            started_at=self.started_at,
            ready_at=self.ready_at,
            ended_at=self.ended_at,
            exit_code=self.exit_code,
            signal=self.signal,
            failure=self.failure,
            stopped=self.stopped,
            backoff=self.backoff,
        )

    def outcome(self) -> str:
        """The end of the run, for people."""
        if self.failure is not None:
            return self.failure
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)}"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return "ended with an unknown status"
