"""The exec server: JSON-RPC over a message transport, adapted to any :class:`ExecBackend`.

Layout
------
One concern per module; each module imports only those listed before it (a module that
names a type of a later one, the session its server and connection, imports it for type
checking only):

* :mod:`.environment`: what ``initialize`` tells of the server's side, and the environment
  a child starts with (``env``, the ``envPolicy`` rules);
* :mod:`.env_methods`: the environment methods codex asks of a remote environment
  (``environment/*``, ``environmentConfig/read``, ``fs/getMetadata``, ``fs/watchMissing``);
* :mod:`.session`: sessions, their process tables and entries, and the holds and pins that
  keep output retained for a resume;
* :mod:`.methods`: the ``process/*`` methods, performed on a session's table;
* :mod:`.connection`: one connection: the server's side of the RPC peer
  (:class:`~trio_exec._rpc.RpcPeer`, with the rules of a
  :class:`~trio_exec._protocol.ServerConnection`), admission, handler and forwarder tasks;
* :mod:`.server`: :class:`ExecServer` (its connections and sessions, statistics, graceful
  stop) and :func:`serve_stdio`;
* :mod:`.websocket`: the websocket port (HTTP head, routing, Origin and bearer checks, the
  upgrade) and :func:`serve_websocket`.

Theory of operation
-------------------
One :class:`ExecServer` serves many connections. ``initialize`` creates a *session* (or takes
one back, see below), which owns a process table (process ids are scoped to the session, as
in the reference server); a session is attached to at most one connection at a time. A
connection runs these tasks in one nursery:

* the **reader** (of the connection's :class:`~trio_exec._rpc.RpcPeer`) receives frames and
  feeds them to the connection's :class:`~trio_exec._protocol.ServerConnection`, whose
  events it dispatches *in arrival order*. The handshake (``initialize`` /
  ``initialized``) and every decoding error are decided there, synchronously, and
  answered inline, so their effect is ordered with the frames that follow; only
  ``initialize`` waits, inline, for the session it creates or resumes. Every other
  request gets its own **handler** task, so a long-poll ``process/read`` never delays
  another request. A
  semaphore bounds the handlers in flight (:data:`MAX_IN_FLIGHT_REQUESTS`): a request
  beyond it is answered at once with a -32600 error (the client may retry it), so memory
  stays bounded and the connection keeps flowing.
* the **writer** (of the peer too) is the only task that sends on the transport.
  Everything else puts encoded messages on the peer's outbox, bounded here
  (:data:`OUTBOUND_QUEUE_MESSAGES`), each with what to do once the transport took it
  (the resume pins of ``_Connection._forward``). Reading and
  writing are independent, so pipelining any number of requests never deadlocks (the
  reference's single-task pump deadlocks near 230 pipelined requests).
* one **forwarder** per process of the attached session turns the events of a
  subscription into ``process/output``, ``process/exited`` and ``process/closed``
  notifications once the start response is queued. Notifications of a process are
  therefore sent after its start response and in seq order. The subscription holds back
  the child when the client reads slowly (see :mod:`trio_exec._log`): nothing is
  dropped and memory stays bounded.

The **process tasks** belong to the session, in a nursery hosted by the ``_serve`` call of
the connection that created it: one per started process owns the process's
``open_process`` block. When the process is closed, the block is left (the child is
reaped and what is left of its process group is killed) and its entry stays readable, its
id reserved, for :data:`CLOSED_PROCESS_RETENTION`. When the session ends, every process
block is left, which terminates the child's process group (SIGTERM, SIGKILL after
:data:`SESSION_END_GRACE`) and reaps it.

Over any backend. The server is an adapter from the protocol to the
:class:`~trio_exec.ExecBackend` / :class:`~trio_exec.ExecProcess` interface, and uses
nothing else of its backend (a :class:`LocalBackend` by default): ``process/start`` is
``backend.open_process``; the forwarders and holds are subscriptions of the process
(:meth:`~trio_exec.ExecProcess.subscribe`, a cursor into its log); ``process/read`` is
:meth:`~trio_exec.ExecProcess.read`; ``process/resize`` asks
:attr:`~trio_exec.ExecProcess.tty`; ``initialize``'s ``environmentInfo`` is the backend's
:attr:`~trio_exec.ExecBackend.environment_info` when it has one. So a
:class:`RemoteBackend` serves too: the server is then a *relay* to another exec server
(``RemoteBackend -> ExecServer(backend=RemoteBackend) -> ExecServer``), through which
the conformance suite passes. What a relay does differently:

* The backend is the caller's: the server never opens or closes it. Keep it open until
  the server stopped serving (leaving it first fails the processes, below).
* The children run on the inner server: a client's defaults (working directory,
  environment) are that side's, since ``environmentInfo`` is the inner server's and an
  ``envPolicy`` that inherits everything becomes ``env=None`` on the backend. A policy
  that filters the environment cannot be passed through the interface; it applies to
  the relay's own environment.
* Leaving a process block, a session's end and ``process/terminate`` go through the
  backend, which terminates and SIGKILLs the group on the inner server. When the inner
  server lacks an extension, the relay still advertises it (the extensions are the
  server's) and answers: SIGKILL (a terminate without ``graceMs``, the kill of a group) is
  the backend's terminate, which kills the group at once on such a server;
  ``graceMs`` is ignored there; any other operation the backend cannot do (another
  signal, ``closeStdin``, ``resize``, a ``windowSize``) is -32600 with the backend's
  reason.
* A resumed inner connection is invisible to the relay's clients (calls wait for it).
  When the backend loses a process for good (its connection broke and could not be
  resumed), the process's events end with ``Failed``, for which the protocol has no
  notification, and the backend's errors are answered -32603: the session's attached
  connection is dropped, so that its client resumes the session and its catch-up
  ``process/read`` reports the ``failure`` (a trio_exec client fails each process the
  backend lost with it, and goes on with the others). A client that cannot resume
  (stdio) sees its session end.
* One backend connection carries every session's processes: a client that reads
  slowly holds back that connection, and so the other sessions' processes, once the
  backend's read-ahead bound is reached (see :mod:`trio_exec._remote`).

Connection loss and resume (extension ``resume``). When a websocket connection ends (the
peer closed it or the transport broke), its session is *detached*, not ended: the
processes keep running, the forwarders stop, and a **hold** (a subscription that nobody
receives from) pins the output retained at that moment, so whatever the client had not
received yet is still there when it comes back. (While attached, each forwarder already
pins what waits in the outbound queue and the last output it sent, which may still be in
flight: up to half of ``retain_bytes``, always leaving room for a whole next chunk, so
none with a retention below the 128 KiB read chunk.) While detached, a child that writes
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
* Output notifications carry up to 128 KiB, the local read chunk (the reference: 8 KiB).
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
* ``envPolicy`` follows the reference's rules (see :func:`.environment._policy_env`) but
  takes missing fields as their defaults (the reference requires all five), and no
  variable is always left out (the reference drops its own launch variables).
  ``environmentInfo`` carries the fields this server can fill honestly (see
  :func:`.environment._environment_info`).
* Of the reference's other methods, those codex needs of a remote environment are
  answered (:mod:`.env_methods`): ``environment/status``, ``environment/info``,
  ``environmentConfig/read`` (no layers: this server holds no codex configuration),
  ``fs/getMetadata`` and ``fs/watchMissing`` (polled, within
  :data:`MAX_WATCHES_PER_SESSION` watches of :data:`MAX_WATCHED_PATHS` paths).
"""

