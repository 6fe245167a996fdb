"""Transport benchmarks: stdio against websocket, and TLS against plain websocket, in one run.

Every server is our exec server in a process of its own, driven by the same client
(trio_exec's ``RemoteBackend``); only the transport differs:

* **stdio vs websocket**: ``python -m trio_exec serve --listen stdio`` through
  :func:`trio_exec.connect_command` (NDJSON over the child's pipes) against ``python -m
  trio_exec serve`` (``ws://127.0.0.1``) through :func:`trio_exec.connect`: sequential
  start-to-closed round trips of ``/bin/true``, and output throughput of 64 MiB from
  ``head -c``. Target: stdio at least 0.9x websocket (pipes have no framing or masking).
* **wss vs ws**: ``serve_websocket`` with and without a server ``SSLContext`` (a trustme
  certificate for 127.0.0.1), run in a subprocess by a small ``python -c`` script (the same
  script for both, so only TLS differs): the same round trips and throughput. Target:
  round trips at least 0.8x (TLS costs a handshake per connection, not per call) and
  throughput at least 0.4x (every byte is encrypted twice over loopback).

Ratios are stdio / ws and wss / ws for rates (higher is better); each figure is the best of
:data:`REPEATS` runs, alternating the two sides, each run on a fresh server.
"""

from __future__ import annotations

import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import trio
import trustme

import trio_exec as tx
from trio_exec._command import connect_command
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import open_server_process

from ._common import exit_status, report, sized, timed

ROUND_TRIPS = sized(200, 2)
THROUGHPUT_BYTES = sized(64 * 1024 * 1024, 1024 * 1024)
REPEATS = sized(3, 1)

STDIO_SERVER = [sys.executable, "-m", "trio_exec", "serve", "--listen", "stdio"]
WS_SERVER = [sys.executable, "-m", "trio_exec", "serve"]

# serve_websocket in a child interpreter, with TLS when given a PEM file (key and chain).
# It prints its URL with the ws:// scheme either way (open_server_process waits for a line
# starting with ws://); the client then picks the scheme.
_SERVE_SCRIPT = """
import ssl, sys, functools, trio
from trio_exec import serve_websocket

async def main():
    context = None
    if len(sys.argv) > 1:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[1])
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            functools.partial(serve_websocket, "127.0.0.1", 0, ssl_context=context)
        )
        print("ws://" + url.partition("://")[2], flush=True)

trio.run(main)
"""

Connector = Callable[[], AbstractAsyncContextManager[tx.ExecBackend]]


async def drain(backend: tx.ExecBackend, argv: list[str]) -> list[tx.Event]:
    async with backend.open_process(argv) as proc:
        return [event async for event in proc.events]


async def round_trips(backend: tx.ExecBackend) -> float:
    async def run() -> None:
        for _ in range(ROUND_TRIPS):
            events = await drain(backend, ["/bin/true"])
            assert isinstance(events[-1], tx.Closed), events

    return ROUND_TRIPS / await timed(run)


async def throughput(backend: tx.ExecBackend) -> float:
    events: list[tx.Event] = []

    async def run() -> None:
        events.extend(await drain(backend, ["head", "-c", str(THROUGHPUT_BYTES), "/dev/zero"]))

    seconds = await timed(run)
    summary = check_event_stream(events)
    assert sum(len(data) for data in summary.output.values()) == THROUGHPUT_BYTES
    return THROUGHPUT_BYTES / 2**20 / seconds


# -- the four ways to a server ---------------------------------------------------------------


@asynccontextmanager
async def over_stdio() -> AsyncIterator[tx.ExecBackend]:
    async with connect_command(STDIO_SERVER) as backend:
        yield backend


@asynccontextmanager
async def over_cli_websocket() -> AsyncIterator[tx.ExecBackend]:
    async with open_server_process(WS_SERVER) as url, tx.connect(url) as backend:
        yield backend


class Tls:
    """A trustme CA, a certificate for 127.0.0.1 in a PEM file, and the client's context."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        self.pem = directory / "server.pem"
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(self.pem))
        self.client_context = ssl.create_default_context()
        ca.configure_trust(self.client_context)


def over_script_websocket(tls: Tls | None) -> Connector:
    @asynccontextmanager
    async def connect() -> AsyncIterator[tx.ExecBackend]:
        argv = [sys.executable, "-c", _SERVE_SCRIPT]
        if tls is not None:
            argv.append(str(tls.pem))
        async with open_server_process(argv) as url:
            if tls is None:
                async with tx.connect(url) as backend:
                    yield backend
            else:
                wss = "wss://" + url.partition("://")[2]
                async with tx.connect(wss, ssl_context=tls.client_context) as backend:
                    yield backend

    return connect


# -- measuring -------------------------------------------------------------------------------


async def best_pair(
    ours: Connector, baseline: Connector, measure: Callable[[tx.ExecBackend], Awaitable[float]]
) -> tuple[float, float]:
    """The best rate of each side over REPEATS runs, alternating, each on a fresh server."""
    results: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS):
        for side, connector in zip(results, (ours, baseline), strict=True):
            async with connector() as backend:
                side.append(await measure(backend))
    return max(results[0]), max(results[1])


async def main() -> int:
    ok = True
    print("servers: `python -m trio_exec serve` subprocesses (stdio: --listen stdio; ws: default)")
    stdio, ws = await best_pair(over_stdio, over_cli_websocket, round_trips)
    ok &= report("stdio start-to-closed /bin/true", stdio, ws, "/s", "websocket", 0.9)
    stdio, ws = await best_pair(over_stdio, over_cli_websocket, throughput)
    ok &= report("stdio throughput 64 MiB head -c", stdio, ws, "MiB/s", "websocket", 0.9)

    print("servers: serve_websocket(ssl_context=...) in `python -c` subprocesses, wss and ws")
    with tempfile.TemporaryDirectory(prefix="trio-exec-bench-tls-") as directory:
        tls = Tls(Path(directory))
        wss, ws = await best_pair(
            over_script_websocket(tls), over_script_websocket(None), round_trips
        )
        ok &= report("wss start-to-closed /bin/true", wss, ws, "/s", "ws", 0.8)
        wss, ws = await best_pair(
            over_script_websocket(tls), over_script_websocket(None), throughput
        )
        ok &= report("wss throughput 64 MiB head -c", wss, ws, "MiB/s", "ws", 0.4)
    return exit_status(ok)


if __name__ == "__main__":
    sys.exit(trio.run(main))
