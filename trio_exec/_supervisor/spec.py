"""Supervisor specs: what to run, the restart policy, readiness conditions, their defaults.

:class:`ChildSpec`, :class:`RestartPolicy` and the readiness conditions
(:class:`ReadyOnOutput`, :class:`ReadyOnPort`, :class:`ReadyOnCheck`), each validated on
creation.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final, TypeAlias

import attrs

from .._backend import DEFAULT_GRACE, check_argv, check_env
from .._events import OutputStream

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
    "ChildSpec",
    "Readiness",
    "ReadyOnCheck",
    "ReadyOnOutput",
    "ReadyOnPort",
    "RestartPolicy",
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


# -- specs ------------------------------------------------------------------------------------


class RestartPolicy(enum.Enum):
    """When a child that ended is started again."""

    NEVER = "never"
    """Never: the child ends ``EXITED`` (or ``FAILED`` if it never became ready)."""
    ON_FAILURE = "on-failure"
    """When the start failed, or the exit code is not one of ``success_codes``."""
    ALWAYS = "always"
    """Whatever the outcome (a clean exit too); restarts still count toward the limit."""


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
    never is. A line longer than :data:`OUTPUT_LINE_BYTES` is matched in pieces.
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
