"""Extension ``binaryOutput``: our client and our server agree on it over a websocket, and
nobody else sees it (the reference server, a client that does not ask, stdio)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection

import trio_exec as tx
from trio_exec._protocol import ClientConnection, Extension, decode_binary_output
from trio_exec._remote import RemoteBackend, connect
from trio_exec._server import serve_websocket

from ..helpers import open_websocket

TIMEOUT = 30
PATTERN = bytes(range(256)) * 1200  # every byte value, NUL included; several chunks
WRITER = "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 1200)\nsys.stderr.write('e')"


def _agreed(backend: tx.ExecBackend) -> bool:
    assert isinstance(backend, RemoteBackend)
    endpoint = backend._rpc._endpoint
    assert isinstance(endpoint, ClientConnection)
    return endpoint.binary_output


async def _drain(backend: tx.ExecBackend) -> dict[tx.OutputStream, bytes]:
    output: dict[tx.OutputStream, bytearray] = {}
    seqs: list[int] = []
    async with backend.open_process([sys.executable, "-c", WRITER]) as proc:
        async for event in proc.events:
            assert not isinstance(event, tx.Failed), event
            seqs.append(event.seq)
            if isinstance(event, tx.Output):
                output.setdefault(event.stream, bytearray()).extend(event.data)
    assert seqs == sorted(seqs)
    return {stream: bytes(data) for stream, data in output.items()}


async def test_our_client_and_server_agree_on_binary_output(nursery: trio.Nursery) -> None:
    url = await nursery.start(serve_websocket, "127.0.0.1", 0)
    with trio.fail_after(TIMEOUT):
        async with connect(url) as backend:
            assert isinstance(backend, RemoteBackend)
            assert backend.supports(Extension.BINARY_OUTPUT)
            assert _agreed(backend)
            output = await _drain(backend)
    assert output == {tx.OutputStream.STDOUT: PATTERN, tx.OutputStream.STDERR: b"e"}


async def test_the_reference_never_sees_binary_output(reference_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(reference_url) as backend:
            assert isinstance(backend, RemoteBackend)
            assert not backend.supports(Extension.BINARY_OUTPUT)
            assert not _agreed(backend)
            output = await _drain(backend)
    assert output == {tx.OutputStream.STDOUT: PATTERN, tx.OutputStream.STDERR: b"e"}


async def _raw_output(url: str, initialize: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Start the writer with a plain websocket client; the frames of its output."""
    frames: list[Any] = []
    connection: WebSocketConnection
    async with open_websocket(url) as connection:
        await connection.send_message(
            json.dumps({"id": 1, "method": "initialize", "params": initialize})
        )
        result = json.loads(await connection.get_message())["result"]
        await connection.send_message(json.dumps({"method": "initialized", "params": {}}))
        start = {
            "processId": "w",
            "argv": [sys.executable, "-c", WRITER],
            "cwd": Path.cwd().as_uri(),
            "env": {},
            "tty": False,
        }
        await connection.send_message(
            json.dumps({"id": 2, "method": "process/start", "params": start})
        )
        while True:
            frame = await connection.get_message()
            if isinstance(frame, bytes):
                frames.append(frame)
                continue
            message = json.loads(frame)
            if message.get("method") == "process/output":
                frames.append(frame)
            if message.get("method") == "process/closed":
                return frames, result


async def test_a_client_that_does_not_ask_gets_base64_text(nursery: trio.Nursery) -> None:
    url = await nursery.start(serve_websocket, "127.0.0.1", 0)
    with trio.fail_after(TIMEOUT):
        frames, result = await _raw_output(url, {"clientName": "plain"})
    assert "binaryOutput" in result["extensions"]  # offered, but not asked for
    assert frames
    assert all(isinstance(frame, str) for frame in frames)
    data = b"".join(
        base64.b64decode(json.loads(frame)["params"]["chunk"])
        for frame in frames
        if json.loads(frame)["params"]["stream"] == "stdout"
    )
    assert data == PATTERN


async def test_a_client_that_asks_gets_binary_frames(nursery: trio.Nursery) -> None:
    url = await nursery.start(serve_websocket, "127.0.0.1", 0)
    with trio.fail_after(TIMEOUT):
        frames, _ = await _raw_output(url, {"clientName": "b", "extensions": ["binaryOutput"]})
    assert frames
    assert all(isinstance(frame, bytes) for frame in frames)
    typed = [decode_binary_output(frame) for frame in frames]
    assert [n.seq for n in typed] == sorted(n.seq for n in typed)
    stdout = b"".join(n.chunk for n in typed if n.stream is tx.OutputStream.STDOUT)
    assert stdout == PATTERN
