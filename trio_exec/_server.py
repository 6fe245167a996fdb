"""The exec server: JSON-RPC over a message transport, adapted to a :class:`LocalBackend`.

Theory of operation
-------------------
One :class:`ExecServer` serves many connections. ``initialize`` creates a *session* (or takes
one back, see below), which owns a process table (process ids are scoped to the session, as
in the reference server); a session is attached to at most one connection at a time. A
connection runs these tasks in one nursery:

* the **reader** receives frames, decodes them and dispatches them *in arrival order*. The
  handshake (``initialize`` / ``initialized``) and every decoding error are handled inline,
  so their effect is ordered with the frames that follow. Every other request gets its own
  **handler** task, so a long-poll ``process/read`` never delays another request. A
  semaphore bounds the handlers in flight (:data:`MAX_IN_FLIGHT_REQUESTS`): a request
  beyond it is answered at once with a -32600 error (the client may retry it), so memory
  stays bounded and the connection keeps flowing.
* the **writer** is the only task that sends on the transport. Everything else puts encoded
  messages on a bounded memory channel (:data:`OUTBOUND_QUEUE_MESSAGES`). Reading and
  writing are independent, so pipelining any number of requests never deadlocks (the
  reference's single-task pump deadlocks near 230 pipelined requests).
* one **forwarder** per process of the attached session turns the events of a
  subscription into ``process/output``, ``process/exited`` and ``process/closed``
  notifications once the start response is queued. Notifications of a process are
  therefore sent after its start response and in seq order. The subscription holds back
  the child when the client reads slowly (see :mod:`trio_exec._retained`): nothing is
  dropped and memory stays bounded.

The **process tasks** belong to the session, in a nursery hosted by the ``_serve`` call of
the connection that created it: one per started process owns the process's
``open_process`` block. When the process is closed, the block is left (the child is
reaped and what is left of its process group is killed) and its entry stays readable, its
id reserved, for :data:`CLOSED_PROCESS_RETENTION`. When the session ends, every process
block is left, which terminates the child's process group (SIGTERM, SIGKILL after
:data:`SESSION_END_GRACE`) and reaps it.

Connection loss and resume (extension ``resume``). When a websocket connection ends (the
peer closed it or the transport broke), its session is *detached*, not ended: the
processes keep running, the forwarders stop, and a **hold** (a subscription that nobody
receives from) pins the output retained at that moment, so whatever the client had not
received yet is still there when it comes back. (While attached, each forwarder already
pins what waits in the outbound queue and the last output it sent, which may still be in
flight: up to half of ``retain_bytes``, always leaving room for a whole next chunk, so
none with a retention below the 256 KiB read chunk.) While detached, a child that writes
more than ``retain_bytes`` waits (as with a slow client) instead of losing output; the
detach time bounds the wait.
``initialize {resumeSessionId}`` on a new connection takes the session back within
``detach_timeout`` (:data:`DETACH_TIMEOUT`): the same ``sessionId`` is answered, and live
notifications resume for events sequenced from then on. The client fetches what it missed
with ``process/read afterSeq=<last seen>``; each read releases the hold up to its
``afterSeq``, and the hold is dropped once a read's ``afterSeq`` reaches the seq before
the first live event (at the latest :data:`CATCH_UP_HOLD` seconds after the resume). A session still
attached elsewhere answers -32010; an unknown or expired one -32600 ``unknown session
id``; both leave the connection free to ``initialize`` again. When the detach time passes,
the session ends. A stdio connection (or any :meth:`ExecServer.serve_connection` without
``detachable``), and every connection when ``detach_timeout`` is 0, ends its session at
once, and cancelling the server ends every session.

Graceful stop. :meth:`ExecServer.aclose` stops listening, ends each attached session's
processes as their blocks would (SIGTERM, SIGKILL after ``session_end_grace``, SIGKILL to
what is left of the group; the output then ends within ``CLOSE_DRAIN_TIMEOUT``), lets the
forwarders send every final ``process/exited`` and ``process/closed``, lets the writer
flush the queue, and closes the transport with websocket code 1001 (Going Away; stdio: end
of file), which a trio_exec client takes as the end of its session. Detached sessions end
at once; what is not done after :data:`GRACEFUL_STOP_TIMEOUT` ends as on cancellation.

A write runs in a task of the session, so a connection lost mid-write never cuts it; a
``process/write`` resent with the same ``writeId`` waits for that write and answers its
status: it is written exactly once.

Writes to one process (``process/write`` and ``process/closeStdin``) are performed in the
order their requests arrived, even though each runs in its own task.

Differences from the reference server (``codex exec-server`` 0.169)
-------------------------------------------------------------------
Stronger guarantees: all requests are handled concurrently; notifications follow the start
response; output the child wrote before exiting precedes ``process/exited``. Other
deliberate differences:

* A notification other than ``initialized`` (also ``initialized`` before ``initialize``) and
  a response from the client are ignored (logged at debug level). The reference drops the
  connection, and with it every process of the session; a notification cannot be answered
  and a dropped connection cannot be told why.
* Operations on a process that is still being spawned wait for the spawn to finish (a few
  milliseconds) instead of answering ``starting`` / ``process id X is starting``.
* ``process/write`` (and ``process/closeStdin``) to a process whose child is gone answers
  ``stdinClosed``; the reference answers ``accepted`` and drops the bytes.
* ``process/terminate`` without ``graceMs`` SIGKILLs the process group at once, like the
  reference; with ``graceMs`` (extension ``gracefulTerminate``) it sends SIGTERM first and
  answers once the child exited.
* Leaving a closed process's block kills what is left of its process group (a background
  daemon that closed its output), so nothing outlives the session.
* A child on a terminal that a signal ended reports ``128 + N`` like any other child; the
  reference reports 1.
* Output notifications carry up to 256 KiB, the local read chunk (the reference: 8 KiB).
* A detached session is kept 30 s (:data:`DETACH_TIMEOUT`; the reference: 80 s), and its
  children are held back once ``retain_bytes`` of output waits for the client, instead of
  running on and evicting it; output queued or recently sent when the connection broke
  stays retained too (see ``_Connection._forward``). The reference loses whatever exceeds
  its 1 MiB retention. Output that was still in socket buffers is lost with the
  connection unless the retention covers it: with heavy output, ``retain_bytes`` must
  exceed what the network buffers hold for a resume to lose nothing.
* On a graceful stop (``trio-exec serve`` on SIGTERM or SIGINT) the clients get the final
  events of their processes and close code 1001; the reference drops its connections
  (1006) and its clients try to resume a session that is gone. Cancelling the server
  drops connections the same way.
* A ``process/write`` cut off by a lost connection completes in the session, and a resend
  with its ``writeId`` answers its status once it did; the reference may write part of it.
* ``envPolicy`` follows the reference's rules (see :func:`_policy_env`) but takes missing
  fields as their defaults (the reference requires all five), and no variable is always
  left out (the reference drops its own launch variables). ``environmentInfo`` carries
  the fields this server can fill honestly (see :func:`_environment_info`).
"""

