"""The backend interface and the process session shared by every backend.

An :class:`ExecBackend` opens :class:`ExecProcess` sessions. The session's events live
in a :class:`~trio_exec._log.ProcessLog`; a backend only has to feed that log and
implement the few operations that touch the child (write, signal, terminate, ...).

Checkpoints
-----------
Every public async function and method of trio_exec is a checkpoint (trio's rule) on
every path: when it returns at once, and when it raises an operational error
(:class:`~trio_exec.ConnectionLost`, :class:`~trio_exec.UnsupportedOperation`, a closed
or broken resource, a status such as ``UNKNOWN_PROCESS``, the end of a channel). So a
loop of calls that keep failing or returning at once still lets other tasks run and can
be cancelled. The exceptions, as in trio itself: bad arguments (``TypeError``,
``ValueError``) and misuse that trio reports at once (``trio.BusyResourceError``: two
tasks on one side of a stream) are raised before any ``await``.
"""

from __future__ import annotations

import abc
import itertools
import os
import signal as _signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final, NoReturn, TypeAlias, TypedDict, TypeVar, Unpack

import attrs
import trio

from ._events import Closed, Event, Exited, OutputStream, ReadResult, WriteStatus
from ._log import DEFAULT_RETAINED_BYTES, EventSubscription, ProcessLog

if TYPE_CHECKING:
    from ._protocol import EnvironmentInfo
    from ._stream import ProcessStream, StderrSink

_E = TypeVar("_E", Exited, Closed)
"""An event a process waits for (:meth:`ExecProcess._wait_for`)."""

__all__ = [
    "DEFAULT_GRACE",
    "ExecBackend",
    "ExecProcess",
    "ProcessOptions",
    "ProcessStatistics",
]

DEFAULT_GRACE: Final = 5.0
"""Seconds between SIGTERM and SIGKILL when a session ends with its child still running."""

Arg: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]
"""An item of ``argv``: what :mod:`subprocess` takes (a remote server gets it as a str)."""

_process_ids = itertools.count(1)


def new_process_id() -> str:
    """Return a process id unique within this Python process."""
    return f"proc-{os.getpid()}-{next(_process_ids)}"


class ProcessOptions(TypedDict, total=False):
    """The keyword options of ``open_process``, declared once for every backend.

    :meth:`ExecBackend.open_process`, its overrides and :func:`open_process` take them as
    keyword arguments (``open_process(argv, cwd="/srv", tty=True)``); each is optional,
    with the default given below. The defaults are the side's that runs the child, as with
    ``ssh``, ``docker exec`` and ``kubectl exec``: without ``cwd`` and ``env``, a child of
    a remote backend runs in the server's working directory with the server's
    environment, never the client's.
    """

    cwd: str | os.PathLike[str] | None
    """The working directory (default None: the backend's: this process's for a
    :class:`LocalBackend`, the server's for a :class:`RemoteBackend`)."""
    env: Mapping[str, str] | None
    """The child's exact environment (default None: the backend's environment, inherited
    whole)."""
    tty: bool
    """Run the child on a pseudo-terminal (24x80 unless ``window``); its stdout and stderr
    are then merged into :attr:`OutputStream.PTY` and stdin is the terminal (default
    False)."""
    pipe_stdin: bool
    """Give a non-tty child a writable stdin pipe (default False: ``/dev/null``)."""
    arg0: str | None
    """What the child sees as ``argv[0]`` (default None: ``argv[0]``)."""
    process_id: str | None
    """The session's id (default None: generated)."""
    grace: float
    """When the block is left with the child running, seconds between SIGTERM and SIGKILL
    to its process group (default :data:`DEFAULT_GRACE`)."""
    retain_bytes: int
    """Bound on retained output, see :class:`~trio_exec._log.ProcessLog` (default
    :data:`DEFAULT_RETAINED_BYTES`)."""
    extra_env: Mapping[str, str] | None
    """Variables added to the child's environment, over ``env`` when it is given, else
    over the backend's environment (so ``extra_env={"K": "V"}`` is the backend's
    environment plus ``K``; default None)."""
    window: tuple[int, int] | None
    """``(rows, cols)`` of the terminal from the start, each 1..65535; needs
    ``tty=True``. The child never sees another size first (unlike a
    :meth:`~ExecProcess.resize` after the start, which races the child). Default None."""


_OPTION_DEFAULTS: Final[ProcessOptions] = {
    "cwd": None,
    "env": None,
    "tty": False,
    "pipe_stdin": False,
    "arg0": None,
    "process_id": None,
    "grace": DEFAULT_GRACE,
    "retain_bytes": DEFAULT_RETAINED_BYTES,
    "extra_env": None,
    "window": None,
}


