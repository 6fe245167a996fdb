"""The exec server: its connections and sessions, statistics, graceful stop, and stdio.

:class:`ExecServer` serves any number of connections (see :mod:`trio_exec._server` for the
theory of operation); :func:`serve_stdio` serves one on the process's stdin / stdout.
"""

from __future__ import annotations

import errno as _errno
import logging
import math
import os
from typing import Final, final

import attrs
import trio

from .._backend import ExecBackend
from .._local import LocalBackend
from .._log import DEFAULT_RETAINED_BYTES
from .._pump import BEHIND_CHUNK_BYTES
from .._transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    WEBSOCKET_DISCONNECT_TIMEOUT,
    MessageTransport,
    StreamTransport,
)
from .connection import (
    _GOING_AWAY_REASON,
    _STDIO_PARSE_PREFIX,
    MAX_IN_FLIGHT_REQUESTS,
    _Connection,
    _parse_error_prefix,
)
from .methods import CLOSED_PROCESS_RETENTION, MAX_PROCESSES_PER_SESSION, MAX_READ_WAIT
from .session import DETACH_TIMEOUT, SESSION_END_GRACE, _Session

__all__ = ["GRACEFUL_STOP_TIMEOUT", "ExecServer", "ServerStatistics", "serve_stdio"]

_logger = logging.getLogger("trio_exec.server")

GRACEFUL_STOP_TIMEOUT: Final = 5.0
"""Seconds :meth:`ExecServer.aclose` waits, beyond the server's ``session_end_grace``, for
the processes of attached sessions to end and for their final notifications and the close
of each connection to be sent.

A process has ended at most ``session_end_grace`` after its SIGTERM (then it is SIGKILLed)
plus the local drain bound (``CLOSE_DRAIN_TIMEOUT``, 2 s, for output held open by a
process that left the group). What is left when the time passes ends at once, as when the
server is cancelled (its clients then get close code 1001 without the final events).
"""


@attrs.frozen(kw_only=True)
class ServerStatistics:
    """What :meth:`ExecServer.statistics` returns: a snapshot over all connections."""

    connections: int
    """Connections being served."""
    processes: int
    """Processes in the sessions' tables: starting, running, or closed and retained."""
    running_processes: int
    """Processes whose exit is not known yet."""
    in_flight_requests: int
    """Requests being handled."""
    queued_messages: int
    """Encoded messages waiting for a connection's writer task."""
    retained_bytes: int
    """Output bytes the processes retain for reads and notifications."""
    sessions: int = 0
    """Sessions alive: attached to a connection, or detached and waiting for a resume."""
    detached_sessions: int = 0
    """Sessions whose connection was lost, waiting for a resume (see :data:`DETACH_TIMEOUT`)."""