from __future__ import annotations

import enum
import errno as _errno
import hashlib
import hmac
import http
import ipaddress
import logging
import math
import os
import pwd
import shutil
import signal as _signal
import ssl
import sys
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, Final

import attrs
import h11
import trio
import trio_websocket

from ._errors import ConnectionLost, SpawnError
from ._events import Closed, Event, Exited, Failed, Output, WriteStatus
from ._local import READ_CHUNK_BYTES, LocalBackend, LocalProcess
from ._protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    SESSION_ALREADY_ATTACHED,
    UNKNOWN_REQUEST_ID,
    ClosedNotification,
    CloseStdinParams,
    CloseStdinResult,
    EnvironmentInfo,
    ErrorResponse,
    ExitedNotification,
    Extension,
    InitializeParams,
    InitializeResult,
    ListParams,
    ListResult,
    Notification,
    OutputNotification,
    ProcessInfo,
    ReadParams,
    Request,
    RequestId,
    RequestParams,
    RequestResult,
    ResizeParams,
    ResizeResult,
    Response,
    RpcDecodeError,
    ShellInfo,
    SignalParams,
    SignalResult,
    StartParams,
    StartResult,
    TerminateParams,
    TerminateResult,
    WriteParams,
    WriteResult,
    decode_message,
    decode_params,
    encode_message,
    make_error_response,
    make_notification,
    make_response,
    path_to_file_uri,
)
from ._retained import DEFAULT_RETAINED_BYTES, EventSubscription
from ._transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    WEBSOCKET_DISCONNECT_TIMEOUT,
    WEBSOCKET_RECEIVE_BYTES,
    MessageTransport,
    StreamTransport,
    WebSocketTransport,
)
from ._util import leaf_exceptions

__all__ = [
    "CATCH_UP_HOLD",
    "CLOSED_PROCESS_RETENTION",
    "DETACH_TIMEOUT",
    "GRACEFUL_STOP_TIMEOUT",
    "HTTP_HEAD_TIMEOUT",
    "MAX_HTTP_HEAD_BYTES",
    "MAX_IN_FLIGHT_REQUESTS",
    "MAX_PROCESSES_PER_SESSION",
    "MAX_READ_WAIT",
    "OUTBOUND_QUEUE_MESSAGES",
    "SERVER_EXTENSIONS",
    "SESSION_END_GRACE",
    "WRITE_ID_MEMORY",
    "ExecServer",
    "ServerStatistics",
    "serve_stdio",
    "serve_websocket",
]

_logger = logging.getLogger("trio_exec.server")

# -- limits ------------------------------------------------------------------------------------

CLOSED_PROCESS_RETENTION: Final = 80.0
"""Seconds a closed process stays readable, and its id reserved, after it closed.

The same as the reference server 0.169 (its source says 30 s; the binary keeps 80 s). A
long retention lets a client read the tail of a process it was not watching; a process
that never closes (a grandchild keeps its output open) is kept until the session ends.
"""

WRITE_ID_MEMORY: Final = 4096
"""Accepted ``writeId`` values remembered per process; a repeat is acknowledged, not written.

The same as the reference. Older ids are forgotten first.
"""

MAX_IN_FLIGHT_REQUESTS: Final = 1024
"""Requests of one connection that are being handled at once (long-polls included).

A request beyond the bound is answered at once with -32600 ``too many requests in flight``
and not handled; the client may send it again once answers came back. Memory per
connection is bounded by this times the largest response (a ``process/read`` returns at
most the retained output of one process, 1 MiB by default).
"""

MAX_PROCESSES_PER_SESSION: Final = 256
"""Processes one session's table may hold: starting, running, and closed but retained.

When the table is full, a ``process/start`` forgets the earliest started process that has
already closed (its retention is cut short) to make room; when none has closed, the start
is refused with -32600 ``too many processes ...``. The bound caps a session's retained
output at this times ``retain_bytes`` (256 MiB by default) and its children, pipes and
tasks at this many processes. The reference has no such limit.
"""

MAX_READ_WAIT: Final = 30.0
"""The longest a ``process/read`` long-polls, in seconds; a larger ``waitMs`` is clamped.

The read then returns what is there after this long, perhaps nothing new, which a
long-poll client must handle anyway (it reads again from ``nextSeq``). Clamping bounds
how long a request holds one of the connection's :data:`MAX_IN_FLIGHT_REQUESTS` slots.
The reference accepts any ``waitMs``.
"""

OUTBOUND_QUEUE_MESSAGES: Final = 16
"""Encoded messages waiting for the writer task, per connection.

Responses and notifications wait for room; since notifications wait, a client that reads
slowly slows the children (through the event subscriptions) instead of growing memory.
"""

GRACEFUL_STOP_TIMEOUT: Final = 5.0
"""Seconds :meth:`ExecServer.aclose` waits, beyond the server's ``session_end_grace``, for
the processes of attached sessions to end and for their final notifications and the close
of each connection to be sent.

A process has ended at most ``session_end_grace`` after its SIGTERM (then it is SIGKILLed)
plus the local drain bound (``CLOSE_DRAIN_TIMEOUT``, 2 s, for output held open by a
process that left the group). What is left when the time passes ends at once, as when the
server is cancelled (its clients then get close code 1001 without the final events).
"""

SESSION_END_GRACE: Final = 1.0
"""Seconds between SIGTERM and SIGKILL to a child's process group when its session ends.

A session ends when its connection closes (stdio), when its detach time passes
(websocket), or when the server is cancelled. The reference SIGKILLs at once; one second
lets a child that handles SIGTERM clean up.
"""

DETACH_TIMEOUT: Final = 30.0
"""Seconds a websocket session outlives its lost connection, waiting to be resumed.

Meanwhile its processes keep running and their output is retained (see the module
docstring); then the session ends. The reference keeps 80 s (its source says 30 s); the
trio_exec client tries to resume for 25 s (``RESUME_DEADLINE``), which fits inside.
``ExecServer(detach_timeout=0)`` ends a session as soon as its connection is lost.
"""

CATCH_UP_HOLD: Final = 10.0
"""Seconds after a resume that output retained at the loss stays pinned for the catch-up.

The client's ``process/read`` calls release it as they go, and a read that reaches the
first live event drops it; this bound covers a client that never reads (a child that
fills its retention would otherwise wait forever).
"""

