"""The entry points: :func:`open_remote_backend` over a given transport and :func:`connect`
to a websocket, both running a :class:`~trio_exec._remote.backend.RemoteBackend`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from .._backend import check_seconds
from .._transport import MessageTransport, open_websocket_transport
from .._util import open_service_nursery
from .backend import RemoteBackend
from .resume import RESUME_DEADLINE, _Connector

__all__ = ["connect", "open_remote_backend"]


@asynccontextmanager
async def _borrowed(transport: MessageTransport) -> AsyncIterator[MessageTransport]:
    """A connector for a transport the caller owns (and closes)."""
    yield transport


@asynccontextmanager
async def open_remote_backend(
    transport: MessageTransport, *, client_name: str = "trio-exec"
) -> AsyncIterator[RemoteBackend]:
    """Run the protocol over an open transport and yield the :class:`RemoteBackend`.

    Performs ``initialize`` (at most :data:`INITIALIZE_TIMEOUT` seconds) and
    ``initialized``, and records the server's ``sessionId`` and advertised ``extensions``.
    The transport stays the caller's: it is not closed here.

    Raises:
        ConnectionLost: the transport broke, or initialize got no answer in time.
        RemoteError: the server refused ``initialize``.

    Leaving the block fails whatever still uses the connection with
    :class:`ConnectionLost` and stops its tasks. An exception of the block propagates
    as itself.

    **Cancellation:** the connection's tasks are shielded from it until the block is
    left, so that the process blocks inside shut down through a working connection (a
    running child is terminated, and leaving waits for the server's answer, not for a
    timeout); then they are stopped. Nothing is left behind.
    """
    async with _open_backend(
        partial(_borrowed, transport), client_name=client_name, resume_deadline=0.0
    ) as backend:
        yield backend


@asynccontextmanager
async def _open_backend(
    connector: _Connector, *, client_name: str, resume_deadline: float
) -> AsyncIterator[RemoteBackend]:
    """The body of :func:`open_remote_backend` and :func:`connect`."""
    backend = RemoteBackend(connector, client_name=client_name, resume_deadline=resume_deadline)
    # An exception of the block must not cut the close handshakes short: wait_on_error.
    async with open_service_nursery(wait_on_error=True) as host:
        await host.start(backend._run_tasks)
        try:
            assert backend._connections is not None
            # Until it reports started, the connecting task is cancelled with this one.
            await backend._connections.start(partial(backend._run_connection, first=True))
            await backend._initialize(client_name)
            yield backend
        finally:
            # The process blocks nested in this one are left: every RPC client is
            # closed, and the backend's tasks (shielded until now) end.
            backend._close("the client closed the connection")
            backend._left.set()


@asynccontextmanager
async def connect(
    url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    client_name: str = "trio-exec",
    resume_deadline: float = RESUME_DEADLINE,
) -> AsyncIterator[RemoteBackend]:
    """Connect to an exec server's websocket and yield a :class:`RemoteBackend`.

    Args:
        url: ``ws://host:port`` or ``wss://host:port``.
        token: sent as ``Authorization: Bearer <token>``.
        ssl_context: for ``wss://``; default: the system's trust store.
        client_name: sent in ``initialize``.
        resume_deadline: how long, in seconds, to try to resume the session after the
            connection is lost (:data:`RESUME_DEADLINE`); 0 never resumes.

    Raises:
        ConnectionLost: the server cannot be reached, refused the upgrade, or did not
            answer ``initialize`` in time.
        ValueError: ``url`` is not a websocket URL, or ``resume_deadline`` is negative.

    Processes opened on the backend must be left before the ``connect`` block is (the
    usual nesting does this). If the connection breaks, the backend reconnects and resumes
    the session (see the package docstring): consumers see no gap and no duplicate, calls
    wait for the resume. If that fails (or ``resume_deadline`` is 0), every pending and
    later call raises :class:`ConnectionLost` and every open process's events end with
    ``Failed``. A server that shut down gracefully (close code 1001) is not resumed: each
    process ends with the events the server sent before closing, and the failure says
    ``the exec server shut down``.

    **Cancellation:** as with :func:`open_remote_backend`, the connection keeps working,
    shielded, until the process blocks inside were left (their children terminated);
    then it is closed, the close handshake taking at most :data:`CLOSE_TIMEOUT` seconds.
    """
    check_seconds("resume_deadline", resume_deadline)
    connector = partial(open_websocket_transport, url, token=token, ssl_context=ssl_context)
    async with _open_backend(
        connector, client_name=client_name, resume_deadline=resume_deadline
    ) as backend:
        yield backend
