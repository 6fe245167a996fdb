"""The websocket port: HTTP request heads, routing, Origin and bearer checks, the upgrade.

:func:`serve_websocket` listens, refuses to serve without a token on an address that is
not loopback, and hands each upgraded connection to an :class:`ExecServer` as a
detachable connection.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import ipaddress
import logging
import ssl
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

import attrs
import h11
import trio
import trio_websocket

from .._transport import WEBSOCKET_RECEIVE_BYTES, WebSocketTransport, is_transport_error
from .connection import _websocket_parse_prefix
from .server import ExecServer

__all__ = [
    "HTTP_HEAD_TIMEOUT",
    "MAX_HTTP_HEAD_BYTES",
    "_is_loopback",
    "_token_digest",
    "serve_websocket",
]

_logger = logging.getLogger("trio_exec.server")

HTTP_HEAD_TIMEOUT: Final = 10.0
"""Seconds a websocket client may take to send its HTTP request head and finish the upgrade."""

MAX_HTTP_HEAD_BYTES: Final = 16 * 1024
"""Largest HTTP request head accepted on the websocket port; a longer one gets 431."""


def _token_digest(token: str | None, token_sha256: str | None) -> bytes | None:
    if token is not None and token_sha256 is not None:
        raise ValueError("pass token or token_sha256, not both")
    if token is not None:
        if not token.strip():
            raise ValueError("the token must not be empty")
        return hashlib.sha256(token.strip().encode()).digest()
    if token_sha256 is not None:
        try:
            digest = bytes.fromhex(token_sha256)
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("token_sha256 must be a 64-character hex SHA-256 digest")
        return digest
    return None


class _ReplayStream(trio.abc.Stream):
    """A stream that first returns bytes already read from the underlying stream.

    Its writes are serialized, each one whole: trio-websocket writes its frames with
    ``send_all``, the transport writes output frames with :meth:`write_frame` (a
    :class:`~trio_exec._transport.FrameWriter`): on a TCP stream with ``sendmsg``, the
    frame's pieces unjoined; on another (TLS), one ``send_all`` per piece.
    """

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self._send_lock = trio.StrictFIFOLock()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    async def write_frame(self, parts: Sequence[bytes], still_open: Callable[[], bool]) -> bool:
        """See :meth:`~trio_exec._transport.FrameWriter.write_frame`."""
        async with self._send_lock:
            if not still_open():
                return False
            stream = self._stream
            if isinstance(stream, trio.SocketStream):
                await _send_parts(stream.socket, parts)
            else:  # TLS: each piece is encrypted into records of its own, none joined
                for part in parts:
                    if part:
                        await stream.send_all(part)
            return True

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _send_parts(sock: trio.socket.SocketType, parts: Sequence[bytes]) -> None:
    """Send the bytes of ``parts``, in order, with as few ``sendmsg`` calls as the socket
    takes (a partial send goes on from where it stopped).

    Raises:
        trio.BrokenResourceError: the socket failed (the peer went away, or the stream
            was closed under the connection).

    **Cancellation:** part of the bytes may have been sent (as with ``send_all``).
    """
    views = [memoryview(part) for part in parts if part]
    try:
        while views:
            sent = await sock.sendmsg(views)
            while sent:
                first = views[0]
                if sent >= len(first):
                    sent -= len(first)
                    del views[0]
                else:
                    views[0] = first[sent:]
                    sent = 0
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc


@attrs.frozen(kw_only=True)
class _Head:
    """A parsed HTTP request head and every byte read with it."""

    request: h11.Request
    connection: h11.Connection
    raw: bytes


_BAD_REQUEST: Final = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_HEAD_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"connection: close\r\ncontent-length: 0\r\n\r\n"
)


async def _read_head(stream: trio.abc.Stream) -> _Head | None:
    """Read one HTTP request head; answer 400 / 431 and return None if it is not one."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HTTP_HEAD_BYTES)
    raw = bytearray()
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            await stream.send_all(_HEAD_TOO_LARGE if exc.error_status_hint == 431 else _BAD_REQUEST)
            return None
        if event is h11.NEED_DATA:
            data = bytes(await stream.receive_some())
            raw += data
            connection.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            # h11 bounds only incomplete heads: a long head that came in one piece passes.
            end = raw.find(b"\r\n\r\n")
            if (len(raw) if end < 0 else end + 4) > MAX_HTTP_HEAD_BYTES:
                await stream.send_all(_HEAD_TOO_LARGE)
                return None
            return _Head(request=event, connection=connection, raw=bytes(raw))
        return None  # the peer closed the connection before a request


def _header_values(request: h11.Request, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in request.headers if key == name]