HTTP_HEAD_TIMEOUT: Final = 10.0
"""Seconds a websocket client may take to send its HTTP request head and finish the upgrade."""

MAX_HTTP_HEAD_BYTES: Final = 16 * 1024
"""Largest HTTP request head accepted on the websocket port; a longer one gets 431."""

SERVER_EXTENSIONS: Final = tuple(extension.value for extension in Extension)
"""The extensions this server advertises in the ``initialize`` result: all of them."""

_CORE_ENV_VARS: Final = frozenset(
    [
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LOGNAME",
        "PATH",
        "SHELL",
        "TEMP",
        "TMP",
        "TMPDIR",
        "USER",
    ]
)
"""``inherit: "core"`` of ``envPolicy``: the reference 0.169's list (seen live)."""
_DEFAULT_ENV_EXCLUDES: Final = ("*KEY*", "*SECRET*", "*TOKEN*")
_PROTOCOL_PARSE_PREFIX: Final = "failed to parse JSON-RPC message: "
_GOING_AWAY_REASON: Final = "the exec server is shutting down"
_STDIO_PARSE_PREFIX: Final = "failed to parse JSON-RPC message from exec-server stdio"


# -- the server ----------------------------------------------------------------------------------


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


class ExecServer:
    """Serves the exec-server protocol (PROTOCOL.md) on any number of connections.

    Args:
        backend: where processes run (default: a new :class:`LocalBackend`).
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
        backend: LocalBackend | None = None,
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
        self.backend: Final = LocalBackend() if backend is None else backend
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


def _parse_error_prefix(transport: MessageTransport) -> str | None:
    """The reference's prefix of malformed-frame errors for this kind of transport."""
    if isinstance(transport, WebSocketTransport):
        remote = transport.websocket.remote
        if isinstance(remote, trio_websocket.Endpoint):
            return _websocket_parse_prefix(str(remote.address), remote.port)
        return None
    if isinstance(transport, StreamTransport):
        return _STDIO_PARSE_PREFIX
    return None


