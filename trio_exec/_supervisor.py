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
"""

from __future__ import annotations

import enum
import inspect
import math
import os
import random
import re
import signal as _signal
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeAlias, assert_never

import attrs
import trio

from ._backend import DEFAULT_GRACE, ExecBackend, ExecProcess, check_argv, check_env
from ._errors import TrioExecError
from ._events import Closed, Event, Exited, Failed, Output, OutputStream, signal_name
from ._local import LocalBackend
from ._util import open_service_nursery

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
    "MAX_LINE_BYTES",
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

# -- limits and defaults -------------------------------------------------------------------

DEFAULT_MAX_RESTARTS: Final = 5
"""Default :attr:`ChildSpec.max_restarts`: restarts allowed within the restart window."""

DEFAULT_RESTART_WINDOW: Final = 60.0
"""Default :attr:`ChildSpec.restart_window`, in seconds."""

DEFAULT_BACKOFF_INITIAL: Final = 0.1
"""Default :attr:`ChildSpec.backoff_initial`: seconds before the first restart in a window."""

DEFAULT_BACKOFF_FACTOR: Final = 2.0
"""Default :attr:`ChildSpec.backoff_factor`: each further restart in the window waits this
many times longer."""

DEFAULT_BACKOFF_MAX: Final = 30.0
"""Default :attr:`ChildSpec.backoff_max`: the cap on a backoff delay before jitter, seconds."""

DEFAULT_BACKOFF_JITTER: Final = 0.1
"""Default :attr:`ChildSpec.backoff_jitter`: each delay is scaled by a random factor in
``[1 - jitter, 1 + jitter]``."""

DEFAULT_READY_TIMEOUT: Final = 30.0
"""Default :attr:`ChildSpec.ready_timeout`: seconds from the spawn for readiness to hold."""

DEFAULT_READY_INTERVAL: Final = 0.05
"""Default polling interval of :class:`ReadyOnPort` and :class:`ReadyOnCheck`, seconds."""

DEFAULT_KEEP_LINES: Final = 100
"""Default :attr:`ChildSpec.keep_lines`: output lines kept per child, across its runs."""

DEFAULT_KEEP_RUNS: Final = 100
"""Default :attr:`ChildSpec.keep_runs`: run records kept per child (the newest ones)."""

MAX_LINE_BYTES: Final = 8192
"""Longest output line kept whole; a longer line is kept (and matched) in pieces of this size."""

PORT_CONNECT_TIMEOUT: Final = 1.0
"""Bound on one connection attempt of :class:`ReadyOnPort`, seconds."""

KILL_TIMEOUT: Final = 5.0
"""Seconds a stop waits, after the grace, for the backend to report the killed child's exit
before it leaves the session anyway (the session's own cleanup still runs)."""

EXIT_REPORT_TIMEOUT: Final = 2.0
"""Seconds to wait, once the child exited, for its exit event and the output before it
(output of grandchildren after the exit is not waited for)."""


# -- specs ------------------------------------------------------------------------------------


class RestartPolicy(enum.Enum):
    """When a child that ended is started again."""

    NEVER = "never"
    """Never: the child ends ``EXITED`` (or ``FAILED`` if it never became ready)."""
    ON_FAILURE = "on-failure"
    """When the start failed, or the exit code is not one of ``success_codes``."""
    ALWAYS = "always"
    """Whatever the outcome (a clean exit too); restarts still count toward the limit."""


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


def _check_interval(owner: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value < math.inf):
        raise ValueError(f"{owner}.interval must be a finite number > 0 seconds, not {value!r}")


def _to_pattern(value: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        if not isinstance(value.pattern, str):
            raise TypeError("ReadyOnOutput.pattern must be a str pattern (lines are str)")
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"ReadyOnOutput.pattern must be a str or a compiled str pattern, "
            f"not {type(value).__name__}"
        )
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"ReadyOnOutput.pattern is not a valid regex: {exc}") from None


def _to_streams(value: Iterable[OutputStream]) -> frozenset[OutputStream]:
    streams = frozenset(value)
    if not streams or not all(isinstance(stream, OutputStream) for stream in streams):
        raise ValueError("ReadyOnOutput.streams must be a non-empty set of OutputStream")
    return streams


