"""``connect()`` options against trio_exec's own server: bearer token and TLS."""

from __future__ import annotations

import ssl
from functools import partial

import pytest
import trio
import trustme

import trio_exec as tx
from trio_exec._remote import connect
from trio_exec.testing import check_event_stream

serve_websocket = pytest.importorskip("trio_exec._server").serve_websocket

TIMEOUT = 30.0


async def test_connect_with_a_token(nursery: trio.Nursery) -> None:
    url: str = await nursery.start(partial(serve_websocket, "127.0.0.1", 0, token="s3cret"))
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url, token="s3cret", client_name="token-test") as backend,
            backend.open_process(["echo", "ok"]) as proc,
        ):
            events = [event async for event in proc.events]
        assert check_event_stream(events).output[tx.OutputStream.STDOUT] == b"ok\n"
        for token in (None, "wrong"):
            with pytest.raises(tx.ConnectionLost, match="401") as info:
                async with connect(url, token=token):
                    raise AssertionError("must not connect")
            assert "s3cret" not in str(info.value)


async def test_connect_over_tls(nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    url: str = await nursery.start(
        partial(serve_websocket, "127.0.0.1", 0, ssl_context=server_context)
    )
    assert url.startswith("wss://")
    # 4 MiB: output frames in several pieces each (their headers, their chunks), each
    # piece encrypted on its own; the chunks arrive whole and in order.
    writer = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 16384)"
    with trio.fail_after(TIMEOUT):
        async with connect(url, ssl_context=client_context) as backend:
            assert "binaryOutput" in backend.extensions
            async with backend.open_process(["echo", "tls"]) as proc:
                events = [event async for event in proc.events]
            async with backend.open_process(["python3", "-c", writer]) as proc:
                large = [event async for event in proc.events]
    assert check_event_stream(events).output[tx.OutputStream.STDOUT] == b"tls\n"
    assert check_event_stream(large).output[tx.OutputStream.STDOUT] == bytes(range(256)) * 16384


async def test_connect_refused() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost, match="cannot connect"):
        async with connect(f"ws://127.0.0.1:{port}"):
            raise AssertionError("must not connect")
    with pytest.raises(ValueError, match="ws://"):
        async with connect("http://127.0.0.1:1"):
            raise AssertionError("must not connect")
