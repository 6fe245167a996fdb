"""Drive the real ``codex app-server`` 0.169 against an exec server, and record what it sends.

* :func:`open_recording_proxy` is a websocket proxy in front of an exec server: codex
  connects to it, and every frame either way is recorded, so a test can see which methods
  codex sends to its remote environment and how the server answered each;
* :func:`write_codex_home` makes a throwaway ``CODEX_HOME`` whose ``environments.toml``
  names the proxy as the only (and default) environment, and whose ``config.toml``
  configures an MCP stdio server on that environment;
* :class:`AppServer` is ``codex app-server`` on stdio, spoken to in its own JSON-RPC
  dialect (one JSON object per line, no ``jsonrpc`` member).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from trio_exec._util import open_service_nursery
from trio_exec.testing.reference import ensure_reference

from ..helpers import open_websocket

__all__ = [
    "ENVIRONMENT_ID",
    "MCP_SERVER",
    "MCP_SERVER_NAME",
    "STEP_TIMEOUT",
    "AppServer",
    "Exchange",
    "Recording",
    "open_app_server",
    "open_recording_proxy",
    "write_codex_home",
]

STEP_TIMEOUT: Final = 20.0
"""Seconds one request to the app server may take (an MCP tool call starts the server)."""

ENVIRONMENT_ID: Final = "remote"
"""The id of the exec-server environment in ``environments.toml``."""

MCP_SERVER_NAME: Final = "demo"
"""The name of the MCP server in ``config.toml``."""

MCP_SERVER: Final = Path(__file__).resolve().parents[2] / "examples" / "mcp_server.py"
"""The MCP stdio server (built with the ``mcp`` package) that codex launches remotely."""


@attrs.define
class Exchange:
    """One request codex sent to the exec server, and the server's answer."""

    method: str
    params: Any
    response: dict[str, Any] | None = None
    """The response message (``result`` or ``error``); None while unanswered."""


@attrs.define
class Recording:
    """What went through the proxy, in order."""

    exchanges: list[Exchange] = attrs.Factory(list)
    """Requests from codex, each with its answer."""
    notifications_to_server: list[str] = attrs.Factory(list)
    """Methods of the notifications codex sent."""
    notifications_from_server: list[str] = attrs.Factory(list)
    """Methods of the notifications the server sent."""
    connections: int = 0
    """Websocket connections codex opened."""
    _changed: trio.Event = attrs.Factory(trio.Event)

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[Recording], bool]) -> None:
        """Wait until ``predicate`` holds (it is checked after each recorded message)."""
        while not predicate(self):
            await self._changed.wait()

    @property
    def methods(self) -> set[str]:
        """The methods codex called."""
        return {exchange.method for exchange in self.exchanges}

    def unanswered(self) -> list[Exchange]:
        """Requests without an answer."""
        return [exchange for exchange in self.exchanges if exchange.response is None]


async def _pump(
    source: WebSocketConnection,
    sink: WebSocketConnection,
    on_message: Any,
) -> None:
    try:
        while True:
            message = await source.get_message()
            on_message(message)
            await sink.send_message(message)
    except ConnectionClosed:
        await sink.aclose()


@asynccontextmanager
async def open_recording_proxy(upstream: str) -> AsyncIterator[tuple[str, Recording]]:
    """A websocket proxy on 127.0.0.1 in front of ``upstream``; yields its URL and the
    :class:`Recording` it fills. Each accepted connection gets its own upstream one."""
    recording = Recording()

    def from_client(pending: dict[Any, Exchange], raw: str | bytes) -> None:
        message = json.loads(raw)
        if "method" not in message:
            return
        if "id" in message:
            exchange = Exchange(method=message["method"], params=message.get("params"))
            recording.exchanges.append(exchange)
            pending[json.dumps(message["id"])] = exchange
        else:
            recording.notifications_to_server.append(message["method"])
        recording._touch()

    def from_server(pending: dict[Any, Exchange], raw: str | bytes) -> None:
        message = json.loads(raw)
        if "method" in message:
            recording.notifications_from_server.append(message["method"])
            recording._touch()
            return
        exchange = pending.pop(json.dumps(message.get("id")), None)
        if exchange is not None:
            exchange.response = message
        recording._touch()

    async def handler(request: WebSocketRequest) -> None:
        client = await request.accept()
        recording.connections += 1
        pending: dict[Any, Exchange] = {}
        async with open_websocket(upstream) as server, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, server, lambda raw: from_client(pending, raw))
            nursery.start_soon(_pump, server, client, lambda raw: from_server(pending, raw))

    async with open_service_nursery() as nursery:
        listener = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        yield f"ws://127.0.0.1:{listener.port}", recording
        nursery.cancel_scope.cancel()


