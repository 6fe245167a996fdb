"""``trio-exec serve --log-level``: connections, refused ones (401, 403 Origin) and sessions
are logged on stderr; and a stdio server answers what it read before it ends on EOF."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import trio_exec as tx
from trio_exec._transport import open_websocket_transport

from ..conformance.helpers import TIMEOUT
from .helpers import CLI, open_server_printing_url, run_cli

TOKEN = "the-token"


class _LoggingServer:
    """A ``trio-exec serve`` subprocess and what it logged so far."""

    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.log = b""

    async def wait_logged(self, needle: bytes) -> None:
        """Read the server's stderr until ``needle`` is in it."""
        assert self.process.stderr is not None
        while needle not in self.log:
            chunk = await self.process.stderr.receive_some()
            assert chunk, f"{needle!r} never logged; the log is:\n{self.log.decode()}"
            self.log += chunk


@asynccontextmanager
async def _serve(*args: str) -> AsyncIterator[_LoggingServer]:
    async with open_server_printing_url([*CLI, "serve", *args]) as (process, url):
        yield _LoggingServer(process, url)


async def test_connections_refusals_and_sessions_are_logged(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = ["--log-level", "info", "--ws-auth", "capability-token"]
    with trio.fail_after(TIMEOUT):
        async with _serve(*args, "--ws-token-file", str(token_file)) as server:
            await server.wait_logged(f"INFO listening on {server.url}".encode())
            with pytest.raises(tx.ConnectionLost, match="HTTP 401"):
                async with open_websocket_transport(server.url, token="wrong"):
                    pass
            await server.wait_logged(b"refused 127.0.0.1:")
            await server.wait_logged(b": 401, invalid websocket bearer token")
            origin = [("Origin", "https://example.com")]
            with pytest.raises(tx.ConnectionLost, match="HTTP 403"):
                async with open_websocket_transport(server.url, extra_headers=origin):
                    pass
            await server.wait_logged(b": 403, a request with an Origin header")
            async with tx.connect(server.url, token=TOKEN) as backend:
                await server.wait_logged(b"INFO websocket connection from 127.0.0.1:")
                await server.wait_logged(f"session {backend.session_id} started".encode())
                await tx.run_process(["true"], backend=backend)
            # The session outlives its connection for a while (a client may resume it).
            await server.wait_logged(f"session {backend.session_id} detached".encode())
            server.process.terminate()
            await server.wait_logged(f"session {backend.session_id} ended".encode())


async def test_default_log_level_is_quiet() -> None:
    with trio.fail_after(TIMEOUT):
        async with _serve() as server:
            async with tx.connect(server.url) as backend:
                await tx.run_process(["true"], backend=backend)
            server.process.terminate()
            await server.wait_logged(b"SIGTERM, shutting down\n")
            assert await server.process.wait() == 0
    assert server.log == b"trio-exec serve: SIGTERM, shutting down\n"


def _request(request_id: int, method: str, params: dict[str, object]) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message).encode() + b"\n"


async def test_stdio_answers_what_it_read_before_ending_on_eof(tmp_path: Path) -> None:
    """``echo REQUEST | trio-exec serve --listen stdio``: the answers come, then the end."""
    start = {
        "processId": "p1",
        "argv": ["true"],
        "cwd": tmp_path.as_uri(),
        "env": {},
        "tty": False,
    }
    requests = (
        _request(1, "initialize", {"clientName": "echo"})
        + b'{"jsonrpc":"2.0","method":"initialized"}\n'
        + _request(2, "process/start", start)
    )
    done = await run_cli("serve", "--listen", "stdio", stdin=requests)
    assert done.returncode == 0, done
    answers = {
        message["id"]: message
        for message in map(json.loads, done.stdout.splitlines())
        if "id" in message
    }
    assert set(answers) == {1, 2}, done.stdout
    assert "sessionId" in answers[1]["result"]
    assert answers[2]["result"]["processId"] == "p1"
    done = await run_cli("serve", "--listen", "stdio", stdin=requests[: requests.index(b"\n") + 1])
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [1]
