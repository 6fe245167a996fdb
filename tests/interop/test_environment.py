"""The server's side, as the reference and our server tell and apply it.

Both servers run side by side, in the same temporary directory with the same environment
(plus a marker variable), and are asked the same things over the raw protocol:

* ``initialize``'s ``environmentInfo``: our server sends a subset of the reference's
  fields, each with the reference's value (the working directory, home, shell, ...), and
  a subset of its ``capabilities``;
* ``envPolicy``: the same policies give the same child environment, variable for variable,
  apart from what each server adds to its own environment (the reference prepends its
  helper directory to ``PATH``; ``CODEX_HOME`` is the reference's).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio

from trio_exec._protocol import path_to_file_uri
from trio_exec.testing.reference import open_reference_server, open_server_process

from ..helpers import OUR_SERVER
from .scenarios import STEP_TIMEOUT, RawDriver, open_driver

pytestmark = pytest.mark.reference

MARKER: Final = "TRIO_EXEC_TEST_SERVER_SIDE"

SERVER_ENV: Final = {
    MARKER: "server",
    "TRIO_EXEC_TEST_API_KEY": "k",  # dropped by the default excludes: *KEY*
    "TRIO_EXEC_TEST_TOKEN": "t",  # *TOKEN*
    "TRIO_EXEC_TEST_SECRET_X": "s",  # *SECRET*
    "TRIO_EXEC_TEST_PASSWORD": "p",  # kept: not a default exclude
    "LANG": "C.UTF-8",  # core
    "LC_ALL": "C.UTF-8",  # core (and no locale coercion in our Python server)
    "USERNAME": "u",  # not core in 0.169
    "LOGNAME": "ln",
    "USER": "usr",
    "TMPDIR": "/tmp",
}
"""Variables added to both servers' environment."""

OWN_VARIABLES: Final = frozenset({"PATH", "CODEX_HOME"})
"""What a server adds to its own environment: the reference puts its helper directory in
front of ``PATH`` and runs with ``CODEX_HOME``."""


@attrs.frozen(kw_only=True)
class Servers:
    reference: str
    ours: str
    cwd: Path


@pytest.fixture
async def servers(reference_binary: Path, tmp_path: Path) -> AsyncIterator[Servers]:
    cwd = tmp_path / "server side"
    cwd.mkdir()
    env = {**os.environ, **SERVER_ENV}
    async with AsyncExitStack() as stack:
        reference = await stack.enter_async_context(
            open_reference_server(reference_binary, cwd=cwd, env=env)
        )
        ours = await stack.enter_async_context(open_server_process(OUR_SERVER, env=env, cwd=cwd))
        yield Servers(reference=reference, ours=ours, cwd=cwd)


async def test_our_environment_info_is_a_part_of_the_references(servers: Servers) -> None:
    async with open_driver(servers.reference) as theirs, open_driver(servers.ours) as ours:
        reference_info = theirs.initialize_result["environmentInfo"]
        our_info = ours.initialize_result["environmentInfo"]
    assert reference_info["cwd"] == path_to_file_uri(servers.cwd)
    assert set(our_info) == {
        "shell",
        "cwd",
        "userHomeDir",
        "platformOs",
        "temporaryDirectories",
        "tempDir",
        "capabilities",
    }
    assert set(our_info) < set(reference_info)
    our_capabilities = our_info.pop("capabilities")
    assert our_info == {name: reference_info[name] for name in our_info}
    # The capabilities we offer are a part of the reference's, each offered there too.
    assert our_capabilities == dict.fromkeys(our_capabilities, True)
    assert our_capabilities.items() <= reference_info["capabilities"].items()


async def run_env(driver: RawDriver, process_id: str, **start: Any) -> dict[str, str] | str:
    """The environment a child gets (``env`` prints it), or the error message."""
    cwd = path_to_file_uri("/")
    response = await driver.start(process_id, ["env"], cwd=cwd, **start)
    if "error" in response:
        message: str = response["error"]["message"]
        return message
    await driver.wait_closed(process_id)
    lines = driver.output(process_id, "stdout").decode().splitlines()
    pairs = (line.split("=", 1) for line in lines)
    return {name: value for name, value in pairs if name not in OWN_VARIABLES}


def policy(**fields: Any) -> dict[str, Any]:
    """An ``envPolicy`` with every field (the reference requires all five)."""
    defaults = {
        "inherit": "all",
        "ignoreDefaultExcludes": False,
        "exclude": [],
        "set": {},
        "includeOnly": [],
    }
    return {**defaults, **fields}


POLICIES: Final[dict[str, dict[str, Any]]] = {
    # What trio_exec's client sends without env: the whole environment.
    "inherit all": {"env": {}, "envPolicy": policy(ignoreDefaultExcludes=True)},
    "default excludes": {"env": {}, "envPolicy": policy()},
    "core": {"env": {}, "envPolicy": policy(inherit="core", ignoreDefaultExcludes=True)},
    "set after excludes": {
        "env": {},
        "envPolicy": policy(inherit="none", set={"X_TOKEN": "1", "Y": "2"}),
    },
    "exclude and include only": {
        "env": {},
        "envPolicy": policy(exclude=["*password*"], includeOnly=["trio_exec_test_*"]),
    },
    "include only after set": {
        "env": {},
        "envPolicy": policy(set={"Z": "1"}, includeOnly=["TRIO_EXEC_*"]),
    },
    "env over the policy": {
        "env": {"A": "env", MARKER: "overlay"},
        "envPolicy": policy(inherit="none", set={"A": "set", "B": "set"}),
    },
    "no policy": {"env": {"ONLY": "1"}},
}


@pytest.mark.parametrize("case", list(POLICIES))
async def test_env_policy_gives_what_the_reference_gives(servers: Servers, case: str) -> None:
    start = POLICIES[case]
    with trio.fail_after(4 * STEP_TIMEOUT):
        async with open_driver(servers.reference) as theirs, open_driver(servers.ours) as ours:
            expected = await run_env(theirs, "p", **start)
            got = await run_env(ours, "p", **start)
    assert got == expected
    if case == "inherit all":
        assert isinstance(got, dict)
        assert got[MARKER] == "server"
        assert got["TRIO_EXEC_TEST_TOKEN"] == "t"


async def test_a_bad_inherit_is_refused_by_both(servers: Servers) -> None:
    start: dict[str, Any] = {"env": {}, "envPolicy": policy(inherit="bogus")}
    with trio.fail_after(4 * STEP_TIMEOUT):
        async with open_driver(servers.reference) as theirs, open_driver(servers.ours) as ours:
            expected = await theirs.start("p", ["env"], **start)
            got = await ours.start("p", ["env"], **start)
    assert expected["error"]["code"] == got["error"]["code"] == -32602
    assert expected["error"]["message"] == (
        "unknown variant `bogus`, expected one of `core`, `all`, `none`"
    )
    assert got["error"]["message"].startswith(expected["error"]["message"])
