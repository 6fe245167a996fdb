"""The sequenced event log of one process: seq cursor, byte bound, replay, subscriptions.

Theory of operation
-------------------
A :class:`ProcessLog` is the single source of truth for a process's events. Producers
(a local session's task and its pumps, or the remote client's publisher) append to it in seq
order; consumers read it two ways:

* **Subscriptions** (:meth:`ProcessLog.subscribe`) are cursors over the log exposed as a
  :class:`trio.abc.ReceiveChannel`. Each wants a set of output streams (every stream by
  default) and *pins* the output of those streams it has not received yet: that output
  is never evicted. Its *lag* is the retained output of its streams at or after its
  cursor. :meth:`ProcessLog.append_output` of a chunk of stream ``s`` waits while a
  subscription that wants ``s`` lags ``retain_bytes`` behind (the chunk would not fit),
  which stops the pump of ``s`` from reading the child's pipe, which blocks the child's
  writes to it. That is the backpressure of invariant 5, and it is applied to a stream
  only by the subscriptions that want that stream: a subscription to stdout that nobody
  reads holds back stdout, never stderr.
* **Reads** (:meth:`ProcessLog.read`) are snapshots with a cursor chosen by the caller.
  They pin nothing: when no subscription holds it back, the log evicts its oldest chunks
  and a reader that fell behind sees ``first_retained_seq`` move past its cursor.

Storage and eviction. Chunks are kept in one seq-ordered list per stream (at most three:
stdout, stderr, pty); "oldest" across streams is a merge of the (at most three) heads. To
make room for an incoming chunk while more than ``retain_bytes`` would be retained, the
log evicts the oldest chunk that no subscription pins, repeatedly. A stream's pinned
chunks are a suffix of its list (everything from the lowest cursor of the subscriptions
that want it), so the evictable chunks are a prefix of each list and eviction takes list
heads: each stream's retained chunks stay a contiguous tail of its history. Across
streams, though, a chunk nobody needs (stderr that its only subscriber received) can be
evicted while an older pinned one (stdout that nobody read yet) stays: the retained set
may have holes.

Memory bound. A subscription's lag stays within ``retain_bytes``: the producer of a
chunk that would take it past waits. A chunk is never split, so one larger than the
bound is let in when its subscribers have nothing else pending. Each stream's pinned
output is therefore at most ``retain_bytes`` (or that one chunk), and output nobody
pins is evicted, oldest first, down to ``retain_bytes`` in total. The log retains at
most the larger of ``retain_bytes`` and the sum of what the streams have pinned, plus
one chunk of a stream nobody holds back:

* ``retain_bytes`` when every subscription wants every stream (``ExecProcess.events``,
  our server's forwarders and holds): one lag covers all of them;
* ``2 * retain_bytes`` for a piped child whose stdout and stderr are held back by
  different subscriptions (the reader and the stderr pump of ``open_stream``), and
  never more than ``retain_bytes`` per stream (``3 * retain_bytes`` at most);
* a late subscription (``from_seq`` in the past) pins only what is retained already.

:meth:`ProcessLog.append_output_nowait` (for producers that cannot wait) and the log
after :meth:`ProcessLog.release_backpressure` stay within ``retain_bytes`` (or one
chunk) by evicting the oldest chunks, pinned or not.

Reads across holes. ``first_retained_seq`` is one past the highest seq ever evicted, so
the contract "every seq at or above ``first_retained_seq`` that was output is retained"
holds. :meth:`ProcessLog.read` returns only chunks at or above it (a pinned chunk below
it is kept for its subscription but is not readable: reading it would skip the hole
after it silently), with the reference server's rules otherwise (oldest first,
``max_bytes`` a soft budget over whole chunks). A subscription likewise resumes, when
history of its streams was evicted from under it (only the forced eviction above does
that), at the first seq from which its streams are whole again; so it never sees a hole
in the middle of what it receives.

Wake-ups. A held-back producer checks again when a subscription that receives an event lags
at most ``retain_bytes // 2`` then, unsubscribes, or the log ends: a run of chunks per wake-up.

Cost. With n retained chunks, k ≤ 3 streams and s subscriptions, an append costs
O(s·k·log n) (bisections in the per-stream lists; a lag is a difference of per-stream
running byte offsets), plus O(k) per chunk it evicts; a receive O(k·log n); a read
O(k·log n) plus O(k) per chunk returned. Nothing scans the retained chunks, however many
small ones there are. A list is compacted once half of it is evicted.

Exited, Closed and a failure are scalar state, never evicted, and every subscription
receives them (in seq order) whatever streams it wants.

Rules
-----
* Seqs are assigned here and only here, strictly increasing from 1 (invariant 1).
* Nothing is sequenced after ``Closed``; ``Closed`` needs ``Exited`` first (invariant 2).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Final

import trio

from ._chunks import ALL_STREAMS, StreamChunks, check_streams
from ._events import Closed, Exited, Output, OutputStream, ReadResult, new_output
from ._subscription import EventSubscription

__all__ = ["ALL_STREAMS", "DEFAULT_RETAINED_BYTES", "EventSubscription", "ProcessLog"]

DEFAULT_RETAINED_BYTES: Final = 1024 * 1024
"""Default bound on the output bytes a process retains for reads and late subscribers (1 MiB).

