"""A TCP proxy on 127.0.0.1 that the resume tests use to cut connections on command.

Every accepted connection is forwarded to the target port. :meth:`CuttingProxy.cut`
drops every forwarded connection abruptly (both sockets closed, no websocket close
handshake): a network blip as both ends see it. Switches make the blip nastier:

* ``accepting = False`` closes the listening socket, so new connections are refused (the
  network is still down when the client reconnects); ``True`` listens again, same port;
* ``blackhole = True`` reads what the server sends and discards it (bytes in flight that
  the client never receives, as when a link dies with full buffers);
* ``cut(keep_server_side=event)`` closes the client's side only, and the server's side
  once ``event`` is set, so that the server still sees the session attached when the
  client comes back;
* ``cut_after_downstream`` cuts by itself when that many server-to-client bytes were
  forwarded in total (the thresholds are consumed in order).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterable

import trio

BUFFER_BYTES = 64 * 1024

HOLD_LIMIT = 30.0
"""Most seconds a server's side is kept open after a cut (a test that fails before it
releases it does not hang)."""


class _Link:
    """One forwarded connection: the client's socket, the server's, and their pumps."""

    def __init__(self, client: trio.SocketStream, server: trio.SocketStream) -> None:
        self.client = client
        self.server = server
        self.scope = trio.CancelScope()
        self.keep_server_side: trio.Event | None = None


class CuttingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``; see the module docstring."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.blackhole = False
        self.downstream_bytes = 0
        """Server-to-client bytes forwarded so far, over every connection."""
        self.swallowed_bytes = 0
        """Server-to-client bytes discarded so far (while ``blackhole``)."""
        self.accepted = 0
        """Connections forwarded so far."""
        self.cuts = 0
        """Cuts done so far (by :meth:`cut` or by the thresholds)."""
        self.cut_after_downstream: deque[int] = deque()
        self._links: set[_Link] = set()
        self._nursery: trio.Nursery | None = None
        self._listener: trio.SocketListener | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cut_at(self, thresholds: Iterable[int]) -> None:
        """Cut every connection when the downstream total reaches each threshold."""
        self.cut_after_downstream.extend(sorted(thresholds))

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.accepting = True
            task_status.started(self.url)
            await trio.sleep_forever()

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    @accepting.setter
    def accepting(self, value: bool) -> None:
        if value and self._listener is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen()
            self.port = sock.getsockname()[1]
            self._listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            assert self._nursery is not None
            self._nursery.start_soon(self._accept, self._listener)
        elif not value and self._listener is not None:
            self._listener.socket.close()  # wakes the accept loop, which ends
            self._listener = None

    async def _accept(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        try:
            while True:
                try:
                    stream = await listener.accept()
                except (trio.ClosedResourceError, OSError):
                    return
                self._nursery.start_soon(self._handle, stream)
        finally:
            listener.socket.close()

    @property
    def links(self) -> int:
        """Connections being forwarded now."""
        return len(self._links)

    def cut(self, *, keep_server_side: trio.Event | None = None) -> None:
        """Drop every forwarded connection now (the server's side once ``keep_server_side``
        is set, at most :data:`HOLD_LIMIT` seconds later)."""
        self.cuts += 1
        for link in self._links:
            link.keep_server_side = keep_server_side
            link.scope.cancel()
        self._links.clear()  # cut: a second cut before they wound down finds none

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        link = _Link(client, server)
        self.accepted += 1
        self._links.add(link)
        try:
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, client, server, False)
                    nursery.start_soon(self._pump, link, server, client, True)
        finally:
            self._links.discard(link)
            await trio.aclose_forcefully(client)
            if link.keep_server_side is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(HOLD_LIMIT):
                    await link.keep_server_side.wait()
            await trio.aclose_forcefully(server)

    async def _pump(
        self,
        link: _Link,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        downstream: bool,
    ) -> None:
        try:
            while True:
                data = await source.receive_some(BUFFER_BYTES)
                if not data:
                    break
                if downstream and self.blackhole:
                    self.swallowed_bytes += len(data)
                    continue
                await sink.send_all(data)
                if downstream:
                    self.downstream_bytes += len(data)
                    thresholds = self.cut_after_downstream
                    if thresholds and self.downstream_bytes >= thresholds[0]:
                        while thresholds and self.downstream_bytes >= thresholds[0]:
                            thresholds.popleft()
                        self.cut()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        # One side ended: end the link (the other pump is cancelled).
        link.scope.cancel()
