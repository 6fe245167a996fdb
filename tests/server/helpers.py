"""A small JSON client for server tests, over any :class:`MessageTransport`.

The client keeps every message it receives, in arrival order, so that tests can check
ordering (start response before notifications, seqs in order). A background task reads;
:meth:`Client.pause` stops it (a client that stops reading) and :meth:`Client.resume`
restarts it.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from trio_exec._errors import ConnectionLost
from trio_exec._server import ExecServer
from trio_exec._transport import (
    MEMORY_TRANSPORT_BUFFER,
    MessageTransport,
    memory_transport_pair,
    open_websocket_transport,
)

from ..conformance.helpers import group_alive as group_alive

TIMEOUT: Final = 20.0
"""Bound on any single wait in a test; a hang fails the test instead of the run."""

CWD: Final = "file:///tmp"
ENV: Final = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}

Message = dict[str, Any]


def python(code: str) -> list[str]:
    """The argv that runs ``code`` in a fresh interpreter."""
    return [sys.executable, "-c", code]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def start_params(process_id: str, argv: list[str], **extra: Any) -> dict[str, Any]:
    """``process/start`` params with the usual defaults (cwd /tmp, a minimal env, no tty)."""
    params: dict[str, Any] = {
        "processId": process_id,
        "argv": argv,
        "cwd": CWD,
        "env": dict(ENV),
        "tty": False,
    }
    params.update(extra)
    return params


async def wait_group_gone(pgid: int, timeout: float) -> None:
    """Wait (polling ``ps``) until no process of the group is alive; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while group_alive(pgid):  # noqa: ASYNC110 - another process's state: poll it
            await trio.sleep(0.02)


