"""The order of one process's events: ``seq`` reordering with duplicates dropped, and the
splice of a catch-up ``process/read`` after a resume.

:class:`EventOrder` takes the ``process/output``, ``process/exited`` and
``process/closed`` notifications of one process, live or rebuilt from a read, and hands
back the ones it can release, strictly in ``seq`` order (as the reference client's
``OrderedSessionEvents``). A broken rule is reported as a value (:class:`Ordered` carries
it), never raised: the caller decides what a failed process means.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import attrs

from .._events import ReadResult
from .messages import (
    ClosedNotification,
    ExitedNotification,
    OutputNotification,
    ProcessNotification,
)

__all__ = [
    "MAX_REORDER_BYTES",
    "MAX_REORDER_EVENTS",
    "EventOrder",
    "HistoryLost",
    "OrderFailure",
    "Ordered",
    "ProtocolViolation",
]

MAX_REORDER_EVENTS: Final = 4096
"""Most events of one process held back while an earlier seq has not arrived."""

MAX_REORDER_BYTES: Final = 8 * 1024 * 1024
"""Most output bytes of one process held back while an earlier seq has not arrived.

A conforming server sends every seq, so the buffer only ever holds what one scheduling
race reordered; exceeding either bound fails the process instead of growing memory."""


@attrs.frozen(kw_only=True)
class ProtocolViolation:
    """The server broke the event rules of the process (an empty chunk, a second exit,
    a close before the exit, a seq that never arrives while the bounds are exceeded)."""

    message: str
    """``protocol error: ...``, for the process's ``Failed`` event."""


@attrs.frozen(kw_only=True)
class HistoryLost:
    """A catch-up read shows that events the client never got are gone from the server
    (evicted while the connection was down), or the server reports the process failed."""

    message: str
    """Why the process cannot be recovered."""


OrderFailure: TypeAlias = ProtocolViolation | HistoryLost
"""Why an :class:`EventOrder` stopped taking events."""


@attrs.frozen(kw_only=True)
class Ordered:
    """What one input to an :class:`EventOrder` released."""

    events: tuple[ProcessNotification, ...] = ()
    """The notifications now in order, oldest first; each follows the last one released."""
    failure: OrderFailure | None = None
    """Set when this input broke a rule: the order takes nothing more. The events before
    the broken rule are still in :attr:`events`."""


