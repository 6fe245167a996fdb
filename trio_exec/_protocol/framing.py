"""NDJSON framing of the stdio transport: :class:`LineDecoder` splits bytes into lines."""

from __future__ import annotations

from typing import Final

from .._errors import ProtocolError
from .._lines import LineSplitter, LineTooLongError, TooLong

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "LineDecoder",
    "LineTooLong",
]

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""Default bound on one NDJSON line of the stdio transport (16 MiB, without its newline).

A ``process/write`` of up to about 12 MiB of data fits (base64 grows bytes by 4/3).
"""


class LineTooLong(LineTooLongError, ProtocolError):
    """An NDJSON line exceeded :attr:`LineDecoder.max_line_bytes`; the stream is unusable."""


class LineDecoder:
    """Split a byte stream into NDJSON lines, sans-IO.

    :meth:`feed` takes chunks of any size and returns the complete lines, without
    their ``\\n`` or ``\\r\\n``; blank (whitespace-only) lines are skipped.
    :meth:`feed_eof` returns a final unterminated line.

    Args:
        max_line_bytes: bound on one line, without its terminator. A longer line raises
            :class:`LineTooLong` as soon as it is detected; the decoder is then unusable
            (every later call raises again), because the stream cannot be resynchronised
            safely.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._lines: LineSplitter | None = LineSplitter(max_line_bytes, too_long=TooLong.RAISE)
        self.max_line_bytes: Final = max_line_bytes
        """The bound on one line."""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held back."""
        return 0 if self._lines is None else self._lines.buffered

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add bytes; return the lines they completed, oldest first.

        Raises:
            LineTooLong: a line exceeds ``max_line_bytes``.
        """
        try:
            return [line for line in self._splitter().split(data) if line.strip()]
        except LineTooLongError:
            self._lines = None  # unusable, and holding no memory
            raise LineTooLong(self.max_line_bytes) from None

    def feed_eof(self) -> list[bytes]:
        """End of stream: return the final line if it had no newline (and is not blank)."""
        line = self._splitter().feed_eof()
        return [line] if line is not None and line.strip() else []

    def _splitter(self) -> LineSplitter:
        if self._lines is None:
            raise LineTooLong(self.max_line_bytes)
        return self._lines