def _header_tokens(request: h11.Request, name: bytes) -> set[str]:
    return {
        token.strip().lower()
        for value in _header_values(request, name)
        for token in value.split(",")
        if token.strip()
    }


class _WebSocketFront:
    """The HTTP side of the websocket port: routing, health, Origin and bearer checks."""

    def __init__(
        self,
        server: ExecServer,
        digest: bytes | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._server = server
        self._digest = digest
        self._ssl_context = ssl_context

    async def handle(self, tcp_stream: trio.SocketStream) -> None:
        """Serve one TCP connection; never raises (a bad client must not stop the server)."""
        stream: trio.abc.Stream = tcp_stream
        try:
            peer = tcp_stream.socket.getpeername()
            if self._ssl_context is not None:
                stream = trio.SSLStream(tcp_stream, self._ssl_context, server_side=True)
            await self._handle(stream, str(peer[0]), int(peer[1]))
        except Exception as exc:
            if is_transport_error(exc):
                _logger.debug("websocket connection failed: %r", exc)
            else:
                _logger.exception("unexpected error on a websocket connection")
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, stream: trio.abc.Stream, address: str, port: int) -> None:
        deadline = trio.current_time() + HTTP_HEAD_TIMEOUT
        head: _Head | None = None
        upgrade = False  # set only once routing finished in time
        with trio.move_on_at(deadline):
            head = await _read_head(stream)
            upgrade = head is not None and await self._route(stream, head, f"{address}:{port}")
        if not upgrade or head is None:
            return  # answered, not HTTP, the peer left, or too slow
        async with trio.open_nursery() as nursery:  # for trio-websocket's reader task
            websocket: trio_websocket.WebSocketConnection | None = None
            with trio.move_on_at(deadline):
                replay = _ReplayStream(stream, head.raw)
                ws_request = await trio_websocket.wrap_server_stream(
                    nursery,
                    replay,
                    max_message_size=self._server.max_message_bytes,
                    receive_buffer_size=WEBSOCKET_RECEIVE_BYTES,
                )
                websocket = await ws_request.accept()
            if websocket is None:
                _logger.debug("websocket client %s:%s was too slow to upgrade", address, port)
            else:
                # No timeout here: a session lasts as long as the client wants. A lost
                # connection detaches its session; this call returns once the session
                # created here ended (resumed or not, see DETACH_TIMEOUT).
                transport = WebSocketTransport(websocket, frames=replay)
                _logger.info("websocket connection from %s:%s", address, port)
                await self._server._serve(
                    transport, _websocket_parse_prefix(address, port), detachable=True
                )
            nursery.cancel_scope.cancel()

    async def _route(self, stream: trio.abc.Stream, head: _Head, peer: str) -> bool:
        """Answer anything that is not an acceptable upgrade; True to go on with the upgrade.

        Each refusal is logged (INFO) with the client's address.
        """
        request = head.request
        target = request.target.split(b"?", 1)[0]
        method = request.method
        if _header_values(request, b"origin"):
            _logger.info("refused %s: 403, a request with an Origin header (a browser)", peer)
            await _respond(stream, head, 403)
        elif target == b"/readyz":
            if method in (b"GET", b"HEAD"):
                await _respond(stream, head, 200)
            else:
                await _respond(stream, head, 405, headers=[("allow", "GET,HEAD")])
        elif target != b"/":
            await _respond(stream, head, 404)
        elif method != b"GET":
            await _respond(stream, head, 405, headers=[("allow", "GET")])
        elif (problem := _upgrade_problem(request)) is not None:
            _logger.info("refused %s: 400, %s", peer, problem)
            await _respond(stream, head, 400, problem)
        elif (denied := self._auth_problem(request)) is not None:
            _logger.info("refused %s: 401, %s", peer, denied)
            await _respond(stream, head, 401, denied)
        else:
            return True
        return False

    def _auth_problem(self, request: h11.Request) -> str | None:
        if self._digest is None:
            return None
        values = _header_values(request, b"authorization")
        if not values:
            return "missing websocket bearer token"
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "invalid authorization header"
        digest = hashlib.sha256(token.encode("latin-1")).digest()
        if not hmac.compare_digest(digest, self._digest):
            return "invalid websocket bearer token"
        return None


def _upgrade_problem(request: h11.Request) -> str | None:
    """Why this is not a websocket upgrade request (the reference's wording), or None."""
    if "upgrade" not in _header_tokens(request, b"connection"):
        return "Connection header did not include 'upgrade'"
    if "websocket" not in _header_tokens(request, b"upgrade"):
        return "`Upgrade` header did not include 'websocket'"
    if "13" not in _header_tokens(request, b"sec-websocket-version"):
        return "`Sec-WebSocket-Version` header did not include '13'"
    if not _header_values(request, b"sec-websocket-key"):
        return "`Sec-WebSocket-Key` header is missing"
    return None


