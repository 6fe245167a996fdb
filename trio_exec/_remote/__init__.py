"""RemoteBackend: processes on an exec server, over any message transport.

Theory of operation
-------------------
One connection to an exec server (``trio-exec serve`` or the reference ``codex exec-server``
0.169) is one :class:`RemoteBackend`. :func:`open_remote_backend` runs, in one nursery:

* the **writer**, which sends queued requests one at a time, so a cancelled caller never
  leaves a half-sent message on the transport;
* the **reader**, which takes every incoming message in order and feeds it to the
  connection's :class:`~trio_exec._protocol.ClientConnection` (the handshake, request
  matching, the ERROR state): a response completes its call (matched by id), a
  notification is routed by ``processId`` to its process, an unexpected request from the
  server is answered with a -32601 error, and a malformed message or a response to an
  unknown id breaks the connection (a protocol error);
* one **publisher** per process, which moves the process's ordered events into its
  :class:`~trio_exec._log.ProcessLog`.

The writer and the reader are those of :class:`~trio_exec._rpc.RpcPeer`, the symmetric
RPC peer that the server's connections run too.

These tasks are shielded from a cancellation of the scope around the backend block until
that block is left: the process blocks inside it shut down (shielded) through a working
connection, as a local process's pumps outlive the cancellation of its block.

Every request is an awaitable call of its own. At most :data:`MAX_IN_FLIGHT_REQUESTS`
are outstanding at once (a :class:`trio.Semaphore`): the reference server deadlocks when
about 230 requests are pipelined. A call holds its slot until the server answered it, even
when its caller was cancelled and abandoned it, so the cap is what the server sees.

Ordering. The route of a process is registered *before* ``process/start`` is sent, because
the reference sends output (even exit and close) before the start response. Per process,
an ordering buffer (:class:`~trio_exec._protocol.EventOrder`, sans-IO) releases events
strictly in ``seq`` order (like the reference client's ``OrderedSessionEvents``): an event
that arrives early waits for the ones before it (at most :data:`MAX_REORDER_EVENTS` /
:data:`MAX_REORDER_BYTES`), a duplicate or an event at or below the last ordered seq is
dropped, and nothing is taken after ``closed``; a broken rule (an empty chunk, a second
exit, a close before the exit, a hole past the bounds) fails the process with
``protocol error: ...``. The log therefore numbers events exactly as the server did.
Notifications for unknown processes and unknown notification methods are ignored.

Backpressure. The publisher appends output the way a local pump does: it waits while a
subscription that wants the chunk's stream is ``retain_bytes`` behind (a subscription to
stdout only never holds back stderr, see :class:`~trio_exec._log.ProcessLog`).
Ordered events wait for it in a queue; when the queues of a connection hold more than
:data:`READ_AHEAD_BYTES` of output, the reader stops reading, which holds back the
server and, through it, the child. Memory stays bounded and no output is lost, however
slow the consumer. Since a process's events are published in ``seq`` order, a chunk
that waits also delays the events after it, of any stream: an unread stdout holds back
stderr written after stdout went ``retain_bytes`` past the reader, where locally only
the stdout pipe would stop (a child blocked writing stdout writes no stderr either).

Failure. When the transport breaks (or the server breaks the protocol) and the session is
not resumed (below), every pending and every later call raises :class:`ConnectionLost`,
and every open process's log fails with ``exec-server transport disconnected: <reason>``
(after what was already received is put in the log: a process whose ``closed`` arrived
still ends with Closed), so its subscriptions yield ``Failed`` and end, and reads return
``closed=True`` with ``failure`` set. Nothing waits forever.

Resume. A backend made by :func:`connect` (websocket) survives a lost connection: the
**recovery** task reconnects and sends ``initialize {resumeSessionId}`` until it succeeds
or :data:`RESUME_DEADLINE` passes, waiting between attempts with exponential backoff and
jitter (:data:`RESUME_BACKOFF_INITIAL`, :data:`RESUME_BACKOFF_MAX`); -32010 (the server
has not noticed yet that the old connection is dead) is retried like a failed connect,
-32600 (the session expired) is final. Meanwhile the routes and logs stay as they are. Once
resumed, the server sends live notifications for new events, and for each open process the
recovery reads what was missed, ``process/read afterSeq=<last ordered seq>`` in pages of
:data:`CATCH_UP_READ_BYTES` until it meets the live events (then one more read, with
``maxBytes: 0``, tells a trio_exec server that it may stop holding the output back), and
pushes the result into the same ordering buffer, which drops duplicates: consumers see one
stream without gaps or duplicates. A seq that was neither returned nor explained by the read's exit status is
output the server evicted meanwhile: that process's log fails with ``... failed to recover
process ...`` and the process is terminated; so it does when the session cannot be resumed
in time (then for every process, and the backend is broken for good). The backend's
state is one :class:`~trio_exec._remote.connection.LinkState`, changed in one place and only
along its transition table: ``CONNECTING`` (until ``initialize`` is answered), ``READY``,
then on a loss ``RESUMING`` (no connection: calls wait), ``CATCHING_UP`` (resumed: calls go
on the new connection while the catch-up reads run; a loss now goes back to
``RESUMING``) and ``READY`` again, or ``FAILED`` with its reason, which every later call
raises (leaving the backend block ends there too). ``repr`` shows it. Calls during the
outage:

* a call made during the outage waits for the resume and is then sent (or raises
  :class:`ConnectionLost` if the resume fails);
* a call in flight when the connection broke is sent again after the resume when that is
  safe: ``process/write`` (same ``writeId``: the server writes it once), ``process/read``,
  ``process/terminate`` and ``process/resize``; ``process/signal`` and
  ``process/closeStdin`` raise :class:`ConnectionLost`, since they may or may not have
  been carried out (a signal must not be delivered twice);
* a ``process/start`` in flight: after the resume, a read tells whether the server has
  the process; if it has, the start succeeded (the missed events are read), otherwise the
  start is sent again.

Transports given to :func:`open_remote_backend` (stdio, a command's pipes) are never
resumed: their session ends with them. Nor is a websocket that the server closed with
code 1001 (Going Away: a trio_exec server stopping gracefully, e.g. ``trio-exec serve``
on SIGTERM), since the server ended the session: it sent the final ``exited`` and
``closed`` of its processes first, so each process ends with them, or at once with
``exec-server transport disconnected: the exec server shut down ...``. A connection
dropped without a close handshake (1006, as the reference server does on SIGTERM) is
resumed as any lost connection.

Rules
-----
* ``read()`` is served from the local log, which mirrors what the server pushed: it is
  fast, needs no round trip, keeps the local read semantics exactly (including
  ``first_retained_seq``), and never blocks the connection (the reference processes one
  request at a time per connection, so a long-poll ``process/read`` would stall every
  other call).
* One connection carries every process and every response: a subscription that stays far
  behind eventually stalls the whole connection (see :data:`READ_AHEAD_BYTES`). Consume
  each process's events in their own task, or close a subscription you stopped reading.
* An operation needing a protocol extension the server did not advertise raises
  :class:`UnsupportedOperation` before anything is sent.

Layout
------
Each module imports only modules listed before it (``process`` names ``backend`` in its
type hints only):

* ``errors``: what a failed ``process/start`` raises; which exceptions mean the transport
  went away.
* ``rpc``: ``_RpcClient``, the client's :class:`~trio_exec._rpc.RpcPeer` (writer and
  reader of one connection, requests matched to their responses) with its cap on
  requests in flight and its dispatch of notifications.
* ``route``: ``_Route``, which feeds one process's notifications through its
  :class:`~trio_exec._protocol.EventOrder` (``seq`` order, catch-up splice) and publishes
  what it releases into the log; ``_Budget``, the read-ahead bound of a connection.
* ``process``: :class:`RemoteProcess`.
* ``connection``: ``LinkState`` and its transition table (``_Link``, sans-IO);
  ``_ConnectionState``, the state of a backend's connection, the call path that waits for
  a resume, and the dispatch of notifications to the routes.
* ``resume``: ``_Resuming``, opening connections and, when one is lost, resuming the
  session (attempts, backoff, catch-up) or failing it for good.
* ``backend``: :class:`RemoteBackend` (over ``_Resuming``, over ``_ConnectionState``), its
  public state and ``open_process``.
* ``connect``: :func:`open_remote_backend` and :func:`connect`.
"""

