"""NDJSON framing of the stdio transport: :class:`LineDecoder` splits bytes into lines."""

from __future__ import annotations

from typing import Final

from .._errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "LineDecoder",
    "LineTooLong",
]

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""Default bound on one NDJSON line of the stdio transport (16 MiB, without its newline).

A ``process/write`` of up to about 12 MiB of data fits (base64 grows bytes by 4/3).
"""


class LineTooLong(ProtocolError):
    """An NDJSON line exceeded :attr:`LineDecoder.max_line_bytes`; the stream is unusable."""

    def __init__(self, max_line_bytes: int) -> None:
        super().__init__(f"line longer than {max_line_bytes} bytes")
        self.max_line_bytes = max_line_bytes
        """The bound that was exceeded."""


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
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, not {max_line_bytes}")
        self.max_line_bytes: Final = max_line_bytes
        """The bound on one line."""
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no newline
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held back."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add bytes; return the lines they completed, oldest first.

        Raises:
            LineTooLong: a line exceeds ``max_line_bytes``.
        """
        if self._failed:
            raise LineTooLong(self.max_line_bytes)
        buffer = self._buffer
        buffer += data
        lines: list[bytes] = []
        start = 0
        newline = buffer.find(b"\n", self._scanned)
        while newline >= 0:
            end = newline - 1 if newline > start and buffer[newline - 1] == 0x0D else newline
            self._check(end - start)
            line = bytes(buffer[start:end])
            if line.strip():
                lines.append(line)
            start = newline + 1
            newline = buffer.find(b"\n", start)
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        # An incomplete line may end with the \r of its terminator.
        self._check(len(buffer) - (1 if buffer.endswith(b"\r") else 0))
        return lines

    def feed_eof(self) -> list[bytes]:
        """End of stream: return the final line if it had no newline (and is not blank)."""
        if self._failed:
            raise LineTooLong(self.max_line_bytes)
        line = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        if line.endswith(b"\r"):
            line = line[:-1]
        return [line] if line.strip() else []

    def _check(self, length: int) -> None:
        if length > self.max_line_bytes:
            self._failed = True
            self._buffer.clear()
            raise LineTooLong(self.max_line_bytes)
