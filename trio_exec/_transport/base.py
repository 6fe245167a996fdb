"""The transport interface, the table of transport errors, and the byte-stream and
in-memory transports (see :mod:`trio_exec._transport`)."""

from __future__ import annotations

import abc
from typing import Final

import trio
import trio_websocket

from .._errors import ConnectionLost
from .._protocol import StreamDecoder, record_head
from .._util import leaf_exceptions

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MEMORY_TRANSPORT_BUFFER",
    "TRANSPORT_ERRORS",
    "WEBSOCKET_CONNECT_TIMEOUT",
    "WEBSOCKET_DISCONNECT_TIMEOUT",
    "WEBSOCKET_GOING_AWAY",
    "WEBSOCKET_RECEIVE_BYTES",
    "MemoryTransport",
    "MessageTransport",
    "StreamTransport",
    "is_transport_error",
    "memory_transport_pair",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Largest message a transport accepts (16 MiB): a websocket frame or an NDJSON line.

Large enough for a ``process/read`` result carrying the whole default retention (1 MiB of
output is about 1.4 MB of base64) and for writes of several MiB.
"""

WEBSOCKET_RECEIVE_BYTES: Final = 256 * 1024
"""Bytes read from a websocket's socket at once (trio-websocket reads 4 KiB by default,
which makes a 128 KiB output notification cost 32 reads)."""

WEBSOCKET_CONNECT_TIMEOUT: Final = 10.0
"""Seconds a websocket connect (TCP, TLS and the upgrade) may take."""

WEBSOCKET_DISCONNECT_TIMEOUT: Final = 2.0
"""Seconds a websocket close handshake may take before the socket is dropped."""

WEBSOCKET_GOING_AWAY: Final = 1001
"""The websocket close code (RFC 6455 "Going Away") of :meth:`MessageTransport.aclose_going_away`:
the peer is shutting down. A trio_exec client does not try to resume a session closed
with it (a dropped connection, code 1006, is resumed)."""

MEMORY_TRANSPORT_BUFFER: Final = 64
"""Messages an in-memory transport buffers in each direction before ``send`` waits."""


TRANSPORT_ERRORS: Final = (
    ConnectionLost,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio_websocket.ConnectionClosed,
    trio_websocket.HandshakeError,
)
"""The exceptions that say a transport (or the socket or stream under it) went away.

