"""Writing a websocket frame past wsproto, on a trio-websocket server connection.

wsproto frames a text message by encoding it, copying it into a bytearray and then
concatenating the header: three copies of every output notification. A server's frames
are not masked, so while the connection is open and has no websocket extension (trio-websocket
negotiates none), :func:`write_frame` writes the header and the payload itself, in one
copy, under trio-websocket's own stream lock (which its pongs and close frames take
too). Anything else (a client's masked frames, a connection that is closing) is left to
trio-websocket.
"""

from __future__ import annotations

import struct
from typing import Final

import trio
import trio_websocket
import wsproto.connection

__all__ = ["OPCODE_BINARY", "OPCODE_TEXT", "write_frame"]

OPCODE_TEXT: Final = 0x1
"""The opcode of a text frame (RFC 6455, 5.2)."""
OPCODE_BINARY: Final = 0x2
"""The opcode of a binary frame."""


def _frame_header(opcode: int, length: int) -> bytes:
    """The header of an unmasked, final frame of ``length`` payload bytes."""
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def _writable_directly(websocket: trio_websocket.WebSocketConnection) -> bool:
    """Whether a frame may be written past wsproto: a server's connection, open, with no
    websocket extension (whose frames would need its processing). A trio-websocket or
    wsproto whose internals differ from those known here gets False: its own send path."""
    connection = getattr(getattr(websocket, "_wsproto", None), "connection", None)
    extensions = getattr(getattr(connection, "_proto", None), "extensions", None)
    return (
        not websocket.is_client
        and websocket.closed is None
        and connection is not None
        and connection.state is wsproto.connection.ConnectionState.OPEN
        and extensions == []
        and hasattr(websocket, "_stream_lock")
        and hasattr(websocket, "_stream")
    )


async def write_frame(
    websocket: trio_websocket.WebSocketConnection, opcode: int, payload: bytes
) -> bool:
    """Write one final frame, unless the connection is one :func:`write_frame` leaves to
    trio-websocket: then return False (nothing was written).

    Raises:
        trio_websocket.ConnectionClosed: the stream broke (trio-websocket's state is
            cleaned up as its own send does).

    **Cancellation:** the frame may be half written; the caller closes the connection.
    """
    if not _writable_directly(websocket):
        await trio.lowlevel.checkpoint()
        return False
    async with websocket._stream_lock:
        if not _writable_directly(websocket):  # a close frame went out meanwhile
            return False
        try:
            await websocket._stream.send_all(_frame_header(opcode, len(payload)) + payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await websocket._abort_web_socket()
            assert websocket.closed is not None
            raise trio_websocket.ConnectionClosed(websocket.closed) from None
    return True
