"""The session table: sessions, their process entries, and what stays retained for a resume.

A :class:`_Session` owns a process table (an :class:`_Entry` per process) and is attached
to at most one connection at a time; detached, it waits for a resume until its detach time
passes. The pins that keep output retained across a lost connection live here too: the
hold of a detached session's entry and the forwarder's :class:`_Unsent` trail.
"""

from __future__ import annotations

import contextlib
import logging
import signal as _signal
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio

from .._backend import ExecProcess
from .._errors import ConnectionLost, UnsupportedOperation
from .._events import WriteStatus
from .._log import EventSubscription
from .env_methods import _Watches

if TYPE_CHECKING:  # the session names its server and connection; they import it
    from .connection import _Connection
    from .server import ExecServer

__all__ = [
    "CATCH_UP_HOLD",
    "DETACH_TIMEOUT",
    "SESSION_END_GRACE",
    "WRITE_ID_MEMORY",
    "_Entry",
    "_PendingWrite",
    "_RecentIds",
    "_Session",
    "_Unsent",
    "_advance",
    "_subscribe",
]

_logger = logging.getLogger("trio_exec.server")

WRITE_ID_MEMORY: Final = 4096
"""Accepted ``writeId`` values remembered per process; a repeat is acknowledged, not written.

The same as the reference. Older ids are forgotten first.
"""

SESSION_END_GRACE: Final = 1.0
"""Seconds between SIGTERM and SIGKILL to a child's process group when its session ends.

A session ends when its connection closes (stdio), when its detach time passes
(websocket), or when the server is cancelled. The reference SIGKILLs at once; one second
lets a child that handles SIGTERM clean up.
"""

DETACH_TIMEOUT: Final = 30.0
"""Seconds a websocket session outlives its lost connection, waiting to be resumed.

Meanwhile its processes keep running and their output is retained (see
:mod:`trio_exec._server`); then the session ends. The reference keeps 80 s (its source
says 30 s); the trio_exec client tries to resume for 25 s (``RESUME_DEADLINE``), which
fits inside. ``ExecServer(detach_timeout=0)`` ends a session as soon as its connection
is lost.
"""

CATCH_UP_HOLD: Final = 10.0
"""Seconds after a resume that output retained at the loss stays pinned for the catch-up.

The client's ``process/read`` calls release it as they go, and a read that reaches the
first live event drops it; this bound covers a client that never reads (a child that
fills its retention would otherwise wait forever).
"""


class _RecentIds:
    """The last ``limit`` ids added, with O(1) membership."""

    def __init__(self, limit: int) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._limit = limit

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def add(self, item: str) -> None:
        if item in self._ids:
            return
        self._order.append(item)
        self._ids.add(item)
        while len(self._order) > self._limit:
            self._ids.discard(self._order.popleft())

    def discard(self, item: str) -> None:
        if item in self._ids:
            self._ids.discard(item)
            self._order.remove(item)


class _Entry:
    """A process of a session's table, from ``process/start`` until it is forgotten."""

    def __init__(self, process_id: str, argv: tuple[str, ...]) -> None:
        self.process_id = process_id
        self.argv = argv
        self.proc: ExecProcess | None = None
        """Set once spawned; None while starting and after a failed start."""
        self.settled = trio.Event()
        """Set when the spawn finished, successfully or not."""
        self.announced = trio.Event()
        """Set once the start response is queued: notifications may follow."""
        self.write_ids = _RecentIds(WRITE_ID_MEMORY)
        self.closed = False
        """Set once the process closed: from then on it is only retained."""
        self.forget = trio.Event()
        """Set to end the retention early (the table needs room)."""
        self.writes: dict[str, _PendingWrite] = {}
        """Writes being performed, by ``writeId``: a resend waits for the first."""
        self.hold: EventSubscription | None = None
        """While detached and during the catch-up after a resume: pins retained output."""
        self.live_from: int | None = None
        """The seq of the first event forwarded live since the last resume."""
        self.failure: str | None = None
        """Why the backend lost the process (its events ended with Failed), or None."""

    @property
    def running(self) -> bool:
        if self.failure is not None:
            return False  # nothing more will be known of it
        return self.proc is None or self.proc.exit_code is None

    @property
    def retained_bytes(self) -> int:
        return 0 if self.proc is None else self.proc.statistics().retained_bytes

    def place_hold(self) -> None:
        """Pin everything retained now (the connection was lost); keep an older hold."""
        if self.proc is not None and self.hold is None:
            self.hold = _subscribe(self.proc)
            self.live_from = None

    def acknowledge(self, after_seq: int) -> None:
        """A ``process/read`` after ``after_seq``: the client has everything up to it."""
        hold = self.hold
        if hold is None:
            return
        _advance(hold, after_seq)
        if hold.done or (self.live_from is not None and hold.cursor >= self.live_from):
            self.release_hold()

    def release_hold(self) -> None:
        if self.hold is not None:
            self.hold.close()
            self.hold = None


