"""Drive an MCP stdio server that runs on an exec server, with the official ``mcp`` SDK.

This is what codex does for MCP servers placed on a remote executor: the server process
is started through the executor with a piped stdin, JSON-RPC messages are written to its
stdin one per line, and its stdout is read line by line; its stderr is only logged.

Here, under Trio, the program:

1. serves trio_exec's exec server on 127.0.0.1 (a free port) in-process, and connects a
   ``RemoteBackend`` to it as any remote client would;
2. starts ``examples/mcp_server.py`` through :func:`open_stream` (a byte stream over the
   process: ``send_all`` -> stdin, ``receive_some`` <- stdout);
3. bridges that stream to the SDK's ``ClientSession`` (anyio runs on Trio) with
   :func:`open_mcp_transport`, which mirrors ``mcp.client.stdio``;
4. initializes the session, lists the tools, calls them and prints the results.

    python examples/mcp_remote.py [--local]     # --local: no exec server, run it here

It needs the ``mcp`` SDK (and anyio, which the SDK runs on), beyond the library's own
dependencies: the ``examples`` extra installs them, ``python -m pip install '.[examples]'``
in a checkout (the ``test`` extra has them too).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession, types
from mcp.shared.message import SessionMessage

import trio_exec as tx

SERVER_SCRIPT = Path(__file__).with_name("mcp_server.py")

logger = logging.getLogger("mcp_remote")


@asynccontextmanager
async def open_mcp_transport(
    stream: trio.abc.HalfCloseableStream,
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """The MCP stdio transport over any byte stream: the streams ``ClientSession`` takes.

    Like ``mcp.client.stdio.stdio_client``, two tasks bridge the byte stream and the
    session's memory streams: one reads a line at a time and hands the session a parsed
    JSON-RPC message (or the parse error, which the session reports), one writes each
    outgoing message as a line of JSON. Leaving the block stops both; the process itself
    belongs to whoever opened ``stream`` (its ``aclose`` closes stdin, waits, terminates).

    **Cancellation:** both tasks are cancelled; nothing else is left behind.
    """
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def stdout_reader() -> None:
        lines = tx.LineReader(stream)
        async with read_writer:
            while True:
                try:
                    line = await lines.receive()
                except trio.EndOfChannel:
                    return  # the server exited: the session sees its read stream end
                except tx.LineTooLongError as exc:
                    await read_writer.send(exc)
                    continue
                if not line.strip():
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError as exc:
                    logger.warning("not a JSON-RPC message from the server: %r", line[:200])
                    await read_writer.send(exc)
                else:
                    await read_writer.send(SessionMessage(message))

    async def stdin_writer() -> None:
        async with write_reader:
            async for session_message in write_reader:
                data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await stream.send_all(data.encode() + b"\n")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stdout_reader)
        nursery.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream
        finally:
            nursery.cancel_scope.cancel()


async def talk_to_mcp_server(backend: tx.ExecBackend) -> list[str]:
    """Start the MCP server on ``backend``, use its tools, and return what was seen.

    **Cancellation:** the MCP server process is terminated and reaped.
    """
    report: list[str] = []
    argv = [sys.executable, str(SERVER_SCRIPT)]
    with trio.fail_after(60):
        async with (
            backend.open_stream(argv, stderr=logging.getLogger("mcp_server")) as stream,
            open_mcp_transport(stream) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as session,
        ):
            init = await session.initialize()
            report.append(f"server: {init.server_info.name} {init.server_info.version}")
            report.append(f"protocol: {init.protocol_version}")
            listed = await session.list_tools()
            report.append("tools: " + ", ".join(sorted(tool.name for tool in listed.tools)))
            calls: list[tuple[str, dict[str, Any]]] = [
                ("add", {"a": 2, "b": 3}),
                ("shout", {"text": "trio"}),
            ]
            for name, arguments in calls:
                result = await session.call_tool(name, arguments)
                texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
                report.append(f"{name}({json.dumps(arguments)}) -> {' '.join(texts)}")
        report.append(f"server exit code: {stream.process.exit_code}")
    return report


async def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s: %(message)s")
    logging.getLogger("mcp_server").setLevel(logging.INFO)
    if argv == ["--local"]:
        report = await talk_to_mcp_server(tx.LocalBackend())
    else:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(tx.serve_websocket, "127.0.0.1", 0)
            print(f"exec server listening on {url}")
            async with tx.connect(url) as backend:
                report = await talk_to_mcp_server(backend)
            nursery.cancel_scope.cancel()
    for line in report:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1:]))
