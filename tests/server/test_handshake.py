"""initialize / initialized ordering, and frames that are not requests."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from trio_exec._protocol import Extension, path_to_file_uri
from trio_exec._server import SERVER_EXTENSIONS, ExecServer

from .helpers import open_memory_client, start_params

NOT_INITIALIZED = {
    "code": -32600,
    "message": "client must call initialize before using exec methods",
}
NOT_READY = {"code": -32600, "message": "client must send initialized before using exec methods"}


async def test_initialize_result() -> None:
    async with open_memory_client(initialize=False) as client:
        result = await client.call("initialize", {"clientName": "test"})
        assert set(result) == {"sessionId", "extensions", "environmentInfo"}
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", result["sessionId"]
        )
        # A memory transport has no binary frames: no binaryOutput.
        everything_else = [e.value for e in Extension if e is not Extension.BINARY_OUTPUT]
        assert result["extensions"] == everything_else == list(SERVER_EXTENSIONS)
        assert set(result["extensions"]) == {
            "closeStdin",
            "resize",
            "signals",
            "gracefulTerminate",
            "exitSignal",
            "readGap",
            "list",
            "resume",
            "windowSize",
        }


async def test_initialize_result_tells_this_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    home = path_to_file_uri(await trio.Path("~").expanduser())
    async with open_memory_client(initialize=False) as client:
        info = (await client.call("initialize", {"clientName": "test"}))["environmentInfo"]
    assert info == {
        "shell": {"name": info["shell"]["name"], "path": info["shell"]["path"]},
        "cwd": path_to_file_uri(tmp_path),
        "userHomeDir": home,
        "platformOs": "linux",
        "temporaryDirectories": [path_to_file_uri(tmp_path)],
        "tempDir": path_to_file_uri(tmp_path),
        "capabilities": {"fsWatchMissing": True, "environmentConfigRead": True},
    }
    assert info["shell"]["name"] in ("bash", "zsh", "sh")
    assert os.access(info["shell"]["path"], os.X_OK)


async def test_each_connection_is_a_new_session() -> None:
    server = ExecServer()
    async with (
        open_memory_client(server, initialize=False) as a,
        open_memory_client(server, initialize=False) as b,
    ):
        first = await a.call("initialize", {"clientName": "a"})
        second = await b.call("initialize", {"clientName": "b"})
        assert first["sessionId"] != second["sessionId"]


async def test_requests_before_initialize() -> None:
    async with open_memory_client(initialize=False) as client:
        assert await client.error("process/start", start_params("p", ["true"])) == NOT_INITIALIZED
        assert await client.error("process/read", {"processId": "p"}) == NOT_INITIALIZED
        assert await client.error("process/list", {}) == NOT_INITIALIZED
        # Like the reference, params are decoded first and unknown methods are -32601.
        error = await client.error("process/start", {})
        assert error["code"] == -32602
        assert error["message"].startswith("missing field `processId`")
        assert await client.error("process/nope", {}) == {
            "code": -32601,
            "message": "exec-server stub does not implement `process/nope` yet",
        }


async def test_requests_between_initialize_and_initialized() -> None:
    async with open_memory_client(initialize=False) as client:
        await client.call("initialize", {"clientName": "test"})
        assert await client.error("process/read", {"processId": "p"}) == NOT_READY
        await client.notify("initialized", {"ignored": True})
        assert await client.error("process/read", {"processId": "p"}) == {
            "code": -32600,
            "message": "unknown process id p",
        }


async def test_second_initialize_is_refused() -> None:
    async with open_memory_client() as client:
        assert await client.error("initialize", {"clientName": "again"}) == {
            "code": -32600,
            "message": "initialize may only be sent once per connection",
        }
    async with open_memory_client(initialize=False) as client:
        await client.call("initialize", {"clientName": "test"})
        # Also before `initialized`.
        error = await client.error("initialize", {"clientName": "again"})
        assert error["message"] == "initialize may only be sent once per connection"


async def test_failed_initialize_may_be_retried() -> None:
    async with open_memory_client(initialize=False) as client:
        assert await client.error("initialize", None) == {
            "code": -32602,
            "message": "invalid type: null, expected struct InitializeParams",
        }
        assert await client.error("initialize", {}) == {
            "code": -32602,
            "message": "missing field `clientName`",
        }
        # Sessions end with their connection: there is nothing to resume.
        assert await client.error(
            "initialize", {"clientName": "x", "resumeSessionId": "6f610e40"}
        ) == {"code": -32600, "message": "unknown session id 6f610e40"}
        assert "sessionId" in await client.call("initialize", {"clientName": "x"})


async def test_second_initialized_is_accepted() -> None:
    async with open_memory_client() as client:
        await client.notify("initialized")
        await client.notify("initialized", {"x": 1})
        assert (await client.call("process/list", {})) == {"processes": []}


async def test_initialized_before_initialize_is_ignored() -> None:
    """The reference drops the connection; we ignore the notification and keep serving."""
    async with open_memory_client(initialize=False) as client:
        await client.notify("initialized")
        assert await client.error("process/list", {}) == NOT_INITIALIZED
        await client.call("initialize", {"clientName": "x"})
        # The early `initialized` does not count.
        assert await client.error("process/list", {}) == NOT_READY
        await client.notify("initialized")
        assert await client.call("process/list", {}) == {"processes": []}


async def test_unknown_notifications_and_responses_are_ignored() -> None:
    async with open_memory_client() as client:
        await client.notify("bogus/notification", {"a": 1})
        await client.notify("process/output", {"processId": "x"})
        await client.send({"id": 99, "result": {}})
        await client.send({"id": 98, "error": {"code": 1, "message": "no"}})
        assert await client.call("process/list", {}) == {"processes": []}
        assert not client.closed
        # Nothing was answered to the notifications and responses.
        assert [m.get("id") for m in client.received] == [1, 2]


async def test_jsonrpc_member_and_ids() -> None:
    async with open_memory_client() as client:
        for request_id in ["", "abc", -5, 2**63 - 1, 0]:
            await client.send(
                {"jsonrpc": "1.0", "id": request_id, "method": "process/list", "params": {}}
            )
            response = await client.wait_response(request_id)
            assert response == {"id": request_id, "result": {"processes": []}}
        # Missing params mean null: fine for a method without required fields.
        await client.send({"id": "noparams", "method": "process/list"})
        assert (await client.wait_response("noparams"))["result"] == {"processes": []}
