"""Routing of one process's events: their ``seq`` order and the splice of a catch-up read
(both sans-IO, :class:`~trio_exec._protocol.EventOrder`) fed into the process's
:class:`~trio_exec._log.ProcessLog` with backpressure, and the connection's read-ahead
budget (see the package docstring)."""

from __future__ import annotations

from collections import deque
from typing import Final

import trio

from .._events import ReadResult
from .._log import ProcessLog
from .._protocol import (
    ClosedNotification,
    EventOrder,
    ExitedNotification,
    HistoryLost,
    Ordered,
    OutputNotification,
    ProcessNotification,
    ProtocolViolation,
)

__all__ = ["READ_AHEAD_BYTES", "_Budget", "_Route"]

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

    * :meth:`push` and :meth:`splice` (the reader and the catch-up, synchronous) order,
      through the route's :class:`~trio_exec._protocol.EventOrder` (:attr:`order`):
      released events go to the ready queue, and a protocol violation fails the route.
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
        self.order = EventOrder(process_id)
        """The seq order of the events (and where a catch-up stands)."""
        self._budget = budget
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
        self.lost: str | None = None
        """Why the process could not be recovered after a resume; its calls raise this."""

    @property
    def receiving(self) -> bool:
        """False once Closed was ordered or the route failed: nothing more is taken."""
        return self.order.receiving

    def stopped(self) -> bool:
        """Whether the route takes no more events (Closed was ordered, or it failed)."""
        return not self.order.receiving

    # -- ordering (the reader and the catch-up) --------------------------------------------

    def push(self, event: ProcessNotification) -> None:
        """Take one live notification; queue it and every held one it unblocks."""
        self._queue(self.order.push(event))

    def splice(self, result: ReadResult, after_seq: int) -> str | None:
        """Order what a catch-up ``process/read`` after ``after_seq`` returned (see
        :meth:`EventOrder.splice <trio_exec._protocol.EventOrder.splice>`).

        Returns why history is missing, or None.
        """
        ordered = self.order.splice(result, after_seq)
        self._queue(ordered)
        return ordered.failure.message if isinstance(ordered.failure, HistoryLost) else None

    def end_catch_up(self) -> None:
        """The catch-up is over: the reorder bounds apply again."""
        self._queue(self.order.end_catch_up())

    def _queue(self, ordered: Ordered) -> None:
        for event in ordered.events:
            if isinstance(event, OutputNotification):
                self._budget.take(len(event.chunk))
            self._ready.append(event)
        self._wake.unpark_all()
        if isinstance(ordered.failure, ProtocolViolation):
            self.fail(ordered.failure.message)

    def _stop_receiving(self) -> None:
        self.order.stop()
        self._wake.unpark_all()

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
