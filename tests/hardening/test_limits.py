"""Limits: each is named, configurable, and answered with an error or a close with a reason."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio_websocket

import trio_exec as tx
from trio_exec._log import DEFAULT_RETAINED_BYTES
from trio_exec._protocol import WIRE_INT_MAX
from trio_exec._server import (
    MAX_IN_FLIGHT_REQUESTS,
    MAX_PROCESSES_PER_SESSION,
    MAX_READ_WAIT,
    ExecServer,
    serve_websocket,
)
from trio_exec._transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    WebSocketTransport,
    open_websocket_transport,
)

from ..server.helpers import (
    Client,
    check_read_gap,
    open_memory_client,
    open_ws_client,
)
from .helpers import CLI, TIMEOUT, open_cli_server, run_cli

SMALL_FRAME_LIMIT = 64 * 1024


@pytest.fixture
async def small_frames() -> AsyncIterator[tuple[str, ExecServer]]:
    """A websocket server accepting frames of up to 64 KiB; yields its URL and server."""
    # detach_timeout=0: a session ends with its connection, so its processes go at once.
    server = ExecServer(max_message_bytes=SMALL_FRAME_LIMIT, detach_timeout=0)
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(
            lambda task_status: serve_websocket(
                "127.0.0.1", 0, server=server, task_status=task_status
            )
        )
        yield url, server
        nursery.cancel_scope.cancel()


def test_defaults_are_the_named_constants() -> None:
    server = ExecServer()
    assert server.max_processes == MAX_PROCESSES_PER_SESSION == 256
    assert server.max_in_flight == MAX_IN_FLIGHT_REQUESTS == 1024
    assert server.max_read_wait == MAX_READ_WAIT == 30.0
    assert server.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 16 * 1024 * 1024
    assert server.retain_bytes == DEFAULT_RETAINED_BYTES == 1024 * 1024


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_processes": 0}, "max_processes must be >= 1"),
        ({"max_in_flight": 0}, "max_in_flight must be >= 1"),
        ({"max_read_wait": -1.0}, "max_read_wait must be >= 0"),
        ({"max_read_wait": float("nan")}, "max_read_wait must be >= 0"),
        ({"max_message_bytes": 0}, "max_message_bytes must be >= 1"),
        ({"retain_bytes": -1}, "retain_bytes must be >= 0"),
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExecServer(**kwargs)


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-processes", "0"],
        ["--max-in-flight", "-1"],
        ["--max-read-wait", "inf"],
        ["--max-message-bytes", "x"],
        ["--retain-bytes", "0"],
    ],
)
async def test_cli_refuses_invalid_limits(flags: list[str]) -> None:
    code, out, err = await run_cli("serve", *flags)
    assert (code, out) == (2, "")
    assert f"argument {flags[0]}" in err


# -- frame size ------------------------------------------------------------------------------


async def test_oversized_frame_closes_with_the_documented_reason(
    small_frames: tuple[str, ExecServer],
) -> None:
    url, server = small_frames
    frames: list[str | bytes] = ["x" * (SMALL_FRAME_LIMIT + 1), b"x" * (SMALL_FRAME_LIMIT + 1)]
    for oversized in frames:
        async with open_ws_client(url) as client, open_ws_client(url) as other:
            assert isinstance(client.transport, WebSocketTransport)
            await client.start("s", ["sleep", "60"])
            # A frame of exactly the limit is fine (trailing whitespace is valid JSON).
            request = json.dumps({"id": "edge", "method": "process/list", "params": {}})
            await client.send_raw(request + " " * (SMALL_FRAME_LIMIT - len(request)))
            edge = await client.wait_response("edge")
            assert [p["processId"] for p in edge["result"]["processes"]] == ["s"]
            await client.transport.websocket.send_message(oversized)
            with trio.fail_after(TIMEOUT):
                while not client.closed:  # noqa: ASYNC110 - the reader task sets it
                    await trio.sleep(0.01)
            reason = client.transport.websocket.closed
            assert reason is not None
            assert (reason.code, reason.reason) == (
                1009,
                f"Exceeded maximum message size: {SMALL_FRAME_LIMIT} bytes",
            )
            # The other connection is unaffected, and the closed session's process is gone.
            assert await other.call("process/list", {}) == {"processes": []}
            with trio.fail_after(TIMEOUT):
                while server.statistics().connections != 1:  # noqa: ASYNC110 - poll the server
                    await trio.sleep(0.01)
            assert server.statistics().processes == 0


async def test_oversized_frame_with_the_default_limit() -> None:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve_websocket, "127.0.0.1", 0)
        big = DEFAULT_MAX_MESSAGE_BYTES + 1
        # trio_exec's transport, which closes the socket trio-websocket leaves open.
        async with open_websocket_transport(url, max_message_bytes=2 * big) as transport:
            ws = transport.websocket
            with trio.fail_after(TIMEOUT):
                await ws.send_message("x" * big)
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await ws.get_message()
            reason = info.value.reason
            assert reason is not None
            assert (reason.code, reason.reason) == (
                1009,
                f"Exceeded maximum message size: {DEFAULT_MAX_MESSAGE_BYTES} bytes",
            )
        nursery.cancel_scope.cancel()


async def test_oversized_stdio_line_ends_the_session() -> None:
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--listen", "stdio", "--max-message-bytes", "4096"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with trio.fail_after(TIMEOUT):
            line = json.dumps({"id": 1, "method": "initialize", "params": {"clientName": "t"}})
            await process.stdin.send_all(line.encode() + b"\n")
            answer = b""
            while b"\n" not in answer:
                answer += await process.stdout.receive_some()
            assert "sessionId" in json.loads(answer)["result"]
            await process.stdin.send_all(b"[" + b" " * 5000 + b"]\n")
            # The session ends: stdout reaches end of file and the server exits.
            while data := await process.stdout.receive_some():
                answer += data
            assert await process.wait() == 0
        assert answer.count(b"\n") == 1
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdin.aclose()
            await process.stdout.aclose()


# -- processes per session -------------------------------------------------------------------


async def test_max_processes_refuses_then_forgets_closed_ones() -> None:
    server = ExecServer(max_processes=3)
    async with open_memory_client(server) as client, open_memory_client(server) as other:
        for name in ["a", "b", "c"]:
            assert "result" in await client.start(name, ["cat"], pipeStdin=True)
        refused = await client.start("d", ["true"])
        assert refused["error"]["code"] == -32600
        message = refused["error"]["message"]
        assert message.startswith("too many processes: this session already has 3 processes")
        # The limit is per session: another one may start its own.
        assert "result" in await other.start("x", ["true"])
        assert server.statistics().processes == 4
        await other.wait_closed("x")  # so that running_processes counts this session's alone
        # When a process closed, it makes room: the earliest started closed one goes.
        await client.call("process/closeStdin", {"processId": "b"})
        await client.wait_closed("b")
        assert "result" in await client.start("d", ["cat"], pipeStdin=True)
        listing = await client.call("process/list", {})
        assert [p["processId"] for p in listing["processes"]] == ["a", "c", "d"]
        error = await client.error("process/read", {"processId": "b"})
        assert error == {"code": -32600, "message": "unknown process id b"}
        # Still full of running processes: refused again, and nothing was spawned for it.
        assert (await client.start("e", ["true"]))["error"]["code"] == -32600
        assert server.statistics().running_processes == 3


async def test_cli_max_processes() -> None:
    async with (
        open_cli_server(["--max-processes", "2"]) as cli,
        tx.connect(cli.url) as backend,
        backend.open_process(["cat"], pipe_stdin=True),
        backend.open_process(["cat"], pipe_stdin=True),
    ):
        with trio.fail_after(TIMEOUT), pytest.raises(tx.RemoteError) as info:
            async with backend.open_process(["true"]):
                pass  # pragma: no cover - refused
        assert info.value.code == -32600
        assert "too many processes" in info.value.message


# -- requests in flight ------------------------------------------------------------------------


async def test_cli_in_flight_bound_answers_an_error() -> None:
    async with open_cli_server(["--max-in-flight", "2"]) as cli, open_ws_client(cli.url) as client:
        await client.start("s", ["sleep", "60"])
        polls = [
            await client.send_request(
                "process/read", {"processId": "s", "afterSeq": 0, "waitMs": 300}
            )
            for _ in range(2)
        ]
        refused = await client.wait_response(await client.send_request("process/list", {}))
        assert refused["error"]["code"] == -32600
        assert "at most 2 per connection" in refused["error"]["message"]
        for poll in polls:
            assert "result" in await client.wait_response(poll)


# -- long-poll wait ------------------------------------------------------------------------------


async def timed_read(client: Client, wait_ms: int) -> tuple[float, dict[str, Any]]:
    start = trio.current_time()
    response = await client.request("process/read", {"processId": "s", "waitMs": wait_ms})
    return trio.current_time() - start, response


async def test_wait_ms_is_clamped() -> None:
    server = ExecServer(max_read_wait=0.3)
    async with open_memory_client(server) as client:
        await client.start("s", ["sleep", "60"])
        for wait_ms in [10**9, WIRE_INT_MAX]:
            elapsed, response = await timed_read(client, wait_ms)
            assert 0.25 <= elapsed < 5.0, elapsed
            result = response["result"]
            assert (result["chunks"], result["exited"], result["closed"]) == ([], False, False)
        # A wait under the bound is honoured.
        elapsed, response = await timed_read(client, 100)
        assert 0.09 <= elapsed < 0.3, elapsed
        # Beyond the wire's integers it is an invalid parameter, as any number field.
        _, response = await timed_read(client, WIRE_INT_MAX + 1)
        assert response["error"]["code"] == -32602


async def test_cli_max_read_wait() -> None:
    async with (
        open_cli_server(["--max-read-wait", "0.2"]) as cli,
        open_ws_client(cli.url) as client,
    ):
        await client.start("s", ["sleep", "60"])
        elapsed, response = await timed_read(client, 60_000)
        assert 0.15 <= elapsed < 5.0, elapsed
        assert response["result"]["chunks"] == []


# -- retained output -----------------------------------------------------------------------------


async def test_cli_retain_bytes() -> None:
    async with (
        open_cli_server(["--retain-bytes", "1000"]) as cli,
        open_ws_client(cli.url) as client,
    ):
        await check_read_gap(client, lines=30, retain_bytes=1000)
