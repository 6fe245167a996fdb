"""The server's own websocket frames: :func:`frame_head` against the ``websockets``
package's serializer (the oracle), and the unjoined write of a frame's pieces on a TCP
socket that takes them a little at a time."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from trio_exec._server.websocket import _send_parts
from trio_exec._transport import frame_head

from .helpers import TIMEOUT

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20]
"""Every length class of RFC 6455 and its edges: 7 bits, 7+16 bits, 7+64 bits."""


def serialized(length: int, text: bool) -> tuple[bytes, bytes]:
    payload = (bytes(range(256)) * (length // 256 + 1))[:length]
    frame = Frame(Opcode.TEXT if text else Opcode.BINARY, payload).serialize(mask=False)
    return payload, frame


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
def test_the_header_is_what_the_websockets_serializer_writes(length: int, text: bool) -> None:
    payload, frame = serialized(length, text)
    assert frame_head(length, text=text) + payload == frame


@given(st.integers(min_value=0, max_value=200_000), st.booleans())
def test_any_length_gets_the_serializers_header(length: int, text: bool) -> None:
    payload, frame = serialized(length, text)
    assert frame_head(length, text=text) == frame[: len(frame) - len(payload)]


class Recording:
    """A real socket whose ``sendmsg`` calls are counted with what each one took."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.sent: list[int] = []

    async def sendmsg(self, buffers: list[memoryview]) -> int:
        sent = await self.sock.sendmsg(buffers)
        self.sent.append(sent)
        return sent


async def test_pieces_go_out_whole_and_in_order_through_partial_sends() -> None:
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        parts = [b"\x82\x7f" + bytes(8), b"", bytes(range(256)) * 4096, b"tail" * 1000]
        expected = b"".join(parts)
        received = bytearray()
        recording = Recording(ours)

        async def read_slowly() -> None:
            while len(received) < len(expected):
                received.extend(await peer.recv(3000))
                await trio.lowlevel.checkpoint()

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                await _send_parts(recording, parts)  # type: ignore[arg-type]
    assert received == expected
    assert len(recording.sent) > 1  # the socket took the frame in pieces
    assert sum(recording.sent) == len(expected)


async def test_a_peer_that_went_away_breaks_the_write() -> None:
    ours, peer = trio.socket.socketpair()
    peer.close()
    with ours, pytest.raises(trio.BrokenResourceError):
        await _send_parts(ours, [b"x" * 100_000, b"y"])


def test_nothing_to_send_sends_nothing() -> None:
    calls: list[Any] = []

    class Never:
        async def sendmsg(self, buffers: list[memoryview]) -> int:
            calls.append(buffers)
            return 0

    trio.run(_send_parts, Never(), [b"", b""])  # type: ignore[arg-type]
    assert calls == []
