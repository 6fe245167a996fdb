"""A scripted fake exec server over an in-memory transport, for the client's unit tests.

It speaks the raw protocol (plain dicts and JSON text, not trio_exec's typed models), so
the client's encoding is checked too. It isolates the client layer: ordering, demux,
request matching and failure handling can be driven deterministically, including the
reference server's weaker orders (events before the start response, out-of-order seqs).
The same client is tested against the real reference server in test_reference_client.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

import trio_exec as tx
from trio_exec._remote import RemoteBackend, open_remote_backend
from trio_exec._transport import MemoryTransport, memory_transport_pair

TIMEOUT: Final = 10.0
"""Bound on any single wait in these tests."""

JsonDict = dict[str, Any]


class FakeServer:
    """The server end of a memory transport; every method is one raw protocol step."""

    def __init__(
        self,
        transport: MemoryTransport,
        extensions: Sequence[str] = (),
        environment_info: JsonDict | None = None,
    ) -> None:
        self.transport = transport
        self.extensions = list(extensions)
        self.environment_info = environment_info
        self.handshake_done = trio.Event()
        self.received: list[JsonDict] = []
        """Every message received from the client, in order."""
        self.next_seq: dict[str, int] = {}
        """Per process id, one past the highest seq sent."""
        self.exited: set[str] = set()
        self.closed: set[str] = set()

    async def receive(self) -> JsonDict:
        """The next message from the client, as a dict."""
        frame = await self.transport.receive()
        value = json.loads(frame)
        assert isinstance(value, dict)
        assert "jsonrpc" not in value
        self.received.append(value)
        return value

    def methods(self) -> list[str]:
        """The methods of the messages received after the handshake."""
        return [message["method"] for message in self.received[2:]]

    async def request(self, method: str | None = None) -> JsonDict:
        """The next message, which must be a request (of ``method`` when given)."""
        message = await self.receive()
        assert "id" in message, message
        if method is not None:
            assert message["method"] == method, message
        return message

    async def send(self, message: JsonDict | str) -> None:
        """Send a raw message (a dict is encoded as compact JSON)."""
        if isinstance(message, dict):
            self._track(message)
        await self.transport.send(message if isinstance(message, str) else encode(message))

    def _track(self, message: JsonDict) -> None:
        params = message.get("params")
        method = message.get("method")
        if not isinstance(params, dict) or not isinstance(params.get("seq"), int):
            return
        process_id = params.get("processId")
        if not isinstance(process_id, str):
            return
        seq: int = params["seq"]
        self.next_seq[process_id] = max(self.next_seq.get(process_id, 1), seq + 1)
        if method == "process/exited":
            self.exited.add(process_id)
        elif method == "process/closed":
            self.closed.add(process_id)

    async def finish(self, process_id: str, exit_code: int = 137) -> None:
        """Send what is missing of Exited and Closed for a process."""
        if process_id in self.closed:
            return
        seq = self.next_seq.get(process_id, 1)
        if process_id not in self.exited:
            await self.send(notification(process_id, tx.Exited(seq=seq, exit_code=exit_code)))
            seq += 1
        await self.send(notification(process_id, tx.Closed(seq=seq)))

    async def respond(self, request: JsonDict, result: JsonDict) -> None:
        await self.send({"id": request["id"], "result": result})

    async def error(self, request: JsonDict, code: int, message: str) -> None:
        await self.send({"error": {"code": code, "message": message}, "id": request["id"]})

    async def handshake(self) -> None:
        """Answer ``initialize`` and take ``initialized``, like a trio_exec server."""
        init = await self.request("initialize")
        assert init["params"]["clientName"]
        result: JsonDict = {"sessionId": "session-1", "extensions": self.extensions}
        if self.environment_info is not None:
            result["environmentInfo"] = self.environment_info
        await self.respond(init, result)
        initialized = await self.receive()
        assert initialized["method"] == "initialized", initialized
        assert "id" not in initialized
        self.handshake_done.set()

    async def serve_generic(self) -> None:
        """Answer every further request the way a server would for processes it ran.

        A terminate (or a ``kill`` signal) of a process that has not closed sends what it
        lacks of Exited (137) and Closed.
        """
        while True:
            request = await self.request()
            if request["method"] == "process/terminate":
                process_id = request["params"]["processId"]
                running = process_id not in self.exited
                await self.respond(request, {"running": running})
                await self.finish(process_id)
            elif request["method"] == "process/signal" and request["params"]["signal"] == "kill":
                await self.respond(request, {})
                await self.finish(request["params"]["processId"])
            else:
                await self.respond(request, generic_result(request))

    async def aclose(self) -> None:
        await self.transport.aclose()


def generic_result(request: JsonDict) -> JsonDict:
    """A plausible result for any process request."""
    method = request["method"]
    params = request.get("params") or {}
    if method == "process/start":
        return {"processId": params["processId"], "sandboxType": "none"}
    if method == "process/terminate":
        return {"running": False}
    if method in ("process/write", "process/closeStdin"):
        return {"status": "accepted"}
    return {}


def encode(message: JsonDict) -> str:
    return json.dumps(message, separators=(",", ":"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def notification(process_id: str, event: tx.Event) -> JsonDict:
    """The raw notification of a sequenced event."""
    match event:
        case tx.Output(seq=seq, stream=stream, data=data):
            params: JsonDict = {"seq": seq, "stream": stream.value, "chunk": b64(data)}
            return {"method": "process/output", "params": {"processId": process_id, **params}}
        case tx.Exited(seq=seq, exit_code=code, signal=signum):
            params = {"processId": process_id, "seq": seq, "exitCode": code}
            if signum is not None:
                params["signal"] = tx.signal_name(signum)
            return {"method": "process/exited", "params": params}
        case tx.Closed(seq=seq):
            return {"method": "process/closed", "params": {"processId": process_id, "seq": seq}}
    raise AssertionError(f"not a sequenced event: {event!r}")


def simple_stream(
    *outputs: bytes, exit_code: int = 0, stream: tx.OutputStream = tx.OutputStream.STDOUT
) -> list[tx.Event]:
    """Output chunks, Exited, Closed, numbered from 1."""
    events: list[tx.Event] = [
        tx.Output(seq=index, stream=stream, data=data) for index, data in enumerate(outputs, 1)
    ]
    events.append(tx.Exited(seq=len(outputs) + 1, exit_code=exit_code))
    events.append(tx.Closed(seq=len(outputs) + 2))
    return events


async def answer_start(
    server: FakeServer,
    *,
    before: Iterable[tx.Event] = (),
    after: Iterable[tx.Event] = (),
) -> JsonDict:
    """Take a ``process/start``; send ``before``, the response, then ``after``."""
    request = await server.request("process/start")
    process_id = request["params"]["processId"]
    await send_events(server, process_id, before)
    await server.respond(request, generic_result(request))
    await send_events(server, process_id, after)
    return request


async def send_events(server: FakeServer, process_id: str, events: Iterable[tx.Event]) -> None:
    for event in events:
        await server.send(notification(process_id, event))


@asynccontextmanager
async def open_fake(
    extensions: Sequence[str] = (),
    environment_info: JsonDict | None = None,
) -> AsyncIterator[tuple[RemoteBackend, FakeServer, trio.Nursery]]:
    """A RemoteBackend connected to a FakeServer that has done the handshake (whose
    ``initialize`` result carries ``environment_info`` when given).

    Yields a nursery for server-side tasks; it is cancelled when the block ends.
    """
    client_end, server_end = memory_transport_pair()
    server = FakeServer(server_end, extensions, environment_info)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        async with open_remote_backend(client_end) as backend:
            with trio.fail_after(TIMEOUT):
                await server.handshake_done.wait()
            yield backend, server, nursery
        nursery.cancel_scope.cancel()
