"""Ordering and routing of one process's events: the ``seq`` order (reorder buffer,
duplicates dropped), the splice of a catch-up read after a resume, publishing into the
process's :class:`~trio_exec._log.ProcessLog` with backpressure, and the connection's
read-ahead budget (see the package docstring)."""

from __future__ import annotations

from collections import deque
from typing import Final

import trio

from .._events import ReadResult
from .._log import ProcessLog
from .._protocol import (
    ClosedNotification,
    ExitedNotification,
    OutputNotification,
    ProcessNotification,
)

__all__ = ["MAX_REORDER_BYTES", "MAX_REORDER_EVENTS", "READ_AHEAD_BYTES", "_Budget", "_Route"]

MAX_REORDER_EVENTS: Final = 4096
"""Most events of one process held back while an earlier seq has not arrived."""

MAX_REORDER_BYTES: Final = 8 * 1024 * 1024
"""Most output bytes of one process held back while an earlier seq has not arrived.

A conforming server sends every seq, so the buffer only ever holds what one scheduling
race reordered; exceeding either bound fails the process instead of growing memory."""

READ_AHEAD_BYTES: Final = 4 * 1024 * 1024
"""Most output bytes of a connection received but not yet in their process's log.

Output goes into a log as fast as its subscriptions take it (a subscription that is
``retain_bytes`` behind holds the log back, as with a local process). Beyond this bound
the client stops reading the connection, which holds back the server and, through it, the
children: a slow consumer slows the child instead of growing memory or losing output.
Since one connection carries every process and every response, a subscription that stays
far behind also delays the other processes and the calls of that connection: consume
events in their own task, or close a subscription you stopped reading."""


