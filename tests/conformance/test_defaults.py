"""Invariant 10: a child's defaults are the side's that runs it, as with ssh and docker exec.

Without ``cwd`` and ``env``, a child runs in the working directory of the side that runs
it, with that side's environment: this process's for a local backend, the *server's* for a
remote one, never the client's. Each remote kind here runs its server as a process of its
own, started in a directory this test process is not in and with an environment that
differs from the client's (a server-only variable, and no client-only one), so that a
client that sent its own directory or environment is caught.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import attrs
import pytest

import trio_exec as tx
from trio_exec._command import connect_command
from trio_exec.testing import check_event_stream
from trio_exec.testing.reference import open_server_process

from ..cluster.node import POD_ENV, Cluster
from ..conftest import BACKEND_KINDS, CONTAINER_KINDS
from ..containers.container import Container
from ..containers.images import IMAGE_ENV, WORKDIR
from ..relay.helpers import open_relay
from ..transports.helpers import STDIO_SERVER
from ..transports.sshd import SshServer
from .helpers import collect, python

SERVER_VAR: Final = "TRIO_EXEC_TEST_SERVER_SIDE"
"""Set on the side that runs the children only."""

CLIENT_VAR: Final = "TRIO_EXEC_TEST_CLIENT_SIDE"
"""Set in this (the client's) process only."""

TOKEN_VAR: Final = "TRIO_EXEC_TEST_API_TOKEN"
"""Set on the running side, with a name the reference's default excludes (``*TOKEN*``) drop:
the whole environment is inherited, as ssh and docker exec do."""

PROBE: Final = python(
    "import json, os; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))"
)
"""Prints where it runs and with which environment."""

WS_SERVER: Final = (sys.executable, "-m", "trio_exec", "serve", "--listen", "ws://127.0.0.1:0")


def real(path: str | os.PathLike[str]) -> str:
    """``path`` without symbolic links, as ``os.getcwd()`` in the child gives it."""
    return os.path.realpath(path)


@attrs.frozen(kw_only=True)
class Side:
    """A backend and what its children should see by default."""

    kind: str
    backend: tx.ExecBackend
    cwd: str
    """The running side's working directory."""
    env: dict[str, str] | None
    """Its exact environment, when the test knows it (not over ssh, whose login sets it)."""


@pytest.fixture(params=BACKEND_KINDS)
async def side(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Side]:
    kind: str = request.param
    server_dir = tmp_path / "server side"  # a space, for the URI's sake
    server_dir.mkdir()
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.setenv(CLIENT_VAR, "client")
    if kind == "local":
        # The local side is this process: its directory and environment.
        monkeypatch.chdir(server_dir)
        monkeypatch.setenv(SERVER_VAR, "server")
        monkeypatch.setenv(TOKEN_VAR, "kept")
        yield Side(kind=kind, backend=tx.LocalBackend(), cwd=real(server_dir), env=None)
        return
    monkeypatch.chdir(client_dir)
    server_env = {name: value for name, value in os.environ.items() if name != CLIENT_VAR}
    server_env |= {SERVER_VAR: "server", TOKEN_VAR: "kept"}
    where = real(server_dir)
    if kind == "remote":
        async with (
            open_server_process(WS_SERVER, env=server_env, cwd=server_dir) as url,
            tx.connect(url) as backend,
        ):
            yield Side(kind=kind, backend=backend, cwd=where, env=server_env)
    elif kind == "remote-stdio":
        async with connect_command(STDIO_SERVER, env=server_env, cwd=server_dir) as backend:
            yield Side(kind=kind, backend=backend, cwd=where, env=server_env)
    elif kind == "relay":
        # The children run on the inner server: its side, not the relay's (this process).
        async with (
            open_server_process(WS_SERVER, env=server_env, cwd=server_dir) as url,
            open_relay(url) as backend,
        ):
            yield Side(kind=kind, backend=backend, cwd=where, env=server_env)
    elif kind in CONTAINER_KINDS:
        # The container's own directory and environment (its image's), plus the variables
        # given to `docker exec -e`; nothing of this process's.
        container: Container = request.getfixturevalue(f"{kind}_container")
        options = ["-e", f"{SERVER_VAR}=server", "-e", f"{TOKEN_VAR}=kept"]
        async with connect_command(container.server_argv(options)) as backend:
            yield Side(kind=kind, backend=backend, cwd=WORKDIR, env=None)
    elif kind == "kubectl":
        # The pod's container has an environment of its own (the image's, the pod's, what
        # kubectl exec adds): the test knows its directory and the variables set here.
        pod: Cluster = request.getfixturevalue("kubectl_pod")
        command = (
            f"cd {shlex.quote(str(server_dir))} && exec env {SERVER_VAR}=server "
            f"{TOKEN_VAR}=kept trio-exec serve --listen stdio"
        )
        async with connect_command(pod.exec_argv("sh", "-c", command)) as backend:
            yield Side(kind=kind, backend=backend, cwd=where, env=None)
    else:
        assert kind == "remote-ssh", kind
        ssh: SshServer = request.getfixturevalue("ssh_server")
        command = (
            f"cd {shlex.quote(str(server_dir))} && exec env {SERVER_VAR}=server "
            f"{TOKEN_VAR}=kept {shlex.join(STDIO_SERVER)}"
        )
        async with connect_command([*ssh.argv, command]) as backend:
            yield Side(kind=kind, backend=backend, cwd=where, env=None)


async def probe(side: Side, **options: Any) -> dict[str, Any]:
    async with side.backend.open_process(PROBE, **options) as proc:
        events = await collect(proc)
    summary = check_event_stream(events)
    assert summary.exit_code == 0, summary
    seen: dict[str, Any] = json.loads(summary.output[tx.OutputStream.STDOUT])
    return seen


def without_locale_coercion(env: dict[str, str]) -> dict[str, str]:
    """``env`` without LC_CTYPE, which Python sets in its own environment in a C locale."""
    return {name: value for name, value in env.items() if name != "LC_CTYPE"}


async def test_a_child_gets_the_running_sides_directory_and_environment(side: Side) -> None:
    seen = await probe(side)
    assert seen["cwd"] == side.cwd
    env = seen["env"]
    assert env[SERVER_VAR] == "server"
    assert env[TOKEN_VAR] == "kept"
    if side.kind == "local":
        # Everything of os.environ; the C library may have added LINES and COLUMNS.
        inherited = {name: env.get(name) for name in os.environ}
        assert without_locale_coercion(inherited) == without_locale_coercion(dict(os.environ))
    else:
        assert CLIENT_VAR not in env
    if side.kind in CONTAINER_KINDS:
        assert IMAGE_ENV.items() <= env.items()
    if side.kind == "kubectl":
        assert env.items() >= POD_ENV.items(), "not the pod's container environment"
    if side.env is not None:
        assert without_locale_coercion(env) == without_locale_coercion(side.env)


async def test_a_program_is_found_on_the_running_sides_path(side: Side) -> None:
    # What `trio-exec run --remote URL -- uname -a` does: a bare name, no cwd, no env.
    async with side.backend.open_process(["sh", "-c", "pwd -P"]) as proc:
        events = await collect(proc)
    summary = check_event_stream(events)
    assert summary.output[tx.OutputStream.STDOUT].decode().strip() == side.cwd


async def test_extra_env_adds_to_the_running_sides_environment(side: Side) -> None:
    seen = await probe(side, extra_env={"TRIO_EXEC_TEST_ADDED": "1", SERVER_VAR: "replaced"})
    env = seen["env"]
    assert env["TRIO_EXEC_TEST_ADDED"] == "1"
    assert env[SERVER_VAR] == "replaced"
    assert env[TOKEN_VAR] == "kept"
    assert seen["cwd"] == side.cwd


async def test_extra_env_adds_to_an_exact_env(side: Side) -> None:
    seen = await probe(side, env={"A": "1", "B": "old"}, extra_env={"B": "2"})
    assert without_locale_coercion(seen["env"]) == {"A": "1", "B": "2"}


async def test_an_explicit_cwd_is_used_as_is(side: Side, tmp_path: Path) -> None:
    seen = await probe(side, cwd=tmp_path)
    assert seen["cwd"] == real(tmp_path)
