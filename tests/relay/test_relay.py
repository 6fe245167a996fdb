"""An exec server over a RemoteBackend (a relay, one hop): what only a relay shows.

The conformance suite runs through a relay too (the ``relay`` parameter of ``backend``);
these tests look at the hops themselves: the child runs on the inner server, either link
may break and be resumed, and an inner connection lost for good fails the relay's
processes in a way its client sees.
"""

from __future__ import annotations

import ast
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Final

import pytest
import trio

import trio_exec as tx
from trio_exec._util import open_service_nursery
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import ensure_reference, open_reference_server, open_server_process

from ..conformance.helpers import group_alive
from ..resume.proxy import CuttingProxy
from ..transports.helpers import GROUP_AND_SERVER, STDIO_SERVER, first_line_numbers
from .helpers import open_relay, serve_relay

TIMEOUT: Final = 20.0
"""Bound on any single wait in these tests; a hang fails the test instead of the run."""

WS_SERVER: Final = (sys.executable, "-m", "trio_exec", "serve", "--listen", "ws://127.0.0.1:0")

ECHO: Final = ("cat",)
"""Echoes its stdin, line by line: what is written comes back as output."""


async def echo(
    proc: tx.ExecProcess, events: trio.abc.ReceiveChannel[tx.Event], line: bytes
) -> None:
    """Write ``line`` and wait until it came back as output."""
    assert await proc.write(line) is tx.WriteStatus.ACCEPTED
    received = b""
    with trio.fail_after(TIMEOUT):
        while received != line:
            event = await events.receive()
            assert isinstance(event, tx.Output), event
            received += event.data


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


async def test_the_child_runs_on_the_inner_server() -> None:
    marker = {"TRIO_EXEC_TEST_INNER_SIDE": "inner"}
    with trio.fail_after(TIMEOUT):
        async with (
            open_server_process(WS_SERVER, env={**os.environ, **marker}) as inner_url,
            open_relay(inner_url) as backend,
        ):
            async with backend.open_process(GROUP_AND_SERVER) as proc:
                pgid, parent = await first_line_numbers(proc)
                # The inner server (a process of its own) spawned it, not the relay.
                assert parent != os.getpid()
                assert cmdline(parent)[1:] == list(WS_SERVER[1:])
                assert os.getpgid(pgid) == pgid  # in a process group of its own
            script = "echo $TRIO_EXEC_TEST_INNER_SIDE"
            done = await tx.run_process(["sh", "-c", script], backend=backend)
            assert done.stdout == b"inner\n"  # the inner server's environment


@asynccontextmanager
async def relay_through(
    proxy_inner: bool,
) -> AsyncIterator[tuple[tx.RemoteBackend, tx.RemoteBackend, CuttingProxy]]:
    """A relay with a cutting proxy on one link: before the inner server (``proxy_inner``)
    or before the relay. Yields the client's backend, the relay's and the proxy."""
    async with open_service_nursery() as nursery:
        inner_url: str = await nursery.start(tx.serve_websocket, "127.0.0.1", 0)
        proxy = CuttingProxy(int(inner_url.rsplit(":", 1)[1]))
        if proxy_inner:
            inner_url = await nursery.start(proxy.serve)
        async with tx.connect(inner_url) as inner, open_service_nursery() as relays:
            relay_url: str = await relays.start(serve_relay, inner)
            if not proxy_inner:
                proxy.target_port = int(relay_url.rsplit(":", 1)[1])
                relay_url = await nursery.start(proxy.serve)
            async with tx.connect(relay_url) as backend:
                yield backend, inner, proxy
            relays.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("link", ["inner", "outer"])
async def test_a_cut_link_is_resumed_and_the_output_stays_whole(link: str) -> None:
    async with relay_through(proxy_inner=link == "inner") as (backend, inner, proxy):
        async with backend.open_process(ECHO, pipe_stdin=True) as proc:
            async with proc.subscribe() as events:
                await echo(proc, events, b"before the cut\n")
                proxy.cut()
                await echo(proc, events, b"after the cut\n")
                assert await proc.close_stdin() is tx.WriteStatus.ACCEPTED
                with trio.fail_after(TIMEOUT):
                    assert await proc.wait() == 0
                    await proc.wait_closed()
            with trio.fail_after(TIMEOUT):
                received = [event async for event in proc.subscribe()]
        summary = check_event_stream(received)
        assert summary.output[tx.OutputStream.STDOUT] == b"before the cut\nafter the cut\n"
        resumed = inner if link == "inner" else backend
        assert resumed.statistics().resumes == 1
        assert backend.failure is None
        assert inner.failure is None


