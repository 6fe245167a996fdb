"""``trio-exec serve`` stopped with SIGTERM: a graceful stop that clients see as final.

The server ends its processes, sends their last ``exited`` / ``closed``, then closes each
websocket with 1001 (Going Away), or ends a stdio session with end of file on stdout. A
trio_exec client takes 1001 as final: no resume, each process ends with what the server
sent. The reference drops its connections on SIGTERM (1006): a client resumes as after
any lost connection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio

import trio_exec as tx
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import ensure_reference

from ..conformance.helpers import TIMEOUT, group_alive
from .helpers import CLI, open_server_printing_url, reap

STOP_BOUND: Final = 2.0
"""Seconds from SIGTERM within which every client process must have ended."""


class _Server:
    """A server subprocess: its process and what it wrote to stderr."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stderr = bytearray()

    async def drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while data := await self.process.stderr.receive_some():
            self.stderr += data


@asynccontextmanager
async def _open_ws_server(
    argv: Sequence[str], env: dict[str, str] | None = None
) -> AsyncIterator[tuple[_Server, str]]:
    """Run a server that prints its URL first; yield it and the URL; kill it on the way out."""
    async with open_server_printing_url(argv, env) as (process, url):
        server = _Server(process)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.drain_stderr)
            yield server, url
            nursery.cancel_scope.cancel()


async def _first_line(proc: tx.ExecProcess, events: trio.abc.ReceiveChannel[tx.Event]) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        event = await events.receive()
        assert isinstance(event, tx.Output), event
        line += event.data
    return line


async def test_sigterm_ends_client_processes_with_their_real_events_and_no_resume() -> None:
    """A running child (a long sleep) and one that just finished: both end with Exited and
    Closed within 2 s of the SIGTERM; the backend fails with "the exec server shut down"
    at once instead of trying to resume for 25 s."""
    async with _open_ws_server([*CLI, "serve", "--listen", "ws://127.0.0.1:0"]) as (server, url):
        async with tx.connect(url) as backend:
            async with (
                backend.open_process(["sh", "-c", "echo $$; exec sleep 60"]) as sleeping,
                backend.open_process(["sh", "-c", "echo done"]) as finished,
            ):
                sleeping_events = sleeping.events
                finished_channel = finished.events
                with trio.fail_after(TIMEOUT):
                    pgid = int(await _first_line(sleeping, sleeping_events))
                    assert await finished.wait() == 0
                start = trio.current_time()
                server.process.send_signal(signal.SIGTERM)
                with trio.fail_after(STOP_BOUND):
                    finished_events = [event async for event in finished_channel]
                    finished_ended = trio.current_time() - start
                    rest = [event async for event in sleeping_events]
                    ended = trio.current_time() - start
                    with pytest.raises(tx.ConnectionLost) as lost:
                        await tx.run_process(["true"], backend=backend)
                    failed = trio.current_time() - start
                print(
                    f"\nSIGTERM -> finished process ended: {finished_ended:.3f} s; "
                    f"running process ended: {ended:.3f} s; "
                    f"backend failure known: {failed:.3f} s"
                )
            assert [type(event) for event in rest] == [tx.Exited, tx.Closed], rest
            exited = rest[0]
            assert isinstance(exited, tx.Exited)
            assert exited.exit_code == 128 + signal.SIGTERM
            failure = backend.failure
            assert failure is not None
            assert "the exec server shut down" in failure
            assert "could not be resumed" not in failure
            assert "the exec server shut down" in str(lost.value)
            assert backend.statistics().resumes == 0
            assert not backend.statistics().recovering
        check_event_stream(finished_events, expected_output={tx.OutputStream.STDOUT: b"done\n"})
        assert isinstance(finished_events[-1], tx.Closed)
        with trio.fail_after(TIMEOUT):
            assert await server.process.wait() == 0
        assert not group_alive(pgid)
        assert b"SIGTERM, shutting down" in server.stderr


async def test_sigterm_ends_a_stdio_session_with_final_messages_then_end_of_file() -> None:
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--listen", "stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        stdin, stdout = process.stdin, process.stdout

        async def send(message: dict[str, Any]) -> None:
            await stdin.send_all(json.dumps(message).encode() + b"\n")

        async def receive() -> dict[str, Any] | None:
            line = b""
            while not line.endswith(b"\n"):
                data = await stdout.receive_some(1)
                if not data:
                    assert not line, f"end of file within a line: {line!r}"
                    return None
                line += data
            message: dict[str, Any] = json.loads(line)
            return message

        with trio.fail_after(TIMEOUT):
            await send({"id": 1, "method": "initialize", "params": {"clientName": "t"}})
            assert (await receive() or {}).get("id") == 1
            await send({"method": "initialized"})
            params = {
                "processId": "sleep",
                "argv": ["sleep", "60"],
                "cwd": Path.cwd().as_uri(),
                "env": {"PATH": os.environ["PATH"]},
                "tty": False,
            }
            await send({"id": 2, "method": "process/start", "params": params})
            assert (await receive() or {}).get("id") == 2
        start = trio.current_time()
        process.send_signal(signal.SIGTERM)
        received: list[dict[str, Any]] = []
        with trio.fail_after(STOP_BOUND):
            while (message := await receive()) is not None:
                received.append(message)
            ended = trio.current_time() - start
        print(f"\nSIGTERM -> stdio end of file: {ended:.3f} s")
        assert [message["method"] for message in received] == [
            "process/exited",
            "process/closed",
        ]
        assert received[0]["params"]["exitCode"] == 128 + signal.SIGTERM
        with trio.fail_after(TIMEOUT):
            assert await process.wait() == 0
    finally:
        await reap(process)


@pytest.mark.reference
async def test_a_server_dropping_connections_on_sigterm_is_resumed_as_today() -> None:
    """The reference drops its connections on SIGTERM (1006, no close frame): that is a
    lost connection, which the client tries to resume; only 1001 is final."""
    binary = ensure_reference()
    with tempfile.TemporaryDirectory(prefix="trio-exec-codex-home-") as codex_home:
        env = {**os.environ, "CODEX_HOME": codex_home}
        argv = [os.fspath(binary), "exec-server", "--listen", "ws://127.0.0.1:0"]
        async with _open_ws_server(argv, env) as (server, url):
            script = ["sh", "-c", "echo ready; exec sleep 60"]
            async with (
                tx.connect(url, resume_deadline=1.0) as backend,
                backend.open_process(script) as proc,
            ):
                events = proc.events
                with trio.fail_after(TIMEOUT):
                    await _first_line(proc, events)
                    server.process.send_signal(signal.SIGTERM)
                    rest = [event async for event in events]
            assert isinstance(rest[-1], tx.Failed), rest
            failure = backend.failure
            assert failure is not None
            assert "1006" in failure
            assert "could not be resumed" in failure