class _PendingWrite:
    """A ``process/write`` being performed by a task of the session."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.status = WriteStatus.UNKNOWN_PROCESS
        self.error: Exception | None = None


def _subscribe(proc: ExecProcess) -> EventSubscription:
    """A subscription to every stream: the client may want any of them, and one lag over
    all of them keeps the process's retained output within ``retain_bytes``."""
    return proc.subscribe()


class _Session:
    """A process table, and the connection attached to it if any; see :mod:`trio_exec._server`."""

    def __init__(self, server: ExecServer) -> None:
        self.server = server
        self.session_id = str(uuid.uuid4())
        self.processes: dict[str, _Entry] = {}
        self.connection: _Connection | None = None
        """The attached connection; None while detached."""
        self.nursery: trio.Nursery | None = None
        """Hosts the process tasks and the writes; set by :meth:`run`."""
        self.ended = False
        self._end = trio.Event()
        self._timer: trio.CancelScope | None = None  # detach expiry, or the catch-up hold
        self.watches = _Watches()
        """The ``fs/watchMissing`` watches, polled by tasks of :attr:`nursery`."""

    def __repr__(self) -> str:
        state = "ended" if self.ended else "attached" if self.connection else "detached"
        return f"<session {self.session_id} {state} with {len(self.processes)} processes>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the session's tasks until it ends; registered for resumes meanwhile.

        **Cancellation:** the session ends: every process is terminated and reaped.
        """
        self.server._sessions[self.session_id] = self
        _logger.info("session %s started", self.session_id)
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started()
                await self._end.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.end()

    def end(self) -> None:
        """End the session: its processes are terminated and reaped; idempotent."""
        if self.ended:
            return
        self.ended = True
        _logger.info("session %s ended", self.session_id)
        if self.server._sessions.get(self.session_id) is self:
            del self.server._sessions[self.session_id]
        self._end.set()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.abort()  # its processes are gone

    def attach(self, connection: _Connection) -> None:
        """Attach ``connection`` (new session or resume); forwarding starts with
        :meth:`forward_all` once the initialize response is queued."""
        assert self.connection is None
        assert not self.ended
        self._set_timer(None)
        self.connection = connection

    def forward_all(self, connection: _Connection) -> None:
        """After a resume: forward each process's events from the next one on."""
        if self.connection is not connection:
            return  # lost again already
        for entry in self.processes.values():
            proc = entry.proc
            if proc is None:
                continue  # still spawning: adopt() forwards it
            entry.announced.set()  # a start response lost with the old connection
            subscription = _subscribe(proc)
            # Skip what is sequenced already: the client reads it.
            _advance(subscription, proc.statistics().next_seq - 1)
            entry.live_from = subscription.cursor
            if entry.hold is not None and entry.hold.cursor >= entry.live_from:
                entry.release_hold()
            connection.start_forwarder(entry, subscription)
        if any(entry.hold is not None for entry in self.processes.values()):
            self._set_timer(self._release_holds_later)

    def adopt(self, entry: _Entry, subscription: EventSubscription, starter: _Connection) -> None:
        """A process was spawned: forward its events, or hold them while detached."""
        connection = self.connection
        if connection is None:
            entry.hold = subscription
        else:
            if connection is not starter:
                entry.announced.set()  # the start response went nowhere
            connection.start_forwarder(entry, subscription)

    def lose(self, entry: _Entry, failure: str) -> None:
        """The backend lost ``entry``'s process (a remote backend's connection broke for
        good): its events ended with ``Failed`` instead of ``closed``.

        The protocol has no notification for that; a read of the process answers it
        (``failure``), and a client reads after it resumes a session. So the attached
        connection is dropped: a resuming client (websocket) comes back, its catch-up
        read of the process reports the failure and that process fails on the client,
        while the session's other processes go on. A connection that cannot be resumed
        (stdio) ends the session, so its client sees every process fail.
        """
        entry.failure = failure
        _logger.warning("process %s lost by the backend: %s", entry.process_id, failure)
        connection = self.connection
        if connection is not None:
            connection.abort()

    def detach(self, connection: _Connection) -> None:
        """``connection`` ended: keep the session for a resume, or end it."""
        if self.connection is not connection:
            return
        self.connection = None
        if (
            not connection.detachable
            or self.server.detach_timeout <= 0
            or self.nursery is None
            or self.server._stopping.is_set()
        ):
            self.end()
            return
        for entry in self.processes.values():
            entry.place_hold()
        _logger.info("session %s detached", self.session_id)
        self._set_timer(self._expire)

    def _set_timer(self, timer: Callable[[trio.CancelScope], Awaitable[None]] | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if timer is not None and self.nursery is not None:
            self._timer = trio.CancelScope()
            self.nursery.start_soon(timer, self._timer)

    async def finish_processes(self) -> None:
        """The server stops: end every process as when its block is left, but keep the
        session (and the retained output) until the final notifications are sent.
        Returns once every process closed.

        **Cancellation:** what was sent stays sent; the session's end does the rest.
        """
        finished: set[_Entry] = set()
        # Again for processes whose start request was already being handled.
        while pending := [entry for entry in self.processes.values() if entry not in finished]:
            async with trio.open_nursery() as nursery:
                for entry in pending:
                    finished.add(entry)
                    nursery.start_soon(self._finish_process, entry)

    async def _finish_process(self, entry: _Entry) -> None:
        await entry.settled.wait()
        proc = entry.proc
        if proc is None or entry.closed:
            return
        try:
            await proc.terminate(self.server.session_end_grace)
            # What is left of the group; the output then ends within CLOSE_DRAIN_TIMEOUT.
            # A backend that cannot send SIGKILL (a server without `signals`) leaves the
            # group to the end of the process's block.
            with contextlib.suppress(UnsupportedOperation):
                await proc.signal(_signal.SIGKILL)
            await proc.wait_closed()
        except ConnectionLost:
            pass  # the backend lost it: its events ended with Failed, nothing to wait for

    async def _expire(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(self.server.detach_timeout)
            _logger.info(
                "session %s expired: not resumed within %s s",
                self.session_id,
                self.server.detach_timeout,
            )
            self.end()

    async def _release_holds_later(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(CATCH_UP_HOLD)
            for entry in self.processes.values():
                entry.release_hold()


class _Unsent:
    """What a forwarder queued, and the last output sent, kept pinned for a resume.

    ``pin`` is a subscription nobody receives from. It stays at the oldest event that is
    queued (not yet taken by the transport) or among the last ``sent_limit`` bytes sent;
    a forwarder queues at most ``limit`` bytes. With ``limit`` half of the retention, the
    child is held back before queued output is evicted, and only until the transport takes
    it. Once the queue is empty, only more output could move the pin: so that this never
    holds the child back for good, what it pins then (``sent_limit`` at most) must leave
    room in the retention for any chunk the child's next output may come in.
    """

    def __init__(self, pin: EventSubscription, *, limit: int, sent_limit: int) -> None:
        self.pin = pin
        self.limit = limit
        self.sent_limit = sent_limit
        self.bytes = 0
        """Output bytes queued, not yet taken by the transport."""
        self._sent: deque[tuple[int, int]] = deque()  # (seq, size) sent and still pinned
        self._sent_bytes = 0
        self._lot = trio.lowlevel.ParkingLot()

    async def wait_for_room(self, size: int) -> None:
        """Wait until ``size`` more bytes fit in the queue (one event always does)."""
        while self.bytes and self.bytes + size > self.limit:
            await self._lot.park()

    def sent(self, seq: int, size: int) -> None:
        """The transport took the notification of event ``seq``."""
        self.bytes -= size
        self._sent.append((seq, size))
        self._sent_bytes += size
        while self._sent_bytes > self.sent_limit:
            old_seq, old_size = self._sent.popleft()
            self._sent_bytes -= old_size
            _advance(self.pin, old_seq)
        self._lot.unpark_all()


def _advance(subscription: EventSubscription, seq: int) -> None:
    """Move a subscription that nobody receives from past ``seq`` (it pins no more of it)."""
    while subscription.cursor <= seq:
        try:
            subscription.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