from __future__ import annotations

from .._protocol import MAX_REORDER_BYTES, MAX_REORDER_EVENTS
from .backend import FALLBACK_CWD, RemoteBackend, RemoteStatistics
from .connect import connect, open_remote_backend
from .connection import INITIALIZE_TIMEOUT
from .process import SHUTDOWN_TIMEOUT, WRITE_CHUNK_BYTES, RemoteProcess
from .resume import (
    CATCH_UP_READ_BYTES,
    RESUME_ATTEMPT_TIMEOUT,
    RESUME_BACKOFF_INITIAL,
    RESUME_BACKOFF_JITTER,
    RESUME_BACKOFF_MAX,
    RESUME_DEADLINE,
)
from .route import READ_AHEAD_BYTES
from .rpc import CLOSE_TIMEOUT, DISCONNECTED, MAX_IN_FLIGHT_REQUESTS

__all__ = [
    "CATCH_UP_READ_BYTES",
    "CLOSE_TIMEOUT",
    "DISCONNECTED",
    "FALLBACK_CWD",
    "INITIALIZE_TIMEOUT",
    "MAX_IN_FLIGHT_REQUESTS",
    "MAX_REORDER_BYTES",
    "MAX_REORDER_EVENTS",
    "READ_AHEAD_BYTES",
    "RESUME_ATTEMPT_TIMEOUT",
    "RESUME_BACKOFF_INITIAL",
    "RESUME_BACKOFF_JITTER",
    "RESUME_BACKOFF_MAX",
    "RESUME_DEADLINE",
    "SHUTDOWN_TIMEOUT",
    "WRITE_CHUNK_BYTES",
    "RemoteBackend",
    "RemoteProcess",
    "RemoteStatistics",
    "connect",
    "open_remote_backend",
]
