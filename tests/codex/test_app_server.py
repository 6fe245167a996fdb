"""``codex app-server`` 0.169 takes an exec server as its remote environment, ours as the
reference's.

codex runs with a throwaway ``CODEX_HOME`` whose ``environments.toml`` names the exec
server (through a recording proxy) as its only environment (or with
``CODEX_EXEC_SERVER_URL`` naming it, the other way codex offers), and whose ``config.toml``
configures an MCP stdio server (``examples/mcp_server.py``, built with the ``mcp``
package) on it. The test then asks codex, over its own stdio JSON-RPC, for the
environment's status and info, starts a thread there, lists the MCP server's tools and
calls one. The same test runs against our server (``trio-exec serve``) and the reference
``codex exec-server``; the proxy's recording shows that every method codex sent was
answered with the shape the reference answers with (:data:`ANSWERS`, taken from the
reference's traffic).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from trio_exec._protocol import path_to_file_uri

from ..helpers import open_exec_server
from .helpers import (
    ENVIRONMENT_ID,
    MCP_SERVER,
    MCP_SERVER_NAME,
    Exchange,
    Recording,
    open_app_server,
    open_recording_proxy,
    write_codex_home,
)

pytestmark = pytest.mark.reference


FLOW_TIMEOUT: Final = 60.0
"""Seconds the whole flow may take; it takes 2 to 4 s (codex starts the MCP server twice)."""

NOT_FOUND: Final = {"code": -32004, "message": "No such file or directory (os error 2)"}
METADATA_FIELDS: Final = {
    "isDirectory": bool,
    "isFile": bool,
    "isSymlink": bool,
    "size": int,
    "createdAtMs": int,
    "modifiedAtMs": int,
}

Check = Callable[[Exchange, Path], None]


def _result(exchange: Exchange) -> Any:
    assert exchange.response is not None
    assert "error" not in exchange.response, (exchange.method, exchange.response)
    return exchange.response["result"]


def _initialize(exchange: Exchange, project: Path) -> None:
    info = _result(exchange)["environmentInfo"]
    assert info["cwd"] == path_to_file_uri(project)
    assert info["capabilities"]["fsWatchMissing"] is True
    assert info["capabilities"]["environmentConfigRead"] is True


def _status(exchange: Exchange, project: Path) -> None:
    assert _result(exchange) == {"status": "ready"}


def _info(exchange: Exchange, project: Path) -> None:
    info = _result(exchange)
    assert info["cwd"] == path_to_file_uri(project)
    assert set(info["shell"]) == {"name", "path"}


def _metadata(exchange: Exchange, project: Path) -> None:
    assert exchange.response is not None
    path = exchange.params["path"]
    if path == path_to_file_uri(project / ".git"):
        metadata = _result(exchange)
        assert {name: type(value) for name, value in metadata.items()} == METADATA_FIELDS
        assert metadata["isDirectory"]
        assert not metadata["isFile"]
    else:
        assert exchange.response.get("error") == NOT_FOUND, (path, exchange.response)


def _watch(exchange: Exchange, project: Path) -> None:
    assert exchange.params["present"] == path_to_file_uri(project / ".git")
    assert _result(exchange) == {"watching": True}


def _config(exchange: Exchange, project: Path) -> None:
    config = _result(exchange)
    assert set(config) == {"userHomeDir", "codexHomeDir", "hostname", "config", "requirements"}
    assert config["hostname"] == socket.gethostname()
    assert config["userHomeDir"] == path_to_file_uri(os.path.expanduser("~"))
    assert config["codexHomeDir"].startswith("file:///")
    empty = {"layers": [], "cloudInsertionIndex": 0}
    assert config["config"] == config["requirements"] == empty


def _start(exchange: Exchange, project: Path) -> None:
    assert exchange.params["pipeStdin"] is True
    process_id = exchange.params["processId"]
    assert _result(exchange) == {"processId": process_id, "sandboxType": "none"}


def _write(exchange: Exchange, project: Path) -> None:
    assert _result(exchange) == {"status": "accepted"}


def _terminate(exchange: Exchange, project: Path) -> None:
    assert set(_result(exchange)) == {"running"}


ANSWERS: Final[dict[str, Check]] = {
    "initialize": _initialize,
    "environment/status": _status,
    "environment/info": _info,
    "fs/getMetadata": _metadata,
    "fs/watchMissing": _watch,
    "environmentConfig/read": _config,
    "process/start": _start,
    "process/write": _write,
    "process/terminate": _terminate,
}
"""Every method codex 0.169 sends in this flow, and how the reference answers it."""


@pytest.fixture(params=["ours", "reference"])
async def exec_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an exec server whose working directory is ``tmp_path / "project"``."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    async with open_exec_server(request.param, project) as url:
        yield url


def _terminated_the_listing_server(recording: Recording) -> bool:
    return any(
        exchange.method == "process/terminate" and exchange.response is not None
        for exchange in recording.exchanges
    )


@pytest.mark.parametrize("configured_by", ["environments.toml", "CODEX_EXEC_SERVER_URL"])
async def test_codex_uses_the_exec_server_as_a_ready_environment_with_mcp_tools(
    exec_server: str, configured_by: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    home = tmp_path / "codex-home"
    by_variable = configured_by == "CODEX_EXEC_SERVER_URL"
    with trio.fail_after(FLOW_TIMEOUT):
        async with open_recording_proxy(exec_server) as (url, recording):
            write_codex_home(home, None if by_variable else url, project)
            variable = url if by_variable else None
            async with open_app_server(home, project, exec_server_url=variable) as app:
                environment = {"environmentId": ENVIRONMENT_ID}
                assert await app.request("environment/status", environment) == {"status": "ready"}
                info = await app.request("environment/info", environment)
                assert info["cwd"] == path_to_file_uri(project)
                started_thread = await app.request("thread/start", {"cwd": str(project)})
                thread = started_thread["thread"]
                assert [env["environmentId"] for env in thread["environments"]] == [ENVIRONMENT_ID]
                # Listing starts the MCP server once more for its inventory, then
                # terminates that process.
                listed = await app.request("mcpServerStatus/list", {"threadId": thread["id"]})
                (server,) = listed["data"]
                assert server["name"] == MCP_SERVER_NAME
                assert set(server["tools"]) == {"add", "shout"}, server
                called = await app.request(
                    "mcpServer/tool/call",
                    {
                        "threadId": thread["id"],
                        "server": MCP_SERVER_NAME,
                        "tool": "shout",
                        "arguments": {"text": "remote"},
                    },
                )
                assert called["content"] == [{"type": "text", "text": "REMOTE!"}]
                assert called.get("isError") is False
                assert await app.request("environment/status", environment) == {"status": "ready"}
                await recording.wait_until(_terminated_the_listing_server)
                log = app.log
    assert "does not implement" not in log, log
    assert "disconnected" not in log, log
    assert set(ANSWERS) <= recording.methods, recording.methods
    unknown = recording.methods - set(ANSWERS)
    assert not unknown, f"codex sent methods this test does not know: {unknown}"
    for exchange in recording.exchanges:
        if exchange.response is not None:  # the last ones may be cut by the shutdown
            ANSWERS[exchange.method](exchange, project)
    assert recording.notifications_to_server == ["initialized"] * recording.connections
    # The MCP server ran through the exec server.
    mcp_argv = [sys.executable, str(MCP_SERVER)]
    starts = [e for e in recording.exchanges if e.method == "process/start"]
    assert all(e.params["argv"] == mcp_argv for e in starts), starts
