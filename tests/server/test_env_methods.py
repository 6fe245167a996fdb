"""The environment methods' own rules, over an in-memory transport: the watch limits, the
refused ``sandbox``, and where a ``fs/missingChanged`` goes. (Their answers are checked
against the reference in ``tests/interop/test_environment_methods.py``.)"""

from __future__ import annotations

from pathlib import Path

import trio

from trio_exec._protocol import path_to_file_uri
from trio_exec._server import MAX_WATCHED_PATHS, MAX_WATCHES_PER_SESSION, WATCH_POLL_INTERVAL

from .helpers import Client, open_memory_client


def _changed(client: Client, watch_id: int) -> bool:
    expected = {"method": "fs/missingChanged", "params": {"watchId": watch_id}}
    return expected in client.received


async def test_a_watch_names_at_most_max_watched_paths(tmp_path: Path) -> None:
    missing = [path_to_file_uri(tmp_path / f"m{i}") for i in range(MAX_WATCHED_PATHS + 1)]
    async with open_memory_client() as client:
        too_many = await client.error("fs/watchMissing", {"watchId": 1, "missing": missing})
        most = {"watchId": 2, "missing": missing[:-1]}
        assert await client.call("fs/watchMissing", most) == {"watching": True}
    assert too_many["code"] == -32602
    assert too_many["message"] == (
        f"too many paths: a watch names at most {MAX_WATCHED_PATHS}, not {MAX_WATCHED_PATHS + 1}"
    )


async def test_a_full_session_forgets_a_watch_that_notified_or_refuses(tmp_path: Path) -> None:
    def watch(watch_id: int, name: str) -> dict[str, object]:
        return {"watchId": watch_id, "missing": [path_to_file_uri(tmp_path / name)]}

    async with open_memory_client() as client:
        for watch_id in range(MAX_WATCHES_PER_SESSION):
            result = await client.call("fs/watchMissing", watch(watch_id, f"w{watch_id}"))
            assert result == {"watching": True}
        refused = await client.error("fs/watchMissing", watch(100, "other"))
        assert refused["code"] == -32600
        assert refused["message"].startswith("too many watches: this session already has")
        await trio.Path(tmp_path / "w3").mkdir()
        with trio.fail_after(WATCH_POLL_INTERVAL * 10):
            await client.wait_until(lambda: _changed(client, 3))
        # A watch that notified keeps its id until it is forgotten to make room.
        assert await client.call("fs/watchMissing", watch(3, "w3-again")) == {"watching": False}
        # Then it made room, and the table is full again.
        assert await client.call("fs/watchMissing", watch(100, "other")) == {"watching": True}
        assert (await client.error("fs/watchMissing", watch(3, "w3-again")))["code"] == -32600


async def test_a_watch_notifies_once_when_present_goes(tmp_path: Path) -> None:
    present = tmp_path / "present"
    await trio.Path(present).mkdir()
    params = {
        "watchId": 7,
        "missing": [path_to_file_uri(tmp_path / "missing")],
        "present": path_to_file_uri(present),
    }
    async with open_memory_client() as client:
        assert await client.call("fs/watchMissing", params) == {"watching": True}
        await trio.Path(present).rmdir()
        await client.wait_until(lambda: _changed(client, 7))
        await trio.Path(present).mkdir()
        await trio.Path(tmp_path / "missing").mkdir()
        # Another watch that notifies later shows that the first did not notify again.
        other = {"watchId": 8, "missing": [path_to_file_uri(tmp_path / "later")]}
        assert await client.call("fs/watchMissing", other) == {"watching": True}
        await trio.Path(tmp_path / "later").mkdir()
        await client.wait_until(lambda: _changed(client, 8))
    notified = [m for m in client.received if m.get("method") == "fs/missingChanged"]
    assert notified == [
        {"method": "fs/missingChanged", "params": {"watchId": 7}},
        {"method": "fs/missingChanged", "params": {"watchId": 8}},
    ]


async def test_metadata_with_a_sandbox_is_refused(tmp_path: Path) -> None:
    params = {"path": path_to_file_uri(tmp_path), "sandbox": {"permissions": {}}}
    async with open_memory_client() as client:
        error = await client.error("fs/getMetadata", params)
        plain = await client.call("fs/getMetadata", {"path": path_to_file_uri(tmp_path)})
    assert error == {
        "code": -32602,
        "message": "this exec server does not sandbox filesystem access: send `sandbox: null`",
    }
    assert plain["isDirectory"] is True