class _Budget:
    """Output bytes of a connection not yet in a log; see :data:`READ_AHEAD_BYTES`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lot = trio.lowlevel.ParkingLot()

    def take(self, size: int) -> None:
        self.used += size

    def give(self, size: int) -> None:
        self.used -= size
        if self.used <= self.limit:
            self._lot.unpark_all()

    async def wait_below_limit(self) -> None:
        """Wait until no more than ``limit`` bytes are held.

        **Cancellation:** nothing to undo.
        """
        while self.used > self.limit:
            await self._lot.park()


class _Route:
    """Takes one process's notifications and publishes them into its log in ``seq`` order.

    Two stages:

    * :meth:`push` (the reader, synchronous) orders: it mirrors the reference client's
      ``OrderedSessionEvents``. Events are buffered by seq; a duplicate or a seq at or
      below the last ordered one is dropped; nothing is taken once ``closed`` was ordered
      or the route failed. Ordered events go to the ready queue.
    * :meth:`publish` (a task per process) moves the ready queue into the log, waiting
      while a subscription that wants the next chunk's stream is behind (backpressure).
      Queued output counts toward the connection's :class:`_Budget`, which stops the
      reader when full.

    When the block is left (:meth:`release`) the publisher stops waiting. On a failure
    (:meth:`fail`) it publishes what is queued, then fails the log unless it closed.
    """

    def __init__(self, process_id: str, log: ProcessLog, budget: _Budget) -> None:
        self.process_id = process_id
        self.log = log
        self._budget = budget
        self.last_seq = 0
        """The seq of the last event ordered (queued or published)."""
        self.receiving = True
        """False once Closed was ordered or the route failed: nothing more is taken."""
        self._exited = False
        self._pending: dict[int, ProcessNotification] = {}
        self._pending_bytes = 0
        self._ready: deque[ProcessNotification] = deque()
        self._wake = trio.lowlevel.ParkingLot()
        self._released = False
        self._append_scope: trio.CancelScope | None = None
        self.failure: str | None = None
        """Why the route ended early; the log fails with it once the queue is published."""
        self.publishing = True
        """Until the publisher task returns (it is started with the route)."""
        self.started = False
        """True once the server answered ``process/start``: a resume catches it up."""
        self.catching_up = False
        """Between a resume attempt and the end of this process's catch-up reads."""
        self.first_live_seq: int | None = None
        """While catching up: the seq of the first notification of the new connection."""
        self.lost: str | None = None
        """Why the process could not be recovered after a resume; its calls raise this."""

    # -- ordering (the reader) -------------------------------------------------------------

    def push(self, event: ProcessNotification, *, live: bool = True) -> None:
        """Take one notification; queue it and every buffered one it unblocks.

        ``live``: it came as a notification (not from a catch-up read).
        """
        seq = event.seq
        if live and self.catching_up and self.first_live_seq is None:
            self.first_live_seq = seq
        if not self.receiving or seq <= self.last_seq or seq in self._pending:
            return
        self._pending[seq] = event
        if isinstance(event, OutputNotification):
            self._pending_bytes += len(event.chunk)
        while self.receiving:
            ready = self._pending.pop(self.last_seq + 1, None)
            if ready is None:
                break
            if isinstance(ready, OutputNotification):
                self._pending_bytes -= len(ready.chunk)
            self._order(ready)
        self._check_reorder_bounds()

    def _check_reorder_bounds(self) -> None:
        # While catching up, live events wait for the reads by design; what the server
        # retains bounds them (our server holds the child back meanwhile).
        if (
            self.receiving
            and not self.catching_up
            and (len(self._pending) > MAX_REORDER_EVENTS or self._pending_bytes > MAX_REORDER_BYTES)
        ):
            self.fail(
                f"protocol error: event seq {self.last_seq + 1} of process "
                f"{self.process_id!r} never arrived while {len(self._pending)} later events "
                f"({self._pending_bytes} bytes) were held back"
            )

    def _order(self, event: ProcessNotification) -> None:
        match event:
            case OutputNotification(chunk=chunk):
                if not chunk:
                    self.fail(f"protocol error: empty output chunk at seq {event.seq}")
                    return
                self._budget.take(len(chunk))
            case ExitedNotification():
                if self._exited:
                    self.fail(f"protocol error: a second exited event at seq {event.seq}")
                    return
                self._exited = True
            case ClosedNotification():
                if not self._exited:
                    self.fail(f"protocol error: closed before exited at seq {event.seq}")
                    return
                self._stop_receiving()
        self.last_seq = event.seq
        self._ready.append(event)
        self._wake.unpark_all()

    def _stop_receiving(self) -> None:
        self.receiving = False
        self._pending.clear()
        self._pending_bytes = 0
        self._wake.unpark_all()

    # -- catching up after a resume --------------------------------------------------------

    def begin_catch_up(self) -> None:
        """A new connection is being set up: note where its live events start."""
        self.catching_up = True
        self.first_live_seq = None

    def stopped(self) -> bool:
        """Whether the route takes no more events (Closed was ordered, or it failed)."""
        return not self.receiving

    def end_catch_up(self) -> None:
        self.catching_up = False
        self.first_live_seq = None
        self._check_reorder_bounds()

    @property
    def caught_up(self) -> bool:
        """Whether every event before the first live one is ordered."""
        return self.first_live_seq is not None and self.last_seq >= self.first_live_seq - 1

    def _exit_known(self) -> bool:
        return self._exited or any(
            isinstance(event, ExitedNotification) for event in self._pending.values()
        )

    def splice(self, result: ReadResult, after_seq: int) -> str | None:
        """Order what a catch-up ``process/read`` (with ``maxBytes``) after ``after_seq``
        returned.

        The read covers every seq from ``after_seq + 1`` up to its ``next_seq``: the last
        chunk's seq + 1 when chunks came, else the process's next seq (past exited and
        closed). A seq in that range that is neither a chunk nor a buffered live event
        must be the exit (once, when the result says it exited) or, when no chunk came,
        the close (the last seq); anything else was evicted. Returns why history is
        missing, or None.
        """
        if result.failure is not None:
            return f"the server reports the process failed: {result.failure}"
        for chunk in result.chunks:
            if chunk.seq > after_seq:
                self.push(
                    OutputNotification(
                        process_id=self.process_id,
                        seq=chunk.seq,
                        stream=chunk.stream,
                        chunk=chunk.data,
                    ),
                    live=False,
                )
        end = result.next_seq  # the first seq the read does not cover
        whole = not result.chunks
        seq = self.last_seq + 1
        while self.receiving:
            seq = max(seq, self.last_seq + 1)  # pushing may order buffered events
            while seq in self._pending:
                seq += 1
            if seq >= end:
                break
            event: ProcessNotification
            if whole and result.closed and seq == end - 1 and self._exit_known():
                event = ClosedNotification(process_id=self.process_id, seq=seq)
            elif result.exited and result.exit_code is not None and not self._exit_known():
                event = ExitedNotification(
                    process_id=self.process_id, seq=seq, exit_code=result.exit_code
                )
            else:
                first = result.first_retained_seq
                retained = "" if first is None else f" (it retains seq {first} on)"
                return (
                    f"its events from seq {seq} on are no longer retained by the server"
                    f"{retained}: they were evicted while the connection was down"
                )
            self.push(event, live=False)
            seq += 1
        return None

    # -- publishing (a task) ---------------------------------------------------------------

    async def publish(self) -> None:
        """Move ordered events into the log until Closed or failure; the route's task."""
        try:
            while True:
                while self._ready:
                    event = self._ready[0]
                    if isinstance(event, OutputNotification) and not self._released:
                        appended = False
                        with trio.CancelScope() as self._append_scope:
                            # Waits while a subscription is behind: the backpressure.
                            await self.log.append_output(event.stream, event.chunk)
                            appended = True
                        self._append_scope = None
                        if not self._ready or self._ready[0] is not event:
                            continue  # finish_now() or stop() took it meanwhile
                        if appended:
                            self._ready.popleft()
                            self._budget.give(len(event.chunk))
                            continue
                    self._publish_now(self._ready.popleft())
                if not self.receiving:
                    if self.failure is not None:
                        self.log.fail(self.failure)
                    return
                await self._wake.park()
        finally:
            self.publishing = False

    def _publish_now(self, event: ProcessNotification) -> None:
        log = self.log
        match event:
            case OutputNotification(stream=stream, chunk=chunk):
                self._budget.give(len(chunk))
                log.append_output_nowait(stream, chunk)  # None once the log is finished
            case ExitedNotification():
                if not log.finished:
                    exited = event.to_event()
                    log.set_exited(exited.exit_code, exited.signal)
            case ClosedNotification():
                if not log.finished:
                    log.set_closed()

    def release(self) -> None:
        """Stop holding the publisher back (the block was left): publish without waiting."""
        self._released = True
        self.log.release_backpressure()
        if self._append_scope is not None:
            self._append_scope.cancel()

    def stop(self) -> None:
        """Stop taking events and drop what is queued; the publisher ends.

        For a start that failed, and after the block was left and the log finished.
        """
        self.release()
        self._stop_receiving()
        self._drop_ready()

    def fail(self, message: str) -> None:
        """End the route after what is already ordered.

        The publisher puts the queued events in the log (in order, still holding back
        for slow subscriptions), then fails the log with ``message`` unless it closed: a
        subscription sees everything that arrived, then ``Failed``.
        """
        if self.failure is None:
            self.failure = message
        self._stop_receiving()
        if not self.publishing:
            self.finish_now(message)

    def finish_now(self, message: str) -> None:
        """Put what is queued in the log at once, then fail it unless it closed."""
        self.release()
        self._stop_receiving()
        while self._ready:
            self._publish_now(self._ready.popleft())
        self.log.fail(self.failure or message)

    def _drop_ready(self) -> None:
        while self._ready:
            event = self._ready.popleft()
            if isinstance(event, OutputNotification):
                self._budget.give(len(event.chunk))
