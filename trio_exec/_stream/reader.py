"""LineReader: any :class:`trio.abc.ReceiveStream` as lines, one message per line.

For JSON-lines protocols such as MCP stdio: one message per line, a bounded line length.
The splitting is the one line splitter of ``trio_exec._lines``.
"""

from __future__ import annotations

from typing import Final, final

import trio

from .._lines import LineSplitter, LineTooLongError, TooLong

__all__ = [
    "LINE_READER_MAX_BYTES",
    "LINE_RECEIVE_BYTES",
    "LineReader",
    "LineTooLongError",
]

LINE_READER_MAX_BYTES: Final = 1024 * 1024
"""Default bound on a line of :class:`LineReader` (1 MiB), not counting ``\\n`` or ``\\r\\n``."""

LINE_RECEIVE_BYTES: Final = 64 * 1024
"""Default ``max_bytes`` of each ``receive_some`` call of :class:`LineReader`."""


@final
class LineReader(trio.abc.ReceiveChannel[bytes]):
    """Splits a :class:`trio.abc.ReceiveStream` into lines: one message per line.

    ``receive()`` returns the next line without its terminator: ``\\n``, or ``\\r\\n``
    (a lone ``\\r`` elsewhere is kept). At end of stream, a final line without a
    terminator is returned too (``b"x"`` at the end gives ``b"x"``, a trailing ``\\r``
    stripped), then :class:`trio.EndOfChannel` is raised, by every later call as well.
    ``async for line in reader`` iterates until then. Empty lines are returned as ``b""``.

    A line longer than ``max_line_bytes`` (not counting its terminator) raises
    :class:`LineTooLongError` as soon as it is known to be too long, without waiting for
    its end; the rest of it is then skipped. Memory is bounded by ``max_line_bytes`` plus
    ``receive_bytes``.

    Errors of the underlying stream propagate. ``aclose`` closes the underlying stream.

    Args:
        stream: where the bytes come from (a :class:`ProcessStream`, a socket, ...).
        max_line_bytes: the longest line accepted (default :data:`LINE_READER_MAX_BYTES`).
        receive_bytes: ``max_bytes`` of each ``receive_some`` (default
            :data:`LINE_RECEIVE_BYTES`).
    """

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        *,
        max_line_bytes: int = LINE_READER_MAX_BYTES,
        receive_bytes: int = LINE_RECEIVE_BYTES,
    ) -> None:
        lines = LineSplitter(max_line_bytes, too_long=TooLong.RAISE)
        if receive_bytes < 1:
            raise ValueError(f"receive_bytes must be >= 1, not {receive_bytes}")
        self.stream: Final = stream
        """The underlying stream."""
        self.max_line_bytes: Final = max_line_bytes
        """The longest line accepted, without its terminator."""
        self._receive_bytes = receive_bytes
        self._lines = lines
        self._at_eof = False
        self._receiving = False

    async def receive(self) -> bytes:
        """Return the next line, without its ``\\n`` or ``\\r\\n``.

        Raises:
            trio.EndOfChannel: the stream ended and every line was returned.
            LineTooLongError: the next line exceeds ``max_line_bytes``; it is skipped.
            trio.BusyResourceError: another task is receiving.

        **Cancellation:** nothing is lost: bytes received but not returned yet are kept
        for the next call.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving lines")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            while True:
                line = self._lines.next_line()
                if line is not None:
                    return line
                if self._at_eof:
                    line = self._lines.feed_eof()
                    if line is None:
                        raise trio.EndOfChannel
                    return line
                data = await self.stream.receive_some(self._receive_bytes)
                if data:
                    self._lines.feed(data)
                else:
                    self._at_eof = True
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Close the underlying stream.

        **Cancellation:** as for the stream's ``aclose`` (a trio stream is closed even
        then).
        """
        await self.stream.aclose()
