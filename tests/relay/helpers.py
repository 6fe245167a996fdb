"""The relay of the conformance suite and of the relay tests: an exec server over a
:class:`~trio_exec.RemoteBackend`.

:func:`open_relay` gives a client of one hop: ``RemoteBackend -> ExecServer(backend=
RemoteBackend) -> ExecServer(LocalBackend)``, every link a websocket on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

import trio_exec as tx
from trio_exec._util import open_service_nursery

__all__ = ["open_relay", "serve_relay"]


async def serve_relay(
    backend: tx.ExecBackend, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``backend`` (the relay's inner backend) on a websocket on 127.0.0.1 until
    cancelled; ``task_status`` gets its URL. The caller keeps ``backend`` open meanwhile."""
    server = tx.ExecServer(backend=backend)
    await tx.serve_websocket("127.0.0.1", 0, server=server, task_status=task_status)


@asynccontextmanager
async def open_relay(inner_url: str | None = None) -> AsyncIterator[tx.RemoteBackend]:
    """A backend whose processes run through a relay to an inner exec server.

    ``inner_url`` is that server's; by default one runs in this process for the block.
    The links are closed inside out: the client, then the relay (its sessions end, each
    process through the inner connection), then the inner connection and server.

    **Cancellation:** as the servers' and backends': every process is reaped.
    """
    async with open_service_nursery() as inner_servers:
        if inner_url is None:
            inner_url = await inner_servers.start(partial(tx.serve_websocket, "127.0.0.1", 0))
        async with tx.connect(inner_url) as inner, open_service_nursery() as relays:
            relay_url: str = await relays.start(serve_relay, inner)
            async with tx.connect(relay_url) as backend:
                yield backend
            relays.cancel_scope.cancel()
        inner_servers.cancel_scope.cancel()