The same as the reference server's per-process retention.
"""


class ProcessLog:
    """Retained output, terminal state and subscriptions of one process.

    Args:
        retain_bytes: bound on retained output bytes, and on how far behind a
            subscription may lag in the streams it wants before it holds them back (see
            the module docstring for what that bounds in total). A single chunk larger
            than the bound is still retained so that no chunk is ever split or lost.
    """

    def __init__(self, *, retain_bytes: int = DEFAULT_RETAINED_BYTES) -> None:
        if retain_bytes < 0:
            raise ValueError(f"retain_bytes must be >= 0, not {retain_bytes}")
        self.retain_bytes: Final = retain_bytes
        self._streams: dict[OutputStream, StreamChunks] = {}
        self._bytes = 0
        self._next_seq = 1
        self._evicted_through = 0
        self._exited: Exited | None = None
        self._closed: Closed | None = None
        self._failure: str | None = None
        self._changed = trio.lowlevel.ParkingLot()
        self._space = trio.lowlevel.ParkingLot()
        self._subscriptions: set[EventSubscription] = set()
        self._backpressure = True

    # -- state -----------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The seq the next event will get."""
        return self._next_seq

    @property
    def exited(self) -> Exited | None:
        """The Exited event, once sequenced."""
        return self._exited

    @property
    def closed(self) -> Closed | None:
        """The Closed event, once sequenced."""
        return self._closed

    @property
    def failure(self) -> str | None:
        """Why the session broke, or None."""
        return self._failure

    @property
    def finished(self) -> bool:
        """True once the stream is over: closed or failed."""
        return self._closed is not None or self._failure is not None

    @property
    def retained_bytes(self) -> int:
        """Output bytes currently retained."""
        return self._bytes

    @property
    def subscription_count(self) -> int:
        """Subscriptions that still pin the log."""
        return len(self._subscriptions)

    @property
    def first_retained_seq(self) -> int:
        """Every seq at or above this one is still retained (if it was output).

        One past the highest seq ever evicted: output below it may be partly retained
        (pinned by a subscription), but :meth:`read` no longer returns it.
        """
        return self._evicted_through + 1

    def first_whole_seq(self, streams: frozenset[OutputStream]) -> int:
        """Every seq at or above this one that was output to one of ``streams`` is retained."""
        if streams is ALL_STREAMS:  # the highest seq evicted of any stream
            return self._evicted_through + 1
        through = 0
        for stream in streams:
            chunks = self._streams.get(stream)
            if chunks is not None and chunks.evicted_through > through:
                through = chunks.evicted_through
        return through + 1

    def retained_bytes_of(self, stream: OutputStream) -> int:
        """Output bytes of ``stream`` currently retained."""
        chunks = self._streams.get(stream)
        return 0 if chunks is None else chunks.bytes_from(0)

    async def wait_changed(self) -> None:
        """Wait until the next event is sequenced or the log fails.

        **Cancellation:** nothing to undo.
        """
        await self._changed.park()

    # -- producers -------------------------------------------------------------------------

    async def append_output(self, stream: OutputStream, data: bytes) -> Output | None:
        """Sequence and retain a chunk of output, waiting while subscribers are behind.

        It waits while a subscription that wants ``stream`` lags so far behind in its
        streams that the chunk would take it past ``retain_bytes``; subscriptions that
        do not want ``stream`` never hold it back. Returns the sequenced event, or None
        when the log was already finished (the chunk is then dropped: nothing may follow
        Closed or a failure).

        **Cancellation:** if cancelled while waiting for space, the chunk is not sequenced.
        """
        if not data:
            raise ValueError("output chunks are never empty")
        while self._backpressure and not self.finished and not self._has_room(stream, len(data)):
            await self._space.park()
        if self.finished:
            return None
        return self._append(stream, data, respect_pins=self._backpressure)

    def append_output_if_room(self, stream: OutputStream, data: bytes) -> bool:
        """:meth:`append_output` if it would not wait (True), else nothing (False)."""
        if not data:
            raise ValueError("output chunks are never empty")
        if self._backpressure and not self._has_room(stream, len(data)) and not self.finished:
            return False
        self._append(stream, data, respect_pins=self._backpressure)
        return True

    def append_output_nowait(self, stream: OutputStream, data: bytes) -> Output | None:
        """Sequence and retain a chunk at once, evicting even pinned history if needed.

        Used by producers that cannot wait (a remote peer already sent the bytes).
        """
        return self._append(stream, data, respect_pins=False)

    def _append(self, stream: OutputStream, data: bytes, *, respect_pins: bool) -> Output | None:
        if self._closed is not None or self._failure is not None:
            return None
        seq = self._next_seq
        self._next_seq = seq + 1
        event = new_output(seq, stream, data)
        self._evict(len(data), respect_pins=respect_pins)
        chunks = self._streams.get(stream)
        if chunks is None:
            chunks = self._streams[stream] = StreamChunks()
        chunks.append(event)
        self._bytes += len(data)
        if self._changed:
            self._changed.unpark_all()
        return event

    def release_backpressure(self) -> None:
        """Stop holding producers back: from now on output evicts even pinned history.

        Called when a session ends, since nobody is left to consume its subscriptions.
        """
        self._backpressure = False
        self._space.unpark_all()

    def set_exited(self, exit_code: int, signal: int | None = None) -> Exited:
        """Sequence the Exited event (once)."""
        if self._exited is not None:
            raise RuntimeError("Exited was already sequenced")
        if self.finished:
            raise RuntimeError("the log is finished")
        self._exited = Exited(seq=self._take_seq(), exit_code=exit_code, signal=signal)
        if self._changed:  # falsy with nobody parked: waking nobody costs nothing
            self._changed.unpark_all()
        return self._exited

    def set_closed(self) -> Closed:
        """Sequence the Closed event (once, after Exited); nothing may follow it."""
        if self._exited is None:
            raise RuntimeError("Closed needs Exited first")
        if self.finished:
            raise RuntimeError("the log is finished")
        self._closed = Closed(seq=self._take_seq())
        for lot in (self._changed, self._space):
            if lot:
                lot.unpark_all()
        return self._closed

    def fail(self, message: str) -> None:
        """End the stream with a failure, unless it already ended."""
        if self.finished:
            return
        self._failure = message
        self._changed.unpark_all()
        self._space.unpark_all()

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _lag(self, subscription: EventSubscription) -> int:
        """Retained output of the subscription's streams that it has not received."""
        wanted = subscription.streams
        cursor = subscription._effective_cursor()
        lag = 0
        for stream, chunks in self._streams.items():
            if stream in wanted:
                lag += chunks.bytes_from(cursor)
        return lag

    def _has_room(self, stream: OutputStream, incoming: int) -> bool:
        """Whether every subscription that wants ``stream`` can take ``incoming`` more bytes.

        A subscription with nothing pending always can: a chunk larger than the bound
        is let in alone.
        """
        if self._bytes + incoming <= self.retain_bytes:  # no lag is above what is retained
            return True
        for subscription in self._subscriptions:
            if stream in subscription.streams:
                lag = self._lag(subscription)
                if lag and lag + incoming > self.retain_bytes:
                    return False
        return True

    def _pins(self) -> dict[OutputStream, int]:
        """Per stream, the lowest seq some subscription that wants it still needs."""
        pins = dict.fromkeys(self._streams, self._next_seq)
        for subscription in self._subscriptions:
            cursor = subscription._effective_cursor()
            for stream in subscription.streams:
                if stream in pins and cursor < pins[stream]:
                    pins[stream] = cursor
        return pins

    def _evict(self, incoming: int, *, respect_pins: bool) -> None:
        """Evict the oldest chunks (unpinned ones only, if ``respect_pins``) until
        ``incoming`` more bytes fit in ``retain_bytes`` or nothing evictable is left."""
        if self._bytes + incoming <= self.retain_bytes:
            return
        pins = self._pins() if respect_pins else None
        while self._bytes + incoming > self.retain_bytes:
            oldest: StreamChunks | None = None
            oldest_seq = self._next_seq
            for stream, chunks in self._streams.items():
                head = chunks.head
                if (
                    head is not None
                    and head.seq < oldest_seq
                    and (pins is None or head.seq < pins[stream])
                ):
                    oldest, oldest_seq = chunks, head.seq
            if oldest is None:
                return
            evicted = oldest.pop_head()
            self._bytes -= len(evicted.data)
            if evicted.seq > self._evicted_through:
                self._evicted_through = evicted.seq

    # -- consumers -------------------------------------------------------------------------

    def event_at(
        self, seq: int, streams: frozenset[OutputStream] = ALL_STREAMS
    ) -> Output | Exited | Closed | None:
        """The next event for a cursor at ``seq`` that wants ``streams`` (None: none yet).

        That is the first retained chunk of ``streams`` with a seq at or above both
        ``seq`` and :meth:`first_whole_seq` (so that what follows has no hole), or
        Exited or Closed if it comes first (they are never skipped).
        """
        low = max(seq, self.first_whole_seq(streams))
        best: Output | Exited | Closed | None = None
        for stream, chunks in self._streams.items():
            if stream not in streams:
                continue
            index = bisect.bisect_left(chunks.seqs, low, chunks.start)
            if index < len(chunks.chunks):
                chunk = chunks.at(index)
                if best is None or chunk.seq < best.seq:
                    best = chunk
        for terminal in (self._exited, self._closed):
            if (
                terminal is not None
                and terminal.seq >= seq
                and (best is None or terminal.seq < best.seq)
            ):
                best = terminal
        return best

    def _merged(self, low: int) -> Iterator[Output]:
        """The retained chunks with a seq >= ``low``, of every stream, in seq order."""
        heads: list[tuple[StreamChunks, int]] = []
        for chunks in self._streams.values():
            index = chunks.index_at(low)
            if index < len(chunks.chunks):
                heads.append((chunks, index))
        while heads:
            best = min(range(len(heads)), key=lambda i: heads[i][0].seqs[heads[i][1]])
            chunks, index = heads[best]
            yield chunks.at(index)
            if index + 1 < len(chunks.chunks):
                heads[best] = (chunks, index + 1)
            else:
                del heads[best]

    def read(self, after_seq: int = 0, max_bytes: int | None = None) -> ReadResult:
        """Return retained output with ``seq > after_seq`` (the reference's read rules).

        Only chunks at or above :attr:`first_retained_seq` qualify, oldest first, across
        streams. The first qualifying chunk is always included, even beyond
        ``max_bytes``; further chunks only while the total stays within it. When
        ``max_bytes`` is given and a chunk was returned, ``next_seq`` is the last chunk's
        seq + 1; otherwise it is the process's next seq (past Exited and Closed).
        """
        if after_seq < 0:
            raise ValueError(f"after_seq must be >= 0, not {after_seq}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        chunks: list[Output] = []
        total = 0
        for chunk in self._merged(max(after_seq + 1, self.first_retained_seq)):
            if max_bytes is not None and chunks and total + len(chunk.data) > max_bytes:
                break
            chunks.append(chunk)
            total += len(chunk.data)
            if max_bytes is not None and total >= max_bytes:
                break
        next_seq = chunks[-1].seq + 1 if max_bytes is not None and chunks else self._next_seq
        exited = self._exited
        return ReadResult(
            chunks=tuple(chunks),
            next_seq=next_seq,
            exited=exited is not None,
            exit_code=None if exited is None else exited.exit_code,
            closed=self.finished,
            failure=self._failure,
            first_retained_seq=self.first_retained_seq,
        )

    async def read_wait(
        self, after_seq: int = 0, max_bytes: int | None = None, wait: float = 0.0
    ) -> ReadResult:
        """Like :meth:`read`, but long-poll up to ``wait`` seconds for something new.

        Returns early on new output, on close, on failure, and on the exit while the
        caller has not passed it yet (``after_seq`` below the seq of Exited). A caller that
        goes on with ``after_seq=result.next_seq - 1`` has passed it, so its next read
        waits for output after the exit (a grandchild's) or for the close.

        Always a checkpoint, even when it returns at once, so that a loop of reads lets
        the tasks that feed the log run.

        **Cancellation:** nothing to undo; the read is a snapshot.
        """
        if wait < 0:
            raise ValueError(f"wait must be >= 0, not {wait}")
        deadline = trio.current_time() + wait
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            result = self.read(after_seq, max_bytes)
            exited = self._exited
            if (
                result.chunks
                or result.closed
                or (exited is not None and after_seq < exited.seq)
                or trio.current_time() >= deadline
            ):
                if not parked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return result
            with trio.move_on_at(deadline):
                parked = True
                await self._changed.park()

    def subscribe(
        self, *, from_seq: int | None = None, streams: Iterable[OutputStream] | None = None
    ) -> EventSubscription:
        """Return a new subscription: a replay of what is retained, then live events.

        Args:
            from_seq: the first seq wanted; by default the oldest retained event of
                ``streams`` from which none of their output is missing.
            streams: the output streams wanted (every stream by default). The
                subscription receives only their chunks, and holds back (pins) only
                them; it receives Exited and Closed (or Failed) in any case.

        Raises:
            TypeError: ``streams`` is not a collection of :class:`OutputStream`.
        """
        wanted = check_streams(streams)
        start = self.first_whole_seq(wanted) if from_seq is None else max(from_seq, 1)
        subscription = EventSubscription(self, start, wanted)
        if not subscription.done:
            self._subscriptions.add(subscription)
        return subscription

    def _advanced(self, subscription: EventSubscription) -> None:
        if self._space and self._lag(subscription) <= self.retain_bytes // 2:
            self._space.unpark_all()

    def _wake_receivers(self) -> None:
        self._changed.unpark_all()

    def _unsubscribe(self, subscription: EventSubscription) -> None:
        self._subscriptions.discard(subscription)
        self._space.unpark_all()