@final
class ExecServer:
    """Serves the exec-server protocol (PROTOCOL.md) on any number of connections.

    Args:
        backend: where processes run: any :class:`ExecBackend` (default: a new
            :class:`LocalBackend` whose chunks grow to 512 KiB while a client is the
            slower side, ``behind_chunk_bytes=BEHIND_CHUNK_BYTES``). The server uses it through the
            :class:`ExecBackend` / :class:`ExecProcess` interface only, so a
            :class:`RemoteBackend` serves too: the server is then a relay to another exec
            server. The server never closes a backend it is given: the caller opened it,
            and keeps it open (``async with connect(...)``) until the server stopped
            serving. When the backend loses a process (a remote backend's connection
            broke for good), see :mod:`trio_exec._server` ("Over any backend").
        retention: seconds a closed process stays readable and its id reserved.
        session_end_grace: seconds between SIGTERM and SIGKILL when a session ends.
        max_in_flight: requests handled at once per connection.
        retain_bytes: retained output per process (see :class:`ProcessLog`).
        detach_timeout: seconds a websocket session outlives its lost connection, waiting
            for a resume (:data:`DETACH_TIMEOUT`); 0 ends it at once, as stdio sessions are.
        max_processes: processes one session's table may hold.
        max_read_wait: the longest a ``process/read`` long-polls, in seconds.
        max_message_bytes: the largest frame (websocket message or stdio line) accepted.

    Limits (defaults are named constants; exceeding one never crashes or hangs the server):

    * ``max_message_bytes`` (``DEFAULT_MAX_MESSAGE_BYTES``, 16 MiB): a larger websocket
      message closes the connection with code 1009 and the reason ``Exceeded maximum
      message size: N bytes`` (its session is then detached, as on any lost connection);
      a longer stdio line ends the stdio session.
    * ``max_processes`` (:data:`MAX_PROCESSES_PER_SESSION`, 256): starting, running and
      closed-but-retained processes of a session. At the bound a start forgets the
      earliest started closed process; when none has closed it is refused with -32600
      ``too many processes ...``.
    * ``max_in_flight`` (:data:`MAX_IN_FLIGHT_REQUESTS`, 1024 per connection): a request
      beyond the bound is answered at once with -32600 ``too many requests in flight``.
    * ``max_read_wait`` (:data:`MAX_READ_WAIT`, 30 s): a longer ``waitMs`` is clamped; the
      read answers after this long with whatever is there.
    * ``retain_bytes`` (1 MiB per process): the oldest output is evicted first; extension
      ``readGap`` shows it.
    """

    def __init__(
        self,
        *,
        backend: ExecBackend | None = None,
        retention: float = CLOSED_PROCESS_RETENTION,
        session_end_grace: float = SESSION_END_GRACE,
        max_in_flight: int = MAX_IN_FLIGHT_REQUESTS,
        retain_bytes: int = DEFAULT_RETAINED_BYTES,
        detach_timeout: float = DETACH_TIMEOUT,
        max_processes: int = MAX_PROCESSES_PER_SESSION,
        max_read_wait: float = MAX_READ_WAIT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if retain_bytes < 0:
            raise ValueError(f"retain_bytes must be >= 0, not {retain_bytes}")
        if max_processes < 1:
            raise ValueError(f"max_processes must be >= 1, not {max_processes}")
        if not max_read_wait >= 0:
            raise ValueError(f"max_read_wait must be >= 0 seconds, not {max_read_wait!r}")
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be >= 1, not {max_message_bytes}")
        if not retention >= 0:
            raise ValueError(f"retention must be >= 0 seconds, not {retention!r}")
        if not session_end_grace >= 0:
            raise ValueError(f"session_end_grace must be >= 0 seconds, not {session_end_grace!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight}")
        if not detach_timeout >= 0:
            raise ValueError(f"detach_timeout must be >= 0 seconds, not {detach_timeout!r}")
        self.backend: Final[ExecBackend] = (
            LocalBackend(behind_chunk_bytes=BEHIND_CHUNK_BYTES) if backend is None else backend
        )
        """Where the processes run."""
        self.retention: Final = retention
        """Seconds a closed process stays readable."""
        self.session_end_grace: Final = session_end_grace
        """Seconds between SIGTERM and SIGKILL when a session ends."""
        self.max_in_flight: Final = max_in_flight
        """Requests handled at once per connection."""
        self.retain_bytes: Final = retain_bytes
        """Retained output per process."""
        self.max_processes: Final = max_processes
        """Processes one session's table may hold (see :data:`MAX_PROCESSES_PER_SESSION`)."""
        self.max_read_wait: Final = max_read_wait
        """The longest a ``process/read`` long-polls, in seconds; longer waits are clamped."""
        self.max_message_bytes: Final = max_message_bytes
        """The largest frame accepted (websocket message or stdio line)."""
        self.detach_timeout: Final = detach_timeout
        """Seconds a websocket session outlives its lost connection (0: it ends at once)."""
        self._connections: set[_Connection] = set()
        self._sessions: dict[str, _Session] = {}
        self._stopping = trio.Event()  # aclose was called
        self._stopped = trio.Event()  # aclose is done
        self._serve_calls = 0
        self._serve_calls_changed = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return (
            f"<ExecServer serving {len(self._connections)} connections, "
            f"{len(self._sessions)} sessions>"
        )

    def statistics(self) -> ServerStatistics:
        """Return counters over every connection being served and every session alive."""
        sessions = list(self._sessions.values())
        entries = [entry for session in sessions for entry in session.processes.values()]
        return ServerStatistics(
            connections=len(self._connections),
            processes=len(entries),
            running_processes=sum(1 for entry in entries if entry.running),
            in_flight_requests=sum(conn.in_flight for conn in self._connections),
            queued_messages=sum(conn.queued_messages for conn in self._connections),
            retained_bytes=sum(entry.retained_bytes for entry in entries),
            sessions=len(sessions),
            detached_sessions=sum(1 for session in sessions if session.connection is None),
        )

    async def serve_connection(
        self, transport: MessageTransport, *, detachable: bool = False
    ) -> None:
        """Serve one connection until the peer closes it or it breaks, and its session.

        The transport is closed when the connection ends. Bad input is answered with
        JSON-RPC errors and never ends the connection.

        Args:
            detachable: when the connection ends, detach its session instead of ending it,
                so that another connection may resume it within ``detach_timeout`` (this
                is what ``serve_websocket`` does). Returns once the session created on
                this connection ended (a resumed session belongs to the connection that
                created it).

        Also returns once :meth:`aclose` stopped the server (at once if it was stopped
        already: the transport is then closed as a stop closes it).

        **Cancellation:** every process of the session created on this connection is
        terminated (SIGTERM, SIGKILL after ``session_end_grace``) and reaped, and the
        transport is closed, before Cancelled propagates; no process is left behind. A
        session this connection resumed is only detached.
        """
        await self._serve(transport, _parse_error_prefix(transport), detachable=detachable)

    async def aclose(self) -> None:
        """Stop the server gracefully; idempotent.

        Every ``serve_websocket`` of this server stops listening. Each process of a
        session attached to a connection is ended as when its block is left (SIGTERM,
        SIGKILL after ``session_end_grace``, then SIGKILL to what is left of its group),
        its final ``process/exited`` and ``process/closed`` are sent, and then the
        connection is closed: a websocket with close code 1001 (Going Away), which tells a
        trio_exec client that its session is over (it does not try to resume it); a
        stdio connection with end of file on stdout. Detached sessions end. Meanwhile
        ``initialize`` and ``process/start`` are refused with -32600 ``the exec server is
        shutting down``. What has not finished after ``session_end_grace`` plus
        :data:`GRACEFUL_STOP_TIMEOUT` seconds ends at once, as on cancellation.

        Returns once every connection and session ended and every process was reaped;
        ``serve_websocket``, ``serve_stdio`` and ``serve_connection`` then return. A stopped
        server does not serve again: they return at once.

        **Cancellation:** the stop becomes abrupt: every session ends at once and every
        connection is closed without waiting for its final notifications; the tasks
        serving them still terminate and reap every process. Then Cancelled propagates.
        """
        await trio.lowlevel.checkpoint()
        if self._stopping.is_set():
            await self._stopped.wait()
            return
        self._stopping.set()
        _logger.info("stopping: ending %d sessions", len(self._sessions))
        try:
            with trio.move_on_after(self.session_end_grace + GRACEFUL_STOP_TIMEOUT):
                async with trio.open_nursery() as nursery:
                    for session in list(self._sessions.values()):
                        if session.connection is None:
                            session.end()  # detached: nobody to tell
                    for connection in list(self._connections):
                        nursery.start_soon(connection.go_away)
            self._end_everything()
            while self._serve_calls:
                await self._serve_calls_changed.park()
        except BaseException:
            self._end_everything()
            raise
        finally:
            self._stopped.set()

    def _end_everything(self) -> None:
        """End every session and connection at once (their serving tasks reap)."""
        for session in list(self._sessions.values()):
            session.end()
        for connection in list(self._connections):
            connection.abort()

    async def _serve(
        self,
        transport: MessageTransport,
        parse_error_prefix: str | None,
        *,
        detachable: bool = False,
    ) -> None:
        self._serve_calls += 1
        try:
            if self._stopping.is_set():
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(WEBSOCKET_DISCONNECT_TIMEOUT):
                        await transport.aclose_going_away(_GOING_AWAY_REASON)
                return
            await self._serve_until_closed(transport, parse_error_prefix, detachable)
        finally:
            self._serve_calls -= 1
            self._serve_calls_changed.unpark_all()

    async def _serve_until_closed(
        self, transport: MessageTransport, parse_error_prefix: str | None, detachable: bool
    ) -> None:
        connection = _Connection(self, transport, parse_error_prefix, detachable=detachable)
        self._connections.add(connection)
        # Hosts the session this connection creates (if any): it outlives the connection
        # while it is detached, and ends with this call's cancellation.
        async with trio.open_nursery() as host:
            connection.host = host
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)
                if self._stopping.is_set() and trio.current_effective_deadline() != -math.inf:
                    # The server stops: the final notifications were sent; tell the
                    # client that the session is over (1001 Going Away).
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(WEBSOCKET_DISCONNECT_TIMEOUT):
                            await transport.aclose_going_away(_GOING_AWAY_REASON)
                elif trio.current_effective_deadline() == -math.inf:
                    # Cancelled (the server is shutting down): no close handshake, whose
                    # reply could not be read any more; like the reference, whose clients
                    # see 1006.
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await transport.aclose()
                else:
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(WEBSOCKET_DISCONNECT_TIMEOUT):
                            await transport.aclose()
                connection.ended.set()


async def serve_stdio(*, server: ExecServer | None = None) -> None:
    """Serve one session over stdin / stdout, one JSON message per line, until end of file.

    Only protocol goes to stdout. End of file on stdin ends the session: its processes are
    terminated and reaped, then this returns. So does :meth:`ExecServer.aclose` on
    ``server``, after the final notifications of the processes, with end of file on stdout
    (the descriptor this serves on is closed; the process's own stdout stays open until it
    exits). stdin and stdout are put in non-blocking mode while serving (restored after),
    so they must not be shared with other readers or writers meanwhile.

    **Cancellation:** the session ends as on end of file: every process is terminated and
    reaped before Cancelled propagates.
    """
    server = server or ExecServer()
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    try:
        await server._serve(
            StreamTransport(stdout, stdin, max_message_bytes=server.max_message_bytes),
            _STDIO_PARSE_PREFIX,
        )
    finally:
        for fd in (0, 1):
            try:
                os.set_blocking(fd, True)
            except OSError as exc:  # pragma: no cover - a closed standard stream
                if exc.errno != _errno.EBADF:
                    raise