class Client:
    """Raw JSON-RPC over a message transport, recording everything received."""

    def __init__(self, transport: MessageTransport) -> None:
        self.transport = transport
        self.received: list[Message] = []
        """Every message received, in arrival order."""
        self.closed = False
        """True once the server closed the transport."""
        self._changed = trio.lowlevel.ParkingLot()
        self._running = trio.Event()
        self._running.set()
        self._next_id = 1

    # -- the reader task -------------------------------------------------------------------

    async def run_reader(self) -> None:
        try:
            while True:
                await self._running.wait()
                raw = await self.transport.receive()
                self.received.append(json.loads(raw))
                self._changed.unpark_all()
        except ConnectionLost:
            self.closed = True
            self._changed.unpark_all()

    def pause(self) -> None:
        """Stop reading (after the message being received, if any)."""
        self._running = trio.Event()

    def resume(self) -> None:
        """Read again."""
        self._running.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                if self.closed:
                    raise AssertionError("the server closed the connection")
                await self._changed.park()

    # -- sending ---------------------------------------------------------------------------

    async def send_raw(self, text: str) -> None:
        with trio.fail_after(TIMEOUT):
            await self.transport.send(text)

    async def send(self, message: Message) -> None:
        await self.send_raw(json.dumps(message, separators=(",", ":")))

    async def send_request(self, method: str, params: Any = None, *, request_id: Any = None) -> Any:
        """Send a request without waiting; return its id."""
        if request_id is None:
            request_id = self._next_id
            self._next_id += 1
        message: Message = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return request_id

    async def notify(self, method: str, params: Any = None) -> None:
        message: Message = {"method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    # -- receiving -------------------------------------------------------------------------

    def response(self, request_id: Any) -> Message | None:
        for message in self.received:
            if (
                "method" not in message
                and message.get("id") == request_id
                and type(message.get("id")) is type(request_id)
            ):
                return message
        return None

    def response_index(self, request_id: Any) -> int:
        message = self.response(request_id)
        assert message is not None
        return next(i for i, m in enumerate(self.received) if m is message)

    async def wait_response(self, request_id: Any, timeout: float = TIMEOUT) -> Message:
        await self.wait_until(lambda: self.response(request_id) is not None, timeout)
        message = self.response(request_id)
        assert message is not None
        return message

    async def request(self, method: str, params: Any = None) -> Message:
        """Send a request and return its whole response message."""
        return await self.wait_response(await self.send_request(method, params))

    async def call(self, method: str, params: Any = None) -> Any:
        """Send a request and return its result; fail on an error response."""
        response = await self.request(method, params)
        assert "result" in response, response
        return response["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request and return its error; fail on a result."""
        response = await self.request(method, params)
        assert "error" in response, response
        error: dict[str, Any] = response["error"]
        return error

    async def initialize(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("initialize", {"clientName": "test"})
        await self.notify("initialized")
        return result

    # -- processes -------------------------------------------------------------------------

    async def start(self, process_id: str, argv: list[str], **extra: Any) -> Message:
        return await self.request("process/start", start_params(process_id, argv, **extra))

    def events(self, process_id: str) -> list[Message]:
        """The notifications of ``process_id`` received so far, in arrival order."""
        return [
            m
            for m in self.received
            if "method" in m
            and "id" not in m
            and isinstance(m.get("params"), dict)
            and m["params"].get("processId") == process_id
        ]

    def output(self, process_id: str, stream: str = "stdout") -> bytes:
        return b"".join(
            unb64(m["params"]["chunk"])
            for m in self.events(process_id)
            if m["method"] == "process/output" and m["params"]["stream"] == stream
        )

    async def wait_output(self, process_id: str, needle: bytes, stream: str = "stdout") -> None:
        await self.wait_until(lambda: needle in self.output(process_id, stream))

    def _has(self, process_id: str, method: str) -> bool:
        return any(m["method"] == method for m in self.events(process_id))

    async def wait_closed(self, process_id: str, timeout: float = TIMEOUT) -> list[Message]:
        """Wait for ``process/closed`` of the process; return its notifications."""
        await self.wait_until(lambda: self._has(process_id, "process/closed"), timeout)
        return self.events(process_id)

    def exited(self, process_id: str) -> dict[str, Any]:
        exited = [m["params"] for m in self.events(process_id) if m["method"] == "process/exited"]
        assert len(exited) == 1, exited
        params: dict[str, Any] = exited[0]
        return params

    async def write(self, process_id: str, data: bytes, write_id: str) -> str:
        params = {"processId": process_id, "chunk": b64(data), "writeId": write_id}
        status: str = (await self.call("process/write", params))["status"]
        return status


async def check_read_gap(client: Client, lines: int, retain_bytes: int) -> None:
    """Run a child that writes ``lines`` 100-byte lines one at a time (each read as its own
    chunk), and check that every byte was pushed in order while ``process/read`` keeps at
    most ``retain_bytes`` of them and reports the evicted history (``firstRetainedSeq``)."""
    code = (
        "import sys\n"
        f"for i in range({lines}):\n"
        "    sys.stdout.write(f'{i:099d}\\n'); sys.stdout.flush()\n"
        "    sys.stdin.readline()\n"
    )
    await client.start("g", python(code), pipeStdin=True)
    for i in range(lines):
        await client.wait_output("g", f"{i:099d}\n".encode())
        await client.write("g", b"\n", f"w{i}")
    await client.wait_closed("g")
    assert client.output("g") == b"".join(f"{i:099d}\n".encode() for i in range(lines))
    result = await client.call("process/read", {"processId": "g", "afterSeq": 0})
    assert result["firstRetainedSeq"] == result["chunks"][0]["seq"] > 1
    assert sum(len(unb64(c["chunk"])) for c in result["chunks"]) <= retain_bytes


@asynccontextmanager
async def open_memory_client(
    server: ExecServer | None = None,
    *,
    initialize: bool = True,
    buffer: int = MEMORY_TRANSPORT_BUFFER,
) -> AsyncIterator[Client]:
    """Serve one connection of ``server`` over an in-memory transport; yield its client.

    On exit the client closes its end and waits until the server finished the session
    (every process reaped).
    """
    server = server or ExecServer()
    client_end, server_end = memory_transport_pair(buffer)
    client = Client(client_end)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, server_end)
        nursery.start_soon(client.run_reader)
        if initialize:
            await client.initialize()
        try:
            yield client
        finally:
            await client_end.aclose()


@asynccontextmanager
async def open_ws_client(
    url: str, *, initialize: bool = True, token: str | None = None
) -> AsyncIterator[Client]:
    """Connect to a websocket server; yield a :class:`Client` on the connection."""
    async with open_websocket_transport(url, token=token) as transport:
        client = Client(transport)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run_reader)
            if initialize:
                await client.initialize()
            yield client
            nursery.cancel_scope.cancel()
