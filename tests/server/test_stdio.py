"""``serve_stdio`` in a child interpreter: NDJSON over its stdin / stdout, EOF ends it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from trio_exec._protocol import LineDecoder

from .helpers import TIMEOUT, group_alive, start_params, unb64

SERVE = "import trio; from trio_exec._server import serve_stdio; trio.run(serve_stdio)"


class StdioClient:
    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout
        self.decoder = LineDecoder()
        self.received: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any] | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        await self.stdin.send_all(line.encode() + b"\n")

    async def receive_until(self, predicate: Any) -> None:
        with trio.fail_after(TIMEOUT):
            while not predicate():
                data = await self.stdout.receive_some()
                assert data, "the server closed its stdout"
                self.received += [json.loads(line) for line in self.decoder.feed(data)]

    async def request(self, request_id: int, method: str, params: Any) -> dict[str, Any]:
        await self.send({"id": request_id, "method": method, "params": params})
        await self.receive_until(lambda: any(m.get("id") == request_id for m in self.received))
        return next(m for m in self.received if m.get("id") == request_id)

    def output(self, process_id: str) -> bytes:
        return b"".join(
            unb64(m["params"]["chunk"])
            for m in self.received
            if m.get("method") == "process/output" and m["params"]["processId"] == process_id
        )


@asynccontextmanager
async def open_stdio_server() -> AsyncIterator[StdioClient]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        yield StdioClient(process)
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            assert process.stdin is not None
            assert process.stdout is not None
            await process.stdin.aclose()
            await process.stdout.aclose()


async def test_stdio_session_and_eof() -> None:
    async with open_stdio_server() as client:
        init = await client.request(1, "initialize", {"clientName": "stdio"})
        assert "sessionId" in init["result"]
        await client.send({"method": "initialized"})
        await client.send("{not json")
        await client.receive_until(lambda: any(m.get("id") == -1 for m in client.received))
        error = next(m for m in client.received if m.get("id") == -1)["error"]
        assert error["code"] == -32600
        assert error["message"].startswith(
            "failed to parse JSON-RPC message from exec-server stdio: "
        )
        start = await client.request(
            2, "process/start", start_params("p", ["sh", "-c", "echo $$; exec sleep 60"])
        )
        assert start["result"] == {"processId": "p", "sandboxType": "none"}
        await client.receive_until(lambda: client.output("p").endswith(b"\n"))
        pgid = int(client.output("p"))
        assert group_alive(pgid)
        # End of file on stdin ends the session, kills its processes, and the server exits.
        await client.stdin.aclose()
        with trio.fail_after(TIMEOUT):
            assert await client.process.wait() == 0
        assert not group_alive(pgid)