class EventOrder:
    """The ``seq`` order of one process's notifications; sans-IO.

    Rules:

    * Events are held back by seq until every earlier seq was released; a duplicate, or
      a seq at or below the last one released, is dropped.
    * An empty output chunk, a second exit and a close before the exit are protocol
      violations. So is a seq that never arrives while more than ``max_events`` events or
      ``max_bytes`` output bytes wait behind it (not checked while catching up: live
      events then wait for the reads by design).
    * Nothing is taken once ``closed`` was released, a rule was broken, or :meth:`stop`
      was called (:attr:`receiving` is False).

    After a resume (:meth:`begin_catch_up` ... :meth:`end_catch_up`), the live events of
    the new connection wait here while :meth:`splice` orders what each catch-up read
    returned: the two meet without a gap or a duplicate.
    """

    def __init__(
        self,
        process_id: str,
        *,
        max_events: int = MAX_REORDER_EVENTS,
        max_bytes: int = MAX_REORDER_BYTES,
    ) -> None:
        self.process_id: Final = process_id
        """The process whose events these are (the splice builds notifications for it)."""
        self.max_events: Final = max_events
        """Most events held back behind a missing seq (:data:`MAX_REORDER_EVENTS`)."""
        self.max_bytes: Final = max_bytes
        """Most output bytes held back behind a missing seq (:data:`MAX_REORDER_BYTES`)."""
        self.last_seq = 0
        """The seq of the last event released."""
        self.receiving = True
        """False once Closed was released, a rule was broken, or :meth:`stop` was called."""
        self.failure: OrderFailure | None = None
        """The rule that was broken, once one was."""
        self.catching_up = False
        """Between :meth:`begin_catch_up` and :meth:`end_catch_up`."""
        self.first_live_seq: int | None = None
        """While catching up: the seq of the first live notification since it began."""
        self._exited = False
        self._pending: dict[int, ProcessNotification] = {}
        self._pending_bytes = 0
        self._out: list[ProcessNotification] = []

    # -- inputs ----------------------------------------------------------------------------

    def push(self, event: ProcessNotification, *, live: bool = True) -> Ordered:
        """Take one notification; release it and every held one it unblocks.

        ``live``: it came as a notification (not rebuilt from a catch-up read).
        """
        failed = self.failure
        self._push(event, live=live)
        return self._flush(failed)

    def splice(self, result: ReadResult, after_seq: int) -> Ordered:
        """Order what a catch-up ``process/read`` (with ``maxBytes``) after ``after_seq``
        returned.

        The read covers every seq from ``after_seq + 1`` up to its ``next_seq``: the last
        chunk's seq + 1 when chunks came, else the process's next seq (past exited and
        closed). A seq in that range that is neither a chunk nor a held live event must be
        the exit (once, when the result says it exited) or, when no chunk came, the close
        (the last seq); anything else was evicted: :class:`HistoryLost`.
        """
        failed = self.failure
        if result.failure is not None:
            self._fail(
                HistoryLost(message=f"the server reports the process failed: {result.failure}")
            )
            return self._flush(failed)
        for chunk in result.chunks:
            if chunk.seq > after_seq:
                output = OutputNotification(
                    process_id=self.process_id, seq=chunk.seq, stream=chunk.stream, chunk=chunk.data
                )
                self._push(output, live=False)
        end = result.next_seq  # the first seq the read does not cover
        whole = not result.chunks
        while self.receiving:
            # The first seq not released yet; never a held event (it would be released).
            seq = self.last_seq + 1
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
                self._fail(
                    HistoryLost(
                        message=f"its events from seq {seq} on are no longer retained by the server"
                        f"{retained}: they were evicted while the connection was down"
                    )
                )
                break
            self._push(event, live=False)  # released at once, or a violation
        return self._flush(failed)

    def stop(self) -> None:
        """Take nothing more, and drop what is held back (the process is over)."""
        self.receiving = False
        self._pending.clear()
        self._pending_bytes = 0

    # -- catching up after a resume --------------------------------------------------------

    def begin_catch_up(self) -> None:
        """A new connection is being set up: note where its live events start."""
        self.catching_up = True
        self.first_live_seq = None

    def end_catch_up(self) -> Ordered:
        """The catch-up reads are over: the reorder bounds apply again."""
        failed = self.failure
        self.catching_up = False
        self.first_live_seq = None
        self._check_bounds()
        return self._flush(failed)

    @property
    def caught_up(self) -> bool:
        """Whether every event before the first live one is released."""
        return self.first_live_seq is not None and self.last_seq >= self.first_live_seq - 1

    # -- internals -------------------------------------------------------------------------

    def _push(self, event: ProcessNotification, *, live: bool) -> None:
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
            self._release(ready)
        self._check_bounds()

    def _release(self, event: ProcessNotification) -> None:
        match event:
            case OutputNotification(chunk=chunk):
                if not chunk:
                    self._fail(
                        ProtocolViolation(
                            message=f"protocol error: empty output chunk at seq {event.seq}"
                        )
                    )
                    return
            case ExitedNotification():
                if self._exited:
                    self._fail(
                        ProtocolViolation(
                            message=f"protocol error: a second exited event at seq {event.seq}"
                        )
                    )
                    return
                self._exited = True
            case ClosedNotification():
                if not self._exited:
                    self._fail(
                        ProtocolViolation(
                            message=f"protocol error: closed before exited at seq {event.seq}"
                        )
                    )
                    return
                self.stop()
        self.last_seq = event.seq
        self._out.append(event)

    def _check_bounds(self) -> None:
        # While catching up, live events wait for the reads by design; what the server
        # retains bounds them (our server holds the child back meanwhile).
        if (
            self.receiving
            and not self.catching_up
            and (len(self._pending) > self.max_events or self._pending_bytes > self.max_bytes)
        ):
            self._fail(
                ProtocolViolation(
                    message=f"protocol error: event seq {self.last_seq + 1} of process "
                    f"{self.process_id!r} never arrived while {len(self._pending)} later "
                    f"events ({self._pending_bytes} bytes) were held back"
                )
            )

    def _exit_known(self) -> bool:
        return self._exited or any(
            isinstance(event, ExitedNotification) for event in self._pending.values()
        )

    def _fail(self, failure: OrderFailure) -> None:
        if self.failure is None:
            self.failure = failure
        self.stop()

    def _flush(self, failed_before: OrderFailure | None) -> Ordered:
        events = tuple(self._out)
        self._out.clear()
        failure = self.failure if self.failure is not failed_before else None
        return Ordered(events=events, failure=failure)
