"""The environment methods codex 0.169 sends, answered by our server as by the reference.

``environment/status``, ``environment/info``, ``environmentConfig/read``,
``fs/getMetadata`` and ``fs/watchMissing`` (with its ``fs/missingChanged`` notification),
over the raw protocol; each test runs against both servers, whose answers (codes,
messages where they are the OS's, shapes) it pins to what the reference answered live.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from trio_exec._protocol import path_to_file_uri

from ..helpers import open_exec_server
from .scenarios import STEP_TIMEOUT, RawDriver, open_driver

pytestmark = pytest.mark.reference

INVALID_REQUEST: Final = -32600
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
NOT_FOUND: Final = -32004


@pytest.fixture(params=["ours", "reference"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An exec server running in ``tmp_path``."""
    async with open_exec_server(request.param, tmp_path) as server_url:
        yield server_url


def uri(path: Path) -> str:
    return path_to_file_uri(path)


def error(response: dict[str, Any]) -> tuple[int, str]:
    assert "error" in response, response
    return response["error"]["code"], response["error"]["message"]


async def result(driver: RawDriver, method: str, params: Any) -> Any:
    response = await driver.request(method, params)
    assert "result" in response, response
    return response["result"]


async def test_status_is_ready_and_info_is_initializes(url: str) -> None:
    async with open_driver(url) as d:
        assert await result(d, "environment/status", None) == {"status": "ready"}
        assert await result(d, "environment/status", {}) == {"status": "ready"}
        info = await result(d, "environment/info", None)
        assert info == d.initialize_result["environmentInfo"]


@pytest.mark.parametrize(
    "method",
    ["environment/status", "environment/info", "fs/getMetadata", "environmentConfig/read"],
)
async def test_environment_methods_need_initialize(url: str, method: str) -> None:
    params = {
        "path": "file:///",
        "cwd": "file:///",
        "configPaths": [["x"]],
        "requirementsPaths": [],
    }
    async with open_driver(url, handshake=False) as d:
        response = await d.request(method, None if method.startswith("environment/") else params)
    code, message = error(response)
    assert code == INVALID_REQUEST
    assert message.startswith("client must call initialize before using ")


