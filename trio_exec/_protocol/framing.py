"""Framing of the stdio transport: :class:`LineDecoder` splits bytes into NDJSON lines;
:class:`StreamDecoder` also takes the binary records of extension ``binaryOutput``.

A byte stream carries one message per line: compact JSON and ``\n``. Between two
trio_exec peers that both advertise ``binaryOutput`` it may also carry binary messages
(a server's output, see :mod:`trio_exec._protocol.output`), each as a *record*: a NUL
byte, the message's length as 4 bytes big-endian, then its bytes (:func:`record_head`).
A record starts where a message may start; no JSON line starts with a NUL byte.
"""

from __future__ import annotations

from typing import Final

from .._errors import ProtocolError
from .._lines import LineSplitter, LineTooLongError, TooLong

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "RECORD_MARK",
    "LineDecoder",
    "LineTooLong",
    "StreamDecoder",
    "record_head",
]

RECORD_MARK: Final = 0
"""The first byte of a binary record (NUL): never the first byte of a JSON line."""

_RECORD_HEAD_BYTES: Final = 5
"""The mark and the 4-byte big-endian length."""

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


def record_head(length: int) -> bytes:
    """What precedes a binary message of ``length`` bytes on a byte stream: the mark and
    the length (see the module docstring)."""
    return bytes((RECORD_MARK,)) + length.to_bytes(4, "big")


class StreamDecoder:
    """Split a byte stream into its messages, sans-IO: NDJSON lines (returned as ``str``;
    one that is not UTF-8 as ``bytes`` of JSON, which the decoder of a message refuses)
    and binary records (returned as ``bytes``).

    :meth:`feed` takes chunks of any size and returns the complete messages; blank lines
    are skipped. :meth:`feed_eof` returns a final unterminated line, and raises
    :class:`~trio_exec.ProtocolError` if the stream ends inside a record.

    Args:
        max_message_bytes: bound on one line (without its terminator) and on one record;
            a longer one raises :class:`LineTooLong` (a record's length is known from its
            head) and the decoder is unusable from then on.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._lines = LineDecoder(max_message_bytes)
        self.max_message_bytes: Final = max_message_bytes
        """The bound on one message."""
        self._head = bytearray()
        """The head of the record being read, until it is whole."""
        self._parts: list[memoryview] | None = None
        """The pieces of the record being read, once its head is whole: views of the
        chunks fed (no copy until the record is whole)."""
        self._missing = 0
        """Bytes of the record being read that have not come yet."""
        self._broken = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[str | bytes]:
        """Add bytes; return the messages they completed, oldest first.

        Raises:
            LineTooLong: a line or a record exceeds ``max_message_bytes``.
        """
        if self._broken:
            raise LineTooLong(self.max_message_bytes)
        if not isinstance(data, bytes):
            data = bytes(data)
        view = memoryview(data)
        messages: list[str | bytes] = []
        position, size = 0, len(data)
        while position < size:
            if self._parts is not None or self._head:
                position = self._feed_record(view, position, messages)
            elif data[position] == RECORD_MARK and not self._lines.buffered:
                self._head.append(RECORD_MARK)
                position += 1
            else:  # a line, up to its newline: a record may follow it
                end = data.find(b"\n", position)
                stop = size if end < 0 else end + 1
                try:
                    lines = self._lines.feed(view[position:stop])
                except LineTooLong:
                    self._broken = True
                    raise
                messages += map(_text, lines)
                position = stop
        return messages

    def feed_eof(self) -> list[str | bytes]:
        """End of stream: the final line if it had no newline (and is not blank).

        Raises:
            ProtocolError: the stream ended inside a binary record.
        """
        if self._parts is not None or self._head:
            raise ProtocolError("the stream ended inside a binary record")
        return list(map(_text, self._lines.feed_eof()))

    def _feed_record(self, view: memoryview, position: int, out: list[str | bytes]) -> int:
        """Take what ``view`` has of the current record from ``position``; return where
        the record's bytes end in it."""
        if self._parts is None:
            take = min(_RECORD_HEAD_BYTES - len(self._head), len(view) - position)
            self._head += view[position : position + take]
            position += take
            if len(self._head) < _RECORD_HEAD_BYTES:
                return position
            length = int.from_bytes(self._head[1:], "big")
            if length > self.max_message_bytes:
                self._broken = True
                raise LineTooLong(self.max_message_bytes)
            self._parts, self._missing = [], length
        take = min(self._missing, len(view) - position)
        if take:
            self._parts.append(view[position : position + take])
            self._missing -= take
            position += take
        if not self._missing:
            parts, self._parts = self._parts, None
            self._head.clear()
            whole = parts[0].obj if len(parts) == 1 else None
            if isinstance(whole, bytes) and len(whole) == parts[0].nbytes:
                out.append(whole)  # the record is a chunk as it was fed: no copy
            else:
                out.append(b"".join(parts))  # the one copy of its bytes
        return position


def _text(line: bytes) -> str | bytes:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line