def write_codex_home(home: Path, exec_server_url: str | None, cwd: Path) -> None:
    """A ``CODEX_HOME``: the exec server as the only environment, and the MCP server on it.

    With ``exec_server_url`` None there is no ``environments.toml``: codex is then told
    the URL by ``CODEX_EXEC_SERVER_URL`` (see :func:`open_app_server`), which names the
    environment :data:`ENVIRONMENT_ID` too.
    """
    home.mkdir(parents=True, exist_ok=True)
    if exec_server_url is not None:
        (home / "environments.toml").write_text(
            f'default = "{ENVIRONMENT_ID}"\n'
            "include_local = false\n"
            "\n"
            "[[environments]]\n"
            f'id = "{ENVIRONMENT_ID}"\n'
            f"url = {json.dumps(exec_server_url)}\n"
        )
    (home / "config.toml").write_text(
        f"[mcp_servers.{MCP_SERVER_NAME}]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(MCP_SERVER))}]\n"
        f"cwd = {json.dumps(str(cwd))}\n"
        f'environment_id = "{ENVIRONMENT_ID}"\n'
    )


class AppServerError(Exception):
    """The app server answered a request with an error."""


class AppServer:
    """``codex app-server`` on stdio: requests, and the notifications it sent meanwhile."""

    def __init__(self, process: trio.Process, stderr_path: Path) -> None:
        self._process = process
        self._stderr_path = stderr_path
        self._buffer = b""
        self._next_id = 1
        self._responses: dict[int, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        """Notifications received so far, in order."""

    @property
    def log(self) -> str:
        """What the app server logged on stderr so far."""
        return self._stderr_path.read_text(errors="replace")

    async def _send(self, message: Mapping[str, Any]) -> None:
        assert self._process.stdin is not None
        await self._process.stdin.send_all(json.dumps(message).encode() + b"\n")

    async def _receive_one(self) -> None:
        assert self._process.stdout is not None
        while b"\n" not in self._buffer:
            data = await self._process.stdout.receive_some()
            if not data:
                raise EOFError(f"codex app-server ended; its log:\n{self.log[-4000:]}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if "method" in message and "id" not in message:
            self.notifications.append(message)
        elif "method" in message:  # a request to the client: none is expected here
            await self._send({"id": message["id"], "error": {"code": -32601, "message": "no"}})
        else:
            self._responses[message["id"]] = message

    async def request(self, method: str, params: Any = None) -> Any:
        """Send a request, wait for its answer; its result.

        Raises:
            AppServerError: the app server answered with an error.
        """
        request_id = self._next_id
        self._next_id += 1
        await self._send({"id": request_id, "method": method, "params": params})
        with trio.fail_after(STEP_TIMEOUT):
            while request_id not in self._responses:
                await self._receive_one()
        response = self._responses.pop(request_id)
        if "error" in response:
            raise AppServerError(f"{method}: {response['error']}")
        return response["result"]

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        await self._send(message)


@asynccontextmanager
async def open_app_server(
    home: Path, cwd: Path, *, exec_server_url: str | None = None
) -> AsyncIterator[AppServer]:
    """Run ``codex app-server`` (stdio) with ``CODEX_HOME=home`` in ``cwd``, initialized;
    with ``exec_server_url``, ``CODEX_EXEC_SERVER_URL`` names the remote environment.

    The binary is the reference install (:func:`ensure_reference`): the whole
    ``@openai/codex`` package, so ``app-server`` is there too. No login and no network
    are needed for what the tests ask.
    """
    binary = ensure_reference()
    env = dict(os.environ, CODEX_HOME=str(home), RUST_LOG="warn")
    env.pop("CODEX_EXEC_SERVER_URL", None)
    if exec_server_url is not None:
        env["CODEX_EXEC_SERVER_URL"] = exec_server_url
    stderr_path = home / "app-server.log"
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [str(binary), "app-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=cwd,
        )
    try:
        app = AppServer(process, stderr_path)
        client_info = {"name": "trio-exec-tests", "title": None, "version": "0"}
        # The environment methods are experimental in 0.169.
        capabilities = {"experimentalApi": True}
        await app.request("initialize", {"clientInfo": client_info, "capabilities": capabilities})
        await app.notify("initialized")
        yield app
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()
