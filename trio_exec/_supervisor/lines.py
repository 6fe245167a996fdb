"""Supervisor output lines: each stream's output split into the lines a child keeps.

A line longer than :data:`OUTPUT_LINE_BYTES` is kept (and matched) in pieces.
"""

from __future__ import annotations

from typing import Final

from .._events import OutputStream
from .._lines import LineSplitter, TooLong

__all__ = ["OUTPUT_LINE_BYTES", "_OutputLines"]

OUTPUT_LINE_BYTES: Final = 8192
"""Longest output line kept whole; a longer line is kept (and matched) in pieces of this size."""


class _OutputLines:
    """Splits each stream's output into lines; keeps one partial line per stream."""

    def __init__(self) -> None:
        self._streams: dict[OutputStream, LineSplitter] = {}

    def feed(self, stream: OutputStream, data: bytes) -> list[str]:
        lines = self._streams.get(stream)
        if lines is None:
            lines = self._streams[stream] = LineSplitter(OUTPUT_LINE_BYTES, too_long=TooLong.CUT)
        return [_decode(line) for line in lines.split(data)]

    def flush(self) -> list[tuple[OutputStream, str]]:
        rest = [(stream, lines.feed_eof()) for stream, lines in self._streams.items()]
        self._streams.clear()
        return [(stream, _decode(line)) for stream, line in rest if line is not None]


def _decode(line: bytes) -> str:
    return line.decode("utf-8", "replace")
