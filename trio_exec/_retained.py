"""The sequenced event log of one process.

Theory of operation
-------------------
A :class:`ProcessLog` is the single source of truth for a process's events. Producers
(the local pumps and reaper, or the remote client's demultiplexer) append to it in seq
order; consumers read it two ways:

* **Subscriptions** (:meth:`ProcessLog.subscribe`) are cursors over the log exposed as a
  :class:`trio.abc.ReceiveChannel`. A subscription *pins* the log: output it has not
  received yet is never evicted. When the log is full and its oldest chunk is pinned,
  :meth:`ProcessLog.append_output` waits, which stops the pump from reading the child's
  pipe, which blocks the child's writes. That is the backpressure of invariant 5:
  memory stays at ``retain_bytes`` plus one chunk per stream however slow the consumer.
* **Reads** (:meth:`ProcessLog.read`) are snapshots with a cursor chosen by the caller.
  They pin nothing: when no subscription holds it back, the log evicts its oldest chunks
  and a reader that fell behind sees ``first_retained_seq`` move past its cursor.

Exited, Closed and a failure are scalar state, never evicted.

Rules
-----
* Seqs are assigned here and only here, strictly increasing from 1 (invariant 1).
* Nothing is sequenced after ``Closed``; ``Closed`` needs ``Exited`` first (invariant 2).
"""

from __future__ import annotations

import bisect
from typing import Final

import trio

from ._events import Closed, Event, Exited, Failed, Output, OutputStream, ReadResult

__all__ = ["DEFAULT_RETAINED_BYTES", "EventSubscription", "ProcessLog"]

DEFAULT_RETAINED_BYTES: Final = 1024 * 1024
"""Default bound on the output bytes a process retains for reads and late subscribers (1 MiB).

The same as the reference server's per-process retention.
"""


