"""Server sessions: detach on a lost connection, resume, -32010, expiry, detach_timeout=0.

The connections are in-memory and detachable (what ``serve_websocket`` does); closing the
client's end is the lost connection. The clients are raw JSON (tests/server/helpers.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trio_exec._server import ExecServer, serve_websocket

from ..server.helpers import b64, group_alive, python, start_params, unb64, wait_group_gone
from .helpers import TIMEOUT, Connection, open_host, pattern

# Prints "one", then "two" a little later (while the test has cut the connection), then
# "three" once it reads a line, then exits with 7.
STEPS = (
    "import sys, time\n"
    "print('one', flush=True)\n"
    "time.sleep(0.3)\n"
    "print('two', flush=True)\n"
    "sys.stdin.readline()\n"
    "print('three', flush=True)\n"
    "sys.exit(7)\n"
)


def seqs(connection: Connection, process_id: str) -> list[int]:
    return [m["params"]["seq"] for m in connection.client.events(process_id)]


async def start_group(connection: Connection, process_id: str) -> int:
    """Start ``sh`` that prints its pid (= its group) and sleeps; return the group id."""
    await connection.client.call(
        "process/start", start_params(process_id, ["sh", "-c", "echo $$; exec sleep 60"])
    )
    await connection.client.wait_output(process_id, b"\n")
    pgid = int(connection.client.output(process_id))
    assert group_alive(pgid)
    return pgid


async def catch_up(connection: Connection, process_id: str, after: int) -> list[dict[str, Any]]:
    """What a client does after a resume: ``process/read`` pages from ``after`` until they
    meet the first live notification (or a page is empty); every chunk read, in order.
    A last read from there tells the server to stop holding the output for the catch-up
    (else the child waits until CATCH_UP_HOLD passes).

    Each page must start right after the previous one: nothing was evicted."""
    chunks: list[dict[str, Any]] = []
    while True:
        live = seqs(connection, process_id)
        if live and after >= live[0] - 1:
            await connection.client.call(
                "process/read", {"processId": process_id, "afterSeq": after, "maxBytes": 0}
            )
            return chunks
        result = await connection.client.call(
            "process/read", {"processId": process_id, "afterSeq": after, "maxBytes": 200_000}
        )
        assert result["firstRetainedSeq"] <= after + 1, (after, result["firstRetainedSeq"])
        if not result["chunks"]:
            return chunks
        chunks.extend(result["chunks"])
        after = result["chunks"][-1]["seq"]


async def test_resume_takes_the_session_back() -> None:
    server = ExecServer()
    async with open_host(server) as host:
        first = host.connect()
        initialized = await first.initialize()
        session_id = initialized["sessionId"]
        assert "resume" in initialized["extensions"]
        await first.client.call("process/start", start_params("p", python(STEPS), pipeStdin=True))
        await first.client.wait_output("p", b"one\n")
        assert seqs(first, "p") == [1]
        await first.cut()
        with trio.fail_after(TIMEOUT):
            while server.statistics().connections:  # noqa: ASYNC110 - server state: poll it
                await trio.sleep(0.01)
        stats = server.statistics()
        assert (stats.sessions, stats.detached_sessions, stats.running_processes) == (1, 1, 1)
        # "two" is written while detached.
        with trio.fail_after(TIMEOUT):
            while server.statistics().retained_bytes < len(b"one\ntwo\n"):  # noqa: ASYNC110 - server state: poll it
                await trio.sleep(0.01)

        second = host.connect()
        resumed = await second.initialize(resume=session_id)
        assert resumed["sessionId"] == session_id
        assert server.statistics().detached_sessions == 0
        # What happened while detached is read, not replayed as notifications.
        result = await second.client.call("process/read", {"processId": "p", "afterSeq": 1})
        assert [(c["seq"], unb64(c["chunk"])) for c in result["chunks"]] == [(2, b"two\n")]
        assert result["exited"] is False
        # The process table came along: the same process takes input, and new events are
        # notified live on the new connection.
        assert await second.client.write("p", b"go\n", "w1") == "accepted"
        events = await second.client.wait_closed("p")
        assert [m["method"] for m in events] == [
            "process/output",
            "process/exited",
            "process/closed",
        ]
        assert seqs(second, "p") == [3, 4, 5]
        assert second.client.output("p") == b"three\n"
        assert second.client.exited("p")["exitCode"] == 7


async def test_resuming_an_attached_session_is_32010_and_may_be_retried() -> None:
    async with open_host(ExecServer()) as host:
        first = host.connect()
        session_id = (await first.initialize())["sessionId"]
        second = host.connect()
        error = await second.client.error(
            "initialize", {"clientName": "x", "resumeSessionId": session_id}
        )
        assert error == {
            "code": -32010,
            "message": f"session {session_id} is already attached to another connection",
        }
        # Once the first connection is gone, the same connection resumes it.
        await first.cut()
        with trio.fail_after(TIMEOUT):
            while True:
                response = await second.client.request(
                    "initialize", {"clientName": "x", "resumeSessionId": session_id}
                )
                if "result" in response:
                    break
                assert response["error"]["code"] == -32010
                await trio.sleep(0.01)
        assert response["result"]["sessionId"] == session_id


async def test_unknown_session_is_32600_and_a_new_session_may_follow() -> None:
    async with open_host(ExecServer()) as host:
        connection = host.connect()
        error = await connection.client.error(
            "initialize", {"clientName": "x", "resumeSessionId": "no-such-session"}
        )
        assert error == {"code": -32600, "message": "unknown session id no-such-session"}
        # Not initialized: process methods are refused, and initialize may be retried.
        error = await connection.client.error("process/list", {})
        assert error["message"] == "client must call initialize before using exec methods"
        assert "sessionId" in await connection.initialize()
        assert await connection.client.call("process/list", {}) == {"processes": []}


async def test_detach_time_expiry_ends_the_session() -> None:
    server = ExecServer(detach_timeout=0.5)
    async with open_host(server) as host:
        first = host.connect()
        session_id = (await first.initialize())["sessionId"]
        pgid = await start_group(first, "p")
        await first.cut()
        with trio.fail_after(TIMEOUT):
            while server.statistics().detached_sessions != 1:  # noqa: ASYNC110 - server state: poll it
                await trio.sleep(0.01)
        assert group_alive(pgid)  # detached, still running
        # Ends after the detach time: terminated (SIGTERM; sleep dies of it) and reaped.
        await wait_group_gone(pgid, 0.5 + server.session_end_grace + 2.0)
        with trio.fail_after(TIMEOUT):
            while server.statistics().sessions:  # noqa: ASYNC110 - server state: poll it
                await trio.sleep(0.01)
        second = host.connect()
        error = await second.client.error(
            "initialize", {"clientName": "x", "resumeSessionId": session_id}
        )
        assert error == {"code": -32600, "message": f"unknown session id {session_id}"}


@pytest.mark.parametrize("how", ["detach_timeout=0", "not detachable"])
async def test_sessions_that_never_detach_end_at_once(how: str) -> None:
    server = ExecServer(detach_timeout=0) if how == "detach_timeout=0" else ExecServer()
    async with open_host(server) as host:
        first = host.connect(detachable=how == "detach_timeout=0")
        session_id = (await first.initialize())["sessionId"]
        pgid = await start_group(first, "p")
        await first.cut()
        await wait_group_gone(pgid, 2.0)
        assert server.statistics().sessions == 0
        second = host.connect()
        error = await second.client.error(
            "initialize", {"clientName": "x", "resumeSessionId": session_id}
        )
        assert error["message"] == f"unknown session id {session_id}"


async def test_output_retained_at_the_loss_is_held_for_the_catch_up() -> None:
    """While detached, a child that writes far more than retain_bytes waits instead of
    losing output; after the resume, reads from the last seen seq get all of it.

    (Output the server had already sent when the connection broke is lost with it: the
    retention must hold that too. Here little is in flight, and the retention holds more
    than the server's outbound queue: 16 messages of 16 KiB.)
    """
    lines = 4 * 1024 * 1024 // 16  # 4 MiB, eight times the retention
    retain = 512 * 1024
    server = ExecServer(retain_bytes=retain)
    code = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'start\\n'); out.flush()\n"
        "sys.stdin.readline()\n"
        f"for i in range(0, {lines}, 1024):\n"
        "    out.write(b''.join(b'%015d\\n' % j for j in range(i, i + 1024)))\n"
        "    out.flush()\n"
    )
    async with open_host(server) as host:
        # A one-message buffer: little is in flight when the connection breaks (a larger
        # one, like a kernel's socket buffers, could hold more than the retention).
        first = host.connect(buffer=1)
        session_id = (await first.initialize())["sessionId"]
        await first.client.call("process/start", start_params("p", python(code), pipeStdin=True))
        await first.client.wait_output("p", b"start\n")
        # Pause the client: what the server sends from now on is lost with the connection.
        first.client.pause()
        await first.client.send_request(
            "process/write", {"processId": "p", "chunk": b64(b"go\n"), "writeId": "w1"}
        )
        await trio.sleep(0.3)
        last_seen = max(seqs(first, "p"))
        await first.cut()
        await trio.sleep(0.5)
        stats = server.statistics()
        assert stats.running_processes == 1  # held back, not finished
        assert stats.retained_bytes <= retain + 256 * 1024  # the bound plus one chunk

        second = host.connect()
        assert (await second.initialize(resume=session_id))["sessionId"] == session_id
        missed = await catch_up(second, "p", last_seen)
        await second.client.wait_closed("p")
        live = [m["params"] for m in second.client.events("p")]
        # The reads and the live notifications meet without a gap.
        received = b"".join(unb64(c["chunk"]) for c in missed if c["seq"] < live[0]["seq"])
        received += second.client.output("p")
        before = first.client.output("p")
        assert before + received == b"start\n" + pattern(lines)


async def test_a_write_cut_off_mid_way_is_written_once(tmp_path: Path) -> None:
    """A write blocked on a full pipe when the connection is lost goes on in the session;
    resent with the same writeId, it is waited for, not written again."""
    payload = pattern(64 * 1024)  # 1 MiB: far more than the pipe holds
    go = tmp_path / "go"
    server = ExecServer()
    async with open_host(server) as host:
        first = host.connect()
        session_id = (await first.initialize())["sessionId"]
        # The child reads nothing until the file named by $0 exists, so the write blocks
        # on the full pipe.
        argv = ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.01; done; exec cat', str(go)]
        await first.client.call("process/start", start_params("p", argv, pipeStdin=True))
        await first.client.send_request(
            "process/write", {"processId": "p", "chunk": b64(payload), "writeId": "big"}
        )
        with trio.fail_after(TIMEOUT):
            while server.statistics().in_flight_requests != 1:  # noqa: ASYNC110 - server state: poll it
                await trio.sleep(0.01)
        await first.cut()
        go.touch()

        second = host.connect()
        await second.initialize(resume=session_id)
        assert await second.client.write("p", payload, "big") == "accepted"
        assert await second.client.write("p", payload, "big") == "accepted"  # once more
        assert await second.client.call("process/closeStdin", {"processId": "p"}) == {
            "status": "accepted"
        }
        with trio.fail_after(TIMEOUT):
            while True:
                result = await second.client.call(
                    "process/read", {"processId": "p", "afterSeq": 0, "waitMs": 1000}
                )
                if result["closed"]:
                    break
        output = b"".join(unb64(c["chunk"]) for c in result["chunks"])
        assert result["firstRetainedSeq"] == 1
        assert output == payload


async def test_websocket_sessions_detach_and_server_cancellation_ends_them() -> None:
    from ..server.helpers import open_ws_client

    server = ExecServer()  # the default detach time: far longer than this test
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[str]) -> None:
        with scope:
            await serve_websocket("127.0.0.1", 0, server=server, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(run)
        async with open_ws_client(url) as client:
            await client.start("p", ["sh", "-c", "echo $$; exec sleep 60"])
            await client.wait_output("p", b"\n")
            pgid = int(client.output("p"))
        with trio.fail_after(TIMEOUT):
            while server.statistics().detached_sessions != 1:  # noqa: ASYNC110 - server state: poll it
                await trio.sleep(0.01)
        await trio.sleep(0.3)
        assert group_alive(pgid)
        scope.cancel()
        with trio.fail_after(TIMEOUT):
            await stopped.wait()
        assert not group_alive(pgid)
        assert server.statistics().sessions == 0


def test_detach_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="detach_timeout"):
        ExecServer(detach_timeout=-1)


@pytest.mark.parametrize("retain", [64 * 1024, 1000])
async def test_output_pinned_for_a_resume_never_stalls_a_connected_child(retain: int) -> None:
    """What the server keeps pinned for a resume (the last output it sent) leaves room for
    the next chunk, whatever its size: a child whose client has taken everything is never
    held back.

    The child writes less than half of ``retain`` (the server keeps all of it pinned, in
    case it is lost in flight), then, once told, a chunk that does not fit beside it.
    """
    first_part = retain * 3 // 8
    second_part = retain * 7 // 8
    code = (
        "import os, sys\n"
        f"os.write(1, b'a' * {first_part})\n"
        "sys.stdin.readline()\n"
        f"os.write(1, b'b' * {second_part})\n"  # one write: read as one chunk
        "sys.stdin.readline()\n"
    )
    async with open_host(ExecServer(retain_bytes=retain)) as host:
        connection = host.connect()
        await connection.initialize()
        client = connection.client
        await client.call("process/start", start_params("p", python(code), pipeStdin=True))
        await client.wait_output("p", b"a" * first_part)
        assert await client.write("p", b"\n", "w1") == "accepted"
        await client.wait_output("p", b"a" * first_part + b"b" * second_part)
        assert await client.write("p", b"\n", "w2") == "accepted"
        await client.wait_closed("p")
