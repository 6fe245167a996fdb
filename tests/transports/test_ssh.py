"""connect_command through ``ssh`` to a real sshd on 127.0.0.1 (the ``ssh_server`` fixture)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

import trio_exec as tx
from trio_exec._command import connect_command

from ..conformance.helpers import TIMEOUT, group_alive
from .helpers import GROUP_AND_SERVER, first_line_numbers, pid_alive, ssh_argv
from .sshd import SshServer, closed_port_argv


async def test_ssh_smoke(ssh_server: SshServer) -> None:
    stack = AsyncExitStack()
    with trio.fail_after(TIMEOUT):
        async with connect_command(ssh_argv(ssh_server.argv)) as backend:
            completed = await tx.run_process(
                ["sh", "-c", "echo over ssh; exit 4"], backend=backend, check=False
            )
            assert (completed.exit_code, completed.stdout) == (4, b"over ssh\n")
            # A process whose block is never left: only the end of the ssh session ends it.
            proc = await stack.enter_async_context(backend.open_process(GROUP_AND_SERVER))
            pgid, server = await first_line_numbers(proc)
            assert group_alive(pgid)
        assert not group_alive(pgid)
        assert not pid_alive(server)
        await stack.aclose()


async def test_ssh_connection_refused(ssh_server: SshServer) -> None:
    argv = closed_port_argv(ssh_server)
    with trio.fail_after(TIMEOUT), pytest.raises(tx.ConnectionLost) as caught:
        async with connect_command(ssh_argv(argv), stderr=lambda data: None):
            pytest.fail("connected to a closed port")
    message = str(caught.value)
    assert "exited with code 255" in message
    assert "Connection refused" in message