def _websocket_parse_prefix(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"failed to parse websocket JSON-RPC message from exec-server websocket {host}:{port}"


class _RpcError(Exception):
    """Answer the request with this JSON-RPC error (``data``: its optional data member)."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class _Handshake(enum.Enum):
    """Where a connection is in the ``initialize`` / ``initialized`` handshake."""

    NEW = "new"
    INITIALIZED = "initialized"  # initialize answered; waiting for `initialized`
    READY = "ready"


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
        self.proc: LocalProcess | None = None
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

    @property
    def running(self) -> bool:
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


def _subscribe(proc: LocalProcess) -> EventSubscription:
    """A subscription to every stream: the client may want any of them, and one lag over
    all of them keeps the process's retained output within ``retain_bytes``."""
    subscription = proc.subscribe()
    assert isinstance(subscription, EventSubscription)
    return subscription


class _Session:
    """A process table, and the connection attached to it if any; see the module docstring."""

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

    def __repr__(self) -> str:
        state = "ended" if self.ended else "attached" if self.connection else "detached"
        return f"<session {self.session_id} {state} with {len(self.processes)} processes>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the session's tasks until it ends; registered for resumes meanwhile.

        **Cancellation:** the session ends: every process is terminated and reaped.
        """
        self.server._sessions[self.session_id] = self
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
        _logger.debug("session %s detached", self.session_id)
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
        await proc.terminate(self.server.session_end_grace)
        # What is left of the group; the output then ends within CLOSE_DRAIN_TIMEOUT.
        await proc.signal(_signal.SIGKILL)
        await proc.wait_closed()

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


class _Connection:
    """One connection: its tasks, its handshake state and its session."""

    def __init__(
        self,
        server: ExecServer,
        transport: MessageTransport,
        parse_error_prefix: str | None,
        *,
        detachable: bool = False,
    ) -> None:
        self._server = server
        self._transport = transport
        self._parse_error_prefix = parse_error_prefix
        self.detachable = detachable
        """Whether losing this connection detaches its session (websocket) or ends it."""
        self._handshake = _Handshake.NEW
        self.session: _Session | None = None
        """Set by ``initialize``; kept after the connection ended (its tasks wind down)."""
        self.host: trio.Nursery | None = None
        """Where a session created on this connection runs (set by ``ExecServer._serve``)."""
        self._slots = trio.Semaphore(server.max_in_flight)
        self._write_tails: dict[str, trio.Event] = {}
        # Each message with what to do once the transport took it (see _forward).
        send, receive = trio.open_memory_channel[tuple[str, Callable[[], None] | None]](
            OUTBOUND_QUEUE_MESSAGES
        )
        self._outbound = send
        self._outbound_receive = receive
        self._nursery: trio.Nursery | None = None
        self._forwarders = 0
        self._forwarders_changed = trio.lowlevel.ParkingLot()
        self.ended = trio.Event()
        """Set once the connection ended and its transport was closed."""

    @property
    def in_flight(self) -> int:
        return self._server.max_in_flight - self._slots.value

    @property
    def queued_messages(self) -> int:
        return self._outbound.statistics().current_buffer_used

    @property
    def processes(self) -> dict[str, _Entry]:
        """The session's process table (requests are handled only once it exists)."""
        assert self.session is not None
        return self.session.processes

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                nursery.start_soon(self._writer)
                await self._reader()
            finally:
                self._leave()
            nursery.cancel_scope.cancel()

    def _leave(self) -> None:
        """The connection ends: detach (or end) the session, before the forwarders stop."""
        if self.session is not None:
            self.session.detach(self)

    def abort(self) -> None:
        """End this connection (its session ended under it)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def start_forwarder(self, entry: _Entry, subscription: EventSubscription) -> None:
        assert self._nursery is not None
        self._forwarders += 1
        self._nursery.start_soon(self._forward_counted, entry, subscription)

    async def _forward_counted(self, entry: _Entry, subscription: EventSubscription) -> None:
        try:
            await self._forward(entry, subscription)
        finally:
            self._forwarders -= 1
            self._forwarders_changed.unpark_all()

    async def go_away(self) -> None:
        """The server stops gracefully: end the session's processes, send every final
        notification, then end the connection (``ExecServer._serve`` closes it with 1001).

        **Cancellation:** the connection is left as it is, for ``abort``.
        """
        session = self.session
        if session is not None and session.connection is self:
            await session.finish_processes()
            # Each forwarder ends once it queued its process's `closed`.
            while self._forwarders:
                await self._forwarders_changed.park()
        # The writer sends what is queued, then ends the connection.
        self._outbound.close()
        await self.ended.wait()

    # -- transport ---------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            try:
                frame = await self._transport.receive()
            except ConnectionLost as exc:
                _logger.debug("connection ended: %s", exc)
                return
            await self._dispatch(frame)

    async def _writer(self) -> None:
        async with self._outbound_receive:
            async for text, on_sent in self._outbound_receive:
                try:
                    await self._transport.send(text)
                except ConnectionLost as exc:
                    _logger.debug("connection lost while sending: %s", exc)
                    break
                if on_sent is not None:
                    on_sent()
        # The peer is gone: detach (or end) the session and end the connection.
        self._leave()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _send(
        self,
        message: Request | Notification | Response | ErrorResponse,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        try:
            await self._outbound.send((encode_message(message), on_sent))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The writer stopped: the connection is ending and this task is about to be
            # cancelled; nothing can be sent any more.
            await trio.lowlevel.checkpoint()

    async def _reply_error(
        self, request_id: RequestId, code: int, message: str, data: object = None
    ) -> None:
        await self._send(make_error_response(request_id, code, message, data))

    # -- dispatch (in the reader task, in arrival order) ---------------------------------

    async def _dispatch(self, frame: str | bytes) -> None:
        try:
            message = decode_message(frame)
        except RpcDecodeError as exc:
            await self._reply_error(UNKNOWN_REQUEST_ID, exc.code, self._frame_error(exc))
            return
        match message:
            case Request():
                await self._dispatch_request(message)
            case Notification():
                self._on_notification(message)
            case Response() | ErrorResponse():
                _logger.debug("ignored a response from the client (id %r)", message.id)

    def _frame_error(self, exc: RpcDecodeError) -> str:
        if self._parse_error_prefix is None or not exc.message.startswith(_PROTOCOL_PARSE_PREFIX):
            return exc.message
        return f"{self._parse_error_prefix}: {exc.message.removeprefix(_PROTOCOL_PARSE_PREFIX)}"

    def _on_notification(self, notification: Notification) -> None:
        if notification.method != "initialized":
            _logger.debug("ignored notification %r", notification.method)
        elif self._handshake is _Handshake.INITIALIZED:
            self._handshake = _Handshake.READY
        elif self._handshake is _Handshake.NEW:
            _logger.debug("ignored `initialized` before `initialize`")

    async def _dispatch_request(self, request: Request) -> None:
        try:
            params = decode_params(request.method, request.params)
        except RpcDecodeError as exc:
            await self._reply_error(request.id, exc.code, exc.message)
            return
        if isinstance(params, InitializeParams):
            await self._initialize(request.id, params)
            return
        if self._handshake is not _Handshake.READY:
            word = "call initialize" if self._handshake is _Handshake.NEW else "send initialized"
            message = f"client must {word} before using exec methods"
            await self._reply_error(request.id, INVALID_REQUEST, message)
            return
        if self._slots.value == 0:
            limit = self._server.max_in_flight
            message = (
                f"too many requests in flight: at most {limit} per connection; "
                "send more once answers came back"
            )
            await self._reply_error(request.id, INVALID_REQUEST, message)
            return
        if isinstance(params, StartParams) and self._server._stopping.is_set():
            await self._reply_error(request.id, INVALID_REQUEST, _GOING_AWAY_REASON)
            return
        self._slots.acquire_nowait()
        turn: tuple[trio.Event | None, trio.Event] | None = None
        if isinstance(params, WriteParams | CloseStdinParams):
            turn = self._take_write_turn(params.process_id)
        assert self._nursery is not None
        self._nursery.start_soon(self._handle, request.id, params, turn)

    def _take_write_turn(self, process_id: str) -> tuple[trio.Event | None, trio.Event]:
        """Queue a write to ``process_id`` behind the writes that arrived before it."""
        previous = self._write_tails.get(process_id)
        mine = trio.Event()
        self._write_tails[process_id] = mine
        return previous, mine

    async def _initialize(self, request_id: RequestId, params: InitializeParams) -> None:
        if self._handshake is not _Handshake.NEW:
            message = "initialize may only be sent once per connection"
            await self._reply_error(request_id, INVALID_REQUEST, message)
            return
        if self._server._stopping.is_set():
            await self._reply_error(request_id, INVALID_REQUEST, _GOING_AWAY_REASON)
            return
        resume_id = params.resume_session_id
        if resume_id is None:
            session = _Session(self._server)
            assert self.host is not None
            await self.host.start(session.run)
        else:
            # As in the reference, a failed resume leaves the connection free to
            # initialize again (the client retries -32010 until the old connection is
            # noticed as dead).
            found = self._server._sessions.get(resume_id)
            if found is None or found.ended:
                message = f"unknown session id {resume_id}"
                await self._reply_error(request_id, INVALID_REQUEST, message)
                return
            if found.connection is not None:
                message = f"session {resume_id} is already attached to another connection"
                await self._reply_error(request_id, SESSION_ALREADY_ATTACHED, message)
                return
            session = found
            _logger.debug("session %s resumed", resume_id)
        session.attach(self)  # no checkpoint since the checks: no other connection raced us
        self.session = session
        self._handshake = _Handshake.INITIALIZED
        result = InitializeResult(
            session_id=session.session_id,
            extensions=SERVER_EXTENSIONS,
            environment_info=_environment_info(),
        )
        await self._send(make_response(request_id, result))
        # Live notifications follow the response; what happened while detached is read.
        session.forward_all(self)

    # -- handlers (one task per request) ---------------------------------------------------

    async def _handle(
        self,
        request_id: RequestId,
        params: RequestParams,
        turn: tuple[trio.Event | None, trio.Event] | None,
    ) -> None:
        try:
            try:
                if turn is not None:
                    previous, _ = turn
                    if previous is not None:
                        await previous.wait()
                if isinstance(params, StartParams):
                    await self._start(request_id, params)
                    return
                result = await self._call(params)
            except _RpcError as exc:
                await self._reply_error(request_id, exc.code, exc.message, exc.data)
                return
            except Exception as exc:
                _logger.exception("internal error handling %s", type(params).__name__)
                await self._reply_error(request_id, INTERNAL_ERROR, f"internal error: {exc}")
                return
            finally:
                if turn is not None:
                    self._end_write_turn(params, turn[1])
            await self._send(make_response(request_id, result))
        finally:
            self._slots.release()

    def _end_write_turn(self, params: RequestParams, mine: trio.Event) -> None:
        mine.set()
        assert isinstance(params, WriteParams | CloseStdinParams)
        if self._write_tails.get(params.process_id) is mine:
            del self._write_tails[params.process_id]

    async def _call(self, params: RequestParams) -> RequestResult:
        match params:
            case ReadParams():
                return await self._read(params)
            case WriteParams():
                return await self._write(params)
            case CloseStdinParams():
                return await self._close_stdin(params)
            case SignalParams():
                return await self._signal(params)
            case TerminateParams():
                return await self._terminate(params)
            case ResizeParams():
                return await self._resize(params)
            case ListParams():
                await trio.lowlevel.checkpoint()
                return self._list()
            case _:  # StartParams is handled before; InitializeParams by the reader
                raise AssertionError(f"unexpected params {params!r}")

    async def _lookup(self, process_id: str) -> LocalProcess | None:
        """The process with this id, once spawned; None if unknown or its start failed."""
        entry = self.processes.get(process_id)
        if entry is None:
            await trio.lowlevel.checkpoint()
            return None
        await entry.settled.wait()
        return entry.proc

    async def _start(self, request_id: RequestId, params: StartParams) -> None:
        process_id = params.process_id
        if process_id in self.processes:
            raise _RpcError(INVALID_REQUEST, f"process {process_id} already exists")
        try:
            env = _child_env(params)
        except ValueError as exc:
            raise _RpcError(INVALID_PARAMS, str(exc)) from None
        self._make_room()
        entry = _Entry(process_id, params.argv)
        self.processes[process_id] = entry
        assert self.session is not None
        assert self.session.nursery is not None
        try:
            # The process task belongs to the session: it outlives a lost connection.
            await self.session.nursery.start(self._run_process, entry, params, env)
        except SpawnError as exc:
            raise _RpcError(INTERNAL_ERROR, _os_error_text(exc), _spawn_error_data(exc)) from None
        except (ValueError, TypeError) as exc:
            raise _RpcError(INVALID_PARAMS, str(exc)) from None
        finally:
            entry.settled.set()
            if entry.proc is None and self.processes.get(process_id) is entry:
                del self.processes[process_id]
        await self._send(make_response(request_id, StartResult(process_id=process_id)))
        entry.announced.set()

    def _make_room(self) -> None:
        """Keep the table under ``max_processes``: forget a closed process, or refuse."""
        limit = self._server.max_processes
        if len(self.processes) < limit:
            return
        for entry in self.processes.values():
            if entry.closed:  # the earliest started of the closed ones
                del self.processes[entry.process_id]
                entry.forget.set()
                return
        raise _RpcError(
            INVALID_REQUEST,
            f"too many processes: this session already has {limit} processes that have not "
            "closed (the server's limit); wait for one to close or terminate one",
        )

    async def _run_process(
        self,
        entry: _Entry,
        params: StartParams,
        env: dict[str, str],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the process block: spawn, forward events, retain, forget. A session task."""
        server = self._server
        session = self.session
        assert session is not None
        size = params.window_size
        async with server.backend.open_process(
            params.argv,
            cwd=params.cwd_path,
            env=env,
            tty=params.tty,
            pipe_stdin=params.pipe_stdin,
            arg0=params.arg0,
            grace=server.session_end_grace,
            retain_bytes=server.retain_bytes,
            window=None if size is None else (size.rows, size.cols),
        ) as proc:
            # Subscribe before anything can be sequenced: no event is missed. The forwarder
            # is a task of the attached connection, so leaving this block never waits for
            # a slow client to take the notifications.
            subscription = _subscribe(proc)
            entry.proc = proc
            entry.settled.set()
            session.adopt(entry, subscription, self)
            task_status.started()
            await proc.wait_closed()
            entry.closed = True
            # The entry stays readable for the retention time, and the session open: the
            # rest of the child's process group (grandchildren that outlive it) lives on,
            # as it does in a local block, until the client signals or terminates it, the
            # retention ends (or is cut short by _make_room) or the session ends. Then the
            # group is killed and reaped.
            with trio.move_on_after(server.retention):
                await entry.forget.wait()
        entry.release_hold()
        if session.processes.get(entry.process_id) is entry:
            del session.processes[entry.process_id]

    async def _forward(self, entry: _Entry, events: EventSubscription) -> None:
        """Send the process's events as notifications, after the start response.

        For a resume after a lost connection, output the client may not have received
        must stay retained. A second subscription trails ``events`` (see :class:`_Unsent`):
        it pins what waits in the outbound queue, at most half of ``retain_bytes``, and
        the last output that the transport took, which may still be in flight (in socket
        buffers) when the connection breaks: at most half of ``retain_bytes``, and little
        enough that the largest chunk (:data:`~trio_exec._local.READ_CHUNK_BYTES`) still
        fits beside it.
        """
        assert entry.proc is not None
        retain = self._server.retain_bytes
        unsent = _Unsent(
            _subscribe(entry.proc),
            limit=max(retain // 2, 1),
            sent_limit=max(min(retain // 2, retain - READ_CHUNK_BYTES), 0),
        )
        _advance(unsent.pin, events.cursor - 1)
        try:
            async with events:
                await entry.announced.wait()
                async for event in events:
                    notification = _notification(entry.process_id, event)
                    if notification is None:
                        break
                    size = len(event.data) if isinstance(event, Output) else 0
                    seq = event.seq if isinstance(event, Output | Exited | Closed) else 0
                    await unsent.wait_for_room(size)
                    unsent.bytes += size
                    await self._send(notification, partial(unsent.sent, seq, size))
        finally:
            unsent.pin.close()

    async def _read(self, params: ReadParams) -> RequestResult:
        proc = await self._lookup(params.process_id)
        entry = self.processes.get(params.process_id)
        if proc is None or entry is None:
            raise _RpcError(INVALID_REQUEST, f"unknown process id {params.process_id}")
        # The client has everything up to afterSeq: a hold need not keep it any more.
        entry.acknowledge(params.after_seq or 0)
        wait = min((params.wait_ms or 0) / 1000, self._server.max_read_wait)  # MAX_READ_WAIT
        return await proc.read(params.after_seq or 0, params.max_bytes, wait)

    async def _write(self, params: WriteParams) -> WriteResult:
        entry = self.processes.get(params.process_id)
        proc = await self._lookup(params.process_id)
        if entry is None or proc is None:
            return WriteResult(status=WriteStatus.UNKNOWN_PROCESS)
        if params.write_id in entry.write_ids:
            return WriteResult(status=WriteStatus.ACCEPTED)
        pending = entry.writes.get(params.write_id)
        if pending is None:
            # Performed by a session task, so that a connection lost mid-write does not
            # cut it; a resend with this writeId waits for it instead of writing again.
            pending = _PendingWrite()
            entry.writes[params.write_id] = pending
            assert self.session is not None
            assert self.session.nursery is not None
            self.session.nursery.start_soon(_perform_write, entry, proc, params, pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return WriteResult(status=pending.status)

    async def _close_stdin(self, params: CloseStdinParams) -> CloseStdinResult:
        proc = await self._lookup(params.process_id)
        if proc is None:
            return CloseStdinResult(status=WriteStatus.UNKNOWN_PROCESS)
        return CloseStdinResult(status=_known(await proc.close_stdin()))

    async def _signal(self, params: SignalParams) -> SignalResult:
        proc = await self._lookup(params.process_id)
        if proc is not None:
            await proc.signal(params.signal.signum)
        return SignalResult()

    async def _terminate(self, params: TerminateParams) -> TerminateResult:
        proc = await self._lookup(params.process_id)
        if proc is None:
            return TerminateResult(running=False)
        if params.grace_ms is not None:
            return TerminateResult(running=await proc.terminate(params.grace_ms / 1000))
        running = proc.exit_code is None
        if running:
            # The reference's terminate: SIGKILL to the whole group at once, no grace.
            await proc.signal(_signal.SIGKILL)
        return TerminateResult(running=running)

    async def _resize(self, params: ResizeParams) -> ResizeResult:
        proc = await self._lookup(params.process_id)
        if proc is not None:
            if not proc.tty:
                message = f"process {params.process_id} has no terminal (started without tty)"
                raise _RpcError(INVALID_PARAMS, message)
            await proc.resize(params.rows, params.cols)
        return ResizeResult()

    def _list(self) -> ListResult:
        return ListResult(
            processes=tuple(
                ProcessInfo(
                    process_id=entry.process_id,
                    argv=entry.argv,
                    running=entry.running,
                    exit_code=None if entry.proc is None else entry.proc.exit_code,
                )
                for entry in self.processes.values()
            )
        )


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


async def _perform_write(
    entry: _Entry, proc: LocalProcess, params: WriteParams, pending: _PendingWrite
) -> None:
    """Write one ``process/write`` to the child; a task of the session."""
    try:
        pending.status = _known(await proc.write(params.chunk))
        if pending.status is WriteStatus.ACCEPTED:
            entry.write_ids.add(params.write_id)
    except Exception as exc:  # answered by the handlers waiting for it
        pending.error = exc
    finally:
        if entry.writes.get(params.write_id) is pending:
            del entry.writes[params.write_id]
        pending.done.set()


def _known(status: WriteStatus) -> WriteStatus:
    """The status for a process the table knows: a finished block has no stdin any more."""
    return WriteStatus.STDIN_CLOSED if status is WriteStatus.UNKNOWN_PROCESS else status


def _notification(process_id: str, event: Event) -> Notification | None:
    match event:
        case Output():
            return make_notification(OutputNotification.from_event(process_id, event))
        case Exited():
            return make_notification(ExitedNotification.from_event(process_id, event))
        case Closed():
            return make_notification(ClosedNotification.from_event(process_id, event))
        case Failed():
            return None


def _os_error_text(exc: OSError) -> str:
    """The OS error the way the reference (Rust's ``io::Error``) prints it."""
    text = exc.strerror or str(exc)
    if exc.errno is None:
        return text
    return f"{text} (os error {exc.errno})"


def _spawn_error_data(exc: SpawnError) -> dict[str, object] | None:
    """The ``data`` of a spawn error: ``errno`` and the ``filename`` at fault (the program
    or the working directory), which the message alone does not tell (an extension; a
    peer may ignore it)."""
    data: dict[str, object] = {}
    if exc.errno is not None:
        data["errno"] = exc.errno
    if exc.filename is not None:
        data["filename"] = os.fsdecode(exc.filename)
    return data or None


# -- environment info and policy ------------------------------------------------------------------


def _environment_info() -> EnvironmentInfo:
    """What ``initialize`` tells a client of this server's side, as the reference does.

    The working directory (where a child runs when the client gives no ``cwd``), the
    user's home, default shell and temporary directory, and the operating system; all
    read when asked, so a server whose process changed directory reports the new one.
    Fields that cannot be known (a deleted working directory) are left out. The
    reference's ``executorVersion``, ``providerId``, ``prependPathDirs`` and
    ``capabilities`` describe codex itself and are not sent.
    """
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None
    home = os.path.expanduser("~")
    tmpdir = os.environ.get("TMPDIR") or None
    if tmpdir is not None and cwd is not None:
        tmpdir = os.path.join(cwd, tmpdir)
    return EnvironmentInfo(
        shell=_user_shell(),
        cwd=_file_uri_or_none(cwd),
        user_home_dir=_file_uri_or_none(home),
        platform_os=_PLATFORM_OS.get(sys.platform, sys.platform.rstrip("0123456789")),
        temporary_directories=tuple(uri for uri in (_file_uri_or_none(tmpdir),) if uri is not None),
        temp_dir=_file_uri_or_none(tmpdir or "/tmp"),
    )


_PLATFORM_OS: Final = {"darwin": "macos", "win32": "windows"}
"""``sys.platform`` values that Rust's ``std::env::consts::OS`` spells otherwise."""

_KNOWN_SHELLS: Final = ("bash", "zsh", "sh")


def _file_uri_or_none(path: str | None) -> str | None:
    if path is None or not os.path.isabs(path):
        return None
    try:
        return path_to_file_uri(path)
    except ValueError:
        return None


def _user_shell() -> ShellInfo:
    """The user's login shell (from the password database) when it is a known kind and
    executable; else bash, zsh or ``/bin/sh``, as the reference picks it."""
    try:
        login = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        login = ""
    name = os.path.splitext(os.path.basename(login))[0]
    if name in _KNOWN_SHELLS and os.access(login, os.X_OK):
        return ShellInfo(name=name, path=login)
    for name in ("bash", "zsh"):
        found = shutil.which(name)
        if found is not None:
            return ShellInfo(name=name, path=found)
    return ShellInfo(name="sh", path="/bin/sh")


def _child_env(params: StartParams) -> dict[str, str]:
    """The child's environment: ``env`` exactly, or ``envPolicy`` applied and ``env`` over it.

    Sorted by name, as the reference's children see it (Rust keeps a command's environment
    in a sorted map), so that ``env`` prints the same.
    """
    if params.env_policy is None:
        env = dict(params.env)
    else:
        env = _policy_env(params.env_policy, os.environ)
        env.update(params.env)
    return dict(sorted(env.items()))


def _policy_env(policy: Mapping[str, Any], base: Mapping[str, str]) -> dict[str, str]:
    """Build an environment from ``base`` with the reference's ``envPolicy`` rules.

    In order: start from ``inherit`` (``"all"``, ``"core"``: HOME, LANG, LC_ALL, LC_CTYPE,
    LOGNAME, PATH, SHELL, TEMP, TMP, TMPDIR, USER, or ``"none"``); unless ``ignoreDefaultExcludes``,
    drop names matching ``*KEY*``, ``*SECRET*``, ``*TOKEN*``; drop ``exclude``; add
    ``set``; when ``includeOnly`` is non-empty keep only matching names. Patterns are
    case-insensitive globs. Missing fields take the defaults ``all``, false, ``[]``, ``{}``,
    ``[]`` (the reference requires all five). Unlike the reference, no variable is always
    left out: it drops its own launch variables (``CODEX_EXEC_SERVER_*``,
    ``NODE_REPL_AUTH_TOKEN``, ``OPENAI_*`` identity files), which mean nothing here.

    Raises:
        ValueError: a field of the wrong type or an unknown ``inherit``.
    """
    inherit = policy.get("inherit", "all")
    if inherit == "all":
        env = dict(base)
    elif inherit == "core":
        env = {name: value for name, value in base.items() if name in _CORE_ENV_VARS}
    elif inherit == "none":
        env = {}
    else:
        raise ValueError(
            f"unknown variant `{inherit}`, expected one of `core`, `all`, `none` "
            "at `envPolicy.inherit`"
        )
    ignore_defaults = policy.get("ignoreDefaultExcludes", False)
    if type(ignore_defaults) is not bool:
        raise ValueError("invalid type, expected a boolean at `envPolicy.ignoreDefaultExcludes`")
    exclude = _patterns(policy, "exclude")
    include_only = _patterns(policy, "includeOnly")
    overrides = policy.get("set", {})
    if type(overrides) is not dict or not all(type(value) is str for value in overrides.values()):
        raise ValueError("invalid type, expected a map of strings at `envPolicy.set`")
    if not ignore_defaults:
        exclude = [*_DEFAULT_ENV_EXCLUDES, *exclude]
    env = {name: value for name, value in env.items() if not _matches(name, exclude)}
    env.update(overrides)
    if include_only:
        env = {name: value for name, value in env.items() if _matches(name, include_only)}
    return env


def _patterns(policy: Mapping[str, Any], field: str) -> list[str]:
    value = policy.get(field, [])
    if type(value) is not list or not all(type(item) is str for item in value):
        raise ValueError(f"invalid type, expected a sequence of strings at `envPolicy.{field}`")
    return [item.upper() for item in value]


def _matches(name: str, patterns: list[str]) -> bool:
    upper = name.upper()
    return any(fnmatchcase(upper, pattern.upper()) for pattern in patterns)


# -- websocket endpoint --------------------------------------------------------------------------


def _token_digest(token: str | None, token_sha256: str | None) -> bytes | None:
    if token is not None and token_sha256 is not None:
        raise ValueError("pass token or token_sha256, not both")
    if token is not None:
        if not token.strip():
            raise ValueError("the token must not be empty")
        return hashlib.sha256(token.strip().encode()).digest()
    if token_sha256 is not None:
        try:
            digest = bytes.fromhex(token_sha256)
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("token_sha256 must be a 64-character hex SHA-256 digest")
        return digest
    return None


class _ReplayStream(trio.abc.Stream):
    """A stream that first returns bytes already read from the underlying stream."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


@attrs.frozen(kw_only=True)
class _Head:
    """A parsed HTTP request head and every byte read with it."""

    request: h11.Request
    connection: h11.Connection
    raw: bytes


_BAD_REQUEST: Final = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_HEAD_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"connection: close\r\ncontent-length: 0\r\n\r\n"
)


async def _read_head(stream: trio.abc.Stream) -> _Head | None:
    """Read one HTTP request head; answer 400 / 431 and return None if it is not one."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HTTP_HEAD_BYTES)
    raw = bytearray()
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            await stream.send_all(_HEAD_TOO_LARGE if exc.error_status_hint == 431 else _BAD_REQUEST)
            return None
        if event is h11.NEED_DATA:
            data = bytes(await stream.receive_some())
            raw += data
            connection.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            # h11 bounds only incomplete heads: a long head that came in one piece passes.
            end = raw.find(b"\r\n\r\n")
            if (len(raw) if end < 0 else end + 4) > MAX_HTTP_HEAD_BYTES:
                await stream.send_all(_HEAD_TOO_LARGE)
                return None
            return _Head(request=event, connection=connection, raw=bytes(raw))
        return None  # the peer closed the connection before a request


_CONNECTION_ERRORS: Final = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
    trio_websocket.ConnectionClosed,
)


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) says the peer went away."""
    return all(isinstance(leaf, _CONNECTION_ERRORS) for leaf in leaf_exceptions(exc))


def _header_values(request: h11.Request, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in request.headers if key == name]


def _header_tokens(request: h11.Request, name: bytes) -> set[str]:
    return {
        token.strip().lower()
        for value in _header_values(request, name)
        for token in value.split(",")
        if token.strip()
    }


class _WebSocketFront:
    """The HTTP side of the websocket port: routing, health, Origin and bearer checks."""

    def __init__(
        self,
        server: ExecServer,
        digest: bytes | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._server = server
        self._digest = digest
        self._ssl_context = ssl_context

    async def handle(self, tcp_stream: trio.SocketStream) -> None:
        """Serve one TCP connection; never raises (a bad client must not stop the server)."""
        stream: trio.abc.Stream = tcp_stream
        try:
            peer = tcp_stream.socket.getpeername()
            if self._ssl_context is not None:
                stream = trio.SSLStream(tcp_stream, self._ssl_context, server_side=True)
            await self._handle(stream, str(peer[0]), int(peer[1]))
        except Exception as exc:
            if _is_connection_error(exc):
                _logger.debug("websocket connection failed: %r", exc)
            else:
                _logger.exception("unexpected error on a websocket connection")
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, stream: trio.abc.Stream, address: str, port: int) -> None:
        deadline = trio.current_time() + HTTP_HEAD_TIMEOUT
        head: _Head | None = None
        upgrade = False  # set only once routing finished in time
        with trio.move_on_at(deadline):
            head = await _read_head(stream)
            upgrade = head is not None and await self._route(stream, head)
        if not upgrade or head is None:
            return  # answered, not HTTP, the peer left, or too slow
        async with trio.open_nursery() as nursery:  # for trio-websocket's reader task
            websocket: trio_websocket.WebSocketConnection | None = None
            with trio.move_on_at(deadline):
                ws_request = await trio_websocket.wrap_server_stream(
                    nursery,
                    _ReplayStream(stream, head.raw),
                    max_message_size=self._server.max_message_bytes,
                    receive_buffer_size=WEBSOCKET_RECEIVE_BYTES,
                )
                websocket = await ws_request.accept()
            if websocket is None:
                _logger.debug("websocket client %s:%s was too slow to upgrade", address, port)
            else:
                # No timeout here: a session lasts as long as the client wants. A lost
                # connection detaches its session; this call returns once the session
                # created here ended (resumed or not, see DETACH_TIMEOUT).
                transport = WebSocketTransport(websocket)
                await self._server._serve(
                    transport, _websocket_parse_prefix(address, port), detachable=True
                )
            nursery.cancel_scope.cancel()

    async def _route(self, stream: trio.abc.Stream, head: _Head) -> bool:
        """Answer anything that is not an acceptable upgrade; True to go on with the upgrade."""
        request = head.request
        target = request.target.split(b"?", 1)[0]
        method = request.method
        if _header_values(request, b"origin"):
            await _respond(stream, head, 403)
        elif target == b"/readyz":
            if method in (b"GET", b"HEAD"):
                await _respond(stream, head, 200)
            else:
                await _respond(stream, head, 405, headers=[("allow", "GET,HEAD")])
        elif target != b"/":
            await _respond(stream, head, 404)
        elif method != b"GET":
            await _respond(stream, head, 405, headers=[("allow", "GET")])
        elif (problem := _upgrade_problem(request)) is not None:
            await _respond(stream, head, 400, problem)
        elif (denied := self._auth_problem(request)) is not None:
            await _respond(stream, head, 401, denied)
        else:
            return True
        return False

    def _auth_problem(self, request: h11.Request) -> str | None:
        if self._digest is None:
            return None
        values = _header_values(request, b"authorization")
        if not values:
            return "missing websocket bearer token"
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "invalid authorization header"
        digest = hashlib.sha256(token.encode("latin-1")).digest()
        if not hmac.compare_digest(digest, self._digest):
            return "invalid websocket bearer token"
        return None


def _upgrade_problem(request: h11.Request) -> str | None:
    """Why this is not a websocket upgrade request (the reference's wording), or None."""
    if "upgrade" not in _header_tokens(request, b"connection"):
        return "Connection header did not include 'upgrade'"
    if "websocket" not in _header_tokens(request, b"upgrade"):
        return "`Upgrade` header did not include 'websocket'"
    if "13" not in _header_tokens(request, b"sec-websocket-version"):
        return "`Sec-WebSocket-Version` header did not include '13'"
    if not _header_values(request, b"sec-websocket-key"):
        return "`Sec-WebSocket-Key` header is missing"
    return None


async def _respond(
    stream: trio.abc.Stream,
    head: _Head,
    status: int,
    body: str = "",
    *,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """Send a complete response and mark the connection for closing."""
    data = body.encode()
    fields = [*(headers or []), ("content-length", str(len(data))), ("connection", "close")]
    if data:
        fields.insert(0, ("content-type", "text/plain; charset=utf-8"))
    connection = head.connection
    reason = http.HTTPStatus(status).phrase.encode()
    out = connection.send(h11.Response(status_code=status, headers=fields, reason=reason))
    if data and head.request.method != b"HEAD":
        out = (out or b"") + (connection.send(h11.Data(data=data)) or b"")
    out = (out or b"") + (connection.send(h11.EndOfMessage()) or b"")
    await stream.send_all(out)


async def _non_loopback_addresses(host: str | None, port: int) -> list[str]:
    """The addresses ``open_tcp_listeners(port, host=host)`` would bind that are not loopback."""
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    exposed: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if not _is_loopback(address) and address not in exposed:
            exposed.append(address)
    return exposed


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _url(listener: trio.SocketListener, *, tls: bool) -> str:
    address, port, *_ = listener.socket.getsockname()
    host = f"[{address}]" if ":" in address else address
    return f"{'wss' if tls else 'ws'}://{host}:{port}"


async def serve_websocket(
    host: str,
    port: int,
    *,
    token: str | None = None,
    token_sha256: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server: ExecServer | None = None,
    allow_unauthenticated_non_loopback: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the exec server on a websocket endpoint until cancelled or stopped.

    The websocket is served on path ``/``; ``GET /readyz`` answers 200 without auth; any
    request carrying an ``Origin`` header is refused with 403 (no browser may drive a
    process server); other paths are 404. Each websocket connection is one session of
    ``server``.

    Args:
        host: the IP address to bind, e.g. ``"127.0.0.1"``.
        port: the TCP port; 0 picks a free one.
        token: if given, the upgrade must carry ``Authorization: Bearer <token>``; the
            check compares SHA-256 digests in constant time. A missing or wrong token is
            refused with 401 and a ``text/plain`` reason, as the reference does.
        token_sha256: the hex SHA-256 digest of the token, instead of ``token``.
        ssl_context: a server-side :class:`ssl.SSLContext` to serve ``wss://``.
        server: the :class:`ExecServer` to use (default: a new one).
        allow_unauthenticated_non_loopback: serve without a token on an address that is
            not loopback. By default that is refused before binding: anyone who can reach
            the port could run any command. TLS alone does not authenticate clients.
        task_status: receives the bound URL, ``ws://IP:PORT`` (``wss://`` with TLS).

    Raises:
        ValueError: both or a malformed token given; or no token, ``host`` is not a
            loopback address (``host`` resolves to an address outside 127.0.0.0/8 and
            ``::1``; ``""`` is every address) and ``allow_unauthenticated_non_loopback``
            is false. Raised before anything is bound.
        OSError: the address cannot be resolved or bound.

    Returns once ``server`` was stopped with :meth:`ExecServer.aclose` (the graceful stop:
    final notifications, then close code 1001): the listener is closed as soon as the stop
    begins, and this returns once it is done.

    **Cancellation:** the listener is closed and every session ends: each child process
    group is terminated (SIGTERM, SIGKILL after the server's ``session_end_grace``) and
    reaped before Cancelled propagates; no process is left behind. Connections are
    dropped without a close handshake (clients see 1006 and may try to resume), as the
    reference server does on SIGTERM; use :meth:`ExecServer.aclose` to tell them.
    """
    digest = _token_digest(token, token_sha256)
    if digest is None and not allow_unauthenticated_non_loopback:
        exposed = await _non_loopback_addresses(host, port)
        if exposed:
            raise ValueError(
                f"refusing to serve without authentication on {', '.join(exposed)}, "
                "which is not a loopback address: anyone who can reach it could run "
                "commands. Pass `token` (or `token_sha256`), or "
                "`allow_unauthenticated_non_loopback=True` to allow it explicitly."
            )
    server = server or ExecServer()
    front = _WebSocketFront(server, digest, ssl_context)
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(_url(listeners[0], tls=ssl_context is not None))
    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as accepting:
            accepting.start_soon(
                partial(trio.serve_listeners, front.handle, listeners, handler_nursery=handlers)
            )
            await server._stopping.wait()
            accepting.cancel_scope.cancel()  # closes the listeners
        # The connections end by themselves (see ExecServer.aclose); what is left are
        # requests that had not become websocket sessions.
        await server._stopped.wait()
        handlers.cancel_scope.cancel()


# -- stdio ---------------------------------------------------------------------------------------


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
