"""Concurrency, ordering and flow control: pipelining, long-polls, notifications, backpressure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from trio_exec._log import DEFAULT_RETAINED_BYTES
from trio_exec._pump import PIPE_BUFFER_BYTES, largest_chunk
from trio_exec._server import OUTBOUND_QUEUE_MESSAGES, ExecServer, serve_websocket

from ..helpers import open_websocket
from .helpers import TIMEOUT, open_memory_client, python, start_params, unb64


async def test_pipelining_1000_requests_over_websocket() -> None:
    """The reference deadlocks near 230 pipelined requests; every one is answered here."""
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_websocket, "127.0.0.1", 0)
        async with open_websocket(url) as ws:
            await ws.send_message(
                json.dumps({"id": "init", "method": "initialize", "params": {"clientName": "t"}})
            )
            await ws.send_message(json.dumps({"method": "initialized"}))
            requests: list[dict[str, Any]] = []
            for i in range(1000):
                match i % 4:
                    case 0:
                        request = {"method": "process/list", "params": {}}
                    case 1:
                        request = {"method": "process/read", "params": {"processId": f"x{i}"}}
                    case 2:
                        params = {"processId": f"x{i}", "signal": "interrupt"}
                        request = {"method": "process/signal", "params": params}
                    case _:
                        request = {
                            "method": "process/start",
                            "params": start_params(f"p{i}", ["true"]),
                        }
                requests.append({"id": i, **request})
            with trio.fail_after(TIMEOUT):
                for request in requests:  # without reading anything
                    await ws.send_message(json.dumps(request))
            answered: dict[Any, dict[str, Any]] = {}
            with trio.fail_after(60):
                while len(answered) < 1001:
                    message = json.loads(await ws.get_message())
                    if "id" in message:
                        answered[message["id"]] = message
        nursery.cancel_scope.cancel()
    assert "result" in answered["init"]
    for i in range(1000):
        message = answered[i]
        if i % 4 == 1:
            assert message["error"] == {"code": -32600, "message": f"unknown process id x{i}"}
        elif i % 4 == 3:
            assert message["result"] == {"processId": f"p{i}", "sandboxType": "none"}
        else:
            assert "result" in message


async def test_long_poll_does_not_delay_other_requests() -> None:
    async with open_memory_client() as client:
        await client.start("quiet", ["sleep", "60"])
        await client.start("cat", ["cat"], pipeStdin=True)
        poll = await client.send_request(
            "process/read", {"processId": "quiet", "afterSeq": 0, "waitMs": 60_000}
        )
        with trio.fail_after(5):
            assert await client.write("cat", b"hi\n", "w1") == "accepted"
            await client.wait_output("cat", b"hi\n")
            assert (await client.call("process/list", {}))["processes"][0]["running"]
        assert client.response(poll) is None  # still waiting
        await client.call("process/terminate", {"processId": "quiet"})
        result = (await client.wait_response(poll))["result"]
        assert result["exited"] is True
        assert result["exitCode"] == 137


async def test_notifications_follow_the_start_response_in_seq_order() -> None:
    async with open_memory_client() as client:
        ids = [f"p{i}" for i in range(30)]
        requests = {
            process_id: await client.send_request(
                "process/start",
                start_params(process_id, ["sh", "-c", "echo a; echo b >&2; echo c; exit 3"]),
            )
            for process_id in ids
        }
        for process_id in ids:
            await client.wait_closed(process_id)
        for process_id in ids:
            start_at = client.response_index(requests[process_id])
            indices = [i for i, m in enumerate(client.received) if m in client.events(process_id)]
            assert start_at < indices[0]
            events = client.events(process_id)
            seqs = [m["params"]["seq"] for m in events]
            assert seqs == list(range(1, len(seqs) + 1))  # arrival order is seq order
            methods = [m["method"] for m in events]
            # All output of the direct child precedes exited; closed is last.
            assert methods[-2:] == ["process/exited", "process/closed"]
            assert set(methods[:-2]) == {"process/output"}
            assert client.output(process_id) == b"a\nc\n"
            assert client.output(process_id, "stderr") == b"b\n"


_FLOOD = """\
import os, sys
progress = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
block = bytes(range(256)) * 256
written = 0
for _ in range(256):
    view = memoryview(block)
    while view:
        n = os.write(1, view)
        view = view[n:]
        written += n
        os.pwrite(progress, f"{os.getpid()} {written}".ljust(40).encode(), 0)