A transport raises :class:`~trio_exec.ConnectionLost`; the others come from the layers
below it (a socket, a TLS stream, trio-websocket's reader task) when they escape around it.
"""


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) is one of :data:`TRANSPORT_ERRORS`:
    the peer or the connection went away, rather than a bug or a bad message."""
    return all(isinstance(leaf, TRANSPORT_ERRORS) for leaf in leaf_exceptions(exc))


class MessageTransport(abc.ABC):
    """A bidirectional channel of whole JSON-RPC messages.

    ``send`` and ``receive`` may run concurrently in different tasks; two concurrent
    ``send`` calls are serialized.
    """

    @abc.abstractmethod
    async def send(self, message: str) -> None:
        """Send one message.

        Raises:
            ConnectionLost: the transport is closed or broken.

        **Cancellation:** the message may or may not have been sent; a websocket or
        stream may be left mid-message, so the caller should close the transport.
        """

    carries_binary: bool = False
    """Whether :meth:`send_binary` works: binary messages, told apart from text ones (a
    websocket's frames, a byte stream's records)."""

    async def send_encoded(self, text: bytes) -> None:
        """Send one message given as its UTF-8 text: what ``send(text.decode())`` sends,
        without the round trip through ``str`` where the transport can skip it.

        Raises:
            ConnectionLost: the transport is closed or broken.

        **Cancellation:** as :meth:`send`.
        """
        await self.send(text.decode())

    async def send_binary(self, *parts: bytes) -> None:
        """Send one binary frame whose payload is the bytes of ``parts``, in order (only
        where :attr:`carries_binary`); a transport may write the parts unjoined.

        Raises:
            ConnectionLost: the transport is closed or broken.
            NotImplementedError: the transport has no binary frames.

        **Cancellation:** as :meth:`send`.
        """
        await trio.lowlevel.checkpoint()
        raise NotImplementedError(f"{type(self).__name__} has no binary frames")

    @abc.abstractmethod
    async def receive(self) -> str | bytes:
        """Receive the next message.

        Raises:
            ConnectionLost: the peer closed the transport or it broke.

        **Cancellation:** no message is lost.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the transport; idempotent.

        **Cancellation:** the transport is closed anyway (perhaps without a close
        handshake).
        """

    async def aclose_going_away(self, reason: str) -> None:
        """Close the transport because this end is shutting down; idempotent.

        A websocket sends close code :data:`WEBSOCKET_GOING_AWAY` (1001) with ``reason``,
        which the peer's :class:`~trio_exec.ConnectionLost` carries as ``close_code``;
        other transports just close (the peer reads end of file).

        **Cancellation:** as :meth:`aclose`.
        """
        await self.aclose()


def _why(exc: trio.BrokenResourceError | trio.ClosedResourceError) -> str:
    """What broke a stream: trio's error says it only through its cause (``Broken pipe``)."""
    return str(exc) or str(exc.__cause__ or "") or type(exc).__name__


class StreamTransport(MessageTransport):
    """Newline-delimited JSON over a pair of byte streams (stdio, a command's pipes), and
    the binary records of extension ``binaryOutput`` between two trio_exec peers (see
    :mod:`trio_exec._protocol.framing`): a server's output as raw bytes, no base64.

    Args:
        send_stream: where messages go, one compact JSON object and ``\\n`` each (a
            binary message as one record).
        receive_stream: where messages come from; blank lines are skipped.
        max_message_bytes: the longest line (or record) accepted; a longer one breaks
            the transport.
        receive_chunk_bytes: the most bytes read from ``receive_stream`` at once (256 KiB:
            an output notification of 128 KiB is about 175 KB of JSON, read in one go).
    """

    def __init__(
        self,
        send_stream: trio.abc.SendStream,
        receive_stream: trio.abc.ReceiveStream,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        receive_chunk_bytes: int = 256 * 1024,
    ) -> None:
        self._send_stream = send_stream
        self._receive_stream = receive_stream
        self._decoder = StreamDecoder(max_message_bytes)
        self._lines: list[str | bytes] = []
        self._chunk = receive_chunk_bytes
        self._send_lock = trio.Lock()
        self._eof = False

    async def send(self, message: str) -> None:
        """See :meth:`MessageTransport.send`. The message must not contain a newline."""
        await self.send_encoded(message.encode())

    async def send_encoded(self, text: bytes) -> None:
        """See :meth:`MessageTransport.send_encoded`. The text must not contain a newline."""
        if b"\n" in text:
            raise ValueError("an NDJSON message must not contain a newline")
        async with self._send_lock:
            try:
                await self._send_stream.send_all(text + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLost(f"the stream was closed: {_why(exc)}") from None

    carries_binary = True

    async def send_binary(self, *parts: bytes) -> None:
        """See :meth:`MessageTransport.send_binary`: one record, its head and the parts
        written one after the other (none joined)."""
        head = record_head(sum(map(len, parts)))
        async with self._send_lock:
            try:
                for part in (head, *parts):
                    if part:
                        await self._send_stream.send_all(part)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLost(f"the stream was closed: {_why(exc)}") from None

    async def receive(self) -> str | bytes:
        """See :meth:`MessageTransport.receive`: a line as ``str`` (as ``bytes`` if it is
        not UTF-8), a record as ``bytes``.

        Raises:
            ConnectionLost: end of stream (also inside a record), or a line or record
                longer than ``max_message_bytes``.
        """
        while not self._lines:
            if self._eof:
                raise ConnectionLost("the stream reached end of file")
            try:
                data = await self._receive_stream.receive_some(self._chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLost(f"the stream broke: {_why(exc)}") from None
            try:
                if data:
                    self._lines.extend(self._decoder.feed(data))
                else:
                    self._eof = True
                    self._lines.extend(self._decoder.feed_eof())
            except ConnectionLost:
                raise
            except Exception as exc:
                raise ConnectionLost(str(exc)) from exc
        return self._lines.pop(0)

    async def aclose(self) -> None:
        """See :meth:`MessageTransport.aclose`."""
        try:
            await self._send_stream.aclose()
        finally:
            await self._receive_stream.aclose()


class MemoryTransport(MessageTransport):
    """One end of an in-memory transport pair; see :func:`memory_transport_pair`."""

    def __init__(
        self,
        send_channel: trio.MemorySendChannel[str | bytes],
        receive_channel: trio.MemoryReceiveChannel[str | bytes],
    ) -> None:
        self._send_channel = send_channel
        self._receive_channel = receive_channel

    async def send(self, message: str) -> None:
        """See :meth:`MessageTransport.send`."""
        try:
            await self._send_channel.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionLost("the peer closed the memory transport") from None

    async def receive(self) -> str | bytes:
        """See :meth:`MessageTransport.receive`."""
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionLost("the peer closed the memory transport") from None

    async def aclose(self) -> None:
        """See :meth:`MessageTransport.aclose`."""
        await self._send_channel.aclose()
        await self._receive_channel.aclose()


def memory_transport_pair(
    buffer: int = MEMORY_TRANSPORT_BUFFER,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports: what one sends, the other receives."""
    a_send, b_receive = trio.open_memory_channel[str | bytes](buffer)
    b_send, a_receive = trio.open_memory_channel[str | bytes](buffer)
    return MemoryTransport(a_send, a_receive), MemoryTransport(b_send, b_receive)
