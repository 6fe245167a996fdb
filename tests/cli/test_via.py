"""``trio-exec run --via COMMAND``: the exec server on the other end of a command, as with
``ssh HOST cmd``, over ``connect_command``: a local command first, then a real ``ssh`` to
the suite's throwaway sshd."""

from __future__ import annotations

import shlex

import pytest

from trio_exec._cli.status import EXIT_CONNECTION, EXIT_NOT_FOUND

from ..transports.helpers import STDIO_SERVER
from ..transports.sshd import SshServer, closed_port_argv
from .helpers import assert_one_line_error, run_cli

SERVER: str = shlex.join(STDIO_SERVER)
"""``python -m trio_exec serve --listen stdio``, by this very interpreter."""


@pytest.fixture(params=["local", "ssh"])
def via(request: pytest.FixtureRequest) -> list[str]:
    """The ``--via`` options: ``env`` (a local command that runs the server), or ``ssh``."""
    if request.param == "local":
        return ["--via", "env", "--server-command", SERVER]
    server: SshServer = request.getfixturevalue("ssh_server")
    return ["--via", shlex.join(server.argv), "--server-command", SERVER]


async def test_output_status_and_stdin_through_the_command(via: list[str]) -> None:
    script = "cat; echo err >&2; exit 3"
    done = await run_cli("run", *via, "--", "sh", "-c", script, stdin=b"piped\n")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"piped\n", b"err\n")


async def test_spawn_failures_keep_their_status(via: list[str]) -> None:
    done = await run_cli("run", *via, "--", "/nonexistent/program")
    assert_one_line_error(done, EXIT_NOT_FOUND)


async def test_a_command_that_is_no_server_is_a_connection_problem() -> None:
    done = await run_cli("run", "--via", "env", "--server-command", "true", "--", "true")
    line = assert_one_line_error(done, EXIT_CONNECTION)
    assert "exited with code 0" in line


async def test_ssh_connection_refused_is_255(ssh_server: SshServer) -> None:
    """ssh says why on stderr itself (its stderr is ours), then we say so once."""
    argv = closed_port_argv(ssh_server)
    done = await run_cli("run", "--via", shlex.join(argv), "--server-command", SERVER, "--", "true")
    assert done.returncode == EXIT_CONNECTION
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 2, lines
    assert "Connection refused" in lines[0]
    assert lines[1].startswith("trio-exec run: ")
    assert "exited with code 255" in lines[1]
