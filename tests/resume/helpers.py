"""Helpers of the resume tests: detachable connections to a server, a byte pattern, proxies."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from trio_exec._server import ExecServer, serve_websocket
from trio_exec._transport import MEMORY_TRANSPORT_BUFFER, MemoryTransport, memory_transport_pair

from ..server.helpers import Client
from .proxy import CuttingProxy

TIMEOUT: Final = 20.0
"""Bound on any single wait in these tests; a hang fails the test instead of the run."""

LINE_BYTES: Final = 16


def pattern(lines: int, start: int = 0) -> bytes:
    """``lines`` numbered lines of 16 bytes each: no two chunks of it look alike, so a
    lost, repeated or misplaced chunk always shows."""
    return b"".join(b"%015d\n" % number for number in range(start, start + lines))


def pattern_writer(lines: int, *, pace: float = 0.0, batch: int = 65536) -> list[str]:
    """argv of a child that writes :func:`pattern` ``(lines)`` to stdout, ``batch`` lines
    per write, sleeping ``pace`` seconds between writes."""
    code = (
        "import sys, time\n"
        "out = sys.stdout.buffer\n"
        f"n, batch, pace = {lines}, {batch}, {pace}\n"
        "i = 0\n"
        "while i < n:\n"
        "    k = min(n, i + batch)\n"
        '    out.write(b"".join(b"%015d\\n" % j for j in range(i, k)))\n'
        "    out.flush()\n"
        "    i = k\n"
        "    if pace:\n"
        "        time.sleep(pace)\n"
    )
    return [sys.executable, "-c", code]


class Connection:
    """One detachable in-memory connection to an :class:`ExecServer`, with a raw client."""

    def __init__(self, client: Client, transport: MemoryTransport) -> None:
        self.client = client
        self.transport = transport

    async def cut(self) -> None:
        """Drop the connection (the server sees it end, as a websocket that broke)."""
        await self.transport.aclose()

    async def initialize(self, resume: str | None = None) -> dict[str, Any]:
        """``initialize`` (and ``initialized``); with ``resume``, take that session back."""
        params: dict[str, Any] = {"clientName": "resume-test"}
        if resume is not None:
            params["resumeSessionId"] = resume
        result: dict[str, Any] = await self.client.call("initialize", params)
        await self.client.notify("initialized")
        return result


class Host:
    """Serves detachable connections of one server in a nursery (see :func:`open_host`)."""

    def __init__(self, server: ExecServer, nursery: trio.Nursery) -> None:
        self.server = server
        self._nursery = nursery

    def connect(
        self, *, detachable: bool = True, buffer: int = MEMORY_TRANSPORT_BUFFER
    ) -> Connection:
        client_end, server_end = memory_transport_pair(buffer)
        client = Client(client_end)
        self._nursery.start_soon(
            lambda: self.server.serve_connection(server_end, detachable=detachable)
        )
        self._nursery.start_soon(client.run_reader)
        return Connection(client, client_end)


@asynccontextmanager
async def open_host(server: ExecServer) -> AsyncIterator[Host]:
    """A :class:`Host`; leaving cancels it, which ends every session (processes reaped)."""
    async with trio.open_nursery() as nursery:
        yield Host(server, nursery)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_proxied_server(server: ExecServer) -> AsyncIterator[CuttingProxy]:
    """``serve_websocket(server)`` on 127.0.0.1 behind a :class:`CuttingProxy`; connect to
    ``proxy.url``. Leaving stops both (every session ends, its processes reaped)."""
    async with trio.open_nursery() as nursery:

        async def serve(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
            await serve_websocket("127.0.0.1", 0, server=server, task_status=task_status)

        url: str = await nursery.start(serve)
        proxy = CuttingProxy(int(url.rsplit(":", 1)[1]))
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()