async def _respond(
    stream: trio.abc.Stream,
    head: _Head,
    status: int,
    body: str = "",
    *,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """Send a complete response and mark the connection for closing."""
    data = body.encode()
    fields = [*(headers or []), ("content-length", str(len(data))), ("connection", "close")]
    if data:
        fields.insert(0, ("content-type", "text/plain; charset=utf-8"))
    connection = head.connection
    reason = http.HTTPStatus(status).phrase.encode()
    out = connection.send(h11.Response(status_code=status, headers=fields, reason=reason))
    if data and head.request.method != b"HEAD":
        out = (out or b"") + (connection.send(h11.Data(data=data)) or b"")
    out = (out or b"") + (connection.send(h11.EndOfMessage()) or b"")
    await stream.send_all(out)


async def _non_loopback_addresses(host: str | None, port: int) -> list[str]:
    """The addresses ``open_tcp_listeners(port, host=host)`` would bind that are not loopback."""
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    exposed: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if not _is_loopback(address) and address not in exposed:
            exposed.append(address)
    return exposed


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _url(listener: trio.SocketListener, *, tls: bool) -> str:
    address, port, *_ = listener.socket.getsockname()
    host = f"[{address}]" if ":" in address else address
    return f"{'wss' if tls else 'ws'}://{host}:{port}"


async def serve_websocket(
    host: str,
    port: int,
    *,
    token: str | None = None,
    token_sha256: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server: ExecServer | None = None,
    allow_unauthenticated_non_loopback: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the exec server on a websocket endpoint until cancelled or stopped.

    The websocket is served on path ``/``; ``GET /readyz`` answers 200 without auth; any
    request carrying an ``Origin`` header is refused with 403 (no browser may drive a
    process server); other paths are 404. Each websocket connection is one session of
    ``server``.

    Args:
        host: the IP address to bind, e.g. ``"127.0.0.1"``.
        port: the TCP port; 0 picks a free one.
        token: if given, the upgrade must carry ``Authorization: Bearer <token>``; the
            check compares SHA-256 digests in constant time. A missing or wrong token is
            refused with 401 and a ``text/plain`` reason, as the reference does.
        token_sha256: the hex SHA-256 digest of the token, instead of ``token``.
        ssl_context: a server-side :class:`ssl.SSLContext` to serve ``wss://``.
        server: the :class:`ExecServer` to use (default: a new one).
        allow_unauthenticated_non_loopback: serve without a token on an address that is
            not loopback. By default that is refused before binding: anyone who can reach
            the port could run any command. TLS alone does not authenticate clients.
        task_status: receives the bound URL, ``ws://IP:PORT`` (``wss://`` with TLS).

    Raises:
        ValueError: both or a malformed token given; or no token, ``host`` is not a
            loopback address (``host`` resolves to an address outside 127.0.0.0/8 and
            ``::1``; ``""`` is every address) and ``allow_unauthenticated_non_loopback``
            is false. Raised before anything is bound.
        OSError: the address cannot be resolved or bound.

    Returns once ``server`` was stopped with :meth:`ExecServer.aclose` (the graceful stop:
    final notifications, then close code 1001): the listener is closed as soon as the stop
    begins, and this returns once it is done.

    **Cancellation:** the listener is closed and every session ends: each child process
    group is terminated (SIGTERM, SIGKILL after the server's ``session_end_grace``) and
    reaped before Cancelled propagates; no process is left behind. Connections are
    dropped without a close handshake (clients see 1006 and may try to resume), as the
    reference server does on SIGTERM; use :meth:`ExecServer.aclose` to tell them.
    """
    digest = _token_digest(token, token_sha256)
    if digest is None and not allow_unauthenticated_non_loopback:
        exposed = await _non_loopback_addresses(host, port)
        if exposed:
            raise ValueError(
                f"refusing to serve without authentication on {', '.join(exposed)}, "
                "which is not a loopback address: anyone who can reach it could run "
                "commands. Pass `token` (or `token_sha256`), or "
                "`allow_unauthenticated_non_loopback=True` to allow it explicitly."
            )
    server = server or ExecServer()
    front = _WebSocketFront(server, digest, ssl_context)
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(_url(listeners[0], tls=ssl_context is not None))
    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as accepting:
            accepting.start_soon(
                partial(trio.serve_listeners, front.handle, listeners, handler_nursery=handlers)
            )
            await server._stopping.wait()
            accepting.cancel_scope.cancel()  # closes the listeners
        # The connections end by themselves (see ExecServer.aclose); what is left are
        # requests that had not become websocket sessions.
        await server._stopped.wait()
        handlers.cancel_scope.cancel()