async def test_metadata_of_files_directories_and_links(url: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"hello\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("file")
    mtime_ms = (tmp_path / "file").stat().st_mtime_ns // 1_000_000
    async with open_driver(url) as d:
        file = await result(d, "fs/getMetadata", {"path": uri(tmp_path / "file"), "sandbox": None})
        directory = await result(d, "fs/getMetadata", {"path": uri(tmp_path / "dir")})
        link = await result(d, "fs/getMetadata", {"path": uri(tmp_path / "link")})
    assert file == {
        "isDirectory": False,
        "isFile": True,
        "isSymlink": False,
        "size": 6,
        "createdAtMs": file["createdAtMs"],
        "modifiedAtMs": mtime_ms,
    }
    assert type(file["createdAtMs"]) is int
    assert directory["isDirectory"]
    assert not directory["isFile"]
    assert not directory["isSymlink"]
    # A link is followed, and told as one.
    assert link == {**file, "isSymlink": True}


async def test_metadata_errors(url: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "dangling").symlink_to("nowhere")
    async with open_driver(url) as d:
        missing = await d.request("fs/getMetadata", {"path": uri(tmp_path / "missing")})
        dangling = await d.request("fs/getMetadata", {"path": uri(tmp_path / "dangling")})
        not_dir = await d.request("fs/getMetadata", {"path": uri(tmp_path / "file" / "x")})
        relative = await d.request("fs/getMetadata", {"path": "relative"})
        plain = await d.request("fs/getMetadata", {"path": str(tmp_path)})
        no_path = await d.request("fs/getMetadata", {})
        null = await d.request("fs/getMetadata", None)
    assert error(missing) == (NOT_FOUND, "No such file or directory (os error 2)")
    assert error(dangling) == (NOT_FOUND, "No such file or directory (os error 2)")
    assert error(not_dir) == (INTERNAL_ERROR, "Not a directory (os error 20)")
    for response in (relative, plain):
        code, message = error(response)
        assert code == INVALID_PARAMS
        assert message.startswith("invalid URI: relative URL without a base")
    assert error(no_path) == (INVALID_PARAMS, "missing field `path`")
    assert error(null)[0] == INVALID_PARAMS


async def wait_missing_changed(driver: RawDriver, watch_id: int) -> None:
    expected = {"method": "fs/missingChanged", "params": {"watchId": watch_id}}
    with trio.fail_after(STEP_TIMEOUT):
        while expected not in driver.other_notifications:
            await driver._receive_one()


async def test_watch_is_set_only_for_missing_paths(url: str, tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    gone = uri(tmp_path / "gone")
    here = uri(tmp_path / "here")
    cases: list[tuple[dict[str, Any], bool]] = [
        ({"watchId": 1, "missing": [gone], "present": None}, True),
        ({"watchId": 1, "missing": [uri(tmp_path / "other")]}, False),  # id taken
        ({"watchId": 2, "missing": []}, False),
        ({"watchId": 3, "missing": [here]}, False),  # exists
        ({"watchId": 4, "missing": [gone], "present": here}, True),
        ({"watchId": 5, "missing": [gone], "present": gone}, False),  # absent
    ]
    async with open_driver(url) as d:
        for params, watching in cases:
            assert await result(d, "fs/watchMissing", params) == {"watching": watching}, params
        bad_id = await d.request("fs/watchMissing", {"watchId": -1, "missing": []})
        bad_uri = await d.request("fs/watchMissing", {"watchId": 6, "missing": ["relative"]})
        no_missing = await d.request("fs/watchMissing", {"watchId": 7})
        present_list = await d.request(
            "fs/watchMissing", {"watchId": 8, "missing": [gone], "present": [here]}
        )
    assert error(bad_id)[0] == INVALID_PARAMS
    assert error(bad_uri)[0] == INVALID_PARAMS
    assert error(bad_uri)[1].startswith("invalid URI: relative URL without a base")
    assert error(no_missing) == (INVALID_PARAMS, "missing field `missing`")
    assert error(present_list)[0] == INVALID_PARAMS


async def test_watch_notifies_once_when_a_parent_of_a_missing_path_appears(
    url: str, tmp_path: Path
) -> None:
    target = tmp_path / "a" / "b"
    async with open_driver(url) as d:
        params = {"watchId": 9, "missing": [uri(target)], "present": None}
        assert await result(d, "fs/watchMissing", params) == {"watching": True}
        await trio.Path(tmp_path / "a").mkdir()
        await wait_missing_changed(d, 9)
        # The id stays taken once the watch notified.
        again = {"watchId": 9, "missing": [uri(tmp_path / "c")]}
        assert await result(d, "fs/watchMissing", again) == {"watching": False}
        other = {"watchId": 10, "missing": [uri(tmp_path / "c")]}
        assert await result(d, "fs/watchMissing", other) == {"watching": True}
        await trio.Path(tmp_path / "c").mkdir()
        await wait_missing_changed(d, 10)
    assert (
        d.other_notifications.count({"method": "fs/missingChanged", "params": {"watchId": 9}}) == 1
    )


async def test_environment_config_has_no_layers_of_its_own(url: str, tmp_path: Path) -> None:
    params = {
        "cwd": uri(tmp_path),
        "configPaths": [["mcp_servers"]],
        "requirementsPaths": [["mcp_servers"]],
    }
    async with open_driver(url) as d:
        config = await result(d, "environmentConfig/read", params)
        no_paths = await d.request(
            "environmentConfig/read", {**params, "configPaths": [], "requirementsPaths": []}
        )
        empty_path = await d.request(
            "environmentConfig/read", {**params, "configPaths": [["model"], []]}
        )
        no_cwd = await d.request(
            "environmentConfig/read", {"configPaths": [["x"]], "requirementsPaths": []}
        )
    empty = {"layers": [], "cloudInsertionIndex": 0}
    home = await trio.Path("~").expanduser()
    assert config == {
        "userHomeDir": path_to_file_uri(home),
        "codexHomeDir": config["codexHomeDir"],
        "hostname": socket.gethostname(),
        "config": empty,
        "requirements": empty,
    }
    assert config["codexHomeDir"].startswith("file:///")
    assert error(no_paths) == (
        INVALID_PARAMS,
        "at least one config or requirements path is required",
    )
    assert error(empty_path) == (INVALID_PARAMS, "TOML paths must contain at least one key segment")
    assert error(no_cwd) == (INVALID_PARAMS, "missing field `cwd`")