def process_options(options: ProcessOptions) -> ProcessOptions:
    """Return the options given to ``open_process`` with every default filled in.

    Raises:
        TypeError: an unknown option, as Python raises for an unexpected keyword argument.
    """
    for name in options:
        if name not in _OPTION_DEFAULTS:
            raise TypeError(f"open_process() got an unexpected keyword argument {name!r}")
    return {**_OPTION_DEFAULTS, **options}


class ExecBackend(abc.ABC):
    """Where processes run: :class:`LocalBackend` here, :class:`RemoteBackend` on a server.

    An :class:`ExecServer` serves any backend, through this interface alone."""

    environment_info: EnvironmentInfo | None = None
    """What is known of the side where the children run (its working directory, home,
    shell, ...), as an exec server's ``initialize`` tells it; None when that side is this
    process's (a :class:`LocalBackend`). A :class:`RemoteBackend` has what its server
    told; an exec server serving the backend tells its own clients the same, so their
    default working directory is the one where the children run."""

    @abc.abstractmethod
    def open_process(
        self, argv: Sequence[Arg], **options: Unpack[ProcessOptions]
    ) -> AbstractAsyncContextManager[ExecProcess]:
        """Start ``argv`` and return an async context manager that owns the session.

        The defaults are the side's that runs the child, as with ``ssh``, ``docker exec``
        and ``kubectl exec``: without ``cwd`` and ``env``, a child of a remote backend runs
        in the server's working directory with the server's environment, never the
        client's.

        Args:
            argv: the program and its arguments (str, bytes or path-like, as for
                :mod:`subprocess`); ``argv[0]`` is looked up in ``PATH``.
            options: keyword options, each optional: ``cwd``, ``env``, ``tty``,
                ``pipe_stdin``, ``arg0``, ``process_id``, ``grace``, ``retain_bytes``,
                ``extra_env``, ``window``; see :class:`ProcessOptions`.

        Raises:
            SpawnError: the program could not be started; ``filename`` names the program
                or the working directory at fault. As for :class:`OSError`, the error is
                also the subclass for its ``errno``: a :class:`FileNotFoundError` (ENOENT),
                :class:`PermissionError` (EACCES, EPERM), :class:`NotADirectoryError`
                (ENOTDIR) or :class:`IsADirectoryError` (EISDIR).
            ValueError: bad arguments (empty ``argv``, ``window`` without ``tty``, ...).
            TypeError: an argument of the wrong type, or an unknown option.

        These are raised as themselves, never in an exception group; so is an exception
        of the block.

        Leaving the block (normally, by an exception or by cancellation) terminates a
        child that still runs (SIGTERM to its group, SIGKILL after ``grace``), kills what
        is left of its process group, and reaps it: no process is left behind.

        **Cancellation:** if cancelled while starting, no process is left behind.
        """

    def open_stream(
        self,
        argv: Sequence[Arg],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        stderr: StderrSink = None,
        grace: float = DEFAULT_GRACE,
    ) -> AbstractAsyncContextManager[ProcessStream]:
        """Start ``argv`` with piped stdin and yield it as a byte stream.

        A :class:`ProcessStream` is a :class:`trio.abc.HalfCloseableStream`: ``send_all``
        writes to stdin, ``receive_some`` reads stdout in seq order, ``send_eof`` closes
        stdin, ``aclose`` ends the process. ``stderr`` goes to a callback, a logger, or
        the ``trio_exec.stream`` logger. See :func:`trio_exec.open_stream` for the rest.

        **Cancellation:** as :meth:`open_process`: the child is terminated and reaped.
        """
        from ._stream import open_stream

        return open_stream(self, argv, cwd=cwd, env=env, stderr=stderr, grace=grace)


@attrs.frozen(kw_only=True)
class ProcessStatistics:
    """A snapshot of a session's event log; see :meth:`ExecProcess.statistics`."""

    retained_bytes: int
    """Output bytes retained now."""
    retain_limit: int
    """The bound on retained output (``retain_bytes`` of ``open_process``)."""
    next_seq: int
    """The seq the next event will get."""
    first_retained_seq: int
    """The lowest seq still retained."""
    subscriptions: int
    """Open subscriptions that still hold the log back."""


