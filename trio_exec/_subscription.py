"""A subscription to a :class:`~trio_exec._log.ProcessLog`: a cursor as a receive channel.

See the theory of operation in :mod:`trio_exec._log` for what a subscription pins and
how it applies backpressure.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

import trio

from ._chunks import ALL_STREAMS
from ._events import Closed, Event, Failed, OutputStream

if TYPE_CHECKING:
    from ._log import ProcessLog

__all__ = ["EventSubscription"]


class EventSubscription(trio.abc.ReceiveChannel[Event]):
    """A cursor over a :class:`ProcessLog`, as a trio receive channel.

    ``receive`` returns the events in seq order: ``Output*`` (of the streams it wants),
    ``Exited``, more output of grandchildren maybe, then ``Closed`` (or ``Failed``),
    after which it raises :class:`trio.EndOfChannel`. Until it is closed or has passed
    ``Closed``, the subscription holds back eviction of the output of its streams that
    it has not received, so a slow consumer slows the child's writes to those streams
    instead of losing output; the other streams flow regardless.
    """

    def __init__(
        self, log: ProcessLog, cursor: int, streams: frozenset[OutputStream] = ALL_STREAMS
    ) -> None:
        self._log = log
        self.cursor = cursor
        """The seq of the next event this subscription will return."""
        self.streams: Final = streams
        """The output streams this subscription receives and holds back."""
        self._receiving = False
        self._aclosed = False
        self.done = False
        """True once Closed or Failed was returned."""

    def __anext__(self) -> Coroutine[Any, Any, Event]:
        """The next event of ``async for``, which ends after Closed or Failed.

        The same as :meth:`receive`, without its layer: this is the hot path of a drain.
        """
        return self._next(StopAsyncIteration)

    async def receive(self) -> Event:
        """Return the next event, waiting for it if needed.

        Raises:
            trio.EndOfChannel: after Closed or Failed was returned.
            trio.ClosedResourceError: if this subscription was closed.
            trio.BusyResourceError: if another task is receiving on it.

        **Cancellation:** no event is consumed by a cancelled receive.
        """
        return await self._next(trio.EndOfChannel)

    async def _next(self, end: type[Exception]) -> Event:
        """:meth:`receive`, raising ``end`` once the events are over."""
        if self._aclosed:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the subscription was closed")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this subscription")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            parked = False  # a wait for the log is a checkpoint already
            while True:
                if self._aclosed:
                    raise trio.ClosedResourceError("the subscription was closed")
                if self.done:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    raise end
                event = self._log.event_at(self.cursor, self.streams)
                if event is not None:
                    # A late subscriber whose cursor fell into evicted history just
                    # resumes where its streams are whole again.
                    self.cursor = event.seq + 1
                    if isinstance(event, Closed):
                        self._finish()
                    else:
                        self._log._advanced(self)
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return event
                failure = self._log.failure
                if failure is not None:
                    self._finish()
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return Failed(message=failure)
                await self._log.wait_changed()
                parked = True
        finally:
            self._receiving = False

    def receive_nowait(self) -> Event:
        """Return the next event if there is one, else raise :class:`trio.WouldBlock`."""
        if self._aclosed:
            raise trio.ClosedResourceError("the subscription was closed")
        if self.done:
            raise trio.EndOfChannel
        event = self._log.event_at(self.cursor, self.streams)
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

    def _effective_cursor(self) -> int:
        """The lowest seq this subscription can still receive output at."""
        return max(self.cursor, self._log.first_whole_seq(self.streams))

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
