"""The websocket endpoint: HTTP routing, Origin and bearer checks, frames, session teardown."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket
import trustme
from trio_websocket import Endpoint

from trio_exec._server import ExecServer, _token_digest, serve_websocket
from trio_exec._transport import WebSocketTransport, open_websocket_transport

from ..helpers import open_websocket
from .helpers import TIMEOUT, Client, group_alive, open_ws_client, wait_group_gone

TOKEN = "s3cret-token"

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """Our server without auth on a free loopback port."""
    async with trio.open_nursery() as nursery:
        bound: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
        yield bound
        nursery.cancel_scope.cancel()


@pytest.fixture
async def url_without_detach() -> AsyncIterator[str]:
    """Our server with ``detach_timeout=0``: a lost connection ends its session at once.

    (With the default, the session is detached for a resume and ends DETACH_TIMEOUT later:
    tests/resume covers that.)
    """
    async with trio.open_nursery() as nursery:
        serve = partial_serve(server=ExecServer(detach_timeout=0))
        bound: str = await nursery.start(serve)
        yield bound
        nursery.cancel_scope.cancel()


@pytest.fixture
async def auth_url() -> AsyncIterator[str]:
    """Our server with a bearer token."""
    async with trio.open_nursery() as nursery:
        bound: str = await nursery.start(partial_serve(token=TOKEN))
        yield bound
        nursery.cancel_scope.cancel()


def partial_serve(**kwargs: Any) -> Callable[..., Awaitable[None]]:
    """``serve_websocket`` on a free loopback port with these options, for ``nursery.start``."""

    async def serve(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_websocket("127.0.0.1", 0, task_status=task_status, **kwargs)

    return serve


async def http(url: str, request: str) -> tuple[int, dict[str, str], bytes]:
    """Send a raw HTTP request; return the status, headers and body of the answer."""
    host, port = url.removeprefix("ws://").split(":")
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some()
                assert chunk, data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            status = int(status_line.split()[1])
            if status != 101 and not request.startswith("HEAD"):
                while len(body) < int(headers["content-length"]):
                    body += await stream.receive_some()
    return status, headers, body


# -- HTTP --------------------------------------------------------------------------------------


async def test_url_and_readyz(url: str) -> None:
    assert url.startswith("ws://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0
    assert await http(url, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n") == (
        200,
        {"content-length": "0", "connection": "close"},
        b"",
    )
    status, _, _ = await http(url, "HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    status, headers, _ = await http(url, "POST /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, headers["allow"]) == (405, "GET,HEAD")


async def test_readyz_needs_no_auth(auth_url: str) -> None:
    status, _, _ = await http(auth_url, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200


async def test_origin_is_refused(auth_url: str) -> None:
    origin = "Origin: http://evil.example\r\n"
    for request in [
        f"GET /readyz HTTP/1.1\r\nHost: x\r\n{origin}\r\n",
        UPGRADE.format(path="/", extra=origin),
        UPGRADE.format(path="/", extra=f"{origin}Authorization: Bearer {TOKEN}\r\n"),
    ]:
        status, _, body = await http(auth_url, request)
        assert (status, body) == (403, b"")


async def test_other_requests(url: str) -> None:
    status, headers, body = await http(url, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (400, b"Connection header did not include 'upgrade'")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    status, _, body = await http(url, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (404, b"")
    status, _, _ = await http(url, UPGRADE.format(path="/other", extra=""))
    assert status == 404
    bad_version = UPGRADE.format(path="/", extra="").replace("Version: 13", "Version: 8")
    status, _, body = await http(url, bad_version)
    assert (status, body) == (400, b"`Sec-WebSocket-Version` header did not include '13'")
    status, _, _ = await http(url, "HELLO\r\n\r\n")
    assert status == 400
    big = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 20_000 + "\r\n\r\n"
    status, _, _ = await http(url, big)
    assert status == 431
    # The server still works.
    async with open_ws_client(url) as client:
        assert await client.call("process/list", {}) == {"processes": []}


async def test_silent_client_does_not_block_others(url: str) -> None:
    host, port = url.removeprefix("ws://").split(":")
    # The first connection sends nothing; the second is served meanwhile.
    async with await trio.open_tcp_stream(host, int(port)), open_ws_client(url) as client:
        assert await client.call("process/list", {}) == {"processes": []}


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing websocket bearer token"),
        ("Bearer wrong", "invalid websocket bearer token"),
        ("Basic dXNlcjpwYXNz", "invalid authorization header"),
        ("Bearer ", "invalid authorization header"),
    ],
)
async def test_auth_failures(auth_url: str, authorization: str | None, message: str) -> None:
    extra = "" if authorization is None else f"Authorization: {authorization}\r\n"
    status, headers, body = await http(auth_url, UPGRADE.format(path="/", extra=extra))
    assert (status, body.decode()) == (401, message)
    assert headers["content-type"] == "text/plain; charset=utf-8"


async def test_auth_success(auth_url: str) -> None:
    async with open_ws_client(auth_url, token=TOKEN) as client:
        assert await client.call("process/list", {}) == {"processes": []}
    # The scheme is case-insensitive and whitespace is trimmed.
    status, _, _ = await http(
        auth_url, UPGRADE.format(path="/", extra=f"Authorization: bearer   {TOKEN} \r\n")
    )
    assert status == 101


async def test_auth_with_token_digest() -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest().upper()
    async with trio.open_nursery() as nursery:
        bound: str = await nursery.start(partial_serve(token_sha256=digest))
        async with open_ws_client(bound, token=TOKEN) as client:
            assert await client.call("process/list", {}) == {"processes": []}
        wrong = UPGRADE.format(path="/", extra="Authorization: Bearer other\r\n")
        assert (await http(bound, wrong))[0] == 401
        nursery.cancel_scope.cancel()


def test_token_digest_validation() -> None:
    assert _token_digest(None, None) is None
    assert _token_digest(" t \n", None) == hashlib.sha256(b"t").digest()
    with pytest.raises(ValueError, match="not both"):
        _token_digest("t", "00" * 32)
    with pytest.raises(ValueError, match="64-character"):
        _token_digest(None, "abc")
    with pytest.raises(ValueError, match="empty"):
        _token_digest("  ", None)


async def test_tls() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with trio.open_nursery() as nursery:
        bound: str = await nursery.start(partial_serve(ssl_context=server_context))
        assert bound.startswith("wss://127.0.0.1:")
        async with open_websocket_transport(bound, ssl_context=client_context) as transport:
            client = Client(transport)
            async with trio.open_nursery() as inner:
                inner.start_soon(client.run_reader)
                await client.initialize()
                await client.start("t", ["echo", "secure"])
                await client.wait_closed("t")
                assert client.output("t") == b"secure\n"
                inner.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


# -- frames ------------------------------------------------------------------------------------


async def test_malformed_frames_while_another_connection_works(url: str) -> None:
    async with open_ws_client(url) as a, open_ws_client(url) as b:
        assert isinstance(a.transport, WebSocketTransport)
        local = a.transport.websocket.local
        assert isinstance(local, Endpoint)
        port = local.port
        await b.start("cat", ["cat"], pipeStdin=True)
        for frame in ["{not json", "", "[1]", '{"id":null,"method":"x"}']:
            await a.send_raw(frame)
        await a.transport.websocket.send_message(b"\xff\xfe")  # a binary frame, not UTF-8
        await a.wait_until(lambda: len([m for m in a.received if m.get("id") == -1]) == 5)
        prefix = f"failed to parse websocket JSON-RPC message from exec-server websocket 127.0.0.1:{port}: "
        for message in (m for m in a.received if m.get("id") == -1):
            assert message["error"]["code"] == -32600
            assert message["error"]["message"].startswith(prefix)
        # Both connections keep working.
        assert await b.write("cat", b"still here\n", "w1") == "accepted"
        await b.wait_output("cat", b"still here\n")
        assert await a.call("process/list", {}) == {"processes": []}


async def test_binary_frames_are_accepted(url: str) -> None:
    async with open_websocket(url) as ws:
        await ws.send_message(
            json.dumps({"id": 1, "method": "initialize", "params": {"clientName": "b"}}).encode()
        )
        with trio.fail_after(TIMEOUT):
            response = json.loads(await ws.get_message())
        assert response["id"] == 1
        assert "sessionId" in response["result"]


# -- session teardown --------------------------------------------------------------------------


async def _start_group(client: Client, process_id: str, script: str) -> int:
    await client.start(process_id, ["sh", "-c", f"echo $$; {script}"])
    await client.wait_output(process_id, b"\n")
    pgid = int(client.output(process_id))
    assert group_alive(pgid)
    return pgid


async def test_client_disconnect_reaps_its_processes(url_without_detach: str) -> None:
    async with open_ws_client(url_without_detach) as client:
        plain = await _start_group(client, "plain", "sleep 60 & exec sleep 60")
        # Ignores SIGTERM: killed after the session-end grace.
        stubborn = await _start_group(client, "stubborn", "trap '' TERM; sleep 60 & wait")
    await wait_group_gone(plain, 2.0)
    await wait_group_gone(stubborn, 2.0)


async def test_abrupt_disconnect_reaps_its_processes(url_without_detach: str) -> None:
    async with open_ws_client(url_without_detach) as client:
        pgid = await _start_group(client, "p", "exec sleep 60")
        assert isinstance(client.transport, WebSocketTransport)
        stream = client.transport.websocket._stream
        await trio.aclose_forcefully(stream)  # no close handshake
    await wait_group_gone(pgid, 2.0)


async def test_server_cancellation_leaves_no_process() -> None:
    server = ExecServer()
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[str]) -> None:
        with scope:
            await serve_websocket("127.0.0.1", 0, server=server, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        bound: str = await nursery.start(run)
        async with open_ws_client(bound) as first, open_ws_client(bound) as second:
            plain = await _start_group(first, "a", "sleep 60 & exec sleep 60")
            stubborn = await _start_group(second, "b", "trap '' TERM; sleep 60 & wait")
            assert server.statistics().running_processes == 2
            scope.cancel()
            with trio.fail_after(TIMEOUT):
                await stopped.wait()
            # Cancellation returned only once every session ended and was reaped.
            assert server.statistics().connections == 0
            assert not group_alive(plain)
            assert not group_alive(stubborn)
            # The clients see their connections drop.
            await first.wait_until(lambda: first.closed)
            await second.wait_until(lambda: second.closed)


# -- output frames ------------------------------------------------------------------------------


async def test_output_frames_and_pongs_share_the_stream_whole(url: str) -> None:
    # Output notifications are framed by the server itself and written beside
    # trio-websocket's own frames (pongs here): every frame must arrive whole, in order.
    size = 3 * 1024 * 1024
    async with open_websocket(url, max_message_size=16 * 1024 * 1024) as ws:

        async def call(request_id: int, method: str, params: dict[str, Any]) -> None:
            await ws.send_message(
                json.dumps({"id": request_id, "method": method, "params": params})
            )

        await call(1, "initialize", {"clientName": "frames"})
        await ws.send_message(json.dumps({"method": "initialized", "params": {}}))
        argv = ["head", "-c", str(size), "/dev/urandom"]
        params = {"processId": "p", "argv": argv, "cwd": Path.cwd().as_uri(), "env": {}}
        await call(2, "process/start", {**params, "tty": False})
        output = bytearray()
        pongs = 0
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:

                async def ping() -> None:
                    nonlocal pongs
                    while True:
                        await ws.ping()
                        pongs += 1

                nursery.start_soon(ping)
                seqs = []
                while True:
                    message = await ws.get_message()
                    assert isinstance(message, str)  # text frames
                    decoded = json.loads(message)
                    if decoded.get("method") == "process/output":
                        seqs.append(decoded["params"]["seq"])
                        output += base64.b64decode(decoded["params"]["chunk"], validate=True)
                    elif decoded.get("method") == "process/closed":
                        break
                nursery.cancel_scope.cancel()
    assert len(output) == size
    assert seqs == sorted(seqs)
    assert pongs > 0


async def test_a_frame_is_not_written_once_the_websocket_is_closing() -> None:
    # The server's own framing honours the close: after trio-websocket began closing the
    # connection, a send raises ConnectionLost and puts nothing on the wire.
    from trio_exec._errors import ConnectionLost
    from trio_exec._server.websocket import _ReplayStream

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    received: list[str | bytes] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                # Our client transport, which closes its socket after the server's close.
                async with open_websocket_transport(f"ws://127.0.0.1:{port}") as peer:
                    try:
                        while True:
                            received.append(await peer.receive())
                    except ConnectionLost:
                        pass

            nursery.start_soon(client)
            stream = await listeners[0].accept()
            replay = _ReplayStream(stream, b"")
            request = await trio_websocket.wrap_server_stream(nursery, replay)
            websocket = await request.accept()
            transport = WebSocketTransport(websocket, frames=replay)
            await transport.send_encoded(b'{"n":1}')
            await transport.send_binary(b"\x00\x01")
            await transport.aclose()
            with pytest.raises(ConnectionLost, match="closed"):
                await transport.send_encoded(b'{"n":2}')
            assert await replay.write_frame((b"never",), lambda: False) is False
    for listener in listeners:
        await listener.aclose()
    assert received == ['{"n":1}', b"\x00\x01"]
