"""Message transports: one JSON-RPC message per ``send`` / ``receive``, both ways.

Three implementations share the small :class:`MessageTransport` interface (in the style of
httpx's transports): a websocket (trio-websocket, one message per frame; ``websocket``), a
byte stream pair with newline-delimited JSON (stdio, a command such as ``ssh host
trio-exec serve --listen stdio``), and an in-memory pair for tests (``base``). The RPC
client and the server only ever see a :class:`MessageTransport`.
"""

from __future__ import annotations

from .base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MEMORY_TRANSPORT_BUFFER,
    TRANSPORT_ERRORS,
    WEBSOCKET_CONNECT_TIMEOUT,
    WEBSOCKET_DISCONNECT_TIMEOUT,
    WEBSOCKET_GOING_AWAY,
    WEBSOCKET_RECEIVE_BYTES,
    MemoryTransport,
    MessageTransport,
    StreamTransport,
    is_transport_error,
    memory_transport_pair,
)
from .websocket import (
    REJECTION_REASON_CHARS,
    FrameWriter,
    WebSocketTransport,
    frame_head,
    open_websocket_transport,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MEMORY_TRANSPORT_BUFFER",
    "REJECTION_REASON_CHARS",
    "TRANSPORT_ERRORS",
    "WEBSOCKET_CONNECT_TIMEOUT",
    "WEBSOCKET_DISCONNECT_TIMEOUT",
    "WEBSOCKET_GOING_AWAY",
    "WEBSOCKET_RECEIVE_BYTES",
    "FrameWriter",
    "MemoryTransport",
    "MessageTransport",
    "StreamTransport",
    "WebSocketTransport",
    "frame_head",
    "is_transport_error",
    "memory_transport_pair",
    "open_websocket_transport",
]