class ExecProcess(abc.ABC):
    """A running process session; obtained from :meth:`ExecBackend.open_process`.

    Events are retained in a bounded log. :attr:`events` is the main subscription to
    them; :meth:`subscribe` opens more; :meth:`read` polls the log with a cursor.
    """

    def __init__(self, process_id: str, log: ProcessLog) -> None:
        self.process_id: Final = process_id
        """The session's process id."""
        self._log = log
        self._events: EventSubscription | None = None
        self._gone = False

    def __repr__(self) -> str:
        state = "closed" if self._log.finished else "exited" if self._log.exited else "running"
        return f"<{type(self).__name__} {self.process_id!r} {state}>"

    def statistics(self) -> ProcessStatistics:
        """Return a snapshot of the event log (sizes and cursors), for monitoring and tests."""
        log = self._log
        return ProcessStatistics(
            retained_bytes=log.retained_bytes,
            retain_limit=log.retain_bytes,
            next_seq=log.next_seq,
            first_retained_seq=log.first_retained_seq,
            subscriptions=log.subscription_count,
        )

    # -- events ----------------------------------------------------------------------------

    @property
    def events(self) -> trio.abc.ReceiveChannel[Event]:
        """The process's events, in seq order; the channel ends after Closed or Failed.

        The subscription starts at the first access and replays what is retained then,
        so accessed before the first checkpoint after the block is entered, it sees every
        event. From then on it holds back the child when its consumer is slow.
        """
        if self._events is None:
            self._events = self._log.subscribe()
        return self._events

    def subscribe(self, *, streams: Iterable[OutputStream] | None = None) -> EventSubscription:
        """Open another subscription: a replay of the retained events, then live ones.

        Nothing is lost or duplicated between the replay and the live part. Close it
        (``aclose``) when done, or it keeps holding back the child.

        It is a cursor into the process's log: ``cursor`` is the seq of the next event,
        ``receive_nowait`` moves it on without waiting (an exec server relies on both to
        skip what a client reads itself and to pin what it may still ask for).

        Args:
            streams: the output streams wanted, every stream by default. The
                subscription receives only the ``Output`` of these streams (``Exited``,
                ``Closed`` and ``Failed`` always), and holds back only them: a
                subscription to ``{OutputStream.STDOUT}`` that nobody reads stops the
                child's stdout once it is ``retain_bytes`` behind, while its stderr
                keeps flowing to the subscriptions that want it.

        Raises:
            TypeError: ``streams`` is not a collection of :class:`OutputStream`.
        """
        return self._log.subscribe(streams=streams)

    async def read(
        self, after_seq: int = 0, max_bytes: int | None = None, wait: float = 0.0
    ) -> ReadResult:
        """Return retained output after ``after_seq``, long-polling up to ``wait`` seconds.

        The read returns early on new output, on close, and on the exit while
        ``after_seq`` is below the seq of Exited: pass ``after_seq=result.next_seq - 1``
        to go past the exit, so that the next read waits for the close (or for output of
        a grandchild) instead of returning at once. It never consumes anything: reads and
        subscriptions are independent. ``first_retained_seq`` in the result tells whether
        older history was evicted. It is a checkpoint even when it returns at once.

        **Cancellation:** nothing to undo.
        """
        return await self._log.read_wait(after_seq, max_bytes, wait)

    async def wait(self) -> int:
        """Wait for the child to exit and return its exit code.

        Raises:
            ConnectionLost: a remote session broke before the exit was known.

        **Cancellation:** the child keeps running; nothing is undone.
        """
        exited = await self._wait_for(lambda log: log.exited)
        return exited.exit_code

    async def wait_closed(self) -> Closed:
        """Wait until the child exited and all its output was sequenced.

        **Cancellation:** nothing to undo.
        """
        return await self._wait_for(lambda log: log.closed)

    async def _wait_for(self, event: Callable[[ProcessLog], _E | None]) -> _E:
        """Wait until ``event(log)`` is sequenced and return it; a checkpoint either way
        (the wait is one: none more on the way out).

        Raises:
            ConnectionLost: the session broke first.
        """
        if (found := event(self._log)) is not None:
            await trio.lowlevel.checkpoint()
            return found
        while (found := event(self._log)) is None:
            if self._log.failure is not None:
                await self._raise_failure()
            await self._log.wait_changed()
        return found

    async def _raise_failure(self) -> NoReturn:
        """Checkpoint, then raise ConnectionLost for the log's failure."""
        from ._errors import ConnectionLost

        await trio.lowlevel.checkpoint()
        raise ConnectionLost(self._log.failure or "the session broke")

    @property
    def exit_code(self) -> int | None:
        """The exit code once known, else None."""
        exited = self._log.exited
        return None if exited is None else exited.exit_code

    @property
    @abc.abstractmethod
    def tty(self) -> bool:
        """Whether the child runs on a pseudo-terminal (``open_process(tty=True)``): its
        output is then :attr:`OutputStream.PTY` and :meth:`resize` applies."""

    # -- operations on the child -----------------------------------------------------------

    @abc.abstractmethod
    async def write(self, data: bytes) -> WriteStatus:
        """Write ``data`` to the child's stdin (or terminal) and return the status.

        Returns ACCEPTED once the bytes were handed over; STDIN_CLOSED when the child
        has no writable stdin (not piped, closed, or the child is gone); UNKNOWN_PROCESS
        after the session ended. A full pipe makes the write wait (backpressure).

        **Cancellation:** part of ``data`` may have been written.
        """

    @abc.abstractmethod
    async def close_stdin(self) -> WriteStatus:
        """Close the child's stdin so that it reads end of file.

        On a terminal, sends the EOF character (Ctrl-D), which ends a read at the start
        of a line in canonical mode.

        Raises:
            UnsupportedOperation: the remote server lacks the ``closeStdin`` extension.

        **Cancellation:** stdin may or may not be closed.
        """

    @abc.abstractmethod
    async def signal(self, sig: int | _signal.Signals) -> None:
        """Send ``sig`` to the child's process group. A no-op once the session ended.

        Raises:
            UnsupportedOperation: the remote server cannot send that signal.

        **Cancellation:** the signal may or may not have been sent.
        """

    @abc.abstractmethod
    async def resize(self, rows: int, cols: int) -> None:
        """Set the terminal window size; the child gets SIGWINCH.

        Raises:
            UnsupportedOperation: the process has no terminal, or the remote server
                lacks the ``resize`` extension.
            ValueError: ``rows`` or ``cols`` out of 1..65535.

        **Cancellation:** the size may or may not have changed.
        """

    @abc.abstractmethod
    async def terminate(self, grace: float = DEFAULT_GRACE) -> bool:
        """Send SIGTERM to the process group, then SIGKILL after ``grace`` seconds.

        Returns whether the child was still running. Returns once the child exited.

        **Cancellation:** if cancelled during the grace, SIGKILL is sent at once (shielded)
        so that cancellation never leaves a terminating child behind, then Cancelled
        propagates.
        """