async def test_the_inner_connection_lost_for_good_fails_the_relays_processes(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "inner.pid"
    # The shell writes its pid, then becomes the stdio server: that pid is the server's.
    argv = ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *STDIO_SERVER]
    pgid = None
    try:
        async with (
            tx.connect_command(argv) as inner,  # a stdio connection: never resumed
            open_service_nursery() as relays,
        ):
            relay_url: str = await relays.start(serve_relay, inner)
            async with tx.connect(relay_url) as backend:
                async with backend.open_process(GROUP_AND_SERVER) as proc:
                    pgid, _ = await first_line_numbers(proc)
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    with trio.fail_after(TIMEOUT):
                        events = [event async for event in proc.subscribe()]
                    failed = events[-1]
                    assert isinstance(failed, tx.Failed), events
                    # The relay's backend lost it: the client's catch-up read says why.
                    assert "the server reports the process failed" in failed.message
                    assert "transport disconnected" in failed.message
                    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost):
                        await proc.wait()
                # The relay's client is still connected: only that process failed.
                assert backend.failure is None
                assert inner.failure is not None
                # A start answers -32603, which a client takes as a failed spawn.
                with trio.fail_after(TIMEOUT), pytest.raises(tx.SpawnError) as raised:
                    async with backend.open_process(["true"]):
                        pass
                assert raised.value.errno is None
                assert "the server's backend failed" in str(raised.value)
            relays.cancel_scope.cancel()
    finally:
        if pgid is not None:  # the inner server died without ending its child
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


@pytest.mark.reference
async def test_a_relay_over_the_reference_says_what_its_backend_cannot_do() -> None:
    # The reference has none of the extensions; the relay advertises them all and answers
    # what its backend cannot do with an error, except where it has a way around.
    async with (
        open_reference_server(ensure_reference()) as inner_url,
        open_relay(inner_url) as backend,
    ):
        async with backend.open_process(["sleep", "60"]) as proc:
            with trio.fail_after(TIMEOUT), pytest.raises(tx.RemoteError) as raised:
                await proc.signal(signal.SIGTERM)
            assert raised.value.code == -32600
            assert "`signals` protocol extension" in raised.value.message
            # terminate without grace: SIGKILL to the group, here through the
            # reference's own terminate, which kills the group at once.
            with trio.fail_after(TIMEOUT):
                assert await proc.terminate(0.0) is True
                assert await proc.wait() == 137
        # Leaving the block with the child running: the client asks for SIGKILL to the
        # group, which the relay turns into the reference's terminate; the output ends.
        with trio.fail_after(TIMEOUT):
            async with backend.open_process(["sleep", "60"]) as proc:
                pass
        result = await proc.read()
        assert result.failure is None
        assert result.closed


async def test_a_relay_that_stops_gracefully_sends_the_final_events() -> None:
    async with open_service_nursery() as nursery:
        inner_url: str = await nursery.start(tx.serve_websocket, "127.0.0.1", 0)
        async with tx.connect(inner_url) as inner:
            relay = tx.ExecServer(backend=inner, session_end_grace=0.5)
            relay_url: str = await nursery.start(
                partial(tx.serve_websocket, "127.0.0.1", 0, server=relay)
            )
            async with tx.connect(relay_url) as backend:
                async with backend.open_process(GROUP_AND_SERVER) as proc:
                    pgid, _ = await first_line_numbers(proc)
                    with trio.fail_after(TIMEOUT):
                        await relay.aclose()
                        # SIGTERM through the inner connection; then closed, then 1001.
                        assert await proc.wait() == 128 + signal.SIGTERM
                        await proc.wait_closed()
                    assert not group_alive(pgid)
                assert backend.failure is not None
                assert "the exec server shut down" in backend.failure
            assert inner.failure is None  # the relay's backend is the caller's, still open
        nursery.cancel_scope.cancel()


def test_the_server_uses_the_backend_interface_only() -> None:
    # Only server.py names the local backend, for its default; nothing of the server
    # imports the local process.
    server_dir = Path(tx.__file__).parent / "_server"
    local = {"_local", "_local_process"}
    for path in sorted(server_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module in local:
                names = {alias.name for alias in node.names}
                assert (path.name, names) == ("server.py", {"LocalBackend"}), path
    assert "tty" in tx.ExecProcess.__abstractmethods__