@attrs.frozen(kw_only=True)
class ReadyOnOutput:
    """Ready once a line of output matches ``pattern`` (``re.search``).

    Lines are decoded as UTF-8 (invalid bytes replaced), without the line end (``\\n``
    and a ``\\r`` before it). Only whole lines are matched: a prompt without a newline
    never is. A line longer than :data:`MAX_LINE_BYTES` is matched in pieces.
    """

    pattern: re.Pattern[str] = attrs.field(converter=_to_pattern)
    """The regular expression (a str is compiled)."""
    streams: frozenset[OutputStream] = attrs.field(
        default=frozenset(OutputStream), converter=_to_streams
    )
    """Which streams to match (default: stdout, stderr and the PTY)."""


@attrs.frozen(kw_only=True)
class ReadyOnPort:
    """Ready once a TCP connection to ``host:port`` succeeds (it is closed at once).

    The connection is made from the supervisor's machine, so with a remote backend
    loopback means the supervisor's loopback: use :class:`ReadyOnCheck` there.
    """

    port: int
    """The TCP port, 1..65535."""
    host: str = "127.0.0.1"
    """The address to connect to (default: IPv4 loopback)."""
    interval: float = DEFAULT_READY_INTERVAL
    """Seconds between attempts; each attempt is bounded by :data:`PORT_CONNECT_TIMEOUT`."""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"ReadyOnPort.port must be an int, not {type(self.port).__name__}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"ReadyOnPort.port must be within 1..65535, not {self.port}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("ReadyOnPort.host must be a non-empty str")
        _check_interval("ReadyOnPort", self.interval)


@attrs.frozen(kw_only=True)
class ReadyOnCheck:
    """Ready once ``check()`` returns a true value; it may be sync or async.

    It is called every ``interval`` seconds, in the supervisor's task, until it returns
    true or the readiness timeout expires (an async check is cancelled then). A sync
    check runs in the event loop: keep it quick. An :class:`OSError` it raises (a refused
    connection, say) means "not ready yet"; any other exception fails the start, with
    the exception in :attr:`ChildRun.failure`.
    """

    check: Callable[[], bool | Awaitable[bool]]
    """The predicate, called with no arguments."""
    interval: float = DEFAULT_READY_INTERVAL
    """Seconds between calls."""

    def __attrs_post_init__(self) -> None:
        if not callable(self.check):
            raise TypeError("ReadyOnCheck.check must be callable")
        _check_interval("ReadyOnCheck", self.interval)


Readiness: TypeAlias = ReadyOnOutput | ReadyOnPort | ReadyOnCheck
"""A readiness condition of :attr:`ChildSpec.ready`."""


