"""The one line splitter: bytes in, lines out, sans-IO (imports no trio).

:class:`LineSplitter` is used by the NDJSON framing of the stdio transport
(:class:`~trio_exec._protocol.LineDecoder`), by :class:`~trio_exec.LineReader`, by the
stderr line loggers of :func:`~trio_exec.open_stream` and :func:`~trio_exec.connect_command`
and by the supervisor's output lines. Each use names its own bound; what happens to a line
above it is the splitter's ``too_long`` policy (:class:`TooLong`).

The rules, the same for every use and whatever the chunking of the input:

* A line ends with ``\\n``; a ``\\r`` right before it is part of the terminator. Neither is
  returned. Any other ``\\r`` is kept.
* At end of stream, bytes after the last ``\\n`` are a final line (a trailing ``\\r``
  stripped); nothing after the last ``\\n`` means no final line.
* The bound counts the line without its terminator: a line of exactly ``max_line_bytes`` is
  a line, one byte more is too long.
"""

from __future__ import annotations

import enum
from typing import Final

from ._errors import TrioExecError

__all__ = ["LineSplitter", "LineTooLongError", "TooLong"]

_CR: Final = 0x0D


class LineTooLongError(TrioExecError, ValueError):
    """A line exceeded the :class:`LineReader`'s ``max_line_bytes``.

    The one line-too-long error: :class:`LineSplitter` raises it, and the stdio framing's
    :class:`~trio_exec._protocol.LineTooLong` is a kind of it. The reader stays usable: the rest of the offending line is skipped, and the next
    ``receive`` returns the line after it.
    """

    def __init__(self, max_line_bytes: int) -> None:
        super().__init__(f"line longer than {max_line_bytes} bytes")
        self.max_line_bytes = max_line_bytes
        """The bound that was exceeded."""


class TooLong(enum.Enum):
    """What a :class:`LineSplitter` does with a line longer than its ``max_line_bytes``."""

    RAISE = "raise"
    """Raise :class:`LineTooLongError` once, as soon as the line is known to be too long
    (without waiting for its end), then skip the rest of it."""

    CUT = "cut"
    """Return the line in pieces of ``max_line_bytes``, each as soon as it is complete; the
    last piece is the rest (a line of exactly a multiple of the bound ends with a full
    piece, no empty one)."""


class LineSplitter:
    """Split a byte stream into lines, sans-IO.

    :meth:`feed` adds bytes; :meth:`next_line` returns the next line (or piece of one), or
    None until more bytes come; :meth:`feed_eof`, once :meth:`next_line` returned None,
    returns the final unterminated line and makes the splitter ready for a new stream.
    Memory is bounded by ``max_line_bytes`` plus what one :meth:`feed` adds.

    Args:
        max_line_bytes: the bound on one line, without its terminator.
        too_long: what a longer line does (:class:`TooLong`).
    """

    def __init__(self, max_line_bytes: int, *, too_long: TooLong) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, not {max_line_bytes}")
        self.max_line_bytes: Final = max_line_bytes
        """The bound on one line, without its terminator."""
        self.too_long: Final = too_long
        """The policy for a longer line."""
        self._buffer = bytearray()
        self._start = 0  # the buffer before this index was consumed
        self._scanned = 0  # no b"\n" between _start and this index
        self._skipping = False  # RAISE: dropping the rest of a line that was reported
        self._cut = False  # CUT: pieces of the current line were returned

    @property
    def buffered(self) -> int:
        """Bytes held back: the start of a line not complete yet."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes; :meth:`next_line` returns the lines they complete."""
        self._buffer += data

    def split(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add bytes; return every line (or piece) they complete, oldest first.

        Raises:
            LineTooLongError: with :attr:`TooLong.RAISE`, a line exceeds the bound; the
                lines before it in ``data`` are dropped (use :meth:`next_line` to keep them).
        """
        self.feed(data)
        lines: list[bytes] = []
        while (line := self.next_line()) is not None:
            lines.append(line)
        return lines

    def next_line(self) -> bytes | None:
        """Return the next complete line (or piece), or None until more bytes come.

        Raises:
            LineTooLongError: with :attr:`TooLong.RAISE`, the next line exceeds the bound;
                it is skipped, and the next call goes on after it.
        """
        limit = self.max_line_bytes
        buffer = self._buffer
        while True:
            if self._skipping:
                end = buffer.find(b"\n", self._scanned)
                if end < 0:
                    self._consume(len(buffer))
                    return None
                self._consume(end + 1)
                self._skipping = False
            start = self._start
            end = buffer.find(b"\n", self._scanned)
            if end >= 0:
                stop = end - 1 if end > start and buffer[end - 1] == _CR else end
                if stop - start > limit:
                    if self.too_long is TooLong.RAISE:
                        self._consume(end + 1)
                        raise LineTooLongError(limit)
                    return self._piece(scanned=end)
                line = bytes(buffer[start:stop])
                self._consume(end + 1)
                cut, self._cut = self._cut, False
                if line or not cut:
                    return line
                continue  # the line ended right after a piece: no empty line
            self._scanned = len(buffer)
            pending = len(buffer) - start
            # One byte more may be the \r of a \r\n terminator.
            ends_with_cr = pending > 0 and buffer[-1] == _CR
            if self.too_long is TooLong.RAISE:
                if pending > limit and not (pending == limit + 1 and ends_with_cr):
                    self._consume(len(buffer))
                    self._skipping = True
                    raise LineTooLongError(limit)
            elif pending > limit or (pending == limit and not ends_with_cr):
                return self._piece(scanned=len(buffer))
            return None

    def feed_eof(self) -> bytes | None:
        """End of stream: return the final line if it had no terminator, else None.

        Call it once :meth:`next_line` returned None. The splitter is then empty, ready for
        another stream.
        """
        rest = bytes(self._buffer[self._start :])
        skipping, cut = self._skipping, self._cut
        self._buffer.clear()
        self._start = self._scanned = 0
        self._skipping = self._cut = False
        line = rest.removesuffix(b"\r")
        if skipping or not rest or (cut and not line):
            return None
        return line

    def _piece(self, *, scanned: int) -> bytes:
        """Return the next ``max_line_bytes`` of the current line (CUT); no ``b"\\n"`` is
        before ``scanned``."""
        end = self._start + self.max_line_bytes
        piece = bytes(self._buffer[self._start : end])
        self._consume(end, scanned=scanned)
        self._cut = True
        return piece

    def _consume(self, end: int, *, scanned: int | None = None) -> None:
        """Drop the buffer up to ``end``, compacting it once half of it is consumed."""
        self._start = end
        self._scanned = end if scanned is None else scanned
        if end * 2 >= len(self._buffer):
            del self._buffer[:end]
            self._start = 0
            self._scanned -= end