def check_dimensions(rows: int, cols: int) -> None:
    """Raise ValueError unless ``rows`` and ``cols`` are valid terminal dimensions."""
    for name, value in (("rows", rows), ("cols", cols)):
        if not 1 <= value <= 65535:
            raise ValueError(f"{name} must be within 1..65535, not {value}")


def check_window(window: tuple[int, int] | None, tty: bool) -> tuple[int, int] | None:
    """Validate the ``window`` option of ``open_process`` and return it as ``(rows, cols)``.

    Raises:
        ValueError: not a pair of dimensions within 1..65535, or given without ``tty``.
        TypeError: not a pair of ints.
    """
    if window is None:
        return None
    if not tty:
        raise ValueError("window needs tty=True: only a terminal has a size")
    try:
        rows, cols = window
    except (TypeError, ValueError):
        raise TypeError(f"window must be a (rows, cols) pair, not {window!r}") from None
    if type(rows) is not int or type(cols) is not int:
        raise TypeError(f"window must be a pair of ints, not {window!r}")
    check_dimensions(rows, cols)
    return rows, cols


def check_seconds(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a duration >= 0 seconds (NaN is refused)."""
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0 seconds, not {value!r}")


def check_env(env: Mapping[str, str]) -> dict[str, str]:
    """Validate an environment mapping and return it as a dict of str to str."""
    result: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("env keys and values must be str")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"invalid environment variable name or value: {key!r}")
        result[key] = value
    return result


def check_argv(argv: Sequence[Arg], *, text: bool = False) -> list[str]:
    """Validate a command line and return it as a list of str.

    Items may be str, bytes or path-like (str or bytes), as for :mod:`subprocess`; bytes
    are decoded with :func:`os.fsdecode`, which the spawn encodes back unchanged. With
    ``text`` (a command sent over the wire, in JSON strings), each item must also be
    valid UTF-8: undecodable bytes would not survive the trip.
    """
    if isinstance(argv, str | bytes | os.PathLike):
        raise TypeError("argv must be a sequence of arguments, not a single string or path")
    try:
        items = list(argv)
    except TypeError:
        raise TypeError(
            f"argv must be a sequence of arguments, not {type(argv).__name__}"
        ) from None
    if not items:
        raise ValueError("argv must not be empty")
    args: list[str] = []
    for item in items:
        if not isinstance(item, str | bytes | os.PathLike):
            raise TypeError(
                f"argv items must be str, bytes or path-like, not {type(item).__name__}"
            )
        arg = os.fsdecode(item)
        if "\0" in arg:
            raise ValueError("argv items must not contain NUL")
        if text and not arg.isascii():
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"argv items sent to an exec server must be valid UTF-8, not {item!r}"
                ) from None
        args.append(arg)
    return args