class ProcessLog:
    """Retained output, terminal state and subscriptions of one process.

    Args:
        retain_bytes: bound on retained output bytes. A single chunk larger than the
            bound is still retained (alone) so that no chunk is ever split or lost.
    """

    def __init__(self, *, retain_bytes: int = DEFAULT_RETAINED_BYTES) -> None:
        if retain_bytes < 0:
            raise ValueError(f"retain_bytes must be >= 0, not {retain_bytes}")
        self.retain_bytes: Final = retain_bytes
        self._chunks: list[Output] = []
        self._seqs: list[int] = []
        self._start = 0  # index of the oldest retained chunk in _chunks / _seqs
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
        """Every seq at or above this one is still retained (if it was output)."""
        return self._evicted_through + 1

    async def wait_changed(self) -> None:
        """Wait until the next event is sequenced or the log fails.

        **Cancellation:** nothing to undo.
        """
        await self._changed.park()

    # -- producers -------------------------------------------------------------------------

    async def append_output(self, stream: OutputStream, data: bytes) -> Output | None:
        """Sequence and retain a chunk of output, waiting while subscribers are behind.

        Returns the sequenced event, or None when the log was already finished (the
        chunk is then dropped: nothing may follow Closed or a failure).

        **Cancellation:** if cancelled while waiting for space, the chunk is not sequenced.
        """
        if not data:
            raise ValueError("output chunks are never empty")
        while self._backpressure and not self.finished and not self._make_room(len(data)):
            await self._space.park()
        if self.finished:
            return None
        return self.append_output_nowait(stream, data)

    def append_output_nowait(self, stream: OutputStream, data: bytes) -> Output | None:
        """Sequence and retain a chunk at once, evicting even pinned history if needed.

        Used by producers that cannot wait (a remote peer already sent the bytes).
        """
        if self.finished:
            return None
        event = Output(seq=self._take_seq(), stream=stream, data=data)
        self._evict(len(data), respect_pins=False)
        self._chunks.append(event)
        self._seqs.append(event.seq)
        self._bytes += len(data)
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
        self._changed.unpark_all()
        return self._exited

    def set_closed(self) -> Closed:
        """Sequence the Closed event (once, after Exited); nothing may follow it."""
        if self._exited is None:
            raise RuntimeError("Closed needs Exited first")
        if self.finished:
            raise RuntimeError("the log is finished")
        self._closed = Closed(seq=self._take_seq())
        self._changed.unpark_all()
        self._space.unpark_all()
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

    def _pin(self) -> int:
        """The lowest seq some subscription still needs."""
        return min((s.cursor for s in self._subscriptions), default=self._next_seq)

    def _make_room(self, incoming: int) -> bool:
        self._evict(incoming, respect_pins=True)
        return self._start == len(self._chunks) or self._bytes + incoming <= self.retain_bytes

    def _evict(self, incoming: int, *, respect_pins: bool) -> None:
        pin = self._pin() if respect_pins else self._next_seq
        chunks = self._chunks
        while self._start < len(chunks) and self._bytes + incoming > self.retain_bytes:
            oldest = chunks[self._start]
            if oldest.seq >= pin:
                break
            self._bytes -= len(oldest.data)
            self._evicted_through = oldest.seq
            self._start += 1
        if self._start > 64 and self._start * 2 > len(chunks):
            del chunks[: self._start]
            del self._seqs[: self._start]
            self._start = 0

    # -- consumers -------------------------------------------------------------------------

    def event_at(self, seq: int) -> Output | Exited | Closed | None:
        """The first retained event with a seq >= ``seq``, or None if there is none yet."""
        index = bisect.bisect_left(self._seqs, seq, lo=self._start)
        best: Output | Exited | Closed | None = (
            self._chunks[index] if index < len(self._chunks) else None
        )
        for terminal in (self._exited, self._closed):
            if (
                terminal is not None
                and terminal.seq >= seq
                and (best is None or terminal.seq < best.seq)
            ):
                best = terminal
        return best

    def read(self, after_seq: int = 0, max_bytes: int | None = None) -> ReadResult:
        """Return retained output with ``seq > after_seq`` (the reference's read rules).

        The first qualifying chunk is always included, even beyond ``max_bytes``; further
        chunks only while the total stays within it. When ``max_bytes`` is given and a
        chunk was returned, ``next_seq`` is the last chunk's seq + 1; otherwise it is the
        process's next seq (past Exited and Closed).
        """
        if after_seq < 0:
            raise ValueError(f"after_seq must be >= 0, not {after_seq}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        index = bisect.bisect_right(self._seqs, after_seq, lo=self._start)
        chunks: list[Output] = []
        total = 0
        for chunk in self._chunks[index:]:
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

    def subscribe(self, *, from_seq: int | None = None) -> EventSubscription:
        """Return a new subscription: a replay of what is retained, then live events.

        Args:
            from_seq: the first seq wanted; by default the oldest retained event.
        """
        start = self.first_retained_seq if from_seq is None else max(from_seq, 1)
        subscription = EventSubscription(self, start)
        if not subscription.done:
            self._subscriptions.add(subscription)
        return subscription

    def _advanced(self, subscription: EventSubscription) -> None:
        self._space.unpark_all()

    def _wake_receivers(self) -> None:
        self._changed.unpark_all()

    def _unsubscribe(self, subscription: EventSubscription) -> None:
        self._subscriptions.discard(subscription)
        self._space.unpark_all()


class EventSubscription(trio.abc.ReceiveChannel[Event]):
    """A cursor over a :class:`ProcessLog`, as a trio receive channel.

    ``receive`` returns the events in seq order: ``Output*``, ``Exited``, more output of
    grandchildren maybe, then ``Closed`` (or ``Failed``), after which it raises
    :class:`trio.EndOfChannel`. Until it is closed or has passed ``Closed``, the
    subscription holds back eviction of what it has not received, so a slow consumer
    slows the child instead of losing output.
    """

    def __init__(self, log: ProcessLog, cursor: int) -> None:
        self._log = log
        self.cursor = cursor
        """The seq of the next event this subscription will return."""
        self._receiving = False
        self._aclosed = False
        self.done = False
        """True once Closed or Failed was returned."""

    async def receive(self) -> Event:
        """Return the next event, waiting for it if needed.

        Raises:
            trio.EndOfChannel: after Closed or Failed was returned.
            trio.ClosedResourceError: if this subscription was closed.
            trio.BusyResourceError: if another task is receiving on it.

        **Cancellation:** no event is consumed by a cancelled receive.
        """
        if self._aclosed:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the subscription was closed")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this subscription")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                if self._aclosed:
                    raise trio.ClosedResourceError("the subscription was closed")
                if self.done:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    raise trio.EndOfChannel
                event = self._log.event_at(self.cursor)
                if event is not None:
                    # A late subscriber whose cursor fell into evicted history just
                    # resumes at the oldest retained event.
                    self.cursor = event.seq + 1
                    if isinstance(event, Closed):
                        self._finish()
                    else:
                        self._log._advanced(self)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return event
                failure = self._log.failure
                if failure is not None:
                    self._finish()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return Failed(message=failure)
                await self._log.wait_changed()
        finally:
            self._receiving = False

    def receive_nowait(self) -> Event:
        """Return the next event if there is one, else raise :class:`trio.WouldBlock`."""
        if self._aclosed:
            raise trio.ClosedResourceError("the subscription was closed")
        if self.done:
            raise trio.EndOfChannel
        event = self._log.event_at(self.cursor)
        if event is not None:
            self.cursor = event.seq + 1
            if isinstance(event, Closed):
                self._finish()
            else:
                self._log._advanced(self)
            return event
        if self._log.failure is not None:
            self._finish()
            return Failed(message=self._log.failure)
        raise trio.WouldBlock

    def _finish(self) -> None:
        self.done = True
        self._log._unsubscribe(self)

    def close(self) -> None:
        """Stop receiving and release the hold on the log, synchronously.

        A task blocked in :meth:`receive` on this subscription wakes up with
        :class:`trio.ClosedResourceError`.
        """
        self._aclosed = True
        self._log._unsubscribe(self)
        self._log._wake_receivers()

    async def aclose(self) -> None:
        """Stop receiving and release the hold on the log.

        **Cancellation:** the subscription is closed even if this is cancelled.
        """
        self.close()
        await trio.lowlevel.checkpoint()
