"""The websocket transport: trio-websocket connections, one JSON-RPC message per frame.

The client side connects with :func:`open_websocket_transport` (TLS, a bearer token, the
upgrade's refusal reasons); the server side wraps a connection that
:mod:`trio_exec._server.websocket` accepted, and frames its output notifications itself
(see :class:`WebSocketTransport`).
"""

from __future__ import annotations

import os
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

from .._errors import ConnectionLost
from .._util import open_service_nursery
from .base import (
    DEFAULT_MAX_MESSAGE_BYTES,
    WEBSOCKET_CONNECT_TIMEOUT,
    WEBSOCKET_DISCONNECT_TIMEOUT,
    WEBSOCKET_GOING_AWAY,
    WEBSOCKET_RECEIVE_BYTES,
    MessageTransport,
    _why,
)

__all__ = [
    "REJECTION_REASON_CHARS",
    "FrameWriter",
    "WebSocketTransport",
    "frame_head",
    "open_websocket_transport",
]


_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82
_HEAD_SHORT: Final = struct.Struct("!BB")
_HEAD_16: Final = struct.Struct("!BBH")
_HEAD_64: Final = struct.Struct("!BBQ")


class FrameWriter(Protocol):
    """The stream under a server's websocket connection, as :class:`WebSocketTransport`
    writes whole frames on it: its writes and the connection's own (pongs, close) are
    serialized, each one whole."""

    async def write_frame(self, parts: Sequence[bytes], still_open: Callable[[], bool]) -> bool:
        """Write the bytes of ``parts``, in order, as one write (a frame's header and its
        payload's pieces), unless ``still_open()`` is false once the writes before it
        are done; return whether it was written.

        Raises:
            trio.BrokenResourceError: the connection broke.
            trio.ClosedResourceError: the stream was closed.
        """
        ...


class WebSocketTransport(MessageTransport):
    """A transport over a trio-websocket connection; text frames out (binary ones for
    :meth:`send_binary`), text or binary in (``str`` or ``bytes``).

    With ``frames`` (the server side, which owns the stream under the connection), the
    already encoded messages of :meth:`send_encoded` and :meth:`send_binary` (output
    notifications, most of what a server sends) get a header of :func:`frame_head` and
    are written with one ``write_frame``, the header and the payload's pieces unjoined
    (on a TCP socket, one ``sendmsg``). trio-websocket's wsproto copies a message five
    times on its way out (decoded to a str, encoded back, copied into a bytearray,
    joined to its header, copied again), which made framing a third of the server's CPU
    time per MiB of output; a serializer that joins header and payload (the
    ``websockets`` package's) still copies each chunk twice with the notification's
    own header, and the fresh buffers of half a MiB cost page faults: measured over
    loopback with our client, the unjoined write took 64 MiB of output from about 950
    to 1,200-1,500 MiB/s and the server's page faults from about 10,000 to 500. The
    tests check :func:`frame_head` against the ``websockets`` serializer for every
    length class. Other messages (pongs, close, requests' answers through
    :meth:`send`), and the client side, go through trio-websocket.
    """

    carries_binary = True

    def __init__(
        self, websocket: trio_websocket.WebSocketConnection, frames: FrameWriter | None = None
    ) -> None:
        self.websocket: Final = websocket
        """The underlying connection."""
        self._send_lock = trio.Lock()
        self._frames = frames

    async def send(self, message: str) -> None:
        """See :meth:`MessageTransport.send`: a text frame."""
        await self._send_message(message)

    async def send_encoded(self, text: bytes) -> None:
        """See :meth:`MessageTransport.send_encoded`: a text frame (``text`` is the
        pure-ASCII JSON of the codec)."""
        if self._frames is not None:
            await self._send_frame((frame_head(len(text), text=True), text))
        else:
            await self._send_message(text.decode("ascii"))

    async def send_binary(self, *parts: bytes) -> None:
        """See :meth:`MessageTransport.send_binary`."""
        if self._frames is not None:
            await self._send_frame((frame_head(sum(map(len, parts)), text=False), *parts))
        else:
            await self._send_message(b"".join(parts))

    async def _send_frame(self, parts: Sequence[bytes]) -> None:
        assert self._frames is not None
        async with self._send_lock:
            try:
                sent = await self._frames.write_frame(parts, self._is_open)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLost(f"the websocket's connection broke ({_why(exc)})") from None
        if not sent:
            closed = trio_websocket.ConnectionClosed(self.websocket.closed)
            raise ConnectionLost(_describe_close(closed), close_code=_close_code(closed))

    def _is_open(self) -> bool:
        return self.websocket.closed is None

    async def _send_message(self, message: str | bytes) -> None:
        # trio-websocket frames the message: a str as a text frame, bytes as binary.
        async with self._send_lock:
            try:
                await self.websocket.send_message(message)
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
                raise ConnectionLost(_describe_close(exc), close_code=_close_code(exc)) from None

    async def receive(self) -> str | bytes:
        """See :meth:`MessageTransport.receive`."""
        try:
            return await self.websocket.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise ConnectionLost(_describe_close(exc), close_code=_close_code(exc)) from None

    async def aclose(self) -> None:
        """See :meth:`MessageTransport.aclose`."""
        await self._close(1000, None)

    async def aclose_going_away(self, reason: str) -> None:
        """See :meth:`MessageTransport.aclose_going_away`: close code 1001."""
        await self._close(WEBSOCKET_GOING_AWAY, reason)

    async def _close(self, code: int, reason: str | None) -> None:
        try:
            await self.websocket.aclose(code, reason)
        finally:
            # trio-websocket leaves the TCP stream open when the peer dropped it
            # without a close handshake; close it ourselves so no socket leaks.
            stream = getattr(self.websocket, "_stream", None)
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)