"""
_FLOOD_BYTES = 256 * 256 * 256  # 16 MiB


def _progress(path: Path) -> tuple[int, int] | None:
    text = path.read_text().split()
    return (int(text[0]), int(text[1])) if len(text) == 2 else None


def _blocked_writing_stdout(pid: int) -> bool:
    try:
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()
    except (FileNotFoundError, PermissionError):
        return False
    return syscall[:2] == ["1", "0x1"]  # write(1, ...)


async def test_slow_client_slows_the_child_and_memory_stays_bounded(tmp_path: Path) -> None:
    server = ExecServer()
    buffer = 4
    # What the child can write before it blocks: the retained output (pinned by the
    # notification subscription), its pipe, and one chunk in each place a message waits:
    # the pump, the forwarder, the outbound queue, the writer, the transport, the client.
    chunk = largest_chunk(DEFAULT_RETAINED_BYTES)
    bound = (
        DEFAULT_RETAINED_BYTES
        + PIPE_BUFFER_BYTES
        + chunk * (1 + 1 + OUTBOUND_QUEUE_MESSAGES + 1 + buffer + 1)
    )
    async with open_memory_client(server, buffer=buffer) as client:
        progress_file = tmp_path / "progress"
        progress_file.write_text("")
        client.pause()
        await client.send_request(
            "process/start", start_params("flood", [*python(_FLOOD), str(progress_file)])
        )
        # The child fills every buffer, then blocks in write(1, ...) for good. (A forwarder
        # queues at most half the retention, so the outbound queue is not full: see
        # _Unsent in the server.)
        with trio.fail_after(TIMEOUT):
            while True:
                progress = _progress(progress_file)
                stats = server.statistics()
                if (
                    progress is not None
                    and stats.queued_messages >= 1
                    and _blocked_writing_stdout(progress[0])
                ):
                    break
                await trio.sleep(0.01)
        _, written = progress
        assert written <= bound < _FLOOD_BYTES
        assert stats.retained_bytes <= DEFAULT_RETAINED_BYTES + chunk
        assert stats.queued_messages <= OUTBOUND_QUEUE_MESSAGES
        assert stats.running_processes == 1
        # The client reads again: everything arrives, in order, nothing lost.
        client.resume()
        events = await client.wait_closed("flood", timeout=60)
        seqs = [m["params"]["seq"] for m in events]
        assert seqs == list(range(1, len(seqs) + 1))
        data = b"".join(
            unb64(m["params"]["chunk"]) for m in events if m["method"] == "process/output"
        )
        assert data == bytes(range(256)) * 256 * 256
        assert client.exited("flood")["exitCode"] == 0


async def test_requests_beyond_the_in_flight_bound_are_refused() -> None:
    """With every slot taken by long-polls, the next request is answered at once with an
    error (not handled, not stalled); once a slot frees up, requests are served again."""
    server = ExecServer(max_in_flight=2)
    async with open_memory_client(server) as client:
        await client.start("s", ["sleep", "60"])
        polls = [
            await client.send_request(
                "process/read", {"processId": "s", "afterSeq": 0, "waitMs": 300}
            )
            for _ in range(2)
        ]
        refused = await client.wait_response(await client.send_request("process/list", {}))
        assert refused["error"]["code"] == -32600
        assert "too many requests in flight: at most 2" in refused["error"]["message"]
        for poll in polls:
            await client.wait_response(poll)
        # The refusal came at once, before the long-polls returned.
        refused_at = client.response_index(refused["id"])
        assert refused_at < min(client.response_index(poll) for poll in polls)
        listing = await client.wait_response(await client.send_request("process/list", {}))
        assert [p["processId"] for p in listing["result"]["processes"]] == ["s"]
        assert server.statistics().in_flight_requests <= 2
