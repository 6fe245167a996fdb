"""The child's stderr of :func:`open_stream`, handed to a callback (chunks) or a logger (lines)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, TypeAlias

import trio

from .._events import Output, OutputStream
from .._lines import LineSplitter, TooLong
from .._log import EventSubscription

__all__ = [
    "STDERR_LINE_BYTES",
    "STDERR_LOGGER_NAME",
    "StderrSink",
]

STDERR_LOGGER_NAME: Final = "trio_exec.stream"
"""The logger that receives the child's stderr lines when no ``stderr`` sink is given."""

STDERR_LINE_BYTES: Final = 64 * 1024
"""Longest stderr line logged as one record; a longer line is logged in pieces of this size.

The bound of the stderr loggers of :func:`open_stream` and of
:func:`~trio_exec.connect_command` alike."""

StderrSink: TypeAlias = Callable[[bytes], None] | logging.Logger | None
"""Where :func:`open_stream` sends the child's stderr: a callback that gets each chunk as
it arrives, a logger that gets each line (INFO), or None for the logger named
:data:`STDERR_LOGGER_NAME`."""


class _StderrForwarder:
    """Hands the child's stderr to a callback (chunks) or a logger (lines)."""

    def __init__(self, events: EventSubscription, sink: StderrSink, process_id: str) -> None:
        self._events = events
        self._process_id = process_id
        self._lines = LineSplitter(STDERR_LINE_BYTES, too_long=TooLong.CUT)
        if sink is None:
            sink = logging.getLogger(STDERR_LOGGER_NAME)
        self._logger: logging.Logger | None = sink if isinstance(sink, logging.Logger) else None
        self._callback: Callable[[bytes], None] | None = (
            None if isinstance(sink, logging.Logger) else sink
        )

    async def run(self) -> None:
        try:
            async for event in self._events:
                self._handle(event)
        except trio.ClosedResourceError:
            pass

    def finish(self) -> None:
        """Forward what is still in the log, then the last unterminated line."""
        events = self._events
        try:
            while True:
                self._handle(events.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            pass
        events.close()
        line = self._lines.feed_eof()
        if line is not None:
            self._log_line(line)

    def _handle(self, event: object) -> None:
        if not isinstance(event, Output) or event.stream is not OutputStream.STDERR:
            return
        if self._callback is not None:
            self._callback(event.data)
            return
        for line in self._lines.split(event.data):
            self._log_line(line)

    def _log_line(self, raw: bytes) -> None:
        assert self._logger is not None
        text = raw.decode("utf-8", errors="replace")
        self._logger.info("%s: %s", self._process_id, text)
