"""The per-stream chunk store of a :class:`~trio_exec._log.ProcessLog`.

Each output stream's retained chunks live in one seq-ordered list with running byte
offsets, so that a lag or a read position is found by bisection; see the theory of
operation in :mod:`trio_exec._log`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

from ._events import Output, OutputStream

__all__ = ["ALL_STREAMS", "StreamChunks", "check_streams"]

ALL_STREAMS: Final = frozenset(OutputStream)
"""The streams a subscription wants by default: stdout, stderr and pty."""

_COMPACT_AFTER: Final = 64
"""A stream's list drops its evicted head once more than this many chunks (and half of
the list) were evicted."""


def check_streams(streams: Iterable[OutputStream] | None) -> frozenset[OutputStream]:
    """Validate the ``streams`` argument of a subscription; None means every stream."""
    if streams is None:
        return ALL_STREAMS
    if isinstance(streams, OutputStream | str | bytes):
        raise TypeError(
            f"streams must be a collection of OutputStream, such as {{OutputStream.STDERR}}, "
            f"not {streams!r}"
        )
    wanted = frozenset(streams)
    for stream in wanted:
        if not isinstance(stream, OutputStream):
            raise TypeError(f"streams must contain OutputStream members, not {stream!r}")
    return wanted


class StreamChunks:
    """The retained chunks of one stream, oldest first, with running byte offsets."""

    def __init__(self) -> None:
        self.chunks: list[Output | None] = []  # None: evicted, awaiting compaction
        self.seqs: list[int] = []
        self.offsets: list[int] = []  # bytes of this stream appended before each chunk
        self.start = 0  # index of the oldest retained chunk
        self.appended = 0  # bytes of this stream ever appended
        self.evicted_through = 0  # seq of the last evicted chunk of this stream

    @property
    def head(self) -> Output | None:
        return self.chunks[self.start] if self.start < len(self.chunks) else None

    def append(self, chunk: Output) -> None:
        self.chunks.append(chunk)
        self.seqs.append(chunk.seq)
        self.offsets.append(self.appended)
        self.appended += len(chunk.data)

    def pop_head(self) -> Output:
        chunk = self.chunks[self.start]
        assert chunk is not None
        # Drop the reference now, not at compaction: evicted bytes are freed at once.
        self.chunks[self.start] = None
        self.evicted_through = chunk.seq
        self.start += 1
        if self.start > _COMPACT_AFTER and self.start * 2 > len(self.chunks):
            del self.chunks[: self.start]
            del self.seqs[: self.start]
            del self.offsets[: self.start]
            self.start = 0
        return chunk

    def at(self, index: int) -> Output:
        """The chunk at ``index``, at or after the retained head (so never evicted)."""
        chunk = self.chunks[index]
        assert chunk is not None
        return chunk

    def index_at(self, seq: int) -> int:
        """The index of the first retained chunk with a seq >= ``seq``."""
        return bisect.bisect_left(self.seqs, seq, lo=self.start)

    def bytes_from(self, seq: int) -> int:
        """Retained bytes of the chunks with a seq >= ``seq``."""
        index = bisect.bisect_left(self.seqs, seq, lo=self.start)
        return self.appended - self.offsets[index] if index < len(self.chunks) else 0