def _to_argv(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(check_argv(value))


def _to_policy(value: RestartPolicy | str) -> RestartPolicy:
    try:
        return RestartPolicy(value)
    except ValueError:
        choices = ", ".join(repr(policy.value) for policy in RestartPolicy)
        raise ValueError(f"ChildSpec.restart must be one of {choices}, not {value!r}") from None


def _to_env(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if value is None else check_env(value)


def _to_codes(value: Iterable[int]) -> frozenset[int]:
    codes = frozenset(value)
    if not codes or not all(isinstance(code, int) and not isinstance(code, bool) for code in codes):
        raise ValueError("ChildSpec.success_codes must be a non-empty set of int exit codes")
    return codes


@attrs.frozen(kw_only=True)
class ChildSpec:
    """What to run and how to keep it running. Keyword-only and validated on creation.

    Restarts: at most ``max_restarts`` within any ``restart_window`` seconds; the one after
    that makes the child ``FAILED``. The delay before a restart is
    ``min(backoff_max, backoff_initial * backoff_factor ** (n - 1))`` where ``n`` counts the
    restarts within the window including this one, times a random factor in
    ``[1 - backoff_jitter, 1 + backoff_jitter]``. So the delay grows while the child keeps
    failing and falls back once it has run for a whole window.
    """

    name: str
    """Unique among the children of a supervisor that are not finished."""
    argv: tuple[str, ...] = attrs.field(converter=_to_argv)
    """The program and its arguments (any sequence of str; stored as a tuple)."""
    cwd: str | os.PathLike[str] | None = None
    """The working directory (default: the backend's)."""
    env: Mapping[str, str] | None = attrs.field(default=None, converter=_to_env, hash=False)
    """The child's exact environment (default: inherit the backend's)."""
    tty: bool = False
    """Run on a pseudo-terminal (output lines then come from :attr:`OutputStream.PTY`)."""
    restart: RestartPolicy = attrs.field(default=RestartPolicy.ON_FAILURE, converter=_to_policy)
    """The restart policy (a :class:`RestartPolicy` or its value, e.g. ``"on-failure"``)."""
    success_codes: frozenset[int] = attrs.field(default=frozenset({0}), converter=_to_codes)
    """Exit codes that are not failures for :attr:`RestartPolicy.ON_FAILURE`."""
    max_restarts: int = DEFAULT_MAX_RESTARTS
    """Restarts allowed within ``restart_window`` (0: the first restart fails the child)."""
    restart_window: float = DEFAULT_RESTART_WINDOW
    """The sliding window, in seconds, for ``max_restarts`` and the backoff exponent."""
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    """Seconds before the first restart in a window (0: restart at once)."""
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    """Growth of the delay per further restart in the window (>= 1)."""
    backoff_max: float = DEFAULT_BACKOFF_MAX
    """Cap on the delay before jitter, seconds."""
    backoff_jitter: float = DEFAULT_BACKOFF_JITTER
    """Relative jitter, 0..1."""
    ready: Readiness | None = None
    """The readiness condition; None: ready as soon as the process was spawned."""
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    """Seconds from the spawn for ``ready`` to hold; then the start failed: the child is
    terminated (with ``grace``) and the restart policy applies."""
    grace: float = DEFAULT_GRACE
    """Seconds between SIGTERM and SIGKILL to the child's group when it is stopped."""
    keep_lines: int = DEFAULT_KEEP_LINES
    """Output lines kept (the newest), across runs; 0 keeps none."""
    keep_runs: int = DEFAULT_KEEP_RUNS
    """Run records kept (the newest); at least 1."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ChildSpec.name must be a non-empty str")
        if not isinstance(self.tty, bool):
            raise TypeError("ChildSpec.tty must be a bool")
        _check_count("max_restarts", self.max_restarts, minimum=0)
        _check_count("keep_lines", self.keep_lines, minimum=0)
        _check_count("keep_runs", self.keep_runs, minimum=1)
        _check_seconds("restart_window", self.restart_window, positive=True)
        _check_seconds("backoff_initial", self.backoff_initial)
        _check_seconds("backoff_max", self.backoff_max)
        _check_seconds("grace", self.grace)
        if not (
            isinstance(self.backoff_factor, int | float) and 1 <= self.backoff_factor < math.inf
        ):
            raise ValueError(
                "ChildSpec.backoff_factor must be a finite number >= 1, "
                f"not {self.backoff_factor!r}"
            )
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"ChildSpec.backoff_max ({self.backoff_max!r}) must be >= "
                f"backoff_initial ({self.backoff_initial!r})"
            )
        if not (isinstance(self.backoff_jitter, int | float) and 0 <= self.backoff_jitter <= 1):
            raise ValueError(
                f"ChildSpec.backoff_jitter must be within 0..1, not {self.backoff_jitter!r}"
            )
        if not (isinstance(self.ready_timeout, int | float) and self.ready_timeout > 0):
            raise ValueError(
                f"ChildSpec.ready_timeout must be > 0 seconds (math.inf for none), "
                f"not {self.ready_timeout!r}"
            )
        if self.ready is not None and not isinstance(
            self.ready, ReadyOnOutput | ReadyOnPort | ReadyOnCheck
        ):
            raise TypeError(
                "ChildSpec.ready must be a ReadyOnOutput, ReadyOnPort, ReadyOnCheck or None, "
                f"not {type(self.ready).__name__}"
            )


def _check_count(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"ChildSpec.{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"ChildSpec.{name} must be >= {minimum}, not {value}")


def _check_seconds(name: str, value: float, *, positive: bool = False) -> None:
    ok = isinstance(value, int | float) and (value > 0 if positive else value >= 0)
    if not ok or not value < math.inf:  # also rejects NaN
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"ChildSpec.{name} must be a finite number {bound} seconds, not {value!r}")


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


class _LineSplitter:
    """Splits each stream's output into lines; keeps one partial line per stream."""

    def __init__(self) -> None:
        self._partial: dict[OutputStream, bytearray] = {}
        self._cut: set[OutputStream] = set()
        """Streams whose partial line was just emitted for its length: a newline right
        after it ends that line rather than making an empty one."""

    def feed(self, stream: OutputStream, data: bytes) -> list[str]:
        buf = self._partial.setdefault(stream, bytearray())
        if stream in self._cut:
            self._cut.discard(stream)
            if not buf and data.startswith(b"\n"):
                data = data[1:]
        buf += data
        lines: list[str] = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            lines.extend(_pieces(buf[start:end]))
            start = end + 1
        del buf[:start]
        while len(buf) >= MAX_LINE_BYTES:
            lines.append(_decode(buf[:MAX_LINE_BYTES]))
            del buf[:MAX_LINE_BYTES]
            if not buf:
                self._cut.add(stream)
        return lines

    def flush(self) -> list[tuple[OutputStream, str]]:
        rest = [(stream, _decode(buf)) for stream, buf in self._partial.items() if buf]
        self._partial.clear()
        return rest


def _pieces(line: bytearray) -> list[str]:
    if len(line) <= MAX_LINE_BYTES:
        return [_decode(line)]
    return [_decode(line[i : i + MAX_LINE_BYTES]) for i in range(0, len(line), MAX_LINE_BYTES)]


def _decode(line: bytearray) -> str:
    return line.decode("utf-8", "replace").removesuffix("\r")


class _Attempt:
    """What the tasks of one run share."""

    def __init__(self, run: _RunInfo) -> None:
        self.run = run
        self.ready = trio.Event()
        self.exited = trio.Event()
        self.check_error: str | None = None
        self.lines = _LineSplitter()


class _Waiter:
    def __init__(self, predicate: Callable[[ChildStatus], bool]) -> None:
        self.predicate = predicate
        self.event = trio.Event()
        self.result: ChildStatus | None = None
        self.error: BaseException | None = None


async def _port_open(host: str, port: int) -> bool:
    with trio.move_on_after(PORT_CONNECT_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


async def _check_ready(ready: ReadyOnPort | ReadyOnCheck) -> bool:
    if isinstance(ready, ReadyOnPort):
        return await _port_open(ready.host, ready.port)
    try:
        result = ready.check()
        if inspect.isawaitable(result):
            result = await result
    except OSError:
        return False
    return bool(result)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


class _Child:
    """One supervised child: its task, state and history."""

    def __init__(self, spec: ChildSpec, backend: ExecBackend, rng: random.Random) -> None:
        self.spec = spec
        self._backend = backend
        self._rng = rng
        self.state = ChildState.STARTING
        self._reason: str | None = None
        self._starts = 0
        self._runs: deque[ChildRun] = deque(maxlen=spec.keep_runs)
        self._current: _RunInfo | None = None
        self._lines: deque[OutputLine] = deque(maxlen=spec.keep_lines)
        self._restart_times: deque[float] = deque()
        self._next_start: float | None = None
        self._proc: ExecProcess | None = None
        self._life = trio.CancelScope()
        self._stopping = False
        self._stop_requested = False
        self._stop_grace: float | None = None
        self._waiters: list[_Waiter] = []

    # -- status ----------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def snapshot(self) -> ChildStatus:
        runs = list(self._runs)
        current = self._current
        if current is not None:
            runs.append(current.freeze())
        return ChildStatus(
            name=self.spec.name,
            spec=self.spec,
            state=self.state,
            reason=self._reason,
            process_id=None if self._proc is None else self._proc.process_id,
            starts=self._starts,
            restarts=max(0, self._starts - 1),
            next_start=self._next_start,
            runs=tuple(runs[-self.spec.keep_runs :]),
            lines=tuple(self._lines),
        )

    def _notify(self) -> None:
        """Evaluate the waiters' predicates on the status as it is now."""
        if not self._waiters:
            return
        status = self.snapshot()
        for waiter in list(self._waiters):
            try:
                matched = waiter.predicate(status)
            except Exception as exc:  # the waiter's own bug: raise it in the waiter
                waiter.error = exc
            else:
                if matched:
                    waiter.result = status
                elif status.finished:
                    waiter.error = self._finished_error(status)
                else:
                    continue
            self._waiters.remove(waiter)
            waiter.event.set()

    def _finished_error(self, status: ChildStatus) -> ChildError:
        reason = f": {status.reason}" if status.reason else ""
        return ChildError(
            f"child {status.name!r} is {status.state.name}{reason}; "
            "the condition can no longer hold",
            status,
        )

    async def wait_until(self, predicate: Callable[[ChildStatus], bool]) -> ChildStatus:
        status = self.snapshot()
        try:
            matched = predicate(status)
        except Exception:
            await trio.lowlevel.checkpoint()
            raise
        if matched:
            await trio.lowlevel.checkpoint()
            return status
        if status.finished:
            await trio.lowlevel.checkpoint()
            raise self._finished_error(status)
        waiter = _Waiter(predicate)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def _set_state(self, state: ChildState) -> None:
        if self.finished or (self._stopping and state is not ChildState.STOPPING):
            return
        if state is not ChildState.BACKOFF:
            self._next_start = None
        self.state = state
        self._notify()

    def _finish(self, state: ChildState, reason: str) -> None:
        if self.finished:
            return
        self.state = state
        self._reason = reason
        self._next_start = None
        self._notify()

    def request_stop(self, grace: float | None) -> None:
        if self.finished:
            return
        if not self._stopping:
            self._stopping = True
            self._stop_grace = grace
        self._stop_requested = True
        self.state = ChildState.STOPPING
        self._next_start = None
        self._notify()
        self._life.cancel()

    def _is_stopping(self) -> bool:
        # A method, not the attribute, so that type checkers do not narrow it across awaits.
        return self._stopping

    def current_process(self) -> ExecProcess | None:
        return self._proc

    # -- the child's task ------------------------------------------------------------------

    async def supervise(self) -> None:
        """Run, watch and restart the child until a final state, a stop or cancellation."""
        try:
            with self._life:
                while not self._stopping:
                    # Never start anything once the supervisor is being cancelled.
                    await trio.lowlevel.checkpoint_if_cancelled()
                    self._starts += 1
                    run = _RunInfo(run=self._starts, started_at=trio.current_time())
                    self._current = run
                    self._set_state(ChildState.STARTING)
                    await self._attempt(run)
                    if self._is_stopping():
                        break
                    delay = self._decide(run)
                    run.backoff = delay
                    self._end_run()
                    if delay is None:
                        return
                    self._next_start = trio.current_time() + delay
                    self._set_state(ChildState.BACKOFF)
                    await trio.sleep(delay)
        finally:
            self._end_run()
            reason = "stopped" if self._stop_requested else "the supervisor shut down"
            self._finish(ChildState.STOPPED, reason)

    def _end_run(self) -> None:
        if self._current is not None:
            self._runs.append(self._current.freeze())
            self._current = None
            self._notify()

    async def _attempt(self, run: _RunInfo) -> None:
        """One run: spawn, readiness, wait for the exit; records the outcome in ``run``."""
        spec = self.spec
        proc: ExecProcess | None = None
        try:
            async with self._backend.open_process(
                spec.argv, cwd=spec.cwd, env=spec.env, tty=spec.tty, grace=spec.grace
            ) as proc:
                await self._run_process(proc, run)
        except Exception as exc:
            if proc is not None and not isinstance(exc, TrioExecError):
                raise  # a bug, not a failure of the child
            if run.failure is None:
                what = "could not start" if proc is None else "the session failed"
                run.failure = f"{what}: {type(exc).__name__}: {exc}"
        finally:
            run.ended_at = trio.current_time()
            if run.exit_code is None and proc is not None:
                run.exit_code = proc.exit_code
            self._notify()

    async def _run_process(self, proc: ExecProcess, run: _RunInfo) -> None:
        attempt = _Attempt(run)
        run.process_id = proc.process_id
        self._proc = proc
        self._notify()
        events = proc.events  # subscribe before the first checkpoint: see every event
        consumer_scope = trio.CancelScope(shield=True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume, events, attempt, consumer_scope)
                interrupted = True
                try:
                    await self._watch(attempt)
                    interrupted = False
                finally:
                    try:
                        with trio.CancelScope(shield=True):
                            await self._end_process(proc, attempt, interrupted=interrupted)
                    finally:
                        consumer_scope.cancel()
        finally:
            self._proc = None

    async def _consume(
        self, events: trio.abc.ReceiveChannel[Event], attempt: _Attempt, scope: trio.CancelScope
    ) -> None:
        """Turn the session's events into lines, readiness and the exit status.

        Shielded: output written while the child is being stopped is kept too. It is
        cancelled once the run is over.
        """
        run = attempt.run
        try:
            with scope:
                async for event in events:
                    match event:
                        case Output(stream=stream, data=data):
                            for text in attempt.lines.feed(stream, data):
                                self._add_line(attempt, stream, text)
                        case Exited(exit_code=exit_code, signal=signum):
                            run.exit_code = exit_code
                            run.signal = signum
                            attempt.exited.set()
                            self._notify()
                        case Closed():
                            pass
                        case Failed(message=message):
                            if run.failure is None:
                                run.failure = f"the session failed: {message}"
                        case _:
                            assert_never(event)
        except TrioExecError as exc:
            if run.failure is None:
                run.failure = f"the session failed: {type(exc).__name__}: {exc}"
        finally:
            for stream, text in attempt.lines.flush():
                self._add_line(attempt, stream, text)
            attempt.exited.set()
            with trio.CancelScope(shield=True):
                await events.aclose()

    def _add_line(self, attempt: _Attempt, stream: OutputStream, text: str) -> None:
        self._lines.append(OutputLine(run=attempt.run.run, stream=stream, text=text))
        ready = self.spec.ready
        if (
            isinstance(ready, ReadyOnOutput)
            and not attempt.ready.is_set()
            and stream in ready.streams
            and ready.pattern.search(text)
        ):
            attempt.ready.set()
        self._notify()

    async def _watch(self, attempt: _Attempt) -> None:
        """Wait for readiness (report RUNNING), then for the exit."""
        spec = self.spec
        ready = spec.ready
        if ready is not None:
            with trio.move_on_after(spec.ready_timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_when_set, attempt.ready, nursery.cancel_scope)
                    nursery.start_soon(_cancel_when_set, attempt.exited, nursery.cancel_scope)
                    if not isinstance(ready, ReadyOnOutput):
                        nursery.start_soon(self._poll, ready, attempt, nursery.cancel_scope)
            if not attempt.ready.is_set():
                if attempt.check_error is not None:
                    attempt.run.failure = attempt.check_error
                elif attempt.exited.is_set():
                    attempt.run.failure = "exited before it was ready"
                else:
                    attempt.run.failure = f"not ready within {spec.ready_timeout:g} s"
                return
        attempt.run.ready_at = trio.current_time()
        self._set_state(ChildState.RUNNING)
        await attempt.exited.wait()

    async def _poll(
        self, ready: ReadyOnPort | ReadyOnCheck, attempt: _Attempt, scope: trio.CancelScope
    ) -> None:
        while True:
            try:
                ok = await _check_ready(ready)
            except Exception as exc:  # the user's check failed: the start failed
                attempt.check_error = f"the readiness check raised {type(exc).__name__}: {exc}"
                scope.cancel()
                return
            if ok:
                attempt.ready.set()
                return
            await trio.sleep(ready.interval)

    async def _end_process(
        self, proc: ExecProcess, attempt: _Attempt, *, interrupted: bool
    ) -> None:
        """Terminate the child if it still runs, and wait (bounded) for its exit event.

        Runs shielded: after a stop, the supervisor's cancellation or a failed start.
        """
        if interrupted:
            self._stopping = True
            attempt.run.stopped = True
            self._set_state(ChildState.STOPPING)
        if not attempt.exited.is_set():
            grace = self.spec.grace
            if interrupted and self._stop_grace is not None:
                grace = self._stop_grace
            with trio.move_on_after(grace + KILL_TIMEOUT):
                try:
                    await proc.terminate(grace)
                except TrioExecError:
                    pass  # the session broke; leaving it cleans up what can be
        with trio.move_on_after(EXIT_REPORT_TIMEOUT):
            await attempt.exited.wait()

    def _decide(self, run: _RunInfo) -> float | None:
        """Apply the restart policy to a run that ended: the backoff delay, or None."""
        spec = self.spec
        started = run.ready_at is not None
        clean = started and run.failure is None and run.exit_code in spec.success_codes
        outcome = run.outcome()
        if spec.restart is RestartPolicy.NEVER or (
            spec.restart is RestartPolicy.ON_FAILURE and clean
        ):
            if started:
                self._finish(ChildState.EXITED, outcome)
            else:
                self._finish(
                    ChildState.FAILED,
                    f"{outcome}; the restart policy is {spec.restart.value!r}",
                )
            return None
        now = trio.current_time()
        while self._restart_times and self._restart_times[0] <= now - spec.restart_window:
            self._restart_times.popleft()
        if len(self._restart_times) >= spec.max_restarts:
            self._finish(
                ChildState.FAILED,
                f"{outcome}; {spec.max_restarts} restarts within {spec.restart_window:g} s",
            )
            return None
        self._restart_times.append(now)
        try:
            base = spec.backoff_initial * spec.backoff_factor ** (len(self._restart_times) - 1)
        except OverflowError:
            base = spec.backoff_max
        base = min(base, spec.backoff_max)
        return base * (1.0 + spec.backoff_jitter * self._rng.uniform(-1.0, 1.0))


# -- public API -------------------------------------------------------------------------------


class ChildHandle:
    """A supervised child, as returned by :meth:`Supervisor.start`.

    It stays valid after the child finished (it then reports the final status); a later
    :meth:`Supervisor.start` with the same name supervises a new child with a new handle.
    """

    def __init__(self, child: _Child) -> None:
        self._child = child

    def __repr__(self) -> str:
        return f"<ChildHandle {self.name!r} {self._child.state.name}>"

    @property
    def name(self) -> str:
        """The child's name."""
        return self._child.spec.name

    @property
    def state(self) -> ChildState:
        """The child's state now."""
        return self._child.state

    def status(self) -> ChildStatus:
        """A snapshot of the child's status."""
        return self._child.snapshot()

    async def wait_until(self, predicate: Callable[[ChildStatus], bool]) -> ChildStatus:
        """Wait until ``predicate(status)`` is true and return that status.

        The predicate is evaluated at once and then on every change (state, output line,
        exit, run record) as it happens, so a state that lasts no time is not missed.
        It must be quick and must not block.

        Raises:
            ChildError: the child is in a final state and the predicate is false, so it
                can never become true.
            Exception: whatever the predicate raised.

        **Cancellation:** nothing to undo; the child is not affected.
        """
        return await self._child.wait_until(predicate)

    async def wait_state(self, *states: ChildState) -> ChildStatus:
        """Wait until the child is in one of ``states``; see :meth:`wait_until`.

        **Cancellation:** nothing to undo; the child is not affected.
        """
        if not states:
            raise ValueError("wait_state needs at least one state")
        wanted = frozenset(states)
        return await self.wait_until(lambda status: status.state in wanted)

    async def stop(self, grace: float | None = None) -> ChildStatus:
        """Stop the child (SIGTERM to its group, SIGKILL after ``grace``) and return its
        final status.

        ``grace`` defaults to the spec's. A child in ``BACKOFF`` is not started again; a
        child that is finished keeps its state. Never restarts anything.

        **Cancellation:** the stop goes on in the supervisor's task (it cannot be undone);
        only the wait for it is abandoned.
        """
        if grace is not None and not (isinstance(grace, int | float) and 0 <= grace < math.inf):
            raise ValueError(f"grace must be a finite number >= 0 seconds, not {grace!r}")
        self._child.request_stop(grace)
        return await self._child.wait_until(lambda status: status.finished)

    async def signal(self, sig: int | _signal.Signals) -> bool:
        """Send ``sig`` to the current process's group; returns whether there was one.

        A signal that ends the child counts as its exit, like any other (a SIGTERM sent
        this way is a failure for ``on-failure``): use :meth:`stop` to stop it.

        Raises:
            UnsupportedOperation: a remote server cannot send that signal.

        **Cancellation:** the signal may or may not have been sent.
        """
        proc = self._child.current_process()
        if proc is None:
            await trio.lowlevel.checkpoint()
            return False
        await proc.signal(sig)
        return True


class Supervisor:
    """Keeps long-running children alive: restarts, readiness, graceful stops, history.

    Run it in a nursery, then start children::

        supervisor = Supervisor()
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            web = await supervisor.start(ChildSpec(name="web", argv=[...],
                                                   ready=ReadyOnPort(port=8080)))
            ...
            nursery.cancel_scope.cancel()   # stops every child, gracefully

    (:func:`open_supervisor` does exactly that around an ``async with`` block.)

    Args:
        backend: where children run (default: a new :class:`~trio_exec.LocalBackend`).
    """

    def __init__(self, backend: ExecBackend | None = None) -> None:
        self.backend: Final[ExecBackend] = LocalBackend() if backend is None else backend
        """Where the children run."""
        self._children: dict[str, _Child] = {}
        self._nursery: trio.Nursery | None = None
        self._used = False
        self._closed = False
        self._rng = random.Random()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._nursery else "not running"
        return f"<Supervisor {state} with {len(self._children)} children>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise children until cancelled; start it with ``nursery.start``.

        It reports started at once; children are added with :meth:`start`. It can run
        only once per supervisor.

        **Cancellation:** the way to shut the supervisor down. Every child is stopped
        concurrently (SIGTERM to its group, SIGKILL after its grace), shielded, so the
        stops complete and no process is left behind; nothing is restarted meanwhile
        (not a child that crashes during the shutdown, not one in backoff). Every child
        ends ``STOPPED`` (or the final state it had already) before Cancelled propagates.
        """
        if self._used:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("Supervisor.run can run only once")
        self._used = True
        try:
            async with open_service_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    self._closed = True
        finally:
            self._nursery = None
            self._closed = True

    async def start(self, spec: ChildSpec) -> ChildHandle:
        """Supervise a new child and return its handle once it is ready (``RUNNING``).

        Starts that fail (spawn error, readiness timeout, exit before readiness) are
        retried under the restart policy while this waits, so it returns after the first
        start that became ready.

        Raises:
            ChildError: the child ended in a final state without ever becoming ready
                (too many failed starts, a failed start under ``never``, or it was
                stopped); ``exc.status`` has its runs and output.
            ValueError: a child with that name is supervised and not finished. (A
                finished one is replaced; its handle keeps its final status.)
            RuntimeError: :meth:`run` has not started.
            trio.ClosedResourceError: the supervisor has shut down.

        **Cancellation:** the child is stopped (in the supervisor's task, with its grace;
        it ends ``STOPPED``) and Cancelled propagates without waiting for that.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"spec must be a ChildSpec, not {type(spec).__name__}")
        # The child is registered before the first checkpoint (so that child(name) finds
        # it at once); a refusal (shut down, not running, the name taken) checkpoints.
        try:
            nursery = self._running_nursery()
            old = self._children.get(spec.name)
            if old is not None and not old.finished:
                raise ValueError(
                    f"a child named {spec.name!r} is already supervised ({old.state.name})"
                )
        except (trio.ClosedResourceError, RuntimeError, ValueError):
            await trio.lowlevel.checkpoint()
            raise
        child = _Child(spec, self.backend, self._rng)
        self._children[spec.name] = child
        nursery.start_soon(child.supervise, name=f"supervise {spec.name}")
        handle = ChildHandle(child)
        ready = False
        try:
            await child.wait_until(lambda status: status.state is ChildState.RUNNING)
            ready = True
        except ChildError as exc:
            status = exc.status
            last = status.last_run
            detail = status.reason or (last.failure if last is not None else None) or ""
            raise ChildError(
                f"child {spec.name!r} did not start: {status.state.name}"
                + (f": {detail}" if detail else ""),
                status,
            ) from None
        finally:
            if not ready:
                child.request_stop(None)
        return handle

    async def stop(self, name: str, grace: float | None = None) -> ChildStatus:
        """Stop the child ``name`` and return its final status; see :meth:`ChildHandle.stop`.

        Raises:
            KeyError: no child has that name.

        **Cancellation:** the stop goes on in the supervisor's task (it cannot be undone);
        only the wait for it is abandoned.
        """
        try:
            child = self._child(name)
        except KeyError:
            await trio.lowlevel.checkpoint()
            raise
        return await ChildHandle(child).stop(grace)

    def child(self, name: str) -> ChildHandle:
        """The handle of the child ``name`` (finished ones too), even while :meth:`start`
        still waits for it to become ready. Raises KeyError if unknown."""
        return ChildHandle(self._child(name))

    def status(self, name: str) -> ChildStatus:
        """A snapshot of the child ``name`` (finished ones too). Raises KeyError if unknown."""
        return self._child(name).snapshot()

    def statuses(self) -> dict[str, ChildStatus]:
        """Snapshots of every child, finished ones too, by name, in start order."""
        return {name: child.snapshot() for name, child in self._children.items()}

    def _child(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise KeyError(f"no child named {name!r}") from None

    def _running_nursery(self) -> trio.Nursery:
        if self._closed:
            raise trio.ClosedResourceError("the supervisor has shut down")
        if self._nursery is None:
            raise RuntimeError("the supervisor is not running: await nursery.start(supervisor.run)")
        return self._nursery


@asynccontextmanager
async def open_supervisor(backend: ExecBackend | None = None) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of an ``async with`` block.

    Leaving the block (normally, by an exception or by cancellation) shuts it down:
    every child is stopped gracefully and concurrently, and no process is left behind.
    An exception of the block propagates as itself, not wrapped in an exception group.

    **Cancellation:** as leaving the block: the children are stopped (shielded) before
    Cancelled propagates.
    """
    supervisor = Supervisor(backend)
    async with open_service_nursery() as nursery:
        await nursery.start(supervisor.run)
        try:
            yield supervisor
        finally:
            nursery.cancel_scope.cancel()
