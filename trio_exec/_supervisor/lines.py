"""Supervisor output lines: each stream's output split into the lines a child keeps.

A line longer than :data:`MAX_LINE_BYTES` is kept (and matched) in pieces.
"""

from __future__ import annotations

from typing import Final

from .._events import OutputStream

__all__ = ["MAX_LINE_BYTES", "_LineSplitter"]

MAX_LINE_BYTES: Final = 8192
"""Longest output line kept whole; a longer line is kept (and matched) in pieces of this size."""


class _LineSplitter:
    """Splits each stream's output into lines; keeps one partial line per stream."""

    def __init__(self) -> None:
        self._partial: dict[OutputStream, bytearray] = {}
        self._cut: set[OutputStream] = set()
        """Streams whose partial line was just emitted for its length: a newline right
        after it ends that line rather than making an empty one."""

    def feed(self, stream: OutputStream, data: bytes) -> list[str]:
        buf = self._partial.setdefault(stream, bytearray())
        if stream in self._cut:
            self._cut.discard(stream)
            if not buf and data.startswith(b"\n"):
                data = data[1:]
        buf += data
        lines: list[str] = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            lines.extend(_pieces(buf[start:end]))
            start = end + 1
        del buf[:start]
        while len(buf) >= MAX_LINE_BYTES:
            lines.append(_decode(buf[:MAX_LINE_BYTES]))
            del buf[:MAX_LINE_BYTES]
            if not buf:
                self._cut.add(stream)
        return lines

    def flush(self) -> list[tuple[OutputStream, str]]:
        rest = [(stream, _decode(buf)) for stream, buf in self._partial.items() if buf]
        self._partial.clear()
        return rest


def _pieces(line: bytearray) -> list[str]:
    if len(line) <= MAX_LINE_BYTES:
        return [_decode(line)]
    return [_decode(line[i : i + MAX_LINE_BYTES]) for i in range(0, len(line), MAX_LINE_BYTES)]


def _decode(line: bytearray) -> str:
    return line.decode("utf-8", "replace").removesuffix("\r")
