"""The one RPC peer (:class:`trio_exec._rpc.RpcPeer`) runs either role: a client peer and a
server peer talk to each other over an in-memory transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import pytest
import trio

from trio_exec._errors import ConnectionLost
from trio_exec._protocol import (
    ClientConnection,
    ConnectionEvent,
    ConnectionState,
    InitializedNotification,
    InitializeParams,
    InitializeReceived,
    InitializeResult,
    ListParams,
    ListResult,
    RequestReceived,
    ServerConnection,
    make_response,
)
from trio_exec._rpc import DISCONNECTED, RpcPeer
from trio_exec._transport import MemoryTransport, memory_transport_pair

TIMEOUT: Final = 10.0
"""Bound on every wait of a test."""

CLOSE_TIMEOUT: Final = 1.0
"""What the peers give a transport to close after a protocol error."""


def state_of(rules: ClientConnection | ServerConnection) -> ConnectionState:
    """The state (a call, so that a type checker does not narrow it across steps)."""
    return rules.state


class Server:
    """A server peer that accepts ``initialize`` and answers ``process/list``."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.rules = ServerConnection()
        self.failures: list[str] = []
        self.peer = RpcPeer(
            transport,
            self.rules,
            on_event=self.on_event,
            on_failure=self.failures.append,
            outbox_messages=2,
            close_timeout=CLOSE_TIMEOUT,
        )
        self.sent: list[str] = []

    async def on_event(self, event: ConnectionEvent) -> None:
        match event:
            case InitializeReceived():
                result = InitializeResult(session_id="s1")
                await self.peer.send(self.rules.accept_initialize(event.request_id, result))
            case RequestReceived():
                assert isinstance(event.params, ListParams)
                response = make_response(event.request_id, ListResult(processes=()))
                await self.peer.send(response, self.on_sent("list"))

    def on_sent(self, what: str) -> Callable[[], None]:
        return lambda: self.sent.append(what)


def client_peer(
    transport: MemoryTransport, failures: list[str]
) -> tuple[RpcPeer, ClientConnection]:
    rules = ClientConnection()

    async def on_event(event: ConnectionEvent) -> None:
        await trio.lowlevel.checkpoint()

    peer = RpcPeer(
        transport,
        rules,
        on_event=on_event,
        on_failure=failures.append,
        max_in_flight=4,
        close_timeout=CLOSE_TIMEOUT,
    )
    return peer, rules


@attrs.frozen
class RunningClient:
    """What :func:`running_client` yields."""

    peer: RpcPeer
    rules: ClientConnection
    failures: list[str]
    """What the peer's ``on_failure`` was called with."""
    server_end: MemoryTransport
    """The other end of the client's transport, which the test drives."""


@asynccontextmanager
async def running_client() -> AsyncIterator[RunningClient]:
    """A client peer running (in a nursery of the block) over an in-memory transport."""
    client_end, server_end = memory_transport_pair()
    failures: list[str] = []
    peer, rules = client_peer(client_end, failures)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        yield RunningClient(peer, rules, failures, server_end)


async def test_a_client_peer_and_a_server_peer_talk() -> None:
    client_end, server_end = memory_transport_pair()
    server = Server(server_end)
    client_failures: list[str] = []
    client, client_rules = client_peer(client_end, client_failures)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.peer.run)
            await nursery.start(client.run)
            hello = await client.call(InitializeParams(client_name="tests"), InitializeResult)
            assert hello.session_id == "s1"
            assert state_of(client_rules) is ConnectionState.INITIALIZED
            client.notify(InitializedNotification())
            listed = await client.call(ListParams(), ListResult)
            assert listed == ListResult(processes=())
            assert client.in_flight == 0
            assert state_of(server.rules) is ConnectionState.READY
            # The server finishes: what it queued is sent, then its connection ends.
            server.peer.finish()
            client.close("done")
    assert server.sent == ["list"]  # on_sent ran once the transport took it
    assert server.failures == [f"{DISCONNECTED}: the connection was closed"]
    assert client_failures == [f"{DISCONNECTED}: done"]
    assert state_of(client_rules) is ConnectionState.CLOSED
    assert state_of(server.rules) is ConnectionState.CLOSED
    with pytest.raises(ConnectionLost, match="done"):
        await client.call(ListParams(), ListResult)


async def test_a_protocol_error_fails_the_calls_and_closes_the_transport() -> None:
    with trio.fail_after(TIMEOUT):
        async with running_client() as running:
            client, server_end = running.peer, running.server_end
            call = await client.start_call(InitializeParams(client_name="tests"))
            assert client.in_flight == 1
            await server_end.receive()  # the initialize request
            await server_end.send("{not json")
            with pytest.raises(ConnectionLost, match="protocol error: malformed message"):
                await client.wait(call, InitializeResult)
            # The client closed its transport: the other end sees it.
            with pytest.raises(ConnectionLost):
                await server_end.receive()
    assert state_of(running.rules) is ConnectionState.ERROR
    assert client.in_flight == 0
    assert len(running.failures) == 1
    assert running.failures[0].startswith(f"{DISCONNECTED}: protocol error: malformed message")
    assert not client.resumable


async def test_a_lost_transport_is_resumable() -> None:
    with trio.fail_after(TIMEOUT):
        async with running_client() as running:
            await running.server_end.aclose()
    assert running.peer.resumable
    assert not running.peer.server_shut_down
    assert running.failures == [f"{DISCONNECTED}: the peer closed the memory transport"]


async def test_a_peer_without_slots_sends_no_requests() -> None:
    _, server_end = memory_transport_pair()
    server = Server(server_end)
    with pytest.raises(RuntimeError, match="sends no requests"):
        await server.peer.start_call(ListParams())