from __future__ import annotations

from .connection import MAX_IN_FLIGHT_REQUESTS, OUTBOUND_QUEUE_MESSAGES, SERVER_EXTENSIONS
from .env_methods import MAX_WATCHED_PATHS, MAX_WATCHES_PER_SESSION, WATCH_POLL_INTERVAL
from .environment import _policy_env as _policy_env
from .methods import CLOSED_PROCESS_RETENTION, MAX_PROCESSES_PER_SESSION, MAX_READ_WAIT
from .server import GRACEFUL_STOP_TIMEOUT, ExecServer, ServerStatistics, serve_stdio
from .session import CATCH_UP_HOLD, DETACH_TIMEOUT, SESSION_END_GRACE, WRITE_ID_MEMORY
from .session import _RecentIds as _RecentIds
from .websocket import HTTP_HEAD_TIMEOUT, MAX_HTTP_HEAD_BYTES, serve_websocket
from .websocket import _is_loopback as _is_loopback
from .websocket import _token_digest as _token_digest

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
    "MAX_WATCHED_PATHS",
    "MAX_WATCHES_PER_SESSION",
    "OUTBOUND_QUEUE_MESSAGES",
    "SERVER_EXTENSIONS",
    "SESSION_END_GRACE",
    "WATCH_POLL_INTERVAL",
    "WRITE_ID_MEMORY",
    "ExecServer",
    "ServerStatistics",
    "serve_stdio",
    "serve_websocket",
]