def frame_head(length: int, *, text: bool) -> bytes:
    """The header of a whole, unmasked (server to client) websocket frame whose payload is
    ``length`` bytes: FIN and the opcode, then the length in 7, 7+16 or 7+64 bits
    (RFC 6455, section 5.2). The payload follows it on the stream, unjoined."""
    first = _FIN_TEXT if text else _FIN_BINARY
    if length < 126:
        return _HEAD_SHORT.pack(first, length)
    if length < 65536:
        return _HEAD_16.pack(first, 126, length)
    return _HEAD_64.pack(first, 127, length)


def _close_code(exc: BaseException) -> int | None:
    code = getattr(getattr(exc, "reason", None), "code", None)
    return code if isinstance(code, int) else None


def _describe_close(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason is None:
        return "the websocket was closed"
    detail = f": {reason.reason}" if getattr(reason, "reason", None) else ""
    return f"the websocket was closed ({reason.code} {reason.name}{detail})"


@asynccontextmanager
async def open_websocket_transport(
    url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> AsyncIterator[WebSocketTransport]:
    """Connect to an exec server's websocket and yield the transport.

    Args:
        url: ``ws://host:port`` or ``wss://host:port`` (path ``/`` by default).
        token: sent as ``Authorization: Bearer <token>``.
        ssl_context: for ``wss://``; default: the system's trust store.

    Raises:
        ConnectionLost: the connection or the upgrade failed (the message says why,
            never the token).
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL.

    **Cancellation:** the connection is closed.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port when it is read
    except ValueError as exc:
        raise ValueError(f"invalid port in {url!r}: {exc}") from None
    headers = [(name.encode(), value.encode()) for name, value in extra_headers]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream | None = None
    connected = False
    try:
        async with open_service_nursery() as nursery:
            with trio.fail_after(WEBSOCKET_CONNECT_TIMEOUT):
                if parts.scheme == "wss":
                    context = ssl_context or ssl.create_default_context()
                    ssl_stream = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=context
                    )
                    stream = ssl_stream
                    # Handshake here: trio-websocket would wait forever on a failed one.
                    await ssl_stream.do_handshake()
                else:
                    stream = await trio.open_tcp_stream(host, port)
                connection = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host,
                    resource,
                    extra_headers=headers,
                    max_message_size=max_message_bytes,
                    receive_buffer_size=WEBSOCKET_RECEIVE_BYTES,
                )
            connected = True
            transport = WebSocketTransport(connection)
            try:
                yield transport
            finally:
                with trio.move_on_after(WEBSOCKET_DISCONNECT_TIMEOUT) as scope:
                    scope.shield = True
                    await transport.aclose()
                nursery.cancel_scope.cancel()
    except _CONNECT_ERRORS as exc:
        # A refused upgrade comes from trio-websocket's reader task, as itself too.
        if connected:
            raise
        raise ConnectionLost(f"cannot connect to {url}: {_describe_connect_error(exc)}") from None
    finally:
        # Also after a refused upgrade, which trio-websocket leaves open.
        if stream is not None:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


_CONNECT_ERRORS: Final = (
    OSError,
    trio.BrokenResourceError,  # a failed TLS handshake (the cause says why)
    trio_websocket.HandshakeError,
    trio.TooSlowError,
)


REJECTION_REASON_CHARS: Final = 200
"""Longest body of a refused upgrade quoted in the error: a short ``text/plain`` reason
(an exec server's ``invalid websocket bearer token``). Any other body (a web page) is left
out of the message."""


def _rejection_reason(exc: trio_websocket.ConnectionRejected) -> str:
    """What to say after the status of a refused upgrade: the server's short plain-text
    reason, or that a server answering 2xx / 3xx / HTML is not an exec server."""
    content_type = ""
    for name, value in exc.headers or ():
        if name.lower() == b"content-type":
            content_type = value.decode("latin-1").lower()
    body = (exc.body or b"").decode("utf-8", "replace").strip()
    plain = content_type.startswith("text/plain") or (not content_type and "<" not in body)
    if body and plain and len(body) <= REJECTION_REASON_CHARS and "\n" not in body:
        return f" {body}"
    if 200 <= exc.status_code < 400:
        return " (not an exec server: it did not upgrade the connection to a websocket)"
    return ""


def _describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"HTTP {exc.status_code}" + _rejection_reason(exc)
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return str(exc.__cause__)
    if isinstance(exc, trio.TooSlowError):
        return f"no answer within {WEBSOCKET_CONNECT_TIMEOUT} s"
    text = str(exc) or type(exc).__name__
    if isinstance(exc.__cause__, BaseExceptionGroup):
        # trio's "all attempts to connect ... failed": each attempt's reason, once.
        reasons = dict.fromkeys(
            os.strerror(leaf.errno)
            for leaf in exc.__cause__.exceptions
            if isinstance(leaf, OSError) and leaf.errno
        )
        if reasons:
            text += f" ({', '.join(reasons)})"
    return text
