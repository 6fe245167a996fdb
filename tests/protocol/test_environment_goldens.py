"""The environment methods' messages against frames codex 0.169 and the reference sent live."""

from __future__ import annotations

import pytest

from trio_exec._protocol import (
    ConfigLayer,
    ConfigLayers,
    EnvironmentConfig,
    EnvironmentConfigReadParams,
    EnvironmentInfo,
    EnvironmentInfoParams,
    EnvironmentStatusParams,
    EnvironmentStatusResult,
    FileMetadata,
    GetMetadataParams,
    MissingChangedNotification,
    Notification,
    Request,
    RequestParams,
    RequestResult,
    Response,
    WatchMissingParams,
    WatchMissingResult,
    decode_message,
    decode_notification,
    decode_params,
    decode_result,
    encode_message,
    make_notification,
    make_response,
)

REQUESTS: list[tuple[str, RequestParams]] = [
    ('{"id":2,"method":"environment/status","params":null}', EnvironmentStatusParams()),
    ('{"id":3,"method":"environment/info","params":null}', EnvironmentInfoParams()),
    (
        '{"id":4,"method":"fs/getMetadata","params":{"path":"file:///p/.git","sandbox":null}}',
        GetMetadataParams(path="file:///p/.git"),
    ),
    (
        '{"id":11,"method":"fs/watchMissing","params":{"watchId":1,'
        '"missing":["file:///p/.agents/skills"],"present":"file:///p/.git"}}',
        WatchMissingParams(
            watch_id=1, missing=("file:///p/.agents/skills",), present="file:///p/.git"
        ),
    ),
    (
        '{"id":12,"method":"environmentConfig/read","params":{"cwd":"file:///p",'
        '"configPaths":[["mcp_servers"]],"requirementsPaths":[["mcp_servers"]]}}',
        EnvironmentConfigReadParams(
            cwd="file:///p",
            config_paths=(("mcp_servers",),),
            requirements_paths=(("mcp_servers",),),
        ),
    ),
]

RESULTS: list[tuple[str, str, RequestResult]] = [
    ("environment/status", '{"id":2,"result":{"status":"ready"}}', EnvironmentStatusResult()),
    (
        "environment/info",
        '{"id":3,"result":{"cwd":"file:///p","capabilities":{"fsWatchMissing":true}}}',
        EnvironmentInfo(cwd="file:///p", capabilities={"fsWatchMissing": True}),
    ),
    (
        "fs/getMetadata",
        '{"id":5,"result":{"isDirectory":false,"isFile":true,"isSymlink":true,"size":6,'
        '"createdAtMs":0,"modifiedAtMs":1796125456300}}',
        FileMetadata(
            is_directory=False,
            is_file=True,
            is_symlink=True,
            size=6,
            created_at_ms=0,
            modified_at_ms=1796125456300,
        ),
    ),
    ("fs/watchMissing", '{"id":11,"result":{"watching":true}}', WatchMissingResult(watching=True)),
    (
        "environmentConfig/read",
        '{"id":2,"result":{"userHomeDir":"file:///root","codexHomeDir":"file:///h",'
        '"hostname":"vm","config":{"layers":[{"source":"user (/h/config.toml)",'
        '"baseDir":"file:///h","toml":"[mcp_servers.x]\\ncommand = \\"echo\\"\\n"}],'
        '"cloudInsertionIndex":0},"requirements":{"layers":[],"cloudInsertionIndex":0}}}',
        EnvironmentConfig(
            user_home_dir="file:///root",
            codex_home_dir="file:///h",
            hostname="vm",
            config=ConfigLayers(
                layers=(
                    ConfigLayer(
                        source="user (/h/config.toml)",
                        base_dir="file:///h",
                        toml='[mcp_servers.x]\ncommand = "echo"\n',
                    ),
                )
            ),
            requirements=ConfigLayers(),
        ),
    ),
]


@pytest.mark.parametrize(("frame", "params"), REQUESTS)
def test_codex_requests_decode(frame: str, params: RequestParams) -> None:
    message = decode_message(frame)
    assert isinstance(message, Request)
    assert decode_params(message.method, message.params) == params


@pytest.mark.parametrize(("method", "frame", "result"), RESULTS)
def test_reference_results_decode_and_ours_encode_the_same(
    method: str, frame: str, result: RequestResult
) -> None:
    message = decode_message(frame)
    assert isinstance(message, Response)
    assert decode_result(method, message.result) == result
    assert encode_message(make_response(message.id, result)) == frame


def test_missing_changed_notification() -> None:
    frame = '{"method":"fs/missingChanged","params":{"watchId":10}}'
    assert encode_message(make_notification(MissingChangedNotification(watch_id=10))) == frame
    message = decode_message(frame)
    assert isinstance(message, Notification)
    assert decode_notification(message) == MissingChangedNotification(watch_id=10)
