"""ExecServer.aclose: the graceful stop (final notifications, then close code 1001)."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection

from trio_exec._errors import ConnectionLost
from trio_exec._server import ExecServer, serve_websocket
from trio_exec._transport import (
    WEBSOCKET_GOING_AWAY,
    memory_transport_pair,
    open_websocket_transport,
)

from .helpers import TIMEOUT, group_alive, open_memory_client, start_params, unb64


async def partial_serve(server: ExecServer, *, task_status: trio.TaskStatus[str]) -> None:
    await serve_websocket("127.0.0.1", 0, server=server, task_status=task_status)


async def _call(ws: WebSocketConnection, request_id: int, method: str, params: Any) -> Any:
    """Send a request and return its response; the connection carries nothing else yet."""
    await ws.send_message(json.dumps({"id": request_id, "method": method, "params": params}))
    response: dict[str, Any] = json.loads(await ws.get_message())
    assert response["id"] == request_id, response
    return response


async def test_aclose_sends_the_final_events_then_closes_with_1001() -> None:
    """Checked with a plain trio_websocket client: exited and closed of the running child
    arrive, then a close frame with code 1001; serve_websocket and aclose return."""
    server = ExecServer()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(partial_serve, server)
            # trio-websocket's own client, through our connect helper only because that
            # closes the TCP stream, which trio-websocket leaves open after a close frame.
            async with open_websocket_transport(url) as transport:
                ws = transport.websocket
                await _call(ws, 1, "initialize", {"clientName": "stop-test"})
                await ws.send_message(json.dumps({"method": "initialized"}))
                params = start_params("s", ["sh", "-c", "echo $$; exec sleep 60"])
                assert "result" in await _call(ws, 2, "process/start", params)
                first = json.loads(await ws.get_message())
                assert first["method"] == "process/output"
                pgid = int(unb64(first["params"]["chunk"]))
                nursery.start_soon(server.aclose)
                methods: list[str] = []
                exit_code: int | None = None
                try:
                    while True:
                        message = json.loads(await ws.get_message())
                        methods.append(message["method"])
                        if message["method"] == "process/exited":
                            exit_code = message["params"]["exitCode"]
                except ConnectionClosed as exc:
                    closed = exc.reason
            # serve_websocket returned by itself: the nursery ends without a cancel.
        assert methods == ["process/exited", "process/closed"]
        assert exit_code == 128 + signal.SIGTERM
        assert closed is not None
        assert closed.code == WEBSOCKET_GOING_AWAY == 1001
        assert closed.reason == "the exec server is shutting down"
        assert not group_alive(pgid)
        assert server.statistics().sessions == 0


async def test_a_stopping_server_refuses_new_processes_and_connections() -> None:
    """While the stop waits for a child that ignores SIGTERM (for the grace), a start is
    refused and a new connection is closed at once; the child is then SIGKILLed and its
    final events still reach the client."""
    server = ExecServer(session_end_grace=1.0)
    with trio.fail_after(TIMEOUT):
        async with open_memory_client(server) as client, trio.open_nursery() as nursery:
            script = "trap '' TERM; echo ready; while :; do sleep 0.01; done"
            await client.start("stubborn", ["sh", "-c", script])
            await client.wait_output("stubborn", b"ready")
            nursery.start_soon(server.aclose)
            await trio.testing.wait_all_tasks_blocked()
            error = await client.error("process/start", start_params("late", ["true"]))
            assert error["code"] == -32600
            assert error["message"] == "the exec server is shutting down"
            # A second connection during the stop is closed at once.
            other_end, server_end = memory_transport_pair()
            await server.serve_connection(server_end)
            with pytest.raises(ConnectionLost):
                await other_end.receive()
            await client.wait_closed("stubborn")
            assert client.exited("stubborn")["exitCode"] == 128 + signal.SIGKILL
    assert server.statistics().sessions == 0


async def test_aclose_is_idempotent_and_waits_for_the_first_stop() -> None:
    server = ExecServer()
    with trio.fail_after(TIMEOUT):
        async with open_memory_client(server) as client:
            await client.start("s", ["sleep", "60"])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.aclose)
                nursery.start_soon(server.aclose)
            assert server.statistics().processes == 0
            await client.wait_closed("s")
        await server.aclose()


async def test_cancelling_serve_websocket_still_drops_connections_with_1006() -> None:
    """The abrupt stop is unchanged (as the reference on SIGTERM): no close frame, so a
    client sees 1006 and may resume; the code reaches ConnectionLost.close_code."""
    serving = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[str]) -> None:
        with serving:
            await partial_serve(ExecServer(), task_status=task_status)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(serve)
            async with open_websocket_transport(url) as transport:
                await transport.send(
                    json.dumps({"id": 1, "method": "initialize", "params": {"clientName": "t"}})
                )
                await transport.receive()
                serving.cancel()
                with pytest.raises(ConnectionLost) as lost:
                    await transport.receive()
    assert lost.value.close_code == 1006
    assert "1006" in str(lost.value)
