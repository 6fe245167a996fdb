"""Events, enums and value types shared by every backend.

Every event is a small frozen attrs class. Sequenced events (``Output``,
``Exited``, ``Closed``) carry a per-process ``seq`` that starts at 1 and
strictly increases; ``Failed`` is unsequenced and ends a stream that broke.
"""

from __future__ import annotations

import enum
import signal as _signal
from typing import TypeAlias

import attrs

__all__ = [
    "Closed",
    "Event",
    "Exited",
    "Failed",
    "Output",
    "OutputStream",
    "ProcessId",
    "ReadResult",
    "WriteStatus",
    "new_output",
    "signal_name",
]

ProcessId: TypeAlias = str
"""A process id: chosen by the caller or generated, unique within a backend session."""


class OutputStream(enum.Enum):
    """Which of the child's outputs a chunk came from."""

    STDOUT = "stdout"
    STDERR = "stderr"
    PTY = "pty"
    """Merged stdout and stderr of a child that runs on a pseudo-terminal."""

    # Members are singletons compared by identity: hash them by identity too, in C, since
    # the event log looks streams up in dicts and sets for every chunk (Enum's own
    # ``__hash__`` is a Python function).
    __hash__ = object.__hash__


class WriteStatus(enum.Enum):
    """The outcome of :meth:`ExecProcess.write`."""

    ACCEPTED = "accepted"
    """The bytes were handed to the child's stdin."""
    UNKNOWN_PROCESS = "unknownProcess"
    """The session is gone (the process block was left, or the server forgot it)."""
    STDIN_CLOSED = "stdinClosed"
    """The child has no writable stdin: it was not piped, it was closed, or the child exited."""
    STARTING = "starting"
    """The process is still being spawned (remote servers only); retry later."""


@attrs.frozen(kw_only=True)
class Output:
    """A chunk of bytes the child wrote to one of its streams."""

    seq: int
    """Sequence number, shared with ``Exited`` and ``Closed`` of the same process."""
    stream: OutputStream
    """The stream the bytes were read from."""
    data: bytes
    """The bytes, exactly as read; never empty."""


_set_seq = Output.seq.__set__  # type: ignore[attr-defined]
_set_stream = Output.stream.__set__  # type: ignore[attr-defined]
_set_data = Output.data.__set__  # type: ignore[attr-defined]


def new_output(seq: int, stream: OutputStream, data: bytes) -> Output:
    """``Output(seq=seq, stream=stream, data=data)``, built in half the time.

    For the local read loop, which builds one per chunk: it fills the slots directly
    instead of going through the generated (frozen) ``__init__``. The arguments are
    trusted, as they are there.
    """
    event = object.__new__(Output)
    _set_seq(event, seq)
    _set_stream(event, stream)
    _set_data(event, data)
    return event


@attrs.frozen(kw_only=True)
class Exited:
    """The child's exit status is known. Output of grandchildren may still follow."""

    seq: int
    """Sequence number."""
    exit_code: int
    """The shell convention: the child's exit code, or ``128 + N`` when signal N ended it."""
    signal: int | None = None
    """The number of the signal that ended the child, or None if it exited by itself."""


@attrs.frozen(kw_only=True)
class Closed:
    """End of the stream: the child exited and every output stream reached end of file."""

    seq: int
    """Sequence number; always the highest of the process."""


@attrs.frozen(kw_only=True)
class Failed:
    """The session broke (for example the transport to a remote server was lost).

    ``Failed`` is unsequenced and ends the event stream in place of ``Closed``.
    """

    message: str
    """What went wrong, for people."""


Event: TypeAlias = Output | Exited | Closed | Failed
"""Any event of a process's event stream."""


@attrs.frozen(kw_only=True)
class ReadResult:
    """The answer to :meth:`ExecProcess.read`: a window onto retained output."""

    chunks: tuple[Output, ...]
    """Retained output with ``seq > after_seq``, oldest first."""
    next_seq: int
    """The cursor to pass as ``after_seq + 1`` next time (``after_seq = next_seq - 1``)."""
    exited: bool
    """Whether the exit status is known."""
    exit_code: int | None
    """The exit code, once known."""
    closed: bool
    """Whether the stream is over: no further output can appear."""
    failure: str | None = None
    """Set when the session broke; ``closed`` is then true."""
    first_retained_seq: int | None = None
    """The lowest seq still retained, or None when the peer does not report it.

    When ``after_seq + 1 < first_retained_seq`` and output was evicted, the reader
    missed history: the gap is explicit rather than a silent jump in ``seq``.
    """


def signal_name(signum: int) -> str:
    """Return the conventional name of a signal number (``9`` → ``"SIGKILL"``)."""
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"
