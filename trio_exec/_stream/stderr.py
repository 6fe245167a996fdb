"""A child's stderr as it arrives: handed to a callback (chunks) or a logger (lines), the
end of it kept for error messages (:class:`StderrCapture`)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Final, TypeAlias, final

import trio

from .._events import Output, OutputStream
from .._lines import LineSplitter, TooLong
from .._log import EventSubscription

__all__ = [
    "STDERR_LINE_BYTES",
    "STDERR_LOGGER_NAME",
    "STDERR_LOG_LEVEL",
    "StderrCapture",
    "StderrSink",
]

STDERR_LOGGER_NAME: Final = "trio_exec.stream"
"""The logger that receives the child's stderr lines when no ``stderr`` sink is given."""

STDERR_LINE_BYTES: Final = 64 * 1024
"""Longest stderr line logged as one record; a longer line is logged in pieces of this size.

The bound of the stderr loggers of :func:`open_stream` and of
:func:`~trio_exec.connect_command` alike."""

STDERR_LOG_LEVEL: Final = logging.INFO
"""The level of the records a stderr logger gets (of :func:`open_stream` and of
:func:`~trio_exec.connect_command` alike)."""

StderrSink: TypeAlias = Callable[[bytes], None] | logging.Logger | None
"""Where :func:`open_stream` sends the child's stderr: a callback that gets each chunk as
it arrives, a logger that gets each line (INFO), or None for the logger named
:data:`STDERR_LOGGER_NAME`."""


@final
class StderrCapture:
    """Where :func:`open_stream` sends the child's stderr, with what the caller needs to
    report on it afterwards: the end of it, whether it ended, what the sink raised.

    Pass one as the ``stderr`` of :func:`open_stream` (once: a capture serves one
    stream); a plain sink given there is wrapped in one. :func:`~trio_exec.connect_command`
    uses one to put the end of a command's stderr in its error messages::

        capture = StderrCapture(logger, tail_bytes=4096, defer_errors=True)
        async with open_stream(backend, argv, stderr=capture) as stream:
            ...
        print(capture.tail().decode(errors="replace"))

    Args:
        sink: where each chunk goes, as for :func:`open_stream`: a callback gets every
            chunk, a :class:`logging.Logger` every line at :data:`STDERR_LOG_LEVEL` as ``"<label>:
            <line>"`` (decoded as UTF-8 with replacement, lines above
            :data:`STDERR_LINE_BYTES` split), None the logger :data:`STDERR_LOGGER_NAME`.
        label: what starts each logged line; None: the process id.
        tail_bytes: how much of the end of the stderr :meth:`tail` keeps (0: nothing).
        defer_errors: False: an exception of the sink propagates (it cancels the
            :func:`open_stream` block). True: it is kept in :attr:`error`, and the sink
            gets nothing more; the stderr is still read (the child never blocks on it)
            and still kept for :meth:`tail`.

    Raises:
        TypeError: ``sink`` is not a callable, a logger or None.
        ValueError: ``tail_bytes`` is negative.
    """

    def __init__(
        self,
        sink: StderrSink = None,
        *,
        label: str | None = None,
        tail_bytes: int = 0,
        defer_errors: bool = False,
    ) -> None:
        if not (sink is None or isinstance(sink, logging.Logger) or callable(sink)):
            raise TypeError(f"stderr must be a callable, a logging.Logger or None, not {sink!r}")
        if tail_bytes < 0:
            raise ValueError(f"tail_bytes must be >= 0, not {tail_bytes}")
        if sink is None:
            sink = logging.getLogger(STDERR_LOGGER_NAME)
        self._logger = sink if isinstance(sink, logging.Logger) else None
        self._callback = None if isinstance(sink, logging.Logger) else sink
        self._label = label
        self._lines = LineSplitter(STDERR_LINE_BYTES, too_long=TooLong.CUT)
        self._tail_bytes: Final = tail_bytes
        self._tail: deque[bytes] = deque()
        self._kept = 0
        self._defer_errors: Final = defer_errors
        self._events: EventSubscription | None = None
        self._ended = trio.Event()
        self._error: Exception | None = None

    def __repr__(self) -> str:
        state = "ended" if self._ended.is_set() else "open"
        return f"<StderrCapture {state}, {self._kept} bytes kept>"

    @property
    def ended(self) -> trio.Event:
        """Set once the whole stderr was handed to the sink: the session is closed (the
        child exited and its output reached end of file) or the stream's block was left."""
        return self._ended

    @property
    def error(self) -> Exception | None:
        """What the sink raised, with ``defer_errors``; else None."""
        return self._error

    def tail(self) -> bytes:
        """The last ``tail_bytes`` (at most) of what the child wrote to stderr so far."""
        return b"".join(self._tail)[-self._tail_bytes :] if self._tail_bytes else b""

    # -- driven by open_stream ---------------------------------------------------------------

    def _attach(self, events: EventSubscription, process_id: str) -> None:
        """Take the subscription to read; the label defaults to the process id."""
        if self._events is not None:
            raise RuntimeError("this StderrCapture already serves a stream")
        self._events = events
        if self._label is None:
            self._label = process_id

    async def _run(self) -> None:
        """Hand over the stderr until the session is closed (or the block is left)."""
        assert self._events is not None
        try:
            async for event in self._events:
                self._handle(event)
        except trio.ClosedResourceError:
            return
        self._end()

    def _finish(self) -> None:
        """Hand over what is still in the log, then the last unterminated line."""
        events = self._events
        if events is not None:
            try:
                while True:
                    self._handle(events.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                pass
            events.close()
        self._end()

    def _end(self) -> None:
        if self._ended.is_set():
            return
        line = self._lines.feed_eof()
        if line is not None and self._logger is not None:
            self._deliver(self._log_line, line)
        self._ended.set()

    def _handle(self, event: object) -> None:
        if isinstance(event, Output) and event.stream is OutputStream.STDERR:
            self._feed(event.data)

    def _feed(self, data: bytes) -> None:
        """Keep the end of ``data`` and hand it to the sink."""
        if self._tail_bytes:
            self._tail.append(data)
            self._kept += len(data)
            while self._kept - len(self._tail[0]) >= self._tail_bytes:
                self._kept -= len(self._tail.popleft())
        self._deliver(self._callback or self._log, data)

    def _deliver(self, sink: Callable[[bytes], None], data: bytes) -> None:
        if self._error is not None:
            return
        if not self._defer_errors:
            sink(data)
            return
        try:
            sink(data)
        except Exception as exc:
            self._error = exc

    def _log(self, data: bytes) -> None:
        for line in self._lines.split(data):
            self._log_line(line)

    def _log_line(self, raw: bytes) -> None:
        assert self._logger is not None
        text = raw.decode("utf-8", errors="replace")
        self._logger.log(STDERR_LOG_LEVEL, "%s: %s", self._label, text)
